"""The feature pipeline: fills the feature store that training and serving share.

::

    publish-features: snapshots up to now -> shared offline store -> apply -> online store

Scheduled as a recurring run (for example daily, before the transformer's features grow
older than ``transformer.max_feature_age_hours``), it is what writes the Redis that the
transformer reads in a cluster. The training pipeline reads the same store when compiled with
``features.shared_store``. (No ``from __future__ import annotations`` here: KFP reads the
parameter annotations as types.)
"""

from collections.abc import Callable

from kfp import dsl, kubernetes

from churn.errors import PipelineError
from churn.settings import Settings
from components.factory import make_components
from pipelines.arguments import FeatureArguments
from pipelines.training_pipeline import S3_SECRET_KEYS, use_shared_store

PIPELINE_NAME = "churn-features"


def build_pipeline(settings: Settings) -> Callable:
    """Builds the feature pipeline; its parameters' defaults come from ``settings``.

    Args:
        settings: Platform settings; ``features.shared_store`` must name the store.

    Returns:
        The ``@dsl.pipeline`` function.

    Raises:
        PipelineError: ``features.shared_store`` is not set.
    """
    if settings.features.shared_store is None:
        raise PipelineError(
            "the feature pipeline fills the shared feature store: set features.shared_store "
            "(e.g. CHURN_FEATURES__SHARED_STORE=/mnt/features) before compiling it"
        )
    cfg = settings.pipeline
    ops = make_components(cfg)
    # The parameters and their defaults are those FeatureArguments declares for the CLI.
    d = FeatureArguments.from_settings(settings).parameters()

    def churn_features(
        data: str = d["data"],
        customers: str = d["customers"],
        cutoffs: str = d["cutoffs"],
        observed_until: str = d["observed_until"],
        features: dict = d["features"],
        data_endpoint_url: str = d["data_endpoint_url"],
    ) -> None:
        """Builds the feature snapshots into the shared store and materialises the latest.

        Args:
            data: cdnow, synth[:...], or a transaction log file or folder (local or s3://).
            customers: Optional customers table; '' for none.
            cutoffs: Comma-separated training cutoff dates; '' picks them automatically.
            observed_until: End of the observation period: 'now' for the time of the run,
                '' for the log's last event.
            features: Feature settings; shared_store names the store.
            data_endpoint_url: S3 endpoint of a non-AWS store for s3:// data; '' for AWS.
        """
        task = ops.publish_features(
            data=data,
            customers=customers,
            cutoffs=cutoffs,
            observed_until=observed_until,
            features=features,
            data_endpoint_url=data_endpoint_url,
        ).set_display_name("publish features")
        task.set_cpu_request(cfg.cpu_request).set_memory_request(cfg.memory_request)
        # The log grows between runs while the arguments stay the same.
        task.set_caching_options(enable_caching=False)
        use_shared_store(task, settings)
        if cfg.s3_secret_name:
            kubernetes.use_secret_as_env(
                task,
                secret_name=cfg.s3_secret_name,
                secret_key_to_env={k: k for k in S3_SECRET_KEYS},
            )

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Churn features: snapshots into the shared Feast store, its registry "
        "applied and the latest snapshot materialised into the online store.",
    )(churn_features)

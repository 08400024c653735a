"""The batch-scoring pipeline: the run's date, its features, scores published to the registry.

::

    scoring-date -> build-features (a snapshot at that date) -> score
        -> <registry uri>/scores/date=YYYY-MM-DD/scores.parquet

Left empty, ``date`` is the day the run is for: KFP's scheduled time of a recurring run, else
its creation time, so a weekly schedule scores each week's Monday without a new argument per
run. Built from settings like the training pipeline (images and resources are fixed when it is
compiled). (No ``from __future__ import annotations`` here: KFP reads the parameter
annotations as types.)
"""

import inspect
from collections.abc import Callable

from kfp import dsl, kubernetes

from churn.settings import Settings
from components.factory import make_scoring_components
from pipelines.arguments import ScoringArguments, docstring_args, pipeline_parameters

PIPELINE_NAME = "churn-scoring"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def build_pipeline(settings: Settings, local: bool = False) -> Callable:
    """Builds the batch-scoring pipeline function for the given settings.

    Args:
        settings: Platform settings: images, resources, the S3 secret and the defaults of the
            parameters :class:`pipelines.arguments.ScoringArguments` declares.
        local: Build for kfp.local, which cannot run a task that receives KFP's run-time
            placeholders (kfp 2.17 fails with an IndexError while resolving them): the date
            step then gets no run time and takes the clock's date, which is the creation time
            of a local run.

    Returns:
        The ``@dsl.pipeline`` function (callable under kfp.local, compilable with
        ``kfp.compiler``).
    """
    cfg = settings.pipeline
    ops = make_scoring_components(cfg)
    params = pipeline_parameters(settings, ScoringArguments)
    names = [p.name for p in params]

    def churn_scoring(*args: object) -> None:
        # KFP calls a pipeline function with one placeholder per parameter, in order.
        a = dict(zip(names, args, strict=True))
        date = ops.scoring_date(
            date=a["date"],
            scheduled_time="" if local else dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            created_time="" if local else dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
        ).set_display_name("scoring date")
        features = ops.build_features(
            data=a["data"],
            customers=a["customers"],
            cutoffs=date.output,
            # Only the training cutoff schedule reads the horizon; the cutoff here is given.
            horizon_days=settings.features.horizon_days,
            features=a["features"],
            data_endpoint_url=a["data_endpoint_url"],
        ).set_display_name("build features")
        scored = ops.score(
            feature_repo=features.outputs["feature_repo"],
            date=date.output,
            model_version=a["model_version"],
            registry=a["registry"],
            overwrite=a["overwrite"],
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("score and publish")

        for task in (date, features, scored):
            task.set_cpu_request(cfg.cpu_request).set_memory_request(cfg.memory_request)
        # The date depends on when the run happens (locally its inputs do not say when), and
        # the score reads the champion of the moment and writes the registry: neither may be
        # answered from a cache.
        for task in (date, scored):
            task.set_caching_options(enable_caching=False)
        if cfg.s3_secret_name:
            for task in (features, scored):
                kubernetes.use_secret_as_env(
                    task,
                    secret_name=cfg.s3_secret_name,
                    secret_key_to_env={k: k for k in S3_SECRET_KEYS},
                )

    churn_scoring.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    churn_scoring.__annotations__ = {p.name: p.annotation for p in params}
    churn_scoring.__doc__ = (
        "Scores every customer active before the date with a registry version and writes "
        "the scores under the registry's dated prefix.\n\n" + docstring_args(ScoringArguments)
    )
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Churn batch scoring: Feast features at the run's date, the champion (or "
        "a named version), scores under <registry>/scores/date=YYYY-MM-DD/.",
    )(churn_scoring)

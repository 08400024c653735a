"""The training pipeline: features, training set, GPU training, evaluation, AUC gate, release.

::

    build-features -> build-training-set -> train (GPU) -> evaluate -> gate
        gate == 1.0: register (publish + champion pointer) -> deploy (local | kserve | none)
        else:        record-rejection

The pipeline is built by :func:`build_pipeline` from settings, because images, GPU placement
and resource requests are fixed when the pipeline is compiled, not when it runs. (No
``from __future__ import annotations`` here: KFP reads the parameter annotations as types.)
"""

import dataclasses
from collections.abc import Callable

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask

from churn.config import PipelineConfig, Settings
from components.factory import make_components

PIPELINE_NAME = "churn-training"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _config(obj: object, drop: tuple[str, ...] = ()) -> dict:
    # Struct parameters carry JSON only: Paths and unset (None) fields stay at their defaults.
    return {
        k: v
        for k, v in dataclasses.asdict(obj).items()  # type: ignore[call-overload]
        if k not in drop and v is not None
    }


def _requests(task: PipelineTask, cpu: str, memory: str) -> PipelineTask:
    return task.set_cpu_request(cpu).set_memory_request(memory)


def _gpu_placement(task: PipelineTask, cfg: PipelineConfig) -> PipelineTask:
    """Puts the task on the GPU node pool: accelerator, node selector and taint toleration."""
    if cfg.accelerator_count > 0:
        task.set_accelerator_type(cfg.accelerator_type).set_accelerator_limit(cfg.accelerator_count)
    if cfg.gpu_node_selector_key:
        kubernetes.add_node_selector(
            task, label_key=cfg.gpu_node_selector_key, label_value=cfg.gpu_node_selector_value
        )
    if cfg.gpu_toleration_key:
        kubernetes.add_toleration(
            task, key=cfg.gpu_toleration_key, operator="Exists", effect="NoSchedule"
        )
    return task


def build_pipeline(settings: Settings) -> Callable:
    """Builds the pipeline function for the given settings.

    Settings become the images, resources and GPU placement, and the defaults of the
    pipeline's parameters; every parameter can still be overridden per run.

    Args:
        settings: Platform settings.

    Returns:
        The ``@dsl.pipeline`` function (callable under kfp.local, compilable with
        ``kfp.compiler``).
    """
    cfg = settings.pipeline
    ops = make_components(cfg)
    feature_defaults = _config(settings.features, drop=("repo_template", "horizon_days"))
    model_defaults = _config(settings.model)
    train_defaults = _config(settings.train, drop=("epochs",))
    serving_defaults = _config(settings.serving)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Churn CNN: Feast features, GPU training, evaluation against baselines, "
        "an ROC-AUC gate, registry promotion and deployment.",
    )
    def churn_training(
        data: str = "cdnow",
        customers: str = "",
        cutoffs: str = "",
        horizon_days: int = settings.features.horizon_days,
        epochs: int = settings.train.epochs,
        auc_threshold: float = settings.eval.auc_threshold,
        threshold_metric: str = settings.eval.threshold_metric,
        registry_uri: str = settings.registry.uri,
        registry_endpoint_url: str = settings.registry.endpoint_url or "",
        model_name: str = settings.registry.model_name,
        data_endpoint_url: str = settings.registry.endpoint_url or "",
        deploy_target: str = "kserve",
        feature_config: dict = feature_defaults,
        model_config: dict = model_defaults,
        train_config: dict = train_defaults,
        serving_config: dict = serving_defaults,
    ) -> None:
        """Trains, evaluates and, if it passes the gate, releases a churn model.

        Args:
            data: ``cdnow``, ``synth[:customers=N,days=D,seed=S]`` or a transaction log (file
                or folder) the pods can read, usually ``s3://bucket/key``.
            customers: Optional customers table (a path or ``s3://`` URI).
            cutoffs: Comma-separated training cutoff dates; ``""`` picks them automatically.
            horizon_days: Label horizon in days.
            epochs: Maximum training epochs.
            auc_threshold: Minimum test ROC-AUC for promotion.
            threshold_metric: Metric the decision threshold maximises (``f1``/``youden``).
            registry_uri: Registry (``s3://bucket/prefix`` on a cluster).
            registry_endpoint_url: S3 endpoint for non-AWS stores; ``""`` for AWS.
            model_name: Name of the model in the registry and in KServe.
            data_endpoint_url: S3 endpoint for ``s3://`` data of a non-AWS store (by default
                the registry's); ``""`` for AWS.
            deploy_target: ``kserve``, ``local`` (TorchServe smoke test) or ``none``.
            feature_config: ``FeatureConfig`` fields.
            model_config: ``ModelConfig`` fields.
            train_config: ``TrainConfig`` fields (``epochs`` comes from its own parameter).
            serving_config: ``ServingConfig`` fields.
        """
        features = ops.build_features(
            data=data,
            customers=customers,
            cutoffs=cutoffs,
            horizon_days=horizon_days,
            feature_config=feature_config,
            data_endpoint_url=data_endpoint_url,
        ).set_display_name("build features")
        training_set = ops.build_training_set(
            feature_repo=features.outputs["feature_repo"], horizon_days=horizon_days
        ).set_display_name("build training set")
        trained = ops.train(
            training_set=training_set.outputs["training_set"],
            epochs=epochs,
            threshold_metric=threshold_metric,
            model_config=model_config,
            train_config=train_config,
        ).set_display_name("train (GPU)")
        evaluated = ops.evaluate(
            model=trained.outputs["model"],
            training_set=training_set.outputs["training_set"],
            threshold_metric=threshold_metric,
        ).set_display_name("evaluate")
        gate = ops.gate(
            candidate_auc=evaluated.outputs["roc_auc"],
            auc_threshold=auc_threshold,
            registry_uri=registry_uri,
            registry_endpoint_url=registry_endpoint_url,
            model_name=model_name,
            evaluation=evaluated.outputs["evaluation"],
            training_set=training_set.outputs["training_set"],
        ).set_display_name("AUC gate")

        # Float against float: kfp.local cannot evaluate a comparison that mixes int and
        # float and would skip the branch with only a warning (see NOTES).
        with dsl.If(gate.outputs["Output"] == 1.0, name="promote"):
            registered = ops.register(
                model=trained.outputs["model"],
                evaluation=evaluated.outputs["evaluation"],
                decision=gate.outputs["decision"],
                registry_uri=registry_uri,
                registry_endpoint_url=registry_endpoint_url,
                model_name=model_name,
                serving_config=serving_config,
            ).set_display_name("register and promote")
            deployed = ops.deploy(
                deploy_target=deploy_target,
                version=registered.outputs["Output"],
                training_set=training_set.outputs["training_set"],
                registry_uri=registry_uri,
                registry_endpoint_url=registry_endpoint_url,
                model_name=model_name,
                serving_config=serving_config,
            ).set_display_name("deploy")
        with dsl.Else(name="reject"):
            rejected = ops.record_rejection(
                decision=gate.outputs["decision"], evaluation=evaluated.outputs["evaluation"]
            ).set_display_name("record rejection")

        for task in (features, training_set, evaluated, gate, registered, deployed, rejected):
            _requests(task, cfg.cpu_request, cfg.memory_request)
        _requests(trained, cfg.train_cpu_request, cfg.train_memory_request)
        _gpu_placement(trained, cfg)
        if cfg.train_retries > 0:
            trained.set_retry(num_retries=cfg.train_retries, backoff_duration="60s")
        # These read or move the champion pointer, which changes between runs: a cached
        # answer from an earlier run could promote over a better model.
        for task in (gate, registered, deployed, rejected):
            task.set_caching_options(enable_caching=False)
        if cfg.s3_secret_name:
            # S3 credentials (data and registry) reach the pods from a Secret, never from a
            # parameter.
            for task in (features, gate, registered, deployed):
                kubernetes.use_secret_as_env(
                    task,
                    secret_name=cfg.s3_secret_name,
                    secret_key_to_env={k: k for k in S3_SECRET_KEYS},
                )

    return churn_training

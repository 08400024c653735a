"""The training pipeline: features, training set, GPU training, evaluation, AUC gate, release.

::

    build-features -> build-training-set -> train (GPU) -> evaluate -> gate
        gate == 1.0: register (publish + champion pointer)
                     -> deploy (target local) | deploy-remote (kserve, none)
        else:        record-rejection

The pipeline is built by :func:`build_pipeline` from settings, because images, GPU placement
and resource requests are fixed when the pipeline is compiled, not when it runs. (No
``from __future__ import annotations`` here: KFP reads the parameter annotations as types.)
"""

import inspect
from collections.abc import Callable

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask

from churn.settings import PipelineConfig, Settings, section_values
from components.factory import make_components
from pipelines.arguments import RunArguments, docstring_args, pipeline_parameters

PIPELINE_NAME = "churn-training"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# What features.shared_store_config (feature_repo/production) reads from the environment.
FEAST_SECRET_KEYS = ("FEAST_REGISTRY_URL", "REDIS_CONNECTION_STRING")


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


def use_shared_store(task: PipelineTask, settings: Settings) -> PipelineTask:
    """Gives a task the shared feature store: its volume, its registry and Redis secrets, and
    the Spark master of its offline store."""
    cfg = settings.pipeline
    if cfg.feature_store_pvc and settings.features.shared_store:
        kubernetes.mount_pvc(
            task, pvc_name=cfg.feature_store_pvc, mount_path=settings.features.shared_store
        )
    if settings.features.shared_store_config:
        # The production file's Spark offline store reads its master from the environment;
        # the default, local[*], runs Spark inside the step's pod, which mounts the store.
        task.set_env_variable("SPARK_MASTER_URL", settings.features.spark_master)
        if cfg.feature_store_secret:
            kubernetes.use_secret_as_env(
                task,
                secret_name=cfg.feature_store_secret,
                secret_key_to_env={k: k for k in FEAST_SECRET_KEYS},
            )
    return task


def build_pipeline(settings: Settings) -> Callable:
    """Builds the pipeline function for the given settings.

    Settings become the images, resources and GPU placement, and the defaults of the
    pipeline's parameters, which :class:`pipelines.arguments.RunArguments` declares; every
    parameter can still be overridden per run.

    Args:
        settings: Platform settings.

    Returns:
        The ``@dsl.pipeline`` function (callable under kfp.local, compilable with
        ``kfp.compiler``).
    """
    cfg = settings.pipeline
    ops = make_components(cfg)
    params = pipeline_parameters(settings)
    names = [p.name for p in params]

    def churn_training(*args: object) -> None:
        # KFP calls a pipeline function with one placeholder per parameter, in order.
        a = dict(zip(names, args, strict=True))
        features = ops.build_features(
            data=a["data"],
            customers=a["customers"],
            cutoffs=a["cutoffs"],
            horizon_days=a["horizon_days"],
            features=a["features"],
            data_endpoint_url=a["data_endpoint_url"],
        ).set_display_name("build features")
        training_set = ops.build_training_set(
            feature_repo=features.outputs["feature_repo"],
            horizon_days=a["horizon_days"],
            features=a["features"],
        ).set_display_name("build training set")
        trained = ops.train(
            training_set=training_set.outputs["training_set"],
            epochs=a["epochs"],
            threshold_metric=a["threshold_metric"],
            model_settings=a["model"],
            train_settings=a["train"],
            train_nodes=a["train_nodes"],
            gpus_per_node=a["gpus_per_node"],
            pipeline_settings=section_values(cfg),
        ).set_display_name("train (GPU)")
        evaluated = ops.evaluate(
            model=trained.outputs["model"],
            training_set=training_set.outputs["training_set"],
            threshold_metric=a["threshold_metric"],
        ).set_display_name("evaluate")
        gate = ops.gate(
            candidate_auc=evaluated.outputs["roc_auc"],
            auc_threshold=a["auc_threshold"],
            registry=a["registry"],
            evaluation=evaluated.outputs["evaluation"],
            training_set=training_set.outputs["training_set"],
            allow_input_change=a["allow_input_change"],
            refuse_below_baseline=a["refuse_below_baseline"],
        ).set_display_name("AUC gate")

        # Float against float: kfp.local compiles a comparison that mixes int and float to
        # double(...), which its evaluator cannot evaluate, and then skips the branch with only
        # a warning while the run still reports success.
        with dsl.If(gate.outputs["Output"] == 1.0, name="promote"):
            registered = ops.register(
                model=trained.outputs["model"],
                evaluation=evaluated.outputs["evaluation"],
                decision=gate.outputs["decision"],
                training_set=training_set.outputs["training_set"],
                registry=a["registry"],
                serving=a["serving"],
            ).set_display_name("register and promote")
            # Only a local deployment reads the run's training set and feature repository;
            # a KServe rollout would download them into its pod for nothing.
            with dsl.If(a["deploy_target"] == "local", name="deploy-local"):
                deployed = ops.deploy(
                    deploy_target=a["deploy_target"],
                    version=registered.outputs["Output"],
                    training_set=training_set.outputs["training_set"],
                    feature_repo=features.outputs["feature_repo"],
                    registry=a["registry"],
                    serving=a["serving"],
                ).set_display_name("deploy")
            with dsl.Else(name="deploy-remote"):
                rolled_out = ops.deploy_remote(
                    deploy_target=a["deploy_target"],
                    version=registered.outputs["Output"],
                    registry=a["registry"],
                    serving=a["serving"],
                ).set_display_name("deploy")
        with dsl.Else(name="reject"):
            rejected = ops.record_rejection(
                decision=gate.outputs["decision"], evaluation=evaluated.outputs["evaluation"]
            ).set_display_name("record rejection")

        steps = (features, training_set, evaluated, gate, registered, deployed, rolled_out)
        for task in (*steps, rejected):
            _requests(task, cfg.cpu_request, cfg.memory_request)
        _requests(trained, cfg.train_cpu_request, cfg.train_memory_request)
        _gpu_placement(trained, cfg)
        if cfg.train_retries > 0:
            trained.set_retry(num_retries=cfg.train_retries, backoff_duration="60s")
        # These read or move the champion pointer, which changes between runs: a cached
        # answer from an earlier run could promote over a better model.
        for task in (gate, registered, deployed, rolled_out, rejected):
            task.set_caching_options(enable_caching=False)
        if settings.features.shared_store is not None:
            # The shared store changes between runs while this step's arguments do not.
            features.set_caching_options(enable_caching=False)
            for task in (features, training_set):
                use_shared_store(task, settings)
        if cfg.s3_secret_name:
            # S3 credentials (data and registry) reach the pods from a Secret, never from a
            # parameter.
            # The training step reads and writes the TrainJob's artifacts when it submits one.
            for task in (features, trained, gate, registered, deployed, rolled_out):
                kubernetes.use_secret_as_env(
                    task,
                    secret_name=cfg.s3_secret_name,
                    secret_key_to_env={k: k for k in S3_SECRET_KEYS},
                )

    churn_training.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    churn_training.__annotations__ = {p.name: p.annotation for p in params}
    churn_training.__doc__ = (
        "Trains, evaluates and, if it passes the gate, releases a churn model.\n\n"
        + docstring_args()
    )
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Churn CNN: Feast features, GPU training, evaluation against baselines, "
        "an ROC-AUC gate, registry promotion and deployment.",
    )(churn_training)


__all__ = ["PIPELINE_NAME", "RunArguments", "build_pipeline"]

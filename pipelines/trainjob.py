"""Distributed training as a Kubeflow Trainer ``TrainJob``: the manifest, submission and wait.

Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``) replaced Training Operator v1 and its
``PyTorchJob``. A ``TrainJob`` names a runtime, here the ``torch-distributed``
ClusterTrainingRuntime (a JobSet of ``numNodes`` pods, each running torchrun with
``numProcPerNode`` processes), and overrides the image, the command and the resources per node.

Every process runs ``python -m churn.model.train_entry``, which calls the same training function
as a single pod. The nodes share no disk with the pipeline step that submits them, so they read
the training set from the step's input artifact URI and rank 0 writes the model to the step's
output artifact URI (both ``s3://``); the step then fetches the model back into its output path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.errors import PipelineError
from churn.io.object_store import fetch
from churn.settings import PipelineConfig

log = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
RUNTIME = "torch-distributed"
# The container the torch-distributed runtime names its training node's container.
NODE = "node"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PATCH_MANAGER = "churn.io/pipeline"
UID = 1000


@dataclass(frozen=True)
class TrainJobSpec:
    """What one distributed training run needs.

    Attributes:
        name: The TrainJob's name (a DNS label).
        namespace: Namespace it runs in (holds the S3 Secret and the service account).
        image: Training image (the GPU image when ``gpus_per_node`` > 0).
        nodes: Training nodes (pods), at least 1.
        gpus_per_node: GPUs per node; 0 trains on CPUs with one process per node.
        dataset_uri: ``s3://`` URI of the training set folder.
        model_uri: ``s3://`` URI the model folder is written to.
        endpoint_url: S3 endpoint of a non-AWS store; ``""`` for AWS.
        model_settings: ``ModelConfig`` fields.
        train_settings: ``TrainConfig`` fields (``epochs`` included).
        threshold_metric: ``f1`` or ``youden``.
        service_account: ServiceAccount of the node pods.
        s3_secret: Secret with the S3 credentials; ``""`` when the account has an IAM role.
        cpu: CPU request and limit per node.
        memory: Memory request and limit per node.
        accelerator: Resource name of a GPU.
        node_selector: Labels of the GPU node pool (empty for none).
        toleration_key: Taint key the GPU nodes carry (``""`` for none).
        runtime: The ClusterTrainingRuntime (a torch runtime whose node container is
            ``node``).
    """

    name: str
    namespace: str
    image: str
    nodes: int
    gpus_per_node: int
    dataset_uri: str
    model_uri: str
    endpoint_url: str = ""
    model_settings: dict = field(default_factory=dict)
    train_settings: dict = field(default_factory=dict)
    threshold_metric: str = "f1"
    service_account: str = "churn-trainer"
    s3_secret: str = "churn-s3"
    cpu: str = "4"
    memory: str = "16Gi"
    accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    toleration_key: str = ""
    runtime: str = RUNTIME


def command(spec: TrainJobSpec) -> list[str]:
    """The command every training process runs (torchrun comes from the runtime)."""
    return [
        "python",
        "-m",
        "churn.model.train_entry",
        "--dataset",
        spec.dataset_uri,
        "--out",
        spec.model_uri,
        "--endpoint-url",
        spec.endpoint_url,
        "--model-settings",
        json.dumps(spec.model_settings, sort_keys=True),
        "--train-settings",
        json.dumps(spec.train_settings, sort_keys=True),
        "--threshold-metric",
        spec.threshold_metric,
    ]


def build_train_job(spec: TrainJobSpec) -> dict[str, Any]:
    """The ``TrainJob`` manifest for ``spec``.

    Raises:
        PipelineError: Fewer than one node, a negative GPU count, or a URI that is not
            ``s3://`` (the nodes could not reach a path on the step's disk).
    """
    if spec.nodes < 1 or spec.gpus_per_node < 0:
        raise PipelineError(
            f"train_nodes must be >= 1 and gpus_per_node >= 0, got {spec.nodes} and "
            f"{spec.gpus_per_node}"
        )
    for label, uri in (("training set", spec.dataset_uri), ("model", spec.model_uri)):
        if not uri.startswith("s3://"):
            raise PipelineError(
                f"the {label} artifact is at {uri!r}: a TrainJob's nodes reach only s3:// "
                "artifacts (run the pipeline with an s3:// pipeline root)"
            )
    limits = {"cpu": spec.cpu, "memory": spec.memory}
    if spec.gpus_per_node:
        limits[spec.accelerator] = str(spec.gpus_per_node)
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "OMP_NUM_THREADS", "value": "1"},
    ]
    if spec.s3_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": spec.s3_secret, "key": key}}}
            for key in S3_SECRET_KEYS
        ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {"app.kubernetes.io/part-of": "churn-platform"},
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": GROUP,
                "kind": "ClusterTrainingRuntime",
                "name": spec.runtime,
            },
            "trainer": {
                "image": spec.image,
                "command": command(spec),
                "numNodes": spec.nodes,
                # One process per GPU; on CPUs one process per node (torch threads inside).
                "numProcPerNode": max(spec.gpus_per_node, 1),
                "resourcesPerNode": {"requests": dict(limits), "limits": limits},
                "env": env,
            },
            "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": _pod_patch(spec)}],
        },
    }


def _pod_patch(spec: TrainJobSpec) -> dict[str, Any]:
    """Service account, GPU placement and a locked-down pod for the runtime's node job."""
    pod: dict[str, Any] = {
        "serviceAccountName": spec.service_account,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": NODE,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                # torchrun, the training set and the model folder need scratch space; NCCL
                # needs more shared memory than a container's 64 MiB default.
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/tmp"},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.toleration_key:
        pod["tolerations"] = [
            {"key": spec.toleration_key, "operator": "Exists", "effect": "NoSchedule"}
        ]
    job = {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}
    return {"template": {"spec": {"replicatedJobs": [job]}}}


def outcome(train_job: dict[str, Any]) -> tuple[str, str] | None:
    """``("Complete" | "Failed", message)`` once a True condition says so, else ``None``."""
    for condition in train_job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            reason = condition.get("reason", "")
            message = condition.get("message", "")
            return condition["type"], ": ".join(part for part in (reason, message) if part)
    return None


def custom_objects_api() -> Any:
    """The Kubernetes client's CustomObjectsApi: in-cluster credentials, else the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def run_train_job(
    manifest: dict[str, Any],
    timeout_s: float,
    poll_s: float = 10.0,
    api: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Creates the TrainJob and waits until it completes.

    A job that already exists under the same name (a retried step) is waited for rather than
    created again. A job that fails or times out is left in place for ``kubectl describe``.

    Args:
        manifest: The TrainJob (see :func:`build_train_job`).
        timeout_s: Seconds to wait for ``Complete`` before giving up.
        poll_s: Seconds between status reads.
        api: A ``CustomObjectsApi``; :func:`custom_objects_api` when ``None``.
        clock: Monotonic clock (tests pass a fake one).

    Returns:
        The TrainJob as last read, with its ``Complete`` condition.

    Raises:
        PipelineError: The API refused the job, the job failed (with its reason and
            message) or did not complete within ``timeout_s``.
    """
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    where = f"TrainJob {namespace}/{name}"
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        log.info("submitted %s", where)
    except ApiException as exc:
        if exc.status != 409:
            raise PipelineError(f"cannot create {where}: {exc.status} {exc.reason}") from exc
        log.info("%s exists already (a retried step): waiting for it", where)
    deadline = clock() + timeout_s
    while True:
        try:
            job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            raise PipelineError(f"cannot read {where}: {exc.status} {exc.reason}") from exc
        result = outcome(job)
        if result and result[0] == "Complete":
            return job
        if result:
            raise PipelineError(f"{where} failed: {result[1] or 'no reason given'}")
        if clock() >= deadline:
            raise PipelineError(
                f"{where} did not complete within {timeout_s:.0f} s; it is left in place "
                f"(kubectl -n {namespace} describe trainjob {name})"
            )
        time.sleep(poll_s)


def job_name(model_uri: str) -> str:
    """A DNS-label name that is the same for every retry of one step (its output URI)."""
    return f"churn-train-{hashlib.sha256(model_uri.encode()).hexdigest()[:12]}"


def train_on_cluster(
    *,
    training_set_uri: str,
    model_uri: str,
    model_path: str,
    nodes: int,
    gpus_per_node: int,
    threshold_metric: str,
    model_settings: dict,
    train_settings: dict,
    pipeline: PipelineConfig,
    api: Any = None,
    poll_s: float = 10.0,
) -> dict[str, Any]:
    """Trains with a TrainJob and brings the model folder into the step's output path.

    KFP's launcher uploads the step's output path to ``model_uri`` after the step, so the
    folder the TrainJob wrote there is fetched back and re-uploaded unchanged.

    Args:
        training_set_uri: ``s3://`` URI of the step's input training set.
        model_uri: ``s3://`` URI of the step's output model.
        model_path: Local path of the step's output model.
        nodes: Training nodes.
        gpus_per_node: GPUs (and processes) per node; 0 for CPU nodes.
        threshold_metric: ``f1`` or ``youden``.
        model_settings: ``ModelConfig`` fields.
        train_settings: ``TrainConfig`` fields, ``epochs`` included.
        pipeline: Images, namespace, accounts, resources and GPU placement.
        api: A ``CustomObjectsApi`` (tests); the cluster's when ``None``.
        poll_s: Seconds between status reads.

    Returns:
        The model's summary: ``device``, ``world_size``, ``epochs_run``, ``best_epoch``,
        ``best_val_auc``, ``threshold``.

    Raises:
        PipelineError: The job could not be built, failed or timed out.
        ContractError: The model folder could not be fetched back.
    """
    spec = TrainJobSpec(
        name=job_name(model_uri),
        namespace=pipeline.train_namespace,
        image=pipeline.gpu_image if gpus_per_node else pipeline.image,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        dataset_uri=training_set_uri,
        model_uri=model_uri,
        endpoint_url=pipeline.artifact_endpoint_url,
        model_settings=model_settings,
        train_settings=train_settings,
        threshold_metric=threshold_metric,
        service_account=pipeline.trainer_service_account,
        s3_secret=pipeline.s3_secret_name,
        cpu=pipeline.train_cpu_request,
        memory=pipeline.train_memory_request,
        accelerator=pipeline.accelerator_type,
        node_selector=(
            {pipeline.gpu_node_selector_key: pipeline.gpu_node_selector_value}
            if gpus_per_node and pipeline.gpu_node_selector_key
            else {}
        ),
        toleration_key=pipeline.gpu_toleration_key if gpus_per_node else "",
        runtime=pipeline.training_runtime,
    )
    run_train_job(build_train_job(spec), pipeline.trainjob_timeout_seconds, poll_s, api)
    dest = Path(model_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".trainjob-") as scratch:
        fetched = fetch(model_uri, scratch, pipeline.artifact_endpoint_url)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(fetched, dest)
    meta = json.loads((dest / "model.json").read_text())
    history = meta["history"]
    return {
        "device": history["device"],
        "world_size": history["world_size"],
        "epochs_run": len(history["epochs"]),
        "best_epoch": history["best_epoch"],
        "best_val_auc": history["best_val_auc"],
        "threshold": meta["threshold"],
    }

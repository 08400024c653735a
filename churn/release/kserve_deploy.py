"""KServe InferenceService for a registry version, built with the kserve SDK's objects.

The predictor runs KServe's ``kserve-torchserve`` runtime (model format ``pytorch``) on the
version's ``storageUri``, which holds ``config/config.properties`` and ``model-store/<name>.mar``
(see ``churn.release.archive``). It runs in Standard (raw Deployment) mode, so traffic reaches the
container's port 8080 directly and the NetworkPolicy in ``manifests/`` can admit that port alone. S3
credentials reach KServe's storage initializer through the service account's Secret, never through
this object."""

from __future__ import annotations

from dataclasses import dataclass

from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kubernetes.client import (
    ApiClient,
    V1Capabilities,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)
from kubernetes.config import ConfigException

from churn.errors import ServingError
from churn.settings import ServingConfig

RUNTIME = "kserve-torchserve"
MODEL_FORMAT = "pytorch"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "Standard"
CONTAINER_NAME = "kserve-container"
# The serving image's user (the kserve-torchserve runtime sets the same id).
RUN_AS_USER = 1000
# The root filesystem is read-only: TorchServe writes only to these emptyDirs (java.io.tmpdir
# holds the unpacked .mar, its pid file and the workers' sockets; logs roll at 100 MB each).
SCRATCH = {"tmp": "/tmp", "torchserve-logs": "/home/model-server/logs"}
SCRATCH_SIZE = "1Gi"
SCRATCH_ENV = {
    "TEMP": "/tmp",
    "LOG_LOCATION": "/home/model-server/logs",
    "METRICS_LOCATION": "/home/model-server/logs",
}
_REMOTE_SCHEMES = ("s3://", "gs://", "https://", "pvc://", "hf://", "oci://")


@dataclass(frozen=True)
class Resources:
    """CPU and memory of one predictor replica and the replica range.

    Attributes:
        cpu: CPU request and limit (equal, so the pod gets the Guaranteed QoS class).
        memory: Memory request and limit.
        ephemeral_storage: Local disk request and limit (scratch, logs, the model).
        min_replicas: Fewest replicas.
        max_replicas: Most replicas.
    """

    cpu: str = "1"
    memory: str = "2Gi"
    # Both scratch emptyDirs, the container's own log and the downloaded model fit in this.
    ephemeral_storage: str = "3Gi"
    min_replicas: int = 1
    max_replicas: int = 3


def build_inference_service(
    name: str,
    storage_uri: str,
    serving: ServingConfig,
    resources: Resources | None = None,
) -> V1beta1InferenceService:
    """Builds the InferenceService of one model version.

    Args:
        name: InferenceService name (also the model name clients call).
        storage_uri: The version's location from ``Registry.storage_uri`` (``s3://...``).
        serving: Namespace, service account and protocol version.
        resources: Replica size and count; :class:`Resources` defaults when ``None``.

    Returns:
        The InferenceService object.

    Raises:
        ServingError: The storage URI is a local path KServe cannot fetch, or the protocol
            version is not ``v1`` or ``v2``.
    """
    if not storage_uri.startswith(_REMOTE_SCHEMES):
        raise ServingError(
            f"KServe cannot fetch {storage_uri!r}: publish to an s3:// registry "
            f"(storageUri must start with one of {', '.join(_REMOTE_SCHEMES)})"
        )
    if serving.protocol_version not in ("v1", "v2"):
        raise ServingError(
            f"protocol_version must be 'v1' or 'v2', got {serving.protocol_version!r}"
        )
    resources = resources or Resources()
    limits = {
        "cpu": resources.cpu,
        "memory": resources.memory,
        "ephemeral-storage": resources.ephemeral_storage,
    }
    container_security = V1SecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        capabilities=V1Capabilities(drop=["ALL"]),
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )
    # The pod-level context also covers the storage initializer KServe injects.
    pod_security = V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        fs_group=RUN_AS_USER,
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )
    return V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=name,
            namespace=serving.namespace,
            labels={"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "churn-platform"},
            annotations={DEPLOYMENT_MODE_ANNOTATION: DEPLOYMENT_MODE},
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                service_account_name=serving.service_account,
                min_replicas=resources.min_replicas,
                max_replicas=resources.max_replicas,
                security_context=pod_security,
                volumes=[
                    V1Volume(name=name, empty_dir=V1EmptyDirVolumeSource(size_limit=SCRATCH_SIZE))
                    for name in SCRATCH
                ],
                model=V1beta1ModelSpec(
                    name=CONTAINER_NAME,
                    model_format=V1beta1ModelFormat(name=MODEL_FORMAT),
                    runtime=RUNTIME,
                    protocol_version=serving.protocol_version,
                    storage_uri=storage_uri,
                    resources=V1ResourceRequirements(requests=limits, limits=dict(limits)),
                    security_context=container_security,
                    # Merged by name with the runtime's env, so TS_SERVICE_ENVELOPE stays.
                    env=[V1EnvVar(name=k, value=v) for k, v in SCRATCH_ENV.items()],
                    volume_mounts=[
                        V1VolumeMount(name=name, mount_path=path) for name, path in SCRATCH.items()
                    ],
                ),
            )
        ),
    )


def to_manifest(isvc: V1beta1InferenceService) -> dict:
    """The InferenceService as a Kubernetes manifest (camelCase keys, no ``None`` fields).

    Args:
        isvc: The object from :func:`build_inference_service`.

    Returns:
        A dict ready for YAML or the API server.
    """
    return ApiClient().sanitize_for_serialization(isvc)


def storage_patch(isvc: V1beta1InferenceService) -> V1beta1InferenceService:
    """The part of an InferenceService a release changes: the predictor's ``storageUri``.

    Replicas, resources and everything else belong to whoever applied the manifests (the
    production overlay sets 2 to 6 replicas); a release that sent the whole object would
    merge-patch them back to this module's defaults.

    Args:
        isvc: The full object from :func:`build_inference_service`.

    Returns:
        A minimal object: name, namespace, container name, model format and storage URI.
    """
    model = isvc.spec.predictor.model
    return V1beta1InferenceService(
        api_version=isvc.api_version,
        kind=isvc.kind,
        metadata=V1ObjectMeta(name=isvc.metadata.name, namespace=isvc.metadata.namespace),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                # The SDK serialises an unset container name as "", which would rename it.
                model=V1beta1ModelSpec(
                    name=model.name,
                    model_format=V1beta1ModelFormat(name=model.model_format.name),
                    storage_uri=model.storage_uri,
                )
            )
        ),
    )


def deploy(isvc: V1beta1InferenceService, namespace: str) -> dict:
    """Creates the InferenceService, or points the existing one at the new version.

    The kubeconfig (or the in-cluster service account) decides which cluster. An existing
    InferenceService gets only :func:`storage_patch`, so its sizing is left alone.

    Args:
        isvc: The object from :func:`build_inference_service`.
        namespace: Target namespace.

    Returns:
        The object the API server stored.

    Raises:
        ServingError: The cluster cannot be reached or refuses the object.
    """
    try:
        client = KServeClient()
    except ConfigException as exc:
        raise ServingError(f"cannot load a Kubernetes configuration: {exc}") from exc
    manifest = to_manifest(isvc)
    name = manifest["metadata"]["name"]
    try:
        return client.create(isvc, namespace=namespace)
    except RuntimeError as exc:
        if "(409)" not in str(exc) and "AlreadyExists" not in str(exc):
            raise ServingError(
                f"creating InferenceService {namespace}/{name} failed: {exc}"
            ) from exc
    try:
        return client.patch(name, storage_patch(isvc), namespace=namespace)
    except RuntimeError as exc:
        raise ServingError(f"patching InferenceService {namespace}/{name} failed: {exc}") from exc

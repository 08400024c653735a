"""KServe InferenceService for a registry version, built with the kserve SDK's objects.

The predictor runs KServe's ``kserve-torchserve`` runtime (model format ``pytorch``) on the
version's ``storageUri``, which holds ``config/config.properties`` and ``model-store/<name>.mar``
(see ``churn.release.archive``). It runs in Standard (raw Deployment) mode, so traffic reaches the
container's port 8080 directly and the NetworkPolicy in ``manifests/`` can admit that port alone. S3
credentials reach KServe's storage initializer through the service account's Secret, never through
this object.

:func:`deploy` is all-at-once with a readiness gate: it waits until the predictor Deployment has
rolled out the new ``storageUri`` and restores the previous one if that never happens (see
:func:`judge` for what counts as Ready in Standard mode). KServe has no working canary here:
``canaryTrafficPercent`` is ignored in Standard mode (kserve#5335)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    V1beta1TransformerSpec,
)
from kserve import (
    constants as kserve_constants,
)
from kserve.models.v1beta1_storage_uri import V1beta1StorageUri
from kubernetes.client import (
    ApiClient,
    ApiException,
    V1Capabilities,
    V1ConfigMapVolumeSource,
    V1Container,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1EnvVarSource,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecretKeySelector,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)
from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError

from churn.errors import RolloutError, ServingError
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
# The transformer (manifests/base/inferenceservice.yaml, field for field): the model version at
# /mnt/models, Feast's configuration from the ConfigMap, secrets only by reference.
TRANSFORMER_MODEL_DIR = "/mnt/models"
FEAST_CONFIG = ("churn-feast", "/etc/churn/feast")
TRANSFORMER_ENV = {
    "CHURN_TRANSFORMER__HOST": "0.0.0.0",
    "CHURN_TRANSFORMER__FEATURE_REPO": FEAST_CONFIG[1],
    "CHURN_TRANSFORMER__MODEL_DIR": TRANSFORMER_MODEL_DIR,
    # Materialization runs daily: a day and a half leaves room for one late run.
    "CHURN_TRANSFORMER__MAX_FEATURE_AGE_HOURS": "36",
    "CHURN_TRANSFORMER__LOG_URI": "s3://churn-models/inference-log",
    "CHURN_HOME": "/tmp/churn",
    "HOME": "/tmp",
    "FEAST_USAGE": "False",
}
TRANSFORMER_SECRET_ENV = {
    "FEAST_REGISTRY_URL": "churn-feast",
    "REDIS_CONNECTION_STRING": "churn-feast",
    "AWS_ACCESS_KEY_ID": "churn-s3",
    "AWS_SECRET_ACCESS_KEY": "churn-s3",
}
_REMOTE_SCHEMES = ("s3://", "gs://", "https://", "pvc://", "hf://", "oci://")
# PredictorReady's reason once the predictor Deployment has finished rolling out (Standard mode).
READY_REASON = "NewReplicaSetAvailable"
# PredictorReady False for good: the Deployment exceeded its progressDeadlineSeconds.
TERMINAL_REASONS = ("ProgressDeadlineExceeded",)
# The reason of a rollback whose patch the API server refused.
RESTORE_FAILED = "RestoreFailed"
# Standard is KServe 0.16+'s name for RawDeployment; both run the predictor as a Deployment.
STANDARD_MODES = ("Standard", "RawDeployment")

log = logging.getLogger(__name__)


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
        serving: Namespace, service account, protocol version, and the predictor's size
            and most replicas.
        resources: Replica size and count instead of ``serving``'s (the base manifest's
            sizing, for the test that keeps the two equal).

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
    resources = resources or Resources(
        cpu=serving.predictor_cpu,
        memory=serving.predictor_memory,
        max_replicas=serving.max_replicas,
    )
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
                # No name: KServe 0.16 and later refuse one in a standard predictor ("the
                # 'name' field is not allowed in standard predictor") and name the container
                # kserve-container themselves. None, not the SDK's default "", so that the
                # object has no name at all, like the base manifest.
                model=V1beta1ModelSpec(
                    name=None,
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
            ),
            transformer=_transformer(storage_uri, serving, resources, pod_security)
            if serving.transformer_image
            else None,
        ),
    )


def _transformer(
    storage_uri: str,
    serving: ServingConfig,
    resources: Resources,
    pod_security: V1PodSecurityContext,
) -> V1beta1TransformerSpec:
    """The transformer in front of the predictor, on the same registry version."""
    limits = {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"}
    values = dict(TRANSFORMER_ENV)
    if serving.transformer_log_endpoint_url:
        values["CHURN_TRANSFORMER__LOG_ENDPOINT_URL"] = serving.transformer_log_endpoint_url
    env = [V1EnvVar(name=k, value=v) for k, v in values.items()] + [
        V1EnvVar(
            name=key,
            value_from=V1EnvVarSource(secret_key_ref=V1SecretKeySelector(name=secret, key=key)),
        )
        for key, secret in TRANSFORMER_SECRET_ENV.items()
    ]
    return V1beta1TransformerSpec(
        service_account_name=serving.service_account,
        min_replicas=resources.min_replicas,
        max_replicas=resources.max_replicas,
        security_context=pod_security,
        storage_uris=[V1beta1StorageUri(uri=storage_uri, mount_path=TRANSFORMER_MODEL_DIR)],
        volumes=[
            V1Volume(name="tmp", empty_dir=V1EmptyDirVolumeSource(size_limit="256Mi")),
            V1Volume(name="feast-config", config_map=V1ConfigMapVolumeSource(name=FEAST_CONFIG[0])),
        ],
        containers=[
            V1Container(
                name=CONTAINER_NAME,
                image=serving.transformer_image,
                command=["python", "-m", "serving.transformer"],
                # KServe appends --model_name, --predictor_host and --http_port.
                args=["--predictor_protocol", serving.protocol_version],
                env=env,
                resources=V1ResourceRequirements(requests=limits, limits=dict(limits)),
                security_context=V1SecurityContext(
                    run_as_non_root=True,
                    run_as_user=RUN_AS_USER,
                    allow_privilege_escalation=False,
                    privileged=False,
                    read_only_root_filesystem=True,
                    capabilities=V1Capabilities(drop=["ALL"]),
                    seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
                ),
                volume_mounts=[
                    V1VolumeMount(name="tmp", mount_path="/tmp"),
                    V1VolumeMount(name="feast-config", mount_path=FEAST_CONFIG[1], read_only=True),
                ],
            )
        ],
    )


def to_manifest(isvc: V1beta1InferenceService) -> dict:
    """The InferenceService as a Kubernetes manifest (camelCase keys, no ``None`` fields).

    Args:
        isvc: The object from :func:`build_inference_service`.

    Returns:
        A dict ready for YAML or the API server.
    """
    return ApiClient().sanitize_for_serialization(isvc)


def storage_patch(
    isvc: V1beta1InferenceService, storage_uri: str | None = None, transformer: bool = False
) -> dict:
    """The part of an InferenceService a release changes: the version's storage URIs.

    Replicas, resources, the runtime and its model format belong to whoever applied the
    manifests (the production overlay sets 2 to 6 replicas; ``production-kserve`` serves the
    ``churn`` format on its own runtime): a release that sent them would merge-patch them back
    to this module's defaults. A plain merge patch, not an SDK object, which would serialise
    its unset fields too.

    Args:
        isvc: The full object from :func:`build_inference_service`.
        storage_uri: The URI to point at instead of ``isvc``'s (a rollback's).
        transformer: Whether the live service has a transformer, whose ``storageUris`` name
            the same version (a list, which a merge patch replaces whole). Without one, the
            patch adds none: a transformer without containers would be refused.

    Returns:
        The JSON merge patch: the predictor's ``storageUri``, and the transformer's
        ``storageUris``.
    """
    uri = storage_uri or isvc.spec.predictor.model.storage_uri
    spec: dict = {"predictor": {"model": {"storageUri": uri}}}
    if transformer:
        spec["transformer"] = {"storageUris": [{"uri": uri, "mountPath": TRANSFORMER_MODEL_DIR}]}
    return {
        "apiVersion": isvc.api_version,
        "kind": isvc.kind,
        "metadata": {"name": isvc.metadata.name, "namespace": isvc.metadata.namespace},
        "spec": spec,
    }


def _patch(client: KServeClient, name: str, namespace: str, body: dict) -> dict:
    """Sends a merge patch (``KServeClient.patch`` takes only SDK objects)."""
    return client.api_instance.patch_namespaced_custom_object(
        kserve_constants.KSERVE_GROUP,
        body["apiVersion"].split("/")[1],
        namespace,
        kserve_constants.KSERVE_PLURAL_INFERENCESERVICE,
        name,
        body,
    )


@dataclass(frozen=True)
class Baseline:
    """The status read just before a change: what a stale status still shows afterwards.

    Attributes:
        observed_generation: ``status.observedGeneration``. In Standard mode KServe copies it
            from the component Deployments (not the InferenceService's own generation); a new
            ``storageUri`` rewrites their pod templates, so it rises once they have seen the
            change.
        predictor: The ``PredictorReady`` condition's (status, reason, message), or ``None``.
        transformer: The ``TransformerReady`` condition's, or ``None``.
    """

    observed_generation: int
    predictor: tuple[str, str, str] | None
    transformer: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Verdict:
    """Where a rollout stands: ``ready``, ``failed`` or ``pending``, with the reason."""

    state: str
    reason: str
    message: str


def baseline_of(obj: dict) -> Baseline:
    """The :class:`Baseline` of an InferenceService as the API server returned it."""
    status = obj.get("status") or {}
    return Baseline(
        int(status.get("observedGeneration") or 0),
        _condition(status, "PredictorReady"),
        _condition(status, "TransformerReady"),
    )


def judge(obj: dict, baseline: Baseline | None, *, failures: bool = True) -> Verdict:
    """Whether an InferenceService serves its current spec, in Standard mode.

    Ready means ``Ready`` is True and ``PredictorReady`` is True with reason
    ``NewReplicaSetAvailable``: the predictor Deployment finished its rollout. While old pods
    still serve during a rolling update, KServe reports ``PredictorReady`` True with reason
    ``MinimumReplicasAvailable``, which is not enough. A service with a transformer needs
    ``TransformerReady`` the same way: its pods read the new version's ``model.json``, and
    while new ones crash-loop the old ones keep every condition True. A terminal failure is
    either condition False with reason ``ProgressDeadlineExceeded`` (a Deployment gave up),
    or a ``modelStatus`` whose target state is ``FailedToLoad`` (the storage initializer or
    the model server failed; the reason comes from ``lastFailureInfo``).

    Nothing counts until the status is newer than ``baseline``: ``observedGeneration`` must
    have risen, and for Ready each condition must differ from the one read before the change
    (a finished rollout names its new ReplicaSet in the message).

    Args:
        obj: The InferenceService.
        baseline: Its status before the change; ``None`` when the change altered nothing,
            so the current status already describes the spec.
        failures: Whether terminal failures count. ``modelStatus`` describes whichever pod
            KServe lists first, so while a rollback removes a failed version's pods it can
            still show their failure; a rollback waits for Ready or its timeout instead.

    Returns:
        The verdict.
    """
    status = obj.get("status") or {}
    predictor = _condition(status, "PredictorReady")
    generation = int(status.get("observedGeneration") or 0)
    if baseline is not None and generation <= baseline.observed_generation:
        return Verdict(
            "pending",
            "NotObservedYet",
            f"status.observedGeneration is still {generation}: the predictor Deployment has "
            "not taken the change yet",
        )
    has_transformer = bool((obj.get("spec") or {}).get("transformer"))
    transformer = _condition(status, "TransformerReady") if has_transformer else None
    failure = _terminal_failure(status, predictor, transformer) if failures else None
    if failure is not None:
        return failure
    ready = _condition(status, "Ready")
    predictor_done = _rolled_out(predictor, baseline.predictor if baseline else None, baseline)
    transformer_done = not has_transformer or _rolled_out(
        transformer, baseline.transformer if baseline else None, baseline
    )
    if ready is not None and ready[0] == "True" and predictor_done and transformer_done:
        assert predictor is not None
        return Verdict("ready", predictor[1], predictor[2])
    # The component still rolling out says why.
    shown = (transformer if predictor_done else predictor) or ready
    if shown is None:
        return Verdict("pending", "NoStatus", "KServe has not reported a Ready condition yet")
    return Verdict("pending", shown[1] or shown[0], shown[2])


def _rolled_out(
    condition: tuple[str, str, str] | None,
    before: tuple[str, str, str] | None,
    baseline: Baseline | None,
) -> bool:
    """A component's Deployment finished rolling out a change made since ``baseline``."""
    fresh = baseline is None or condition != before
    return fresh and condition is not None and condition[:2] == ("True", READY_REASON)


def _condition(status: dict, kind: str) -> tuple[str, str, str] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return (
                str(condition.get("status", "Unknown")),
                str(condition.get("reason") or ""),
                str(condition.get("message") or ""),
            )
    return None


def _terminal_failure(
    status: dict,
    predictor: tuple[str, str, str] | None,
    transformer: tuple[str, str, str] | None = None,
) -> Verdict | None:
    for condition in (predictor, transformer):
        if condition is not None and condition[0] == "False" and condition[1] in TERMINAL_REASONS:
            return Verdict("failed", condition[1], condition[2])
    model_status = status.get("modelStatus") or {}
    if (model_status.get("states") or {}).get("targetModelState") == "FailedToLoad":
        # lastFailureInfo outlives a recovery, so only the current target state decides.
        info = model_status.get("lastFailureInfo") or {}
        return Verdict(
            "failed", str(info.get("reason") or "FailedToLoad"), str(info.get("message") or "")
        )
    return None


def wait_ready(
    client: KServeClient,
    name: str,
    namespace: str,
    baseline: Baseline | None,
    timeout_s: float,
    poll_s: float,
    *,
    failures: bool = True,
) -> Verdict:
    """Reads the InferenceService until :func:`judge` says ready or failed, or time runs out.

    An API error while waiting counts as not ready yet (a control-plane restart must not
    abort a rollout); the last one is reported if time runs out.

    Args:
        client: The KServe client.
        name: InferenceService name.
        namespace: Its namespace.
        baseline: The status before the change (see :func:`judge`).
        timeout_s: How long to wait.
        poll_s: Pause between reads.
        failures: Whether terminal failures end the wait (see :func:`judge`).

    Returns:
        A ``ready`` or ``failed`` verdict; a timeout is ``failed`` with reason ``Timeout``.
    """
    deadline = time.monotonic() + timeout_s
    last = Verdict("pending", "NoStatus", "nothing read yet")
    while True:
        seen = last
        try:
            last = judge(client.get(name, namespace=namespace), baseline, failures=failures)
        except (RuntimeError, HTTPError) as exc:
            last = Verdict("pending", "ApiError", _one_line(exc))
        if last.state != "pending":
            return last
        if last != seen:
            log.info("waiting for %s/%s: %s: %s", namespace, name, last.reason, last.message)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Verdict(
                "failed",
                "Timeout",
                f"not Ready within {timeout_s:g} s (last seen: {last.reason}: {last.message})",
            )
        time.sleep(min(poll_s, remaining))


def deploy(
    isvc: V1beta1InferenceService,
    namespace: str,
    *,
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
) -> dict:
    """Creates the InferenceService, or points the existing one at the new version, and
    waits until it serves it; a version that never becomes Ready is rolled back.

    The kubeconfig (or the in-cluster service account) decides which cluster. An existing
    InferenceService gets only :func:`storage_patch`, so its sizing is left alone. If the new
    version fails (:func:`judge`) or is not Ready within ``timeout_s``, the previous
    ``storageUri`` is patched back and waited for as long again. A service this call created
    is never deleted (the deployer's Role cannot delete, and nothing served before).

    Args:
        isvc: The object from :func:`build_inference_service`.
        namespace: Target namespace.
        timeout_s: How long the new version (and then a restore) may take to become Ready.
        poll_s: Pause between status reads.

    Returns:
        The rollout: namespace, name, ``storage_uri``, ``previous_storage_uri`` (``None``
        when the service did not exist), ``outcome`` ``succeeded``, reason, message and times.

    Raises:
        RolloutError: The new version did not become Ready; ``rollout`` says why, whether
            the previous one was restored and whether that became Ready.
        ServingError: The cluster cannot be reached, refuses the object, or runs the service
            in a mode whose readiness this function cannot judge.
    """
    client = _client()
    name = isvc.metadata.name
    target = isvc.spec.predictor.model.storage_uri
    rollout: dict = {"namespace": namespace, "name": name, "storage_uri": target}
    rollout["started_at"] = _now()
    previous, baseline = _apply(client, isvc, namespace)
    rollout["previous_storage_uri"] = previous
    verdict = wait_ready(client, name, namespace, baseline, timeout_s, poll_s)
    rollout.update(decided_at=_now(), reason=verdict.reason, message=verdict.message)
    if verdict.state == "ready":
        rollout.update(outcome="succeeded", rolled_back=False, finished_at=_now())
        log.info("InferenceService %s/%s is Ready on %s", namespace, name, target)
        return rollout
    rollout["outcome"] = "failed"
    restore = previous if previous not in (None, target) else None
    rollout["rolled_back"] = False
    log.error(
        "InferenceService %s/%s did not become Ready on %s: %s: %s",
        namespace,
        name,
        target,
        verdict.reason,
        verdict.message,
    )
    if restore is not None:
        restored = _restore(client, isvc, restore, namespace, timeout_s, poll_s)
        rollout.update(
            rolled_back=restored.reason != RESTORE_FAILED,
            rollback_ready=restored.state == "ready",
            rollback_reason=restored.reason,
            rollback_message=restored.message,
        )
    rollout["finished_at"] = _now()
    raise RolloutError(failure_message(rollout, target, previous), rollout)


def _apply(
    client: KServeClient, isvc: V1beta1InferenceService, namespace: str
) -> tuple[str | None, Baseline | None]:
    """Creates or patches; returns the previous storageUri and the baseline to wait against."""
    name = isvc.metadata.name
    current = _get_or_none(client, name, namespace)
    if current is None:
        _call(
            f"creating InferenceService {namespace}/{name}",
            lambda: client.create(isvc, namespace=namespace),
        )
        return None, Baseline(0, None)
    _check_mode(current, namespace, name)
    model = ((current.get("spec") or {}).get("predictor") or {}).get("model") or {}
    before = baseline_of(current)
    has_transformer = bool((current.get("spec") or {}).get("transformer"))
    stored = _call(
        f"patching InferenceService {namespace}/{name}",
        lambda: _patch(client, name, namespace, storage_patch(isvc, None, has_transformer)),
    )
    unchanged = _generation(stored) == _generation(current)
    return model.get("storageUri"), None if unchanged else before


def _restore(
    client: KServeClient,
    isvc: V1beta1InferenceService,
    previous: str,
    namespace: str,
    timeout_s: float,
    poll_s: float,
) -> Verdict:
    name = isvc.metadata.name
    log.warning("restoring %s/%s to %s", namespace, name, previous)
    try:
        current = _call(
            f"reading {namespace}/{name}", lambda: client.get(name, namespace=namespace)
        )
        before = baseline_of(current)
        has_transformer = bool((current.get("spec") or {}).get("transformer"))
        _call(
            f"restoring {namespace}/{name} to {previous}",
            lambda: _patch(client, name, namespace, storage_patch(isvc, previous, has_transformer)),
        )
    except ServingError as exc:
        return Verdict("failed", RESTORE_FAILED, str(exc))
    return wait_ready(client, name, namespace, before, timeout_s, poll_s, failures=False)


def failure_message(rollout: dict, new: str, previous: str | None) -> str:
    """One line saying why a rollout failed and what was restored.

    Args:
        rollout: The ``rollout`` of a :class:`~churn.errors.RolloutError`.
        new: How to name what was rolled out (its storage URI, or a version).
        previous: How to name what was there before (``None``: nothing was).

    Returns:
        The message.
    """
    head = (
        f"InferenceService {rollout['namespace']}/{rollout['name']} did not become Ready on "
        f"{new} ({rollout['reason']}: {rollout['message']})"
    )
    if rollout["previous_storage_uri"] is None:
        return f"{head}; it did not exist before, so nothing was rolled back"
    if "rollback_reason" not in rollout:
        return f"{head}; it already pointed there, so there is nothing to roll back to"
    if not rollout["rolled_back"]:
        return f"{head}; it still points there: {rollout['rollback_message']}"
    if rollout["rollback_ready"]:
        return f"{head}; rolled back to {previous}, which is Ready again"
    return (
        f"{head}; rolled back to {previous}, which did not become Ready either "
        f"({rollout['rollback_reason']}: {rollout['rollback_message']})"
    )


def _client() -> KServeClient:
    try:
        return KServeClient()
    except ConfigException as exc:
        raise ServingError(f"cannot load a Kubernetes configuration: {exc}") from exc


def _get_or_none(client: KServeClient, name: str, namespace: str) -> dict | None:
    try:
        return client.get(name, namespace=namespace)
    except RuntimeError as exc:
        if "(404)" in str(exc):
            return None
        raise ServingError(
            f"reading InferenceService {namespace}/{name} failed: {_one_line(exc)}"
        ) from exc
    except HTTPError as exc:
        raise ServingError(
            f"reading InferenceService {namespace}/{name} failed: {_one_line(exc)}"
        ) from exc


def _call(action: str, request: Callable[[], Any]) -> Any:
    """One API call; its errors become one-line ServingErrors naming the action."""
    try:
        return request()
    except (RuntimeError, HTTPError, ApiException) as exc:
        # The SDK's own calls wrap the client's ApiException in a RuntimeError; _patch does not.
        raise ServingError(f"{action} failed: {_one_line(exc)}") from exc


def _check_mode(current: dict, namespace: str, name: str) -> None:
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    mode = (current.get("status") or {}).get("deploymentMode") or annotations.get(
        DEPLOYMENT_MODE_ANNOTATION
    )
    if mode and mode not in STANDARD_MODES:
        raise ServingError(
            f"InferenceService {namespace}/{name} runs in {mode} mode; this deploy confirms "
            f"readiness only in Standard mode (annotation {DEPLOYMENT_MODE_ANNOTATION}: "
            f"{DEPLOYMENT_MODE}), so it was left unchanged"
        )


def _generation(obj: dict) -> int | None:
    return (obj.get("metadata") or {}).get("generation")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

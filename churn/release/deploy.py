"""Deploying a registered version: a local TorchServe smoke test, KServe, or nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from churn.errors import RegistryError, RolloutError, ServingError
from churn.io.leftovers import owned_tempdir
from churn.settings import RegistryConfig, ServingConfig

if TYPE_CHECKING:
    from churn.release.registry import Registry

log = logging.getLogger(__name__)

DEPLOY_TARGETS = ("local", "kserve", "none")


def sample_instance(dataset_dir: str | Path, split: str = "test", row: int = 0) -> tuple[str, dict]:
    """A real serving request built from one row of a training set.

    Args:
        dataset_dir: Training set folder.
        split: Split to take the row from.
        row: Row index.

    Returns:
        The row's customer id and the instance (``sequence``, ``numeric``, ``categorical``
        with raw values, as ``churn/release/torchserve_handler.py`` expects).
    """
    from churn.dataset.training_set import load_training_set

    ts = load_training_set(dataset_dir, splits=(split,))
    part, meta = ts.splits[split], ts.meta
    instance = {
        "sequence": {name: part.seq[row, c].tolist() for c, name in enumerate(meta["channels"])},
        "numeric": {
            name: float(part.num[row, j]) for j, name in enumerate(meta["numeric_features"])
        },
        "categorical": {
            name: vocab[int(part.cat[row, k])]
            for k, (name, vocab) in enumerate(meta["categorical_features"].items())
        },
    }
    return str(part.customer_id[row]), instance


def online_instance(
    feature_repo: str | Path, input_spec: dict, customer_id: str
) -> tuple[dict | None, str]:
    """A customer's request from the online store, built as the transformer builds it.

    Args:
        feature_repo: The feature repository.
        input_spec: The model's input spec.
        customer_id: The customer.

    Returns:
        The instance, or ``None`` with the reason when the repository is not built, its online
        store not materialized, or the customer not in it.

    Raises:
        FeatureStoreError: The repository's features do not fit the model.
    """
    from churn.features.request import build_request, check_fits, model_feature_spec
    from churn.features.store import FeatureRepo, FeatureStoreError

    repo = FeatureRepo(feature_repo)
    spec = model_feature_spec(input_spec)
    try:
        check_fits(repo.spec, input_spec)
    except FeatureStoreError as exc:
        if not (repo.sources / "spec.json").is_file():
            return None, str(exc)
        raise
    try:
        features = repo.online_reader(spec).read([customer_id])
    except FeatureStoreError as exc:
        return None, str(exc)
    request = build_request([customer_id], features, spec, input_spec)
    if not request.known[0]:
        return None, f"the online store of {feature_repo} has no features of {customer_id}"
    return request.instances[0], "online store"


def deploy_version(
    target: str,
    version: str,
    registry_cfg: RegistryConfig,
    serving_cfg: ServingConfig,
    dataset_dir: str | Path,
    feature_repo: str | Path | None = None,
) -> dict:
    """Deploys a registered version.

    ``local`` downloads the version (checksums verified), serves its archive with TorchServe
    on free loopback ports, sends one real request from the training set's test split and
    stops; ``kserve`` creates or patches the InferenceService on the version's storage URI,
    waits until it is Ready (``rollout_timeout_seconds``), restores the previous storage URI
    if it never is, and records the rollout in the registry either way; ``none`` does nothing.

    The local request is for the first customer of the training set's test split: built
    from the online store with ``churn.features.request.build_request`` (what the
    transformer sends) when ``feature_repo`` is given and its online store holds the
    customer, else from the training set's row.

    Args:
        target: ``local``, ``kserve`` or ``none``.
        version: The version id.
        registry_cfg: Registry settings.
        serving_cfg: Namespace, service account and protocol for KServe.
        dataset_dir: Training set folder the smoke-test customer (and fallback request)
            comes from.
        feature_repo: Feature repository whose online store the local request is read from.

    Returns:
        What was done: the target and version, plus the request's customer, its source
        (``online store`` or ``training set``) and the prediction (``local``), or the
        InferenceService's namespace, name, storage URI, the previous version and the rollout
        record's path (``kserve``).
        ``kserve`` deploys only the current champion: a version another run has superseded
        since it registered gets ``skipped`` instead, with the reason.

    Raises:
        ServingError: The target is unknown, TorchServe does not answer, the cluster
            refuses the InferenceService, or the version did not become Ready (the message
            gives the reason and what was rolled back to).
        RegistryError: The rollout succeeded but could not be recorded.
    """
    if target not in DEPLOY_TARGETS:
        raise ServingError(f"deploy target must be one of {DEPLOY_TARGETS}, got {target!r}")
    if target == "none":
        log.info(
            "deploy target is 'none': %s %s stays undeployed", registry_cfg.model_name, version
        )
        return {"target": target, "version": version}

    from churn.release.registry import open_registry

    registry = open_registry(registry_cfg)
    if target == "kserve":
        return _deploy_kserve(registry, version, registry_cfg, serving_cfg)

    from churn.release.torchserve import LocalTorchServe

    customer_id, instance = sample_instance(dataset_dir)
    source = "training set"
    with owned_tempdir("churn-deploy-") as tmp:
        registry.download(version, tmp)
        if feature_repo is not None:
            input_spec = json.loads((Path(tmp) / "model" / "model.json").read_text())["input_spec"]
            online, why = online_instance(feature_repo, input_spec, customer_id)
            if online is None:
                log.warning("the smoke test's request comes from the training set: %s", why)
            else:
                instance, source = online, why
        # Free ports rather than the configured ones: a served model may already hold them.
        with LocalTorchServe(
            Path(tmp) / "model-store", registry_cfg.model_name, host=serving_cfg.host
        ) as server:
            prediction = server.predict([instance])[0]
    log.info(
        "local TorchServe answered for customer %s (request from the %s): churn probability "
        "%.4f (%s %s)",
        customer_id,
        source,
        prediction["churn_probability"],
        registry_cfg.model_name,
        version,
    )
    return {
        "target": target,
        "version": version,
        "customer_id": customer_id,
        "request_source": source,
        "prediction": prediction,
    }


def _deploy_kserve(
    registry: Registry, version: str, registry_cfg: RegistryConfig, serving_cfg: ServingConfig
) -> dict:
    """Rolls the champion out on KServe and records the rollout in the registry."""
    from churn.release.kserve_deploy import build_inference_service, deploy, failure_message

    # A slow run must not roll the service back: if a later run has promoted since this
    # one registered, the service already serves (or is about to serve) the newer champion.
    # Read first: a rollback swaps the pointer back only from exactly these bytes.
    observed = registry.pointer()
    champion = registry.champion()
    if champion is None or champion.version != version or observed.version != version:
        current = champion.version if champion else "none"
        log.warning(
            "%s %s is no longer the champion (%s is); the InferenceService is left as is",
            registry_cfg.model_name,
            version,
            current,
        )
        return {"target": "kserve", "version": version, "skipped": f"champion is {current}"}
    storage_uri = registry.storage_uri(version)
    isvc = build_inference_service(registry_cfg.model_name, storage_uri, serving_cfg)
    label = f"{registry_cfg.model_name} {version}"
    try:
        rollout = deploy(
            isvc,
            serving_cfg.namespace,
            timeout_s=serving_cfg.rollout_timeout_seconds,
            poll_s=serving_cfg.rollout_poll_seconds,
        )
    except RolloutError as exc:
        record = _rollout_record(registry, version, exc.rollout)
        previous = record["previous"] or exc.rollout["previous_storage_uri"]
        message = failure_message(exc.rollout, label, previous)
        record["champion_after"], pointer_note = _return_champion(
            registry, version, record, observed.raw
        )
        message = f"{message}; {pointer_note}"
        try:
            where = registry.record_rollout(record)
        except RegistryError as record_exc:
            raise ServingError(
                f"{message}; the registry could not record it: {record_exc}"
            ) from exc
        raise ServingError(f"{message}; recorded in the registry as {where}") from exc
    record = _rollout_record(registry, version, rollout)
    try:
        where = registry.record_rollout(record)
    except RegistryError as exc:
        raise RegistryError(
            f"{serving_cfg.namespace}/{registry_cfg.model_name} serves {label}, but the "
            f"registry could not record the rollout: {exc}"
        ) from exc
    log.info(
        "InferenceService %s/%s now serves %s (rollout recorded as %s)",
        serving_cfg.namespace,
        registry_cfg.model_name,
        storage_uri,
        where,
    )
    return {
        "target": "kserve",
        "version": version,
        "namespace": serving_cfg.namespace,
        "name": registry_cfg.model_name,
        "storage_uri": storage_uri,
        "previous": record["previous"],
        "rollout_record": where,
    }


def _return_champion(
    registry: Registry, version: str, record: dict, observed: bytes | None
) -> tuple[str | None, str]:
    """After a failed rollout that restored the previous version and saw it Ready again,
    points the champion back at it, so that the pointer names what serves: the monitor reads
    the champion's inference log and reference, and a pointer on a version that never served
    would leave it blind.

    Compare-and-swap on the pointer's bytes as read before the rollout (``observed``): if
    another run promoted since, its pointer stays, even one that promoted away and back to
    the failed version (which that run then deployed itself).

    Returns:
        The champion afterwards and one clause saying what happened to the pointer.
    """
    previous = record["previous"]
    if not record.get("rolled_back"):
        return version, f"the champion pointer stays on {version}, where the service points"
    if not record.get("rollback_ready"):
        return version, (
            f"the champion pointer stays on {version}: the version restored did not become "
            "Ready either, so no version serves"
        )
    if previous is None:
        return version, (
            f"the champion pointer stays on {version}: the service went back to "
            f"{record['previous_storage_uri']}, which is no version of this registry"
        )
    try:
        registry.promote(
            previous,
            expected_champion=version,
            allow_input_change=f"back to the version that serves: {version} never became Ready",
            expected_pointer=observed,
        )
    except RegistryError as exc:
        log.error("the champion pointer stays where it is: %s", exc)
        return _pointer_version(registry), (
            f"the champion pointer was not moved back to {previous}: {exc}"
        )
    log.warning("champion pointer of %s back on %s", registry.model_name, previous)
    return previous, f"the champion pointer is back on {previous}"


def _pointer_version(registry: Registry) -> str | None:
    """What the pointer names now (another run's promotion, say); ``None`` if it is damaged
    or cannot be read, which must not keep the failed rollout from being recorded."""
    try:
        state = registry.pointer()
    except RegistryError as exc:
        log.error("cannot read the champion pointer: %s", exc)
        return None
    return None if state.damaged else state.version


def _rollout_record(registry: Registry, version: str, rollout: dict) -> dict:
    previous_uri = rollout["previous_storage_uri"]
    previous = registry.version_of(previous_uri) if previous_uri else None
    return {"model_name": registry.model_name, "version": version, "previous": previous, **rollout}

"""Release steps: the AUC gate, registration, deployment and the record of a rejection.

Component bodies (see ``components.factory.make_components``): imports sit inside the functions
because KFP ships only the function's source to the container.
"""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def gate(
    candidate_auc: float,
    auc_threshold: float,
    registry: dict,
    evaluation: Input[Artifact],
    training_set: Input[Dataset],
    allow_input_change: str,
    decision: Output[Artifact],
    refuse_below_baseline: bool = True,
) -> float:
    """Decides whether the candidate replaces the champion.

    The answer is a float (1.0 promote, 0.0 reject) so the pipeline's condition compares a
    float with a float: kfp.local cannot evaluate a comparison that mixes int and float.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        auc_threshold: Minimum ROC-AUC for promotion.
        registry: ``RegistryConfig`` fields: ``uri`` (a folder or ``s3://bucket/prefix``),
            ``endpoint_url`` (non-AWS stores) and ``model_name``.
        evaluation: The candidate's evaluation folder; the decision records where it is, and
            the candidate is refused when its ``metrics.json`` shows it significantly below
            the best baseline.
        training_set: The candidate's training set: the champion is re-scored on its test
            split, so both ROC-AUCs come from the same rows.
        allow_input_change: Names a deliberate change of the input spec (channels, bins,
            length, horizon, features, vocabularies); ``""`` refuses a candidate whose spec
            differs from the champion's.
        decision: Output: JSON with the decision, its reason, the numbers compared and the
            candidate's evaluation.
        refuse_below_baseline: Refuse a candidate significantly below its best baseline.

    Returns:
        1.0 when the candidate is promoted, else 0.0.
    """
    import json
    import logging
    from pathlib import Path

    from churn.release.gate import gate_decision
    from churn.release.registry import open_registry
    from churn.settings import RegistryConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registry_cfg = parse_section(RegistryConfig, registry, "registry")
    store = open_registry(registry_cfg)
    metrics = json.loads((Path(evaluation.path) / "metrics.json").read_text())
    result = {
        **gate_decision(
            candidate_auc,
            auc_threshold,
            store,
            training_set.path,
            allow_input_change=allow_input_change,
            evaluation=metrics,
            refuse_below_baseline=refuse_below_baseline,
        ),
        "evaluation": evaluation.uri,
    }
    Path(decision.path).write_text(json.dumps(result, indent=2) + "\n")
    decision.metadata.update({k: v for k, v in result.items() if v is not None})
    logging.getLogger("churn.release.gate").info(
        "%s: %s", "PROMOTE" if result["promote"] else "REJECT", result["reason"]
    )
    return 1.0 if result["promote"] else 0.0


def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    decision: Input[Artifact],
    training_set: Input[Dataset],
    registry: dict,
    serving: dict,
    registration: Output[Artifact],
) -> str:
    """Publishes the model as a new immutable version and moves the champion pointer to it.

    Args:
        model: The model folder.
        evaluation: The evaluation folder; its ``metrics.json`` is published with the model.
        training_set: The training set the model was trained on; the summary of one of its
            splits (``registry.reference_split``, at most ``registry.reference_max_rows`` rows,
            seeded) and the model's scores on it are published as ``reference.parquet``, the
            drift monitor's reference.
        decision: The gate's decision; the pointer moves only if the champion it compared
            against is still the champion (another run may have promoted in between), and
            over a change of input spec only if the decision allowed one.
        registry: ``RegistryConfig`` fields: ``uri`` (a folder or ``s3://bucket/prefix``),
            ``endpoint_url`` (non-AWS stores) and ``model_name``.
        serving: ``ServingConfig`` fields; ``protocol_version`` selects the request
            envelope in the archive's TorchServe config.
        registration: Output: JSON with the version, its storage URI and ROC-AUC.

    Returns:
        The new version id.
    """
    import json
    import logging
    from pathlib import Path

    from churn.io.leftovers import owned_tempdir
    from churn.release.reference import write_reference
    from churn.release.registry import open_registry
    from churn.settings import RegistryConfig, ServingConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registry_cfg = parse_section(RegistryConfig, registry, "registry")
    store = open_registry(registry_cfg)
    metrics = json.loads((Path(evaluation.path) / "metrics.json").read_text())
    serving_cfg = parse_section(ServingConfig, serving, "serving")
    with owned_tempdir("churn-reference-") as tmp:
        reference = write_reference(
            model.path,
            training_set.path,
            Path(tmp) / "reference.parquet",
            registry_cfg.reference_max_rows,
            registry_cfg.reference_seed,
            registry_cfg.reference_split,
        )
        published = store.publish(
            model.path,
            metrics,
            protocol_version=serving_cfg.protocol_version,
            reference=reference,
        )
    # The pointer moves only after publish() has written the version's _COMPLETE marker, and
    # only over the champion the gate judged against.
    judged = json.loads(Path(decision.path).read_text())
    store.promote(
        published.version,
        expected_champion=judged["champion_version"],
        allow_input_change=judged.get("allow_input_change", ""),
    )
    record = {
        "model_name": registry_cfg.model_name,
        "version": published.version,
        "storage_uri": published.storage_uri,
        "roc_auc": metrics["roc_auc"],
    }
    Path(registration.path).write_text(json.dumps(record, indent=2) + "\n")
    registration.metadata.update(record)
    return published.version


def deploy(
    deploy_target: str,
    version: str,
    training_set: Input[Dataset],
    feature_repo: Input[Dataset],
    registry: dict,
    serving: dict,
    deployment: Output[Artifact],
) -> None:
    """Deploys the registered version: local TorchServe smoke test, KServe, or nothing.

    Args:
        deploy_target: ``local`` (start TorchServe, send one real prediction, stop),
            ``kserve`` (create or patch the InferenceService, wait until it is Ready, restore
            the previous storageUri if it never is; the registry records the rollout) or
            ``none``.
        version: The registered version id.
        training_set: Training set whose first test row is the local smoke-test request.
        feature_repo: The run's feature repository. ``local`` loads its latest snapshot into
            the online store first (as ``churn features materialize`` does), so the smoke
            request comes from there and ``churn run``'s traffic through the transformer
            finds every customer; the record names it as ``feature_repo``.
        registry: ``RegistryConfig`` fields: ``uri`` (a folder or ``s3://bucket/prefix``),
            ``endpoint_url`` (non-AWS stores) and ``model_name``.
        serving: ``ServingConfig`` fields (namespace, service account, protocol, rollout
            timeout).
        deployment: Output: JSON describing what was deployed (and the local prediction).
    """
    import json
    import logging
    from pathlib import Path

    from churn.features.build import materialize
    from churn.release.deploy import deploy_version
    from churn.settings import RegistryConfig, ServingConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    local = deploy_target == "local"
    if local:
        materialize(feature_repo.path)
    result = deploy_version(
        deploy_target,
        version,
        parse_section(RegistryConfig, registry, "registry"),
        parse_section(ServingConfig, serving, "serving"),
        training_set.path,
        feature_repo.path if local else None,
    )
    if local:
        result["feature_repo"] = feature_repo.path
    Path(deployment.path).write_text(json.dumps(result, indent=2) + "\n")
    deployment.metadata.update({"target": deploy_target, "version": version})


def deploy_remote(
    deploy_target: str,
    version: str,
    registry: dict,
    serving: dict,
    deployment: Output[Artifact],
) -> None:
    """Deploys the registered version on KServe, or not at all, reading no run artifact.

    The pipeline runs this step instead of :func:`deploy` unless the target is ``local``: a
    KServe rollout needs only the version's storage URI, while :func:`deploy`'s inputs (the
    training set and the feature repository, gigabytes at scale) would be downloaded into
    its pod for nothing.

    Args:
        deploy_target: ``kserve`` or ``none`` (see :func:`deploy`).
        version: The registered version id.
        registry: ``RegistryConfig`` fields.
        serving: ``ServingConfig`` fields.
        deployment: Output: JSON describing what was deployed.
    """
    import json
    import logging
    from pathlib import Path

    from churn.errors import ServingError
    from churn.release.deploy import deploy_version
    from churn.settings import RegistryConfig, ServingConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if deploy_target == "local":
        raise ServingError("deploy_target local runs the deploy step, not deploy_remote")
    result = deploy_version(
        deploy_target,
        version,
        parse_section(RegistryConfig, registry, "registry"),
        parse_section(ServingConfig, serving, "serving"),
        dataset_dir="",
    )
    Path(deployment.path).write_text(json.dumps(result, indent=2) + "\n")
    deployment.metadata.update({"target": deploy_target, "version": version})


def record_rejection(
    decision: Input[Artifact], evaluation: Input[Artifact], rejection: Output[Artifact]
) -> None:
    """Writes why the candidate was not promoted, beside the numbers that decided it.

    Args:
        decision: The gate's decision JSON.
        evaluation: The candidate's evaluation folder (its report stays there).
        rejection: Output: JSON with the reason, the candidate's and champion's ROC-AUC,
            the threshold and where the candidate's report is.
    """
    import json
    import logging
    from pathlib import Path

    from churn.release.gate import rejection_record

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report_uri = f"{evaluation.uri.rstrip('/')}/report.html"
    record = rejection_record(json.loads(Path(decision.path).read_text()), report_uri)
    Path(rejection.path).write_text(json.dumps(record, indent=2) + "\n")
    rejection.metadata.update({"reason": record["reason"]})
    logging.getLogger("churn.release.gate").warning("model not promoted: %s", record["reason"])

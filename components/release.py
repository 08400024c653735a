"""Release steps: the AUC gate, registration, deployment and the record of a rejection.

Component bodies (see ``components.factory.make_components``): imports sit inside the functions
because KFP ships only the function's source to the container.
"""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def gate(
    candidate_auc: float,
    auc_threshold: float,
    registry_uri: str,
    registry_endpoint_url: str,
    model_name: str,
    evaluation: Input[Artifact],
    training_set: Input[Dataset],
    decision: Output[Artifact],
) -> float:
    """Decides whether the candidate replaces the champion.

    The answer is a float (1.0 promote, 0.0 reject) so the pipeline's condition compares a
    float with a float, the one comparison kfp.local evaluates (see NOTES).

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        auc_threshold: Minimum ROC-AUC for promotion.
        registry_uri: Registry folder or ``s3://bucket/prefix``.
        registry_endpoint_url: S3 endpoint for non-AWS stores; ``""`` for AWS or a folder.
        model_name: Name of the model in the registry.
        evaluation: The candidate's evaluation folder; the decision records where it is.
        training_set: The candidate's training set: the champion is re-scored on its test
            split, so both ROC-AUCs come from the same rows.
        decision: Output: JSON with the decision, its reason, the numbers compared and the
            candidate's evaluation.

    Returns:
        1.0 when the candidate is promoted, else 0.0.
    """
    import json
    import logging
    from pathlib import Path

    from churn.config import RegistryConfig
    from churn.gate import gate_decision
    from churn.registry import open_registry

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registry = open_registry(
        RegistryConfig(
            uri=registry_uri, endpoint_url=registry_endpoint_url or None, model_name=model_name
        )
    )
    result = {
        **gate_decision(candidate_auc, auc_threshold, registry, training_set.path),
        "evaluation": evaluation.uri,
    }
    Path(decision.path).write_text(json.dumps(result, indent=2) + "\n")
    decision.metadata.update({k: v for k, v in result.items() if v is not None})
    logging.getLogger("churn.gate").info(
        "%s: %s", "PROMOTE" if result["promote"] else "REJECT", result["reason"]
    )
    return 1.0 if result["promote"] else 0.0


def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    decision: Input[Artifact],
    registry_uri: str,
    registry_endpoint_url: str,
    model_name: str,
    serving_config: dict,
    registration: Output[Artifact],
) -> str:
    """Publishes the model as a new immutable version and moves the champion pointer to it.

    Args:
        model: The model folder.
        evaluation: The evaluation folder; its ``metrics.json`` is published with the model.
        decision: The gate's decision; the pointer moves only if the champion it compared
            against is still the champion (another run may have promoted in between).
        registry_uri: Registry folder or ``s3://bucket/prefix``.
        registry_endpoint_url: S3 endpoint for non-AWS stores; ``""`` for AWS or a folder.
        model_name: Name of the model in the registry.
        serving_config: ``ServingConfig`` fields; ``protocol_version`` selects the request
            envelope in the archive's TorchServe config.
        registration: Output: JSON with the version, its storage URI and ROC-AUC.

    Returns:
        The new version id.
    """
    import json
    import logging
    from pathlib import Path

    from churn.config import RegistryConfig
    from churn.registry import open_registry

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    registry = open_registry(
        RegistryConfig(
            uri=registry_uri, endpoint_url=registry_endpoint_url or None, model_name=model_name
        )
    )
    metrics = json.loads((Path(evaluation.path) / "metrics.json").read_text())
    published = registry.publish(
        model.path, metrics, protocol_version=serving_config.get("protocol_version", "v1")
    )
    # The pointer moves only after publish() has written the version's _COMPLETE marker, and
    # only over the champion the gate judged against.
    judged = json.loads(Path(decision.path).read_text())
    registry.promote(published.version, expected_champion=judged["champion_version"])
    record = {
        "model_name": model_name,
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
    registry_uri: str,
    registry_endpoint_url: str,
    model_name: str,
    serving_config: dict,
    deployment: Output[Artifact],
) -> None:
    """Deploys the registered version: local TorchServe smoke test, KServe, or nothing.

    Args:
        deploy_target: ``local`` (start TorchServe, send one real prediction, stop),
            ``kserve`` (create or patch the InferenceService) or ``none``.
        version: The registered version id.
        training_set: Training set whose first test row is the local smoke-test request.
        registry_uri: Registry folder or ``s3://bucket/prefix``.
        registry_endpoint_url: S3 endpoint for non-AWS stores; ``""`` for AWS or a folder.
        model_name: Name of the model in the registry.
        serving_config: ``ServingConfig`` fields (namespace, service account, protocol).
        deployment: Output: JSON describing what was deployed (and the local prediction).
    """
    import json
    import logging
    from pathlib import Path

    from churn.config import RegistryConfig, ServingConfig
    from churn.pipeline_run import config_from_dict, deploy_version

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = deploy_version(
        deploy_target,
        version,
        RegistryConfig(
            uri=registry_uri, endpoint_url=registry_endpoint_url or None, model_name=model_name
        ),
        config_from_dict(ServingConfig, serving_config),
        training_set.path,
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

    from churn.gate import rejection_record

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report_uri = f"{evaluation.uri.rstrip('/')}/report.html"
    record = rejection_record(json.loads(Path(decision.path).read_text()), report_uri)
    Path(rejection.path).write_text(json.dumps(record, indent=2) + "\n")
    rejection.metadata.update({"reason": record["reason"]})
    logging.getLogger("churn.gate").warning("model not promoted: %s", record["reason"])

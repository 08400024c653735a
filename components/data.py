"""Data steps: the Feast feature repository and the training set built from it.

Component bodies (see ``components.factory.make_components``): KFP ships only the function's
source to the container, so every import sits inside the function and the work happens in the
``churn`` package the image has installed.
"""

from kfp.dsl import Dataset, Input, Output


def build_features(
    data: str,
    customers: str,
    cutoffs: str,
    horizon_days: int,
    features: dict,
    data_endpoint_url: str,
    feature_repo: Output[Dataset],
) -> None:
    """Builds the Feast feature repository from a transaction log.

    The repository folder itself is the artifact: it is written at ``feature_repo.path``, so
    on a cluster KFP uploads it to object storage and the next step sees it at the same path.
    With ``features.shared_store`` set nothing is built: the step checks that the feature
    pipeline has filled the shared store, which the training set is then read from.

    Args:
        data: ``cdnow``, ``synth[:customers=N,days=D,seed=S]``, or a transaction log file or
            folder, local or ``s3://`` (see ``churn.data.sources.resolve_data``).
        customers: Optional customers table; ``""`` for none (a data folder brings its own).
        cutoffs: Comma-separated training cutoff dates; ``""`` picks them automatically.
        horizon_days: Label horizon in days.
        features: ``FeatureConfig`` fields (bins, sequence length, cutoff schedule).
        data_endpoint_url: S3 endpoint for ``s3://`` data of a non-AWS store; ``""`` for AWS.
        feature_repo: Output: the feature repository folder.
    """
    import logging

    from churn.data.cutoffs import parse_cutoff_list
    from churn.data.sources import resolve_data
    from churn.features.build import build_features as build
    from churn.io.leftovers import owned_tempdir
    from churn.settings import FeatureConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_section(FeatureConfig, {**features, "horizon_days": horizon_days}, "features")
    if cfg.shared_store is not None:
        import json
        from pathlib import Path

        from churn.features.shared import describe_shared_store

        pointer = describe_shared_store(cfg, cutoffs)
        Path(feature_repo.path).mkdir(parents=True, exist_ok=True)
        (Path(feature_repo.path) / "shared-store.json").write_text(json.dumps(pointer) + "\n")
        feature_repo.metadata.update({**pointer, "cutoffs": ",".join(pointer["cutoffs"])})
        return
    with owned_tempdir("churn-data-") as tmp:
        source = resolve_data(
            data, tmp, cfg, customers=customers or None, endpoint_url=data_endpoint_url or None
        )
        summary = build(
            source.transactions,
            feature_repo.path,
            cfg,
            customers=source.customers,
            cutoffs=parse_cutoff_list(cutoffs) or source.cutoffs,
            observed_until=source.observed_until,
            cancellations=source.cancellations,
        )
    feature_repo.metadata.update(
        {
            "data": data,
            "transactions": summary["transactions"],
            "customers": summary["customers"],
            "cutoffs": ",".join(summary["cutoffs"]),
            "snapshot_rows": summary["snapshot_rows"],
        }
    )


def publish_features(
    data: str,
    customers: str,
    cutoffs: str,
    observed_until: str,
    features: dict,
    data_endpoint_url: str,
) -> str:
    """The feature pipeline's step: snapshots into the shared store, then its online store.

    Args:
        data: As ``build_features``' (the log, up to now).
        customers: Optional customers table; ``""`` for none.
        cutoffs: Comma-separated training cutoff dates; ``""`` picks them automatically.
        observed_until: End of the observation period; ``now`` for the time of the run,
            ``""`` for the log's last event.
        features: ``FeatureConfig`` fields; ``shared_store`` names the store.
        data_endpoint_url: S3 endpoint for ``s3://`` data of a non-AWS store; ``""`` for AWS.

    Returns:
        The snapshot time loaded into the online store (ISO 8601).
    """
    import logging

    from churn.data.cutoffs import parse_cutoff_list
    from churn.data.sources import resolve_data
    from churn.features.shared import publish_features as publish
    from churn.io.leftovers import owned_tempdir
    from churn.settings import FeatureConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_section(FeatureConfig, features, "features")
    with owned_tempdir("churn-data-") as tmp:
        source = resolve_data(
            data, tmp, cfg, customers=customers or None, endpoint_url=data_endpoint_url or None
        )
        summary = publish(
            source.transactions,
            cfg,
            customers=source.customers,
            cutoffs=parse_cutoff_list(cutoffs) or source.cutoffs,
            observed_until=observed_until or source.observed_until,
            cancellations=source.cancellations,
        )
    return str(summary["materialized"]["snapshot"])


def build_training_set(
    feature_repo: Input[Dataset],
    horizon_days: int,
    features: dict,
    training_set: Output[Dataset],
) -> None:
    """Builds the point-in-time-correct training set folder through Feast.

    Args:
        feature_repo: The feature repository from ``build_features``.
        horizon_days: Label horizon in days.
        features: ``FeatureConfig`` fields; the churn definition and its parameters label,
            and ``shared_store``, when set, is read instead of ``feature_repo``.
        training_set: Output: the training set folder (``meta.json`` and split ``.npz``).
    """
    import logging

    from churn.dataset.build import build_dataset
    from churn.dataset.labels import ChurnDefinition
    from churn.settings import FeatureConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_section(FeatureConfig, {**features, "horizon_days": horizon_days}, "features")
    summary = build_dataset(
        # The shared store when the feature pipeline fills one (build_features checked it).
        cfg.shared_store or feature_repo.path,
        training_set.path,
        horizon_days,
        definition=ChurnDefinition.from_config(cfg),
        chunk_rows=cfg.retrieval_chunk_rows,
    )
    for name, split in summary["splits"].items():
        training_set.metadata[f"{name}_rows"] = split["rows"]
        training_set.metadata[f"{name}_positives"] = split["positives"]

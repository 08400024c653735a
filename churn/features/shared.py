"""The feature store that training and serving share (``features.shared_store``).

Each run of the training pipeline otherwise builds its own repository inside its artifact, and
nothing fills the online store that the transformer reads in a cluster. The feature pipeline
calls :func:`publish_features` on a schedule; training reads the same repository's offline
store through :func:`shared_repo`, the transformer its online store.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import yaml

from churn.errors import ContractError
from churn.features.build import build_features, materialize
from churn.features.store import FeatureRepo, FeatureStoreError
from churn.settings import FeatureConfig

log = logging.getLogger(__name__)

# features.shared_store_config's name for the production file shipped in the package
# (feature_repo/production/feature_store.yaml), wherever the package is installed: a pod's
# site-packages path is not the one on the machine that compiles the pipeline.
PRODUCTION_CONFIG = "production"
# Both forms os.path.expandvars expands, as Feast reads the file.
_ENV_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def store_config(cfg: FeatureConfig) -> Path | None:
    """The ``feature_store.yaml`` that ``features.shared_store_config`` names, if any.

    Args:
        cfg: Feature settings.

    Returns:
        The file: ``production`` is the packaged production configuration; ``None`` keeps
        the template's.
    """
    if cfg.shared_store_config is None:
        return None
    if cfg.shared_store_config == PRODUCTION_CONFIG:
        return Path(cfg.repo_template) / "production" / "feature_store.yaml"
    return Path(cfg.shared_store_config)


def check_store_environment(config: Path) -> None:
    """Checks that the environment sets every ``${VAR}`` (or ``$VAR``) a ``feature_store.yaml``
    reads, to a value that is not empty.

    Feast expands them with ``os.path.expandvars``, which leaves an unset one as it is: the
    store would then fail deep inside Spark or Redis, on a master URL named
    ``${SPARK_MASTER_URL}``.

    Args:
        config: The configuration file.

    Raises:
        FeatureStoreError: A variable is unset, or the file is not YAML.
    """
    try:
        values = _strings(yaml.safe_load(config.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise FeatureStoreError(
            f"cannot read the feature store configuration {config}: {exc}"
        ) from exc
    named = {a or b for v in values for a, b in _ENV_REFERENCE.findall(v)}
    # Empty counts as unset: an empty Redis connection string fails as late as a missing one.
    missing = sorted(name for name in named if not os.environ.get(name))
    if missing:
        raise FeatureStoreError(
            f"the feature store configuration {config} reads {', '.join(missing)} from the "
            "environment, which does not set it (in a cluster: the Secret named by "
            "pipeline.feature_store_secret, and SPARK_MASTER_URL from features.spark_master)"
        )


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def shared_repo(cfg: FeatureConfig) -> FeatureRepo:
    """The shared repository, checked to hold built features.

    Args:
        cfg: Feature settings; ``shared_store`` names the folder.

    Returns:
        The repository.

    Raises:
        FeatureStoreError: ``features.shared_store`` is unset, or the feature pipeline has not
            built it yet.
    """
    if cfg.shared_store is None:
        raise FeatureStoreError("features.shared_store is not set: no shared feature store")
    repo = FeatureRepo(cfg.shared_store)
    if not (repo.sources / "spec.json").is_file():
        raise FeatureStoreError(
            f"the shared feature store {cfg.shared_store} (features.shared_store) holds no "
            "built features: run the feature pipeline (`churn pipeline compile --pipeline "
            "features`) first"
        )
    check_store_environment(repo.path / "feature_store.yaml")
    return repo


def describe_shared_store(cfg: FeatureConfig, cutoffs: str = "") -> dict:
    """What the training pipeline reads when it uses the shared store instead of building.

    Args:
        cfg: Feature settings; ``shared_store`` names the store.
        cutoffs: The run's ``cutoffs`` argument, which must be empty: the feature pipeline
            chose the store's cutoffs.

    Returns:
        ``shared_store``, ``latest_snapshot`` and ``cutoffs`` (ISO dates).

    Raises:
        ContractError: ``cutoffs`` is not empty.
        FeatureStoreError: See :func:`shared_repo`.
    """
    if cutoffs.strip():
        raise ContractError(
            f"cutoffs {cutoffs!r}: with features.shared_store set the training set takes the "
            "shared store's cutoffs; pass cutoffs to the feature pipeline instead"
        )
    spec = shared_repo(cfg).spec
    log.info(
        "reading features from the shared store %s (snapshot %s)",
        cfg.shared_store,
        spec["latest_snapshot"],
    )
    return {
        "shared_store": cfg.shared_store,
        "latest_snapshot": spec["latest_snapshot"],
        "cutoffs": [str(c)[:10] for c in spec["cutoffs"]],
    }


def publish_features(
    transactions: str | Path,
    cfg: FeatureConfig,
    customers: str | Path | None = None,
    cutoffs: list[str] | None = None,
    observed_until: str | None = None,
    cancellations: str | Path | None = None,
) -> dict:
    """Builds the snapshots into the shared store, applies it and materialises the latest one.

    Args:
        transactions: Transaction log following the data contract.
        cfg: Feature settings; ``shared_store`` (required) and ``shared_store_config``.
        customers: Optional customers table.
        cutoffs: Training cutoffs to snapshot; ``None`` uses the automatic schedule.
        observed_until: End of the observation period (``now`` for the time of the run);
            ``None`` takes the last event.
        cancellations: Optional cancellations table.

    Returns:
        :func:`churn.features.build.build_features`' summary, with ``materialized`` (the
        snapshot time loaded into the online store and how many customers it holds).

    Raises:
        FeatureStoreError: ``features.shared_store`` is unset, ``shared_store_config`` is not
            a file, or the online store cannot be written.
        ContractError, OutputError, ResourceError: As ``build_features``.
    """
    if cfg.shared_store is None:
        raise FeatureStoreError(
            "the feature pipeline writes the shared feature store: set features.shared_store "
            "(e.g. CHURN_FEATURES__SHARED_STORE=/mnt/features)"
        )
    config = store_config(cfg)
    if config is not None and config.is_file():
        check_store_environment(config)
    summary = build_features(
        transactions,
        cfg.shared_store,
        cfg,
        customers=customers,
        cutoffs=cutoffs,
        observed_until=observed_until,
        cancellations=cancellations,
        store_config=config,
    )
    summary["materialized"] = materialize(cfg.shared_store)
    log.info(
        "published features to %s: snapshot %s of %d customers in the online store",
        cfg.shared_store,
        summary["materialized"]["snapshot"],
        summary["materialized"]["customers"],
    )
    return summary

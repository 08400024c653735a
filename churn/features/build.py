"""Feature building: raw log, then daily activity, then snapshots, then a Feast repository."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churn.data.contract import (
    event_time_bound,
    load_cancellations,
    load_customers,
    load_transactions,
)
from churn.data.cutoffs import choose_cutoffs, observed_until_of
from churn.errors import ContractError
from churn.features.activity import channel_names, daily_activity
from churn.features.memory import FEATURE_COPIES, check_memory, sequence_bytes
from churn.features.sequences import CONTEXT_FEATURES, build_snapshots, snapshot_row_count
from churn.features.store import FeatureRepo, FeatureStoreError
from churn.settings import FeatureConfig

log = logging.getLogger(__name__)


def _check_ids_match(
    tx: pd.DataFrame, profile: pd.DataFrame, transactions: object, customers: object
) -> None:
    """Refuses a customers table that names none of the log's customers.

    Ids are compared as strings, so ``00001`` in a CSV log and the integer 1 in a Parquet table
    are different customers; every customer would silently get "unknown" attributes.
    """
    in_log = pd.Index(tx["customer_id"].unique())
    matched = in_log.isin(profile["customer_id"])
    if not matched.any():
        raise ContractError(
            f"none of the {len(in_log)} customers of {transactions} is in {customers} (for "
            f"example {in_log[0]!r} in the log, {profile['customer_id'].iloc[0]!r} in the "
            "table): write the ids in the same form in both files"
        )
    if matched.mean() < 0.5:
        log.warning(
            "only %d of %d customers of %s are in %s; the others get unknown attributes",
            int(matched.sum()),
            len(in_log),
            transactions,
            customers,
        )


def _check_snapshot_memory(rows: int, channels: int, cfg: FeatureConfig) -> None:
    check_memory(
        FEATURE_COPIES * sequence_bytes(rows, channels, cfg.seq_len),
        f"the feature build ({rows:,} snapshot rows x {channels} channels x "
        f"features.seq_len={cfg.seq_len:,} float32 values, about {FEATURE_COPIES} copies)",
        cfg.memory_budget_mb,
    )


def build_features(
    transactions: str | Path,
    repo_dir: str | Path,
    cfg: FeatureConfig,
    customers: str | Path | None = None,
    cutoffs: list[str] | None = None,
    observed_until: str | None = None,
    cancellations: str | Path | None = None,
    store_config: str | Path | None = None,
) -> dict:
    """Builds the Feast sources from a transaction log and applies the repository.

    Snapshots are written at every cutoff a training set will ask for and at the latest time
    (the midnight after the last event), which is what serving reads.

    Args:
        transactions: Transaction log (CSV or Parquet) following the data contract.
        repo_dir: Working folder of the feature repository (created from the template).
        cfg: Feature settings (bins, sequence length, horizon, cutoff schedule, and the engine:
            pandas here, or Spark through :mod:`churn.features.spark_job`; same tables).
        customers: Optional customers table.
        cutoffs: Training cutoffs (midnight UTC dates); ``None`` uses the automatic schedule,
            fitted to the log's span (see :func:`churn.data.cutoffs.fit_default_cutoffs`).
        observed_until: End of the observation period; defaults to the last event.
        cancellations: Optional cancellations table, kept beside the log for contract labels
            (``features.churn_definition=contract``).
        store_config: A ``feature_store.yaml`` the repository uses instead of the template's
            (the shared store's, ``features.shared_store_config``).

    Returns:
        A summary: rows, customers, snapshots, channels, repository path.

    Raises:
        ContractError: The input breaks the data contract, the cutoffs are invalid, or the log
            is too short for the automatic schedule.
        ResourceError: The snapshots would not fit in memory (``features.memory_budget_mb``).
        OutputError: ``repo_dir`` holds something other than a feature repository, or cannot
            be written (checked before the work).
        FeatureStoreError: ``store_config`` is not a file (checked before the work).
    """
    started = time.perf_counter()
    repo = FeatureRepo(repo_dir)
    repo.check_buildable(cfg.repo_template)
    if store_config is not None and not Path(store_config).is_file():
        raise FeatureStoreError(
            f"the feature store configuration {store_config} (features.shared_store_config) "
            "is not a file"
        )
    latest_event = event_time_bound(cfg.max_event_time)
    tx = load_transactions(transactions, max_channels=cfg.max_channels, latest_event=latest_event)
    profile = load_customers(customers) if customers is not None else None
    if profile is not None:
        _check_ids_match(tx, profile, transactions, customers)
    cancelled = (
        load_cancellations(cancellations, latest_event=latest_event)
        if cancellations is not None
        else None
    )
    if cancelled is not None and not cancelled["customer_id"].isin(tx["customer_id"]).any():
        raise ContractError(
            f"none of the customers of {cancellations} is in {transactions} (for example "
            f"{cancelled['customer_id'].iloc[0]!r}): write the ids in the same form in both files"
        )
    end = observed_until_of(tx, observed_until)
    if end > latest_event:
        raise ContractError(
            f"observed-until {end} is later than {latest_event} (features.max_event_time; by "
            "default one day after now): the serving snapshot would be taken in the future"
        )
    first = tx["timestamp"].min()
    chosen = choose_cutoffs(cutoffs, first, end, cfg, transactions)
    latest = end.ceil("D")
    snapshot_times = sorted({*chosen, latest})
    try:
        channels = channel_names(tx, cfg.extra_channels)
    except KeyError as exc:
        raise ContractError(f"{transactions}: {exc.args[0]}") from exc
    activity = daily_activity(tx, channels)
    _check_snapshot_memory(snapshot_row_count(activity, snapshot_times), len(channels), cfg)
    if cfg.engine == "spark":
        # Imported here: pyspark and its JVM are needed only by this engine.
        from churn.features.spark_job import snapshots_from_pandas

        snapshots = snapshots_from_pandas(tx, channels, snapshot_times, cfg, signup=profile)
    else:
        snapshots = build_snapshots(
            activity, channels, snapshot_times, cfg.bin_days, cfg.seq_len, signup=profile
        )
    numeric_attrs: list[str] = []
    categorical_attrs: list[str] = []
    if profile is not None:
        for column in profile.columns:
            if column in ("customer_id", "signup_date"):
                continue
            kind = (
                numeric_attrs
                if pd.api.types.is_numeric_dtype(profile[column])
                else categorical_attrs
            )
            kind.append(column)
    spec = {
        "channels": channels,
        "context_features": list(CONTEXT_FEATURES),
        "numeric_attributes": numeric_attrs,
        "categorical_attributes": categorical_attrs,
        "bin_days": cfg.bin_days,
        "seq_len": cfg.seq_len,
        "cutoffs": [c.isoformat() for c in chosen],
        "snapshots": [c.isoformat() for c in snapshot_times],
        "latest_snapshot": latest.isoformat(),
        "observed_from": first.isoformat(),
        "observed_until": end.isoformat(),
        "source": str(transactions),
        "cancellations": None if cancellations is None else str(cancellations),
    }
    repo.init_from(cfg.repo_template, store_config)
    repo.write_sources(snapshots, tx, profile, spec, cancelled)
    repo.apply()
    summary = {
        "repo": str(repo.path),
        "transactions": len(tx),
        "customers": int(tx["customer_id"].nunique()),
        "channels": channels,
        "cutoffs": [c.date().isoformat() for c in chosen],
        "latest_snapshot": latest.isoformat(),
        "snapshot_rows": len(snapshots),
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info(
        "built features: %d transactions of %d customers -> %d snapshot rows at %d times in %.1fs",
        summary["transactions"],
        summary["customers"],
        summary["snapshot_rows"],
        len(snapshot_times),
        summary["seconds"],
    )
    return summary


def materialize(repo_dir: str | Path) -> dict:
    """Loads the latest snapshot into the online store.

    Args:
        repo_dir: A built feature repository.

    Returns:
        The snapshot time and how many customers it holds.
    """
    repo = FeatureRepo(repo_dir)
    latest = repo.materialize_latest()
    rows = pd.read_parquet(repo.sources / "sequences.parquet", columns=["snapshot_ts"])
    count = int(np.sum(rows["snapshot_ts"] == latest))
    return {"snapshot": latest.isoformat(), "customers": count}

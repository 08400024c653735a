"""Training set building: labels from the log, features from Feast, split by time.

Entity rows are (customer, cutoff) pairs for every customer active in the lookback window
before a cutoff with a full label window after it. Features come from Feast's point-in-time
join, so each row sees only its cutoff's snapshot.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churn.data.cutoffs import parse_cutoffs, split_cutoffs
from churn.dataset.labels import LAPSE, ChurnDefinition, label_cutoffs
from churn.dataset.training_set import (
    FORMAT_VERSION,
    SPLITS,
    Split,
    TrainingSet,
    normalisation_stats,
    save_training_set,
)
from churn.errors import ContractError, DatasetError
from churn.features.memory import (
    DATASET_LABELLED_COPIES,
    DATASET_SOURCE_COPIES,
    check_memory,
    sequence_bytes,
)
from churn.features.store import CANCELLATIONS_FILE, FeatureRepo, check_cutoffs_built
from churn.io.atomic import check_replaceable
from churn.settings import FeatureConfig

log = logging.getLogger(__name__)

UNKNOWN = "<unk>"
DEFAULT_CHUNK_ROWS: int = FeatureConfig.model_fields["retrieval_chunk_rows"].default


def build_dataset(
    repo_dir: str | Path,
    out_dir: str | Path,
    horizon_days: int,
    cutoffs: list[str] | None = None,
    memory_budget_mb: int | None = None,
    definition: ChurnDefinition = LAPSE,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict:
    """Builds a training set folder through Feast's ``get_historical_features``.

    Args:
        repo_dir: A feature repository built by :func:`churn.features.build.build_features`.
        out_dir: Destination folder (replaced atomically).
        horizon_days: Label horizon H in days.
        cutoffs: Cutoffs to label at; ``None`` takes the ones the features were built for.
        memory_budget_mb: ``features.memory_budget_mb``; ``None`` takes the available memory.
        definition: What churned means (``features.churn_definition``), recorded in
            ``meta.json`` as ``churn_definition``.
        chunk_rows: ``features.retrieval_chunk_rows``: entity rows per retrieval; the
            training set is the same for any value, the peak memory is not.

    Returns:
        A summary with rows, positives and negatives per split, and the folder path.

    Raises:
        ContractError: The horizon is below one day, a cutoff has no snapshot, or the cutoffs
            cannot fill three splits.
        DatasetError: A split has no labelled rows, or the definition is ``contract`` and the
            features were built without a cancellations table.
        OutputError: ``out_dir`` cannot be written, or is a folder of another kind.
        ResourceError: The rows' sequences would not fit in memory.
    """
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise ContractError(f"the label horizon must be at least 1 day, got {horizon_days!r}")
    check_replaceable(out_dir, "meta.json")
    started = time.perf_counter()
    repo = FeatureRepo(repo_dir)
    spec = repo.spec
    chosen = parse_cutoffs(cutoffs or spec["cutoffs"])
    check_cutoffs_built(spec, chosen)
    by_split = split_cutoffs(chosen, horizon_days)
    used = sorted(c for cs in by_split.values() for c in cs)

    lookback_days = int(spec["bin_days"]) * int(spec["seq_len"])
    definition = definition.resolved(lookback_days)
    labels = _label(repo, used, horizon_days, lookback_days, definition)
    for name, split_cutoffs_ in by_split.items():
        if not labels["cutoff"].isin(split_cutoffs_).any():
            raise DatasetError(
                f"the {name} split (cutoffs {[c.date().isoformat() for c in split_cutoffs_]}) "
                f"has no labelled rows: the log must extend {horizon_days} days past a cutoff "
                f"(it ends {spec['observed_until']}) and someone must be active before it"
            )
    _check_memory(len(labels), repo, spec, memory_budget_mb)
    log.info("labelled %d (customer, cutoff) rows; reading features from Feast", len(labels))
    cutoff_ns = (
        labels["cutoff"].to_numpy("datetime64[ns]").view("i8")
        if len(labels)
        else np.zeros(0, dtype=np.int64)
    )
    # Rows grouped by split (label order within each), so every split is a slice of one set
    # of arrays that the retrieval fills chunk by chunk: no split or feature array is copied.
    by_row = [np.flatnonzero(np.isin(cutoff_ns, [c.value for c in by_split[s]])) for s in SPLITS]
    order = np.concatenate(by_row)
    bounds = np.cumsum([0, *(len(rows) for rows in by_row)])
    ordered = labels.iloc[order]
    features = repo.historical_features(
        pd.DataFrame({"customer_id": ordered["customer_id"], "event_timestamp": ordered["cutoff"]}),
        chunk_rows,
    )
    if not features.has_history.all():
        # Labelled customers were active before the cutoff, so each must have a snapshot.
        row = int(order[~features.has_history].min())
        raise DatasetError(
            f"Feast returned no snapshot for customer {labels['customer_id'].iloc[row]!r} at "
            f"{labels['cutoff'].iloc[row]}; the feature repository is out of date: rebuild it"
        )

    numeric = np.concatenate([features.context, features.numeric], axis=1).astype(np.float32)
    vocabularies = {}
    categorical = np.zeros((len(order), features.categorical.shape[1]), dtype=np.int64)
    for j, name in enumerate(spec["categorical_attributes"]):
        train_values = features.categorical[: bounds[1], j]
        vocab = [UNKNOWN, *sorted(set(train_values.tolist()) - {""})]
        index = {v: i for i, v in enumerate(vocab)}
        categorical[:, j] = [index.get(v, 0) for v in features.categorical[:, j]]
        vocabularies[name] = vocab

    customer_ids = ordered["customer_id"].to_numpy().astype(str)
    y = ordered["label"].to_numpy().astype(np.float32)
    cutoff_s = cutoff_ns[order] // 10**9
    splits = {
        name: Split(
            seq=features.seq[start:end],
            num=numeric[start:end],
            cat=categorical[start:end],
            y=y[start:end],
            customer_id=customer_ids[start:end],
            cutoff=cutoff_s[start:end],
        )
        for name, start, end in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)
    }
    split_meta: dict[str, dict[str, Any]] = {
        name: {
            "cutoffs": [c.date().isoformat() for c in by_split[name]],
            "rows": len(split),
            "positives": split.positives,
            "negatives": len(split) - split.positives,
        }
        for name, split in splits.items()
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "channels": spec["channels"],
        "seq_len": int(spec["seq_len"]),
        "bin_days": int(spec["bin_days"]),
        "horizon_days": int(horizon_days),
        "churn_definition": definition.to_meta(),
        "numeric_features": [*spec["context_features"], *spec["numeric_attributes"]],
        "categorical_features": vocabularies,
        "seq_transform": "log1p",
        "num_transform": "signed_log1p",
        "norm": normalisation_stats(splits["train"]),
        "splits": split_meta,
        "source": spec["source"],
    }
    save_training_set(TrainingSet(meta=meta, splits=splits), out_dir)
    seconds = time.perf_counter() - started
    for name in SPLITS:
        s = split_meta[name]
        log.info(
            "%-5s %8d rows  %7d positives  %7d negatives  cutoffs %s",
            name,
            s["rows"],
            s["positives"],
            s["negatives"],
            ", ".join(s["cutoffs"]),
        )
    return {"out": str(out_dir), "splits": split_meta, "seconds": round(seconds, 2)}


def _label(
    repo: FeatureRepo,
    cutoffs: list[pd.Timestamp],
    horizon_days: int,
    lookback_days: int,
    definition: ChurnDefinition,
) -> pd.DataFrame:
    """The labelled (customer, cutoff) rows, from the log the repository was built from.

    A function of its own so that the log is freed before the retrieval: at 1M entity rows it
    is a tenth of the build's peak memory.
    """
    tx = pd.read_parquet(repo.sources / "transactions.parquet")
    cancellations_file = repo.sources / CANCELLATIONS_FILE
    return label_cutoffs(
        tx,
        cutoffs,
        horizon_days=horizon_days,
        lookback_days=lookback_days,
        observed_until=pd.Timestamp(repo.spec["observed_until"]),
        definition=definition,
        cancellations=pd.read_parquet(cancellations_file) if cancellations_file.is_file() else None,
    )


def _check_memory(labelled: int, repo: FeatureRepo, spec: dict, budget_mb: int | None) -> None:
    """Refuses a join whose sequences would not fit: DuckDB reads every snapshot, and the
    labelled rows' sequences are copied several times on their way into the folder."""
    snapshots = pq.ParquetFile(repo.sources / "sequences.parquet").metadata.num_rows
    channels, seq_len = len(spec["channels"]), int(spec["seq_len"])
    need = DATASET_LABELLED_COPIES * sequence_bytes(
        labelled, channels, seq_len
    ) + DATASET_SOURCE_COPIES * sequence_bytes(snapshots, channels, seq_len)
    check_memory(
        need,
        f"the training set ({labelled:,} labelled rows of {snapshots:,} snapshot rows x "
        f"{channels} channels x features.seq_len={seq_len:,} float32 values)",
        budget_mb,
    )

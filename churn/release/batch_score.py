"""Batch scoring: a registry version scores many customers at a point in time.

Features come from the feature repository's offline store through Feast
(:meth:`churn.features.store.FeatureRepo.historical_features`), which returns, for each
``(customer_id, cutoff)`` row, the latest snapshot at or before the cutoff. A snapshot exists
only at the times ``churn features build`` wrote one (its training cutoffs and the latest
time), and an older snapshot at a later cutoff would hold bins that end on the wrong day. So
every cutoff must be one of the repository's snapshot times; another date is refused with the
list of those times and the build command that adds it (``--cutoffs DATE``). Scores are then
point-in-time correct by construction: a snapshot at ``t`` reads only events at or before
``t``.

The features become the model's request through :func:`churn.features.request.build_request`,
the function the transformer sends served requests through, and rows are scored and written
chunk by chunk, so memory is bounded by the chunk, not by the customers.

Each output row has a ``status``: ``ok``, ``unknown_customer`` (in no snapshot of the
repository) or ``no_history`` (known, but without an event by the cutoff); only ``ok`` rows
carry a score and a decision.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from churn.data.cutoffs import parse_midnight
from churn.errors import ContractError, OutputError
from churn.features.request import ModelRequest, build_request
from churn.features.store import FeatureRepo, Features
from churn.io.atomic import check_new_file
from churn.io.leftovers import owner_tag, sweep
from churn.model.network import load_model, predict_proba

log = logging.getLogger(__name__)

OK, UNKNOWN, NO_HISTORY = "ok", "unknown_customer", "no_history"
_TIMESTAMP = pa.timestamp("ns", tz="UTC")
OUTPUT_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("cutoff", _TIMESTAMP),
        ("score", pa.float64()),
        ("decision", pa.bool_()),
        ("status", pa.string()),
        ("model_version", pa.string()),
        ("scored_at", _TIMESTAMP),
    ]
)


@dataclass
class ScoringModel:
    """A downloaded registry version, loaded for scoring.

    Attributes:
        version: The registry version id.
        model: The network in eval mode.
        meta: Its ``model.json`` (``input_spec``, ``threshold``).
    """

    version: str
    model: object
    meta: dict

    @classmethod
    def load(cls, version_dir: str | Path, version: str) -> ScoringModel:
        """Loads the model folder of a version downloaded by ``Registry.download``."""
        model, meta = load_model(Path(version_dir) / "model")
        return cls(version=version, model=model, meta=meta)

    def score(self, request: ModelRequest, rows: np.ndarray) -> np.ndarray:
        """Probabilities of churn for some rows of a request, as the served handler computes them.

        The request's arrays are the values its instances hold (float32 survives the JSON
        round trip exactly), so they go to the model directly; only categorical values are
        mapped to the vocabulary's indices as ``encode_instances`` maps them (unknown or
        missing: 0). Skipping the per-value Python walk of the instances is what keeps batch
        scoring near bare inference speed.
        """
        vocabs = self.meta["input_spec"]["categorical_features"]
        cat = np.zeros((len(rows), len(vocabs)), dtype=np.int64)
        for k, vocab in enumerate(vocabs.values()):
            index = {value: i for i, value in enumerate(vocab)}
            cat[:, k] = [0 if v is None else index.get(str(v), 0) for v in request.cat[rows, k]]
        probabilities = predict_proba(
            self.model,  # type: ignore[arg-type]
            torch.from_numpy(np.ascontiguousarray(request.seq[rows])),
            torch.from_numpy(np.ascontiguousarray(request.num[rows])),
            torch.from_numpy(cat),
        )
        return probabilities.numpy().astype(np.float64)


def snapshot_times(repo: FeatureRepo) -> list[pd.Timestamp]:
    """The times the repository holds a snapshot at, oldest first."""
    return sorted(pd.Timestamp(t) for t in repo.spec["snapshots"])


def check_cutoff(repo: FeatureRepo, cutoff: pd.Timestamp, what: str) -> None:
    """Refuses a cutoff outside the data or without its own snapshot.

    Args:
        repo: The feature repository.
        cutoff: A midnight UTC.
        what: How to name the value in the message (``--at``, ``row 3 of FILE``).

    Raises:
        ContractError: The cutoff is before the first event or after the latest snapshot, or
            falls between snapshots.
    """
    spec = repo.spec
    first, latest = pd.Timestamp(spec["observed_from"]), pd.Timestamp(spec["latest_snapshot"])
    times = snapshot_times(repo)
    listed = ", ".join(t.date().isoformat() for t in times)
    if cutoff <= first or cutoff > latest:
        raise ContractError(
            f"{what} {cutoff.date()} is outside the data of {repo.path}: its log runs from "
            f"{first} to {spec['observed_until']} (snapshots at {listed})"
        )
    if cutoff not in times:
        raise ContractError(
            f"{what} {cutoff.date()} has no feature snapshot in {repo.path} (snapshots at "
            f"{listed}); add it with `churn features build --cutoffs ...,{cutoff.date()}`"
        )


def active_customers(repo: FeatureRepo, at: pd.Timestamp, lookback_days: int) -> list[str]:
    """Customers with an event in the ``lookback_days`` before ``at`` (the model's window).

    Read from the snapshot at ``at``: its ``recency_days`` counts days since the last active
    day, so it needs no event after ``at``.
    """
    table = pq.read_table(
        repo.sources / "sequences.parquet",
        columns=["customer_id", "recency_days"],
        filters=[("snapshot_ts", "=", at)],
    )
    frame = table.to_pandas()
    return sorted(frame.loc[frame["recency_days"] < lookback_days, "customer_id"].astype(str))


def known_customers(repo: FeatureRepo) -> set[str]:
    """Every customer of the repository (each is in the latest snapshot)."""
    column = pq.read_table(repo.sources / "sequences.parquet", columns=["customer_id"])
    return set(column["customer_id"].to_pylist())


def read_customers(path: str | Path, at: pd.Timestamp) -> pd.DataFrame:
    """Reads a ``customer_id`` or ``customer_id,cutoff`` CSV file (with that header).

    Args:
        path: The file.
        at: The cutoff of rows that name none.

    Returns:
        Columns ``customer_id`` (str) and ``cutoff`` (UTC midnights), in the file's order.

    Raises:
        ContractError: The file cannot be read, lacks ``customer_id``, has an empty id, or a
            cutoff that is not a midnight UTC; the message names the file and row.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"cannot read customers file {path}: {exc}") from exc
    if "customer_id" not in frame.columns:
        raise ContractError(
            f"customers file {path} needs a header with customer_id (and optionally cutoff), "
            f"got {list(frame.columns)}"
        )
    extra = [c for c in frame.columns if c not in ("customer_id", "cutoff")]
    if extra:
        raise ContractError(f"customers file {path}: unexpected columns {extra}")
    ids = frame["customer_id"].str.strip()
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise ContractError(f"customers file {path}, row {int(empty[0]) + 2}: empty customer_id")
    if "cutoff" in frame.columns:
        cutoffs = [
            parse_midnight(v, f"customers file {path}, row {i + 2}: cutoff") if v.strip() else at
            for i, v in enumerate(frame["cutoff"])
        ]
    else:
        cutoffs = [at] * len(frame)
    return pd.DataFrame({"customer_id": ids.to_numpy(), "cutoff": cutoffs})


def score_customers(
    repo: FeatureRepo,
    scoring: ScoringModel,
    rows: pd.DataFrame,
    chunk_rows: int,
    scored_at: pd.Timestamp,
) -> Iterator[pa.Table]:
    """Scores ``(customer_id, cutoff)`` rows chunk by chunk.

    Args:
        repo: The feature repository (every cutoff already checked by :func:`check_cutoff`).
        scoring: The model.
        rows: Columns ``customer_id`` and ``cutoff``.
        chunk_rows: Rows per Feast read and forward pass.
        scored_at: The time written in ``scored_at``.

    Yields:
        Tables of :data:`OUTPUT_SCHEMA`, in the order of ``rows``.
    """
    known = known_customers(repo)
    for start in range(0, len(rows), chunk_rows):
        chunk = rows.iloc[start : start + chunk_rows]
        ids = chunk["customer_id"].astype(str).tolist()
        cutoffs = chunk["cutoff"].to_numpy()
        features = repo.historical_features(
            pd.DataFrame({"customer_id": ids, "event_timestamp": cutoffs})
        )
        yield score_chunk(ids, cutoffs, features, repo.spec, scoring, known, scored_at)


def score_chunk(
    ids: list[str],
    cutoffs: np.ndarray,
    features: Features,
    spec: dict,
    scoring: ScoringModel,
    known: set[str],
    scored_at: pd.Timestamp,
) -> pa.Table:
    """One chunk's output rows from its features: request, forward pass, decision, status.

    Args:
        ids: The chunk's customers.
        cutoffs: Their cutoffs (UTC).
        features: Their features, as the feature store returned them.
        spec: The feature repository's spec.
        scoring: The model.
        known: Every customer of the repository (to tell ``no_history`` from unknown).
        scored_at: The time written in ``scored_at``.

    Returns:
        A table of :data:`OUTPUT_SCHEMA`, in the order of ``ids``.
    """
    request = build_request(ids, features, spec, scoring.meta["input_spec"])
    scores = np.full(len(ids), np.nan)
    has = request.known
    if has.any():
        scores[has] = scoring.score(request, np.flatnonzero(has))
    status = np.where(has, OK, [NO_HISTORY if c in known else UNKNOWN for c in ids])
    return pa.table(
        {
            "customer_id": ids,
            "cutoff": pa.array(pd.to_datetime(cutoffs, utc=True), type=_TIMESTAMP),
            "score": pa.array(scores, mask=~has),
            "decision": pa.array(scores >= float(scoring.meta["threshold"]), mask=~has),
            "status": status.tolist(),
            "model_version": [scoring.version] * len(ids),
            # One int64 column cast once: a million Timestamp objects would cost seconds.
            "scored_at": pa.array(np.full(len(ids), scored_at.value)).cast(_TIMESTAMP),
        },
        schema=OUTPUT_SCHEMA,
    )


def check_output(out: str | Path, force: bool) -> Path:
    """Checks, before any work, that the output is a ``.csv``/``.parquet`` file that may be written.

    Raises:
        ContractError: The suffix is neither.
        OutputError: It exists (without ``force``), is a folder, or cannot be written.
    """
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ContractError(f"{out}: the scores file must end in .csv or .parquet")
    check_new_file(out, force=force)
    return out


def write_scores(tables: Iterator[pa.Table], out: Path, metadata: dict | None = None) -> int:
    """Streams tables into ``out`` through a temporary sibling renamed into place at the end.

    Args:
        tables: Tables of :data:`OUTPUT_SCHEMA`.
        out: The ``.csv`` or ``.parquet`` file.
        metadata: Key-value pairs for a Parquet file's footer (which run wrote it).

    Returns:
        The rows written.

    Raises:
        OutputError: The file cannot be written; nothing is left at ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep(out.parent, f".{out.name}.tmp-")
    tmp = out.with_name(f".{out.name}.tmp-{owner_tag()}")
    rows = 0
    try:
        if out.suffix.lower() == ".csv":
            with tmp.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(OUTPUT_SCHEMA.names)
                for table in tables:
                    table.to_pandas().to_csv(handle, header=False, index=False)
                    rows += table.num_rows
        else:
            schema = OUTPUT_SCHEMA.with_metadata(metadata) if metadata else OUTPUT_SCHEMA
            with pq.ParquetWriter(tmp, schema) as parquet:
                for table in tables:
                    parquet.write_table(table.replace_schema_metadata(schema.metadata))
                    rows += table.num_rows
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def batch_score(
    repo_dir: str | Path,
    version_dir: str | Path,
    version: str,
    at: str,
    out: str | Path,
    customers: str | Path | None = None,
    chunk_rows: int = 50_000,
    force: bool = False,
    metadata: dict | None = None,
) -> dict:
    """Scores customers at a point in time with a downloaded registry version.

    Args:
        repo_dir: A built feature repository.
        version_dir: The version's files (``Registry.download``).
        version: Its id, written into every row.
        at: The scoring date (a midnight UTC that is one of the repository's snapshots).
        out: The ``.csv`` or ``.parquet`` file to write.
        customers: A CSV of ``customer_id`` or ``customer_id,cutoff``; ``None`` scores every
            customer with an event in the model's lookback (``seq_len * bin_days`` days)
            before ``at``.
        chunk_rows: Rows per Feast read and forward pass.
        force: Replace an existing ``out``.
        metadata: Key-value pairs for a Parquet output's footer.

    Returns:
        ``out``, ``rows``, ``scored`` (status ``ok``), ``at``, ``model_version``.

    Raises:
        ContractError: ``at`` or a row's cutoff is outside the data or has no snapshot, or the
            customers file is malformed.
        OutputError: ``out`` is refused (checked before any work) or cannot be written.
        FeatureStoreError: The repository is not built or does not fit the model.
    """
    out_path = check_output(out, force)
    repo = FeatureRepo(repo_dir)
    at_ts = parse_midnight(at, "--at")
    check_cutoff(repo, at_ts, "--at")
    scoring = ScoringModel.load(version_dir, version)
    spec = scoring.meta["input_spec"]
    if customers is None:
        lookback = int(spec["seq_len"]) * int(spec.get("bin_days") or repo.spec["bin_days"])
        ids = active_customers(repo, at_ts, lookback)
        rows = pd.DataFrame({"customer_id": ids, "cutoff": [at_ts] * len(ids)})
    else:
        rows = read_customers(customers, at_ts)
        for cutoff in sorted(set(rows["cutoff"])):
            check_cutoff(repo, cutoff, f"a cutoff of {customers}:")
    scored_at = pd.Timestamp.now(tz="UTC")
    counts: dict[str, int] = {}

    def counted() -> Iterator[pa.Table]:
        for table in score_customers(repo, scoring, rows, chunk_rows, scored_at):
            for status in table["status"].to_pylist():
                counts[status] = counts.get(status, 0) + 1
            yield table

    written = write_scores(counted(), out_path, metadata)
    log.info("scored %d customers at %s with %s into %s", written, at_ts, version, out_path)
    return {
        "out": str(out_path),
        "rows": written,
        "statuses": counts,
        "at": at_ts.isoformat(),
        "model_version": version,
    }

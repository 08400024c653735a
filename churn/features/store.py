"""The Feast side of the platform: writing sources, applying the repo, reading features.

A feature repository is a copy of the checked-in ``feature_repo/`` template in a working
folder, with its sources under ``data/sources/`` (written all at once, then renamed into place)
and its registry and online store under ``data/``. A build first writes the marker file
:data:`REPO_MARKER` into the folder; a later build writes only into a folder that holds it, is
empty or new, or was built before the marker existed (``feature_store.yaml`` beside
``data/sources/spec.json``), so a mistyped ``--repo`` never overwrites a user's files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn.errors import ChurnError, ContractError
from churn.features.sequences import Snapshots
from churn.io.atomic import check_replaceable, staging_dir
from churn.io.processes import environment

log = logging.getLogger(__name__)

TEMPLATE_FILES = ("feature_store.yaml", "customer_features.py", ".feastignore")
REPO_MARKER = "churn-feature-repo.json"
SEQUENCE_VIEW = "customer_sequences"
PROFILE_VIEW = "customer_profile"
CANCELLATIONS_FILE = "cancellations.parquet"
# What the definitions file (feature_repo/customer_features.py) reads from the environment.
DATA_VARIABLE = "CHURN_FEATURE_DATA"
SOURCE_VARIABLE = "CHURN_FEATURE_SOURCE"


class FeatureStoreError(ChurnError):
    """The feature repository is missing, not built, or cannot serve a request."""


@dataclass
class Features:
    """Features for a list of entity rows, in the order the rows were given.

    Attributes:
        seq: float32 [N, C, L]; all zeros for a customer without history at that time.
        context: float32 [N, len(CONTEXT_FEATURES)]; zeros without history.
        numeric: float32 [N, A] numeric attributes; zeros where unknown.
        categorical: str [N, K] categorical attributes; ``""`` where unknown.
        has_history: bool [N]; False where the store had no snapshot row.
        event_ts: int64 [N] unix seconds of each row's snapshot (online reads only; 0 where
            the store had no row), ``None`` for point-in-time reads.
    """

    seq: np.ndarray
    context: np.ndarray
    numeric: np.ndarray
    categorical: np.ndarray
    has_history: np.ndarray
    event_ts: np.ndarray | None = None


def _built_before_the_marker(path: Path) -> bool:
    return (path / "feature_store.yaml").is_file() and (
        path / "data" / "sources" / "spec.json"
    ).is_file()


class FeatureRepo:
    """A Feast repository in a working folder.

    Args:
        path: Folder of the repository (``feature_store.yaml`` lives there).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def sources(self) -> Path:
        return self.path / "data" / "sources"

    @property
    def spec(self) -> dict:
        """What the sources hold: channels, bins, cutoffs, attributes, time range."""
        spec_path = self.sources / "spec.json"
        if not spec_path.is_file():
            raise FeatureStoreError(
                f"{self.path} has no built features ({spec_path} is missing); "
                "run `churn features build` first"
            )
        try:
            spec = json.loads(spec_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FeatureStoreError(
                f"{spec_path} is not valid JSON ({exc}); rebuild with `churn features build`"
            ) from exc
        if not isinstance(spec, dict):
            raise FeatureStoreError(f"{spec_path} must hold a JSON object")
        return spec

    def check_buildable(self, template: Path) -> None:
        """Checks, before any work, that a build may write into this folder.

        Args:
            template: The checked-in template, which a build may also use in place.

        Raises:
            OutputError: The folder holds something other than a feature repository, or it
                cannot be written.
        """
        in_template = self.path.resolve() == Path(template).resolve()
        check_replaceable(
            self.path,
            REPO_MARKER,
            earlier=lambda path: in_template or _built_before_the_marker(path),
            kind="feature repository",
            in_place=True,
        )

    def init_from(self, template: Path, config: str | Path | None = None) -> None:
        """Marks the folder as a feature repository and copies the template's definition files.

        Args:
            template: The repository template (``features.repo_template``).
            config: A ``feature_store.yaml`` to use instead of the template's (the shared
                store's, ``features.shared_store_config``); ``None`` keeps the template's.

        Raises:
            FeatureStoreError: The template lacks a file.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if self.path.resolve() == Path(template).resolve():
            return
        # First, so that a build that fails later leaves a folder the next build may reuse.
        (self.path / REPO_MARKER).write_text(
            json.dumps({"kind": "churn feature repository", "template": str(template)}) + "\n"
        )
        for name in TEMPLATE_FILES:
            src = Path(template) / name
            if not src.is_file():
                raise FeatureStoreError(f"feature repo template {template} lacks {name}")
            shutil.copy2(src, self.path / name)
        if config is not None:
            shutil.copy2(config, self.path / "feature_store.yaml")

    def write_sources(
        self,
        snapshots: Snapshots,
        transactions: pd.DataFrame,
        customers: pd.DataFrame | None,
        spec: dict,
        cancellations: pd.DataFrame | None = None,
    ) -> None:
        """Writes every source file into a temporary folder, then renames it into place.

        Args:
            snapshots: Sequence snapshot rows.
            transactions: The validated log; labels are computed from it.
            customers: The validated customers table, if any.
            spec: Description of the sources (written as ``spec.json``).
            cancellations: The validated cancellations table, if any; contract labels read it.
        """
        with staging_dir(self.sources) as tmp:
            _write_by_customer(snapshots.to_arrow(), tmp / "sequences.parquet")
            transactions.to_parquet(tmp / "transactions.parquet", index=False)
            if customers is not None:
                profile = customers.copy()
                for column in spec["numeric_attributes"]:
                    profile[column] = profile[column].astype(np.float32)
                # Rounded up to the microsecond, which Spark reads (see _write_by_customer): up,
                # so that no attribute becomes known before its signup.
                profile["signup_date"] = profile["signup_date"].dt.ceil("us")
                profile.to_parquet(tmp / "customers.parquet", index=False, coerce_timestamps="us")
            if cancellations is not None:
                cancellations.to_parquet(tmp / CANCELLATIONS_FILE, index=False)
            (tmp / "spec.json").write_text(json.dumps(spec, indent=2))

    def definitions(self, data: str | None = None) -> list:
        """Imports the repository's definitions file and returns its Feast objects.

        Args:
            data: Where the sources are (``$CHURN_FEATURE_DATA``: a folder, or ``s3a://``
                for the Spark job's tables); ``None``: this repository's own. Either way the
                process's environment is not consulted: a ``CHURN_FEATURE_DATA`` exported for
                ``feast apply`` would point every repository at another's tables, and the
                kind of source follows this repository's ``feature_store.yaml``.

        Raises:
            FeatureStoreError: The definitions cannot be loaded (their configuration or the
                sources' ``spec.json`` is unusable); the message says which file and why.
        """
        file = self.path / "customer_features.py"
        # A unique module name, so two repositories in one process never share a cached module.
        module_name = f"churn_feature_defs_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise FeatureStoreError(f"cannot import feature definitions from {file}")
        module = importlib.util.module_from_spec(spec)
        with environment({DATA_VARIABLE: data, SOURCE_VARIABLE: None}):
            try:
                spec.loader.exec_module(module)
            except (OSError, ValueError) as exc:
                raise FeatureStoreError(
                    f"cannot load the feature definitions {file}: {exc}"
                ) from exc
        return list(module.objects)

    def store(self):
        """A ``feast.FeatureStore`` on this repository."""
        from feast import FeatureStore

        if not (self.path / "feature_store.yaml").is_file():
            raise FeatureStoreError(
                f"{self.path} is not a feature repository (no feature_store.yaml)"
            )
        return FeatureStore(repo_path=str(self.path))

    def apply(self) -> None:
        """Registers the entity and feature views (what ``feast apply`` does)."""
        objects = self.definitions()
        self.store().apply(objects)
        log.info("applied %s: %s", self.path, ", ".join(o.name for o in objects))

    def feature_refs(self) -> list[str]:
        return feature_refs(self.spec)

    def historical_features(
        self, entity_rows: pd.DataFrame, chunk_rows: int | None = None
    ) -> Features:
        """Point-in-time-correct features for (customer, time) rows, through Feast.

        Args:
            entity_rows: Columns ``customer_id`` and ``event_timestamp`` (UTC). Each row gets
                the latest snapshot at or before its time.
            chunk_rows: Rows per ``get_historical_features`` call (see
                :meth:`historical_feature_chunks`); ``None`` asks for all rows at once.

        Returns:
            Features in the order of ``entity_rows``; every row comes back.

        Raises:
            FeatureStoreError: The store returned a different set of rows, or a sequence of
                the wrong length.
        """
        spec = self.spec
        out = empty_features(len(entity_rows), spec)
        # Scattered through a 2-D view: numpy scatters whole [C*L] rows there, 30x faster
        # than through the 3-D array.
        flat_seq = out.seq.reshape(len(out.seq), -1)
        for rows, part in self.historical_feature_chunks(entity_rows, chunk_rows):
            flat_seq[rows] = part.seq.reshape(len(rows), -1)
            out.context[rows] = part.context
            out.numeric[rows] = part.numeric
            out.categorical[rows] = part.categorical
            out.has_history[rows] = part.has_history
        out.categorical = out.categorical.astype(str)
        return out

    def historical_feature_chunks(
        self, entity_rows: pd.DataFrame, chunk_rows: int | None = None
    ) -> Iterator[tuple[np.ndarray, Features]]:
        """Point-in-time-correct features, one chunk of entity rows at a time.

        Chunks hold consecutive customers (rows sorted by customer and time), so each
        ``get_historical_features`` call reads only the snapshot row groups of its customers
        (:meth:`write_sources` writes the sources sorted by customer) and memory stays
        bounded by the chunk, whatever the number of rows.

        Args:
            entity_rows: Columns ``customer_id`` and ``event_timestamp`` (UTC).
            chunk_rows: Most rows per chunk; ``None`` makes one chunk in the given order.

        Yields:
            ``(rows, features)``: positions in ``entity_rows`` and their features, row for row.

        Raises:
            FeatureStoreError: The store returned a different set of rows, or a sequence of
                the wrong length.
        """
        # Imported here: it imports Feast, which readers of the online store load lazily too.
        from churn.features.asof_offline_store import AsofRetrievalJob

        spec = self.spec
        refs = self.feature_refs()
        ids = entity_rows["customer_id"].astype(str).to_numpy()
        times = pd.DatetimeIndex(pd.to_datetime(entity_rows["event_timestamp"], utc=True))
        n = len(ids)
        if chunk_rows is None or n <= chunk_rows:
            order, step = np.arange(n, dtype=np.int64), max(n, 1)
        else:
            keys = pa.table({"customer_id": pa.array(ids, pa.string()), "ts": pa.array(times)})
            order = pc.sort_indices(
                keys, sort_keys=[("customer_id", "ascending"), ("ts", "ascending")]
            ).to_numpy()
            step = chunk_rows
        store = self.store()
        for start in range(0, n, step):
            rows = order[start : start + step]
            entity_df = pd.DataFrame(
                {"customer_id": ids[rows], "event_timestamp": times[rows], "entity_row": rows}
            )
            job = store.get_historical_features(entity_df=entity_df, features=refs)
            # Placed by the entity_row column below, so any order will do.
            table = (
                job.to_arrow_any_order() if isinstance(job, AsofRetrievalJob) else job.to_arrow()
            )
            returned = table["entity_row"].to_numpy()
            if len(returned) != len(rows) or not np.array_equal(np.sort(returned), np.sort(rows)):
                raise FeatureStoreError(
                    f"the offline store returned {len(returned)} rows for {len(rows)} entity "
                    "rows; rows were dropped or duplicated"
                )
            # Scattered by the row number the store returned: no store has to keep the order.
            yield returned, features_from_arrow(table, spec)

    def materialize_latest(self) -> pd.Timestamp:
        """Loads the latest snapshot into the online store.

        Returns:
            The snapshot time that was loaded.
        """
        spec = self.spec
        latest = pd.Timestamp(spec["latest_snapshot"])
        store = self.store()
        # materialize(start, end) rather than materialize_incremental: the first incremental
        # run starts at now - ttl and silently writes nothing for old data.
        views = [SEQUENCE_VIEW]
        store.materialize(
            start_date=latest.to_pydatetime(),
            end_date=(latest + pd.Timedelta(seconds=1)).to_pydatetime(),
            feature_views=views,
        )
        if spec["numeric_attributes"] or spec["categorical_attributes"]:
            store.materialize(
                start_date=pd.Timestamp("1970-01-01", tz="UTC").to_pydatetime(),
                end_date=(latest + pd.Timedelta(seconds=1)).to_pydatetime(),
                feature_views=[PROFILE_VIEW],
            )
        log.info("materialized snapshot %s into the online store", latest)
        return latest

    def online_reader(self, spec: dict | None = None) -> OnlineReader:
        """A reader of the online store that keeps its Feast client between reads.

        Args:
            spec: Which features to read, in the form of the repository's ``spec.json``
                (``channels``, ``seq_len``, ``context_features``, ``numeric_attributes``,
                ``categorical_attributes``); ``None`` reads every feature the sources hold.
        """
        return OnlineReader(self.store(), self.spec if spec is None else spec, str(self.path))

    def online_features(self, customer_ids: list[str]) -> Features:
        """Features of the latest materialized snapshot, from the online store.

        Args:
            customer_ids: Customers to look up.

        Returns:
            Features in the order given; unknown customers get zeros and ``has_history=False``.

        Raises:
            FeatureStoreError: The online store cannot be read (for example it was never
                materialized).
        """
        return self.online_reader().read(customer_ids)


def feature_refs(spec: dict) -> list[str]:
    """Feast references (``view:feature``) of the features a spec names."""
    refs = [f"{SEQUENCE_VIEW}:seq_{c}" for c in spec["channels"]]
    refs += [f"{SEQUENCE_VIEW}:{f}" for f in spec["context_features"]]
    refs += [
        f"{PROFILE_VIEW}:{f}" for f in spec["numeric_attributes"] + spec["categorical_attributes"]
    ]
    return refs


class OnlineReader:
    """Reads the latest features of customers from a Feast online store (SQLite or Redis).

    Building a ``FeatureStore`` loads its registry, which takes far longer than one lookup; a
    server keeps one reader for its lifetime.

    Args:
        store: The ``feast.FeatureStore`` (its ``feature_store.yaml`` names the online store).
        spec: Which features to read (see :meth:`FeatureRepo.online_reader`).
        where: How to name the store in error messages (the repository folder).
    """

    def __init__(self, store: Any, spec: dict, where: str) -> None:
        self.store = store
        self.spec = spec
        self.where = where
        self._refs = feature_refs(spec)

    def read(self, customer_ids: list[str]) -> Features:
        """Features of the latest materialized snapshot of each customer.

        Args:
            customer_ids: Customers to look up.

        Returns:
            Features in the order given, with ``event_ts``; unknown customers get zeros,
            ``has_history=False`` and ``event_ts=0``.

        Raises:
            FeatureStoreError: The online store cannot be read, or holds sequences of another
                length than the spec's.
        """
        from feast.online_response import TIMESTAMP_POSTFIX

        try:
            response = self.store.get_online_features(
                features=self._refs,
                entity_rows=[{"customer_id": str(c)} for c in customer_ids],
            )
            columns = response.to_dict(include_event_timestamps=True)
        except Exception as exc:
            # sqlite3, redis and Feast's own errors all mean the same to the caller: no
            # features, and what to do about it.
            raise FeatureStoreError(
                f"the online store of {self.where} cannot be read ({type(exc).__name__}: "
                f"{exc}); run `churn features materialize` after `churn features build`"
            ) from exc
        # The first channel's timestamp is the snapshot's: materialization writes the whole
        # sequence row at once.
        event_ts = np.asarray(
            columns[f"seq_{self.spec['channels'][0]}{TIMESTAMP_POSTFIX}"], dtype=np.int64
        )
        table = pa.table({k: v for k, v in columns.items() if not k.endswith(TIMESTAMP_POSTFIX)})
        features = features_from_arrow(table, self.spec)
        features.event_ts = np.where(features.has_history, event_ts, 0)
        return features


def features_from_arrow(table: pa.Table, spec: dict) -> Features:
    """Turns a retrieval result (one column per feature) into arrays; null rows become zeros."""
    n = table.num_rows
    seq_len = int(spec["seq_len"])
    channels = spec["channels"]
    seq = np.zeros((n, len(channels), seq_len), dtype=np.float32)
    has_history = np.zeros(n, dtype=bool)
    for c, name in enumerate(channels):
        column = table[f"seq_{name}"].combine_chunks()
        if pa.types.is_null(column.type):
            # Feast's answer when no id of the request is in the online store: every value
            # is None, so the column has no list type to read lengths from.
            continue
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if (lengths[valid] != seq_len).any():
            raise FeatureStoreError(
                f"feature seq_{name} holds sequences of length "
                f"{sorted(set(lengths[valid].tolist()))}, expected {seq_len}: the store was "
                "built with other settings; rebuild it"
            )
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, seq_len)
        if valid.all():
            seq[:, c, :] = flat  # a slice: 10x faster than the masked assignment below
        else:
            seq[valid, c, :] = flat
        has_history |= valid
    context = (
        np.stack([_float_column(table, f) for f in spec["context_features"]], axis=1)
        if spec["context_features"]
        else np.zeros((n, 0), dtype=np.float32)
    )
    numeric = (
        np.stack([_float_column(table, f) for f in spec["numeric_attributes"]], axis=1)
        if spec["numeric_attributes"]
        else np.zeros((n, 0), dtype=np.float32)
    )
    categorical = (
        np.stack(
            [
                # Not fill_null(""): a column of only nulls has no string type to fill.
                np.array(["" if v is None else str(v) for v in table[f].to_pylist()], dtype=str)
                for f in spec["categorical_attributes"]
            ],
            axis=1,
        )
        if spec["categorical_attributes"]
        else np.zeros((n, 0), dtype=str)
    )
    return Features(
        seq=seq, context=context, numeric=numeric, categorical=categorical, has_history=has_history
    )


def empty_features(n: int, spec: dict) -> Features:
    """Zero features for ``n`` rows of the spec's shape (no history anywhere)."""
    return Features(
        seq=np.zeros((n, len(spec["channels"]), int(spec["seq_len"])), dtype=np.float32),
        context=np.zeros((n, len(spec["context_features"])), dtype=np.float32),
        numeric=np.zeros((n, len(spec["numeric_attributes"])), dtype=np.float32),
        categorical=np.full((n, len(spec["categorical_attributes"])), "", dtype=object),
        has_history=np.zeros(n, dtype=bool),
    )


def _write_by_customer(table: pa.Table, path: Path, row_group_rows: int = 65536) -> None:
    """Writes the snapshot source sorted by customer and time, one row group at a time.

    Sorted row groups carry narrow customer ranges in their statistics, so a retrieval for a
    chunk of customers reads only their row groups; taking one group at a time keeps the
    sort's copy to one group.
    """
    order = pc.sort_indices(
        table, sort_keys=[("customer_id", "ascending"), ("snapshot_ts", "ascending")]
    )
    # Microseconds: Spark (the production offline store) cannot read nanosecond timestamps.
    # Snapshot times are whole days, so nothing is lost.
    with pq.ParquetWriter(path, table.schema, coerce_timestamps="us") as writer:
        for start in range(0, max(table.num_rows, 1), row_group_rows):
            writer.write_table(
                table.take(order[start : start + row_group_rows]), row_group_size=row_group_rows
            )


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    values = table[name].combine_chunks().cast(pa.float32()).fill_null(0.0)
    out = values.to_numpy(zero_copy_only=False).astype(np.float32)
    # DuckDB returns NaN (not null) where no row matched the entity.
    return np.nan_to_num(out, nan=0.0)


def check_cutoffs_built(spec: dict, cutoffs: list[pd.Timestamp]) -> None:
    """Raises unless every cutoff has its own snapshot (a stale one would misalign the bins).

    Args:
        spec: The repository's spec.
        cutoffs: Cutoffs a training set asks for.

    Raises:
        ContractError: Some cutoffs have no snapshot; the message lists them.
    """
    built = {pd.Timestamp(c) for c in spec["snapshots"]}
    missing = [c.date().isoformat() for c in cutoffs if c not in built]
    if missing:
        raise ContractError(
            f"cutoffs {missing} have no feature snapshot; snapshots exist at "
            f"{sorted(pd.Timestamp(c).date().isoformat() for c in built)}. Run "
            "`churn features build --cutoffs ...` with these cutoffs first"
        )

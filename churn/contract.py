"""The data contract: what a transaction log and a customers table must look like.

Transactions (CSV or Parquet):

* ``customer_id``: any value, read as a string; required, never empty.
* ``timestamp``: a date or a timestamp. Naive values are read as UTC, aware ones are converted.
* ``amount``: the spend of the transaction, a number >= 0. Refunds (negative amounts) and
  missing amounts are rejected rather than clipped or dropped: silently changing money would
  change the features, so the producer must decide what they mean.
* any number of extra numeric columns (``quantity``, ``items``...): each becomes a channel.
  Missing values in them are rejected too.

Exact duplicate rows (every column equal) are rejected: in a transaction log they are almost
always a double load, and counting them would inflate activity.

Customers (optional, CSV or Parquet): ``customer_id``, ``signup_date`` and any static
attributes; numeric columns become numeric features, the others categorical ones.

Every violation raises :class:`~churn.errors.ContractError` naming the file, the column and
the first offending row (1-based, as a spreadsheet shows it, after the header).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.errors import ContractError

REQUIRED_TX = ("customer_id", "timestamp", "amount")
REQUIRED_CUSTOMERS = ("customer_id", "signup_date")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Names the later steps derive: daily activity columns, the point-in-time context features
# (``churn.sequences.CONTEXT_FEATURES``) and the Feast sources' timestamp columns. An input
# column of the same name would overwrite one of them or collide inside Feast.
RESERVED_COLUMNS = frozenset(
    {
        "day",
        "n_txn",
        "spend",
        "tenure_days",
        "recency_days",
        "frequency",
        "monetary",
        "event_timestamp",
        "snapshot_ts",
    }
)


def to_ns(series: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch, for vectorised comparisons."""
    return series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view("i8")


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ContractError(f"{path}: file does not exist")
    if path.is_dir():
        raise ContractError(f"{path}: is a folder, expected a .csv or .parquet file")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ContractError(
            f"{path}: unsupported file type {path.suffix!r}; expected one of {sorted(SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: file is empty")
    try:
        if kind == "csv":
            # Only an empty field is missing: "NA" is a region, "null" may be a plan name.
            df = pd.read_csv(
                path, dtype={"customer_id": str}, keep_default_na=False, na_values=[""]
            )
        else:
            df = pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not a readable CSV file: {exc}") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise ContractError(f"{path}: not a readable Parquet file: {exc}") from exc
    if df.empty:
        raise ContractError(f"{path}: holds no rows")
    return df


def _first_row(mask: np.ndarray | pd.Series) -> int:
    # 1-based data row numbers, as users count rows in a file after the header.
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _require(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ContractError(
            f"{path}: missing required column(s) {missing}; found {list(df.columns)}"
        )


def _parse_time(values: pd.Series, path: Path, column: str) -> pd.Series:
    if values.isna().any():
        raise ContractError(
            f"{path}: column {column!r} is empty at row {_first_row(values.isna())}"
        )
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype(str)
        _refuse_zone_names(text, path, column)
        # The inferred single format is fast. Rows it misses may only differ within ISO 8601
        # (fractions, offsets): a second non-ISO format would mix day-first and month-first.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(text, errors="coerce", utc=True)
        retry = parsed.isna()
        if retry.any():
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna()
        if bad.any():
            row = _first_row(bad)
            raise ContractError(
                f"{path}: column {column!r} has an unparsable timestamp {values.iloc[row - 1]!r} "
                f"at row {row} (every row must share one format, or be ISO 8601)"
            )
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize("UTC")
    try:
        return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError) as exc:
        years = parsed.dt.year
        out = (years < _FIRST_YEAR) | (years > _LAST_YEAR)
        where = f" at row {_first_row(out)}" if out.any() else ""
        raise ContractError(
            f"{path}: column {column!r} holds a time outside {_FIRST_YEAR}..{_LAST_YEAR}{where}"
        ) from exc


# Nanosecond timestamps span 1677-09-21 to 2262-04-11; whole years inside that range.
_FIRST_YEAR, _LAST_YEAR = 1678, 2261
# A zone name such as EST or CEST after the time: pandas drops the ones it does not know and
# reads the time as UTC, which would move events across cutoffs. UTC, GMT and Z are unambiguous
# (and AM/PM is no zone).
_ZONE_NAME = re.compile(r"(?:\d|\b(?i:[ap]m))\s*(?!(?i:utc|gmt|[ap]m)$)[A-Za-z]{2,5}$")


def _refuse_zone_names(text: pd.Series, path: Path, column: str) -> None:
    named = text.str.strip().str.contains(_ZONE_NAME)
    if named.any():
        row = _first_row(named)
        raise ContractError(
            f"{path}: column {column!r} has the timestamp {text.iloc[row - 1]!r} at row {row} "
            "with a time-zone name; names such as EST are ambiguous, write an offset "
            "(-05:00) or UTC"
        )


def _customer_ids(values: pd.Series, path: Path) -> pd.Series:
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        raise ContractError(f"{path}: column 'customer_id' is empty at row {_first_row(empty)}")
    if pd.api.types.is_float_dtype(values):
        # 1.0 would become the id "1.0", which matches "1" in no other file.
        raise ContractError(
            f"{path}: column 'customer_id' holds floating-point numbers; store ids as strings "
            "or integers"
        )
    # Surrounding spaces are an artefact of how a file was written, not part of an id.
    return values.astype(str).str.strip()


def _numeric(values: pd.Series, path: Path, column: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any():
        row = _first_row(bad)
        raise ContractError(
            f"{path}: column {column!r} has a non-numeric value {values.iloc[row - 1]!r} "
            f"at row {row}"
        )
    if numeric.isna().any():
        raise ContractError(
            f"{path}: column {column!r} is empty (NaN) at row {_first_row(numeric.isna())}"
        )
    if not np.isfinite(numeric.to_numpy(dtype=float)).all():
        row = _first_row(~np.isfinite(numeric.to_numpy(dtype=float)))
        raise ContractError(f"{path}: column {column!r} is infinite at row {row}")
    return numeric.astype("float64")


def validate_transactions(df: pd.DataFrame, path: str | Path = "<transactions>") -> pd.DataFrame:
    """Checks a transaction table against the contract and normalises its types.

    Args:
        df: The raw table.
        path: Where it came from, for error messages.

    Returns:
        A new table: ``customer_id`` (str), ``timestamp`` (UTC), ``amount`` and each extra column
        (float64), sorted by timestamp then customer.

    Raises:
        ContractError: A rule of the contract is broken; the message names file, column and row.
    """
    path = Path(str(path))
    if df.empty:
        raise ContractError(f"{path}: holds no rows")
    _require(df, path, REQUIRED_TX)
    out = pd.DataFrame({"customer_id": _customer_ids(df["customer_id"], path)})
    out["timestamp"] = _parse_time(df["timestamp"], path, "timestamp")
    out["amount"] = _numeric(df["amount"], path, "amount")
    negative = out["amount"] < 0
    if negative.any():
        row = _first_row(negative)
        raise ContractError(
            f"{path}: column 'amount' is negative ({out['amount'].iloc[row - 1]}) at row {row}; "
            "refunds are not part of the contract, net them out or drop them upstream"
        )
    for column in df.columns:
        if column in REQUIRED_TX:
            continue
        _check_extra_name(df, path, column)
        if not (
            pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column])
        ):
            raise ContractError(
                f"{path}: extra column {column!r} is not numeric (dtype {df[column].dtype}); "
                "extra event columns become channels and must be numbers"
            )
        out[column] = _numeric(df[column], path, column)
        negative = out[column] < 0
        if negative.any():
            row = _first_row(negative)
            raise ContractError(
                f"{path}: extra column {column!r} is negative ({out[column].iloc[row - 1]}) at "
                f"row {row}; channels count or sum non-negative quantities"
            )
    duplicated = out.duplicated(keep="first")
    if duplicated.any():
        row = _first_row(duplicated)
        first = _first_row((out == out.iloc[row - 1]).all(axis=1))
        raise ContractError(
            f"{path}: row {row} duplicates row {first} exactly (customer "
            f"{out['customer_id'].iloc[row - 1]!r} at {out['timestamp'].iloc[row - 1]})"
        )
    return out.sort_values(["timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def load_transactions(path: str | Path) -> pd.DataFrame:
    """Reads and validates a transaction log (CSV or Parquet).

    Args:
        path: The file.

    Returns:
        The validated table (see :func:`validate_transactions`).

    Raises:
        ContractError: The file is missing, empty, of the wrong type or breaks the contract.
    """
    path = Path(path)
    return validate_transactions(_read_table(path), path)


def validate_customers(df: pd.DataFrame, path: str | Path = "<customers>") -> pd.DataFrame:
    """Checks a customers table: unique ids, parseable signup dates, typed attributes.

    Args:
        df: The raw table.
        path: Where it came from, for error messages.

    Returns:
        A new table with ``customer_id`` (str), ``signup_date`` (UTC), numeric attributes as
        float64 and the other attributes as strings (missing ones as ``""``).

    Raises:
        ContractError: A rule is broken; the message names file, column and row.
    """
    path = Path(str(path))
    if df.empty:
        raise ContractError(f"{path}: holds no rows")
    _require(df, path, REQUIRED_CUSTOMERS)
    out = pd.DataFrame({"customer_id": _customer_ids(df["customer_id"], path)})
    duplicated = out["customer_id"].duplicated()
    if duplicated.any():
        row = _first_row(duplicated)
        raise ContractError(
            f"{path}: customer_id {out['customer_id'].iloc[row - 1]!r} appears twice (row {row})"
        )
    out["signup_date"] = _parse_time(df["signup_date"], path, "signup_date")
    for column in df.columns:
        if column in REQUIRED_CUSTOMERS:
            continue
        _check_extra_name(df, path, column)
        if pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column]):
            out[column] = _numeric(df[column], path, column)
        else:
            out[column] = df[column].fillna("").astype(str)
    return out


def _check_extra_name(df: pd.DataFrame, path: Path, column: object) -> None:
    """Refuses extra columns that are artefacts of how the file was written, or that would
    collide with the columns and features the platform derives."""
    name = str(column)
    if name in RESERVED_COLUMNS:
        raise ContractError(
            f"{path}: column {name!r} clashes with a name the platform derives "
            f"({sorted(RESERVED_COLUMNS)}); rename it"
        )
    if re.fullmatch(r"Unnamed: \d+", name):
        raise ContractError(
            f"{path}: column {name!r} has no header; it looks like a saved DataFrame index "
            "(write the file with index=False) and would become a feature"
        )
    mangled = re.fullmatch(r"(.+)\.\d+", name)
    if mangled and mangled.group(1) in df.columns:
        raise ContractError(
            f"{path}: column {name!r} repeats the header {mangled.group(1)!r}; every column "
            "name must be unique"
        )


def load_customers(path: str | Path) -> pd.DataFrame:
    """Reads and validates a customers table (CSV or Parquet).

    Args:
        path: The file.

    Returns:
        The validated table (see :func:`validate_customers`).

    Raises:
        ContractError: The file is missing, empty, of the wrong type or breaks the contract.
    """
    path = Path(path)
    return validate_customers(_read_table(path), path)


def extra_channels(tx: pd.DataFrame) -> list[str]:
    """Names of the extra numeric event columns of a validated transaction table."""
    return [c for c in tx.columns if c not in REQUIRED_TX]

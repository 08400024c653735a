"""The data contract: what a transaction log and a customers table must look like.

Transactions (CSV or Parquet):

* ``customer_id``: any value, read as a string; required, never empty.
* ``timestamp``: a date or a timestamp. Naive values are read as UTC, aware ones are converted.
* ``amount``: the spend of the transaction, a number >= 0. Refunds (negative amounts) and
  missing amounts are rejected rather than clipped or dropped: silently changing money would
  change the features, so the producer must decide what they mean.
* any number of extra numeric columns (``quantity``, ``items``...): each becomes a channel.
  Missing values in them are rejected too.
* every number (amounts, extra columns, numeric customer attributes) is finite and within the
  float32 range (about 3.4e38), the precision features are stored in.

Events later than ``features.max_event_time`` (by default one day after now) are rejected: a
future date would move the serving snapshot and the automatic cutoffs to it. A log whose extra
columns would make more than ``features.max_channels`` channels is refused from its header.

Exact duplicate rows (every column equal) are rejected: in a transaction log they are almost
always a double load, and counting them would inflate activity.

Customers (optional, CSV or Parquet): ``customer_id``, ``signup_date`` and any static
attributes; numeric columns become numeric features, the others categorical ones.

Cancellations (optional, CSV or Parquet; needed by ``features.churn_definition=contract``):
``customer_id`` and ``timestamp`` (read like the transactions' timestamps, no later than
``features.max_event_time``), nothing else, and at most one row per customer: a cancellation
ends the customer, so a customer who subscribes again must come back under a new id.

Every violation raises :class:`~churn.errors.ContractError` naming the file, the column and
the first offending row (1-based, as a spreadsheet shows it, after the header).
"""

from __future__ import annotations

import csv
import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Public since pandas 2.2, but pandas-stubs 2.3 does not declare it yet.
from pandas.tseries.api import guess_datetime_format  # type: ignore[attr-defined]

from churn.errors import ContractError
from churn.settings import FeatureConfig

REQUIRED_TX = ("customer_id", "timestamp", "amount")
REQUIRED_CUSTOMERS = ("customer_id", "signup_date")
REQUIRED_CANCELLATIONS = ("customer_id", "timestamp")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Sequences, context and attributes are float32 from the snapshots on (Feast, the training set,
# the model); a larger number would turn into inf there, far from the row that held it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
DEFAULT_MAX_CHANNELS: int = FeatureConfig.model_fields["max_channels"].default
# The default bound on event times is this far after now: producers' clocks and time zones
# disagree by hours, a typo in the year by far more.
FUTURE_SLACK = pd.Timedelta(days=1)
# Names the later steps derive: daily activity columns, the point-in-time context features
# (``churn.features.sequences.CONTEXT_FEATURES``) and the Feast sources' timestamp columns. An input
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
# Customer attributes land in their own feature view, beside the context features and the
# entity table's timestamp; activity column names do not reach it.
RESERVED_ATTRIBUTES = frozenset(
    {"tenure_days", "recency_days", "frequency", "monetary", "event_timestamp"}
)


def to_ns(series: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch, for vectorised comparisons."""
    return series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view("i8")


def _kind(path: Path) -> str:
    """``csv`` or ``parquet`` for an existing, non-empty file of a supported type."""
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
    return kind


def _read_table(path: Path, na_tokens: bool = True) -> pd.DataFrame:
    kind = _kind(path)
    try:
        if kind == "csv":
            # With na_tokens=False only an empty field is missing: in a customers table "NA"
            # may be a region and "null" a plan name.
            df = pd.read_csv(
                path,
                dtype={"customer_id": str},
                keep_default_na=na_tokens,
                na_values=None if na_tokens else [""],
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
        # "10:00 pm" -> "10:00 PM": pandas reads a lower-case am/pm as literal text.
        text = values.astype(str).str.strip().str.replace(_AM_PM, _upper_am_pm, regex=True)
        _refuse_zone_names(text, path, column)
        # One format for the whole column: the one row 1 has, else ISO 8601. Rows it misses may
        # still be ISO 8601 (fractions, offsets), but a second non-ISO format never is, so
        # day-first and month-first rows cannot mix. Without an explicit format pandas would
        # parse row by row whenever it cannot guess row 1's format.
        fmt = _guess_format(text.iloc[0], path, column)
        parsed = _to_datetime(text, fmt, path, column)
        retry = parsed.isna()
        if retry.any() and fmt != "ISO8601":
            parsed[retry] = _to_datetime(text[retry], "ISO8601", path, column)
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


_AM_PM = re.compile(r"\b([AaPp])\.?[Mm]\.?$")
_PM = re.compile(r"PM$")


def _upper_am_pm(match: re.Match) -> str:
    return match.group(1).upper() + "M"


def _guess_format(first: str, path: Path, column: str) -> str:
    """The format of row 1, or ISO 8601 when pandas cannot tell."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # an unknown zone name; see below
        try:
            # pandas guesses no format for a PM time ("01:00 PM" parses as hour 13, which it
            # then cannot find in the text); the same row at AM has the same format.
            return (
                guess_datetime_format(first)
                or guess_datetime_format(_PM.sub("AM", first))
                or "ISO8601"
            )
        except FutureWarning:
            raise _zone_error(first, 1, path, column) from None


def _to_datetime(text: pd.Series, fmt: str, path: Path, column: str) -> pd.Series:
    """Parses with one format; a zone name pandas does not know is an error, not UTC."""
    with warnings.catch_warnings():
        # pandas only warns that it drops an unknown zone name, then reads the time as UTC.
        warnings.simplefilter("error", FutureWarning)
        try:
            return pd.to_datetime(text, errors="coerce", utc=True, format=fmt)
        except FutureWarning:
            row = _first_zone_row(text, fmt)
            raise _zone_error(text.iloc[row - 1], row, path, column) from None


def _zone_error(value: str, row: int, path: Path, column: str) -> ContractError:
    return ContractError(
        f"{path}: column {column!r} has the timestamp {value!r} at row {row} with a time-zone "
        "name; names such as EST are ambiguous and pandas would read the time as UTC, so write "
        "an offset (-05:00) or UTC"
    )


def _first_zone_row(text: pd.Series, fmt: str) -> int:
    # Only on the error path, so row by row is affordable.
    for row, value in enumerate(text, start=1):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            try:
                pd.to_datetime(pd.Series([value]), errors="coerce", utc=True, format=fmt)
            except FutureWarning:
                return row
    return 1


# Nanosecond timestamps span 1677-09-21 to 2262-04-11; whole years inside that range.
_FIRST_YEAR, _LAST_YEAR = 1678, 2261
# A zone name such as EST or CEST after the time: pandas drops the ones it does not know and
# reads the time as UTC, which would move events across cutoffs. UTC, GMT and Z are unambiguous
# (and AM/PM is no zone).
_ZONE_NAME = re.compile(r"(?:\d|\b(?i:[ap]m))\s*(?!(?i:utc|gmt|[ap]m)$)[A-Za-z]{2,5}$")


def _refuse_zone_names(text: pd.Series, path: Path, column: str) -> None:
    named = text.str.contains(_ZONE_NAME)
    if named.any():
        row = _first_row(named)
        raise _zone_error(text.iloc[row - 1], row, path, column)


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
    as_float = numeric.to_numpy(dtype=float)
    if not np.isfinite(as_float).all():
        row = _first_row(~np.isfinite(as_float))
        raise ContractError(f"{path}: column {column!r} is infinite at row {row}")
    too_large = np.abs(as_float) > FLOAT32_MAX
    if too_large.any():
        row = _first_row(too_large)
        raise ContractError(
            f"{path}: column {column!r} holds {values.iloc[row - 1]!r} at row {row}, beyond "
            f"{FLOAT32_MAX:.4g}: features are stored as float32, where it would become infinite"
        )
    return numeric.astype("float64")


def event_time_bound(
    max_event_time: datetime | str | pd.Timestamp | None, now: pd.Timestamp | None = None
) -> pd.Timestamp:
    """The latest event time a log may hold (``features.max_event_time``).

    Args:
        max_event_time: The configured bound (naive values are UTC); ``None`` for the default.
        now: The time of the run (defaults to the clock); tests pin it.

    Returns:
        The bound in UTC: the configured one, else ``now`` plus :data:`FUTURE_SLACK`.
    """
    if max_event_time is not None:
        bound = pd.Timestamp(max_event_time)
        return bound.tz_localize("UTC") if bound.tzinfo is None else bound.tz_convert("UTC")
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    return now + FUTURE_SLACK


def validate_transactions(
    df: pd.DataFrame,
    path: str | Path = "<transactions>",
    *,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    latest_event: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Checks a transaction table against the contract and normalises its types.

    Args:
        df: The raw table.
        path: Where it came from, for error messages.
        max_channels: Most channels the table may make (``features.max_channels``).
        latest_event: Latest accepted event time (UTC); ``None`` is :func:`event_time_bound`'s
            default, one day after now.

    Returns:
        A new table: ``customer_id`` (str), ``timestamp`` (UTC), ``amount`` and each extra column
        (float64), sorted by timestamp then customer.

    Raises:
        ContractError: A rule of the contract is broken; the message names file, column and row.
    """
    path = Path(str(path))
    if df.empty:
        raise ContractError(f"{path}: holds no rows")
    _check_channel_count(list(df.columns), path, max_channels)
    _require(df, path, REQUIRED_TX)
    out = pd.DataFrame({"customer_id": _customer_ids(df["customer_id"], path)})
    out["timestamp"] = _parse_time(df["timestamp"], path, "timestamp")
    _refuse_future_events(
        out["timestamp"], path, event_time_bound(None) if latest_event is None else latest_event
    )
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
        _check_extra_name(df, path, column, RESERVED_COLUMNS)
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


def _refuse_future_events(times: pd.Series, path: Path, latest: pd.Timestamp) -> None:
    late = times > latest
    if late.any():
        row = _first_row(late)
        raise ContractError(
            f"{path}: column 'timestamp' has {times.iloc[row - 1]} at row {row}, later than "
            f"{latest} (features.max_event_time; by default one day after now): a future event "
            "would move the serving snapshot and the automatic cutoffs to it. Fix the row, or "
            "set features.max_event_time if the log really reaches that far"
        )


def _check_channel_count(columns: list, path: Path, max_channels: int) -> None:
    """Refuses a log with more extra columns than channels allowed; each would become one."""
    extra = [c for c in columns if c not in REQUIRED_TX]
    channels = len(extra) + 2  # n_txn and spend, then one per extra column
    if channels > max_channels:
        raise ContractError(
            f"{path}: has {len(extra)} extra columns, which make {channels} channels (n_txn, "
            f"spend and one per extra column), more than features.max_channels={max_channels}; "
            "drop columns from the log or raise features.max_channels"
        )


def _header(path: Path) -> list[str]:
    """The column names of a log, read without parsing its rows.

    Unreadable files give ``[]``: :func:`_read_table` then reports them in its own words.
    """
    if _kind(path) == "parquet":
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError):
            return []
        # pandas' saved index, which read_parquet turns back into the index.
        return [n for n in names if not n.startswith("__index_level_")]
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as file:
            # pandas skips blank lines before the header too.
            return next((row for row in csv.reader(file) if row), [])
    except (csv.Error, OSError):
        return []


def load_transactions(
    path: str | Path,
    *,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    latest_event: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Reads and validates a transaction log (CSV or Parquet).

    The header is checked first, so a log with too many columns is refused before pandas
    parses it (its time grows with the square of the column count).

    Args:
        path: The file.
        max_channels: Most channels the log may make (``features.max_channels``).
        latest_event: Latest accepted event time (UTC); ``None`` is one day after now.

    Returns:
        The validated table (see :func:`validate_transactions`).

    Raises:
        ContractError: The file is missing, empty, of the wrong type or breaks the contract.
    """
    path = Path(path)
    _check_channel_count(_header(path), path, max_channels)
    return validate_transactions(
        _read_table(path), path, max_channels=max_channels, latest_event=latest_event
    )


def validate_cancellations(
    df: pd.DataFrame,
    path: str | Path = "<cancellations>",
    *,
    latest_event: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Checks a cancellations table: one cancellation per customer, at a parseable time.

    Args:
        df: The raw table.
        path: Where it came from, for error messages.
        latest_event: Latest accepted time (UTC); ``None`` is one day after now.

    Returns:
        A new table with ``customer_id`` (str) and ``timestamp`` (UTC), sorted by time.

    Raises:
        ContractError: A rule is broken; the message names file, column and row.
    """
    path = Path(str(path))
    if df.empty:
        raise ContractError(f"{path}: holds no rows")
    _require(df, path, REQUIRED_CANCELLATIONS)
    extra = [str(c) for c in df.columns if c not in REQUIRED_CANCELLATIONS]
    if extra:
        raise ContractError(
            f"{path}: unexpected column(s) {extra}; a cancellations table holds only "
            f"{list(REQUIRED_CANCELLATIONS)}"
        )
    out = pd.DataFrame({"customer_id": _customer_ids(df["customer_id"], path)})
    out["timestamp"] = _parse_time(df["timestamp"], path, "timestamp")
    _refuse_future_events(
        out["timestamp"], path, event_time_bound(None) if latest_event is None else latest_event
    )
    again = out["customer_id"].duplicated()
    if again.any():
        row = _first_row(again)
        customer = out["customer_id"].iloc[row - 1]
        first = _first_row(out["customer_id"] == customer)
        raise ContractError(
            f"{path}: customer_id {customer!r} cancels again at row {row} (first at row "
            f"{first}); a cancellation ends the customer, so a returning subscriber needs a new id"
        )
    return out.sort_values(["timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def load_cancellations(
    path: str | Path, *, latest_event: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Reads and validates a cancellations table (CSV or Parquet).

    Args:
        path: The file.
        latest_event: Latest accepted time (UTC); ``None`` is one day after now.

    Returns:
        The validated table (see :func:`validate_cancellations`).

    Raises:
        ContractError: The file is missing, empty, of the wrong type or breaks the contract.
    """
    path = Path(path)
    return validate_cancellations(_read_table(path), path, latest_event=latest_event)


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
        _check_extra_name(df, path, column, RESERVED_ATTRIBUTES)
        if pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column]):
            out[column] = _numeric(df[column], path, column)
        else:
            _refuse_numbers_with_na_tokens(df[column], path, column)
            out[column] = df[column].fillna("").astype(str)
    return out


_NA_TOKENS = frozenset({"NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-"})


def _refuse_numbers_with_na_tokens(values: pd.Series, path: Path, column: object) -> None:
    """A numeric attribute whose missing values are spelled ``NA`` would become categorical."""
    text = values.astype(str).str.strip()
    is_number = pd.to_numeric(text, errors="coerce").notna()
    is_token = text.isin(_NA_TOKENS) & values.notna()
    if is_number.any() and is_token.any() and (is_number | is_token | values.isna()).all():
        row = _first_row(is_token)
        raise ContractError(
            f"{path}: column {column!r} holds numbers and {values.iloc[row - 1]!r} at row {row}; "
            "leave a missing number empty"
        )


def _check_extra_name(
    df: pd.DataFrame, path: Path, column: object, reserved: frozenset[str]
) -> None:
    """Refuses extra columns that are artefacts of how the file was written, or that would
    collide with the columns and features the platform derives."""
    name = str(column)
    if name in reserved:
        raise ContractError(
            f"{path}: column {name!r} clashes with a name the platform derives "
            f"({sorted(reserved)}); rename it"
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
    return validate_customers(_read_table(path, na_tokens=False), path)


def extra_channels(tx: pd.DataFrame) -> list[str]:
    """Names of the extra numeric event columns of a validated transaction table."""
    return [c for c in tx.columns if c not in REQUIRED_TX]

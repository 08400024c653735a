"""The CDNOW transaction log, converted to the data contract.

CDNOW (Fader & Hardie) holds 69,659 purchases of the 23,570 customers who first bought at the
CDNOW online store in Q1 1997, up to 1998-06-30. It ships in the PyPI package ``lifetimes``
as ``datasets/CDNOW_master.txt``; the package is located without importing it (its import
breaks on current pandas and scipy).

CDNOW records dates, not times, and lists some customers twice on a day with the same amount.
Without a time those rows cannot be told apart from a double load, so the conversion merges
each customer's purchases of one day into one transaction (amount and quantity summed), the
convention of the CDNOW literature, and stamps it at noon UTC, inside its day.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd

from churn.data.contract import validate_transactions
from churn.errors import ContractError, OutputError
from churn.io.leftovers import owner_tag, sweep


def cdnow_source() -> Path:
    """Path of ``CDNOW_master.txt`` inside the installed ``lifetimes`` package."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise ContractError(
            "the CDNOW log ships in the package 'lifetimes', which is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    if not path.is_file():
        raise ContractError(f"{path} is missing from the installed 'lifetimes' package")
    return path


def load_cdnow(source: str | Path | None = None) -> pd.DataFrame:
    """Reads CDNOW and returns it as a validated transaction table.

    Args:
        source: ``CDNOW_master.txt``; defaults to the copy in ``lifetimes``.

    Returns:
        Columns ``customer_id``, ``timestamp``, ``amount``, ``quantity``.
    """
    source = Path(source) if source is not None else cdnow_source()
    raw = pd.read_csv(source, sep=r"\s+", dtype={"customer_id": str, "date": str})
    expected = ["customer_id", "date", "number_of_cds", "dollar_value"]
    if list(raw.columns) != expected:
        raise ContractError(f"{source}: expected columns {expected}, found {list(raw.columns)}")
    merged = raw.groupby(["customer_id", "date"], as_index=False, sort=True).agg(
        amount=("dollar_value", "sum"), quantity=("number_of_cds", "sum")
    )
    stamped = pd.DataFrame(
        {
            "customer_id": merged["customer_id"],
            "timestamp": pd.to_datetime(merged["date"], format="%Y%m%d", utc=True)
            + pd.Timedelta(hours=12),
            "amount": merged["amount"].astype(float),
            "quantity": merged["quantity"].astype(float),
        }
    )
    return validate_transactions(stamped, source)


def check_table_path(out: str | Path) -> Path:
    """Refuses an output name whose suffix is neither ``.csv`` nor ``.parquet``."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ContractError(f"{out}: output must end in .csv or .parquet")
    return out


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    """Writes a table as CSV or Parquet (by suffix) through a temporary file and a rename.

    Args:
        df: The table.
        out: Destination ``.csv`` or ``.parquet`` file.

    Returns:
        The destination path.

    Raises:
        ContractError: The suffix is neither ``.csv`` nor ``.parquet``.
        OutputError: The file cannot be written (the message names ``out``).
    """
    out = check_table_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A killed earlier write left its temporary file under a name that says whose it was.
    sweep(out.parent, f".{out.name}.tmp-")
    tmp = out.with_name(f".{out.name}.tmp-{owner_tag()}")
    try:
        if out.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out

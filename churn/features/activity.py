"""Daily activity: the raw log aggregated per customer per day.

Day bins are right-closed: day ``d`` (days since the epoch) holds events in
``(d - 1, d]`` midnights UTC, so an event at exactly midnight belongs to the day that ends then.
This makes every midnight cutoff ``t`` split the days exactly: days ``<= t`` hold only events
at or before ``t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.data.contract import extra_channels, to_ns

DAY_NS = 86_400 * 10**9
BASE_CHANNELS = ("n_txn", "spend")


def day_index(ns: np.ndarray) -> np.ndarray:
    """Right-closed day index of UTC nanosecond timestamps: ``ceil(ns / day)``."""
    return -(-ns // DAY_NS)


def channel_names(tx: pd.DataFrame, extra: list[str] | None = None) -> list[str]:
    """The activity channels: transaction count, spend, then the chosen extra columns.

    Args:
        tx: A validated transaction table.
        extra: Extra numeric columns to use; ``None`` takes all of them.

    Returns:
        Channel names in a fixed order.

    Raises:
        KeyError: A requested extra column is not in the table.
    """
    available = extra_channels(tx)
    chosen = available if extra is None else list(extra)
    missing = [c for c in chosen if c not in available]
    if missing:
        raise KeyError(f"extra channel(s) {missing} are not columns of the log; it has {available}")
    return [*BASE_CHANNELS, *chosen]


def daily_activity(tx: pd.DataFrame, channels: list[str]) -> pd.DataFrame:
    """Aggregates transactions per customer and right-closed day.

    Args:
        tx: A validated transaction table.
        channels: Output of :func:`channel_names`.

    Returns:
        Columns ``customer_id``, ``day`` (int64, days since the epoch) and one float64 column
        per channel (``n_txn`` counts transactions, ``spend`` sums ``amount``, extra channels
        sum their column), sorted by customer then day.
    """
    frame = pd.DataFrame(
        {"customer_id": tx["customer_id"], "day": day_index(to_ns(tx["timestamp"]))}
    )
    frame["n_txn"] = 1.0
    frame["spend"] = tx["amount"].to_numpy()
    for column in channels[len(BASE_CHANNELS) :]:
        frame[column] = tx[column].to_numpy()
    out = frame.groupby(["customer_id", "day"], sort=True, observed=True)[channels].sum()
    return out.reset_index()

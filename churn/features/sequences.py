"""Sequence snapshots: the last L bins of every channel for each customer at each cutoff.

A snapshot at cutoff ``t`` (midnight UTC, right-closed day ``T``) holds, for every customer
with any event at or before ``t``:

* ``seq[c, j]`` for bin ``j`` in ``0..L-1``: the sum of channel ``c`` over days
  ``(T - (L - j) * b, T - (L - 1 - j) * b]``; bin ``L-1`` ends at the cutoff.
* point-in-time context: ``tenure_days`` (since the first event, or signup when known),
  ``recency_days`` (since the last active day), ``frequency`` (lifetime transactions) and
  ``monetary`` (lifetime mean spend per transaction).

Only days ``<= T`` are read, which is what keeps snapshots free of leakage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.data.contract import FLOAT32_MAX
from churn.errors import ContractError
from churn.features.activity import DAY_NS, day_index

CONTEXT_FEATURES = ("tenure_days", "recency_days", "frequency", "monetary")


@dataclass
class Snapshots:
    """Snapshot rows at one or more cutoffs.

    Attributes:
        customer_id: Customer of each row [N].
        snapshot_ts: Cutoff of each row as UTC nanoseconds [N].
        seq: Sequences, float32 [N, C, L].
        context: Context features, float32 [N, len(CONTEXT_FEATURES)].
        channels: Channel names (C of them).
    """

    customer_id: np.ndarray
    snapshot_ts: np.ndarray
    seq: np.ndarray
    context: np.ndarray
    channels: list[str]

    def __len__(self) -> int:
        return len(self.customer_id)

    def to_arrow(self) -> pa.Table:
        """The Feast source table: one ``Array(Float32)`` column per channel, then context."""
        n, _, seq_len = self.seq.shape
        offsets = pa.array(np.arange(0, (n + 1) * seq_len, seq_len, dtype=np.int32))
        columns = {
            "customer_id": pa.array(self.customer_id.astype(str)),
            "snapshot_ts": pa.array(self.snapshot_ts.astype("datetime64[ns]")).cast(
                pa.timestamp("ns", tz="UTC")
            ),
        }
        for c, name in enumerate(self.channels):
            values = pa.array(np.ascontiguousarray(self.seq[:, c, :]).ravel())
            columns[f"seq_{name}"] = pa.ListArray.from_arrays(offsets, values)
        for k, name in enumerate(CONTEXT_FEATURES):
            columns[name] = pa.array(self.context[:, k])
        return pa.table(columns)


def snapshot_row_count(activity: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> int:
    """The rows :func:`build_snapshots` would make: the customers seen by each cutoff, summed.

    Args:
        activity: Daily activity, as for :func:`build_snapshots`.
        cutoffs: Midnight UTC cutoffs.

    Returns:
        The row count, computed without building anything.
    """
    first_days = np.sort(activity.groupby("customer_id", observed=True)["day"].min().to_numpy())
    return int(sum(np.searchsorted(first_days, c.value // DAY_NS, side="right") for c in cutoffs))


def build_snapshots(
    activity: pd.DataFrame,
    channels: list[str],
    cutoffs: list[pd.Timestamp],
    bin_days: int,
    seq_len: int,
    signup: pd.DataFrame | None = None,
) -> Snapshots:
    """Builds snapshot rows at each cutoff from daily activity.

    Args:
        activity: Output of :func:`churn.features.activity.daily_activity`, sorted by customer
            and day.
        channels: Channel columns of ``activity``.
        cutoffs: Midnight UTC cutoffs.
        bin_days: Days per bin.
        seq_len: Bins per sequence.
        signup: Optional ``customer_id``, ``signup_date`` table; tenure then counts from the
            earlier of signup and first event.

    Returns:
        Rows for every (customer seen by the cutoff, cutoff), ordered by cutoff then customer.
    """
    ids, codes = np.unique(activity["customer_id"].to_numpy().astype(str), return_inverse=True)
    days = activity["day"].to_numpy(np.int64)
    values = activity[channels].to_numpy(np.float64)
    n_txn = activity["n_txn"].to_numpy(np.float64)
    spend = activity["spend"].to_numpy(np.float64)
    signup_day = None
    if signup is not None:
        lookup = pd.Series(
            # The same right-closed day as the activity's, so a signup and a purchase in the
            # same hour fall on the same day.
            day_index(signup["signup_date"].to_numpy("datetime64[ns]").view("i8")),
            index=signup["customer_id"].astype(str),
        )
        signup_day = lookup.reindex(ids).to_numpy(dtype=np.float64)
    n_channels = len(channels)
    parts: list[Snapshots] = []
    for cutoff in cutoffs:
        T = cutoff.value // DAY_NS
        upto = days <= T
        c_codes, c_days = codes[upto], days[upto]
        seen, first_idx, counts = np.unique(c_codes, return_index=True, return_counts=True)
        row_of = np.full(len(ids), -1, dtype=np.int64)
        row_of[seen] = np.arange(len(seen))
        n = len(seen)

        in_window = c_days > T - seq_len * bin_days
        w_rows = row_of[c_codes[in_window]]
        w_bins = seq_len - 1 - (T - c_days[in_window]) // bin_days
        flat = w_rows * seq_len + w_bins
        seq = np.empty((n, n_channels, seq_len), dtype=np.float32)
        w_values = values[upto][in_window]
        for c in range(n_channels):
            sums = np.bincount(flat, weights=w_values[:, c], minlength=n * seq_len)
            _check_float32(sums, channels[c], ids[seen], cutoff, bin_days, seq_len)
            seq[:, c, :] = sums.reshape(n, seq_len)

        # Activity is sorted by customer then day, so a customer's first and last rows
        # before the cutoff are its first and last active days.
        first_day = c_days[first_idx].astype(np.float64)
        last_day = c_days[first_idx + counts - 1]
        if signup_day is not None:
            first_day = np.fmin(first_day, signup_day[seen])
        frequency = np.bincount(row_of[c_codes], weights=n_txn[upto], minlength=n)
        total_spend = np.bincount(row_of[c_codes], weights=spend[upto], minlength=n)
        context = np.stack(
            [
                T - first_day,
                T - last_day,
                frequency,
                total_spend / np.maximum(frequency, 1.0),
            ],
            axis=1,
        ).astype(np.float32)
        parts.append(
            Snapshots(
                customer_id=ids[seen],
                snapshot_ts=np.full(n, cutoff.value, dtype=np.int64),
                seq=seq,
                context=context,
                channels=list(channels),
            )
        )
    return Snapshots(
        customer_id=np.concatenate([p.customer_id for p in parts]),
        snapshot_ts=np.concatenate([p.snapshot_ts for p in parts]),
        seq=np.concatenate([p.seq for p in parts]),
        context=np.concatenate([p.context for p in parts]),
        channels=list(channels),
    )


def _check_float32(
    sums: np.ndarray,
    channel: str,
    customers: np.ndarray,
    cutoff: pd.Timestamp,
    bin_days: int,
    seq_len: int,
) -> None:
    """Refuses a bin whose sum float32 cannot hold: every value fits, but a sum of several may
    not, and it would reach the training set as inf."""
    if not len(sums) or np.abs(sums).max() <= FLOAT32_MAX:
        return
    index = int(np.argmax(np.abs(sums)))
    row, step = divmod(index, seq_len)
    bin_end = cutoff - pd.Timedelta(days=(seq_len - 1 - step) * bin_days)
    raise ContractError(
        f"channel {channel!r} of customer {str(customers[row])!r} sums to {sums[index]:.4g} in the "
        f"{bin_days}-day bin ending {bin_end.date()} (snapshot {cutoff.date()}), beyond "
        f"{FLOAT32_MAX:.4g}: features are stored as float32, where it would become infinite"
    )

"""A flat summary of the model's inputs: the columns the inference log and drift checks share.

A sequence of ``C x L`` bins is too wide to compare between two periods column by column, so
each served prediction is summarised the way the model's head sees it: per-channel totals over
the model's windows (the last ``w`` bins), the bins since the last active one, and the context
features and attributes as they are. The inference log writes these columns; the drift monitor
and a registry version's reference summary must compute theirs with this same function, so
the two sides always have the same columns with the same meaning.

Columns, in order:

* ``seq_<channel>_sum_<w>``: float64, the channel's total over the last ``w`` bins, for each
  channel and each window (windows longer than the sequence are cut to its length);
* ``seq_spend_per_txn_change``: float64, only when the channels start with ``n_txn, spend``:
  the natural log of the last bin's spend per transaction over the longest window's, clipped
  to [-1, 1] (one outsized basket moves it no further than a ticket e times the usual; a
  purchase of nothing is -1), NaN where it is undefined (no transaction in the last bin, or
  no spend at all over the window). Spend drift moves a total only by the share of the
  window it has filled, and totals spread over customers who spend ten times more than
  others; the change against each customer's own year cancels that spread, so a drift in
  ticket size shows within days (``monitoring/README``);
* ``seq_recency_bins``: int32, bins since the last bin with any activity (0 when the last bin
  is active, ``L`` when no bin is);
* ``num_<feature>``: float64, each numeric feature (context features, then attributes);
* ``cat_<feature>``: string, each categorical attribute's raw value (null when unknown).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from churn.features.activity import BASE_CHANNELS

RECENCY_COLUMN = "seq_recency_bins"
TICKET_CHANGE_COLUMN = "seq_spend_per_txn_change"
# On drift-free days of four synthetic worlds, clipping cut the column's widest distance from
# 0.317 to 0.278 and left its response to a spend drift as it was (monitoring/README.md).
TICKET_CHANGE_CLIP = 1.0


def _has_ticket_change(input_spec: dict) -> bool:
    """Whether the channels allow a spend-per-transaction change: a count, then spend."""
    return tuple(input_spec["channels"][: len(BASE_CHANNELS)]) == BASE_CHANNELS


def summary_windows(windows: list[int], seq_len: int) -> list[int]:
    """The windows a summary uses: the model's, cut to the sequence length, without repeats.

    Args:
        windows: The model's windows (``model.json``'s ``architecture["windows"]``).
        seq_len: Bins per sequence.

    Returns:
        Sorted distinct window lengths in ``1..seq_len``.

    Raises:
        ValueError: A window is not a positive integer.
    """
    bad = [w for w in windows if isinstance(w, bool) or not isinstance(w, int) or w < 1]
    if bad:
        raise ValueError(f"summary windows must be positive integers, got {bad}")
    return sorted({min(w, seq_len) for w in windows})


def summary_schema(input_spec: dict, windows: list[int]) -> pa.Schema:
    """The Arrow schema of :func:`summarize`'s columns.

    Args:
        input_spec: The model's input spec.
        windows: Windows from :func:`summary_windows`.

    Returns:
        One field per column, in order.
    """
    fields = [
        pa.field(f"seq_{channel}_sum_{w}", pa.float64())
        for channel in input_spec["channels"]
        for w in windows
    ]
    if _has_ticket_change(input_spec):
        fields.append(pa.field(TICKET_CHANGE_COLUMN, pa.float64()))
    fields.append(pa.field(RECENCY_COLUMN, pa.int32()))
    fields += [pa.field(f"num_{name}", pa.float64()) for name in input_spec["numeric_features"]]
    fields += [pa.field(f"cat_{name}", pa.string()) for name in input_spec["categorical_features"]]
    return pa.schema(fields)


def summarize(
    seq: np.ndarray, num: np.ndarray, cat: np.ndarray, input_spec: dict, windows: list[int]
) -> dict[str, np.ndarray]:
    """Summarises model inputs row by row.

    Args:
        seq: Raw sequences [N, C, L] in the input spec's channel order.
        num: Raw numeric features [N, F] in the input spec's order.
        cat: Raw categorical values [N, K] (strings, ``None`` where unknown) in the input
            spec's order.
        input_spec: The model's input spec.
        windows: Windows from :func:`summary_windows`.

    Returns:
        The columns of :func:`summary_schema`, in its order, each of length N.
    """
    seq = np.asarray(seq, dtype=np.float64)
    n, _, length = seq.shape
    # Negative values never reach the model (it clamps them); the summary follows it.
    raw = np.clip(seq, 0.0, None)
    columns: dict[str, np.ndarray] = {}
    for c, channel in enumerate(input_spec["channels"]):
        for w in windows:
            columns[f"seq_{channel}_sum_{w}"] = raw[:, c, length - w :].sum(axis=1)
    if _has_ticket_change(input_spec):
        columns[TICKET_CHANGE_COLUMN] = ticket_change(raw[:, 0], raw[:, 1], max(windows))
    active = raw.sum(axis=1) > 0
    last = np.where(active.any(axis=1), length - 1 - np.argmax(active[:, ::-1], axis=1), -1)
    columns[RECENCY_COLUMN] = (length - 1 - last).astype(np.int32)
    num = np.asarray(num, dtype=np.float64).reshape(n, len(input_spec["numeric_features"]))
    for j, name in enumerate(input_spec["numeric_features"]):
        columns[f"num_{name}"] = num[:, j]
    cat = np.asarray(cat, dtype=object).reshape(n, len(input_spec["categorical_features"]))
    for k, name in enumerate(input_spec["categorical_features"]):
        columns[f"cat_{name}"] = cat[:, k]
    return columns


def ticket_change(counts: np.ndarray, spend: np.ndarray, window: int) -> np.ndarray:
    """log(last bin's spend per transaction / the last ``window`` bins'), within
    ±:data:`TICKET_CHANGE_CLIP`; NaN where undefined.

    Args:
        counts: Transactions per bin [N, L], non-negative.
        spend: Spend per bin [N, L], non-negative.
        window: Bins of the baseline, the last bin included.

    Returns:
        float64 [N]; NaN for a row without a transaction in the last bin or without any spend
        over the window. Spending nothing in the last bin, against a usual ticket, is the
        clip's -1: that is a change to see, not a row to drop.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        recent = spend[:, -1] / counts[:, -1]
        usual = spend[:, -window:].sum(axis=1) / counts[:, -window:].sum(axis=1)
        change = np.log(recent / usual)  # 0/0 (undefined) is NaN; 0/usual is -inf
    return np.clip(change, -TICKET_CHANGE_CLIP, TICKET_CHANGE_CLIP)

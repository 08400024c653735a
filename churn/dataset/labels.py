"""Churn labels at cutoffs, computed from the raw log.

A customer is labelled at cutoff ``t`` when they were active in the lookback window
``(t - lookback, t]`` and the log is observed until at least ``t + H``. The label is 1 (churned)
when they have no transaction in ``(t, t + H]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.data.contract import to_ns


def label_cutoffs(
    tx: pd.DataFrame,
    cutoffs: list[pd.Timestamp],
    horizon_days: int,
    lookback_days: int,
    observed_until: pd.Timestamp,
) -> pd.DataFrame:
    """Labels every customer active before each cutoff.

    Args:
        tx: Validated transactions with ``customer_id`` and UTC ``timestamp``.
        cutoffs: Cutoffs at midnight UTC.
        horizon_days: Label horizon H.
        lookback_days: A customer counts as active at ``t`` with a transaction in
            ``(t - lookback_days, t]``.
        observed_until: Last instant the log covers; cutoffs with ``t + H`` beyond it get no labels.

    Returns:
        Columns ``customer_id``, ``cutoff`` and ``label`` (int8), one row per labelled pair,
        sorted by cutoff then customer.
    """
    horizon = pd.Timedelta(days=horizon_days)
    lookback = pd.Timedelta(days=lookback_days)
    ts = to_ns(tx["timestamp"])
    codes, uniques = pd.factorize(tx["customer_id"], sort=True)
    frames = []
    for t in cutoffs:
        if t + horizon > observed_until:
            continue
        active_mask = (ts > (t - lookback).value) & (ts <= t.value)
        future_mask = (ts > t.value) & (ts <= (t + horizon).value)
        active = np.unique(codes[active_mask])
        bought = np.zeros(len(uniques), dtype=bool)
        bought[codes[future_mask]] = True
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": uniques[active],
                    "cutoff": t,
                    "label": (~bought[active]).astype(np.int8),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype=str),
                "cutoff": pd.Series(dtype="datetime64[ns, UTC]"),
                "label": pd.Series(dtype=np.int8),
            }
        )
    return pd.concat(frames, ignore_index=True)

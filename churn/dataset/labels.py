"""Churn labels at cutoffs, computed from the raw log.

A customer is eligible at cutoff ``t`` when they were active in the lookback window
``(t - lookback, t]`` and the log is observed until at least ``t + H``. What "churned" means is
the churn definition (``features.churn_definition``):

* ``lapse``: no transaction in ``(t, t + H]``.
* ``partial_defection``: the spend in ``(t, t + H]`` is below ``fraction`` times the expected
  spend, the customer's trailing rate scaled to H: ``spend in (t - W, t] * H / W'``, where
  ``W'`` is the trailing window W cut to the part the log covers (``t`` minus the log's first
  event, when that is shorter), so a window that starts before the log does not dilute the
  rate. A customer whose trailing spend is 0 (every transaction in the window has amount 0, or
  W is shorter than the lookback and the window holds none) has no rate to fall below and is
  not labelled at ``t``. Customers who joined inside the window get W' all the same, so their
  rate is underestimated and they are less likely to count as defected.
* ``contract``: a cancellation in ``(t, t + H]`` (label 1), else 0. A customer who cancelled at
  or before ``t`` is no longer a customer at ``t`` and is not labelled there.

Every definition reads only the log up to ``t`` to decide who is labelled, and only
``(t, t + H]`` for the label itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churn.data.contract import to_ns
from churn.errors import DatasetError
from churn.settings import FeatureConfig

DEFINITIONS = ("lapse", "partial_defection", "contract")
_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class ChurnDefinition:
    """What churned means, with its parameters resolved.

    Attributes:
        name: ``lapse``, ``partial_defection`` or ``contract``.
        fraction: Under ``partial_defection``, the share of the expected spend below which a
            customer has defected; ``None`` otherwise.
        window_days: Under ``partial_defection``, the trailing window W in days; ``None``
            otherwise, or until :meth:`resolved` sets it to the feature lookback.
    """

    name: str = "lapse"
    fraction: float | None = None
    window_days: int | None = None

    @classmethod
    def from_config(cls, cfg: FeatureConfig) -> ChurnDefinition:
        """The definition the feature settings name."""
        if cfg.churn_definition != "partial_defection":
            return cls(cfg.churn_definition)
        return cls(
            "partial_defection", cfg.partial_defection_fraction, cfg.partial_defection_window_days
        )

    def resolved(self, lookback_days: int) -> ChurnDefinition:
        """The same definition with an unset trailing window set to the feature lookback.

        The lookback is the feature repository's (``bin_days * seq_len``), which a feature
        build may have set apart from the settings.
        """
        if self.name != "partial_defection" or self.window_days is not None:
            return self
        return ChurnDefinition(self.name, self.fraction, lookback_days)

    def to_meta(self) -> dict[str, Any]:
        """The definition as recorded in ``meta.json`` and ``model.json``."""
        meta: dict[str, Any] = {"name": self.name}
        if self.name == "partial_defection":
            meta.update(fraction=self.fraction, window_days=self.window_days)
        return meta


LAPSE = ChurnDefinition()


def label_cutoffs(
    tx: pd.DataFrame,
    cutoffs: list[pd.Timestamp],
    horizon_days: int,
    lookback_days: int,
    observed_until: pd.Timestamp,
    definition: ChurnDefinition = LAPSE,
    cancellations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Labels every eligible customer at each cutoff.

    Args:
        tx: Validated transactions with ``customer_id``, UTC ``timestamp`` and ``amount``.
        cutoffs: Cutoffs at midnight UTC.
        horizon_days: Label horizon H.
        lookback_days: A customer counts as active at ``t`` with a transaction in
            ``(t - lookback_days, t]``.
        observed_until: Last instant the log covers; cutoffs with ``t + H`` beyond it get no labels.
        definition: What churned means (see the module docstring).
        cancellations: Under ``contract``, the validated cancellations table (``customer_id``,
            UTC ``timestamp``, one row per customer).

    Returns:
        Columns ``customer_id``, ``cutoff`` and ``label`` (int8), one row per labelled pair,
        sorted by cutoff then customer.

    Raises:
        DatasetError: The definition is ``contract`` and no cancellations table is given.
    """
    horizon = pd.Timedelta(days=horizon_days)
    lookback = pd.Timedelta(days=lookback_days)
    ts = to_ns(tx["timestamp"])
    codes, uniques = pd.factorize(tx["customer_id"], sort=True)
    cancel_ns = _cancel_times(definition, cancellations, uniques)
    frames = []
    for t in cutoffs:
        if t + horizon > observed_until:
            continue
        active_mask = (ts > (t - lookback).value) & (ts <= t.value)
        future_mask = (ts > t.value) & (ts <= (t + horizon).value)
        eligible = np.zeros(len(uniques), dtype=bool)
        eligible[codes[active_mask]] = True
        if definition.name == "partial_defection":
            churned = _defected(tx, ts, codes, len(uniques), t, horizon_days, definition, eligible)
        elif definition.name == "contract":
            eligible &= cancel_ns > t.value
            churned = cancel_ns <= (t + horizon).value
        else:
            bought = np.zeros(len(uniques), dtype=bool)
            bought[codes[future_mask]] = True
            churned = ~bought
        chosen = np.flatnonzero(eligible)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": uniques[chosen],
                    "cutoff": t,
                    "label": churned[chosen].astype(np.int8),
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


def _cancel_times(
    definition: ChurnDefinition, cancellations: pd.DataFrame | None, uniques: pd.Index
) -> np.ndarray:
    """Each customer's cancellation time in ns (int64 max when they never cancel)."""
    never = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
    if definition.name != "contract":
        return never
    if cancellations is None:
        raise DatasetError(
            "features.churn_definition=contract needs a cancellations table: build the "
            "features with --cancellations FILE (or a data folder holding cancellations.parquet)"
        )
    position = uniques.get_indexer(pd.Index(cancellations["customer_id"]))
    known = position >= 0
    never[position[known]] = to_ns(cancellations["timestamp"])[known]
    return never


def _defected(
    tx: pd.DataFrame,
    ts: np.ndarray,
    codes: np.ndarray,
    n_customers: int,
    t: pd.Timestamp,
    horizon_days: int,
    definition: ChurnDefinition,
    eligible: np.ndarray,
) -> np.ndarray:
    """Partial defection at ``t``; also drops customers without trailing spend from ``eligible``."""
    if definition.window_days is None or definition.fraction is None:
        raise ValueError("partial defection needs a fraction and a resolved trailing window")
    window_days = definition.window_days
    amount = tx["amount"].to_numpy(dtype=np.float64)
    trailing_mask = (ts > t.value - window_days * _DAY_NS) & (ts <= t.value)
    future_mask = (ts > t.value) & (ts <= t.value + horizon_days * _DAY_NS)
    trailing = np.bincount(codes[trailing_mask], amount[trailing_mask], minlength=n_customers)
    future = np.bincount(codes[future_mask], amount[future_mask], minlength=n_customers)
    covered_days = min(float(window_days), (t.value - int(ts.min())) / _DAY_NS)
    expected = trailing * horizon_days / covered_days
    eligible &= trailing > 0
    return future < definition.fraction * expected

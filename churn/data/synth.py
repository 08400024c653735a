"""Synthetic transaction logs with a known churn mechanism, for scale tests and benchmarks.

The generative model, per customer:

* Static attributes: a ``segment`` (``consumer`` or ``smb``; ``enterprise`` only under
  segment drift) that sets the distributions of the latent parameters below, a ``region``
  that scales the purchase rate and an ``age`` (younger customers fade more often), so static
  features carry some signal.
* Latent parameters: a base daily purchase rate (gamma), a unit price (lognormal), a basket
  size, a signup day (arrivals spread over the first 60% of the period, so tenure varies),
  and a hidden fade onset day ``tau``: a customer is fully engaged until ``tau`` and then its
  engagement decays as ``e(d) = exp(-r (d - tau))``. Some customers never fade.
* Day ``d`` purchases: Poisson with rate ``base_rate * e(d) * weekday(d) * drift(d)``.
* Churn: the daily hazard is ``h(d) = h0 + h1 (1 - e(d))``, so churn follows a visible decline
  in activity; the churn day is where the cumulative hazard since signup first exceeds an
  ``Exp(1)`` draw. There are no purchases on or after the churn day.

Because the engagement path is deterministic given the latent parameters, the true
probability that a customer makes no purchase in ``(t, t + H]`` given its latent state at
cutoff ``t`` (alive or not, parameters) is computed exactly (up to float32 rounding, about
1e-6); its ROC-AUC against the labels is the best any model can reach (the "oracle AUC").

Time: simulation day ``d`` is the interval ``(start + d days, start + d + 1 days]``, the
right-closed daily bin of ``docs/architecture.md``: a transaction's time within its day is a
uniform second in ``1..86400``. A cutoff ``t = start + k days`` therefore sees days ``< k``,
and its label window ``(t, t + H]`` is exactly days ``k .. k + H - 1``. The log is observed
until ``start + days`` (inclusive).

Drift (``drift``), applied inside the generative process so that the oracle stays exact, from
``drift_start_day`` (default: half the period) on:

* ``none``: no drift.
* ``spend``: every amount is multiplied by 1.6.
* ``rate``: every purchase rate is halved (churn hazards are unchanged, so more engaged
  customers go 90 days without buying).
* ``segment``: 20% of the customers belong to a new ``enterprise`` segment (more frequent,
  larger, more loyal buyers) that signs up only after the drift start.

Output folder (written atomically: a temporary sibling folder, then a rename):

* ``transactions.parquet``: ``customer_id`` (string), ``timestamp`` (UTC), ``amount`` and
  ``quantity`` (float64), sorted by customer then time.
* ``customers.parquet``: ``customer_id``, ``signup_date`` (UTC midnight), ``segment``,
  ``region`` (strings), ``age`` (float64).
* ``oracle.parquet``: ``customer_id``, ``cutoff`` (UTC), ``true_prob`` (float64, probability
  of the churn label 1), for every customer who signed up before the cutoff, at every cutoff
  (a superset of the rows ``churn.dataset.labels.label_cutoffs`` labels for any lookback;
  customers who churned already get 1).
* ``latent.parquet``: the hidden truth, never to be used as features: ``customer_id``,
  ``churn_date`` (the midnight from which the customer is gone; null if it stays past the
  period), ``fade_onset`` (null if it never fades) and ``base_rate``.
* ``generator.json``: every parameter, the seed, drift, cutoffs and counts.

The same parameters and seed give identical output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from churn.data.cutoffs import fit_default_cutoffs, parse_cutoffs, parse_midnight
from churn.errors import ChurnError
from churn.io.atomic import check_replaceable, staging_dir
from churn.settings import FeatureConfig

_FEATURE_DEFAULTS = FeatureConfig()

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DRIFT_KINDS = ("none", "spend", "rate", "segment")
DEFAULT_START = "2022-01-01"
SECONDS_PER_DAY = 86_400
NS_PER_SECOND = 1_000_000_000

# Customer-days simulated at once: bounds memory (about 8 bytes each) whatever the number of
# customers, while keeping numpy calls long enough to amortise their overhead.
CHUNK_CELLS = 16_000_000


@dataclass(frozen=True)
class SegmentParams:
    """How the latent parameters of one segment's customers are distributed.

    Attributes:
        share: Probability of the segment among customers without segment drift.
        rate_mean: Mean base purchase rate per day of an engaged customer.
        rate_shape: Gamma shape of the base rate (smaller = more heterogeneous).
        price_median: Median unit price across customers.
        items_mean: Mean number of items beyond the first in a transaction.
        fade_prob: Probability that a customer of mean age ever starts to fade.
        fade_after_mean: Mean days from signup to fade onset (exponential).
        age_mean: Mean age.
        age_sd: Standard deviation of age.
    """

    share: float
    rate_mean: float
    rate_shape: float
    price_median: float
    items_mean: float
    fade_prob: float
    fade_after_mean: float
    age_mean: float
    age_sd: float


SEGMENTS: dict[str, SegmentParams] = {
    "consumer": SegmentParams(0.75, 0.045, 1.3, 30.0, 0.4, 0.7, 270.0, 41.0, 13.0),
    "smb": SegmentParams(0.25, 0.09, 2.0, 110.0, 2.5, 0.55, 360.0, 47.0, 10.0),
    "enterprise": SegmentParams(0.0, 0.18, 3.0, 400.0, 8.0, 0.4, 420.0, 50.0, 8.0),
}
SEGMENT_NAMES = tuple(SEGMENTS)
NEW_SEGMENT = "enterprise"
NEW_SEGMENT_SHARE = 0.2
REGIONS = ("north", "south", "east", "west")
REGION_SHARES = (0.35, 0.3, 0.2, 0.15)
REGION_RATE = (1.1, 1.0, 0.9, 0.85)
# Monday first; the mean is 1 so that base rates keep their meaning.
WEEKDAY_RATE = (0.9, 0.9, 0.95, 1.0, 1.1, 1.2, 0.95)
SIGNUP_SPREAD = 0.6
AGE_MIN, AGE_MAX = 18.0, 90.0
# Younger customers fade more often: +1 percentage point per year below the segment mean.
AGE_FADE = 0.01
PRICE_SIGMA = 0.6
BASKET_SIGMA = 0.35
FADE_RATE_MEDIAN = 1 / 40
FADE_RATE_SIGMA = 0.5
HAZARD_BASE = 1 / 1500
HAZARD_FADED = 0.02
# Fading customers also buy smaller baskets, so spend carries the decline too.
FADED_BASKET = 0.6
SPEND_DRIFT = 1.6
RATE_DRIFT = 0.5


@dataclass(frozen=True)
class SynthSpec:
    """Validated generator parameters; build it with :func:`make_spec`.

    Attributes:
        customers: Number of customers.
        days: Length of the simulated period in days.
        seed: Random seed.
        start: First simulated midnight (UTC).
        horizon_days: Label horizon H of the oracle.
        cutoffs: Cutoffs at which the oracle is written, oldest first.
        drift: One of :data:`DRIFT_KINDS`.
        drift_start_day: First day index the drift applies to (``None`` without drift).
        chunk_customers: Customers simulated together (about 8 bytes per customer-day).
    """

    customers: int
    days: int
    seed: int
    start: pd.Timestamp
    horizon_days: int
    cutoffs: tuple[pd.Timestamp, ...]
    drift: str
    drift_start_day: int | None
    chunk_customers: int

    @property
    def observed_until(self) -> pd.Timestamp:
        """The end of the simulated period, inclusive."""
        return self.start + pd.Timedelta(days=self.days)


def make_spec(
    customers: int,
    days: int,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = DEFAULT_START,
    horizon_days: int = _FEATURE_DEFAULTS.horizon_days,
    step_days: int = _FEATURE_DEFAULTS.cutoff_step_days,
    n_train_cutoffs: int = _FEATURE_DEFAULTS.n_train_cutoffs,
    cutoffs: list[str] | list[pd.Timestamp] | None = None,
    drift: str = "none",
    drift_start_day: int | None = None,
    chunk_customers: int | None = None,
) -> SynthSpec:
    """Checks the generator parameters and resolves the defaults.

    Args:
        customers: Number of customers (>= 1).
        days: Length of the simulated period in days.
        seed: Non-negative random seed.
        start: First simulated day, a date (midnight UTC).
        horizon_days: Label horizon H of the oracle.
        step_days: Spacing of the automatic training cutoffs.
        n_train_cutoffs: Number of automatic training cutoffs.
        cutoffs: Explicit cutoffs (dates); ``None`` takes
            :func:`churn.data.cutoffs.fit_default_cutoffs` for the period: the automatic
            schedule less the training cutoffs that fall before ``start``.
        drift: ``none``, ``spend``, ``rate`` or ``segment`` (see the module docstring).
        drift_start_day: First day of the drift; defaults to ``days // 2``.
        chunk_customers: Customers per chunk; defaults to :data:`CHUNK_CELLS` customer-days.

    Returns:
        The validated parameters.

    Raises:
        ChurnError: A parameter is out of range; the message says which and why.
    """
    if customers < 1:
        raise ChurnError(f"--customers must be at least 1, got {customers}")
    if seed < 0:
        raise ChurnError(f"--seed must be non-negative, got {seed}")
    if horizon_days < 1:
        raise ChurnError(f"--horizon-days must be at least 1, got {horizon_days}")
    if days <= horizon_days:
        raise ChurnError(
            f"--days {days} is too short for --horizon-days {horizon_days}: a cutoff needs a full "
            "horizon of simulated days after it"
        )
    if drift not in DRIFT_KINDS:
        raise ChurnError(f"--drift must be one of {', '.join(DRIFT_KINDS)}, got {drift!r}")
    if drift == "none" and drift_start_day is not None:
        raise ChurnError("--drift-start-day needs a --drift other than none")
    if drift != "none":
        drift_start_day = days // 2 if drift_start_day is None else drift_start_day
        if not 1 <= drift_start_day < days:
            raise ChurnError(
                f"--drift-start-day must lie inside the period (1 .. {days - 1}), "
                f"got {drift_start_day}"
            )
    if chunk_customers is not None and chunk_customers < 1:
        raise ChurnError(f"chunk_customers must be at least 1, got {chunk_customers}")
    start_ts = parse_midnight(start, "--start")
    end = start_ts + pd.Timedelta(days=days)
    horizon = pd.Timedelta(days=horizon_days)
    if cutoffs is None:
        if days < 3 * horizon_days + 1:
            raise ChurnError(
                f"--days {days} is too short for --horizon-days {horizon_days}: the automatic "
                "cutoff schedule places test, validation and training cutoffs one horizon apart, "
                f"which needs at least {3 * horizon_days + 1} days; give more days or --cutoffs"
            )
        chosen = fit_default_cutoffs(
            start_ts, end, horizon_days, step_days, n_train_cutoffs, what="the simulated period"
        )
    else:
        chosen = parse_cutoffs(cutoffs)
        bad = [c for c in chosen if not start_ts < c <= end - horizon]
        if bad:
            raise ChurnError(
                f"cutoffs {[c.date().isoformat() for c in bad]} fall outside "
                f"{(start_ts + pd.Timedelta(days=1)).date()} .. {(end - horizon).date()}: a "
                "cutoff needs at least one simulated day before it and a full horizon after it"
            )
    return SynthSpec(
        customers=customers,
        days=days,
        seed=seed,
        start=start_ts,
        horizon_days=horizon_days,
        cutoffs=tuple(chosen),
        drift=drift,
        drift_start_day=drift_start_day,
        chunk_customers=chunk_customers or max(1, CHUNK_CELLS // days),
    )


def _ids(first: int, n: int, width: int) -> np.ndarray:
    return np.char.add("c", np.char.zfill(np.arange(first, first + n).astype(str), width))


def _timestamps(ns: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(
        np.asarray(ns, dtype=np.int64).view("datetime64[ns]"),
        type=pa.timestamp("ns", tz="UTC"),
        mask=mask,
    )


def day_factors(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-day purchase-rate and spend multipliers: weekday seasonality and drift.

    Args:
        spec: The generator parameters.

    Returns:
        ``(rate, spend)``, float arrays of length ``spec.days``.
    """
    day = np.arange(spec.days)
    rate = np.asarray(WEEKDAY_RATE)[(spec.start.dayofweek + day) % 7]
    spend = np.ones(spec.days)
    if spec.drift == "rate":
        rate[spec.drift_start_day :] *= RATE_DRIFT
    if spec.drift == "spend":
        spend[spec.drift_start_day :] = SPEND_DRIFT
    return rate, spend


@dataclass
class _Chunk:
    """One simulated chunk of customers, as Arrow tables ready to be written."""

    customers: pa.Table
    transactions: pa.Table
    oracle: pa.Table
    latent: pa.Table
    segment_counts: np.ndarray

    def tables(self) -> dict[str, pa.Table]:
        """The tables by output file stem."""
        return {
            "transactions": self.transactions,
            "customers": self.customers,
            "oracle": self.oracle,
            "latent": self.latent,
        }


@dataclass
class _Latent:
    """Static attributes and hidden parameters, one entry per customer."""

    segment: np.ndarray
    region: np.ndarray
    age: np.ndarray
    signup: np.ndarray
    base_rate: np.ndarray
    price: np.ndarray
    items: np.ndarray
    fades: np.ndarray
    tau: np.ndarray
    fade_rate: np.ndarray
    churn_draw: np.ndarray

    def take(self, index: np.ndarray) -> _Latent:
        """The customers at ``index``."""
        return _Latent(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def fade_probability(
    segment_fade_prob: np.ndarray | float, age_mean: np.ndarray | float, age: np.ndarray | float
) -> np.ndarray:
    """Probability that a customer ever starts to fade: its segment's, more for the young.

    Args:
        segment_fade_prob: The segment's ``fade_prob`` (at the segment's mean age).
        age_mean: The segment's mean age.
        age: The customer's age.

    Returns:
        The probability, clipped to [0.05, 0.95].
    """
    return np.clip(segment_fade_prob + AGE_FADE * (age_mean - age), 0.05, 0.95)


def _draw_latent(spec: SynthSpec, rng: np.random.Generator, n: int) -> _Latent:
    if spec.drift == "segment":
        shares = [SEGMENTS[s].share * (1 - NEW_SEGMENT_SHARE) for s in SEGMENT_NAMES]
        shares[SEGMENT_NAMES.index(NEW_SEGMENT)] = NEW_SEGMENT_SHARE
    else:
        shares = [SEGMENTS[s].share for s in SEGMENT_NAMES]
    seg = rng.choice(len(SEGMENT_NAMES), size=n, p=shares)
    par = {
        f.name: np.array([getattr(SEGMENTS[s], f.name) for s in SEGMENT_NAMES])[seg]
        for f in fields(SegmentParams)
    }
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    age = np.clip(rng.normal(par["age_mean"], par["age_sd"]), AGE_MIN, AGE_MAX).round()
    signup = np.where(
        seg == SEGMENT_NAMES.index(NEW_SEGMENT),
        rng.integers(spec.drift_start_day or 0, spec.days, size=n),
        rng.integers(0, max(1, math.ceil(SIGNUP_SPREAD * spec.days)), size=n),
    )
    fade_prob = fade_probability(par["fade_prob"], par["age_mean"], age)
    fades = rng.random(n) < fade_prob
    return _Latent(
        segment=seg,
        region=region,
        age=age,
        signup=signup,
        base_rate=par["rate_mean"]
        * np.asarray(REGION_RATE)[region]
        * rng.gamma(par["rate_shape"], 1 / par["rate_shape"]),
        price=par["price_median"] * rng.lognormal(0.0, PRICE_SIGMA, size=n),
        items=par["items_mean"] * rng.gamma(2.0, 0.5, size=n),
        fades=fades,
        tau=np.where(fades, signup + rng.exponential(par["fade_after_mean"]), np.inf),
        fade_rate=FADE_RATE_MEDIAN * rng.lognormal(0.0, FADE_RATE_SIGMA, size=n),
        churn_draw=rng.exponential(1.0, size=n),
    )


def _padded(rate_factor: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], rate_factor]).astype(np.float32)


def _running_sums(
    lat: _Latent, rate_factor: np.ndarray, buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Engagement summed over the days before each day, plain and weighted by the rate factor.

    Both arrays are day-major, ``[days + 1, n]``: row ``d`` sums days ``0 .. d-1``. Hazards and
    purchase rates are affine in the engagement, so every cumulative quantity the sampler and
    the oracle need is a lookup here. Float32 halves the memory traffic; the sampler and the
    oracle read the same values, so rounding cannot make them disagree.

    Args:
        lat: The customers.
        rate_factor: Per-day rate multiplier.
        buffer: Float32 scratch of shape ``[2, >= (days + 1) * n]``, reused across chunks
            because touching fresh pages costs more than the arithmetic.

    Returns:
        ``(ce, cw)``: plain and rate-weighted running sums.
    """
    days, n = rate_factor.size, lat.tau.size
    ce = buffer[0, : (days + 1) * n].reshape(days + 1, n)
    cw = buffer[1, : (days + 1) * n].reshape(days + 1, n)
    ce[0] = 0.0
    e = ce[1:]
    np.subtract(np.arange(days, dtype=np.float32)[:, None], lat.tau.astype(np.float32), out=e)
    np.maximum(e, 0.0, out=e)
    e *= -lat.fade_rate.astype(np.float32)
    np.exp(e, out=e)
    np.multiply(ce, _padded(rate_factor)[:, None], out=cw)
    # Adding whole day rows vectorises across customers; np.cumsum along axis 0 does not.
    for d in range(days):
        np.add(ce[d], ce[d + 1], out=ce[d + 1])
        np.add(cw[d], cw[d + 1], out=cw[d + 1])
    return ce, cw


def _steady_sums(rate_factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The running sums of customers engaged all period long: one shared column, ``[days + 1, 1]``.

    The readers below treat a single column as shared (:func:`_columns`, :func:`_window`), so
    it serves a whole group without being repeated.
    """
    ce = np.arange(rate_factor.size + 1, dtype=np.float32)
    return ce[:, None], np.cumsum(_padded(rate_factor))[:, None]


def _columns(sums: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows if sums.shape[1] > 1 else np.zeros_like(rows)


def _window(sums: np.ndarray, days: slice, rows: np.ndarray) -> np.ndarray:
    """A new array of running sums on ``days`` for ``rows`` (one column if it is shared)."""
    return sums[days].copy() if sums.shape[1] == 1 else np.take(sums[days], rows, axis=1)


def _bisect(
    key: Callable[[np.ndarray], np.ndarray], values: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Per element, the first index ``c`` in ``[lo, hi)`` with ``key(c) > value``, else ``hi``.

    ``key`` maps one index per element to that element's value at it and must be
    non-decreasing in the index; all elements are searched at once.
    """
    lo = lo.astype(np.int64)
    last = hi.astype(np.int64) - 1
    hi = last + 1
    for _ in range(max(int((hi - lo).max(initial=0)), 1).bit_length()):
        active = lo < hi
        # Finished elements may sit at hi, one past their last index; they read a valid one.
        mid = np.minimum((lo + hi) // 2, last)
        above = key(mid) > values
        lo = np.where(active & ~above, mid + 1, lo)
        hi = np.where(active & above, mid, hi)
    return lo


def _churn_days(lat: _Latent, ce: np.ndarray) -> np.ndarray:
    """First day on which the hazard accumulated since signup exceeds the Exp(1) draw.

    A customer is alive on day ``d`` while the hazard summed over days ``signup .. d`` is at
    most its draw; ``days`` means alive through the whole period.
    """
    n = lat.signup.size
    cols = _columns(ce, np.arange(n))

    def hazard_before(day: np.ndarray) -> np.ndarray:
        return (HAZARD_BASE + HAZARD_FADED) * day - HAZARD_FADED * ce[day, cols].astype(float)

    threshold = lat.churn_draw + hazard_before(lat.signup)
    return _bisect(hazard_before, threshold, lat.signup + 1, np.full(n, ce.shape[0])) - 1


def _purchase_days(
    rng: np.random.Generator, lat: _Latent, cw: np.ndarray, churn_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (customer, day) of every purchase.

    The number of purchases over the alive days is Poisson with the summed rate, and each is
    placed on a day by inverting the cumulative rate: the same law as independent Poisson
    counts per day, without sampling every customer-day.
    """
    every = np.arange(lat.signup.size)
    cols = _columns(cw, every)
    before = cw[lat.signup, cols].astype(float)
    total = cw[churn_day, cols] - before
    rows = np.repeat(every, rng.poisson(lat.base_rate * total))
    target = before[rows] + rng.random(rows.size) * total[rows]
    if cw.shape[1] == 1:
        day = np.searchsorted(cw[:, 0], target, side="right") - 1
    else:
        day = _bisect(lambda d: cw[d, rows], target, lat.signup[rows] + 1, churn_day[rows] + 1) - 1
    # Rounding can put a target on the upper edge; the last alive day is the right answer.
    return rows, np.minimum(day, churn_day[rows] - 1)


def _transactions(
    spec: SynthSpec,
    rng: np.random.Generator,
    lat: _Latent,
    rows: np.ndarray,
    day: np.ndarray,
    spend_factor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Times, amounts and quantities: (row, timestamp ns, amount, quantity), by row then time."""
    # Seconds 1..86400 keep day d inside its right-closed bin (start + d, start + d + 1].
    second = day * SECONDS_PER_DAY + rng.integers(1, SECONDS_PER_DAY + 1, size=rows.size)
    order = np.argsort(rows * (spec.days * SECONDS_PER_DAY + 1) + second, kind="stable")
    rows, day, second = rows[order], day[order], second[order]
    quantity = 1.0 + rng.poisson(lat.items[rows])
    engagement = np.exp(-lat.fade_rate[rows] * np.maximum(day - lat.tau[rows], 0.0))
    amount = (
        lat.price[rows]
        * quantity
        * rng.lognormal(-(BASKET_SIGMA**2) / 2, BASKET_SIGMA, size=rows.size)
        * (FADED_BASKET + (1 - FADED_BASKET) * engagement)
        * spend_factor[day]
    ).round(2)
    return rows, spec.start.value + second * NS_PER_SECOND, amount, quantity


def _oracle(
    spec: SynthSpec, lat: _Latent, ce: np.ndarray, cw: np.ndarray, churn_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True label probabilities as (row, cutoff ns, probability), cutoff by cutoff.

    At cutoff day ``k``, a customer signed up before ``k`` who churned already has
    probability 1. One alive on day ``k - 1`` stays alive through day ``k + j - 1`` with
    probability ``S_j`` and buys nothing on days ``k .. k + j - 1`` with probability ``Q_j``,
    so ``P = sum_{j<H} (S_j - S_{j+1}) Q_j + S_H Q_H``: churn on day ``k + j`` before any
    purchase, or no purchase in the whole window. Float32 keeps the absolute error near 1e-6.
    """
    steps = np.arange(spec.horizon_days + 1, dtype=np.float32)[:, None]
    rows, cutoffs, probs = [], [], []
    for cutoff in spec.cutoffs:
        k = (cutoff - spec.start).days
        signed = np.flatnonzero(lat.signup < k)
        is_alive = churn_day[signed] >= k
        alive = signed[is_alive]
        window = slice(k, k + spec.horizon_days + 1)
        # Row j: S_j and Q_j (logs first), from the hazard and rate summed over days k .. k+j-1.
        surv = _window(ce, window, alive)
        surv -= surv[0]
        surv *= np.float32(HAZARD_FADED)
        surv -= np.float32(HAZARD_BASE + HAZARD_FADED) * steps
        np.exp(surv, out=surv)
        quiet = _window(cw, window, alive)
        # A shared column becomes one per customer here, with each customer's base rate.
        quiet = (quiet[0] - quiet) * lat.base_rate[alive].astype(np.float32)
        np.exp(quiet, out=quiet)
        churn_first = (surv[:-1] - surv[1:]) * quiet[:-1]
        prob = np.ones(signed.size)
        prob[is_alive] = churn_first.sum(axis=0, dtype=float) + surv[-1] * quiet[-1]
        rows.append(signed)
        cutoffs.append(np.full(signed.size, cutoff.value))
        probs.append(prob)
    return np.concatenate(rows), np.concatenate(cutoffs), np.concatenate(probs)


def _simulate_chunk(
    spec: SynthSpec,
    rng: np.random.Generator,
    first: int,
    n: int,
    width: int,
    buffer: np.ndarray,
) -> _Chunk:
    lat = _draw_latent(spec, rng, n)
    rate_factor, spend_factor = day_factors(spec)
    churn_day = np.empty(n, dtype=np.int64)
    tx_rows, tx_days, or_rows, or_ns, or_probs = [], [], [], [], []
    # Customers engaged through the whole period share one running-sum column; only those who
    # fade need one each, which roughly halves the [days, customers] work.
    fading = np.flatnonzero(lat.tau < spec.days)
    steady = np.flatnonzero(lat.tau >= spec.days)
    for group in (fading, steady):
        sub = lat.take(group)
        if group is fading:
            ce, cw = _running_sums(sub, rate_factor, buffer)
        else:
            ce, cw = _steady_sums(rate_factor)
        churn_day[group] = _churn_days(sub, ce)
        rows, day = _purchase_days(rng, sub, cw, churn_day[group])
        tx_rows.append(group[rows])
        tx_days.append(day)
        rows, ns, prob = _oracle(spec, sub, ce, cw, churn_day[group])
        or_rows.append(group[rows])
        or_ns.append(ns)
        or_probs.append(prob)
    tx_row, tx_ns, amount, quantity = _transactions(
        spec, rng, lat, np.concatenate(tx_rows), np.concatenate(tx_days), spend_factor
    )
    or_row, or_n, or_prob = (np.concatenate(x) for x in (or_rows, or_ns, or_probs))
    order = np.lexsort((or_row, or_n))

    day_ns = SECONDS_PER_DAY * NS_PER_SECOND
    ids = pa.array(_ids(first, n, width))
    return _Chunk(
        customers=pa.table(
            {
                "customer_id": ids,
                "signup_date": _timestamps(spec.start.value + lat.signup * day_ns),
                "segment": pa.array(np.asarray(SEGMENT_NAMES)[lat.segment]),
                "region": pa.array(np.asarray(REGIONS)[lat.region]),
                "age": pa.array(lat.age, type=pa.float64()),
            }
        ),
        transactions=pa.table(
            {
                "customer_id": ids.take(pa.array(tx_row)),
                "timestamp": _timestamps(tx_ns),
                "amount": pa.array(amount, type=pa.float64()),
                "quantity": pa.array(quantity, type=pa.float64()),
            }
        ),
        oracle=pa.table(
            {
                "customer_id": ids.take(pa.array(or_row[order])),
                "cutoff": _timestamps(or_n[order]),
                "true_prob": pa.array(or_prob[order], type=pa.float64()),
            }
        ),
        latent=pa.table(
            {
                "customer_id": ids,
                "churn_date": _timestamps(
                    spec.start.value + churn_day * day_ns, mask=churn_day >= spec.days
                ),
                "fade_onset": _timestamps(
                    spec.start.value
                    + (np.where(lat.fades, lat.tau, 0.0) * day_ns).astype(np.int64),
                    mask=~lat.fades,
                ),
                "base_rate": pa.array(lat.base_rate, type=pa.float64()),
            }
        ),
        segment_counts=np.bincount(lat.segment, minlength=len(SEGMENT_NAMES)),
    )


def generate(spec: SynthSpec, out_dir: str | Path) -> dict:
    """Simulates the customers chunk by chunk and writes the output folder atomically.

    Args:
        spec: Parameters from :func:`make_spec`.
        out_dir: Destination folder; an existing one is replaced once the new one is complete.

    Returns:
        The content of ``generator.json``.

    Raises:
        OutputError: ``out_dir`` is a folder of another kind or cannot be written (checked
            before the work).
    """
    out_dir = Path(out_dir)
    check_replaceable(out_dir, "generator.json")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(spec.customers / spec.chunk_customers)
    width = max(7, len(str(spec.customers - 1)))
    # One child seed per chunk: the output depends on the seed and the chunk size only.
    seeds = np.random.SeedSequence(spec.seed).spawn(n_chunks)
    buffer = np.empty(
        (2, (spec.days + 1) * min(spec.chunk_customers, spec.customers)), dtype=np.float32
    )
    log.info(
        "simulating %d customers x %d days in %d chunks (drift %s)",
        spec.customers,
        spec.days,
        n_chunks,
        spec.drift,
    )
    began = time.perf_counter()
    counts: dict[str, Any] = {"customers": spec.customers, "transactions": 0, "oracle_rows": 0}
    segments = np.zeros(len(SEGMENT_NAMES), dtype=np.int64)
    with staging_dir(out_dir, marker="generator.json") as tmp:
        with contextlib.ExitStack() as stack:
            writers: dict[str, pq.ParquetWriter] = {}
            for i in tqdm(range(n_chunks), desc="synth", unit="chunk", disable=None):
                first = i * spec.chunk_customers
                n = min(spec.chunk_customers, spec.customers - first)
                rng = np.random.default_rng(seeds[i])
                chunk = _simulate_chunk(spec, rng, first, n, width, buffer)
                for name, table in chunk.tables().items():
                    if name not in writers:
                        # Dictionary encoding would triple the write time of the unique,
                        # sorted ids for about a sixth less disk.
                        writers[name] = stack.enter_context(
                            pq.ParquetWriter(
                                tmp / f"{name}.parquet", table.schema, use_dictionary=False
                            )
                        )
                    writers[name].write_table(table)
                counts["transactions"] += chunk.transactions.num_rows
                counts["oracle_rows"] += chunk.oracle.num_rows
                segments += chunk.segment_counts
        counts["segments"] = dict(zip(SEGMENT_NAMES, segments.tolist(), strict=True))
        meta = _meta(spec, counts)
        (tmp / "generator.json").write_text(json.dumps(meta, indent=2))
    log.info(
        "wrote %d customers, %d transactions and %d oracle rows to %s in %.1fs",
        spec.customers,
        counts["transactions"],
        counts["oracle_rows"],
        out_dir,
        time.perf_counter() - began,
    )
    return meta


def _meta(spec: SynthSpec, counts: dict) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "customers": spec.customers,
        "days": spec.days,
        "seed": spec.seed,
        "start": spec.start.isoformat(),
        "observed_until": spec.observed_until.isoformat(),
        "horizon_days": spec.horizon_days,
        "cutoffs": [c.isoformat() for c in spec.cutoffs],
        "oracle_population": "customers signed up before the cutoff",
        "drift": spec.drift,
        "drift_start_day": spec.drift_start_day,
        "chunk_customers": spec.chunk_customers,
        "model": _model_parameters(),
        "counts": counts,
    }


def _model_parameters() -> dict:
    """The generative model's constants, as ``generator.json`` records them."""
    return {
        "segments": {name: asdict(params) for name, params in SEGMENTS.items()},
        "new_segment": NEW_SEGMENT,
        "new_segment_share": NEW_SEGMENT_SHARE,
        "regions": {
            name: {"share": share, "rate_factor": rate}
            for name, share, rate in zip(REGIONS, REGION_SHARES, REGION_RATE, strict=True)
        },
        "weekday_rate": WEEKDAY_RATE,
        "signup_spread": SIGNUP_SPREAD,
        "age_fade": AGE_FADE,
        "price_sigma": PRICE_SIGMA,
        "basket_sigma": BASKET_SIGMA,
        "fade_rate_median": FADE_RATE_MEDIAN,
        "fade_rate_sigma": FADE_RATE_SIGMA,
        "hazard_base": HAZARD_BASE,
        "hazard_faded": HAZARD_FADED,
        "faded_basket": FADED_BASKET,
        "spend_drift": SPEND_DRIFT,
        "rate_drift": RATE_DRIFT,
    }


def read_spec(data_dir: str | Path) -> SynthSpec:
    """The parameters a folder from :func:`generate` was simulated with.

    Args:
        data_dir: The folder.

    Returns:
        Its parameters.

    Raises:
        ChurnError: ``generator.json`` is missing, or was written by another format version
            or with other generative constants than this module's.
    """
    path = Path(data_dir) / "generator.json"
    if not path.is_file():
        raise ChurnError(f"{path} is missing: is {data_dir} a folder from `churn data synth`?")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ChurnError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ChurnError(f"{path} must hold a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ChurnError(
            f"{path} has format_version {meta.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    # The JSON round trip turns tuples into lists, as they are on disk.
    if json.loads(json.dumps(_model_parameters())) != meta["model"]:
        raise ChurnError(f"{path} was written with other generator parameters than this version's")
    return SynthSpec(
        customers=meta["customers"],
        days=meta["days"],
        seed=meta["seed"],
        start=pd.Timestamp(meta["start"]),
        horizon_days=meta["horizon_days"],
        cutoffs=tuple(pd.Timestamp(c) for c in meta["cutoffs"]),
        drift=meta["drift"],
        drift_start_day=meta["drift_start_day"],
        chunk_customers=meta["chunk_customers"],
    )

"""The best churn probability any model can compute from the observed log of a synthetic set.

The generator's oracle (``oracle.parquet``) knows each customer's hidden state: whether it has
churned already, its base rate and its fade onset. No model sees those, so its AUC is a ceiling
that no model reaches. This module computes the attainable ceiling instead: the Bayes posterior
probability of the churn label given only what a model may see at the cutoff, under the
generator's own law (:mod:`churn.data.synth`):

* the customer table (segment, region, age, signup day), which sets the priors;
* every transaction on or before the cutoff: its day, amount and quantity.

The hidden parameters are integrated out:

* the base rate analytically (a gamma prior with Poisson counts is conjugate);
* the unit price analytically (a normal prior on its log with normal basket noise);
* the fade onset on a grid of ``tau_step_days`` and the fade rate by Gauss-Hermite
  quadrature;
* the churn day exactly, day by day between the last purchase and the cutoff.

The grid is the only approximation. Its AUC is the bar a model should be judged against; the
latent oracle's AUC minus this one is what the log cannot tell.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.special import logsumexp
from tqdm import tqdm

from churn.data.cutoffs import parse_midnight
from churn.data.synth import (
    BASKET_SIGMA,
    FADE_RATE_MEDIAN,
    FADE_RATE_SIGMA,
    FADED_BASKET,
    HAZARD_BASE,
    HAZARD_FADED,
    PRICE_SIGMA,
    REGION_RATE,
    REGIONS,
    SEGMENTS,
    SynthSpec,
    day_factors,
    fade_probability,
    read_spec,
)
from churn.errors import ChurnError
from churn.features.activity import DAY_NS, day_index

log = logging.getLogger(__name__)


class _Grid:
    """Engagement paths for every (fade onset, fade rate) grid point, shared by all customers.

    Row ``z`` is one path; the last row is the customer who never fades (or not before the
    end of the label window, which is the same thing here). Columns are absolute days.
    """

    def __init__(self, spec: SynthSpec, tau_step_days: float, rate_nodes: int) -> None:
        days = spec.days
        self.tau = np.arange(tau_step_days / 2, days + tau_step_days / 2, tau_step_days)
        self.tau_step = tau_step_days
        # Gauss-Hermite for a lognormal fade rate: nodes x and weights w for E[f(exp(s X))].
        x, w = np.polynomial.hermite_e.hermegauss(rate_nodes)
        self.rate = FADE_RATE_MEDIAN * np.exp(FADE_RATE_SIGMA * x)
        self.rate_w = w / w.sum()
        day = np.arange(days, dtype=float)
        tau = np.repeat(self.tau, rate_nodes)[:, None]
        rate = np.tile(self.rate, self.tau.size)[:, None]
        e = np.exp(-rate * np.maximum(day - tau, 0.0))
        self.e = np.vstack([e, np.ones((1, days))])
        rate_factor, self.spend = day_factors(spec)
        zero = np.zeros((self.e.shape[0], 1))
        # Running sums before each day (column d sums days 0 .. d-1), as in the generator.
        self.cw = np.hstack([zero, np.cumsum(self.e * rate_factor, axis=1)])
        hazard = HAZARD_BASE + HAZARD_FADED * (1.0 - self.e)
        self.ch = np.hstack([zero, np.cumsum(hazard, axis=1)])
        # Log probability of churning on a day, having lived through the day before.
        self.log_churn_on = np.log(-np.expm1(-hazard))
        self.log_e = np.log(self.e)
        self.log_basket = np.log(FADED_BASKET + (1.0 - FADED_BASKET) * self.e)

    def log_prior(
        self, signup: int, fade_prob: float, fade_after_mean: float, end: int
    ) -> np.ndarray:
        """Log prior mass of every row for one customer; onsets at or after ``end`` join the
        never-fading row."""
        lo = np.clip(self.tau - self.tau_step / 2, signup, None)
        hi = np.clip(self.tau + self.tau_step / 2, signup, None)
        inside = lo < end
        cdf = lambda t: 1.0 - np.exp(-(t - signup) / fade_after_mean)  # noqa: E731
        mass = np.where(inside, cdf(hi) - cdf(lo), 0.0) * fade_prob
        # Never fading, or not before ``end``: the rest of the mass.
        later = max(1.0 - mass.sum(), 0.0)
        prior = np.append(np.outer(mass, self.rate_w).ravel(), later)
        with np.errstate(divide="ignore"):
            return np.log(prior)


def posterior_probs(
    data_dir: str | Path,
    cutoff: str | pd.Timestamp,
    customer_ids: Iterable[str] | None = None,
    tau_step_days: float = 4.0,
    rate_nodes: int = 5,
) -> pd.DataFrame:
    """Posterior churn-label probabilities at one cutoff from the observed log only.

    Args:
        data_dir: A folder written by :func:`churn.data.synth.generate` without drift.
        cutoff: The cutoff (a midnight UTC inside the simulated period, a full horizon before
            its end).
        customer_ids: The customers to score (default: every one signed up before the cutoff).
        tau_step_days: Grid step of the fade onset in days.
        rate_nodes: Gauss-Hermite nodes for the fade rate.

    Returns:
        ``customer_id``, ``cutoff`` (UTC) and ``posterior_prob``, in the order of
        ``customer_ids`` (or of the customer table).

    Raises:
        ChurnError: The folder is not a synthetic set of this generator version, has drift, the
            cutoff lies outside the period, or a customer is unknown.
    """
    data_dir = Path(data_dir)
    spec = read_spec(data_dir)
    if spec.drift != "none":
        raise ChurnError(
            f"{data_dir / 'generator.json'}: the posterior supports sets without drift, "
            f"got {spec.drift!r}"
        )
    cutoff = parse_midnight(cutoff, "cutoff")
    k = (cutoff - spec.start).days
    if not 0 < k <= spec.days - spec.horizon_days:
        raise ChurnError(
            f"cutoff {cutoff.date()} must come after {spec.start.date()} with a full "
            f"{spec.horizon_days}-day horizon before {spec.observed_until.date()}"
        )
    customers = pd.read_parquet(data_dir / "customers.parquet")
    customers["signup"] = (customers["signup_date"] - spec.start).dt.days
    if customer_ids is None:
        customers = customers[customers["signup"] < k]
    else:
        wanted = pd.Index(pd.Series(customer_ids, dtype=str), name="customer_id")
        indexed = customers.set_index("customer_id")
        missing = wanted.difference(indexed.index)
        if len(missing):
            raise ChurnError(
                f"{data_dir / 'customers.parquet'} lacks customers {list(missing[:5])}"
            )
        customers = indexed.loc[wanted].reset_index()
        late = customers[customers["signup"] >= k]
        if len(late):
            raise ChurnError(
                f"customer {late['customer_id'].iloc[0]!r} signed up on or after the cutoff "
                f"{cutoff.date()}: it has no label there"
            )
    tx = _transactions_before(data_dir, cutoff, spec)
    grid = _Grid(spec, tau_step_days, rate_nodes)
    by_customer = {c: g for c, g in tx.groupby("customer_id", sort=False)}
    empty = tx.iloc[:0]
    began = time.perf_counter()
    probs = np.empty(len(customers))
    rows = customers.itertuples(index=False)
    for i, row in enumerate(tqdm(rows, total=len(customers), desc="posterior", disable=None)):
        probs[i] = _customer_prob(grid, spec, k, row, by_customer.get(row.customer_id, empty))
    log.info(
        "posterior for %d customers at %s in %.1fs",
        len(customers),
        cutoff.date(),
        time.perf_counter() - began,
    )
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "cutoff": cutoff,
            "posterior_prob": probs,
        }
    )


def _customer_prob(grid: _Grid, spec: SynthSpec, k: int, row, tx: pd.DataFrame) -> float:
    seg = SEGMENTS[row.segment]
    region_rate = REGION_RATE[REGIONS.index(row.region)]
    signup = int(row.signup)
    horizon = spec.horizon_days
    fade_prob = float(fade_probability(seg.fade_prob, seg.age_mean, row.age))
    log_w = grid.log_prior(signup, fade_prob, seg.fade_after_mean, k + horizon)
    rows = np.flatnonzero(np.isfinite(log_w))
    log_w = log_w[rows]
    # Base rate: Gamma(shape a0, rate b0); Poisson counts with exposure W give the marginal
    # lgamma(a0 + N) - (a0 + N) log(b0 + W) up to terms that do not depend on the latents.
    a0 = seg.rate_shape
    b0 = seg.rate_shape / (seg.rate_mean * region_rate)
    days = tx["day"].to_numpy()
    n = days.size
    a = a0 + n
    if n:
        log_w = log_w + grid.log_e[np.ix_(rows, days)].sum(axis=1)
        # Log unit spend less its prior median: normal with a shared per-customer price offset.
        y = (
            np.log(np.maximum(tx["amount"].to_numpy(), 0.005) / tx["quantity"].to_numpy())
            - np.log(grid.spend[days])
            - math.log(seg.price_median)
            + BASKET_SIGMA**2 / 2
        )
        resid = y - grid.log_basket[np.ix_(rows, days)]
        s2, t2 = BASKET_SIGMA**2, PRICE_SIGMA**2
        log_w = log_w - 0.5 * (
            (resid**2).sum(axis=1) / s2 - t2 * resid.sum(axis=1) ** 2 / (s2 * (s2 + n * t2))
        )
    first_quiet = int(days.max()) + 1 if n else signup
    # Running sums from signup on days first_quiet .. k + horizon (column j = day first_quiet + j).
    span = slice(first_quiet, k + horizon + 1)
    ch = grid.ch[rows, span] - grid.ch[rows, signup][:, None]
    cw = grid.cw[rows, span] - grid.cw[rows, signup][:, None]
    at_k = k - first_quiet
    # Churned before the cutoff: on a day c in [first_quiet, k), having lived through c - 1.
    churned = -ch[:, :at_k] + grid.log_churn_on[rows, first_quiet:k] - a * np.log(b0 + cw[:, :at_k])
    # Alive through day k - 1.
    beta = b0 + cw[:, at_k]
    alive = -ch[:, at_k] - a * np.log(beta)
    # Label given alive: churn on day k + j before any purchase, or no purchase in the window.
    surv = np.exp(-(ch[:, at_k:] - ch[:, [at_k]]))
    quiet = (beta[:, None] / (beta[:, None] + cw[:, at_k:] - cw[:, [at_k]])) ** a
    p_alive = ((surv[:, :-1] - surv[:, 1:]) * quiet[:, :-1]).sum(axis=1)
    p_alive += surv[:, -1] * quiet[:, -1]
    log_churned = logsumexp(log_w[:, None] + churned) if at_k else -np.inf
    log_alive = log_w + alive
    total = np.logaddexp(log_churned, logsumexp(log_alive))
    with np.errstate(divide="ignore"):
        log_label = np.logaddexp(log_churned, logsumexp(log_alive + np.log(p_alive)))
    return float(np.exp(log_label - total))


def _transactions_before(data_dir: Path, cutoff: pd.Timestamp, spec: SynthSpec) -> pd.DataFrame:
    table = pq.read_table(
        data_dir / "transactions.parquet",
        columns=["customer_id", "timestamp", "amount", "quantity"],
        filters=[("timestamp", "<=", cutoff)],
    )
    ts = pc.cast(table["timestamp"], "int64").to_numpy()
    # Simulation day d is the right-closed bin (start + d, start + d + 1].
    day = day_index(ts) - spec.start.value // DAY_NS - 1
    return pd.DataFrame(
        {
            "customer_id": table["customer_id"].to_numpy(),
            "day": day.astype(np.int64),
            "amount": table["amount"].to_numpy(),
            "quantity": table["quantity"].to_numpy(),
        }
    )

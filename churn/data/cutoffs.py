"""Cutoff schedules and the time split of cutoffs into train, validation and test.

A label at cutoff ``t`` looks at ``(t, t + H]``. To keep the test split blind, a validation
cutoff's label window must end by the first test cutoff, and a training cutoff's by the first
validation cutoff; cutoffs that fit no split under this rule are left out (and logged).

The automatic schedule fits the log's span: on a short log the training cutoffs that would come
before its first event are left out (and logged), while the horizon and the validation and test
cutoffs stay; a log too short for one training cutoff is refused with a horizon that would fit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from churn.errors import ContractError
from churn.settings import FeatureConfig

log = logging.getLogger(__name__)


def parse_midnight(value: str | pd.Timestamp, what: str) -> pd.Timestamp:
    """Parses one date or timestamp that must be a midnight in UTC.

    Args:
        value: A date or timestamp; naive values are UTC.
        what: What the value is, for error messages (``"cutoff"``, ``"--start"``).

    Returns:
        The UTC timestamp.

    Raises:
        ContractError: The value cannot be parsed or is not at midnight UTC.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ContractError(f"{what} {value!r} is not a date or timestamp") from exc
    if ts is pd.NaT:  # what an empty string parses to
        raise ContractError(f"{what} {value!r} is not a date or timestamp")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.normalize():
        raise ContractError(
            f"{what} {value!r} is not at midnight UTC: daily bins end at midnight, so a "
            "time inside a day would split a bin"
        )
    return ts


def parse_cutoffs(values: Iterable[str | pd.Timestamp]) -> list[pd.Timestamp]:
    """Parses cutoffs and checks that each is a midnight in UTC.

    Args:
        values: Dates or timestamps (``"1998-01-01"``, ``"1998-01-01T00:00:00Z"``).

    Returns:
        Sorted, unique UTC timestamps.

    Raises:
        ContractError: A value cannot be parsed or is not at midnight UTC.
    """
    out = [parse_midnight(value, "cutoff") for value in values]
    if not out:
        raise ContractError("no cutoffs given")
    return sorted(set(out))


def default_cutoffs(
    observed_until: pd.Timestamp, horizon_days: int, step_days: int, n_train: int
) -> list[pd.Timestamp]:
    """The automatic schedule: one test cutoff, one validation cutoff, ``n_train`` training ones.

    The test cutoff is the last midnight whose label window ends by ``observed_until``; the
    validation cutoff is one horizon earlier, and training cutoffs start one horizon before
    that and go back ``step_days`` at a time.

    Args:
        observed_until: End of the observed log (inclusive).
        horizon_days: Label horizon H in days.
        step_days: Spacing of training cutoffs.
        n_train: Number of training cutoffs.

    Returns:
        The cutoffs, oldest first.
    """
    horizon = pd.Timedelta(days=horizon_days)
    test = (observed_until - horizon).floor("D")
    val = test - horizon
    train = [val - horizon - pd.Timedelta(days=step_days * i) for i in range(n_train)]
    return sorted([*train, val, test])


def fit_default_cutoffs(
    observed_from: pd.Timestamp,
    observed_until: pd.Timestamp,
    horizon_days: int,
    step_days: int,
    n_train: int,
    what: str = "the log",
) -> list[pd.Timestamp]:
    """The automatic schedule, less the training cutoffs a short log has no events before.

    The test and validation cutoffs and the horizon stay as :func:`default_cutoffs` puts them;
    training cutoffs at or before ``observed_from`` would have no history, so they are left out
    and the change is logged. A log too short for even one training cutoff is refused.

    Args:
        observed_from: The first event (a cutoff must come after it).
        observed_until: End of the observed log (inclusive).
        horizon_days: Label horizon H in days.
        step_days: Spacing of training cutoffs.
        n_train: Number of training cutoffs asked for.
        what: The log, for messages.

    Returns:
        The cutoffs, oldest first: at least one training cutoff, then validation and test.

    Raises:
        ContractError: Not even one training cutoff comes after ``observed_from``; the message
            names the settings that would fit.
    """
    *train, val, test = default_cutoffs(observed_until, horizon_days, step_days, n_train)
    kept = [c for c in train if c > observed_from]
    if not kept:
        raise ContractError(_too_short(observed_from, observed_until, horizon_days, what))
    if len(kept) < len(train):
        log.warning(
            "%s starts %s, so %d of the %d automatic training cutoffs (%s) would have no history: "
            "training uses the %d after it (%s); validation %s, test %s and the %d-day horizon "
            "are unchanged. Set features.n_train_cutoffs=%d to silence this",
            what,
            observed_from,
            len(train) - len(kept),
            len(train),
            ", ".join(c.date().isoformat() for c in train if c not in kept),
            len(kept),
            ", ".join(c.date().isoformat() for c in kept),
            val.date(),
            test.date(),
            horizon_days,
            len(kept),
        )
    return [*kept, val, test]


def _too_short(
    observed_from: pd.Timestamp, observed_until: pd.Timestamp, horizon_days: int, what: str
) -> str:
    span = (observed_until - observed_from).days
    fitting = [
        h
        for h in range(horizon_days - 1, 0, -1)
        if default_cutoffs(observed_until, h, 1, 1)[0] > observed_from
    ]
    remedy = (
        f"set features.horizon_days to at most {fitting[0]} (in --config or "
        "CHURN_FEATURES__HORIZON_DAYS), or give --cutoffs"
        if fitting
        else "no horizon fits a log this short: give a longer log"
    )
    return (
        f"{what} spans {observed_from} .. {observed_until} ({span} days), too short for the "
        f"automatic cutoffs with features.horizon_days={horizon_days}: the test cutoff "
        f"{horizon_days} days before the end, then validation and one training cutoff "
        f"{horizon_days} days apart, need more than {3 * horizon_days} days after the first "
        f"event; {remedy}"
    )


def split_cutoffs(cutoffs: list[pd.Timestamp], horizon_days: int) -> dict[str, list[pd.Timestamp]]:
    """Assigns cutoffs to splits by time so that no label window crosses into a later split.

    Args:
        cutoffs: Sorted cutoffs.
        horizon_days: Label horizon H in days.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``; test holds the last cutoff, val the
        last cutoff whose window ends by test, train every cutoff whose window ends by val.

    Raises:
        ContractError: The cutoffs are too close together to fill all three splits.
    """
    horizon = pd.Timedelta(days=horizon_days)
    cutoffs = sorted(cutoffs)
    test = cutoffs[-1]
    val_candidates = [c for c in cutoffs if c + horizon <= test]
    if not val_candidates:
        raise ContractError(
            f"cutoffs {[c.date().isoformat() for c in cutoffs]} leave no validation cutoff: one "
            f"must be at least {horizon_days} days before the test cutoff {test.date()}"
        )
    val = val_candidates[-1]
    train = [c for c in cutoffs if c + horizon <= val]
    if not train:
        raise ContractError(
            f"cutoffs leave no training cutoff: one must be at least {horizon_days} days before "
            f"the validation cutoff {val.date()}"
        )
    unused = [c for c in cutoffs if c not in (*train, val, test)]
    if unused:
        log.info(
            "cutoffs %s fit no split without label windows overlapping a later split; unused",
            [c.date().isoformat() for c in unused],
        )
    return {"train": train, "val": [val], "test": [test]}


def parse_cutoff_list(text: str) -> list[str] | None:
    """Splits the pipeline's comma-separated ``cutoffs`` argument; ``""`` means automatic.

    Args:
        text: For example ``"1997-06-01,1997-09-01"``.

    Returns:
        The dates, or ``None`` when the text is empty.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def observed_until_of(tx: pd.DataFrame, override: str | pd.Timestamp | None = None) -> pd.Timestamp:
    """The last instant the log covers: an explicit value, else its latest timestamp."""
    if override is not None:
        try:
            ts = pd.Timestamp(override)
        except (ValueError, TypeError) as exc:
            raise ContractError(f"observed-until {override!r} is not a date or timestamp") from exc
        if ts is pd.NaT:
            raise ContractError(f"observed-until {override!r} is not a date or timestamp")
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return tx["timestamp"].max()


def choose_cutoffs(
    cutoffs: list[str] | None,
    first: pd.Timestamp,
    end: pd.Timestamp,
    cfg: FeatureConfig,
    transactions: object,
) -> list[pd.Timestamp]:
    """The given cutoffs, or the automatic schedule fitted to the log's span."""
    if not cutoffs:
        return fit_default_cutoffs(
            first,
            end,
            cfg.horizon_days,
            cfg.cutoff_step_days,
            cfg.n_train_cutoffs,
            what=str(transactions),
        )
    chosen = parse_cutoffs(cutoffs)
    early = [c.date().isoformat() for c in chosen if c <= first]
    if early:
        raise ContractError(
            f"cutoffs {early} are at or before the first event of {transactions} ({first}); "
            "they would have no history"
        )
    return chosen

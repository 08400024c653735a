"""The automatic cutoff schedule fits the log's span: short logs lose training cutoffs, not the
horizon or the validation and test cutoffs, and a log too short for any is refused with settings
that would fit."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from churn.data.cutoffs import default_cutoffs, fit_default_cutoffs, split_cutoffs
from churn.errors import ContractError


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_a_one_year_log_keeps_the_training_cutoffs_after_its_first_event(caplog):
    first, end = _ts("2021-01-01T10:00"), _ts("2021-12-31T12:00")
    full = default_cutoffs(end, 90, 30, 6)
    with caplog.at_level(logging.WARNING, logger="churn.data.cutoffs"):
        fitted = fit_default_cutoffs(first, end, 90, 30, 6, what="grocery.csv")
    assert fitted == [c for c in full if c > first]
    assert len(fitted) == 6 and fitted[-2:] == full[-2:]
    splits = split_cutoffs(fitted, 90)
    assert len(splits["train"]) == 4
    assert "grocery.csv starts 2021-01-01 10:00:00+00:00, so 2 of the 6" in caplog.text
    assert "2020-11-06, 2020-12-06" in caplog.text and "90-day horizon" in caplog.text


def test_the_cdnow_span_keeps_the_whole_schedule_without_a_warning(caplog):
    first, end = _ts("1997-01-01T12:00"), _ts("1998-06-30T12:00")
    with caplog.at_level(logging.WARNING, logger="churn.data.cutoffs"):
        fitted = fit_default_cutoffs(first, end, 90, 30, 6)
    assert fitted == default_cutoffs(end, 90, 30, 6)
    assert [c.date().isoformat() for c in fitted] == [
        "1997-05-06",
        "1997-06-05",
        "1997-07-05",
        "1997-08-04",
        "1997-09-03",
        "1997-10-03",
        "1998-01-01",
        "1998-04-01",
    ]
    assert caplog.text == ""


def test_a_log_too_short_for_one_training_cutoff_is_refused_naming_a_horizon_that_fits():
    first, end = _ts("2021-01-01"), _ts("2021-07-01")
    with pytest.raises(ContractError) as error:
        fit_default_cutoffs(first, end, 90, 30, 6, what="half-year.csv")
    message = str(error.value)
    assert "half-year.csv spans" in message and "(181 days)" in message
    assert "features.horizon_days to at most 60" in message and "--cutoffs" in message
    assert len(fit_default_cutoffs(first, end, 60, 30, 6)) == 3
    with pytest.raises(ContractError, match="no horizon fits"):
        fit_default_cutoffs(first, _ts("2021-01-03"), 90, 30, 6)

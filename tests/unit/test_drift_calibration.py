"""Per-column thresholds from a version's first drift-free windows (monitoring.calibration)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from churn.errors import MonitorError
from churn.settings import MonitorConfig
from monitoring.calibration import calibrate, first_windows, thresholds
from monitoring.drift import empty_columns, fixed_alarms, fixed_use, read_snapshot
from monitoring.store import Store

WASSERSTEIN = "Wasserstein distance (normed)"
CFG = MonitorConfig(calibration_windows=2, calibration_margin=1.25, calibration_floor=0.1)


def summary(
    hour: int, scores: dict[str, float], version: str = "v1", rows: int = 1000, **fields
) -> dict:
    """A run summary of the window [hour, hour + 1), tested on ``rows`` rows, with these
    column distances."""
    columns = [
        {"column": c, "method": WASSERSTEIN, "score": v, "threshold": 0.1, "drifted": v >= 0.1}
        for c, v in scores.items()
        if c != "churn_probability"
    ]
    return {
        "model_version": version,
        "decision": "no_drift",
        "window": {
            "since": f"2026-11-30T{hour:02d}:00:00+00:00",
            "until": f"2026-11-30T{hour + 1:02d}:00:00+00:00",
        },
        "columns": columns,
        "sampled": {"reference": 5000, "current": rows},
        "prediction_drift": {
            "column": "churn_probability",
            "method": WASSERSTEIN,
            "score": scores.get("churn_probability", 0.01),
            "threshold": 0.1,
            "drifted": False,
        },
        **fields,
    }


COLUMNS = ["quiet", "noisy", "churn_probability"]


def store_with(tmp_path: Path, *runs: dict | str) -> Store:
    """A monitoring store holding these summaries (a string: a file's raw text), in order."""
    for i, run in enumerate(runs):
        folder = tmp_path / "runs" / f"20261130T{i:02d}0000000000Z-v1"
        folder.mkdir(parents=True)
        text = run if isinstance(run, str) else json.dumps(run)
        (folder / "summary.json").write_text(text)
    return Store(str(tmp_path))


def test_thresholds_are_the_margin_over_each_columns_largest_drift_free_distance() -> None:
    past = [
        summary(1, {"quiet": 0.05, "noisy": 0.12, "churn_probability": 0.09}),
        summary(2, {"quiet": 0.09, "noisy": 0.17, "churn_probability": 0.02}),
    ]
    calibration = thresholds(first_windows(past, 2), COLUMNS, CFG)
    # 1.25 x 0.09 = 0.1125; 1.25 x 0.17 = 0.2125, capped at column_alarm 0.2.
    assert calibration["thresholds"] == {
        "churn_probability": 0.1125,
        "noisy": 0.2,
        "quiet": 0.1125,
    }
    assert calibration["windows"] == [
        "2026-11-30T01:00:00+00:00/2026-11-30T02:00:00+00:00",
        "2026-11-30T02:00:00+00:00/2026-11-30T03:00:00+00:00",
    ]


def test_a_column_quieter_than_the_floor_gets_the_floor() -> None:
    past = [summary(h, {"quiet": 0.01, "noisy": 0.01}) for h in (1, 2)]
    assert thresholds(past, COLUMNS, CFG)["thresholds"]["quiet"] == 0.1


def test_only_drift_free_windows_that_do_not_overlap_count() -> None:
    one = summary(1, {"quiet": 0.05})
    others = [
        summary(3, {"quiet": 0.3}, decision="drift"),
        # 01:30 to 02:30 UTC, written with another offset: it overlaps the first window.
        {
            **summary(9, {"quiet": 0.05}),
            "window": {"since": "2026-11-30T03:30:00+02:00", "until": "2026-11-30T04:30:00+02:00"},
        },
    ]
    assert first_windows([one, *others], 2) == [one]
    later = summary(7, {"quiet": 0.05})
    assert first_windows([one, *others, later], 2) == [one, later]


def test_thresholds_apply_only_to_windows_tested_on_as_many_rows_as_the_calibration(
    tmp_path: Path,
) -> None:
    store = store_with(
        tmp_path, summary(1, {"quiet": 0.05}, rows=1000), summary(2, {"quiet": 0.05}, rows=3000)
    )
    wide = calibrate(store, "runs", "v1", 1000, COLUMNS, CFG)
    assert wide is not None and wide["fewest_rows"] == 1000 and wide["applied"]
    # An hour's window on the daily monitor's thresholds: fewer rows, noisier distances.
    narrow = calibrate(store, "runs", "v1", 999, COLUMNS, CFG)
    assert narrow is not None and not narrow["applied"]


def test_summaries_without_the_fields_calibration_reads_are_skipped() -> None:
    good = summary(1, {"quiet": 0.05})
    broken = [
        [],
        {k: v for k, v in summary(2, {"quiet": 0.05}).items() if k != "columns"},
        {k: v for k, v in summary(3, {"quiet": 0.05}).items() if k != "window"},
        {**summary(4, {"quiet": 0.05}), "prediction_drift": None},
        {**summary(5, {"quiet": 0.05}), "window": {"since": "yesterday", "until": "today"}},
        {k: v for k, v in summary(6, {"quiet": 0.05}).items() if k != "sampled"},
    ]
    assert first_windows([*broken, good], 2) == [good]


def test_calibration_waits_for_enough_windows_of_the_version_and_can_be_turned_off(
    tmp_path: Path,
) -> None:
    assert (
        calibrate(
            store_with(tmp_path, summary(1, {"quiet": 0.05})), "runs", "v1", 1000, COLUMNS, CFG
        )
        is None
    )
    store = store_with(tmp_path / "two", summary(1, {"quiet": 0.05}), summary(2, {"quiet": 0.05}))
    assert calibrate(store, "runs", "v1", 1000, COLUMNS, CFG) is not None
    assert calibrate(store, "runs", "v2", 1000, COLUMNS, CFG) is None
    off = MonitorConfig(calibration_windows=0)
    assert calibrate(store, "runs", "v1", 1000, COLUMNS, off) is None


def test_the_first_runs_stay_the_calibration_whatever_is_checked_later(tmp_path: Path) -> None:
    first = [summary(10, {"quiet": 0.04}), summary(11, {"quiet": 0.04})]
    # Checked later: a slow drift under the old threshold, and a backfilled earlier window.
    later = [summary(15, {"quiet": 0.19}), summary(2, {"quiet": 0.15})]
    calibration = calibrate(store_with(tmp_path, *first, *later), "runs", "v1", 1000, COLUMNS, CFG)
    assert calibration is not None and calibration["thresholds"]["quiet"] == 0.1


def test_a_damaged_summary_is_skipped_and_the_check_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_with(
        tmp_path, '{"decision": "no_dr', summary(1, {"quiet": 0.05}), summary(2, {"quiet": 0.05})
    )
    calibration = calibrate(store, "runs", "v1", 1000, COLUMNS, CFG)
    assert calibration is not None and len(calibration["windows"]) == 2
    assert "calibration skips" in caplog.text and "20261130T000000000000Z-v1" in caplog.text


def test_p_values_set_no_threshold() -> None:
    past = [summary(h, {"quiet": 0.05}) for h in (1, 2)]
    for s in past:
        s["columns"][0]["method"] = "K-S p_value"
    assert "quiet" not in thresholds(past, COLUMNS, CFG)["thresholds"]


def snapshot(scores: dict[str, float]) -> dict:
    """Evidently's snapshot.dict() of a run with these distances (what read_snapshot reads)."""
    metrics = [
        {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"share": 0.0}}
    ]
    tests = []
    for column, score in scores.items():
        metrics.append(
            {
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": column,
                    "method": WASSERSTEIN,
                    "threshold": 0.1,
                },
                "value": score,
            }
        )
        tests.append(
            {
                "metric_config": {
                    "params": {"type": "evidently:metric_v2:ValueDrift", "column": column}
                },
                "status": "FAIL" if score >= 0.1 else "SUCCESS",
            }
        )
    return {"metrics": metrics, "tests": tests}


def test_a_column_at_its_calibrated_threshold_decides_alone_below_the_column_alarm() -> None:
    snap = snapshot({"quiet": 0.15, "noisy": 0.18, "churn_probability": 0.05})
    plain = read_snapshot(snap, 0.2, 0.2)
    assert plain["decision"] == "no_drift"
    calibrated = read_snapshot(snap, 0.2, 0.2, {"quiet": 0.12, "noisy": 0.2})
    assert calibrated["decision"] == "drift"
    assert calibrated["alarm_columns"] == ["quiet"]
    assert calibrated["reasons"] == ["quiet distance 0.150 >= calibrated 0.12"]


def test_a_fixed_alarm_replaces_both_the_column_alarm_and_a_calibrated_threshold() -> None:
    snap = snapshot({"ticket": 0.25, "quiet": 0.15, "churn_probability": 0.05})
    fixed = {"ticket": 0.3}
    # Calibration alone would call 0.25 drift; the column's own, wider alarm does not.
    held = read_snapshot(snap, 0.2, 0.2, {"ticket": 0.12, "quiet": 0.2}, fixed)
    assert held["decision"] == "no_drift"
    fired = read_snapshot(
        snapshot({"ticket": 0.31, "churn_probability": 0.05}), 0.2, 0.2, None, fixed
    )
    assert fired["alarm_columns"] == ["ticket"]
    assert fired["reasons"] == ["ticket distance 0.310 >= its fixed alarm 0.3"]


def test_fixed_alarms_apply_to_tested_columns_and_the_score_and_say_which_they_leave(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alarms = {"seq_spend_per_txn_change": 0.3, "churn_probability": 0.4, "num_frequency": 0.5}
    columns = ["seq_spend_sum_1", "seq_spend_per_txn_change", "num_frequency"]
    with caplog.at_level("WARNING", logger="monitoring.drift"):
        kept = fixed_alarms(alarms, columns, columns[:2], "v1")
    assert kept == {"seq_spend_per_txn_change": 0.3, "churn_probability": 0.4}
    assert "['num_frequency']" in caplog.text and "not applied" in caplog.text


def test_a_reference_from_before_the_ticket_change_leaves_its_alarm_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="monitoring.drift"):
        kept = fixed_alarms({"seq_spend_per_txn_change": 0.3}, ["x"], ["x"], "v0")
    assert kept == {}
    assert "['seq_spend_per_txn_change']" in caplog.text


def test_a_misspelt_fixed_alarm_is_an_error_naming_it_not_a_silent_calibration() -> None:
    with pytest.raises(MonitorError, match=r"names \['seq_spend_per_txn_chnage'\].*lacks"):
        fixed_alarms({"seq_spend_per_txn_chnage": 0.25}, ["a"], ["a"], "v1")


def test_a_fixed_alarm_on_too_few_current_values_does_not_decide_alone() -> None:
    current = pd.DataFrame({"t": [0.1] * 99 + [None], "u": [0.2] * 100})
    use = fixed_use({"t": 0.3, "u": 0.3}, current, 100)
    assert use == {
        "t": {"alarm": 0.3, "current_values": 99, "applied": False},
        "u": {"alarm": 0.3, "current_values": 100, "applied": True},
    }


def test_a_column_without_values_on_a_side_is_left_out_and_named() -> None:
    reference = pd.DataFrame({"t": [0.1, 0.2], "u": [1.0, 2.0]})
    current = pd.DataFrame({"t": [None, None], "u": [1.0, 3.0]})
    assert empty_columns(reference, current, ["t", "u"]) == ["t"]
    with pytest.raises(MonitorError, match="no tested column has values on both sides"):
        empty_columns(reference, current, ["t"])

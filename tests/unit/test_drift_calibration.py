"""Per-column thresholds from a version's first drift-free windows (monitoring.calibration)."""

from __future__ import annotations

from churn.settings import MonitorConfig
from monitoring.calibration import calibrate
from monitoring.drift import read_snapshot

WASSERSTEIN = "Wasserstein distance (normed)"
CFG = MonitorConfig(calibration_windows=2, calibration_margin=1.25, calibration_floor=0.1)


def summary(hour: int, scores: dict[str, float], version: str = "v1", **fields) -> dict:
    """A run summary of the window [hour, hour + 1) with these column distances."""
    columns = [
        {"column": c, "method": WASSERSTEIN, "score": v, "threshold": 0.1, "drifted": v >= 0.1}
        for c, v in scores.items()
        if c != "churn_probability"
    ]
    score = scores.get("churn_probability", 0.01)
    return {
        "model_version": version,
        "decision": "no_drift",
        "window": {"since": f"2026-11-30T{hour:02d}:00", "until": f"2026-11-30T{hour + 1:02d}:00"},
        "columns": columns,
        "prediction_drift": {
            "column": "churn_probability",
            "method": WASSERSTEIN,
            "score": score,
            "threshold": 0.1,
            "drifted": False,
        },
        **fields,
    }


COLUMNS = ["quiet", "noisy", "churn_probability"]


def test_thresholds_are_the_margin_over_each_columns_largest_drift_free_distance() -> None:
    past = [
        summary(1, {"quiet": 0.05, "noisy": 0.12, "churn_probability": 0.09}),
        summary(2, {"quiet": 0.09, "noisy": 0.17, "churn_probability": 0.02}),
    ]
    calibration = calibrate(past, "v1", COLUMNS, CFG)
    assert calibration is not None
    # 1.25 x 0.09 = 0.1125; 1.25 x 0.17 = 0.2125, capped at column_alarm 0.2.
    assert calibration["thresholds"] == {
        "churn_probability": 0.1125,
        "noisy": 0.2,
        "quiet": 0.1125,
    }
    assert calibration["windows"] == [
        "2026-11-30T01:00/2026-11-30T02:00",
        "2026-11-30T02:00/2026-11-30T03:00",
    ]


def test_a_column_quieter_than_the_floor_gets_the_floor() -> None:
    past = [summary(h, {"quiet": 0.01, "noisy": 0.01}) for h in (1, 2)]
    calibration = calibrate(past, "v1", COLUMNS, CFG)
    assert calibration is not None and calibration["thresholds"]["quiet"] == 0.1


def test_there_is_no_calibration_until_the_version_has_enough_disjoint_drift_free_windows() -> None:
    one = summary(1, {"quiet": 0.05})
    assert calibrate([one], "v1", COLUMNS, CFG) is None
    others = [
        summary(2, {"quiet": 0.05}, version="v0"),  # another version's traffic
        summary(3, {"quiet": 0.3}, decision="drift"),  # not drift-free
        {
            **summary(1, {"quiet": 0.05}),
            "window": {"since": "2026-11-30T01:30", "until": "2026-11-30T02:30"},
        },
    ]
    assert calibrate([one, *others], "v1", COLUMNS, CFG) is None
    assert calibrate([one, summary(4, {"quiet": 0.05})], "v1", COLUMNS, CFG) is not None
    assert (
        calibrate(
            [one, summary(4, {"quiet": 0.05})], "v1", COLUMNS, MonitorConfig(calibration_windows=0)
        )
        is None
    )


def test_the_first_windows_stay_the_calibration_whatever_comes_later() -> None:
    first = [summary(1, {"quiet": 0.04}), summary(2, {"quiet": 0.04})]
    later = summary(5, {"quiet": 0.19})  # a slow drift under the old threshold
    calibration = calibrate([later, *first], "v1", COLUMNS, CFG)
    assert calibration is not None and calibration["thresholds"]["quiet"] == 0.1


def test_p_values_set_no_threshold() -> None:
    past = [summary(h, {"quiet": 0.05}) for h in (1, 2)]
    for s in past:
        s["columns"][0]["method"] = "K-S p_value"
    calibration = calibrate(past, "v1", COLUMNS, CFG)
    assert calibration is not None and "quiet" not in calibration["thresholds"]


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

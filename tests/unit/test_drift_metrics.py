"""The drift check's gauges: which thresholds they export."""

from __future__ import annotations

from monitoring.metrics import drift_metrics


def summary(applied: bool) -> dict:
    return {
        "model_version": "v1",
        "rows": {"current": 800},
        "decision": "no_drift",
        "drift_share": 0.0,
        "columns": [],
        "prediction_drift": {"score": 0.01},
        "calibration": {"applied": applied, "thresholds": {"seq_n_txn_sum_1": 0.12}},
        "fixed_alarms": {
            "seq_spend_per_txn_change": {"alarm": 0.3, "current_values": 150, "applied": True}
        },
    }


def threshold(applied: bool, column: str) -> float | None:
    metrics = drift_metrics(summary(applied), 0.0)
    labels = {"model_version": "v1", "column": column}
    return metrics.get_sample_value("churn_drift_column_threshold", labels)


def test_calibrated_thresholds_are_exported_only_for_a_window_they_decided() -> None:
    assert threshold(True, "seq_n_txn_sum_1") == 0.12
    # Fewer rows than the calibration windows: column_alarm decided, not 0.12.
    assert threshold(False, "seq_n_txn_sum_1") is None


def test_a_fixed_alarm_is_exported_beside_them() -> None:
    assert threshold(False, "seq_spend_per_txn_change") == 0.3


def test_a_fixed_alarm_on_too_few_values_is_not_exported_as_deciding() -> None:
    few = summary(True)
    few["fixed_alarms"]["seq_spend_per_txn_change"]["applied"] = False
    metrics = drift_metrics(few, 0.0)
    labels = {"model_version": "v1", "column": "seq_spend_per_txn_change"}
    assert metrics.get_sample_value("churn_drift_column_threshold", labels) is None

"""Bad sampling and smoke settings of the drift monitor: one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CHURN_MONITOR__MAX_ROWS_PER_SIDE": "2000", "CHURN_MONITOR__MIN_ROWS": "5000"},
            "max_rows_per_side (2000) must be at least min_rows (5000)",
        ),
        # At 1,000 reference rows or fewer Evidently would swap its distances for p-values.
        (
            {"CHURN_MONITOR__MAX_ROWS_PER_SIDE": "1000"},
            "monitor.max_rows_per_side: Input should be greater than 1000",
        ),
        (
            {"CHURN_MONITOR__SMOKE_CUSTOMERS": "-1"},
            "monitor.smoke_customers: Input should be greater than or equal to 0",
        ),
        (
            {"CHURN_MONITOR__SAMPLE_SEED": "x"},
            "monitor.sample_seed: Input should be a valid integer",
        ),
        # A margin under 1 would put thresholds inside the drift-free noise it measured.
        (
            {"CHURN_MONITOR__CALIBRATION_MARGIN": "0.8"},
            "monitor.calibration_margin: Input should be greater than or equal to 1",
        ),
        (
            {"CHURN_MONITOR__CALIBRATION_WINDOWS": "-1"},
            "monitor.calibration_windows: Input should be greater than or equal to 0",
        ),
        # Below Evidently's 0.1 a column is never called drifted: such a threshold never fires.
        (
            {"CHURN_MONITOR__CALIBRATION_FLOOR": "0.05"},
            "monitor.calibration_floor: Input should be greater than or equal to 0.1",
        ),
        (
            {"CHURN_MONITOR__CALIBRATION_FLOOR": "0.3"},
            "calibration_floor (0.3) must be at most column_alarm (0.2)",
        ),
        # The same reason for a fixed alarm: under 0.1 it could never fire.
        (
            {"CHURN_MONITOR__FIXED_ALARMS": "seq_spend_per_txn_change=0.05"},
            "monitor.fixed_alarms.seq_spend_per_txn_change: Input should be greater than or "
            "equal to 0.1",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARMS": "seq_spend_per_txn_change 0.3"},
            "monitor.fixed_alarms: Value error, expected name=value pairs separated by commas, "
            "got 'seq_spend_per_txn_change 0.3'",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARMS": "a=0.3,a=0.5"},
            "monitor.fixed_alarms: Value error, 'a' is named twice",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARMS": '{"": 0.3}'},
            "monitor.fixed_alarms..[key]: String should have at least 1 character",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARM_MIN_VALUES": "0"},
            "monitor.fixed_alarm_min_values: Input should be greater than or equal to 1",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARMS": "seq_spend_per_txn_change=high"},
            "monitor.fixed_alarms.seq_spend_per_txn_change: Input should be a valid number",
        ),
        (
            {"CHURN_MONITOR__FIXED_ALARMS": '{"seq_spend_per_txn_change": 0.3'},
            "monitor.fixed_alarms: Value error, Expecting ',' delimiter",
        ),
    ],
)
def test_a_bad_sample_or_smoke_setting_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["monitor", "history"])
    assert result.exit_code == 2
    assert result.output.startswith("error: configuration field monitor")
    assert message in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "monitoring").exists()

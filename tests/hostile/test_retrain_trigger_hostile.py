"""An interrupted retraining submission leaves a record that lets the next monitor retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from churn.release.registry import open_registry
from churn.settings import MonitorConfig, RegistryConfig, Settings
from monitoring.trigger import TRIGGERS, maybe_retrain, run_name

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SUMMARY = {
    "decision": "drift",
    "model_version": "20261101T000000Z-0123abcd",
    "window": {"since": "2026-11-29T00:00:00+00:00", "until": "2026-11-30T00:00:00+00:00"},
    "report": "/tmp/report.html",
}


def test_ctrl_c_during_a_local_retrain_marks_the_attempt_failed_and_the_next_one_runs(
    tmp_path: Path,
) -> None:
    settings = Settings(
        registry=RegistryConfig(uri=str(tmp_path)), monitor=MonitorConfig(kfp_host="")
    )

    def interrupted(settings: Settings, name: str) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        maybe_retrain(SUMMARY, settings, submit=interrupted, now=T0)
    name = run_name("drift", SUMMARY)
    records = open_registry(settings.registry).read_records(TRIGGERS)
    assert records[f"{name}.failed-1.json"]["error"] == "KeyboardInterrupt"
    retry = maybe_retrain(
        SUMMARY, settings, submit=lambda s, n: "local-2", now=T0 + timedelta(minutes=1)
    )
    assert retry["action"] == "triggered" and retry["run_id"] == "local-2"

"""The drift monitor on bad windows and damaged logs: one line naming what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import MonitorError
from churn.settings import Settings
from monitoring.drift import history, read_current, resolve_window
from monitoring.store import Store

UNTIL = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_a_since_that_is_not_a_time_is_one_line_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["monitor", "drift", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "error: --since 'yesterday' is not an ISO 8601 time" in result.output


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(MonitorError, match=r"^the window is empty: --since 2026-11-30 13:00"):
        resolve_window(datetime(2026, 11, 30, 13), UNTIL, hours=1)


def test_a_damaged_log_file_is_one_line_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "log" / "date=2026-11-30"
    folder.mkdir(parents=True)
    (folder / "part-x.parquet").write_bytes(b"not parquet")
    window = resolve_window(None, UNTIL, hours=2)
    with pytest.raises(MonitorError, match=r"part-x\.parquet is unreadable"):
        read_current(Store(str(tmp_path / "log")), window, "v1", [])


def test_a_log_file_still_being_written_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "log" / "date=2026-11-30"
    folder.mkdir(parents=True)
    # FolderSink's temporary name while pq.write_table runs.
    (folder / ".part-y.parquet.tmp").write_bytes(b"half a file")
    window = resolve_window(None, UNTIL, hours=2)
    frame, seen = read_current(Store(str(tmp_path / "log")), window, "v1", [])
    assert seen == 0 and frame.empty


def _summary(hour: int) -> str:
    return json.dumps(
        {
            "created_at": f"2026-11-30T{hour:02d}:00:00+00:00",
            "model_version": "v1",
            "window": {"since": f"{hour - 1:02d}:00", "until": f"{hour:02d}:00"},
            "decision": "no_drift",
            "rows": {"current": 100},
            "drift_share": 0.0,
            "report_html": f"runs/{hour}/report.html",
            "summary_json": f"runs/{hour}/summary.json",
        }
    )


def test_history_of_the_latest_checks_reads_only_their_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "monitoring" / "runs"
    for hour in range(10, 14):
        (runs / f"20261130T{hour}0000000000Z-v1").mkdir(parents=True)
        (runs / f"20261130T{hour}0000000000Z-v1" / "summary.json").write_text(_summary(hour))
    # The oldest is damaged: only reading it would fail.
    (runs / "20261130T100000000000Z-v1" / "summary.json").write_text("{")
    records, earlier = history(Settings(home=tmp_path), last=2)
    assert [r["created_at"][11:13] for r in records] == ["12", "13"] and earlier == 2
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    listed = CliRunner().invoke(app, ["monitor", "history", "--last", "3"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "(1 earlier checks not shown: --last 0 shows every one)"
    assert [line[11:13] for line in lines[1:]] == ["11", "12", "13"]
    every = CliRunner().invoke(app, ["monitor", "history", "--last", "0"])
    assert every.exit_code != 0 and "is not valid JSON" in str(every.exception)


@pytest.mark.parametrize(
    ("text", "problem"),
    [('{"decision": "no_dr', "is not valid JSON"), ("[]", "is not a JSON object")],
)
def test_a_damaged_summary_makes_history_one_error_naming_it(
    tmp_path: Path, text: str, problem: str
) -> None:
    run = tmp_path / "monitoring" / "runs" / "20261130T120000000000Z-v1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(text)
    # churn.cli.run prints a MonitorError as one line (exit 2), as every ChurnError.
    with pytest.raises(MonitorError, match=f"20261130T120000000000Z-v1/summary.json {problem}"):
        history(Settings(home=tmp_path))

"""The README's data path on the real CDNOW log, through the `churn` command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app

CHURN = str(Path(sys.executable).parent / "churn")


@pytest.mark.slow
def test_cdnow_to_training_set_prints_counts_per_split(tmp_path):
    runner = CliRunner()
    env = {"CHURN_HOME": str(tmp_path / "home")}
    data = tmp_path / "cdnow.parquet"
    result = runner.invoke(app, ["data", "cdnow", "--out", str(data)], env=env)
    assert result.exit_code == 0, result.output
    assert "67591 transactions of 23570 customers, 1997-01-01 to 1998-06-30" in result.output

    result = runner.invoke(app, ["features", "build", "-t", str(data)], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "feature_repo" / "data" / "sources" / "sequences.parquet").is_file()

    result = runner.invoke(app, ["dataset", "build", "--out", str(tmp_path / "ds")], env=env)
    assert result.exit_code == 0, result.output
    counts = {
        m[0]: (int(m[1]), int(m[2]), int(m[3]))
        for m in re.findall(r"^(train|val|test)\s+(\d+)\s+(\d+)\s+(\d+)", result.output, re.M)
    }
    assert set(counts) == {"train", "val", "test"}
    for rows, positives, negatives in counts.values():
        assert rows == positives + negatives and positives > 0 and negatives > 0
    # Every CDNOW customer bought in Q1 1997, so the first training cutoff labels all of them.
    assert counts["train"][0] > 6 * 20_000
    assert counts["test"][0] < counts["val"][0]


def test_cli_errors_are_one_line_and_exit_non_zero(tmp_path):
    bad = tmp_path / "tx.txt"
    bad.write_text("x")
    result = subprocess.run(
        [CHURN, "features", "build", "-t", str(bad), "--repo", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "unsupported file type '.txt'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["data", "cdnow"],
        ["features", "build"],
        ["features", "materialize"],
        ["features", "get"],
        ["dataset", "build"],
    ],
)
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output

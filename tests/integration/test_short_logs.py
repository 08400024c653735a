"""A newcomer's first run on a short log: the generator's own 400-day output goes from the
command line through features to a training set, with the schedule fitted to the log."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.dataset.training_set import load_training_set


@pytest.mark.slow
def test_a_400_day_synthetic_log_builds_features_and_a_training_set(tmp_path, caplog):
    runner = CliRunner()
    data, repo, out = tmp_path / "X", tmp_path / "R", tmp_path / "D"
    args = ["--customers", "2000", "--days", "400", "--seed", "1", "--out", str(data)]
    result = runner.invoke(app, ["data", "synth", *args])
    assert result.exit_code == 0, result.output

    with caplog.at_level(logging.WARNING, logger="churn.data.cutoffs"):
        result = runner.invoke(
            app,
            [
                "features",
                "build",
                "-t",
                str(data / "transactions.parquet"),
                "--customers",
                str(data / "customers.parquet"),
                "--repo",
                str(repo),
            ],
        )
    assert result.exit_code == 0, result.output
    assert "1 of the 6 automatic training cutoffs (2021-12-11) would have no history" in caplog.text

    result = runner.invoke(app, ["dataset", "build", "--repo", str(repo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = load_training_set(out).meta
    assert meta["splits"]["train"]["cutoffs"] == [
        "2022-01-10",
        "2022-02-09",
        "2022-03-11",
        "2022-04-10",
        "2022-05-10",
    ]
    assert meta["splits"]["val"]["cutoffs"] == ["2022-08-08"]
    assert meta["splits"]["test"]["cutoffs"] == ["2022-11-06"]
    for split in meta["splits"].values():
        assert split["positives"] > 0 and split["negatives"] > 0

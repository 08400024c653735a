"""Hostile inputs to the batch-scoring pipeline: bad run arguments, dates, and a taken date.

The dated scores file is created only if absent, on a folder and on a real (moto) S3: a
different run's file is never replaced silently, a retry of the same run replaces its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import ChurnError, ContractError, OutputError, RegistryError
from churn.release.score_store import (
    RUN_KEY,
    publish_scores,
    resolve_scoring_date,
    score_into_registry,
    scores_uri,
)
from churn.settings import RegistryConfig

NOW = pd.Timestamp("2026-11-30 23:10", tz="UTC")


class RefusingClient:
    """A ``kfp.Client`` that records being built: a refused argument must come first."""

    built: ClassVar[int] = 0

    def __init__(self, host: str) -> None:
        RefusingClient.built += 1


def cli_error(*args: str) -> str:
    """The message the ``churn`` entry point prints as ``error: ...`` (exit 2) for a command."""
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, ChurnError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> type[RefusingClient]:
    RefusingClient.built = 0
    monkeypatch.setattr("kfp.Client", RefusingClient)
    monkeypatch.setenv("CHURN_REGISTRY__URI", "s3://models/churn")
    return RefusingClient


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "3"], "--epochs does not apply to the scoring pipeline"),
        (["--deploy-target", "none"], "--deploy-target does not apply to the scoring pipeline"),
        (["--date", "2026-11-23T05:00"], "argument date: .*not at midnight"),
        (["--date", "next monday"], "argument date: .*is not a date"),
        (["--overwrite", "maybe"], "argument overwrite"),
        (["--registry-uri", "/tmp/models"], "registry '/tmp/models' is a folder"),
    ],
)
def test_a_bad_scoring_argument_is_one_line_before_the_cluster_is_contacted(
    no_cluster: type[RefusingClient], args: list[str], message: str
) -> None:
    for command in (
        ["pipeline", "schedule", "--host", "http://kfp:8080", "--cron", "0 6 * * 1"],
        ["pipeline", "submit", "--host", "http://kfp:8080", "--run-name", "r"],
    ):
        assert re.search(message, cli_error(*command, "--pipeline", "scoring", *args))
    assert no_cluster.built == 0


def test_scoring_options_are_refused_for_the_training_pipeline(
    no_cluster: type[RefusingClient],
) -> None:
    schedule = ["pipeline", "schedule", "--host", "http://kfp:8080", "--cron", "0 3 * * 1"]
    message = cli_error(*schedule, "--date", "2026-11-23")
    assert "--date does not apply to the training pipeline" in message
    assert no_cluster.built == 0


def test_an_unknown_pipeline_and_a_bad_cron_are_one_line_errors(
    no_cluster: type[RefusingClient],
) -> None:
    schedule = ["pipeline", "schedule", "--host", "http://kfp:8080", "--cron"]
    assert "'scores' is not a pipeline" in cli_error(*schedule, "0 6 * * 1", "--pipeline", "scores")
    assert "must have 5 fields" in cli_error(*schedule, "mondays", "--pipeline", "scoring")
    assert no_cluster.built == 0


def test_the_scoring_date_is_the_given_one_else_the_runs_scheduled_or_created_day() -> None:
    assert resolve_scoring_date("2026-11-23", ["2026-11-30T06:00:00Z"], NOW) == "2026-11-23"
    assert resolve_scoring_date("", ["2026-11-30T06:00:00Z", ""], NOW) == "2026-11-30"
    assert resolve_scoring_date("", ["", "2026-11-29T23:59:59+00:00"], NOW) == "2026-11-29"
    # A time zone other than UTC still names the UTC day.
    assert resolve_scoring_date("", ["2026-11-30T01:00:00+02:00"], NOW) == "2026-11-29"
    # Unresolved placeholders (a run that does not say when it is): the clock's day.
    unresolved = ["{{$.pipeline_job_schedule_time_utc}}", "{{$.pipeline_job_create_time_utc}}"]
    assert resolve_scoring_date("", unresolved, NOW) == "2026-11-30"


def test_a_malformed_date_or_run_time_is_refused_by_name() -> None:
    with pytest.raises(ContractError, match="date '2026-11-23T05:00' is not at midnight"):
        resolve_scoring_date("2026-11-23T05:00", [], NOW)
    with pytest.raises(ContractError, match="date 'soon' is not a date"):
        resolve_scoring_date("soon", [], NOW)
    with pytest.raises(ContractError, match="run time 'yesterday' is not a timestamp"):
        resolve_scoring_date("", ["yesterday"], NOW)


def scores_file(path: Path, run_id: str, rows: int) -> Path:
    table = pa.table({"customer_id": [str(i) for i in range(rows)]})
    pq.write_table(table.replace_schema_metadata({RUN_KEY: run_id}), path)
    return path


def test_a_folder_registry_gets_the_dated_file_once_per_run(tmp_path: Path) -> None:
    registry = RegistryConfig(uri=str(tmp_path / "registry"))
    first = scores_file(tmp_path / "a.parquet", "run-a", 3)
    uri = publish_scores(first, registry, "2026-11-30", "run-a")
    dest = Path(uri)
    assert dest == tmp_path / "registry" / "scores" / "date=2026-11-30" / "scores.parquet"
    assert dest.read_bytes() == first.read_bytes()

    other = scores_file(tmp_path / "b.parquet", "run-b", 5)
    with pytest.raises(OutputError, match="already holds the scores of run run-a"):
        publish_scores(other, registry, "2026-11-30", "run-b")
    assert dest.read_bytes() == first.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["scores.parquet"]

    # The same run (a retried step) replaces its own file; another replaces it only on purpose.
    retried = scores_file(tmp_path / "a2.parquet", "run-a", 4)
    publish_scores(retried, registry, "2026-11-30", "run-a")
    assert pq.read_metadata(dest).num_rows == 4
    publish_scores(other, registry, "2026-11-30", "run-b", overwrite=True)
    assert pq.read_metadata(dest).num_rows == 5
    # Another date is another file.
    publish_scores(first, registry, "2026-12-07", "run-c")
    assert Path(scores_uri(registry.uri, "2026-12-07")).is_file()


def test_a_taken_date_fails_before_any_scoring_work(tmp_path: Path) -> None:
    registry = RegistryConfig(uri=str(tmp_path / "registry"))
    publish_scores(scores_file(tmp_path / "a.parquet", "run-a", 3), registry, "2026-11-30", "run-a")
    # The registry has no champion: reaching the model would fail with another message.
    with pytest.raises(OutputError, match="already holds the scores of run run-a"):
        score_into_registry(tmp_path / "no_repo", registry, "2026-11-30", "", "run-b")
    with pytest.raises(RegistryError, match="no champion"):
        score_into_registry(tmp_path / "no_repo", registry, "2026-12-07", "", "run-b")


def test_a_file_that_is_not_scores_at_the_dated_path_is_refused_not_replaced(
    tmp_path: Path,
) -> None:
    registry = RegistryConfig(uri=str(tmp_path / "registry"))
    dest = Path(scores_uri(registry.uri, "2026-11-30"))
    dest.parent.mkdir(parents=True)
    dest.write_text("someone's notes")
    with pytest.raises(OutputError, match="exists but is not a scores file"):
        score_into_registry(tmp_path / "no_repo", registry, "2026-11-30", "", "run-b")
    assert dest.read_text() == "someone's notes"


def test_an_s3_registry_gets_the_dated_object_once_per_run(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    registry = RegistryConfig(uri=f"s3://{s3_bucket}/models", endpoint_url=s3_endpoint)
    first = scores_file(tmp_path / "a.parquet", "run-a", 3)
    uri = publish_scores(first, registry, "2026-11-30", "run-a")
    assert uri == f"s3://{s3_bucket}/models/scores/date=2026-11-30/scores.parquet"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = "models/scores/date=2026-11-30/scores.parquet"

    def stored() -> tuple[bytes, dict]:
        obj = s3.get_object(Bucket=s3_bucket, Key=key)
        return obj["Body"].read(), obj["Metadata"]

    assert stored() == (first.read_bytes(), {RUN_KEY: "run-a"})
    other = scores_file(tmp_path / "b.parquet", "run-b", 5)
    with pytest.raises(OutputError, match="already holds the scores of run run-a"):
        publish_scores(other, registry, "2026-11-30", "run-b")
    assert stored()[0] == first.read_bytes()
    retried = scores_file(tmp_path / "a2.parquet", "run-a", 4)
    publish_scores(retried, registry, "2026-11-30", "run-a")
    assert stored()[0] == retried.read_bytes()
    publish_scores(other, registry, "2026-11-30", "run-b", overwrite=True)
    assert stored() == (other.read_bytes(), {RUN_KEY: "run-b"})

"""The compiled batch-scoring pipeline, its recurring run, and the CLI's per-pipeline options."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import PipelineError
from churn.settings import PipelineConfig, Settings
from pipelines.arguments import ScoringArguments
from pipelines.catalog import check_overrides
from pipelines.cluster import compile_pipeline, schedule, submit

CPU_IMAGE = "registry.example.com/churn:test"
GPU_IMAGE = "registry.example.com/churn-gpu:test"


def cluster_settings() -> Settings:
    settings = Settings()
    settings.pipeline = PipelineConfig(
        image=CPU_IMAGE,
        gpu_image=GPU_IMAGE,
        cpu_request="500m",
        memory_request="1Gi",
        s3_secret_name="churn-s3",
    )
    settings.registry.uri = "s3://models/churn"
    settings.registry.endpoint_url = "http://minio.storage:9000"
    return settings


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("compiled") / "scoring.yaml"
    compile_pipeline(out, cluster_settings(), "scoring")
    pipeline, platform = list(yaml.safe_load_all(out.read_text()))
    return pipeline, platform


def test_the_scoring_pipeline_has_its_three_steps_on_the_cpu_image(
    spec: tuple[dict, dict],
) -> None:
    executors = spec[0]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-scoring-date", "exec-build-features", "exec-score"}
    for body in executors.values():
        assert body["container"]["image"] == CPU_IMAGE
        assert body["container"]["resources"]["cpuRequest"] == 0.5
        # The image holds kfp and churn: a pod never reaches a package index at start.
        assert "pip install" not in " ".join(body["container"]["command"])
    assert spec[0]["pipelineInfo"]["name"] == "churn-scoring"


def test_its_parameters_are_the_scoring_arguments_with_the_settings_defaults(
    spec: tuple[dict, dict],
) -> None:
    params = spec[0]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(ScoringArguments.model_fields)
    assert params["date"]["defaultValue"] == ""
    assert params["model_version"]["defaultValue"] == ""
    assert params["overwrite"]["defaultValue"] is False
    assert params["registry"]["defaultValue"]["uri"] == "s3://models/churn"
    assert params["registry"]["defaultValue"]["endpoint_url"] == "http://minio.storage:9000"
    assert "horizon_days" not in params["features"]["defaultValue"]


def test_an_empty_date_falls_back_to_the_runs_scheduled_then_creation_time(
    spec: tuple[dict, dict],
) -> None:
    inputs = spec[0]["root"]["dag"]["tasks"]["scoring-date"]["inputs"]["parameters"]
    assert inputs["date"] == {"componentInputParameter": "date"}
    assert inputs["scheduled_time"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_schedule_time_utc}}"
    )
    assert inputs["created_time"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_create_time_utc}}"
    )


def test_features_are_snapshotted_at_the_resolved_date_and_scored_with_the_run_id(
    spec: tuple[dict, dict],
) -> None:
    tasks = spec[0]["root"]["dag"]["tasks"]
    cutoffs = tasks["build-features"]["inputs"]["parameters"]["cutoffs"]
    assert cutoffs["taskOutputParameter"]["producerTask"] == "scoring-date"
    score = tasks["score"]["inputs"]
    assert score["parameters"]["date"]["taskOutputParameter"]["producerTask"] == "scoring-date"
    assert score["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert score["artifacts"]["feature_repo"]["taskOutputArtifact"]["producerTask"] == (
        "build-features"
    )


def test_the_date_and_the_score_are_never_answered_from_a_cache(spec: tuple[dict, dict]) -> None:
    tasks = spec[0]["root"]["dag"]["tasks"]
    assert tasks["scoring-date"]["cachingOptions"] == {}
    assert tasks["score"]["cachingOptions"] == {}
    assert tasks["build-features"]["cachingOptions"] == {"enableCache": True}


def test_steps_that_touch_s3_get_the_credentials_from_the_secret(
    spec: tuple[dict, dict],
) -> None:
    executors = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-build-features", "exec-score"}
    for body in executors.values():
        assert body["secretAsEnv"][0]["secretName"] == "churn-s3"


class FakeClient:
    """Records what schedule() and submit() ask of ``kfp.Client``."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, host: str) -> None:
        self.calls.append(("init", {"host": host}))

    def create_experiment(self, name: str) -> object:
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs: object) -> object:
        package = next(yaml.safe_load_all(Path(str(kwargs["pipeline_package_path"])).read_text()))
        self.calls.append(("recurring", {**kwargs, "pipeline": package["pipelineInfo"]["name"]}))
        return SimpleNamespace(recurring_run_id="job-7")

    def create_run_from_pipeline_package(self, path: str, **kwargs: object) -> object:
        package = next(yaml.safe_load_all(Path(path).read_text()))
        self.calls.append(("run", {**kwargs, "pipeline": package["pipelineInfo"]["name"]}))
        return SimpleNamespace(run_id="run-7")


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.calls = []
    monkeypatch.setattr("kfp.Client", FakeClient)
    return FakeClient


def test_scheduling_scoring_creates_a_recurring_run_of_the_scoring_pipeline(
    fake_client: type[FakeClient],
) -> None:
    job = schedule(
        "http://kfp:8080",
        "0 6 * * 1",
        cluster_settings(),
        "churn",
        "weekly-scores",
        {"data": "s3://logs/transactions.parquet", "model_version": "v7"},
        pipeline="scoring",
    )
    assert job == "job-7"
    kind, kwargs = fake_client.calls[-1]
    assert kind == "recurring"
    assert kwargs["pipeline"] == "churn-scoring"
    # KFP's cron has six fields, seconds first.
    assert kwargs["cron_expression"] == "0 0 6 * * 1"
    assert kwargs["max_concurrency"] == 1 and kwargs["no_catchup"] is True
    # No date: each run scores the day it is scheduled for.
    assert kwargs["params"] == {"data": "s3://logs/transactions.parquet", "model_version": "v7"}


def test_the_cli_schedules_scoring_with_its_own_options(
    fake_client: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURN_REGISTRY__URI", "s3://models/churn")
    result = CliRunner().invoke(
        app,
        [
            "pipeline", "schedule", "--host", "http://kfp:8080", "--cron", "0 6 * * 1",
            "--pipeline", "scoring",
            "--data", "s3://logs/t.parquet", "--model-version", "v7", "--overwrite", "true",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scheduled churn-scoring (job-7)" in result.output
    kwargs = fake_client.calls[-1][1]
    assert kwargs["job_name"] == "churn-scoring"
    assert kwargs["params"] == {
        "data": "s3://logs/t.parquet",
        "model_version": "v7",
        "overwrite": True,
    }


def test_submitting_scoring_for_a_given_date_starts_one_run(
    fake_client: type[FakeClient],
) -> None:
    run = submit(
        "http://kfp:8080",
        cluster_settings(),
        "churn",
        "backfill",
        {"date": "2026-11-23"},
        pipeline="scoring",
    )
    assert run == "run-7"
    assert fake_client.calls[-1][1]["arguments"] == {"date": "2026-11-23"}
    assert fake_client.calls[-1][1]["pipeline"] == "churn-scoring"


def test_the_training_schedule_is_unchanged(fake_client: type[FakeClient]) -> None:
    schedule("http://kfp:8080", "0 3 * * 1", cluster_settings(), "churn", "w", {"epochs": 3})
    assert fake_client.calls[-1][1]["pipeline"] == "churn-training"
    assert fake_client.calls[-1][1]["params"] == {"epochs": 3}


def test_options_of_another_pipeline_are_refused_by_name() -> None:
    with pytest.raises(PipelineError, match=r"--epochs does not apply to the scoring pipeline"):
        check_overrides("scoring", {"epochs": 3})
    with pytest.raises(PipelineError, match=r"--date, --model-version does not apply to the tr"):
        check_overrides("training", {"date": "2026-11-23", "model_version": "v1"})
    check_overrides("scoring", {"data": "synth", "registry": {"uri": "s3://m"}})


def test_host_cron_and_run_name_are_the_options_the_readme_names(
    fake_client: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # They were positional arguments: the generated options lost the commands' own
    # Annotated[..., typer.Option("--host")] metadata, so `--host URL` was "No such option".
    monkeypatch.setenv("CHURN_REGISTRY__URI", "s3://models/churn")
    result = CliRunner().invoke(
        app,
        ["pipeline", "submit", "--host", "http://kfp:8080", "--run-name", "nightly",
         "--epochs", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake_client.calls[-1][1]["run_name"] == "nightly"
    assert fake_client.calls[-1][1]["arguments"] == {"epochs": 2}
    result = CliRunner().invoke(
        app, ["pipeline", "schedule", "--cron", "0 3 * * 1", "--host", "http://kfp:8080"]
    )
    assert result.exit_code == 0, result.output
    assert fake_client.calls[-1][1]["job_name"] == "churn-retrain"

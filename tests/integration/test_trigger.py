"""The retraining trigger starts at most one run per cause, on a folder registry and on S3."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

import monitoring.trigger as trigger
from churn.errors import PipelineError, RegistryError
from churn.release.registry import open_registry
from churn.settings import MonitorConfig, RegistryConfig, Settings, load_settings
from monitoring.trigger import TRIGGERS, maybe_retrain, run_name

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
HOST = "http://kfp.invalid:8888"


def summary(since: str = "2026-11-29T00:00:00+00:00", until: str = "2026-11-30T00:00:00+00:00"):
    return {
        "decision": "drift",
        "model_version": "20261101T000000Z-0123abcd",
        "window": {"since": since, "until": until},
        "report": "s3://monitoring/reports/r1.html",
        "drifted_columns": ["spend_mean"],
    }


class FakeClient:
    """``kfp.Client`` answering list_runs from ``runs`` and recording create_run calls."""

    runs: ClassVar[list[SimpleNamespace]] = []
    filters: ClassVar[list[str]] = []
    created: ClassVar[list[dict]] = []
    namespaces: ClassVar[list[str]] = []

    def __init__(self, host: str, namespace: str = "kubeflow") -> None:
        self.host = host
        self.namespaces.append(namespace)

    def list_runs(self, page_token: str = "", page_size: int = 10, filter: str = "") -> object:
        self.filters.append(filter)
        return SimpleNamespace(runs=list(self.runs), next_page_token="")

    def create_run_from_pipeline_package(self, path: str, **kwargs: object) -> object:
        self.created.append(kwargs)
        return SimpleNamespace(run_id=f"kfp-run-{len(self.created)}")


@pytest.fixture
def fake_kfp(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.runs, FakeClient.filters, FakeClient.created = [], [], []
    FakeClient.namespaces = []
    monkeypatch.setattr("kfp.Client", FakeClient)
    return FakeClient


def settings_for(registry_uri: str, endpoint: str | None = None, host: str = HOST) -> Settings:
    return Settings(
        registry=RegistryConfig(uri=registry_uri, endpoint_url=endpoint),
        monitor=MonitorConfig(kfp_host=host, retrain_cooldown_hours=24),
    )


class Submissions:
    """A ``submit`` stand-in: counts calls, takes a moment like a real submission."""

    def __init__(self, error: Exception | None = None) -> None:
        self.names: list[str] = []
        self.error = error
        self.lock = threading.Lock()

    def __call__(self, settings: Settings, name: str) -> str:
        time.sleep(0.2)
        if self.error is not None:
            raise self.error
        with self.lock:
            self.names.append(name)
            return f"run-{len(self.names)}"


def race(settings: Settings, monkeypatch: pytest.MonkeyPatch, monitors: int = 4) -> list[dict]:
    """Starts ``monitors`` triggers together, each having read the records before any claims."""
    barrier = threading.Barrier(monitors)
    real_open = trigger.open_registry

    def open_synchronised(cfg: RegistryConfig):
        registry = real_open(cfg)
        read = registry.read_records

        def read_then_wait(folder: str) -> dict[str, dict]:
            records = read(folder)
            barrier.wait(timeout=30)
            return records

        registry.read_records = read_then_wait  # type: ignore[method-assign]
        return registry

    monkeypatch.setattr(trigger, "open_registry", open_synchronised)
    submit = Submissions()
    results: list[dict] = []

    def monitor() -> None:
        results.append(maybe_retrain(summary(), settings, submit=submit, now=T0))

    threads = [threading.Thread(target=monitor) for _ in range(monitors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(submit.names) == 1, submit.names
    return results


def assert_one_triggered(results: list[dict]) -> None:
    triggered = [r for r in results if r["action"] == "triggered"]
    assert len(triggered) == 1, results
    losers = [r for r in results if r["action"] == "skipped"]
    assert len(losers) == len(results) - 1
    for loser in losers:
        assert loser["reason"].startswith("already triggered by triggers/"), loser


def test_monitors_started_together_on_a_folder_registry_trigger_exactly_one_run(
    tmp_path: Path, fake_kfp: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(str(tmp_path / "registry"))
    results = race(settings, monkeypatch)
    assert_one_triggered(results)
    records = open_registry(settings.registry).read_records(TRIGGERS)
    name = run_name("drift", summary())
    assert records[f"{name}.run.json"]["run_id"] == "run-1"
    claim = records[f"{name}.claim-1.json"]
    assert claim["report"] == "s3://monitoring/reports/r1.html"
    assert claim["cause"] == "drift"
    assert claim["drifted_columns"] == ["spend_mean"]


def test_monitors_started_together_on_s3_trigger_exactly_one_run(
    s3_bucket: str, s3_endpoint: str, fake_kfp: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(f"s3://{s3_bucket}/team", s3_endpoint)
    results = race(settings, monkeypatch)
    assert_one_triggered(results)
    name = run_name("drift", summary())
    records = open_registry(settings.registry).read_records(TRIGGERS)
    assert sorted(records) == [f"{name}.claim-1.json", f"{name}.run.json"]


def test_the_default_submission_starts_a_kfp_run_named_after_the_cause(
    s3_bucket: str, s3_endpoint: str, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(f"s3://{s3_bucket}/team", s3_endpoint)
    settings.monitor.retrain_data = "s3://data/raw"
    result = maybe_retrain(summary(), settings, now=T0)
    assert result["action"] == "triggered"
    assert result["run_id"] == "kfp-run-1"
    [created] = fake_kfp.created
    assert created["run_name"] == result["run_name"]
    assert created["experiment_name"] == "churn-retrain"
    assert created["arguments"] == {"data": "s3://data/raw"}
    assert f'"stringValue": "{result["run_name"]}"' in fake_kfp.filters[0]


def test_multi_user_kfp_is_asked_and_given_the_run_in_the_profile_namespace(
    s3_bucket: str, s3_endpoint: str, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(f"s3://{s3_bucket}/team", s3_endpoint)
    settings.monitor.kfp_namespace = "team-a"
    assert maybe_retrain(summary(), settings, now=T0)["action"] == "triggered"
    assert fake_kfp.namespaces == ["team-a", "team-a"]


def test_the_run_name_is_deterministic_and_fits_kfp() -> None:
    name = run_name("drift", summary())
    assert name == "churn-retrain-drift-20261101t000000z-0123abcd-20261129t000000z-20261130t000000z"
    assert run_name("drift", summary(until="2026-11-30T01:00:00+01:00")) == name
    long = run_name("performance", {**summary(), "model_version": "v" * 200})
    assert len(long) <= 120
    assert long != run_name("performance", {**summary(), "model_version": "v" * 199})


@pytest.mark.parametrize("state", ["PENDING", "RUNNING"])
def test_a_pending_or_running_run_of_the_same_name_skips_the_trigger(
    tmp_path: Path, fake_kfp: type[FakeClient], state: str
) -> None:
    fake_kfp.runs = [SimpleNamespace(run_id="r-7", state=state)]
    submit = Submissions()
    result = maybe_retrain(summary(), settings_for(str(tmp_path)), submit=submit, now=T0)
    assert result["action"] == "skipped"
    assert "run r-7" in result["reason"] and "pending or running" in result["reason"]
    assert submit.names == []


def test_a_finished_run_of_the_same_name_does_not_block_a_first_trigger(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    fake_kfp.runs = [SimpleNamespace(run_id="r-7", state="FAILED")]
    submit = Submissions()
    result = maybe_retrain(summary(), settings_for(str(tmp_path)), submit=submit, now=T0)
    assert result["action"] == "triggered"


def test_a_trigger_within_the_cooldown_is_skipped_and_one_after_it_runs(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    submit = Submissions()
    assert maybe_retrain(summary(), settings, submit=submit, now=T0)["action"] == "triggered"
    later = summary(since="2026-11-30T00:00:00+00:00", until="2026-12-01T00:00:00+00:00")
    soon = maybe_retrain(later, settings, submit=submit, now=T0 + timedelta(hours=23))
    assert soon["action"] == "skipped"
    assert soon["reason"].startswith("cooldown: the last retrain was triggered at 2026-11-30T06")
    after = maybe_retrain(later, settings, submit=submit, now=T0 + timedelta(hours=25))
    assert after["action"] == "triggered"
    assert len(submit.names) == 2


def test_the_same_cause_is_never_triggered_twice_even_after_the_cooldown(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    submit = Submissions()
    maybe_retrain(summary(), settings, submit=submit, now=T0)
    again = maybe_retrain(summary(), settings, submit=submit, now=T0 + timedelta(days=3))
    assert again["action"] == "skipped"
    assert again["reason"].endswith(".run.json")
    assert len(submit.names) == 1


@pytest.mark.parametrize("decision", ["no_drift", "insufficient_data"])
def test_no_drift_triggers_nothing(tmp_path: Path, decision: str) -> None:
    submit = Submissions()
    settings = settings_for(str(tmp_path))
    result = maybe_retrain({**summary(), "decision": decision}, settings, submit=submit, now=T0)
    assert result["action"] == "skipped" and decision in result["reason"]
    assert submit.names == []
    assert open_registry(settings.registry).read_records(TRIGGERS) == {}


def test_a_performance_alarm_retrains_and_a_healthy_or_thin_check_does_not(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    submit = Submissions()
    settings = settings_for(str(tmp_path))
    for decision in ("healthy", "insufficient_data", "drift"):
        quiet = {**summary(), "decision": decision}
        result = maybe_retrain(quiet, settings, cause="performance", submit=submit)
        assert result["action"] == "skipped" and "not degraded" in result["reason"]
    assert submit.names == []
    alarm = {**summary(), "decision": "degraded"}
    result = maybe_retrain(alarm, settings, cause="performance", submit=submit)
    assert result["action"] == "triggered"
    assert result["run_name"].startswith("churn-retrain-performance-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_kfp_host_is_a_one_line_error_and_claims_nothing(tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(str(tmp_path), host=host)
    submit = Submissions()
    with pytest.raises(PipelineError) as err:
        maybe_retrain(summary(), settings, submit=submit, now=T0)
    message = str(err.value)
    assert "\n" not in message and f"cannot reach Kubeflow Pipelines at {host}" in message
    assert submit.names == []
    assert open_registry(settings.registry).read_records(TRIGGERS) == {}


def test_a_failed_submission_is_marked_so_the_next_monitor_retries(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    failing = Submissions(PipelineError("Kubeflow Pipelines refused the run: 503"))
    with pytest.raises(PipelineError, match="failed to start: Kubeflow Pipelines refused"):
        maybe_retrain(summary(), settings, submit=failing, now=T0)
    name = run_name("drift", summary())
    records = open_registry(settings.registry).read_records(TRIGGERS)
    assert "503" in records[f"{name}.failed-1.json"]["error"]
    submit = Submissions()
    retry = maybe_retrain(summary(), settings, submit=submit, now=T0 + timedelta(minutes=5))
    assert retry["action"] == "triggered" and submit.names == [name]
    records = open_registry(settings.registry).read_records(TRIGGERS)
    assert records[f"{name}.run.json"]["attempt"] == 2


def test_a_retry_adopts_a_run_that_reached_kfp_before_its_submission_failed(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    with pytest.raises(PipelineError):
        maybe_retrain(summary(), settings, submit=Submissions(TimeoutError("read")), now=T0)
    fake_kfp.runs = [SimpleNamespace(run_id="r-9", state="SUCCEEDED")]
    submit = Submissions()
    retry = maybe_retrain(summary(), settings, submit=submit, now=T0 + timedelta(minutes=5))
    assert retry["action"] == "skipped" and "run r-9" in retry["reason"]
    assert submit.names == []


def claim_left_by_a_dead_monitor(settings: Settings, age: timedelta) -> str:
    name = run_name("drift", summary())
    claimed = {"claimed_at": (T0 - age).isoformat(), "attempt": 1, "run_name": name}
    registry = open_registry(settings.registry)
    assert registry.create_record(TRIGGERS, f"{name}.claim-1.json", claimed)
    return name


def test_a_fresh_claim_without_a_run_id_blocks_other_monitors(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    claim_left_by_a_dead_monitor(settings, timedelta(minutes=5))
    submit = Submissions()
    result = maybe_retrain(summary(), settings, submit=submit, now=T0)
    assert result["action"] == "skipped" and "no run id yet" in result["reason"]
    assert submit.names == []


def test_a_stale_claim_is_retried_when_kfp_has_no_run_of_its_name(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    name = claim_left_by_a_dead_monitor(settings, timedelta(hours=2))
    submit = Submissions()
    result = maybe_retrain(summary(), settings, submit=submit, now=T0)
    assert result["action"] == "triggered", result
    assert submit.names == [name]


def test_a_stale_claim_whose_run_reached_kfp_is_not_submitted_again(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    claim_left_by_a_dead_monitor(settings, timedelta(hours=2))
    fake_kfp.runs = [SimpleNamespace(run_id="r-3", state="SUCCEEDED")]
    submit = Submissions()
    result = maybe_retrain(summary(), settings, submit=submit, now=T0)
    assert result["action"] == "skipped" and "run r-3" in result["reason"]
    assert submit.names == []


def test_a_summary_without_a_window_is_a_one_line_error(tmp_path: Path) -> None:
    broken = {**summary(), "window": {"since": "2026-11-29"}}
    with pytest.raises(
        PipelineError, match=r"^the monitor summary has no window \{since, until\}$"
    ):
        maybe_retrain(broken, settings_for(str(tmp_path)), submit=Submissions())


@pytest.mark.slow
def test_a_local_retrain_runs_the_pipeline_and_registers_a_new_version(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "CHURN_HOME": str(tmp_path / "home"),
            "CHURN_REGISTRY__URI": str(tmp_path / "registry"),
            "CHURN_FEATURES__SEQ_LEN": "12",
            "CHURN_FEATURES__HORIZON_DAYS": "30",
            "CHURN_FEATURES__CUTOFF_STEP_DAYS": "15",
            "CHURN_FEATURES__N_TRAIN_CUTOFFS": "3",
            "CHURN_MODEL__HIDDEN": "8",
            "CHURN_MODEL__DILATIONS": "1,2",
            "CHURN_TRAIN__BATCH_SIZE": "256",
            "CHURN_TRAIN__EPOCHS": "1",
            "CHURN_EVAL__AUC_THRESHOLD": "0",
            "CHURN_MONITOR__RETRAIN_DATA": "synth:customers=800,days=240,seed=1",
        }
    )
    assert settings.monitor.kfp_host == ""
    registry = open_registry(settings.registry)
    assert registry.list_versions() == []
    result = maybe_retrain(summary(), settings)
    assert result["action"] == "triggered"
    [version] = registry.list_versions()
    assert version.complete
    assert registry.champion() is not None and registry.champion().version == version.version
    run_dirs = list((tmp_path / "home" / "pipeline_root").iterdir())
    assert [d.name for d in run_dirs] == [result["run_id"]]


def test_a_damaged_claim_record_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    settings = settings_for(str(tmp_path))
    name = run_name("drift", summary())
    open_registry(settings.registry).create_record(TRIGGERS, f"{name}.claim-1.json", {"x": 1})
    with pytest.raises(RegistryError, match=rf"^triggers/{name}.claim-1.json has no valid"):
        maybe_retrain(summary(), settings, submit=Submissions(), now=T0)


def test_a_claim_of_a_longer_name_is_not_taken_for_this_cause(
    tmp_path: Path, fake_kfp: type[FakeClient]
) -> None:
    settings = settings_for(str(tmp_path))
    name = run_name("drift", summary())
    other = {"claimed_at": T0.isoformat(), "attempt": 1}
    open_registry(settings.registry).create_record(TRIGGERS, f"{name}-x.claim-1.json", other)
    settings.monitor.retrain_cooldown_hours = 0
    result = maybe_retrain(summary(), settings, submit=Submissions(), now=T0)
    assert result["action"] == "triggered", result

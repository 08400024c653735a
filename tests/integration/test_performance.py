"""Realised performance on delayed labels: real `churn score` files, a folder registry, a real
feature repository's log and real Evidently.

Two module-wide worlds from the synthetic generator, identical but for the drift: the
champion is trained on cutoffs before day 200 of a 360-day log; purchase rates halve from day
230 on (``rate`` drift) in one of them. `churn score` scores every active customer at days 230
and 240, whose 30-day horizons lie inside the log, and at day 340, whose horizon does not.
Measured with these seeds: realised ROC-AUC about 0.75 without drift and 0.70 with it, so
the floor here is 0.72.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import monitoring.trigger as trigger
from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.features.build import build_features
from churn.model import metrics
from churn.model.train import train
from churn.release.registry import LocalRegistry, open_registry
from churn.settings import FeatureConfig, ModelConfig, Settings, TrainConfig
from monitoring.performance import check_performance, scores_uri
from monitoring.trigger import TRIGGERS, maybe_retrain, run_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHURN = [sys.executable, "-c", "from churn.cli import run; run()"]
START = pd.Timestamp("2022-01-01", tz="UTC")
DRIFT_DAY = 230
TRAIN_DAYS = (70, 84, 98, 112, 126, 160)
MATURED_DAYS = (230, 240)
PENDING_DAY = 340
FLOOR = 0.72
FEATURES = FeatureConfig(
    bin_days=7, seq_len=8, horizon_days=30, cutoff_step_days=14, n_train_cutoffs=3
)


def day(k: int) -> str:
    return (START + pd.Timedelta(days=k)).date().isoformat()


SINCE = day(MATURED_DAYS[0])


@dataclass
class World:
    root: Path
    version: str

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CHURN_HOME": str(self.root / "home"),
            "CHURN_REGISTRY__URI": str(self.root / "registry"),
            "CHURN_MONITOR__SCORES_URI": str(self.root / "scores"),
            "CHURN_MONITOR__AUC_FLOOR": str(FLOOR),
        }

    def churn(self, *args: str) -> subprocess.CompletedProcess:
        if args[:2] == ("monitor", "performance"):
            args = (*args, "--repo", str(self.root / "repo"))
        return subprocess.run(
            [*CHURN, *args], env=self.env, capture_output=True, text=True, timeout=300
        )

    def settings(self, **monitor: object) -> Settings:
        return Settings(
            home=self.root / "home",
            registry={"uri": str(self.root / "registry")},
            monitor={"scores_uri": str(self.root / "scores"), "auc_floor": FLOOR, **monitor},
        )

    def check(self, **monitor: object) -> dict:
        return check_performance(
            self.settings(**monitor), str(self.root / "repo"), pd.Timestamp(SINCE).to_pydatetime()
        )

    def scores(self, k: int) -> pd.DataFrame:
        return pd.read_parquet(self.root / "scores" / f"date={day(k)}" / "part-0.parquet")


def build_world(root: Path, drift: str) -> World:
    """Log, feature repo, a champion trained before the drift, and its stored batch scores."""
    extra = {"drift": drift, "drift_start_day": DRIFT_DAY} if drift != "none" else {}
    cutoffs = [day(k) for k in (*TRAIN_DAYS, *MATURED_DAYS, PENDING_DAY)]
    generate(
        make_spec(2000, 360, seed=3, horizon_days=30, cutoffs=cutoffs[:-1], **extra),
        root / "synth",
    )
    build_features(
        root / "synth" / "transactions.parquet",
        root / "repo",
        FEATURES,
        customers=root / "synth" / "customers.parquet",
        cutoffs=cutoffs,
    )
    build_dataset(root / "repo", root / "dataset", horizon_days=30, cutoffs=cutoffs[:6])
    train(
        root / "dataset",
        root / "model",
        ModelConfig(hidden=8, dilations=[1, 2], windows=[1, 4, 13]),
        TrainConfig(epochs=5, batch_size=64, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    version = registry.publish(root / "model", {"roc_auc": 0.7}).version
    registry.promote(version)
    world = World(root, version)
    # The real `churn score`, one process per scoring date, into the dated partitions the
    # scoring pipeline writes.
    jobs = [
        subprocess.Popen(
            [
                *CHURN,
                "score",
                "--repo",
                str(root / "repo"),
                "--at",
                day(k),
                "--out",
                str(root / "scores" / f"date={day(k)}" / "part-0.parquet"),
            ],
            env=world.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (*MATURED_DAYS, PENDING_DAY)
    ]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    return world


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("stable"), "none")


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("drifted"), "rate")


def test_without_drift_the_realised_auc_stays_above_the_floor_and_nothing_is_triggered(
    stable: World,
) -> None:
    result = stable.churn("monitor", "performance", "--since", SINCE, "--retrain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("decision: healthy"), result.stdout
    assert "retrain: skipped: the decision is 'healthy', not degraded" in result.stdout
    summary = json.loads(Path(result.stdout.split("summary: ")[1].split("\n")[0]).read_text())
    assert summary["metrics"]["roc_auc"] >= FLOOR
    assert open_registry(stable.settings().registry).read_records(TRIGGERS) == {}
    prom = (stable.root / "home" / "monitoring" / "churn_performance.prom").read_text()
    assert f'churn_performance_roc_auc{{model_version="{stable.version}"}}' in prom
    assert 'churn_performance_decision{decision="healthy"' in prom
    history = stable.churn("monitor", "history")
    assert f"performance healthy  labelled={summary['rows']['labelled']}" in history.stdout


def test_scores_whose_horizon_is_past_the_log_are_left_out_and_counted(stable: World) -> None:
    summary = stable.check()
    pending = stable.scores(PENDING_DAY)
    matured = pd.concat([stable.scores(k) for k in MATURED_DAYS])
    rows = summary["rows"]
    assert rows["pending"] == (pending["status"] == "ok").sum() > 0
    assert rows["labelled"] + rows["unlabelled"] == (matured["status"] == "ok").sum()
    assert rows["labelled"] > 1000 and rows["duplicates"] == rows["other_versions"] == 0
    assert summary["window"]["until"] == summary["labels_observed_until"]
    assert summary["horizon_days"] == 30 and summary["churn_definition"] == {"name": "lapse"}


def test_evidently_figures_agree_with_the_offline_metrics_on_the_same_rows(
    stable: World,
) -> None:
    from churn.dataset.labels import label_cutoffs
    from churn.features.store import FeatureRepo

    summary = stable.check()
    repo = FeatureRepo(stable.root / "repo")
    labels = label_cutoffs(
        pd.read_parquet(repo.sources / "transactions.parquet"),
        [pd.Timestamp(day(k), tz="UTC") for k in MATURED_DAYS],
        30,
        56,
        pd.Timestamp(repo.spec["observed_until"]),
    )
    scores = pd.concat([stable.scores(k) for k in MATURED_DAYS])
    joined = scores.merge(
        labels.astype({"cutoff": "datetime64[ns, UTC]"}), on=["customer_id", "cutoff"]
    )
    y, s = joined["label"].to_numpy(), joined["score"].to_numpy()
    found = summary["metrics"]
    assert summary["rows"]["labelled"] == len(joined)
    assert found["roc_auc"] == pytest.approx(metrics.roc_auc(y, s), abs=1e-9)
    decided = joined["decision"].to_numpy()
    assert found["precision"] == pytest.approx((decided & (y == 1)).sum() / decided.sum())
    assert found["recall"] == pytest.approx((decided & (y == 1)).sum() / (y == 1).sum())
    assert found["pr_auc"] == pytest.approx(metrics.average_precision(y, s))
    assert sum(b["count"] for b in summary["calibration"]) == len(joined)
    report = Path(summary["report_html"]).read_bytes()
    assert report.lstrip().startswith(b"<!DOCTYPE html>")


def test_with_rate_drift_the_auc_falls_and_two_concurrent_checks_trigger_one_retraining(
    stable: World, drifted: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = drifted.settings(retrain_cooldown_hours=24)
    barrier = threading.Barrier(2)
    real_open = trigger.open_registry

    def open_synchronised(cfg: object):
        registry = real_open(cfg)
        read = registry.read_records

        def read_then_wait(folder: str) -> dict[str, dict]:
            records = read(folder)
            barrier.wait(timeout=120)  # both read the records before either claims
            return records

        registry.read_records = read_then_wait  # type: ignore[method-assign]
        return registry

    monkeypatch.setattr(trigger, "open_registry", open_synchronised)
    submitted: list[str] = []
    results: list[tuple[dict, dict]] = []

    def submit(cfg: Settings, name: str) -> str:
        submitted.append(name)
        return f"run-{len(submitted)}"

    def monitor() -> None:
        summary = drifted.check(retrain_cooldown_hours=24)
        results.append(
            (summary, maybe_retrain(summary, settings, cause="performance", submit=submit))
        )

    threads = [threading.Thread(target=monitor) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 2
    stable_auc = stable.check()["metrics"]["roc_auc"]
    for summary, _ in results:
        assert summary["decision"] == "degraded"
        assert summary["metrics"]["roc_auc"] < FLOOR < stable_auc
    actions = sorted(done["action"] for _, done in results)
    assert actions == ["skipped", "triggered"]
    assert len(submitted) == 1 and submitted[0].startswith("churn-retrain-performance-")
    assert submitted[0] != run_name("drift", results[0][0])
    records = open_registry(settings.registry).read_records(TRIGGERS)
    assert sorted(records) == [f"{submitted[0]}.claim-1.json", f"{submitted[0]}.run.json"]
    monkeypatch.setattr(trigger, "open_registry", real_open)
    again = maybe_retrain(results[0][0], settings, cause="performance", submit=submit)
    assert again["action"] == "skipped" and len(submitted) == 1


def test_too_few_labelled_scores_give_insufficient_data_and_no_alarm(drifted: World) -> None:
    summary = drifted.check(performance_min_rows=100_000)
    assert summary["decision"] == "insufficient_data"
    assert summary["metrics"] is None and summary["report_html"] is None
    done = maybe_retrain(summary, drifted.settings(), cause="performance", submit=lambda *a: "x")
    assert done["action"] == "skipped" and "not degraded" in done["reason"]
    assert np.isclose(summary["auc_floor"], FLOOR)


def test_scores_in_the_registry_bucket_give_the_same_figures_as_in_a_folder(
    stable: World, s3_endpoint: str, s3_bucket: str
) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for k in (*MATURED_DAYS, PENDING_DAY):
        key = f"scores/date={day(k)}/part-0.parquet"
        s3.upload_file(str(stable.root / key), s3_bucket, f"registry/{key}")
    settings = stable.settings(scores_uri=None, endpoint_url=s3_endpoint)
    settings.registry.uri = f"s3://{s3_bucket}/registry"
    assert scores_uri(settings) == f"s3://{s3_bucket}/registry/scores"
    local = stable.check()
    remote = check_performance(
        stable.settings(scores_uri=scores_uri(settings), endpoint_url=s3_endpoint),
        str(stable.root / "repo"),
        pd.Timestamp(SINCE).to_pydatetime(),
    )
    assert remote["scores_uri"] == f"s3://{s3_bucket}/registry/scores"
    assert remote["rows"] == local["rows"] and remote["metrics"] == local["metrics"]

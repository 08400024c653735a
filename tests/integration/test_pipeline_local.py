"""Real runs of the Kubeflow pipeline with kfp.local on a small synthetic log.

kfp.local reports SUCCESS even when it skips a branch whose condition it cannot evaluate
(it only logs a warning), so these tests check what each branch left behind: registry
versions, the champion pointer and the task outputs, not just the run status.

The first run trains and promotes; the later runs reuse its cached steps up to evaluation
(kfp.local caching) and differ only in the gate's inputs. A run on a real cluster is at the
end, marked ``cluster``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from churn.release.registry import Registry, open_registry
from churn.settings import FeatureConfig, ModelConfig, RegistryConfig, Settings, TrainConfig
from pipelines.cluster import submit
from pipelines.local import format_summary, run_local
from pipelines.smoke import smoke_customers

pytestmark = pytest.mark.slow

# About 800 customers over 240 days: one run trains in seconds, and both classes are present at
# every cutoff of a 30-day horizon.
DATA = "synth:customers=800,days=240,seed=1"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("churn-home")
    return Settings(
        home=home,
        features=FeatureConfig(
            bin_days=7, seq_len=12, horizon_days=30, cutoff_step_days=15, n_train_cutoffs=3
        ),
        model=ModelConfig(hidden=8, dilations=[1, 2], embedding_dim=2, head_hidden=8),
        train=TrainConfig(epochs=2, batch_size=256, patience=2),
        # Not the default split, to see the setting reach the register step.
        registry=RegistryConfig(uri=str(home / "registry"), reference_split="test"),
    )


@pytest.fixture(scope="module")
def registry(settings: Settings) -> Registry:
    return open_registry(settings.registry)


@pytest.fixture(scope="module")
def promoted_run(settings: Settings) -> dict:
    """A first run whose threshold any model passes, deployed to a local TorchServe.

    Its two-epoch, 8-wide CNN on 800 customers is significantly below logistic regression
    (0.7388 against 0.7664), so the gate's baseline rule (tests/unit/test_gate.py) is off here.
    """
    return run_local(
        settings,
        {
            "data": DATA,
            "auc_threshold": 0.0,
            "refuse_below_baseline": False,
            "deploy_target": "local",
        },
        enable_caching=True,
    )


def registry_state(registry: Registry) -> tuple[list[str], str | None]:
    champion = registry.champion()
    return [v.version for v in registry.list_versions()], champion.version if champion else None


def outputs_of(run_dir: str, name: str) -> list[Path]:
    return sorted(Path(run_dir).rglob(name))


def test_a_passing_candidate_is_registered_promoted_and_served(
    promoted_run: dict, registry: Registry, settings: Settings
) -> None:
    assert promoted_run["promoted"], promoted_run["reason"]
    assert "no champion yet" in promoted_run["reason"]

    # The register task really ran: its output exists and the registry holds what it says.
    (registration_file,) = outputs_of(promoted_run["run_dir"], "registration")
    registration = json.loads(registration_file.read_text())
    assert registration["version"] == promoted_run["version"]
    versions, champion = registry_state(registry)
    assert versions == [promoted_run["version"]]
    assert champion == promoted_run["version"]
    registry_root = Path(settings.registry.uri) / settings.registry.model_name
    assert (registry_root / "champion.json").is_file()
    version_dir = Path(promoted_run["version_uri"])
    assert version_dir == registry_root / "versions" / promoted_run["version"]
    assert (version_dir / "_COMPLETE").is_file()
    assert (version_dir / "model-store" / "churn.mar").is_file()

    # The drift reference summarises the split registry.reference_split names.
    (meta,) = [
        json.loads(m.read_text())
        for m in Path(promoted_run["run_dir"]).rglob("meta.json")
        if "splits" in json.loads(m.read_text())
    ]
    reference = pq.read_table(io.BytesIO(registry.reference(promoted_run["version"])))
    assert reference.num_rows == meta["splits"]["test"]["rows"] != meta["splits"]["train"]["rows"]

    published = json.loads((version_dir / "metrics.json").read_text())
    assert published["roc_auc"] == pytest.approx(promoted_run["roc_auc"]["cnn"])
    assert set(promoted_run["roc_auc"]) == {"cnn", *published["baselines"]}

    # The deploy task served the registered archive and answered one real request.
    deployment = promoted_run["deployment"]
    assert deployment["target"] == "local"
    assert deployment["version"] == promoted_run["version"]
    assert 0.0 <= deployment["prediction"]["churn_probability"] <= 1.0

    assert promoted_run["rejection"] is None
    assert outputs_of(promoted_run["run_dir"], "rejection") == []
    assert Path(promoted_run["report"]).read_text().lstrip().lower().startswith("<!doctype html")
    (html,) = outputs_of(promoted_run["run_dir"], "report")
    assert html.read_bytes() == Path(promoted_run["report"]).read_bytes()

    text = format_summary(promoted_run)
    assert "PROMOTED" in text and promoted_run["version"] in text and "report.html" in text


def test_the_run_ends_with_smoke_traffic_through_the_transformer_and_a_drift_check(
    promoted_run: dict, settings: Settings
) -> None:
    smoke = promoted_run["smoke"]
    deployment = promoted_run["deployment"]
    # The deploy step materialised the run's online store; the smoke asked it by id.
    expected = smoke_customers(deployment["feature_repo"], settings.monitor.smoke_customers)
    assert len(expected) == settings.monitor.smoke_customers
    assert smoke["customers"] == smoke["scored"] == len(expected)
    assert deployment["request_source"] == "online store"

    # The transformer's log holds exactly one record per smoke customer, of the champion.
    log = pq.read_table(smoke["log_uri"]).to_pandas()
    assert sorted(log["customer_id"]) == expected
    assert set(log["model_version"]) == {promoted_run["version"]}

    drift = smoke["drift"]
    summary_json = Path(drift["summary_json"])
    assert json.loads(summary_json.read_text()) == drift
    assert drift["rows"]["current"] == len(expected)
    assert drift["model_version"] == promoted_run["version"]
    # 200 rows are fewer than monitor.min_rows (500): no report, and no false alarm.
    assert drift["decision"] == "insufficient_data" and drift["report_html"] is None

    text = format_summary(promoted_run)
    assert f"drift summary: {summary_json}" in text
    assert "drift check: insufficient_data" in text
    assert f"{len(expected)} customers by id through the local transformer" in text


def test_a_candidate_below_the_threshold_is_not_registered(
    promoted_run: dict, registry: Registry, settings: Settings
) -> None:
    before = registry_state(registry)
    summary = run_local(settings, {"data": DATA, "auc_threshold": 0.999}, enable_caching=True)

    assert not summary["promoted"]
    assert summary["version"] is None
    assert registry_state(registry) == before
    # Same data and settings as the promoted run: the cached candidate is the same model.
    assert summary["roc_auc"] == promoted_run["roc_auc"]

    run_dir = summary["run_dir"]
    assert not (Path(run_dir) / "register").exists()
    assert outputs_of(run_dir, "registration") == []
    assert outputs_of(run_dir, "deployment") == []
    record = json.loads(Path(summary["rejection"]).read_text())
    assert record["promote"] is False
    assert record["threshold"] == 0.999
    assert "below the threshold 0.9990" in record["reason"]
    assert record["reason"] == summary["reason"]
    assert record["report"].endswith("report.html")


def test_a_candidate_no_better_than_the_champion_on_the_same_rows_is_not_promoted(
    promoted_run: dict, registry: Registry, settings: Settings
) -> None:
    # The champion is the candidate's own model, but it claims 0.9999 from another test split.
    # The gate re-scores it on this run's rows: an exact tie, which keeps the champion.
    model_dir = Path(promoted_run["version_uri"]) / "model"
    metrics = json.loads((Path(promoted_run["version_uri"]) / "metrics.json").read_text())
    seeded = registry.publish(model_dir, {**metrics, "roc_auc": 0.9999}, version="seeded-champion")
    registry.promote(seeded.version)
    before = registry_state(registry)

    args = {"data": DATA, "auc_threshold": 0.0, "refuse_below_baseline": False}
    summary = run_local(settings, args, enable_caching=True)

    assert not summary["promoted"]
    assert f"does not beat the champion's {summary['roc_auc']['cnn']:.4f}" in summary["reason"]
    assert "on this run's test split" in summary["reason"]
    assert registry_state(registry) == before
    assert before[1] == "seeded-champion"
    assert outputs_of(summary["run_dir"], "registration") == []
    record = json.loads(Path(summary["rejection"]).read_text())
    assert record["champion_version"] == "seeded-champion"
    assert record["champion_auc"] == summary["roc_auc"]["cnn"]


def test_a_candidate_with_another_input_spec_replaces_the_champion_only_when_the_run_says_so(
    promoted_run: dict, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    # A champion trained on another log, whose first channel is "orders": this run's requests
    # would break its clients, and it cannot be re-scored on this run's rows, so no ROC-AUC
    # may stand in for that comparison.
    model_dir = shutil.copytree(Path(promoted_run["version_uri"]) / "model", tmp_path / "model")
    meta = json.loads((model_dir / "model.json").read_text())
    first = meta["input_spec"]["channels"][0]
    meta["input_spec"]["channels"][0] = "orders"
    (model_dir / "model.json").write_text(json.dumps(meta))
    champion = registry.publish(model_dir, {"roc_auc": 0.5}, version="other-log-champion")
    registry.promote(champion.version, allow_input_change="another log")
    change = f"channels: added [{first!r}], removed ['orders']"

    args = {
        "data": DATA,
        "auc_threshold": 0.0,
        "refuse_below_baseline": False,
        "deploy_target": "none",
    }
    refused = run_local(settings, args, enable_caching=True)
    assert not refused["promoted"]
    assert (
        f"changes the input spec of champion {champion.version} ({change})" in (refused["reason"])
    )
    assert "allow_input_change=" in refused["reason"]
    assert registry.champion().version == champion.version
    assert outputs_of(refused["run_dir"], "registration") == []

    allowed = run_local(
        settings, {**args, "allow_input_change": f"{first} is back"}, enable_caching=True
    )
    assert allowed["promoted"], allowed["reason"]
    assert f"replaces champion {champion.version} without a comparison" in allowed["reason"]
    assert allowed["roc_auc"] == refused["roc_auc"] == promoted_run["roc_auc"]
    assert registry.champion().version == allowed["version"]
    pointer = json.loads(
        (Path(settings.registry.uri) / settings.registry.model_name / "champion.json").read_text()
    )
    assert (pointer["previous"], pointer["input_change"]) == (champion.version, f"{first} is back")


@pytest.mark.cluster
@pytest.mark.skipif(
    not (
        os.environ.get("CHURN_TEST_CLUSTER") == "1"
        and os.environ.get("CHURN_KFP_HOST")
        and os.environ.get("CHURN_TEST_REGISTRY_URI")
    ),
    reason="needs a Kubeflow Pipelines cluster: set CHURN_TEST_CLUSTER=1, CHURN_KFP_HOST and "
    "CHURN_TEST_REGISTRY_URI=s3://bucket/prefix",
)
def test_the_pipeline_runs_on_a_cluster() -> None:
    import kfp

    host = os.environ["CHURN_KFP_HOST"]
    settings = Settings()
    settings.registry.uri = os.environ["CHURN_TEST_REGISTRY_URI"]
    run_id = submit(
        host,
        settings,
        experiment="churn-tests",
        run_name=f"churn-test-{int(time.time())}",
        arguments={"data": "synth:customers=2000,days=500,seed=0", "epochs": 2},
    )
    run = kfp.Client(host=host).wait_for_run_completion(run_id, timeout=3600)
    assert run.state == "SUCCEEDED"

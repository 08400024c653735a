"""The drift monitor on traffic from the synthetic generator's own drift injection.

The same code as ``churn data synth --drift spend|rate|segment`` writes the logs. The champion
is a small CNN trained on a log without drift, and its reference is the summary of its
training split. Served traffic is another sample of customers (another seed) from a log whose
drift started 80 days before the first cutoff, so every bin of every sequence is post-drift.
It is taken at the champion's own training cutoffs, through the same feature and training-set
build, and summarised by ``churn.features.summary`` as the transformer logs it.

Same cutoffs on purpose: tenure, frequency and recency accumulate with time, so traffic
months after the training cutoffs drifts on those columns without any injected drift (100
days later: normed Wasserstein 1.6 on tenure, 0.79 on frequency, share 0.24 > 0.2). Taken at
the same cutoffs, the injected drift is the only difference between the two sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.dataset.training_set import load_training_set
from churn.features.build import build_features
from churn.features.summary import summarize, summary_windows
from churn.model.network import load_model, predict_proba
from churn.model.train import train
from churn.release.reference import decode_categories, write_reference
from churn.release.registry import open_registry
from churn.settings import FeatureConfig, ModelConfig, Settings, TrainConfig
from monitoring.drift import check_drift
from monitoring.trigger import maybe_retrain
from serving.inference_log import log_schema, open_sink

pytestmark = pytest.mark.slow

CUSTOMERS = 1500
DAYS = 300
DRIFT_START_DAY = 120
START = pd.Timestamp("2022-01-01")
# Two training cutoffs, then validation and test, a horizon apart (split_cutoffs).
CUTOFFS = [(START + pd.Timedelta(days=d)).date().isoformat() for d in (200, 214, 228, 242)]
HORIZON = 14
FEATURES = FeatureConfig(bin_days=7, seq_len=8, horizon_days=HORIZON)
ARCH = ModelConfig(hidden=8, dilations=[1, 2], windows=[1, 4, 8])
UNTIL = datetime(2026, 11, 30, 12, tzinfo=UTC)
KINDS = ("none", "spend", "rate", "segment")


@dataclass
class World:
    home: Path
    version: str
    traffic: dict[str, pa.Table]


def served_split(log_dir: Path, work: Path, seed: int, drift: str) -> tuple[Path, Path]:
    """Generates a log, builds its features and the training set at CUTOFFS."""
    generate(
        make_spec(
            CUSTOMERS,
            DAYS,
            seed,
            horizon_days=HORIZON,
            cutoffs=CUTOFFS,
            drift=drift,
            drift_start_day=None if drift == "none" else DRIFT_START_DAY,
        ),
        log_dir,
    )
    repo, dataset = work / "repo", work / "dataset"
    build_features(
        log_dir / "transactions.parquet",
        repo,
        FEATURES,
        customers=log_dir / "customers.parquet",
        cutoffs=CUTOFFS,
    )
    build_dataset(repo, dataset, HORIZON, cutoffs=CUTOFFS)
    return repo, dataset


def log_records(dataset: Path, model_dir: Path, version: str) -> pa.Table:
    """The training split's rows as the transformer logs them: summary, champion's score."""
    net, meta = load_model(model_dir)
    spec = meta["input_spec"]
    ts = load_training_set(dataset, splits=("train",))
    split = ts.splits["train"]
    raw = decode_categories(split.cat, ts.meta["categorical_features"])
    # The champion's own category indices: a value it never saw is its unknown, 0.
    cat = np.zeros_like(split.cat)
    for k, vocab in enumerate(spec["categorical_features"].values()):
        index = {v: i for i, v in enumerate(vocab)}
        cat[:, k] = [index.get(v, 0) for v in raw[:, k]]
    scores = predict_proba(
        net, torch.from_numpy(split.seq), torch.from_numpy(split.num), torch.from_numpy(cat)
    ).numpy()
    windows = summary_windows(meta["architecture"]["windows"], spec["seq_len"])
    n = len(split)
    times = [UNTIL - timedelta(minutes=50) + timedelta(milliseconds=i) for i in range(n)]
    records = {
        "request_id": [f"r{i}" for i in range(n)],
        "time": times,
        "customer_id": split.customer_id.tolist(),
        "model_version": [version] * n,
        "feature_timestamp": times,
        "churn_probability": scores.astype(np.float64),
        "churned": scores >= 0.5,
        **summarize(split.seq, split.num, raw, spec, windows),
    }
    return pa.Table.from_pydict(records, schema=log_schema(spec, windows))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("monitor-synth")
    _, dataset = served_split(root / "champion-log", root / "champion", 3, "none")
    torch.manual_seed(0)
    model_dir = root / "model"
    train(dataset, model_dir, ARCH, TrainConfig(epochs=1, batch_size=256, device="cpu"))
    reference = write_reference(model_dir, dataset, root / "reference.parquet", 20000, 0)
    home = root / "home"
    registry = open_registry(Settings(home=home).registry)
    version = registry.publish(model_dir, {"roc_auc": 0.7}, reference=reference).version
    registry.promote(version)
    traffic = {}
    for kind in KINDS:
        _, served = served_split(root / f"log-{kind}", root / kind, 4, kind)
        traffic[kind] = log_records(served, model_dir, version)
    return World(home, version, traffic)


def check(world: World, tmp_path: Path, table: pa.Table) -> dict:
    log = str(tmp_path / "inference_log")
    open_sink(log, None).write(UNTIL.date().isoformat(), table)
    settings = Settings(
        home=world.home,
        monitor={"log_uri": log, "store_uri": str(tmp_path / "monitoring"), "min_rows": 500},
    )
    return check_drift(settings, until=UNTIL, hours=1)


def test_a_log_without_drift_gives_no_drift_and_triggers_nothing(
    world: World, tmp_path: Path
) -> None:
    summary = check(world, tmp_path, world.traffic["none"])
    assert summary["decision"] == "no_drift", summary["drifted_columns"]
    assert summary["rows"]["current"] == world.traffic["none"].num_rows >= 500
    submitted: list[str] = []
    settings = Settings(home=world.home)
    done = maybe_retrain(summary, settings, submit=lambda _s, name: submitted.append(name) or "")
    assert done["action"] == "skipped" and submitted == []
    assert open_registry(settings.registry).read_records("triggers") == {}


@pytest.mark.parametrize(
    ("drift", "expected", "untouched"),
    [
        # Amounts x1.6: the spend windows and the mean amount per transaction, not the counts.
        (
            "spend",
            {"seq_spend_sum_1", "seq_spend_sum_4", "seq_spend_sum_8", "num_monetary"},
            {"seq_n_txn_sum_4", "seq_n_txn_sum_8"},
        ),
        # Rates halved: the transaction counts, not the amounts. (Lifetime frequency and the
        # recency in bins move too, but are untested columns: monitor.untested_columns.)
        (
            "rate",
            {"seq_n_txn_sum_4", "seq_n_txn_sum_8"},
            {"num_monetary", "cat_segment"},
        ),
        # A new segment of bigger buyers, in no particular region.
        ("segment", {"cat_segment", "seq_spend_sum_4", "num_monetary"}, {"cat_region"}),
    ],
)
def test_each_injected_drift_gives_drift_and_the_summary_names_its_columns(
    world: World, tmp_path: Path, drift: str, expected: set[str], untouched: set[str]
) -> None:
    summary = check(world, tmp_path, world.traffic[drift])
    assert summary["decision"] == "drift"
    named = {c["column"] for c in summary["drifted_columns"]}
    assert expected <= named, named
    assert not untouched & named, named
    assert summary["untested_columns"] == ["seq_recency_bins", "num_tenure_days", "num_frequency"]
    written = json.loads(Path(summary["summary_json"]).read_text())
    assert {c["column"] for c in written["drifted_columns"]} == named
    assert written["decision"] == "drift"


def test_too_few_post_drift_rows_give_insufficient_data(world: World, tmp_path: Path) -> None:
    summary = check(world, tmp_path, world.traffic["rate"].slice(0, 100))
    assert summary["decision"] == "insufficient_data"
    assert summary["rows"]["current"] == 100
    assert summary["drifted_columns"] == [] and summary["report_html"] is None

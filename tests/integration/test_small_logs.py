"""On a small log the CNN ranks customers as well as the baselines it is compared with.

The issue's case: ``churn data synth --customers 2000 --days 400 --seed 1`` with the cutoffs of
its ``generator.json`` has under 2,000 training rows. Before the wide term and the per-epoch
step floor the CNN reached 0.774 test ROC-AUC there against 0.878 for logistic regression.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.dataset.training_set import load_training_set
from churn.evaluation.baselines import run_baselines
from churn.evaluation.evaluate import auc_on_test_split
from churn.features.build import build_features
from churn.model.metrics import roc_auc
from churn.model.train import train
from churn.settings import load_settings


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_the_cnn_matches_logistic_regression_on_a_400_day_log_of_2000_customers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    generate(make_spec(2000, 400, seed=1), data)
    generator = json.loads((data / "generator.json").read_text())
    settings = load_settings(env={})
    cutoffs = generator["cutoffs"]
    build_features(
        data / "transactions.parquet",
        tmp_path / "repo",
        settings.features,
        customers=data / "customers.parquet",
        cutoffs=cutoffs,
        observed_until=generator["observed_until"],
    )
    build_dataset(tmp_path / "repo", tmp_path / "ds", settings.features.horizon_days, cutoffs)
    summary = train(tmp_path / "ds", tmp_path / "model", settings.model, settings.train)
    assert summary["train_rows"] < 2100

    cnn = auc_on_test_split(tmp_path / "model", tmp_path / "ds")
    ts = load_training_set(tmp_path / "ds")
    baselines = run_baselines(ts)
    test_y = ts.splits["test"].y
    best = max(roc_auc(test_y, b.test_scores) for b in baselines.values())
    # Measured 0.8798 against 0.8777; the goal over 3 seeds is a mean within 0.01.
    assert cnn > best - 0.01

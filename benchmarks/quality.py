"""Benchmark: the CNN's test ROC-AUC against the baselines and, on synthetic data, the oracle.

Runs the platform's own steps with default settings — features, training set, training,
evaluation — on the real CDNOW log and on a synthetic log, and prints one table:

* ``cnn``, ``hist_gradient_boosting``, ``logistic_regression``: test ROC-AUC, each trained and
  scored on the same splits;
* ``oracle`` (synthetic only): the AUC of the generator's true churn probabilities on the same
  test rows. They come from hidden state (whether a customer has churned already, its base
  rate, its fade onset), so no model that reads the log reaches it;
* ``posterior`` (synthetic only): the AUC of the Bayes posterior of the label given only what
  a model sees (``churn.evaluation.posterior``), the best any model can reach from the log;
* ``cnn / best baseline``, ``cnn / oracle`` and ``cnn / posterior`` ratios. Goals: >= 1.0 on
  CDNOW, >= 0.97 of the oracle on synthetic data.

Usage: ``python benchmarks/quality.py [--synth-customers 20000] [--only cdnow|synth]``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churn.data.cdnow import load_cdnow, write_table
from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.dataset.training_set import load_training_set
from churn.evaluation.evaluate import evaluate
from churn.evaluation.posterior import posterior_probs
from churn.features.build import build_features
from churn.model.metrics import roc_auc
from churn.model.train import train
from churn.settings import load_settings

BASELINES = ("hist_gradient_boosting", "logistic_regression")


def run_case(root: Path, transactions: Path, customers: Path | None, observed_until) -> dict:
    """Features, training set, training and evaluation with the default settings."""
    settings = load_settings()
    cfg = settings.features
    build_features(
        transactions, root / "repo", cfg, customers=customers, observed_until=observed_until
    )
    build_dataset(root / "repo", root / "dataset", cfg.horizon_days)
    started = time.perf_counter()
    summary = train(root / "dataset", root / "model", settings.model, settings.train)
    seconds = time.perf_counter() - started
    metric = settings.eval.threshold_metric
    metrics = evaluate(root / "model", root / "dataset", root / "eval", metric)
    row = {"cnn": metrics["roc_auc"], "train_seconds": seconds, "epochs": summary["epochs_run"]}
    row.update({b: metrics["baselines"][b]["roc_auc"] for b in BASELINES})
    row["n_test"] = metrics["n_test"]
    row["report"] = str(root / "eval" / "report.html")
    return row


def ceiling_aucs(dataset: Path, data: Path) -> dict[str, float]:
    """AUCs of the latent oracle and of the log-only posterior on the test split's rows."""
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    truth = pd.read_parquet(data / "oracle.parquet")
    truth["cutoff"] = truth["cutoff"].astype("datetime64[ns, UTC]").astype("int64") // 10**9
    rows = pd.DataFrame({"customer_id": test.customer_id.astype(str), "cutoff": test.cutoff})
    joined = rows.merge(truth, on=["customer_id", "cutoff"], how="left")
    if joined["true_prob"].isna().any():
        raise RuntimeError("the oracle lacks some test rows")
    (cutoff,) = np.unique(test.cutoff)
    posterior = posterior_probs(data, pd.Timestamp(cutoff, unit="s", tz="UTC"), rows.customer_id)
    return {
        "oracle": roc_auc(test.y, joined["true_prob"].to_numpy()),
        "posterior": roc_auc(test.y, posterior["posterior_prob"].to_numpy()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth-customers", type=int, default=20_000)
    parser.add_argument("--synth-days", type=int, default=730)
    parser.add_argument("--only", choices=["cdnow", "synth"])
    parser.add_argument("--keep", type=Path, help="Keep the work folders here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        root = args.keep or Path(tmp)
        if args.only in (None, "cdnow"):
            data = write_table(load_cdnow(), root / "cdnow" / "cdnow.parquet")
            rows["cdnow"] = run_case(root / "cdnow", data, None, None)
        if args.only in (None, "synth"):
            folder = root / "synth" / "data"
            generate(make_spec(args.synth_customers, args.synth_days, seed=7), folder)
            meta = json.loads((folder / "generator.json").read_text())
            rows["synth"] = run_case(
                root / "synth",
                folder / "transactions.parquet",
                folder / "customers.parquet",
                meta["observed_until"],
            )
            rows["synth"].update(ceiling_aucs(root / "synth" / "dataset", folder))
    header = f"{'data':<7}{'n_test':>8}{'cnn':>8}{'hgb':>8}{'logreg':>8}{'oracle':>8}"
    header += f"{'posterior':>10}{'cnn/best':>10}{'cnn/oracle':>12}{'cnn/posterior':>15}"
    print(header + f"{'train s':>9}")
    for name, r in rows.items():
        best = max(r[b] for b in BASELINES)
        oracle, posterior = r.get("oracle", np.nan), r.get("posterior", np.nan)
        print(
            f"{name:<7}{r['n_test']:>8}{r['cnn']:>8.4f}{r['hist_gradient_boosting']:>8.4f}"
            f"{r['logistic_regression']:>8.4f}{oracle:>8.4f}{posterior:>10.4f}"
            f"{r['cnn'] / best:>10.3f}{r['cnn'] / oracle:>12.3f}{r['cnn'] / posterior:>15.3f}"
            f"{r['train_seconds']:>9.1f}"
        )


if __name__ == "__main__":
    main()

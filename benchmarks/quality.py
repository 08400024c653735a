"""Benchmark: the CNN's test ROC-AUC against the best baseline, over three seeds per case.

Runs the platform's own steps — features, training set, training, evaluation — on each case
and prints, per case, the mean and spread (min to max) over seeds of the CNN's test ROC-AUC,
of the best baseline's, and of their difference, with DeLong's paired 95% interval of that
difference for every seed (``auc_vs_baselines`` in ``metrics.json``). Cases:

* ``cdnow``: the real CDNOW log, default settings; seeds are training seeds (the data is one).
* ``synth``: ``churn data synth`` with 20,000 customers x 730 days (data seeds 7, 8, 9, training
  seeds 0, 1, 2), also against the Bayes posterior (``churn.evaluation.posterior``), the
  best AUC any model can reach from the log. Goal: the CNN >= 99% of the posterior.
* ``small400``, ``small730``: 2,000 customers x 400 and 730 days, data seeds 1, 2, 3 and the
  cutoffs of the generator's ``generator.json``. Goal: the CNN within 0.01 of the best
  baseline on average.
* ``cj_lapse``, ``cj_partial``: the Complete Journey panel (``churn data completejourney``)
  with a 26-week lookback (the panel covers one year), under lapse and under partial
  defection; training seeds. Goal under partial defection: the CNN at least matches the best
  baseline.

Every case trains the CNN and both baselines on the same splits in this process, so the ratios
hold on a loaded machine. ``--set model.wide=false --set train.min_steps_per_epoch=1`` trains
the network as it was before the wide term and the per-epoch step floor.

Usage: ``python benchmarks/quality.py [--only CASE ...] [--seeds 3] [--first-seed 0]
[--set section.field=value]``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from churn.data.cdnow import load_cdnow, write_table
from churn.data.completejourney import load_completejourney
from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.dataset.labels import ChurnDefinition
from churn.dataset.training_set import load_training_set
from churn.evaluation.evaluate import evaluate
from churn.evaluation.posterior import posterior_probs
from churn.features.build import build_features
from churn.model.metrics import roc_auc
from churn.model.train import train
from churn.settings import Settings, load_settings

BASELINES = ("hist_gradient_boosting", "logistic_regression")
CASES = ("cdnow", "synth", "small400", "small730", "cj_lapse", "cj_partial")
SYNTH_SEEDS = (7, 8, 9)
SMALL_SEEDS = (1, 2, 3)
CJ_LOOKBACK_BINS = 26


def settings_for(overrides: list[str], **features: object) -> Settings:
    """Default settings with ``section.field=value`` overrides and feature fields set."""
    settings = load_settings()
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        setattr(getattr(settings, section), name, json_or_text(value))
    for field, setting in features.items():
        setattr(settings.features, field, setting)
    return settings


def json_or_text(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def prepare(
    root: Path,
    settings: Settings,
    transactions: Path,
    customers: Path | None = None,
    generator: dict | None = None,
) -> Path:
    """Feature repository and training set of one log; returns the training set folder."""
    cfg = settings.features
    cutoffs = generator["cutoffs"] if generator else None
    observed = generator["observed_until"] if generator else None
    build_features(
        transactions,
        root / "repo",
        cfg,
        customers=customers,
        cutoffs=cutoffs,
        observed_until=observed,
    )
    build_dataset(
        root / "repo",
        root / "dataset",
        cfg.horizon_days,
        cutoffs=cutoffs,
        definition=ChurnDefinition.from_config(cfg),
    )
    return root / "dataset"


def train_and_evaluate(root: Path, dataset: Path, settings: Settings, seed: int) -> dict:
    """Trains the CNN with training seed ``seed`` and evaluates it beside the baselines."""
    train_cfg = settings.train.model_copy(update={"seed": seed})
    started = time.perf_counter()
    summary = train(dataset, root / f"model{seed}", settings.model, train_cfg)
    seconds = time.perf_counter() - started
    metrics = evaluate(
        root / f"model{seed}", dataset, root / f"eval{seed}", settings.eval.threshold_metric, seed
    )
    best = max(BASELINES, key=lambda b: metrics["baselines"][b]["roc_auc"])
    return {
        "cnn": metrics["roc_auc"],
        **{b: metrics["baselines"][b]["roc_auc"] for b in BASELINES},
        "best": best,
        "vs_best": metrics["auc_vs_baselines"][best],
        "n_test": metrics["n_test"],
        "train_rows": summary["train_rows"],
        "best_epoch": summary["best_epoch"],
        "train_seconds": seconds,
    }


def posterior_auc(dataset: Path, data: Path) -> float:
    """AUC of the log-only Bayes posterior on the test split's rows."""
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    (cutoff,) = np.unique(test.cutoff)
    ids = pd.Series(test.customer_id.astype(str))
    posterior = posterior_probs(data, pd.Timestamp(cutoff, unit="s", tz="UTC"), ids)
    return roc_auc(test.y, posterior["posterior_prob"].to_numpy())


def synthetic_runs(
    root: Path,
    settings: Settings,
    customers: int,
    days: int,
    data_seeds: tuple[int, ...],
    train_seeds: list[int],
    ceiling: bool,
) -> list[dict]:
    """One synthetic log per training seed ``i``, generated with data seed ``data_seeds[i]``."""
    runs = []
    for seed in train_seeds:
        data_seed = data_seeds[seed]
        case = root / f"seed{data_seed}"
        generate(make_spec(customers, days, seed=data_seed), case / "data")
        generator = json.loads((case / "data" / "generator.json").read_text())
        dataset = prepare(
            case,
            settings,
            case / "data" / "transactions.parquet",
            case / "data" / "customers.parquet",
            generator,
        )
        run = train_and_evaluate(case, dataset, settings, seed)
        if ceiling:
            run["posterior"] = posterior_auc(dataset, case / "data")
        runs.append(run)
    return runs


def real_runs(root: Path, settings: Settings, log: Callable[[], pd.DataFrame], seeds: list[int]):
    """One training set of a real log, trained once per training seed."""
    dataset = prepare(root, settings, write_table(log(), root / "log.parquet"))
    return [train_and_evaluate(root, dataset, settings, seed) for seed in seeds]


def run_case(name: str, root: Path, overrides: list[str], seeds: list[int]) -> list[dict]:
    """All seeds of one case."""
    if name == "cdnow":
        return real_runs(root, settings_for(overrides), load_cdnow, seeds)
    if name == "synth":
        return synthetic_runs(
            root, settings_for(overrides), 20_000, 730, SYNTH_SEEDS, seeds, ceiling=True
        )
    if name.startswith("small"):
        days = int(name.removeprefix("small"))
        return synthetic_runs(
            root, settings_for(overrides), 2_000, days, SMALL_SEEDS, seeds, ceiling=False
        )
    definition = "lapse" if name == "cj_lapse" else "partial_defection"
    settings = settings_for(overrides, seq_len=CJ_LOOKBACK_BINS, churn_definition=definition)
    return real_runs(root, settings, load_completejourney, seeds)


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def print_table(results: dict[str, list[dict]]) -> None:
    """Mean (min-max) per case, and the DeLong interval of each seed's CNN - best baseline."""
    print(
        f"{'case':<11}{'CNN':>24}{'best baseline':>24}{'CNN - best':>26}  "
        f"DeLong 95% per seed (CNN - best)   posterior, CNN/posterior"
    )
    for name, runs in results.items():
        cnn = [r["cnn"] for r in runs]
        best = [r[r["best"]] for r in runs]
        diff = [r["vs_best"]["difference"] for r in runs]
        intervals = " ".join(
            f"[{r['vs_best']['ci95'][0]:+.4f},{r['vs_best']['ci95'][1]:+.4f}]"
            if r["vs_best"]["ci95"]
            else "[n/a]"
            for r in runs
        )
        line = f"{name:<11}{spread(cnn):>24}{spread(best):>24}"
        line += f"{np.mean(diff):>+10.4f} ({min(diff):+.4f}-{max(diff):+.4f})  {intervals}"
        if "posterior" in runs[0]:
            post = [r["posterior"] for r in runs]
            ratio = [r["cnn"] / r["posterior"] for r in runs]
            line += f"   {spread(post)}, {spread(ratio)}"
        print(line)
    print()
    for name, runs in results.items():
        for r in runs:
            print(
                f"{name:<11} cnn {r['cnn']:.4f} hgb {r['hist_gradient_boosting']:.4f} "
                f"logreg {r['logistic_regression']:.4f} best={r['best']} n_test {r['n_test']} "
                f"train rows {r['train_rows']} best epoch {r['best_epoch']} "
                f"train {r['train_seconds']:.0f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per case (at most 3).")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="Index of the first seed, to run the remaining seeds of a case in a later run.",
    )
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--keep", type=Path, help="Keep the work folders here.")
    parser.add_argument("--json", type=Path, help="Also write every run's figures here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = list(range(args.first_seed, min(args.first_seed + args.seeds, 3)))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        root = args.keep or Path(tmp)
        for name in args.only:
            results[name] = run_case(name, root / name, args.set, seeds)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    print_table(results)


if __name__ == "__main__":
    main()

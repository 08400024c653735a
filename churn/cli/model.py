"""`churn train` and `churn evaluate`: the CNN and its report."""

from __future__ import annotations

from pathlib import Path

import typer

from churn.cli.common import fail, settings


def train_cmd(
    dataset: Path = typer.Option(..., "--dataset", help="Training set folder (train/val used)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.pt + model.json)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (train.epochs)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Samples per step and process (train.batch_size)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (train.lr)."),
    patience: int | None = typer.Option(
        None, "--patience", help="Epochs without better val ROC-AUC before stopping; 0: never."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of weights and shuffling."),
    pos_weight: str | None = typer.Option(
        None, "--pos-weight", help="Positive-class loss weight: auto, none or a number."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    threshold_metric: str | None = typer.Option(
        None, "--threshold-metric", help="f1 or youden, maximised on val (eval.threshold_metric)."
    ),
) -> None:
    """Train the temporal CNN and write a model folder with its validation-chosen threshold.

    Options left out come from the settings (defaults, --config file, CHURN_TRAIN__* variables).
    """
    import json

    # Imported here so that other commands do not pay for torch.
    from churn.model.train import train
    from churn.settings import TrainConfig, parse_section

    cfg = settings()
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "seed": seed,
        "pos_weight": pos_weight,
        "device": device,
    }
    try:
        train_cfg = parse_section(
            TrainConfig,
            {**cfg.train.model_dump(), **{k: v for k, v in overrides.items() if v is not None}},
            "train",
        )
    except ValueError as exc:
        fail(exc)
    try:
        summary = train(
            dataset, out, cfg.model, train_cfg, threshold_metric or cfg.eval.threshold_metric
        )
    except ValueError as exc:
        fail(exc)
    typer.echo(json.dumps(summary, indent=2))


def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Model folder (model.pt + model.json)."),
    dataset: Path = typer.Option(..., "--dataset", help="Training set folder."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, plots, report.html."),
) -> None:
    """Score a model on the test split beside gradient-boosting and logistic baselines."""
    # Imported here so that other commands do not pay for torch, scikit-learn and matplotlib.
    from churn.evaluation.evaluate import evaluate
    from churn.evaluation.report import format_table

    cfg = settings()
    try:
        result = evaluate(
            model, dataset, out, threshold_metric=cfg.eval.threshold_metric, seed=cfg.train.seed
        )
    except ValueError as exc:
        fail(exc)
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")

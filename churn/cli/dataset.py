"""`churn dataset`: point-in-time-correct training sets."""

from __future__ import annotations

from pathlib import Path

import typer

from churn.cli.common import settings
from churn.cli.features import repo_dir

app = typer.Typer(help="Build point-in-time-correct training sets.", no_args_is_help=True)


@app.command("build")
def dataset_build(
    out: Path = typer.Option(..., "--out", help="Destination training set folder."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated cutoff dates; default: those the features have."
    ),
    horizon_days: int | None = typer.Option(
        None,
        "--horizon-days",
        min=1,
        help="Label horizon H in days (default from settings: 90).",
    ),
) -> None:
    """Build a training set through Feast's point-in-time join, split by time."""
    from churn.dataset.build import build_dataset
    from churn.dataset.labels import ChurnDefinition

    summary = build_dataset(
        repo_dir(repo),
        out,
        settings().features.horizon_days if horizon_days is None else horizon_days,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        memory_budget_mb=settings().features.memory_budget_mb,
        definition=ChurnDefinition.from_config(settings().features),
        chunk_rows=settings().features.retrieval_chunk_rows,
    )
    typer.echo(f"training set {summary['out']} ({summary['seconds']} s)")
    typer.echo(f"{'split':<6}{'rows':>9}{'positives':>11}{'negatives':>11}  cutoffs")
    for name, s in summary["splits"].items():
        typer.echo(
            f"{name:<6}{s['rows']:>9}{s['positives']:>11}{s['negatives']:>11}  "
            + ", ".join(s["cutoffs"])
        )

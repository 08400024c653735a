"""`churn score`: batch scores of customers at a point in time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from churn.cli.common import settings
from churn.cli.features import repo_dir


def score_cmd(
    at: str = typer.Option(
        ..., "--at", help="Scoring date (midnight UTC; one of the feature repo's snapshots)."
    ),
    out: Path = typer.Option(..., "--out", help="Scores file, .csv or .parquet."),
    customers: Path | None = typer.Option(
        None,
        "--customers",
        help="CSV with a customer_id (and optional cutoff) column; default: every customer "
        "active in the model's lookback before --at.",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Registry version (default: the champion)."
    ),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=1, help="Rows per chunk."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Score customers at a point in time with the champion or a named version."""
    from churn.errors import RegistryError
    from churn.release.batch_score import batch_score, check_output
    from churn.release.registry import open_registry

    check_output(out, force)
    cfg = settings()
    registry = open_registry(cfg.registry)
    if model is None:
        champion = registry.champion()
        if champion is None:
            raise RegistryError("no champion yet: promote a version or pass --model")
        model = champion.version
    with tempfile.TemporaryDirectory(prefix="churn-score-") as tmp:
        version_dir = registry.download(model, Path(tmp) / "version")
        summary = batch_score(
            repo_dir(repo),
            version_dir,
            model,
            at,
            out,
            customers=customers,
            chunk_rows=chunk_rows,
            force=force,
        )
    typer.echo(json.dumps(summary, indent=2))

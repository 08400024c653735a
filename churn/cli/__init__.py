"""The ``churn`` command line: one module per command group, thin wrappers over plain functions.

Layering: this package is the outermost layer. It may import ``pipelines``, ``components``,
``serving``, ``monitoring`` and the core; nothing imports it.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import typer

from churn.cli import by_id, data, dataset, features, model, pipeline, registry, serve
from churn.cli.common import fail, set_settings
from churn.errors import ChurnError
from churn.io.processes import interrupt_descendants
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
    """Entry point: ChurnError and OSError become one line and exit 2; SIGTERM acts as Ctrl-C.

    Both signals raise KeyboardInterrupt, so every context manager removes what it was writing,
    then the command prints one line and exits with 128 + the signal number (130, 143).
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        if received and signum == signal.SIGTERM:
            # Already stopping: a repeated SIGTERM must not cut the cleanup short.
            return
        received.append(signum)
        # SIGTERM reaches this process alone; pass it on as the SIGINT of a Ctrl-C.
        interrupt_descendants(forward=signum == signal.SIGTERM)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        app()
    except (ChurnError, OSError) as exc:
        if not received:
            # OSError: a disk that is full or read-only, a permission: the message names the path.
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            sys.exit(2)
    except (KeyboardInterrupt, SystemExit):
        # Typer turns KeyboardInterrupt into exit status 130 without a word.
        if not received:
            raise
    else:
        return
    name = signal.Signals(received[0]).name
    typer.secho(
        f"error: interrupted by {name}; unfinished outputs were removed",
        fg=typer.colors.RED,
        err=True,
    )
    sys.exit(128 + received[0])

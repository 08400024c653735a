"""What every command group shares: the resolved settings and the one-line error exit."""

from __future__ import annotations

from typing import NoReturn

import typer

from churn.settings import Settings, load_settings

_state: dict[str, Settings] = {}


def settings() -> Settings:
    """The settings resolved by the top-level options (a fresh copy per process)."""
    if "settings" not in _state:
        _state["settings"] = load_settings()
    return _state["settings"]


def set_settings(value: Settings) -> None:
    """Stores the settings the top-level callback resolved."""
    _state["settings"] = value


def fail(exc: Exception | str) -> NoReturn:
    """Prints ``error: ...`` on stderr and exits with status 2."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)

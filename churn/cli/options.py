"""Command-line options generated from the pipelines' run arguments.

``churn run`` takes the training pipeline's options; ``churn pipeline submit`` and ``churn
pipeline schedule`` take those of every pipeline and refuse, by name, the ones the chosen
``--pipeline`` does not take (``pipelines.catalog.check_overrides``). Options are generated
from :mod:`pipelines.arguments`: a field marked for the CLI becomes ``--field-name`` with the
field's description as help. An option left out keeps the settings' value (the compiled
default on a cluster).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from pipelines.arguments import PipelineArguments, cli_fields

F = TypeVar("F", bound=Callable[..., Any])
# Sections are struct parameters; their most used field gets an option of its own.
_SECTION_OPTIONS = {
    "registry_uri": ("registry", "uri", "Registry: a folder or s3://bucket/prefix.")
}


def run_argument_options(*models: type[PipelineArguments]) -> Callable[[F], F]:
    """Adds the run-argument options of ``models`` to a command, as ``overrides``.

    Args:
        *models: The pipelines' argument declarations; a field several declare is one option
            (the first one's help).

    Returns:
        A decorator for a command whose last parameter is ``overrides: dict``; only the
        options given on the command line are in ``overrides``.
    """
    fields: dict[str, Any] = {}
    for model in models:
        for name, info in cli_fields(model).items():
            fields.setdefault(name, info)
    return functools.partial(_with_options, fields=fields)


def _with_options(func: F, fields: dict[str, Any]) -> F:
    """``func`` with one extra typer option per field (and per section option)."""
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--" + name.replace("_", "-"), help=info.description),
            annotation=_optional(info.annotation),
        )
        for name, info in fields.items()
    ] + [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--" + name.replace("_", "-"), help=help_text),
            annotation=str | None,
        )
        for name, (_, _, help_text) in _SECTION_OPTIONS.items()
    ]
    # The command's own annotations are strings (postponed evaluation); resolved with their
    # extras, an ``Annotated[str, typer.Option("--host")]`` stays an option instead of
    # becoming a positional argument.
    hints = typing.get_type_hints(func, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(func).parameters.values()
        if p.name != "overrides"
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        overrides: dict[str, Any] = {}
        for name in fields:
            value = kwargs.pop(name)
            if value is not None:
                overrides[name] = value
        for name, (section, key, _) in _SECTION_OPTIONS.items():
            value = kwargs.pop(name)
            if value is not None:
                overrides.setdefault(section, {})[key] = value
        return func(overrides=overrides, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    return wrapper  # type: ignore[return-value]


def _optional(annotation: Any) -> Any:
    # A Literal is offered as a plain string; the model refuses other values with its message.
    base = annotation if annotation in (str, int, float) else str
    return base | None

"""The Kubeflow pipelines this project compiles, by name.

``churn pipeline compile --pipeline NAME`` and ``churn pipeline schedule --pipeline NAME`` look
the builder up here, so a new pipeline is one entry in :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from churn.errors import PipelineError
from churn.settings import Settings
from pipelines.arguments import (
    FeatureArguments,
    PipelineArguments,
    RunArguments,
    ScoringArguments,
    cli_fields,
)


def _training(settings: Settings) -> Callable:
    from pipelines.training_pipeline import build_pipeline

    return build_pipeline(settings)


def _scoring(settings: Settings) -> Callable:
    from pipelines.scoring_pipeline import build_pipeline

    return build_pipeline(settings)


def _features(settings: Settings) -> Callable:
    from pipelines.feature_pipeline import build_pipeline

    return build_pipeline(settings)


#: Pipeline name -> function that builds its ``@dsl.pipeline`` from the settings.
BUILDERS: dict[str, Callable[[Settings], Callable]] = {
    "training": _training,
    "scoring": _scoring,
    "features": _features,
}

#: Pipeline name -> the declaration of its run arguments.
ARGUMENTS: dict[str, type[PipelineArguments]] = {
    "training": RunArguments,
    "scoring": ScoringArguments,
    "features": FeatureArguments,
}

#: Pipeline name -> default name of its recurring run.
JOB_NAMES = {"training": "churn-retrain", "scoring": "churn-scoring", "features": "churn-features"}


def check_name(name: str) -> str:
    """``name`` when a pipeline has it.

    Raises:
        PipelineError: No pipeline has that name (the message lists the known ones).
    """
    if name not in BUILDERS:
        raise PipelineError(
            f"--pipeline {name!r} is not a pipeline of this project; choose one of "
            f"{', '.join(sorted(BUILDERS))}"
        )
    return name


def build(name: str, settings: Settings) -> Callable:
    """The ``@dsl.pipeline`` function of the pipeline ``name``.

    Raises:
        PipelineError: No pipeline has that name (the message lists the known ones).
    """
    return BUILDERS[check_name(name)](settings)


def arguments_of(name: str) -> type[PipelineArguments]:
    """The run arguments of the pipeline ``name``.

    Raises:
        PipelineError: No pipeline has that name.
    """
    return ARGUMENTS[check_name(name)]


def check_overrides(name: str, overrides: dict) -> None:
    """Refuses run arguments that the pipeline ``name`` does not take, naming its own.

    Raises:
        PipelineError: An argument belongs to another pipeline (or to none).
    """
    fields = arguments_of(name).model_fields
    foreign = [key for key in overrides if key not in fields]
    if foreign:
        options = ", ".join("--" + f.replace("_", "-") for f in cli_fields(ARGUMENTS[name]))
        raise PipelineError(
            f"{', '.join('--' + f.replace('_', '-') for f in foreign)} does not apply to the "
            f"{name} pipeline; its options are {options}, --registry-uri"
        )

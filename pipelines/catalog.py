"""The Kubeflow pipelines this project compiles, by name.

``churn pipeline compile --pipeline NAME`` and ``churn pipeline schedule --pipeline NAME`` look
the builder up here, so a new pipeline is one entry in :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from churn.errors import PipelineError
from churn.settings import Settings


def _training(settings: Settings) -> Callable:
    from pipelines.training_pipeline import build_pipeline

    return build_pipeline(settings)


def _features(settings: Settings) -> Callable:
    from pipelines.feature_pipeline import build_pipeline

    return build_pipeline(settings)


#: Pipeline name -> function that builds its ``@dsl.pipeline`` from the settings.
BUILDERS: dict[str, Callable[[Settings], Callable]] = {
    "training": _training,
    "features": _features,
}


def build(name: str, settings: Settings) -> Callable:
    """The ``@dsl.pipeline`` function of the pipeline ``name``.

    Raises:
        PipelineError: No pipeline has that name (the message lists the known ones).
    """
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise PipelineError(
            f"--pipeline {name!r} is not a pipeline of this project; choose one of "
            f"{', '.join(sorted(BUILDERS))}"
        ) from None
    return builder(settings)

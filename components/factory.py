"""Builds the pipeline's components from configuration.

:func:`make_components` wraps each step function as a lightweight Python component on the
project's images with ``install_kfp_package=False``: the images already hold kfp and churn, so
a pod starts without reaching a package index, and kfp.local runs the same functions in the
host's virtualenv.

The step modules do not use ``from __future__ import annotations``: KFP reads the parameter
annotations (``Input[Dataset]``, ``-> float``) as objects when it builds a component.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from churn.settings import PipelineConfig
from components import data, release, scoring, training


@dataclass(frozen=True)
class Components:
    """The pipeline's components, bound to their images."""

    build_features: PythonComponent
    build_training_set: PythonComponent
    train: PythonComponent
    evaluate: PythonComponent
    gate: PythonComponent
    register: PythonComponent
    deploy: PythonComponent
    deploy_remote: PythonComponent
    record_rejection: PythonComponent
    publish_features: PythonComponent


def _on(image: str, func: object) -> PythonComponent:
    return dsl.component(func, base_image=image, install_kfp_package=False)


def make_components(cfg: PipelineConfig) -> Components:
    """Wraps every step as a component: training on the GPU image, the rest on the CPU one.

    Args:
        cfg: Pipeline settings (``image`` and ``gpu_image``).

    Returns:
        The components.
    """
    return Components(
        build_features=_on(cfg.image, data.build_features),
        build_training_set=_on(cfg.image, data.build_training_set),
        train=_on(cfg.gpu_image, training.train),
        evaluate=_on(cfg.image, training.evaluate),
        gate=_on(cfg.image, release.gate),
        register=_on(cfg.image, release.register),
        deploy=_on(cfg.image, release.deploy),
        deploy_remote=_on(cfg.image, release.deploy_remote),
        record_rejection=_on(cfg.image, release.record_rejection),
        publish_features=_on(cfg.image, data.publish_features),
    )


@dataclass(frozen=True)
class ScoringComponents:
    """The batch-scoring pipeline's components, bound to the CPU image."""

    scoring_date: PythonComponent
    build_features: PythonComponent
    score: PythonComponent


def make_scoring_components(cfg: PipelineConfig) -> ScoringComponents:
    """Wraps the batch-scoring steps as components on the CPU image (``cfg.image``).

    The feature step is the training pipeline's own, so scores read the features training did.
    """
    return ScoringComponents(
        scoring_date=_on(cfg.image, scoring.scoring_date),
        build_features=_on(cfg.image, data.build_features),
        score=_on(cfg.image, scoring.score),
    )

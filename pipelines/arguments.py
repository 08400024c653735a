"""The training pipeline's run arguments, declared once.

:class:`RunArguments` is the single declaration. From it come the pipeline's signature
(:func:`pipeline_parameters`, with defaults from the settings it is compiled with), the
options that ``churn run``, ``churn pipeline submit`` and ``churn pipeline schedule`` share
(``churn.cli.options``), and the checks the local runner and cluster submissions make before
any work starts (:func:`check_arguments`).

Scalars are plain pipeline parameters. Sections of the settings travel as KFP struct
parameters (JSON mappings) and are validated in the pod by the same pydantic models
(``churn.settings.parse_section``).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from churn.errors import PipelineError
from churn.settings import (
    FeatureConfig,
    ModelConfig,
    RegistryConfig,
    Section,
    ServingConfig,
    Settings,
    TrainConfig,
    describe_error,
    section_values,
)

DeployTarget = Literal["kserve", "local", "none"]
DATA_HELP = (
    "cdnow, synth[:customers=N,days=D,seed=S], or a transaction log file or folder, local or "
    "s3://bucket/key (on a cluster: s3:// or a path the pods can read)."
)


class RunArguments(BaseModel):
    """Arguments of one run of the training pipeline.

    Every field is a pipeline parameter of the same name; ``cli`` marks the ones the CLI
    offers as ``--option``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str = Field("cdnow", min_length=1, description=DATA_HELP, json_schema_extra={"cli": 1})
    customers: str = Field(
        "",
        description="Optional customers table (a path or s3:// URI); '' for none.",
        json_schema_extra={"cli": 1},
    )
    cutoffs: str = Field(
        "",
        description="Comma-separated training cutoff dates; '' picks them automatically.",
        json_schema_extra={"cli": 1},
    )
    horizon_days: int = Field(90, ge=1, description="Label horizon in days.")
    epochs: int = Field(
        12, ge=1, description="Maximum training epochs.", json_schema_extra={"cli": 1}
    )
    auc_threshold: float = Field(
        0.70,
        ge=0.0,
        le=1.0,
        description="Minimum test ROC-AUC for promotion.",
        json_schema_extra={"cli": 1},
    )
    refuse_below_baseline: bool = Field(
        True,
        description="Refuse a candidate significantly below the best baseline of its own "
        "evaluation (DeLong 95% interval of the difference below 0).",
    )
    allow_input_change: str = Field(
        "",
        description="Names a deliberate change of the input spec (channels, bins, length, "
        "horizon, features, vocabularies): the gate then replaces a champion it cannot "
        "re-score on the threshold alone. '' refuses such a change.",
        json_schema_extra={"cli": 1},
    )
    train_nodes: int = Field(
        1,
        ge=1,
        le=64,
        description="Training nodes: 1 trains in the step's own pod; more submits a Kubeflow "
        "Trainer TrainJob (torch-distributed runtime) and waits for it (needs an s3:// "
        "pipeline root).",
        json_schema_extra={"cli": 1},
    )
    gpus_per_node: int = Field(
        1,
        ge=0,
        le=16,
        description="GPUs (one torchrun process each) per TrainJob node; 0 trains on CPU nodes. "
        "Used when train_nodes > 1.",
        json_schema_extra={"cli": 1},
    )
    threshold_metric: Literal["f1", "youden"] = Field(
        "f1", description="Metric the decision threshold maximises on validation (f1, youden)."
    )
    data_endpoint_url: str = Field(
        "",
        description="S3 endpoint of a non-AWS store for s3:// data (default: the registry's); "
        "'' for AWS.",
        json_schema_extra={"cli": 1},
    )
    deploy_target: DeployTarget = Field(
        "kserve",
        description="kserve, local (TorchServe smoke test) or none.",
        json_schema_extra={"cli": 1},
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig,
        description="Registry settings (uri, endpoint_url, model_name); s3:// on a cluster.",
    )
    features: FeatureConfig = Field(
        default_factory=FeatureConfig, description="Feature settings (bins, length, cutoffs)."
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="CNN architecture.")
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="Optimisation settings (epochs comes from its own parameter).",
    )
    serving: ServingConfig = Field(
        default_factory=ServingConfig,
        description="Namespace, service account, protocol and rollout timeout.",
    )

    @field_validator("registry")
    @classmethod
    def _concrete_registry(cls, value: RegistryConfig) -> RegistryConfig:
        # Settings resolve an empty URI to <home>/registry; the pods could not, and the local
        # runner would make it the working directory.
        if not value.uri.strip():
            raise ValueError("the registry URI is empty: give a folder or s3://bucket/prefix")
        return value

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunArguments:
        """The arguments a run gets when nothing overrides the settings.

        Args:
            settings: Settings whose values become the defaults.
            **overrides: Fields to set instead (validated).

        Returns:
            The arguments.

        Raises:
            PipelineError: An override is unknown or out of range; the message names it.
        """
        values: dict[str, Any] = {
            "horizon_days": settings.features.horizon_days,
            "epochs": settings.train.epochs,
            "auc_threshold": settings.eval.auc_threshold,
            "refuse_below_baseline": settings.eval.refuse_below_baseline,
            "threshold_metric": settings.eval.threshold_metric,
            "data_endpoint_url": settings.registry.endpoint_url or "",
            "registry": settings.registry,
            "features": settings.features,
            "model": settings.model,
            "train": settings.train,
            "serving": settings.serving,
        }
        for name, value in overrides.items():
            # A partial section (``{"uri": ...}``) keeps the settings' other fields.
            if isinstance(value, dict) and isinstance(values.get(name), BaseModel):
                value = {**values[name].model_dump(), **value}
            values[name] = value
        return check_arguments(values)

    def parameters(self) -> dict[str, Any]:
        """The arguments as KFP parameter values (sections as JSON mappings)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Section):
                value = section_values(value, drop=_SECTION_DROPS.get(name, ()))
            out[name] = value
        return out


# Fields that have their own parameter stay out of the struct (one source of truth per run).
_SECTION_DROPS = {"features": ("horizon_days",), "train": ("epochs",)}


def check_arguments(values: dict[str, Any]) -> RunArguments:
    """Validates run arguments before any work starts.

    Args:
        values: Field values; sections may be models or mappings.

    Returns:
        The arguments.

    Raises:
        PipelineError: A field is unknown or out of range; the message names it.
    """
    try:
        return RunArguments.model_validate(values)
    except ValidationError as exc:
        raise PipelineError(describe_error(exc).replace("configuration field", "argument")) from exc


def cli_fields() -> dict[str, Any]:
    """The fields the CLI offers as options, with their pydantic field info."""
    return {
        name: info
        for name, info in RunArguments.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("cli")
    }


def pipeline_parameters(settings: Settings) -> list[inspect.Parameter]:
    """The pipeline's parameters, in declaration order, with defaults from ``settings``.

    Args:
        settings: Settings the pipeline is compiled with.

    Returns:
        One parameter per field: ``str``, ``int`` or ``float`` for scalars (a ``Literal``
        becomes ``str``), ``dict`` for sections.
    """
    defaults = RunArguments.from_settings(settings).parameters()
    params = []
    for name, info in RunArguments.model_fields.items():
        annotation = info.annotation
        if isinstance(defaults[name], dict):
            annotation = dict
        elif annotation not in (str, int, float):
            annotation = type(defaults[name])
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=defaults[name],
                annotation=annotation,
            )
        )
    return params


def docstring_args() -> str:
    """The ``Args:`` section of the pipeline's docstring, from the field descriptions."""
    lines = ["Args:"]
    for name, info in RunArguments.model_fields.items():
        lines.append(f"    {name}: {info.description}")
    return "\n".join(lines)

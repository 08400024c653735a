"""The pipelines' run arguments, declared once per pipeline.

:class:`RunArguments` (training) and :class:`ScoringArguments` (batch scoring) are the single
declarations. From each come the pipeline's signature
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
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from churn.data.cutoffs import parse_midnight
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

A = TypeVar("A", bound="PipelineArguments")
DeployTarget = Literal["kserve", "local", "none"]
DATA_HELP = (
    "cdnow, synth[:customers=N,days=D,seed=S], or a transaction log file or folder, local or "
    "s3://bucket/key (on a cluster: s3:// or a path the pods can read)."
)
# Arguments several pipelines take, declared once; "cli" marks them as command-line options.
DataSource = Annotated[
    str, Field(min_length=1, description=DATA_HELP, json_schema_extra={"cli": 1})
]
CustomersTable = Annotated[
    str,
    Field(
        description="Optional customers table (a path or s3:// URI); '' for none.",
        json_schema_extra={"cli": 1},
    ),
]
Cutoffs = Annotated[
    str,
    Field(
        description="Comma-separated training cutoff dates; '' picks them automatically.",
        json_schema_extra={"cli": 1},
    ),
]


class PipelineArguments(BaseModel):
    """Arguments of one run of a pipeline: each field is a pipeline parameter of that name.

    ``cli`` in a field's ``json_schema_extra`` marks the ones the CLI offers as ``--option``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: Section fields that have their own parameter stay out of the struct (one source of
    #: truth per run).
    section_drops: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def settings_values(cls, settings: Settings) -> dict[str, Any]:
        """The fields whose defaults come from the settings; each pipeline declares its own."""
        raise NotImplementedError(f"{cls.__name__} declares no settings values")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """The arguments a run gets when nothing overrides the settings.

        Args:
            settings: Settings whose values become the defaults.
            **overrides: Fields to set instead (validated).

        Returns:
            The arguments.

        Raises:
            PipelineError: An override is unknown or out of range; the message names it.
        """
        values = cls.settings_values(settings)
        for name, value in overrides.items():
            # A partial section (``{"uri": ...}``) keeps the settings' other fields.
            if isinstance(value, dict) and isinstance(values.get(name), BaseModel):
                value = {**values[name].model_dump(), **value}
            values[name] = value
        return check_arguments(values, cls)

    def parameters(self) -> dict[str, Any]:
        """The arguments as KFP parameter values (sections as JSON mappings)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Section):
                value = section_values(value, drop=self.section_drops.get(name, ()))
            out[name] = value
        return out


def _concrete_registry(value: RegistryConfig) -> RegistryConfig:
    # Settings resolve an empty URI to <home>/registry; the pods could not, and the local
    # runner would make it the working directory.
    if not value.uri.strip():
        raise ValueError("the registry URI is empty: give a folder or s3://bucket/prefix")
    return value


class RunArguments(PipelineArguments):
    """Arguments of one run of the training pipeline."""

    section_drops: ClassVar[dict[str, tuple[str, ...]]] = {
        "features": ("horizon_days",),
        "train": ("epochs",),
    }

    data: DataSource = "cdnow"
    customers: CustomersTable = ""
    cutoffs: Cutoffs = ""
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

    _registry = field_validator("registry")(_concrete_registry)

    @classmethod
    def settings_values(cls, settings: Settings) -> dict[str, Any]:
        """The fields whose defaults come from the settings."""
        return {
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


class ScoringArguments(PipelineArguments):
    """Arguments of one run of the batch-scoring pipeline."""

    section_drops: ClassVar[dict[str, tuple[str, ...]]] = {"features": ("horizon_days",)}

    date: str = Field(
        "",
        description="Scoring date YYYY-MM-DD (midnight UTC); '' scores the run's own date "
        "(a recurring run's scheduled day).",
        json_schema_extra={"cli": 1},
    )
    model_version: str = Field(
        "",
        description="Registry version to score with; '' for the champion at run time.",
        json_schema_extra={"cli": 1},
    )
    data: DataSource = "cdnow"
    customers: CustomersTable = ""
    data_endpoint_url: str = Field(
        "",
        description="S3 endpoint of a non-AWS store for s3:// data (default: the registry's); "
        "'' for AWS.",
        json_schema_extra={"cli": 1},
    )
    overwrite: bool = Field(
        False,
        description="Replace another run's scores of the same date; off, such a run fails.",
        json_schema_extra={"cli": 1},
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig,
        description="Registry settings (uri, endpoint_url, model_name): the model comes from "
        "it and the scores go to <uri>/scores/date=YYYY-MM-DD/scores.parquet.",
    )
    features: FeatureConfig = Field(
        default_factory=FeatureConfig,
        description="Feature settings (bins, length): those the model was trained with.",
    )

    _registry = field_validator("registry")(_concrete_registry)

    @field_validator("date")
    @classmethod
    def _midnight(cls, value: str) -> str:
        if value.strip():
            parse_midnight(value.strip(), "date")
        return value.strip()

    @classmethod
    def settings_values(cls, settings: Settings) -> dict[str, Any]:
        """The fields whose defaults come from the settings."""
        return {
            "data_endpoint_url": settings.registry.endpoint_url or "",
            "registry": settings.registry,
            "features": settings.features,
        }


class FeatureArguments(PipelineArguments):
    """Arguments of one run of the feature pipeline (``pipelines/feature_pipeline.py``)."""

    data: DataSource = "cdnow"
    customers: CustomersTable = ""
    cutoffs: Cutoffs = ""
    observed_until: str = Field(
        "",
        description="End of the observation period: 'now' for the time of the run, '' for the "
        "log's last event.",
        json_schema_extra={"cli": 1},
    )
    features: FeatureConfig = Field(
        default_factory=FeatureConfig,
        description="Feature settings; shared_store names the store.",
    )
    data_endpoint_url: str = Field(
        "",
        description="S3 endpoint of a non-AWS store for s3:// data; '' for AWS.",
        json_schema_extra={"cli": 1},
    )

    @classmethod
    def settings_values(cls, settings: Settings) -> dict[str, Any]:
        """The fields whose defaults come from the settings."""
        return {
            "data_endpoint_url": settings.registry.endpoint_url or "",
            "features": settings.features,
        }


def check_arguments(values: dict[str, Any], model: type[A] = RunArguments) -> A:  # type: ignore[assignment]
    """Validates run arguments before any work starts.

    Args:
        values: Field values; sections may be models or mappings.
        model: The pipeline's arguments (default: the training pipeline's).

    Returns:
        The arguments.

    Raises:
        PipelineError: A field is unknown or out of range; the message names it.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise PipelineError(describe_error(exc).replace("configuration field", "argument")) from exc


def cli_fields(model: type[PipelineArguments] = RunArguments) -> dict[str, Any]:
    """The fields the CLI offers as options, with their pydantic field info."""
    return {
        name: info
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("cli")
    }


def pipeline_parameters(
    settings: Settings, model: type[PipelineArguments] = RunArguments
) -> list[inspect.Parameter]:
    """The pipeline's parameters, in declaration order, with defaults from ``settings``.

    Args:
        settings: Settings the pipeline is compiled with.
        model: The pipeline's arguments (default: the training pipeline's).

    Returns:
        One parameter per field: ``str``, ``int`` or ``float`` for scalars (a ``Literal``
        becomes ``str``), ``dict`` for sections.
    """
    defaults = model.from_settings(settings).parameters()
    params = []
    for name, info in model.model_fields.items():
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


def docstring_args(model: type[PipelineArguments] = RunArguments) -> str:
    """The ``Args:`` section of the pipeline's docstring, from the field descriptions."""
    lines = ["Args:"]
    for name, info in model.model_fields.items():
        lines.append(f"    {name}: {info.description}")
    return "\n".join(lines)

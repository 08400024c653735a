"""Typed configuration for every step, in one place.

Defaults make ``make run`` work on one machine. Any field can be overridden with an
environment variable named ``CHURN_<SECTION>__<FIELD>`` (for example
``CHURN_TRAIN__EPOCHS=3`` or ``CHURN_REGISTRY__URI=s3://bucket/models``), or with a YAML
file passed as ``churn --config FILE``.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FeatureConfig:
    """How the raw log becomes sequences and labels.

    Attributes:
        bin_days: Width of one sequence step in days (1 = daily, 7 = weekly).
        seq_len: Number of bins L in each sequence (the lookback is ``bin_days * seq_len``).
        horizon_days: Label horizon H: churned means no transaction in (t, t + H].
        cutoff_step_days: Spacing of the automatically chosen training cutoffs.
        n_train_cutoffs: How many training cutoffs the automatic schedule produces.
        extra_channels: Extra numeric event columns aggregated as channels; ``None`` takes
            every extra numeric column the log has.
        repo_template: The checked-in Feast repository that each feature build copies.
    """

    bin_days: int = 7
    seq_len: int = 52
    horizon_days: int = 90
    cutoff_step_days: int = 30
    n_train_cutoffs: int = 6
    extra_channels: list[str] | None = None
    repo_template: Path = PROJECT_ROOT / "feature_repo"

    def check(self) -> FeatureConfig:
        """Checks the ranges the types cannot express.

        Returns:
            The same settings.

        Raises:
            ValueError: A count or length is below 1 (a negative horizon, for one, would put
                the test cutoff into training); the message names the field.
        """
        for name in ("bin_days", "seq_len", "horizon_days", "cutoff_step_days", "n_train_cutoffs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"features.{name} must be an integer of at least 1, got {value!r}")
        return self


@dataclass
class ModelConfig:
    """Architecture of the temporal CNN (see ``churn.model``)."""

    windows: list[int] = field(default_factory=lambda: [1, 4, 13, 26, 52])
    stem_stride: int = 2
    hidden: int = 16
    kernel_size: int = 3
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    dropout: float = 0.1
    embedding_dim: int = 4
    head_hidden: int = 32


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Samples per optimisation step (per process under DDP).
        lr: Peak learning rate of AdamW under a one-cycle schedule.
        weight_decay: AdamW weight decay.
        patience: Epochs without a better validation ROC-AUC before stopping; 0 never stops
            early (every epoch runs, the best one is kept).
        seed: Seed for weights, shuffling and dropout.
        pos_weight: ``"auto"`` weighs positives by negatives/positives in the training split;
            a number sets it; ``"none"`` disables it.
        device: ``"auto"`` picks CUDA when present, else CPU.
        num_threads: CPU threads; 0 takes half the usable cores (see ``churn.train``).
    """

    epochs: int = 12
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 2
    seed: int = 0
    pos_weight: str = "auto"
    device: str = "auto"
    num_threads: int = 0


@dataclass
class EvalConfig:
    """Evaluation and the promotion gate.

    Attributes:
        threshold_metric: Metric maximised on the validation split to pick the decision
            threshold (``f1`` or ``youden``).
        auc_threshold: Minimum test ROC-AUC for promotion.
    """

    threshold_metric: str = "f1"
    auc_threshold: float = 0.70


@dataclass
class RegistryConfig:
    """Where promoted models live.

    Attributes:
        uri: A local folder (``/path`` or ``file:///path``) or ``s3://bucket/prefix``.
        endpoint_url: S3 endpoint for non-AWS stores (MinIO, moto); credentials come from the
            standard AWS environment or a mounted Secret, never from configuration.
        model_name: Name clients call the model by (the key in TorchServe's model snapshot).
    """

    uri: str = ".churn/registry"
    endpoint_url: str | None = None
    model_name: str = "churn"


@dataclass
class ServingConfig:
    """Local TorchServe and the KServe deployment."""

    host: str = "127.0.0.1"
    inference_port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
    namespace: str = "churn"
    service_account: str = "churn-models"
    protocol_version: str = "v1"


@dataclass
class PipelineConfig:
    """Kubeflow settings: images, GPU placement and resources."""

    image: str = "ghcr.io/churn-platform/churn:0.1.0"
    gpu_image: str = "ghcr.io/churn-platform/churn-gpu:0.1.0"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    gpu_node_selector_key: str = "cloud.google.com/gke-nodepool"
    gpu_node_selector_value: str = "gpu-pool"
    gpu_toleration_key: str = "nvidia.com/gpu"
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    train_cpu_request: str = "4"
    train_memory_request: str = "16Gi"
    train_retries: int = 2
    # Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for S3 data and registry ("" when the
    # pipeline's ServiceAccount has an IAM role instead); the same Secret KServe reads.
    s3_secret_name: str = "churn-s3"


@dataclass
class Settings:
    """Every setting of the platform.

    Attributes:
        home: Working folder for data, feature repo copies, datasets and runs.
    """

    home: Path = Path(".churn")
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


def _coerce(value: object, hint: object, name: str) -> object:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin is list:
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        return [_coerce(v, args[0], name) for v in items if v != ""]
    try:
        if hint is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if hint in (int, float, str, Path):
            return hint(value)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"configuration field {name}: cannot read {value!r} as {hint}") from exc
    return value


def _apply(obj: object, values: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown configuration field {prefix}{key}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"configuration field {prefix}{key} must be a mapping")
            _apply(current, value, f"{prefix}{key}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{prefix}{key}"))


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Builds settings from defaults, then an optional YAML file, then the environment.

    Args:
        path: Optional YAML file whose nested mapping mirrors :class:`Settings`.
        env: Environment to read ``CHURN_*`` overrides from (defaults to ``os.environ``).

    Returns:
        The resolved settings.

    Raises:
        ValueError: A field is unknown or its value has the wrong type; the message names it.
    """
    settings = Settings()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"configuration file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"configuration file {path} must hold a mapping")
        _apply(settings, data, "")
    env = os.environ if env is None else env
    overrides: dict = {}
    sections = {f.name for f in dataclasses.fields(Settings)}
    for key, value in env.items():
        if not key.startswith("CHURN_"):
            continue
        parts = key[len("CHURN_") :].lower().split("__")
        # Other CHURN_* variables (CHURN_CONFIG, CHURN_TEST_CLUSTER, CHURN_FEATURE_DATA...)
        # belong to other tools; a typo inside a known section is still an error.
        if parts[0] not in sections:
            continue
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    _apply(settings, overrides, "")
    settings.features.check()
    return settings

"""The churn model: a 1D temporal CNN over raw activity sequences, and its folder format.

This module imports only torch and the standard library at the top because TorchServe ships it
beside the serving handler, in an image whose torch 2.x may be older than the training one and
without the ``churn`` package (only :func:`save_model`, which serving never calls, imports from
it). The model applies the dataset's transforms and normalisation itself, so callers always pass
raw values.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# 2: residual blocks without GroupNorm; version-1 folders do not load into this architecture.
FORMAT_VERSION = 2
ARCHITECTURE_FIELDS = (
    "windows",
    "stem_stride",
    "hidden",
    "kernel_size",
    "dilations",
    "dropout",
    "embedding_dim",
    "head_hidden",
    "wide",
)
# Fields a folder written before them may lack, and the value that reproduces its architecture.
_OPTIONAL_ARCHITECTURE = {"wide": False}
_RESERVED_META_KEYS = ("format_version", "architecture", "input_spec", "threshold")
# Optional: a folder without it is read as before (identity calibration).
_CALIBRATION_KEY = "calibration"
PLATT = "platt"
# Recorded when the validation logits did not rank churners higher, so no positive slope fits.
UNCALIBRATED = "none"


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# churn.features.sequences.CONTEXT_FEATURES, which this module may not import (it ships alone in
# the model archive): days, counts and spend from the log, never negative. The customer
# attributes beside them in ``numeric_features`` may be (a balance, a score), and the contract
# forbids attributes of these names.
NON_NEGATIVE_FEATURES = frozenset({"tenure_days", "recency_days", "frequency", "monetary"})


IDENTITY = (1.0, 0.0)


class ModelFormatError(ValueError):
    """A model folder is missing or malformed, or its files do not fit together."""


class InstanceError(ValueError):
    """A request instance does not fit the model's input spec (names the instance and field)."""


class ResidualBlock(nn.Module):
    """Causal dilated convolution, ReLU and dropout, added to its input.

    Left-only padding keeps every output step a summary of the past, so the last step describes
    the customer's most recent activity without seeing beyond the cutoff. There is no
    normalisation layer: a per-sample one (GroupNorm) pools statistics over the whole sequence,
    which makes every step depend on how long the customer's history is, and it ranked CDNOW's
    test customers worse in each of three seeds (see the README's model quality section).
    """

    def __init__(self, hidden: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.pad(x, (self.left_pad, 0)))
        return x + self.dropout(F.relu(h))


class ChurnCNN(nn.Module):
    """Temporal CNN that turns raw sequences and static features into one churn logit per row.

    Args:
        n_channels: Number of sequence channels C (any sequence length L works).
        n_numeric: Number of numeric features F (may be 0).
        cat_cardinalities: Vocabulary size of each categorical feature (may be empty).
        seq_mean: Per-channel mean of ``log1p(max(x, 0))`` on the training split.
        seq_std: Per-channel std of the same.
        num_mean: Per-feature mean of ``sign(x) * log1p(|x|)`` on the training split.
        num_std: Per-feature std of the same.
        windows: Lengths (in bins) of the recent windows whose per-channel totals, plus the
            bins since the last activity, go straight to the head.
        stem_stride: Bins merged by the first (strided) convolution; 2 halves the length the
            residual blocks work on, and with it the training cost, for the same receptive field.
        hidden: Convolution channels.
        kernel_size: Convolution kernel width.
        dilations: One residual block per dilation.
        dropout: Dropout rate in the blocks and the head.
        embedding_dim: Width of each categorical embedding.
        head_hidden: Width of the MLP head's hidden layer.
        wide: Add a linear ("wide") term to the logit: weights on the standardised window
            totals, the recency share and the numeric features, and one weight per category.
            Training fits it first as a logistic regression and starts the head at zero, so
            the network begins at that solution and learns the residual; on a small log the
            convolutions alone fell 0.10 AUC short of logistic regression.
    """

    def __init__(
        self,
        n_channels: int,
        n_numeric: int,
        cat_cardinalities: list[int],
        seq_mean: list[float],
        seq_std: list[float],
        num_mean: list[float],
        num_std: list[float],
        windows: list[int],
        stem_stride: int,
        hidden: int,
        kernel_size: int,
        dilations: list[int],
        dropout: float,
        embedding_dim: int,
        head_hidden: int,
        wide: bool = False,
    ) -> None:
        super().__init__()
        # Registered buffers, declared so type checkers see tensors rather than modules.
        self.seq_mean: torch.Tensor
        self.seq_std: torch.Tensor
        self.num_mean: torch.Tensor
        self.num_std: torch.Tensor
        self.wide_mean: torch.Tensor
        self.wide_std: torch.Tensor
        self.n_numeric = n_numeric
        # Platt scaling of the logit, (slope, intercept): not a buffer, so model.pt keeps the
        # state_dict of folders written before calibration existed; load_model sets it from
        # model.json and predict_proba applies it.
        self.calibration = IDENTITY
        self.register_buffer("seq_mean", torch.tensor(seq_mean, dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("seq_std", torch.tensor(seq_std, dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("num_mean", torch.tensor(num_mean, dtype=torch.float32).view(1, -1))
        self.register_buffer("num_std", torch.tensor(num_std, dtype=torch.float32).view(1, -1))
        self.windows = list(windows)
        self.stem_stride = stem_stride
        self.stem = nn.Conv1d(n_channels, hidden, kernel_size=stem_stride, stride=stem_stride)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden, kernel_size, d, dropout) for d in dilations
        )
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cat_cardinalities)
        # Average, max and last-step pooling: the last step carries recency, which matters most.
        # Window totals and recency are the classic RFM signal; handing them to the head directly
        # leaves the convolutions free to learn the shape of the activity.
        fused = (
            3 * hidden
            + n_channels * len(self.windows)
            + 1
            + n_numeric
            + embedding_dim * len(cat_cardinalities)
        )
        self.head = nn.Sequential(
            nn.Linear(fused, head_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, 1),
        )
        self.wide: nn.Linear | None = None
        if wide:
            n_wide = n_channels * len(self.windows) + 1 + n_numeric
            # Standardisation of the wide inputs, set from the training split before the fit.
            self.register_buffer("wide_mean", torch.zeros(1, n_wide))
            self.register_buffer("wide_std", torch.ones(1, n_wide))
            self.wide = nn.Linear(n_wide, 1)
            self.wide_cat = nn.ModuleList(nn.Embedding(n, 1) for n in cat_cardinalities)
            for weight in self.wide_cat.parameters():
                nn.init.zeros_(weight)

    def forward(self, seq: torch.Tensor, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Computes churn logits.

        Args:
            seq: Raw sequences, float [B, C, L].
            num: Raw numeric features, float [B, F].
            cat: Categorical indices, int64 [B, K] (0 = unknown).

        Returns:
            Logits [B].
        """
        raw = seq.clamp(min=0)
        static = self.static_features(raw, num)
        x = (torch.log1p(raw) - self.seq_mean) / self.seq_std
        # Left padding aligns the strides to the end, so the last step covers the latest bins.
        h = self.stem(F.pad(x, ((-x.shape[2]) % self.stem_stride, 0)))
        for block in self.blocks:
            h = block(h)
        parts = [h.mean(dim=2), h.amax(dim=2), h[:, :, -1], static]
        parts.extend(emb(cat[:, j]) for j, emb in enumerate(self.embeddings))
        logit = self.head(torch.cat(parts, dim=1)).squeeze(1)
        if self.wide is None:
            return logit
        return logit + self.wide_logit(static, cat)

    def static_features(self, raw: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Window totals, recency share and normalised numeric features, [B, D].

        Args:
            raw: Sequences clamped at 0, float [B, C, L].
            num: Raw numeric features, float [B, F].

        Returns:
            What the head receives beside the pooled convolutions and the embeddings.
        """
        parts = [torch.log1p(raw[:, :, -w:].sum(dim=2)) for w in self.windows]
        length = raw.shape[2]
        active = raw.sum(dim=1) > 0
        steps = torch.arange(1, length + 1, device=raw.device, dtype=raw.dtype)
        last = (active * steps).amax(dim=1)
        # Bins since the last active one, as a share of the sequence (1 = nothing in it).
        parts.append(((length - last) / length).unsqueeze(1))
        if self.n_numeric:
            z = torch.sign(num) * torch.log1p(num.abs())
            parts.append((z - self.num_mean) / self.num_std)
        return torch.cat(parts, dim=1)

    def wide_parameters(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The wide term's weights (L2-penalised in its fit) and its bias."""
        assert self.wide is not None
        return [self.wide.weight, *self.wide_cat.parameters()], self.wide.bias

    def wide_logit(self, static: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """The linear term of a wide model: standardised static features and category weights.

        Args:
            static: :meth:`static_features` [B, D].
            cat: Categorical indices, int64 [B, K].

        Returns:
            Logits [B].
        """
        assert self.wide is not None
        z = (static - self.wide_mean) / self.wide_std
        out = self.wide(z).squeeze(1)
        for j, emb in enumerate(self.wide_cat):
            out = out + emb(cat[:, j]).squeeze(1)
        return out


def build_model(input_spec: dict, architecture: dict) -> ChurnCNN:
    """Builds an untrained model for a training set's input spec.

    Args:
        input_spec: The training set's meta without ``splits`` (channels, seq_len,
            numeric_features, categorical_features, norm).
        architecture: The ``ModelConfig`` fields as a plain dict.

    Returns:
        The model, in training mode.

    Raises:
        ModelFormatError: A field is missing from the input spec or the architecture, or a
            value is out of range.
    """
    for key in ("channels", "seq_len", "numeric_features", "categorical_features", "norm"):
        if key not in input_spec:
            raise ModelFormatError(f"input spec lacks the field {key!r}")
    architecture = {**_OPTIONAL_ARCHITECTURE, **architecture}
    missing = [k for k in ARCHITECTURE_FIELDS if k not in architecture]
    if missing:
        raise ModelFormatError(f"architecture lacks the fields {missing}")
    unknown = sorted(set(architecture) - set(ARCHITECTURE_FIELDS))
    if unknown:
        raise ModelFormatError(f"architecture has unknown fields {unknown}")
    windows = list(architecture["windows"])
    if any(int(w) < 1 for w in windows):
        raise ModelFormatError(f"windows must be positive integers, got {windows}")
    dilations = list(architecture["dilations"])
    if not dilations or any(int(d) < 1 for d in dilations):
        raise ModelFormatError(f"dilations must be positive integers, got {dilations}")
    for key in ("stem_stride", "hidden", "kernel_size", "embedding_dim", "head_hidden"):
        if int(architecture[key]) < 1:
            raise ModelFormatError(f"architecture field {key!r} must be >= 1")
    if not 0.0 <= float(architecture["dropout"]) < 1.0:
        raise ModelFormatError("architecture field 'dropout' must be in [0, 1)")
    norm = input_spec["norm"]
    n_channels = len(input_spec["channels"])
    n_numeric = len(input_spec["numeric_features"])
    for key, size in (("seq_mean", n_channels), ("seq_std", n_channels)):
        if len(norm.get(key, ())) != size:
            raise ModelFormatError(f"norm.{key} must hold {size} values (one per channel)")
    for key in ("num_mean", "num_std"):
        if len(norm.get(key, ())) != n_numeric:
            raise ModelFormatError(f"norm.{key} must hold {n_numeric} values (one per feature)")
    return ChurnCNN(
        n_channels=n_channels,
        n_numeric=n_numeric,
        cat_cardinalities=[len(v) for v in input_spec["categorical_features"].values()],
        seq_mean=norm["seq_mean"],
        seq_std=norm["seq_std"],
        num_mean=norm["num_mean"],
        num_std=norm["num_std"],
        windows=[int(w) for w in architecture["windows"]],
        stem_stride=int(architecture["stem_stride"]),
        hidden=int(architecture["hidden"]),
        kernel_size=int(architecture["kernel_size"]),
        dilations=[int(d) for d in dilations],
        dropout=float(architecture["dropout"]),
        embedding_dim=int(architecture["embedding_dim"]),
        head_hidden=int(architecture["head_hidden"]),
        wide=bool(architecture["wide"]),
    )


def save_model(
    model: nn.Module,
    input_spec: dict,
    architecture: dict,
    threshold: float,
    out_dir: str | Path,
    extra: dict | None = None,
    calibration: dict | None = None,
) -> Path:
    """Writes a model folder atomically: ``model.pt`` (state_dict) and ``model.json``.

    A temporary sibling folder is filled first and then renamed into place, so a reader never
    sees a half-written folder, and an existing folder is replaced only once the new one is
    complete.

    Args:
        model: The model; a DistributedDataParallel wrapper is unwrapped.
        input_spec: The training set's meta without ``splits``.
        architecture: The ``ModelConfig`` fields as a plain dict.
        threshold: Decision threshold on the churn probability (churn when ``p >= threshold``).
        out_dir: Destination folder.
        extra: JSON-serialisable fields added to ``model.json`` (for example the training
            history); they may not reuse the reserved keys or ``calibration``.
        calibration: Platt scaling applied to the logits before the sigmoid,
            ``{"method": "platt", "slope": a, "intercept": b, ...}`` with ``a > 0`` (further
            keys are kept as a record of the fit); ``None`` writes none (identity). The
            threshold must be on the calibrated scale.

    Returns:
        The destination path.

    Raises:
        ValueError: ``extra`` reuses a reserved key, the threshold is not a finite number, or
            the calibration is malformed.
    """
    extra = dict(extra or {})
    clash = [k for k in (*_RESERVED_META_KEYS, _CALIBRATION_KEY) if k in extra]
    if clash:
        raise ValueError(f"extra may not set the reserved model.json keys {clash}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    module = getattr(model, "module", model)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": dict(architecture),
        "input_spec": {k: v for k, v in input_spec.items() if k != "splits"},
        "threshold": float(threshold),
        **extra,
    }
    if calibration is not None:
        read_calibration(calibration)
        meta[_CALIBRATION_KEY] = dict(calibration)
    text = json.dumps(meta, indent=2)
    # Imported here: serving ships this file without the churn package and never saves.
    from churn.io.atomic import staging_dir

    with staging_dir(out_dir, marker="model.json") as tmp:
        torch.save(state, tmp / "model.pt")
        (tmp / "model.json").write_text(text)
    return Path(out_dir)


def load_model(path: str | Path) -> tuple[ChurnCNN, dict]:
    """Reads a model folder written by :func:`save_model`.

    Args:
        path: The model folder.

    Returns:
        The model on the CPU in eval mode, with the folder's calibration (identity when
        ``model.json`` has none, as in folders written before calibration existed), and the
        parsed ``model.json``.

    Raises:
        ModelFormatError: The folder or a file is missing, ``model.json`` is malformed or of an
            unknown format version, or the weights do not fit the architecture. The message
            names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelFormatError(f"model folder {path} does not exist")
    meta_path, weights_path = path / "model.json", path / "model.pt"
    for file in (meta_path, weights_path):
        if not file.is_file():
            raise ModelFormatError(f"{file} is missing: is {path} a model folder?")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{meta_path} must hold a JSON object")
    for key in _RESERVED_META_KEYS:
        if key not in meta:
            raise ModelFormatError(f"{meta_path} lacks the field {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelFormatError(
            f"{meta_path} has format_version {meta['format_version']!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    try:
        model = build_model(meta["input_spec"], meta["architecture"])
        model.calibration = read_calibration(meta.get(_CALIBRATION_KEY))
    except (ModelFormatError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{meta_path}: {exc}") from exc
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        # torch raises RuntimeError, pickle errors or OSError depending on the damage and
        # version; all mean the same thing to the caller.
        raise ModelFormatError(f"{weights_path} does not fit {meta_path}: {exc}") from exc
    return model.eval(), meta


def encode_instances(
    instances: list[dict], input_spec: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turns JSON request instances into model inputs.

    Each instance looks like ``{"sequence": {channel: [L floats]}, "numeric": {feature: float},
    "categorical": {feature: "value"}}``. A categorical value outside the vocabulary, or a
    missing one, maps to index 0 (unknown). Extra keys are ignored.

    Negative values are refused where training never sees them: in every sequence channel
    (counts of transactions and sums of amounts and extra columns, which the data contract
    requires to be non-negative) and in the context features of :data:`NON_NEGATIVE_FEATURES`
    (tenure and recency in days, frequency, monetary). The model would clamp a negative
    sequence value to 0 and score a request that means something else. Numeric customer
    attributes may be negative, as the contract allows them to be in the customers table.

    Args:
        instances: The request's instances.
        input_spec: The model's input spec (``meta["input_spec"]`` from :func:`load_model`).

    Returns:
        ``seq`` float32 [N, C, L], ``num`` float32 [N, F] and ``cat`` int64 [N, K].

    Raises:
        InstanceError: An instance is not an object, lacks a channel or a numeric feature, has
            a sequence of the wrong length, or holds a non-numeric, non-finite or (see above)
            negative value. The message names the instance index and the field.
    """
    if not isinstance(instances, list):
        raise InstanceError(f"instances must be a list, got {type(instances).__name__}")
    channels = list(input_spec["channels"])
    seq_len = int(input_spec["seq_len"])
    features = list(input_spec["numeric_features"])
    vocabs = {
        name: {value: i for i, value in enumerate(vocab)}
        for name, vocab in input_spec["categorical_features"].items()
    }
    seqs, nums, cats = [], [], []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InstanceError(f"instance {i} must be an object, got {type(inst).__name__}")
        sequence = _mapping(inst, "sequence", i)
        seqs.append([_channel(sequence, name, i, seq_len) for name in channels])
        numeric = _mapping(inst, "numeric", i) if features else {}
        nums.append([_feature(numeric, name, i) for name in features])
        categorical = inst.get("categorical") or {}
        if not isinstance(categorical, dict):
            raise InstanceError(f"instance {i}: 'categorical' must be an object")
        cats.append([_category(categorical.get(name), vocab) for name, vocab in vocabs.items()])
    n = len(instances)
    return (
        torch.tensor(seqs, dtype=torch.float32).reshape(n, len(channels), seq_len),
        torch.tensor(nums, dtype=torch.float32).reshape(n, len(features)),
        torch.tensor(cats, dtype=torch.int64).reshape(n, len(vocabs)),
    )


def _mapping(inst: dict, key: str, index: int) -> dict:
    value = inst.get(key)
    if not isinstance(value, dict):
        raise InstanceError(f"instance {index}: {key!r} must be an object")
    return value


def _channel(sequence: dict, name: str, index: int, seq_len: int) -> list[float]:
    if name not in sequence:
        raise InstanceError(f"instance {index}: sequence lacks the channel {name!r}")
    values = sequence[name]
    if not isinstance(values, list) or len(values) != seq_len:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise InstanceError(
            f"instance {index}: channel {name!r} must be a list of {seq_len} numbers, got {got}"
        )
    row = [_number(v, f"channel {name!r}", index) for v in values]
    negative = next((t for t, x in enumerate(row) if x < 0), None)
    if negative is not None:
        raise InstanceError(
            f"instance {index}: channel {name!r} holds {row[negative]} at position {negative}; "
            "activity counts and sums are never negative"
        )
    return row


def _feature(numeric: dict, name: str, index: int) -> float:
    if name not in numeric:
        raise InstanceError(f"instance {index}: numeric lacks the feature {name!r}")
    x = _number(numeric[name], f"numeric feature {name!r}", index)
    if x < 0 and name in NON_NEGATIVE_FEATURES:
        raise InstanceError(
            f"instance {index}: numeric feature {name!r} holds {x}; it counts days, "
            "transactions or spend from the log and is never negative"
        )
    return x


def _category(value: object, vocab: dict[str, int]) -> int:
    return 0 if value is None else vocab.get(str(value), 0)


def _number(value: object, what: str, index: int) -> float:
    # bool is an int subclass, but true/false in a request is a client bug, not a count.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:  # an integer beyond float64
            x = math.inf
        # The model computes in float32; a larger value would become inf inside it.
        if math.isfinite(x) and abs(x) <= _FLOAT32_MAX:
            return x
    raise InstanceError(
        f"instance {index}: {what} holds {reprlib.repr(value)}, not a finite float32 number"
    )


def read_calibration(calibration: object) -> tuple[float, float]:
    """Reads the ``calibration`` field of ``model.json``.

    Args:
        calibration: The field's value; ``None`` (absent) means identity.

    Returns:
        ``(slope, intercept)`` of the Platt scaling ``sigmoid(slope * logit + intercept)``;
        identity for method ``"none"``.

    Raises:
        ModelFormatError: The field is not an object, names an unknown method, or its slope is
            not a positive finite number (which would reverse or flatten the ranking) or its
            intercept not a finite one.
    """
    if calibration is None:
        return IDENTITY
    if not isinstance(calibration, dict):
        raise ModelFormatError(f"calibration must be an object, got {reprlib.repr(calibration)}")
    method = calibration.get("method")
    if method == UNCALIBRATED:
        return IDENTITY
    if method != PLATT:
        raise ModelFormatError(
            f"calibration.method must be {PLATT!r} or {UNCALIBRATED!r}, got {reprlib.repr(method)}"
        )
    values = []
    for key in ("slope", "intercept"):
        value = calibration.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelFormatError(f"calibration.{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ModelFormatError(f"calibration.{key} must be finite, got {value!r}")
        values.append(float(value))
    if values[0] <= 0.0:
        raise ModelFormatError(
            f"calibration.slope must be > 0 to keep the ranking, got {values[0]!r}"
        )
    return values[0], values[1]


def calibrate(logits: torch.Tensor, calibration: tuple[float, float] = IDENTITY) -> torch.Tensor:
    """Turns logits into churn probabilities through Platt scaling.

    In float64: float32 would round neighbouring probabilities into ties (its spacing near
    p is about 6e-8 * p, finer than the logits' once the sigmoid compresses them) and move
    the AUC that calibration must leave unchanged.

    Args:
        logits: Model outputs, any float dtype.
        calibration: ``(slope, intercept)``; the slope is positive, so the order is kept.

    Returns:
        ``sigmoid(slope * logits + intercept)`` as float64.
    """
    slope, intercept = calibration
    return torch.sigmoid(logits.double() * slope + intercept)


def predict_logits(
    model: nn.Module,
    seq: torch.Tensor,
    num: torch.Tensor,
    cat: torch.Tensor,
    batch_size: int = 8192,
) -> torch.Tensor:
    """Uncalibrated churn logits, computed without gradients in batches on the model's device.

    Args:
        model: The model, normally in eval mode (as :func:`load_model` returns it).
        seq: Raw sequences, float32 [N, C, L].
        num: Raw numeric features, float32 [N, F].
        cat: Categorical indices, int64 [N, K].
        batch_size: Rows per forward pass; bounds memory on large inputs.

    Returns:
        Logits, float32 [N], on the CPU.
    """
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(seq), batch_size):
            end = start + batch_size
            batch = (t[start:end].to(device) for t in (seq, num, cat))
            out.append(model(*batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def predict_proba(
    model: nn.Module,
    seq: torch.Tensor,
    num: torch.Tensor,
    cat: torch.Tensor,
    batch_size: int = 8192,
) -> torch.Tensor:
    """Calibrated churn probabilities: what serving, batch scoring and evaluation report.

    Args:
        model: The model, normally in eval mode (as :func:`load_model` returns it, with its
            folder's calibration).
        seq: Raw sequences, float32 [N, C, L].
        num: Raw numeric features, float32 [N, F].
        cat: Categorical indices, int64 [N, K].
        batch_size: Rows per forward pass; bounds memory on large inputs.

    Returns:
        Probabilities, float64 [N], on the CPU (see :func:`calibrate`).
    """
    logits = predict_logits(model, seq, num, cat, batch_size)
    return calibrate(logits, getattr(model, "calibration", IDENTITY))

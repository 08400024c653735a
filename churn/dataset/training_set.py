"""The training set folder: in-memory splits and their on-disk format.

``docs/architecture.md`` describes the folder. Building one from Feast lives in
``churn.dataset.build``; this module only reads, checks and writes it, so training and evaluation
depend on nothing but numpy.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from churn.errors import DatasetError
from churn.io.atomic import staging_dir

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
# 16,384 rows of 52 x 3 float64 values are 20 MB; the transforms hold about four such copies,
# so the statistics add ~80 MB to a build's peak (65,536 rows added ~300 MB, the peak at 1M rows).
STATS_BLOCK_ROWS = 16384


@dataclass
class Split:
    """One split of the training set, as arrays.

    Attributes:
        seq: Raw sequences, float32 [N, C, L]; index L-1 is the bin that ends at the cutoff.
        num: Raw numeric features, float32 [N, F].
        cat: Categorical indices, int64 [N, K] (0 = unknown).
        y: Labels, float32 [N] (1 = churned).
        customer_id: Customer ids [N].
        cutoff: Cutoffs as unix seconds, int64 [N].
    """

    seq: np.ndarray
    num: np.ndarray
    cat: np.ndarray
    y: np.ndarray
    customer_id: np.ndarray
    cutoff: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def positives(self) -> int:
        return int(self.y.sum())


@dataclass
class TrainingSet:
    """A training set: metadata (channels, features, normalisation) and its three splits."""

    meta: dict
    splits: dict[str, Split] = field(default_factory=dict)

    @property
    def input_spec(self) -> dict:
        """The metadata a model needs at inference time (everything but split statistics)."""
        return {k: v for k, v in self.meta.items() if k != "splits"}


def seq_transform(seq: np.ndarray) -> np.ndarray:
    """Compresses heavy-tailed counts and spend: ``log1p(max(x, 0))``."""
    return np.log1p(np.maximum(seq, 0.0))


def num_transform(num: np.ndarray) -> np.ndarray:
    """Compresses numeric features while keeping their sign: ``sign(x) * log1p(|x|)``."""
    return np.sign(num) * np.log1p(np.abs(num))


def normalisation_stats(train: Split) -> dict[str, list[float]]:
    """Per-channel and per-feature mean and std after the transforms, on the training split only.

    Args:
        train: The training split.

    Returns:
        ``seq_mean``, ``seq_std`` (one per channel) and ``num_mean``, ``num_std`` (one per
        numeric feature). A constant column gets std 1 so that normalising never divides by 0.
    """
    seq_mean, seq_std = _moments(train.seq, seq_transform, (0, 2))
    num_mean, num_std = _moments(train.num, num_transform, (0,))
    return {
        "seq_mean": seq_mean.tolist(),
        "seq_std": np.where(seq_std > 1e-8, seq_std, 1.0).tolist(),
        "num_mean": num_mean.tolist(),
        "num_std": np.where(num_std > 1e-8, num_std, 1.0).tolist(),
    }


def _moments(
    x: np.ndarray, transform: Callable[[np.ndarray], np.ndarray], axes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``transform(x)`` in float64 over ``axes``, two passes over row blocks.

    Blocks of :data:`STATS_BLOCK_ROWS` rows bound the float64 copies whatever the split's size;
    the block size is fixed, so the statistics do not depend on how the split was built.
    """
    count = int(np.prod([x.shape[a] for a in axes]))
    if count == 0:
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    blocks = range(0, len(x), STATS_BLOCK_ROWS)
    total = sum(
        transform(x[i : i + STATS_BLOCK_ROWS].astype(np.float64)).sum(axis=axes) for i in blocks
    )
    mean = np.asarray(total) / count
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    centred = mean.reshape(shape)
    squares = sum(
        np.square(transform(x[i : i + STATS_BLOCK_ROWS].astype(np.float64)) - centred).sum(
            axis=axes
        )
        for i in blocks
    )
    return mean, np.sqrt(np.asarray(squares) / count)


def save_training_set(ts: TrainingSet, out_dir: str | Path) -> Path:
    """Writes the folder atomically: a temporary sibling is filled, then renamed into place.

    Args:
        ts: The training set to write.
        out_dir: Destination folder; an existing one is replaced only once the new one is complete.

    Returns:
        The destination path.
    """
    out_dir = Path(out_dir)
    with staging_dir(out_dir, marker="meta.json") as tmp:
        for name, split in ts.splits.items():
            # copy=False: the sequences are most of the memory, and are float32 already.
            np.savez(
                tmp / f"{name}.npz",
                seq=split.seq.astype(np.float32, copy=False),
                num=split.num.astype(np.float32, copy=False),
                cat=split.cat.astype(np.int64, copy=False),
                y=split.y.astype(np.float32, copy=False),
                customer_id=split.customer_id.astype(str, copy=False),
                cutoff=split.cutoff.astype(np.int64, copy=False),
            )
        (tmp / "meta.json").write_text(json.dumps(ts.meta, indent=2))
    return out_dir


def load_training_set(path: str | Path, splits: tuple[str, ...] = SPLITS) -> TrainingSet:
    """Reads and checks a training set folder.

    Args:
        path: Folder written by :func:`save_training_set`.
        splits: Which splits to load.

    Returns:
        The training set.

    Raises:
        DatasetError: The folder or a file is missing, an array has the wrong shape or dtype,
            holds NaN or infinite values, or the training split has a single class. The message
            names the file and the array.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"training set folder {path} does not exist")
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} is missing: is {path} a training set folder?")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path} is not valid JSON: {exc}") from exc
    _check_meta(meta, meta_path)
    ts = TrainingSet(meta=meta)
    for name in splits:
        ts.splits[name] = _load_split(path / f"{name}.npz", meta)
    if "train" in ts.splits:
        y = ts.splits["train"].y
        if len(np.unique(y)) < 2:
            raise DatasetError(
                f"{path / 'train.npz'}: the training split has a single class "
                f"({int(y.sum())} positives of {len(y)}); a classifier cannot be trained on it"
            )
    return ts


def _check_meta(meta: object, meta_path: Path) -> None:
    """Checks the fields every reader relies on, so a hand-edited file fails here, by name."""

    def fail(message: str) -> DatasetError:
        return DatasetError(f"{meta_path}: {message}")

    if not isinstance(meta, dict):
        raise fail("must hold a JSON object")
    for key in ("channels", "seq_len", "numeric_features", "categorical_features", "norm"):
        if key not in meta:
            raise DatasetError(f"{meta_path} lacks the field {key!r}")

    def names(key: str, allow_empty: bool) -> list:
        value = meta[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{key!r} must be a list of names, got {value!r}")
        if not value and not allow_empty:
            raise fail(f"{key!r} must name at least one channel")
        return value

    channels = names("channels", allow_empty=False)
    numeric = names("numeric_features", allow_empty=True)
    seq_len = meta["seq_len"]
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise fail(f"'seq_len' must be a positive integer, got {seq_len!r}")
    vocabs = meta["categorical_features"]
    if not isinstance(vocabs, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in vocabs.values()
    ):
        raise fail("'categorical_features' must map each feature to a non-empty list of values")
    norm = meta["norm"]
    if not isinstance(norm, dict):
        raise fail(f"'norm' must be an object, got {norm!r}")
    for key, size in (
        ("seq_mean", len(channels)),
        ("seq_std", len(channels)),
        ("num_mean", len(numeric)),
        ("num_std", len(numeric)),
    ):
        values = norm.get(key)
        if (
            not isinstance(values, list)
            or len(values) != size
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
        ):
            raise fail(f"norm.{key} must hold {size} finite numbers, got {values!r}")
        if key.endswith("_std") and any(v <= 0 for v in values):
            raise fail(f"norm.{key} must be positive (it divides), got {values!r}")


def _load_split(file: Path, meta: dict) -> Split:
    if not file.is_file():
        raise DatasetError(f"{file} is missing")
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # Truncated or damaged: an interrupted copy, a full disk, a partial download.
        raise DatasetError(
            f"{file} is not a readable .npz file (truncated or damaged?): {exc}"
        ) from exc
    for key in ("seq", "num", "cat", "y", "customer_id", "cutoff"):
        if key not in arrays:
            raise DatasetError(f"{file} lacks the array {key!r}")
    n = len(arrays["y"])
    c, seq_len = len(meta["channels"]), int(meta["seq_len"])
    f, k = len(meta["numeric_features"]), len(meta["categorical_features"])
    expected = {
        "seq": (n, c, seq_len),
        "num": (n, f),
        "cat": (n, k),
        "y": (n,),
        "customer_id": (n,),
        "cutoff": (n,),
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise DatasetError(
                f"{file}: array {key!r} has shape {arrays[key].shape}, expected {shape} "
                f"(channels={c}, seq_len={seq_len}, numeric={f}, categorical={k})"
            )
    for key in ("seq", "num", "y"):
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(
                f"{file}: array {key!r} holds NaN or infinite values (first at row {row})"
            )
    if not np.isin(arrays["y"], (0.0, 1.0)).all():
        raise DatasetError(f"{file}: labels 'y' must be 0 or 1")
    for j, (name, vocab) in enumerate(meta["categorical_features"].items()):
        col = arrays["cat"][:, j]
        if len(col) and (col.min() < 0 or col.max() >= len(vocab)):
            raise DatasetError(f"{file}: categorical {name!r} has indices outside its vocabulary")
    return Split(
        seq=arrays["seq"].astype(np.float32, copy=False),
        num=arrays["num"].astype(np.float32, copy=False),
        cat=arrays["cat"].astype(np.int64, copy=False),
        y=arrays["y"].astype(np.float32, copy=False),
        customer_id=arrays["customer_id"],
        cutoff=arrays["cutoff"].astype(np.int64, copy=False),
    )

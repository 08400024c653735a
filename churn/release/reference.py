"""A version's reference summary: what its training set looked like, for the drift monitor.

The monitor compares served traffic with the data the model was built from, later and from
another pod, so the comparison's reference travels with the version in the registry as
``reference.parquet``: one split's rows (``registry.reference_split``, by default the
training split) summarised by the same :func:`churn.features.summary.summarize`
the inference log uses (same columns, same meaning), plus the model's ``churn_probability`` on
each row. A large split is sampled (seeded) to keep the file and the monitor's work bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from churn.dataset.training_set import Split, load_training_set
from churn.errors import ModelError
from churn.features.summary import summarize, summary_schema, summary_windows
from churn.model.network import ModelFormatError, load_model, predict_proba

SCORE_COLUMN = "churn_probability"
# What the summary's columns are computed from; the rest of the spec does not change them.
_INPUT_FIELDS = ("channels", "seq_len", "numeric_features", "categorical_features")


def decode_categories(cat: np.ndarray, vocabularies: dict[str, list[str]]) -> np.ndarray:
    """Turns a split's category indices back into the raw values serving sends.

    Args:
        cat: Indices [N, K]; 0 is the unknown value.
        vocabularies: The training set's ``categorical_features`` (feature to vocabulary).

    Returns:
        Object array [N, K] of strings, ``None`` where the index is 0 (unknown).
    """
    out = np.empty(cat.shape, dtype=object)
    for k, vocab in enumerate(vocabularies.values()):
        values = np.array([None, *vocab[1:]], dtype=object)
        out[:, k] = values[cat[:, k]]
    return out


def reference_table(
    model_dir: str | Path, dataset_dir: str | Path, max_rows: int, seed: int, split: str = "train"
) -> pa.Table:
    """The reference summary of one split of a model's training set, with the model's scores.

    Args:
        model_dir: Model folder (``model.pt``, ``model.json``).
        dataset_dir: The training set folder the model was trained on.
        max_rows: Most rows kept; a larger split is sampled without replacement.
        seed: Seed of the sample.
        split: ``train``, ``val`` or ``test`` (``registry.reference_split``).

    Returns:
        The summary columns (``summary_schema``) followed by ``churn_probability``.

    Raises:
        ModelError: The model folder cannot be loaded or its inputs differ from the
            training set's.
        DatasetError: The training set is unreadable.
    """
    try:
        model, meta = load_model(Path(model_dir))
    except ModelFormatError as exc:
        raise ModelError(str(exc)) from exc
    ts = load_training_set(dataset_dir, splits=(split,))
    spec = meta["input_spec"]
    for key in _INPUT_FIELDS:
        # Lists of items: the order of the categorical columns is part of the meaning.
        ours, theirs = spec.get(key), ts.meta.get(key)
        if _items(ours) != _items(theirs):
            raise ModelError(
                f"model {model_dir} does not fit training set {dataset_dir}: {key!r} is "
                f"{ours!r} in the model and {theirs!r} in the training set"
            )
    rows = _sample(ts.splits[split], max_rows, seed)
    seq_len = int(spec["seq_len"])
    windows = summary_windows(
        list(meta.get("architecture", {}).get("windows", [])) or [seq_len], seq_len
    )
    cat = decode_categories(rows.cat, spec["categorical_features"])
    columns = summarize(rows.seq, rows.num, cat, spec, windows)
    schema = summary_schema(spec, windows).append(pa.field(SCORE_COLUMN, pa.float64()))
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema if f.name != SCORE_COLUMN]
    arrays.append(pa.array(_scores(model, rows), type=pa.float64()))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_reference(
    model_dir: str | Path,
    dataset_dir: str | Path,
    out: str | Path,
    max_rows: int,
    seed: int,
    split: str = "train",
) -> Path:
    """Writes :func:`reference_table` as Parquet to ``out`` (a staging file, not the registry).

    Returns:
        ``out``; ``Registry.publish(reference=out)`` stores it as ``reference.parquet``.
    """
    out = Path(out)
    pq.write_table(reference_table(model_dir, dataset_dir, max_rows, seed, split), out)
    return out


def _items(value: object) -> object:
    return list(value.items()) if isinstance(value, dict) else value


def _sample(split: Split, max_rows: int, seed: int) -> Split:
    if len(split) <= max_rows:
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), max_rows, replace=False))
    return Split(
        split.seq[rows],
        split.num[rows],
        split.cat[rows],
        split.y[rows],
        split.customer_id[rows],
        split.cutoff[rows],
    )


def _scores(model: torch.nn.Module, split: Split) -> np.ndarray:
    probs = predict_proba(
        model, torch.from_numpy(split.seq), torch.from_numpy(split.num), torch.from_numpy(split.cat)
    )
    return probs.numpy().astype(np.float64)

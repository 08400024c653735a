"""A version's reference summary: the serving summary of the training split, with scores."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from churn.dataset.training_set import load_training_set
from churn.errors import ModelError, RegistryError
from churn.features.summary import summarize, summary_windows
from churn.model.network import build_model, load_model, predict_proba, save_model
from churn.release.reference import reference_table, write_reference
from churn.release.registry import open_registry
from churn.settings import RegistryConfig

ARCH = {
    "windows": [1, 4, 13, 52],
    "stem_stride": 1,
    "hidden": 4,
    "kernel_size": 2,
    "dilations": [1],
    "dropout": 0.0,
    "embedding_dim": 2,
    "head_hidden": 4,
}


def model_for(dataset: Path, dest: Path) -> Path:
    spec = load_training_set(dataset, splits=("train",)).input_spec
    torch.manual_seed(0)
    return save_model(build_model(spec, ARCH), spec, ARCH, 0.5, dest)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_the_reference_equals_what_serving_summarises_for_the_same_rows(
    planted_training_set: Path, tmp_path: Path, split: str
) -> None:
    model_dir = model_for(planted_training_set, tmp_path / "model")
    table = reference_table(model_dir, planted_training_set, max_rows=100_000, seed=0, split=split)
    train = load_training_set(planted_training_set, splits=(split,)).splits[split]
    model, meta = load_model(model_dir)
    spec = meta["input_spec"]
    # Serving sends the raw category value, or None when the store has none.
    vocab = spec["categorical_features"]["segment"]
    raw_cat = np.array([[None if i == 0 else vocab[i]] for i in train.cat[:, 0]], dtype=object)
    expected = summarize(train.seq, train.num, raw_cat, spec, summary_windows(ARCH["windows"], 16))
    assert table.num_rows == len(train)
    assert table.column_names == [*expected, "churn_probability"]
    for name, values in expected.items():
        if values.dtype == np.float64:  # NaN where a column is undefined (the ticket change)
            np.testing.assert_array_equal(table.column(name).to_numpy(), values, err_msg=name)
        else:
            assert table.column(name).to_pylist() == values.tolist(), name
    scores = predict_proba(
        model, torch.from_numpy(train.seq), torch.from_numpy(train.num), torch.from_numpy(train.cat)
    )
    np.testing.assert_allclose(table.column("churn_probability").to_numpy(), scores.numpy())


def test_by_default_the_reference_is_the_training_split(
    planted_training_set: Path, tmp_path: Path
) -> None:
    model_dir = model_for(planted_training_set, tmp_path / "model")
    default = reference_table(model_dir, planted_training_set, max_rows=100_000, seed=0)
    train = reference_table(
        model_dir, planted_training_set, max_rows=100_000, seed=0, split="train"
    )
    assert RegistryConfig().reference_split == "train"
    assert default.to_pandas().equals(train.to_pandas())  # NaN-aware, unlike Table.equals
    splits = load_training_set(planted_training_set).splits
    assert default.num_rows == len(splits["train"]) != len(splits["test"])


def test_a_large_split_is_sampled_to_the_bound_and_the_same_seed_gives_the_same_rows(
    planted_training_set: Path, tmp_path: Path
) -> None:
    model_dir = model_for(planted_training_set, tmp_path / "model")
    first = reference_table(model_dir, planted_training_set, max_rows=200, seed=3)
    again = reference_table(model_dir, planted_training_set, max_rows=200, seed=3)
    other = reference_table(model_dir, planted_training_set, max_rows=200, seed=4)
    assert first.num_rows == 200
    assert first.to_pandas().equals(again.to_pandas())  # NaN-aware, unlike Table.equals
    assert not first.to_pandas().equals(other.to_pandas())


def test_a_model_that_does_not_fit_the_training_set_gets_no_reference(
    make_training_set: Callable[..., Path], tmp_path: Path
) -> None:
    model_dir = model_for(make_training_set(tmp_path, "a", n=300), tmp_path / "model")
    longer = make_training_set(tmp_path, "b", n=300, seq_len=20)
    with pytest.raises(ModelError, match=r"does not fit training set .*'seq_len' is 16"):
        reference_table(model_dir, longer, max_rows=100, seed=0)


def test_a_published_reference_is_part_of_the_version_and_read_back_from_the_registry(
    planted_training_set: Path, tmp_path: Path
) -> None:
    model_dir = model_for(planted_training_set, tmp_path / "model")
    out = write_reference(model_dir, planted_training_set, tmp_path / "ref.parquet", 500, 0)
    registry = open_registry(RegistryConfig(uri=str(tmp_path / "registry")))
    registry.publish(model_dir, {"roc_auc": 0.8}, version="v1", reference=out)
    marker = json.loads((tmp_path / "registry/churn/versions/v1/_COMPLETE").read_text())
    assert marker["files"]["reference.parquet"]["size"] == out.stat().st_size
    assert pq.read_table(io.BytesIO(registry.reference("v1"))).num_rows == 500


def test_a_version_published_without_a_reference_says_so_in_one_line(
    tiny_model: Callable[[Path, int], Path], tmp_path: Path
) -> None:
    registry = open_registry(RegistryConfig(uri=str(tmp_path / "registry")))
    registry.publish(tiny_model(tmp_path / "model", 0), {"roc_auc": 0.8}, version="v1")
    with pytest.raises(RegistryError, match=r"^version v1 of churn has no reference.parquet"):
        registry.reference("v1")

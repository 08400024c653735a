"""Calibrated probabilities: Platt scaling fitted on validation, stored, and applied on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from churn.dataset.training_set import Split, load_training_set
from churn.model import metrics as m
from churn.model.calibration import fit_platt
from churn.model.network import load_model, predict_logits, predict_proba, read_calibration
from churn.model.train import train
from churn.settings import ModelConfig, TrainConfig

TINY = ModelConfig(hidden=16, dilations=[1, 2, 4], embedding_dim=2, head_hidden=16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tensors(split: Split) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in (split.seq, split.num, split.cat))


@pytest.fixture(scope="module")
def miscalibrated(tmp_path_factory: pytest.TempPathFactory, make_training_set) -> tuple[Path, Path]:
    """A planted set and a CNN trained with a heavy positive weight, which inflates its scores."""
    root = tmp_path_factory.mktemp("calibration")
    dataset = make_training_set(root, n=1500, seed=2)
    cfg = TrainConfig(epochs=4, batch_size=128, lr=5e-3, pos_weight="8", device="cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dataset, root / "model", TINY, cfg)
    finally:
        torch.set_num_threads(previous)
    return dataset, root / "model"


def test_platt_scaling_recovers_a_planted_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, 200_000)
    y = (rng.random(len(logits)) < 1 / (1 + np.exp(-(0.4 * logits - 1.5)))).astype(float)
    slope, intercept = fit_platt(logits, y)
    assert slope == pytest.approx(0.4, abs=0.01)
    assert intercept == pytest.approx(-1.5, abs=0.02)


def test_platt_scaling_stays_finite_on_a_separable_split() -> None:
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1], dtype=float)
    slope, intercept = fit_platt(logits, y)
    assert 0 < slope < 100 and np.isfinite(intercept)


@pytest.mark.parametrize(
    ("logits", "y", "match"),
    [
        (np.zeros(3), np.ones(3), "both classes"),
        (np.array([0.0, np.nan]), np.array([0.0, 1.0]), "NaN"),
        (np.zeros(3), np.zeros(2), "shape"),
    ],
    ids=["one-class", "nan", "lengths"],
)
def test_platt_scaling_refuses_input_it_cannot_fit(
    logits: np.ndarray, y: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        fit_platt(logits, y)


def test_calibration_lowers_the_log_loss_of_a_miscalibrated_model(
    miscalibrated: tuple[Path, Path],
) -> None:
    dataset, model_dir = miscalibrated
    model, meta = load_model(model_dir)
    calibration = meta["calibration"]
    assert calibration["method"] == "platt" and calibration["fitted_on"] == "val"
    # pos_weight 8 adds about log(8) = 2.1 to every logit; the intercept takes it back.
    assert calibration["intercept"] < -1.0
    assert calibration["val_log_loss_after"] < calibration["val_log_loss_before"] - 0.1
    # On the test split, which the fit never saw.
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    raw = torch.sigmoid(predict_logits(model, *tensors(test)).double()).numpy()
    calibrated = predict_proba(model, *tensors(test)).numpy()
    assert m.log_loss(test.y, calibrated) < m.log_loss(test.y, raw) - 0.1
    assert m.brier(test.y, calibrated) < m.brier(test.y, raw) - 0.02


def test_calibration_leaves_the_ranking_unchanged(miscalibrated: tuple[Path, Path]) -> None:
    dataset, model_dir = miscalibrated
    model, _ = load_model(model_dir)
    for name, split in load_training_set(dataset, splits=("val", "test")).splits.items():
        logits = predict_logits(model, *tensors(split)).numpy()
        calibrated = predict_proba(model, *tensors(split)).numpy()
        assert abs(m.roc_auc(split.y, calibrated) - m.roc_auc(split.y, logits)) < 1e-12, name


def test_the_stored_threshold_is_on_the_calibrated_scale(miscalibrated: tuple[Path, Path]) -> None:
    dataset, model_dir = miscalibrated
    model, meta = load_model(model_dir)
    val = load_training_set(dataset, splits=("val",)).splits["val"]
    calibrated = predict_proba(model, *tensors(val)).numpy()
    assert meta["threshold"] == m.choose_threshold(val.y, calibrated, "f1")
    assert meta["val_metrics"] == m.binary_metrics(val.y, calibrated, meta["threshold"])


def test_a_model_folder_without_calibration_predicts_the_raw_sigmoid(
    miscalibrated: tuple[Path, Path], tmp_path: Path, tiny_model
) -> None:
    dataset, model_dir = miscalibrated
    # A folder written before calibration existed: the same files, no "calibration" field.
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.pt").write_bytes((model_dir / "model.pt").read_bytes())
    meta = json.loads((model_dir / "model.json").read_text())
    del meta["calibration"]
    (old / "model.json").write_text(json.dumps(meta))

    model, _ = load_model(old)
    assert model.calibration == (1.0, 0.0)
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    with torch.no_grad():
        logits = model(*tensors(test))
    np.testing.assert_array_equal(
        predict_proba(model, *tensors(test)).numpy(), torch.sigmoid(logits.double()).numpy()
    )
    # save_model without a calibration writes none.
    assert "calibration" not in json.loads(
        (tiny_model(tmp_path / "t", 0) / "model.json").read_text()
    )


def test_logits_that_rank_churners_lower_are_left_uncalibrated() -> None:
    from churn.model.train import _calibration

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.3).astype(np.float32)
    logits = (rng.normal(0.0, 1.0, 2000) - 2.0 * y).astype(np.float32)
    calibration = _calibration(logits, y)
    # A positive slope cannot fit, and a negative one would reverse the ranking.
    assert calibration["method"] == "none" and calibration["fitted_slope"] < 0
    assert read_calibration(calibration) == (1.0, 0.0)

"""Evaluation: outputs and their contracts, val-only thresholds, a self-contained report, errors."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from churn import cli
from churn.errors import DatasetError, ModelError
from churn.evaluation.evaluate import evaluate, roc_curve_points
from churn.evaluation.report import PLOTS
from churn.model.train import train
from churn.settings import ModelConfig, TrainConfig

METRIC_KEYS = {
    "roc_auc",
    "pr_auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier",
    "threshold",
    "n_test",
    "positive_rate",
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # OpenMP threads spin-wait; on a small shared machine one thread is several times faster.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_training_set) -> tuple[Path, Path]:
    """A planted training set and a CNN trained on it for one epoch (the real train output)."""
    root = tmp_path_factory.mktemp("evaluate")
    dataset = make_training_set(root, n=1000, seed=1)
    model_cfg = ModelConfig(hidden=8, dilations=[1, 2], head_hidden=8)
    with threadpool_limits(1):
        train(dataset, root / "model", model_cfg, TrainConfig(epochs=1, batch_size=256))
    return dataset, root / "model"


@pytest.fixture(scope="module")
def evaluated(trained: tuple[Path, Path], tmp_path_factory) -> tuple[dict, Path]:
    dataset, model = trained
    out = tmp_path_factory.mktemp("eval-out") / "eval"
    out.mkdir()
    # An earlier evaluation's folder, in which the user left a file: rewritten, the file kept.
    earlier = {"roc_auc": 0.5, "baselines": {}, "auc_vs_baselines": {}, "confusion_matrix": {}}
    (out / "metrics.json").write_text(json.dumps(earlier))
    (out / "keep.txt").write_text("not ours")
    with threadpool_limits(1):
        return evaluate(model, dataset, out), out


def _reject_nan(token: str) -> float:
    raise AssertionError(f"metrics.json holds {token}, which is not JSON")


def test_writes_metrics_plots_and_report(evaluated: tuple[dict, Path], trained) -> None:
    result, out = evaluated
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "report.html", "keep.txt", *PLOTS}
    on_disk = json.loads((out / "metrics.json").read_text(), parse_constant=_reject_nan)
    assert on_disk == json.loads(json.dumps(result))

    assert set(result) >= METRIC_KEYS
    assert set(result["baselines"]) == {"hist_gradient_boosting", "logistic_regression"}
    for name, metrics in result["baselines"].items():
        assert set(metrics) >= METRIC_KEYS
        versus = result["auc_vs_baselines"][name]
        assert versus["difference"] == pytest.approx(result["roc_auc"] - metrics["roc_auc"])
        low, high = versus["ci95"]
        assert versus["se"] > 0 and low < versus["difference"] < high
    # The CNN keeps the threshold training chose on validation.
    model_json = json.loads((trained[1] / "model.json").read_text())
    assert result["threshold"] == model_json["threshold"]
    # Its probabilities are the calibrated ones; the raw sigmoid's scores sit beside them.
    assert result["calibration"] == model_json["calibration"]
    assert result["calibration"]["method"] == "platt"
    assert set(result["uncalibrated"]) == {"log_loss", "brier"}
    assert result["uncalibrated"]["log_loss"] != result["log_loss"]
    assert result["n_test"] == result["splits"]["test"]["rows"] == 200

    curve = result["roc_curve"]
    assert len(curve["fpr"]) == len(curve["tpr"]) == len(curve["thresholds"]) <= 200
    assert curve["fpr"][0] == curve["tpr"][0] == 0.0 and curve["fpr"][-1] == curve["tpr"][-1] == 1.0
    cm = result["confusion_matrix"]
    assert cm["categories"] == ["retained", "churned"]
    assert np.sum(cm["matrix"]) == result["n_test"]
    assert sum(cm["matrix"][1]) == result["splits"]["test"]["positives"]
    for name in PLOTS:
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_report_is_self_contained(evaluated: tuple[dict, Path]) -> None:
    _, out = evaluated
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(PLOTS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "CNN minus Logistic regression" in page
    for label in ("ROC-AUC", "PR-AUC", "Precision", "Recall", "F1", "Log loss", "Brier score"):
        assert label in page
    for model in ("CNN", "Gradient boosting", "Logistic regression"):
        assert model in page
    assert 'class="best"' in page
    assert "Platt-scaled" in page and "Uncalibrated, its test log loss was" in page
    assert "Training set splits" in page


def test_thresholds_come_from_validation_never_test(
    trained: tuple[Path, Path], evaluated: tuple[dict, Path], tmp_path: Path
) -> None:
    dataset, model = trained
    original, _ = evaluated
    corrupted = shutil.copytree(dataset, tmp_path / "corrupted")
    with np.load(corrupted / "test.npz") as z:
        arrays = dict(z)
    rng = np.random.default_rng(0)
    arrays["y"] = rng.permutation(arrays["y"])
    arrays["seq"] = rng.permutation(arrays["seq"])
    np.savez(corrupted / "test.npz", **arrays)

    result = evaluate(model, corrupted, tmp_path / "out")
    assert result["roc_auc"] != original["roc_auc"]
    assert result["threshold"] == original["threshold"]
    for name, metrics in result["baselines"].items():
        assert metrics["threshold"] == original["baselines"][name]["threshold"], name


def test_roc_curve_points_are_downsampled_to_the_limit() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.3).astype(float)
    s = np.clip(0.2 * y + rng.random(5000) * 0.8, 0, 1)
    curve = roc_curve_points(y, s, max_points=200)
    fpr, tpr, thr = (np.array(curve[k]) for k in ("fpr", "tpr", "thresholds"))
    assert 2 < len(fpr) <= 200 and len(tpr) == len(thr) == len(fpr)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all() and (np.diff(thr) < 0).all()
    assert np.isfinite(thr).all() and thr[0] > s.max()


def _corrupt_meta(dataset: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(dataset, tmp_path / "broken")
    (broken / "meta.json").write_text("{not json")
    return broken


def _drop_test(dataset: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(dataset, tmp_path / "broken")
    (broken / "test.npz").unlink()
    return broken


def _single_class_test(dataset: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(dataset, tmp_path / "broken")
    with np.load(broken / "test.npz") as z:
        arrays = dict(z)
    arrays["y"] = np.zeros_like(arrays["y"])
    np.savez(broken / "test.npz", **arrays)
    return broken


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda d, t: t / "missing", "does not exist"),
        (_corrupt_meta, "not valid JSON"),
        (_drop_test, "test.npz is missing"),
        (_single_class_test, "needs both classes"),
    ],
    ids=["missing", "bad-meta", "no-test-split", "single-class-test"],
)
def test_bad_training_set_raises_dataset_error(
    trained: tuple[Path, Path], tmp_path: Path, breaker, message: str
) -> None:
    dataset, model = trained
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=message):
        evaluate(model, breaker(dataset, tmp_path), out)
    assert not out.exists()


def _corrupt_model_json(model: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(model, tmp_path / "model")
    (broken / "model.json").write_text("[]")
    return broken


def _threshold_out_of_range(model: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((broken / "model.json").read_text())
    meta["threshold"] = 1.5
    (broken / "model.json").write_text(json.dumps(meta))
    return broken


def _other_input_spec(model: Path, tmp_path: Path) -> Path:
    broken = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((broken / "model.json").read_text())
    meta["input_spec"]["numeric_features"] = ["tenure_days", "spend_total"]
    (broken / "model.json").write_text(json.dumps(meta))
    return broken


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda m, t: t / "missing", "does not exist"),
        (_corrupt_model_json, "JSON object"),
        (_threshold_out_of_range, "threshold must be a probability"),
        (_other_input_spec, "does not fit training set"),
    ],
    ids=["missing", "bad-json", "bad-threshold", "other-spec"],
)
def test_bad_model_raises_model_error(
    trained: tuple[Path, Path], tmp_path: Path, breaker, message: str
) -> None:
    dataset, model = trained
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=message):
        evaluate(breaker(model, tmp_path), dataset, out)
    assert not out.exists()


def test_unknown_threshold_metric_is_rejected(trained: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, model = trained
    with pytest.raises(ValueError, match="unknown threshold metric"):
        evaluate(model, dataset, tmp_path / "out", threshold_metric="auc")


def test_cli_prints_the_comparison_and_fails_cleanly(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, model = trained
    runner = CliRunner()
    args = ["evaluate", "--model", str(model), "--dataset", str(dataset)]
    ok = runner.invoke(cli.app, [*args, "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert "ROC-AUC" in ok.output and "Gradient boosting" in ok.output
    assert (tmp_path / "out" / "report.html").is_file()

    missing = ["--model", str(tmp_path / "nope"), "--dataset", str(dataset)]
    bad = runner.invoke(cli.app, ["evaluate", *missing, "--out", str(tmp_path / "out2")])
    assert bad.exit_code == 2
    assert "does not exist" in bad.output

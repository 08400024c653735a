"""Evaluation of a trained model against its training set, with baselines, plots and a report.

The CNN is scored with the decision threshold stored in its model folder, which training
chose on the validation split. Baselines are fitted here on the same splits and choose their
own thresholds on validation. The test split only ever produces the reported numbers.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from churn.dataset.training_set import Split, TrainingSet, load_training_set
from churn.errors import DatasetError, ModelError
from churn.evaluation import report
from churn.evaluation.baselines import run_baselines
from churn.io.atomic import check_replaceable
from churn.io.leftovers import owner_tag, sweep
from churn.model import metrics as m
from churn.model.network import (
    ChurnCNN,
    ModelFormatError,
    calibrate,
    load_model,
    predict_logits,
)
from churn.model.spec import SPEC_FIELDS

log = logging.getLogger(__name__)

MAX_CURVE_POINTS = 200


def _load_model(model_dir: Path) -> tuple[ChurnCNN, dict, float]:
    try:
        model, meta = load_model(model_dir)
    except ModelFormatError as exc:
        raise ModelError(str(exc)) from exc
    threshold = meta["threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ModelError(
            f"{model_dir / 'model.json'}: threshold must be a probability in [0, 1], "
            f"got {threshold!r}"
        )
    return model, meta, float(threshold)


def _check_fit(meta: dict, ts: TrainingSet, model_dir: Path, dataset_dir: Path) -> None:
    # ``norm`` may differ (the model carries its own); the fields that give the inputs and the
    # labels their meaning may not: the number would mean nothing.
    spec = meta["input_spec"]
    for key in SPEC_FIELDS:
        # Item lists, not dicts: the order of categorical features is the order of cat columns.
        ours, theirs = spec.get(key), ts.meta.get(key)
        if isinstance(ours, dict) and isinstance(theirs, dict):
            ours, theirs = list(ours.items()), list(theirs.items())
        if ours != theirs:
            raise ModelError(
                f"model {model_dir} does not fit training set {dataset_dir}: {key!r} is "
                f"{spec.get(key)!r} in the model and {ts.meta.get(key)!r} in the training set"
            )


def _check_splits(ts: TrainingSet, dataset_dir: Path) -> None:
    for name in ("val", "test"):
        y = ts.splits[name].y
        positives = int(y.sum())
        if positives == 0 or positives == len(y):
            raise DatasetError(
                f"{dataset_dir / (name + '.npz')}: the {name} split needs both classes to "
                f"evaluate, it has {positives} churned of {len(y)} rows"
            )


def _logits(model: torch.nn.Module, split: Split) -> torch.Tensor:
    return predict_logits(
        model, torch.from_numpy(split.seq), torch.from_numpy(split.num), torch.from_numpy(split.cat)
    )


def _score(model: ChurnCNN, split: Split) -> np.ndarray:
    """Calibrated probabilities, as ``predict_proba`` and serving compute them."""
    return calibrate(_logits(model, split), model.calibration).numpy()


def auc_on_test_split(model_dir: str | Path, dataset_dir: str | Path) -> float:
    """A model's ROC-AUC on a training set's test split (how the gate re-scores the champion).

    Args:
        model_dir: A model folder.
        dataset_dir: A training set folder.

    Returns:
        The ROC-AUC on the test split.

    Raises:
        ModelError: The model folder is malformed or does not fit the training set.
        DatasetError: The training set folder is malformed.
        ValueError: The test split holds a single class.
    """
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    model, meta, _ = _load_model(model_dir)
    ts = load_training_set(dataset_dir, splits=("test",))
    _check_fit(meta, ts, model_dir, dataset_dir)
    test = ts.splits["test"]
    return m.roc_auc(test.y, _score(model, test))


def _split_summary(split: Split) -> dict:
    days = np.unique(split.cutoff).astype("datetime64[s]").astype("datetime64[D]")
    return {
        "rows": len(split),
        "positives": split.positives,
        "negatives": len(split) - split.positives,
        "positive_rate": float(split.y.mean(dtype=np.float64)) if len(split) else 0.0,
        "cutoffs": [str(d) for d in days],
    }


def _test_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    result = m.binary_metrics(y, scores, threshold)
    result["n_test"] = result.pop("n")
    return result


def _auc_comparison(y: np.ndarray, cnn: np.ndarray, baseline: np.ndarray) -> dict:
    """The CNN's test ROC-AUC minus a baseline's, with DeLong's standard error and 95% CI."""
    diff, se = m.auc_difference(y, cnn, baseline)
    if not np.isfinite(se):  # a class with one row: no variance, so no interval (JSON null)
        return {"difference": diff, "se": None, "ci95": None}
    return {"difference": diff, "se": se, "ci95": [diff - 1.96 * se, diff + 1.96 * se]}


def roc_curve_points(
    y: np.ndarray, scores: np.ndarray, max_points: int = MAX_CURVE_POINTS
) -> dict[str, list[float]]:
    """A ROC curve small enough for ``metrics.json`` and Kubeflow's ClassificationMetrics.

    Collinear intermediate points are dropped first (they add nothing to the plotted shape),
    then at most ``max_points`` are kept evenly along the curve, both ends included. The
    leading infinite threshold becomes the next float above the highest score, which selects
    the same (empty) set of positives and is valid JSON.

    Args:
        y: Labels, 0 or 1, with both classes.
        scores: Probabilities.
        max_points: Most points to keep (at least 2).

    Returns:
        ``fpr``, ``tpr`` and ``thresholds`` lists of equal length.
    """
    fpr, tpr, thr = m.roc_curve(y, scores)
    thr[0] = np.nextafter(thr[1], np.inf)
    corner = np.r_[True, (np.diff(fpr, 2) != 0) | (np.diff(tpr, 2) != 0), True]
    fpr, tpr, thr = fpr[corner], tpr[corner], thr[corner]
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def _write_outputs(out_dir: Path, files: dict[str, bytes]) -> None:
    """Writes every file to a temporary name first, then renames each into place.

    Renames are atomic, and they happen only once every file is fully written, in the
    order given: callers put ``metrics.json`` last so that its presence marks a complete set.
    Other files in ``out_dir`` are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in files.items():
            # What a killed earlier run left; the name says which process owned it.
            sweep(out_dir, f".{name}.tmp-")
            # open(..., "xb") rather than mkstemp: the files get the umask's permissions
            # (mkstemp's are owner-only), which a reader in another container may need.
            tmp = out_dir / f".{name}.tmp-{owner_tag()}"
            staged.append((name, tmp))
            with open(tmp, "xb") as fh:
                fh.write(data)
        for name, tmp in staged:
            os.replace(tmp, out_dir / name)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)


_EVALUATION_KEYS = ("roc_auc", "baselines", "auc_vs_baselines", "confusion_matrix")


def _earlier_evaluation(folder: Path) -> bool:
    """Whether the folder holds a ``metrics.json`` that :func:`evaluate` wrote."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and all(key in metrics for key in _EVALUATION_KEYS)


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    out_dir: str | Path,
    threshold_metric: str = "f1",
    seed: int = 0,
) -> dict:
    """Scores a model on its training set's test split beside two baselines and writes a report.

    Args:
        model_dir: Model folder written by ``churn.model.network.save_model``.
        dataset_dir: Training set folder the model was trained on (or one with the same
            input spec).
        out_dir: Output folder; receives ``metrics.json``, ``report.html`` and the PNG plots
            listed in ``churn.evaluation.report.PLOTS``. It must be new, empty or an earlier
            evaluation output (its ``metrics.json`` holds this function's keys); other files
            in it are kept.
        threshold_metric: Metric each baseline maximises on the validation split to pick its
            threshold (``f1`` or ``youden``). The CNN keeps the threshold stored with it.
        seed: Seed of the gradient-boosting baseline.

    Returns:
        The contents of ``metrics.json``: the CNN's test ``roc_auc``, ``pr_auc``,
        ``accuracy``, ``precision``, ``recall``, ``f1``, ``log_loss``, ``brier``,
        ``threshold``, ``n_test``, ``positive_rate`` and ``predicted_positive_rate``; ``val``
        (the CNN's validation metrics at the same threshold); ``calibration`` (the model
        folder's, ``None`` without one) and ``uncalibrated`` (the CNN's test ``log_loss`` and
        ``brier`` of the raw sigmoid, for comparison); ``baselines`` (the same test
        metrics per baseline) and ``baseline_params``; ``splits`` (row and class counts and
        cutoffs per split); ``roc_curve`` (``fpr``, ``tpr``, ``thresholds``, at most 200
        points) and ``confusion_matrix`` (``categories`` and ``matrix``, rows true classes,
        columns predicted), shaped for Kubeflow's ClassificationMetrics.

    Raises:
        ModelError: The model folder is missing or malformed, its threshold is not a
            probability, or its input spec does not fit the training set.
        DatasetError: The training set folder is missing or malformed, or its validation or
            test split holds a single class.
        OutputError: ``out_dir`` or a parent is a file, ``out_dir`` is a non-empty folder that
            holds no earlier evaluation, or it cannot be written (checked before the work).
        ValueError: ``threshold_metric`` is unknown.
    """
    if threshold_metric not in m.THRESHOLD_METRICS:
        raise ValueError(
            f"unknown threshold metric {threshold_metric!r}; expected one of {m.THRESHOLD_METRICS}"
        )
    model_dir, dataset_dir, out_dir = Path(model_dir), Path(dataset_dir), Path(out_dir)
    check_replaceable(
        out_dir, None, earlier=_earlier_evaluation, kind="evaluation output", in_place=True
    )
    model, meta, threshold = _load_model(model_dir)
    ts = load_training_set(dataset_dir)
    _check_fit(meta, ts, model_dir, dataset_dir)
    _check_splits(ts, dataset_dir)

    val, test = ts.splits["val"], ts.splits["test"]
    val_scores = _score(model, val)
    test_logits = _logits(model, test)
    test_scores = calibrate(test_logits, model.calibration).numpy()
    # The raw sigmoid, for the report's comparison: what serving answered before calibration.
    raw_scores = calibrate(test_logits).numpy()
    log.info("fitting baselines on %d training rows", len(ts.splits["train"]))
    baselines = run_baselines(ts, threshold_metric=threshold_metric, seed=seed)

    result = _test_metrics(test.y, test_scores, threshold)
    val_metrics = m.binary_metrics(val.y, val_scores, threshold)
    result.update(
        {
            "threshold_metric": threshold_metric,
            "model_dir": str(model_dir),
            "dataset_dir": str(dataset_dir),
            "val": val_metrics,
            "calibration": meta.get("calibration"),
            "uncalibrated": {
                "log_loss": m.log_loss(test.y, raw_scores),
                "brier": m.brier(test.y, raw_scores),
            },
            "baselines": {
                name: _test_metrics(test.y, b.test_scores, b.threshold)
                for name, b in baselines.items()
            },
            "baseline_params": {name: b.params for name, b in baselines.items()},
            "auc_vs_baselines": {
                name: _auc_comparison(test.y, test_scores, b.test_scores)
                for name, b in baselines.items()
            },
            "splits": {name: _split_summary(s) for name, s in ts.splits.items()},
            "roc_curve": roc_curve_points(test.y, test_scores),
            "confusion_matrix": {
                "categories": list(report.CLASS_NAMES),
                "matrix": m.confusion_matrix(test.y, test_scores, threshold).tolist(),
            },
        }
    )

    scores = {"cnn": test_scores, **{name: b.test_scores for name, b in baselines.items()}}
    images = report.make_plots(test.y, scores, threshold, uncalibrated=raw_scores)
    page = report.render_report(result, images)
    files = {**images, "report.html": page.encode("utf-8")}
    # allow_nan=False: NaN is not JSON, and the pipeline's readers would choke on it.
    files["metrics.json"] = json.dumps(result, indent=2, allow_nan=False).encode("utf-8")
    _write_outputs(out_dir, files)
    log.info(
        "test ROC-AUC %.4f (gradient boosting %.4f, logistic regression %.4f); wrote %s",
        result["roc_auc"],
        result["baselines"]["hist_gradient_boosting"]["roc_auc"],
        result["baselines"]["logistic_regression"]["roc_auc"],
        out_dir,
    )
    return result

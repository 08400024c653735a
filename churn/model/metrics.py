"""Binary classification metrics and curves in plain numpy.

Every function takes labels ``y`` (0/1) and scores ``s`` (higher means more likely churned) as
1-D arrays. A sample is predicted positive when ``s >= threshold``, the convention of
scikit-learn's curves, so a threshold read off :func:`roc_curve` reproduces its point exactly.
Invalid input raises :class:`ValueError` naming the problem, because a silently wrong metric
would decide whether a model is promoted.
"""

from __future__ import annotations

import numpy as np

THRESHOLD_METRICS = ("f1", "youden")


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts labels and scores to float64 1-D arrays."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"labels and scores differ in length: {len(y)} and {len(s)}")
    if len(y) == 0:
        raise ValueError("labels and scores are empty")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values")
    return y, s


def _check_two_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"{what} needs both classes, but all {len(y)} labels are {int(y[0])}")


def _check_probabilities(s: np.ndarray, what: str) -> None:
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(
            f"{what} needs probabilities in [0, 1], got scores in [{s.min():g}, {s.max():g}]"
        )


def _clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false and true positives at each distinct score, highest score first.

    Returns:
        ``fps``, ``tps`` and ``thresholds``: predicting ``s >= thresholds[i]`` positive yields
        ``fps[i]`` false and ``tps[i]`` true positives. Tied scores form one point, which is
        what makes AUC count a tied positive/negative pair as one half.
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    # The last index of each run of equal scores closes one threshold.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return fps, tps, s_sorted[last]


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic at every distinct score.

    Args:
        y_true: Labels, 0 or 1.
        y_score: Scores; higher means positive.

    Returns:
        ``fpr``, ``tpr`` and ``thresholds``, starting at ``(0, 0)`` with threshold ``inf`` and
        ending at ``(1, 1)``, like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.

    Raises:
        ValueError: Input is empty, mismatched or holds a single class.
    """
    y, s = _check(y_true, y_score)
    _check_two_classes(y, "a ROC curve")
    fps, tps, thr = _clf_curve(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive outranks a negative.

    Args:
        y_true: Labels, 0 or 1.
        y_score: Scores; higher means positive. Ties count one half.

    Returns:
        ROC-AUC in [0, 1].

    Raises:
        ValueError: Input is empty, mismatched or holds a single class.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr))


def auc_difference(
    y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray
) -> tuple[float, float]:
    """Difference of two ROC-AUCs on the same rows and its standard error (DeLong's method).

    The two models score the same customers, so their AUCs are correlated; DeLong's
    covariance of the two Mann-Whitney statistics accounts for it, which makes the standard
    error of the difference far smaller than either AUC's alone.

    Args:
        y_true: Labels, 0 or 1.
        score_a: Scores of the first model.
        score_b: Scores of the second model.

    Returns:
        ``auc(a) - auc(b)`` and its standard error; the error is NaN when a class has a single
        row, because a variance needs two.

    Raises:
        ValueError: Input is empty, mismatched or holds a single class.
    """
    y, a = _check(y_true, score_a)
    _, b = _check(y_true, score_b)
    _check_two_classes(y, "an AUC difference")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    components = []
    for s in (a, b):
        # Placement values: for each positive, the share of negatives it outranks (ties count
        # one half), and for each negative the share of positives that outrank it.
        ranks_all = _midranks(s)
        v_pos = (ranks_all[pos] - _midranks(s[pos])) / n
        v_neg = 1.0 - (ranks_all[neg] - _midranks(s[neg])) / m
        components.append((v_pos, v_neg))
    auc_a, auc_b = (float(v_pos.mean()) for v_pos, _ in components)
    if m < 2 or n < 2:
        return auc_a - auc_b, float("nan")
    cov_pos = np.cov(np.vstack([c[0] for c in components]))
    cov_neg = np.cov(np.vstack([c[1] for c in components]))
    var = (cov_pos[0, 0] + cov_pos[1, 1] - 2 * cov_pos[0, 1]) / m
    var += (cov_neg[0, 0] + cov_neg[1, 1] - 2 * cov_neg[0, 1]) / n
    return auc_a - auc_b, float(np.sqrt(max(var, 0.0)))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Each run of equal values gets the mean of the ranks it spans.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def precision_recall_curve(
    y_true: np.ndarray, y_score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score.

    Args:
        y_true: Labels, 0 or 1.
        y_score: Scores; higher means positive.

    Returns:
        ``precision``, ``recall`` and ``thresholds`` in increasing threshold order, with a
        final point ``(precision=1, recall=0)`` that has no threshold, like
        ``sklearn.metrics.precision_recall_curve``.

    Raises:
        ValueError: Input is empty or mismatched, or holds no positive label.
    """
    y, s = _check(y_true, y_score)
    if y.sum() == 0:
        raise ValueError("a precision-recall curve needs at least one positive label")
    fps, tps, thr = _clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum, without interpolation.

    Args:
        y_true: Labels, 0 or 1.
        y_score: Scores; higher means positive.

    Returns:
        ``sum_k (R_k - R_{k-1}) * P_k`` over distinct thresholds, in [0, 1].

    Raises:
        ValueError: Input is empty or mismatched, or holds no positive label.
    """
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under predicted probabilities.

    Args:
        y_true: Labels, 0 or 1.
        y_prob: Probabilities of the positive class, in [0, 1]. They are clipped to
            ``[eps, 1 - eps]`` (float64 machine epsilon) so that a confident mistake costs a
            large but finite amount, as in scikit-learn.

    Returns:
        The log loss in nats.

    Raises:
        ValueError: Input is empty or mismatched, or a probability lies outside [0, 1].
    """
    y, p = _check(y_true, y_prob)
    _check_probabilities(p, "log loss")
    eps = np.finfo(np.float64).eps
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def brier(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean squared difference between probabilities and labels.

    Args:
        y_true: Labels, 0 or 1.
        y_prob: Probabilities of the positive class, in [0, 1].

    Returns:
        The Brier score.

    Raises:
        ValueError: Input is empty or mismatched, or a probability lies outside [0, 1].
    """
    y, p = _check(y_true, y_prob)
    _check_probabilities(p, "the Brier score")
    return float(np.mean((p - y) ** 2))


def confusion_matrix(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> np.ndarray:
    """Counts of true and predicted classes at a threshold.

    Args:
        y_true: Labels, 0 or 1.
        y_score: Scores; ``s >= threshold`` predicts positive.
        threshold: The decision threshold.

    Returns:
        int64 ``[[tn, fp], [fn, tp]]``: rows are true classes, columns predicted ones, the
        layout of ``sklearn.metrics.confusion_matrix(labels=[0, 1])``.

    Raises:
        ValueError: Input is empty or mismatched.
    """
    y, s = _check(y_true, y_score)
    pred = s >= threshold
    pos = y == 1.0
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    fn = int(np.sum(~pred & pos))
    tn = len(y) - tp - fp - fn
    return np.array([[tn, fp], [fn, tp]], dtype=np.int64)


def calibration_bins(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram data on equal-width probability bins.

    Args:
        y_true: Labels, 0 or 1.
        y_prob: Probabilities of the positive class, in [0, 1].
        n_bins: Number of equal-width bins over [0, 1].

    Returns:
        ``frac_positive``, ``mean_predicted`` and ``count`` for each non-empty bin, with the
        binning of ``sklearn.calibration.calibration_curve(strategy="uniform")``.

    Raises:
        ValueError: Input is empty or mismatched, a probability lies outside [0, 1], or
            ``n_bins`` is below 1.
    """
    y, p = _check(y_true, y_prob)
    _check_probabilities(p, "a calibration curve")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    keep = count > 0
    return sum_y[keep] / count[keep], sum_p[keep] / count[keep], count[keep]


def choose_threshold(y_val: np.ndarray, s_val: np.ndarray, metric: str = "f1") -> float:
    """Picks the decision threshold that maximises a metric on the validation split.

    Every distinct score is a candidate; the metric is computed for all of them at once from
    cumulative counts after one sort. The returned value lies halfway between the best score
    and the next lower distinct score, so that it reproduces the same validation decisions
    while leaving a margin for unseen scores close to the cut. Among equally good candidates
    the highest threshold wins (fewer customers flagged for the same metric).

    Args:
        y_val: Validation labels, 0 or 1. Never pass test labels: the threshold is part of
            the model, and choosing it on test would leak into the reported metrics.
        s_val: Validation scores.
        metric: ``"f1"`` (F1 of the positive class) or ``"youden"`` (TPR - FPR).

    Returns:
        The threshold; predict positive when ``score >= threshold``.

    Raises:
        ValueError: Input is empty or mismatched, ``metric`` is unknown, there is no positive
            label (F1), or there is a single class (Youden).
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(
            f"unknown threshold metric {metric!r}; expected one of {THRESHOLD_METRICS}"
        )
    y, s = _check(y_val, s_val)
    n_pos = y.sum()
    if metric == "f1":
        if n_pos == 0:
            raise ValueError("choosing an F1 threshold needs at least one positive label")
        fps, tps, thr = _clf_curve(y, s)
        # F1 = 2TP / (2TP + FP + FN) and TP + FN is the number of positives.
        score = 2.0 * tps / (tps + fps + n_pos)
    else:
        _check_two_classes(y, "choosing a Youden threshold")
        fps, tps, thr = _clf_curve(y, s)
        # TPR - FPR scaled by n_pos * n_neg: integers, so equally good cuts tie exactly and
        # argmax keeps the highest of them (float rounding could prefer a lower one).
        score = tps.astype(np.int64) * int(len(y) - n_pos) - fps.astype(np.int64) * int(n_pos)
    best = int(np.argmax(score))
    if best + 1 < len(thr):
        middle = float((thr[best] + thr[best + 1]) / 2.0)
        # Adjacent doubles have no value between them: the midpoint rounds onto one of them,
        # and must not take in the lower score.
        if middle > thr[best + 1]:
            return middle
    return float(thr[best])


def binary_metrics(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """Ranking, decision and probability metrics of one set of predictions.

    Args:
        y_true: Labels, 0 or 1, with both classes present.
        y_score: Probabilities of the positive class, in [0, 1].
        threshold: Decision threshold; ``score >= threshold`` predicts positive.

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision), ``accuracy``, ``precision``, ``recall``,
        ``f1`` (of the positive class; precision and F1 are 0 when nothing is predicted
        positive), ``log_loss``, ``brier``, ``threshold``, ``n`` (number of samples),
        ``positive_rate`` (share of positive labels, the chance level of PR-AUC) and
        ``predicted_positive_rate`` (share predicted positive).

    Raises:
        ValueError: Input is empty or mismatched, holds a single class, or a score lies
            outside [0, 1].
    """
    y, s = _check(y_true, y_score)
    _check_two_classes(y, "ROC-AUC")
    _check_probabilities(s, "log loss")
    (tn, fp), (fn, tp) = confusion_matrix(y, s, threshold)
    n = len(y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2.0 * tp / (2.0 * tp + fp + fn)
    return {
        "roc_auc": roc_auc(y, s),
        "pr_auc": average_precision(y, s),
        "accuracy": float((tp + tn) / n),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "log_loss": log_loss(y, s),
        "brier": brier(y, s),
        "threshold": float(threshold),
        "n": n,
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float((tp + fp) / n),
    }

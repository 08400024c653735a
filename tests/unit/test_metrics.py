"""The numpy metrics agree with scikit-learn, ties included, and reject bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import calibration
from sklearn import metrics as skm

from churn.model import metrics


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(float)
    continuous = np.clip(0.3 * y + rng.random(500) * 0.7, 0.001, 0.999)
    # Rounding to one decimal creates many tied scores across both classes.
    tied = np.round(continuous, 1).clip(0.01, 0.99)
    small_y = np.array([0, 0, 1, 1, 0, 1, 1, 0], dtype=float)
    small_s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.2])
    return [
        ("continuous", y, continuous),
        ("tied", y, tied),
        ("small", small_y, small_s),
        ("all_tied", small_y, np.full(8, 0.5)),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "y", "s"), CASES, ids=IDS)
def test_ranking_metrics_match_sklearn(name: str, y: np.ndarray, s: np.ndarray) -> None:
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y, s), abs=1e-12
    )


@pytest.mark.parametrize(("name", "y", "s"), CASES, ids=IDS)
def test_curves_match_sklearn(name: str, y: np.ndarray, s: np.ndarray) -> None:
    fpr, tpr, thr = metrics.roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr, sk_thr)

    p, r, t = metrics.precision_recall_curve(y, s)
    sk_p, sk_r, sk_t = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(p, sk_p)
    np.testing.assert_allclose(r, sk_r)
    np.testing.assert_array_equal(t, sk_t)

    frac, mean, count = metrics.calibration_bins(y, s, n_bins=10)
    sk_frac, sk_mean = calibration.calibration_curve(y, s, n_bins=10)
    np.testing.assert_allclose(frac, sk_frac)
    np.testing.assert_allclose(mean, sk_mean)
    assert count.sum() == len(y)


@pytest.mark.parametrize(("name", "y", "s"), CASES, ids=IDS)
@pytest.mark.parametrize("threshold", [0.0, 0.4, 0.5, 1.0])
def test_binary_metrics_match_sklearn(
    name: str, y: np.ndarray, s: np.ndarray, threshold: float
) -> None:
    pred = (s >= threshold).astype(float)
    got = metrics.binary_metrics(y, s, threshold)
    expected = {
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "log_loss": skm.log_loss(y, s),
        "brier": skm.brier_score_loss(y, s),
        "threshold": threshold,
        "n": len(y),
        "positive_rate": y.mean(),
        "predicted_positive_rate": pred.mean(),
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-10), key
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y, s, threshold), skm.confusion_matrix(y, pred, labels=[0, 1])
    )


@pytest.mark.parametrize(("name", "y", "s"), CASES[:3], ids=IDS[:3])
@pytest.mark.parametrize("metric", ["f1", "youden"])
def test_choose_threshold_is_the_brute_force_optimum(
    name: str, y: np.ndarray, s: np.ndarray, metric: str
) -> None:
    def value(t: float) -> float:
        pred = s >= t
        if metric == "f1":
            return skm.f1_score(y, pred, zero_division=0)
        return pred[y == 1].mean() - pred[y == 0].mean()

    best = max(value(t) for t in np.unique(s))
    chosen = metrics.choose_threshold(y, s, metric)
    assert value(chosen) == pytest.approx(best, abs=1e-12)
    # The cut falls strictly between observed scores unless it is the lowest one.
    assert chosen not in set(s) or chosen == s.min()


def test_choose_threshold_prefers_the_highest_of_equal_candidates() -> None:
    y = np.array([0, 1, 1, 0, 0], dtype=float)
    s = np.array([0.1, 0.9, 0.8, 0.3, 0.2])
    assert metrics.choose_threshold(y, s) == pytest.approx(0.55)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.roc_auc([], []), "empty"),
        (lambda: metrics.roc_auc([0, 1], [0.5]), "differ in length"),
        (lambda: metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]), "both classes"),
        (lambda: metrics.roc_auc([0, 2], [0.1, 0.2]), "0 or 1"),
        (lambda: metrics.roc_auc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: metrics.log_loss([0, 1], [0.2, 1.5]), r"\[0, 1\]"),
        (lambda: metrics.binary_metrics([0, 1], [-0.1, 0.5], 0.5), r"\[0, 1\]"),
        (lambda: metrics.binary_metrics([0, 0], [0.1, 0.5], 0.5), "both classes"),
        (lambda: metrics.choose_threshold([0, 0], [0.1, 0.2]), "positive"),
        (lambda: metrics.choose_threshold([0, 1], [0.1, 0.2], "auc"), "unknown threshold"),
        (lambda: metrics.calibration_bins([0, 1], [0.1, 0.2], n_bins=0), "n_bins"),
    ],
)
def test_bad_input_raises_a_named_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_auc_difference_matches_sklearn_and_the_bootstrap() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    y = (rng.random(n) < 0.3).astype(float)
    a = np.round(y + rng.normal(size=n), 1)  # rounded: many ties
    b = 0.8 * y + rng.normal(size=n) + 0.5 * a  # correlated with a, as rival models are
    diff, se = metrics.auc_difference(y, a, b)
    assert diff == pytest.approx(skm.roc_auc_score(y, a) - skm.roc_auc_score(y, b), abs=1e-12)
    boot = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        boot.append(skm.roc_auc_score(y[i], a[i]) - skm.roc_auc_score(y[i], b[i]))
    assert se == pytest.approx(np.std(boot), rel=0.15)


def test_auc_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y = np.array([0, 1, 0, 1, 1, 0], dtype=float)
    s = np.array([0.1, 0.9, 0.4, 0.4, 0.8, 0.2])
    assert metrics.auc_difference(y, s, s) == (0.0, 0.0)
    with pytest.raises(ValueError, match="needs both classes"):
        metrics.auc_difference(np.ones(6), s, s)


def test_youden_ties_keep_the_highest_threshold() -> None:
    # TPR - FPR is exactly 1/3 when 3 or 5 rows are flagged; float rounding preferred 5.
    y = np.array([0, 1, 1, 0, 1, 0])
    s = np.linspace(0.95, 0.05, 6)
    threshold = metrics.choose_threshold(y, s, "youden")
    assert int((s >= threshold).sum()) == 3


def test_the_threshold_never_takes_in_an_adjacent_lower_score() -> None:
    # No double lies between 0.3 and the next one below it: the midpoint would round onto it.
    s = np.array([0.3, np.nextafter(0.3, 0.0), 0.1])
    y = np.array([1, 0, 0])
    threshold = metrics.choose_threshold(y, s, "f1")
    assert (s >= threshold).tolist() == [True, False, False]


def test_auc_difference_with_a_single_positive_has_no_standard_error() -> None:
    import json
    import warnings

    from churn.evaluation.evaluate import _auc_comparison

    y = np.array([1, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no degrees-of-freedom warning from np.cov
        diff, se = metrics.auc_difference(
            y, np.array([0.9, 0.1, 0.2, 0.3]), np.array([0.2, 0.1, 0.3, 0.4])
        )
    assert diff == pytest.approx(1.0 - 1 / 3) and np.isnan(se)
    comparison = _auc_comparison(y, np.array([0.9, 0.1, 0.2, 0.3]), np.array([0.2, 0.1, 0.3, 0.4]))
    assert comparison["se"] is None and comparison["ci95"] is None
    json.dumps(comparison, allow_nan=False)

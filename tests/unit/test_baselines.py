"""RFM features are computed as documented and both baselines learn a planted pattern."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from churn.dataset.training_set import Split, load_training_set
from churn.evaluation.baselines import baseline_features, run_baselines
from churn.model.metrics import choose_threshold, roc_auc

META = {
    "channels": ["n_txn", "spend"],
    "numeric_features": ["tenure_days"],
    "categorical_features": {"segment": ["<unk>", "a", "b"]},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # OpenMP threads spin-wait; on a small shared machine one thread is several times faster.
    with threadpool_limits(1):
        yield


def _split(seq: np.ndarray) -> Split:
    n = len(seq)
    return Split(
        seq=seq.astype(np.float32),
        num=np.full((n, 1), 100.0, dtype=np.float32),
        cat=np.arange(n, dtype=np.int64)[:, None] % 3,
        y=np.zeros(n, dtype=np.float32),
        customer_id=np.array([f"c{i}" for i in range(n)]),
        cutoff=np.zeros(n, dtype=np.int64),
    )


def test_features_follow_their_definitions() -> None:
    seq_len = 30
    seq = np.zeros((3, 2, seq_len))
    seq[0, 0, [5, 20, 26]] = [1, 2, 3]  # first active 5, last active 26
    seq[0, 1, [5, 20, 26]] = [10, 20, 30]
    seq[1, 0, :] = np.arange(seq_len)  # active from bin 1 on, rising
    # Row 2 never buys.
    f = baseline_features(_split(seq), META)
    col = {name: f.x[:, i] for i, name in enumerate(f.names)}

    assert len(set(f.names)) == len(f.names) == f.x.shape[1]
    np.testing.assert_array_equal(col["recency_bins"], [3, 0, seq_len])
    np.testing.assert_array_equal(col["tenure_bins"], [25, 29, 0])
    np.testing.assert_array_equal(col["active_bins_4"], [1, 4, 0])
    np.testing.assert_array_equal(col[f"active_bins_{seq_len}"], [3, 29, 0])
    np.testing.assert_allclose(col["n_txn_total_4"][0], np.log1p(3))
    np.testing.assert_allclose(col["spend_total_13"][0], np.log1p(50))
    np.testing.assert_allclose(col[f"spend_total_{seq_len}"][0], np.log1p(60))
    np.testing.assert_allclose(col["active_share"], [3 / 25, 1.0, 0.0])
    ramp = np.log1p(np.arange(seq_len))
    np.testing.assert_allclose(
        col[f"n_txn_slope_{seq_len}"][1], np.polyfit(np.arange(30), ramp, 1)[0]
    )
    np.testing.assert_allclose(col["tenure_days"], np.log1p(100.0))
    # Categorical indices come last and are flagged for the models.
    assert f.names[-1] == "segment" and f.categorical[-1] and not f.categorical[:-1].any()
    np.testing.assert_array_equal(f.x[:, -1], [0, 1, 2])
    assert np.isfinite(f.x).all()


def test_windows_longer_than_the_sequence_are_clipped() -> None:
    f = baseline_features(_split(np.ones((2, 2, 8))), META)
    assert "active_bins_8" in f.names and "active_bins_13" not in f.names
    assert np.isfinite(f.x).all()


def test_baselines_learn_the_planted_pattern(planted_training_set: Path) -> None:
    ts = load_training_set(planted_training_set)
    results = run_baselines(ts, threshold_metric="f1", seed=0)

    assert list(results) == ["hist_gradient_boosting", "logistic_regression"]
    y_val, y_test = ts.splits["val"].y, ts.splits["test"].y
    for name, r in results.items():
        assert r.val_scores.shape == y_val.shape and r.test_scores.shape == y_test.shape
        assert ((r.test_scores >= 0) & (r.test_scores <= 1)).all()
        # The planted label lives only in the sequence shape, so this proves the features
        # read it; chance is 0.5.
        assert roc_auc(y_test, r.test_scores) > 0.8, name
        assert r.threshold == choose_threshold(y_val, r.val_scores, "f1")
    assert results["logistic_regression"].params["class_weight"] is None


def test_baselines_are_reproducible(make_training_set, tmp_path: Path) -> None:
    ts = load_training_set(make_training_set(tmp_path, n=800, seed=3))
    first, second = run_baselines(ts, seed=1), run_baselines(ts, seed=1)
    for name in first:
        np.testing.assert_array_equal(first[name].test_scores, second[name].test_scores)

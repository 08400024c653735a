"""Strong non-deep baselines: RFM and aggregate features with gradient boosting and a linear model.

They see the same training set as the CNN, are fitted on the training split, use the
validation split the way the CNN does (early stopping or model selection, then the decision
threshold) and are scored on the test split. A CNN that cannot beat them is not worth serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from churn.dataset.training_set import Split, TrainingSet, num_transform
from churn.model.metrics import choose_threshold, roc_auc

WINDOWS = (4, 13, 26)
# HistGradientBoosting bins a categorical feature into at most max_bins (255) categories.
_MAX_NATIVE_CATEGORIES = 255
_LOGISTIC_C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass
class FeatureMatrix:
    """Tabular features of one split.

    Attributes:
        x: Feature values, float64 [N, D].
        names: Column names, D of them.
        categorical: Boolean mask [D] of columns that hold categorical indices.
        cardinalities: Vocabulary size of each categorical column, in column order.
    """

    x: np.ndarray
    names: list[str]
    categorical: np.ndarray
    cardinalities: list[int] = field(default_factory=list)


@dataclass
class BaselineResult:
    """A fitted baseline and its scores.

    Attributes:
        name: ``hist_gradient_boosting`` or ``logistic_regression``.
        model: The fitted scikit-learn estimator (takes ``FeatureMatrix.x``).
        threshold: Decision threshold chosen on the validation split.
        val_scores: Churn probabilities on the validation split.
        test_scores: Churn probabilities on the test split.
        params: Settings chosen during fitting (iterations, regularisation).
    """

    name: str
    model: object
    threshold: float
    val_scores: np.ndarray
    test_scores: np.ndarray
    params: dict = field(default_factory=dict)


def _slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope per row of ``values`` [N, C, W] against time steps 0..W-1."""
    w = values.shape[-1]
    t = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    denom = float(np.sum(t**2))
    if denom == 0.0:
        return np.zeros(values.shape[:-1])
    return np.tensordot(values, t, axes=([-1], [0])) / denom


def baseline_features(
    split: Split, meta: dict, windows: tuple[int, ...] = WINDOWS
) -> FeatureMatrix:
    """RFM and aggregate features of a split.

    Recency counts bins since the last bin with any activity (``L`` when there is none);
    tenure counts bins since the first one. For each window (the given ones, clipped to the
    sequence length, plus the whole sequence) there is the number of active bins and, per
    channel, ``log1p`` of the total (frequency and monetary value when the channels are
    transactions and spend). Per channel there are also the last bin, the peak, the log-ratio
    of the last 13 bins to the 13 before, and the slope of ``log1p`` values over the last 13
    bins and over the whole sequence. The raw numeric features follow (signed ``log1p``, as
    the CNN sees them) and the categorical indices come last.

    Args:
        split: The split to describe.
        meta: The training set's meta (channel names, vocabularies).
        windows: Sub-window lengths in bins.

    Returns:
        The feature matrix.
    """
    seq = np.maximum(split.seq.astype(np.float64), 0.0)
    n, _, seq_len = seq.shape
    channels = list(meta["channels"])
    logs = np.log1p(seq)
    active = seq.sum(axis=1) > 0
    any_active = active.any(axis=1)
    last = seq_len - 1 - np.argmax(active[:, ::-1], axis=1)
    first = np.argmax(active, axis=1)
    cols: list[np.ndarray] = [
        np.where(any_active, seq_len - 1 - last, seq_len),
        np.where(any_active, seq_len - first, 0),
    ]
    names = ["recency_bins", "tenure_bins"]
    for w in sorted({min(w, seq_len) for w in windows} | {seq_len}):
        cols.append(active[:, -w:].sum(axis=1))
        names.append(f"active_bins_{w}")
        cols.extend(np.log1p(seq[:, :, -w:].sum(axis=2)).T)
        names.extend(f"{c}_total_{w}" for c in channels)
    # Share of bins with activity since the first one: steady versus sporadic customers.
    cols.append(active.sum(axis=1) / np.maximum(cols[1], 1))
    names.append("active_share")
    half = min(13, seq_len // 2)
    if half:
        recent = np.log1p(seq[:, :, -half:].sum(axis=2))
        before = np.log1p(seq[:, :, -2 * half : -half].sum(axis=2))
        cols.extend((recent - before).T)
        names.extend(f"{c}_change_{half}" for c in channels)
    cols.extend(logs[:, :, -1].T)
    names.extend(f"{c}_last" for c in channels)
    cols.extend(logs.max(axis=2).T)
    names.extend(f"{c}_peak" for c in channels)
    short = min(13, seq_len)
    cols.extend(_slope(logs[:, :, -short:]).T)
    names.extend(f"{c}_slope_{short}" for c in channels)
    cols.extend(_slope(logs).T)
    names.extend(f"{c}_slope_{seq_len}" for c in channels)
    cols.extend(num_transform(split.num.astype(np.float64)).T)
    names.extend(meta["numeric_features"])
    n_dense = len(cols)
    cols.extend(split.cat.astype(np.float64).T)
    names.extend(meta["categorical_features"])
    x = np.column_stack(cols) if cols else np.zeros((n, 0))
    categorical = np.zeros(x.shape[1], dtype=bool)
    categorical[n_dense:] = True
    return FeatureMatrix(
        x=x,
        names=names,
        categorical=categorical,
        cardinalities=[len(v) for v in meta["categorical_features"].values()],
    )


def fit_hist_gradient_boosting(
    train: FeatureMatrix,
    y_train: np.ndarray,
    val: FeatureMatrix,
    y_val: np.ndarray,
    seed: int = 0,
) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees with early stopping on the validation split.

    Stopping on the validation split rather than a slice of the training split gives the trees
    exactly the data budget of the CNN, which also stops on validation. Classes are not
    reweighted, so the probabilities stay calibrated; the val-chosen threshold handles the
    imbalance.

    Args:
        train: Training features.
        y_train: Training labels.
        val: Validation features (early stopping).
        y_val: Validation labels.
        seed: Seed for the estimator's tie-breaking and subsampling.

    Returns:
        The fitted classifier.
    """
    # Vocabularies too large for native categorical splits fall back to ordinal indices.
    native = train.categorical.copy()
    for j, size in zip(np.flatnonzero(train.categorical), train.cardinalities, strict=True):
        native[j] = size <= _MAX_NATIVE_CATEGORIES
    model = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=1000,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        categorical_features=native if native.any() else None,
        early_stopping=True,
        scoring="loss",
        n_iter_no_change=30,
        random_state=seed,
    )
    return model.fit(train.x, y_train, X_val=val.x, y_val=y_val)


def _logistic_pipeline(features: FeatureMatrix, c: float) -> Pipeline:
    dense = np.flatnonzero(~features.categorical)
    cats = np.flatnonzero(features.categorical)
    encoder = OneHotEncoder(
        categories=[np.arange(size, dtype=np.float64) for size in features.cardinalities],
        handle_unknown="ignore",
    )
    prep = ColumnTransformer([("dense", StandardScaler(), dense), ("cat", encoder, cats)])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(C=c, max_iter=2000))])


def fit_logistic_regression(
    train: FeatureMatrix,
    y_train: np.ndarray,
    val: FeatureMatrix,
    y_val: np.ndarray,
) -> tuple[Pipeline, float]:
    """Logistic regression on standardised features and one-hot categories.

    The inverse regularisation strength ``C`` is chosen from a small grid by validation
    ROC-AUC. Classes are not reweighted (``class_weight=None``): balancing would barely change
    the ranking, would bias the probabilities and so the log loss and Brier score, and the
    val-chosen threshold already sets the operating point.

    Args:
        train: Training features.
        y_train: Training labels.
        val: Validation features (model selection).
        y_val: Validation labels.

    Returns:
        The fitted pipeline and the chosen ``C``.
    """
    fits = [_logistic_pipeline(train, c).fit(train.x, y_train) for c in _LOGISTIC_C_GRID]
    aucs = [roc_auc(y_val, model.predict_proba(val.x)[:, 1]) for model in fits]
    best = int(np.argmax(aucs))
    return fits[best], _LOGISTIC_C_GRID[best]


def run_baselines(
    ts: TrainingSet, threshold_metric: str = "f1", seed: int = 0
) -> dict[str, BaselineResult]:
    """Fits both baselines on the training split and scores validation and test.

    Args:
        ts: A training set with ``train``, ``val`` and ``test`` splits.
        threshold_metric: Metric maximised on validation to pick each baseline's threshold
            (``f1`` or ``youden``).
        seed: Seed of the gradient-boosting model.

    Returns:
        ``hist_gradient_boosting`` and ``logistic_regression`` results, in that order.

    Raises:
        ValueError: The validation split cannot support the threshold metric (for example it
            has no positive label).
    """
    with threadpool_limits(limits=1):
        # One thread: OpenMP workers spin when the cores are shared (other tasks on the node,
        # kfp.local running beside a server), which made these fits 40x slower on 2 busy
        # cores; on one thread both baselines take seconds.
        return _run_baselines(ts, threshold_metric, seed)


def _run_baselines(ts: TrainingSet, threshold_metric: str, seed: int) -> dict[str, BaselineResult]:
    train, val, test = (baseline_features(ts.splits[s], ts.meta) for s in ("train", "val", "test"))
    y_train, y_val = ts.splits["train"].y, ts.splits["val"].y
    hgb = fit_hist_gradient_boosting(train, y_train, val, y_val, seed=seed)
    logistic, c = fit_logistic_regression(train, y_train, val, y_val)
    fitted = {
        "hist_gradient_boosting": (
            hgb,
            {"n_iter": int(hgb.n_iter_), "learning_rate": hgb.learning_rate},
        ),
        "logistic_regression": (logistic, {"C": c, "class_weight": None}),
    }
    results: dict[str, BaselineResult] = {}
    for name, (model, params) in fitted.items():
        val_scores = model.predict_proba(val.x)[:, 1]
        results[name] = BaselineResult(
            name=name,
            model=model,
            threshold=choose_threshold(y_val, val_scores, threshold_metric),
            val_scores=val_scores,
            test_scores=model.predict_proba(test.x)[:, 1],
            params=params,
        )
    return results

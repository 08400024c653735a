"""Platt scaling of the CNN's logits, fitted on the validation split.

Training weighs positives by ``pos_weight`` (negatives / positives with ``"auto"``), which
adds about ``log(pos_weight)`` to every logit, and a network trained to rank is rarely
calibrated in scale either. ``sigmoid(a * logit + b)`` corrects both: ``b`` undoes the shift
and ``a`` the over- or under-confidence. Temperature scaling (``b = 0``) fixes only the
scale; on CDNOW, whose churn rate is 0.82 and ``pos_weight`` 0.22, the shift is most of the
error (see the README's model quality section). With ``a > 0`` the order of the scores, and
so every ranking metric, is unchanged.
"""

from __future__ import annotations

import numpy as np

_MAX_ITER = 100
_TOLERANCE = 1e-10


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fits ``a`` and ``b`` minimising the log loss of ``sigmoid(a * logit + b)``.

    Newton's method with step halving on the two parameters (a convex problem). The targets
    are Platt's (1999): ``(n+ + 1) / (n+ + 2)`` for positives and ``1 / (n- + 2)`` for
    negatives rather than 1 and 0, which keeps ``a`` finite when the validation split is
    separable and changes nothing measurable on thousands of rows.

    Args:
        logits: Uncalibrated logits of the validation split.
        y: Its labels, 0 or 1, both classes present.

    Returns:
        ``(a, b)``; ``a`` may come out <= 0 when the logits do not rank positives higher.

    Raises:
        ValueError: The inputs differ in length, are not finite, or hold a single class.
    """
    x = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    if x.shape != labels.shape or x.ndim != 1:
        raise ValueError(f"logits and labels differ in shape: {x.shape} and {labels.shape}")
    if not np.isfinite(x).all():
        raise ValueError("logits hold NaN or infinite values")
    n_pos = float(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Platt scaling needs both classes")
    target = np.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    design = np.column_stack([x, np.ones_like(x)])
    params = np.array([1.0, 0.0])
    loss = _loss(design @ params, target)
    for _ in range(_MAX_ITER):
        z = design @ params
        p = _sigmoid(z)
        grad = design.T @ (p - target) / len(x)
        weight = p * (1 - p)
        hessian = (design * weight[:, None]).T @ design / len(x)
        # A ridge far below any real curvature keeps the solve defined when every logit is equal.
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), grad)
        scale = 1.0
        while scale > 1e-8:
            trial = params - scale * step
            trial_loss = _loss(design @ trial, target)
            if trial_loss <= loss:
                break
            scale /= 2
        else:
            break
        params, loss = trial, trial_loss
        if np.abs(scale * step).max() < _TOLERANCE:
            break
    return float(params[0]), float(params[1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _loss(z: np.ndarray, target: np.ndarray) -> float:
    # log(1 + e^z) - t * z, written to stay finite for any z.
    return float(np.mean(np.logaddexp(0.0, z) - target * z))

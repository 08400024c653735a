"""The promotion gate: whether a freshly evaluated model may replace the champion.

A candidate is promoted only when its test ROC-AUC reaches the configured threshold and is
strictly higher than the current champion's. A tie keeps the champion: retraining on the same
data gives the same score, and swapping versions for nothing would only churn deployments.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from churn.registry import Registry


def decide(candidate_auc: float, threshold: float, champion_auc: float | None) -> tuple[bool, str]:
    """Decides whether a candidate model is promoted.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        threshold: Minimum ROC-AUC a promoted model must reach.
        champion_auc: The current champion's test ROC-AUC; ``None`` when there is no champion
            (or it has no recorded ROC-AUC).

    Returns:
        ``(promote, reason)``; the reason is one sentence that quotes the numbers compared.

    Raises:
        ValueError: The threshold is not a number between 0 and 1.
    """
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"the ROC-AUC threshold must lie in [0, 1], got {threshold!r}")
    if candidate_auc is None or not math.isfinite(candidate_auc):
        return False, f"the candidate's ROC-AUC is {candidate_auc!r}, not a finite number"
    if candidate_auc < threshold:
        return (
            False,
            f"candidate ROC-AUC {candidate_auc:.4f} is below the threshold {threshold:.4f}",
        )
    if champion_auc is not None and math.isfinite(champion_auc):
        if candidate_auc <= champion_auc:
            return (
                False,
                f"candidate ROC-AUC {candidate_auc:.4f} reaches the threshold {threshold:.4f} "
                f"but does not beat the champion's {champion_auc:.4f}",
            )
        return (
            True,
            f"candidate ROC-AUC {candidate_auc:.4f} reaches the threshold {threshold:.4f} "
            f"and beats the champion's {champion_auc:.4f}",
        )
    return (
        True,
        f"candidate ROC-AUC {candidate_auc:.4f} reaches the threshold {threshold:.4f} "
        "and there is no champion yet",
    )


def gate_decision(candidate_auc: float, threshold: float, registry: Registry) -> dict:
    """Applies :func:`decide` against the registry's current champion.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        threshold: Minimum ROC-AUC a promoted model must reach.
        registry: The registry whose champion the candidate must beat.

    Returns:
        ``promote``, ``reason``, ``candidate_auc``, ``threshold``, ``champion_version`` and
        ``champion_auc`` (both ``None`` without a champion), and ``decided_at`` (UTC).

    Raises:
        RegistryError: The champion pointer cannot be read; promoting blindly over an
            unreadable champion could replace a better model.
    """
    champion = registry.champion()
    champion_auc = None
    if champion is not None and champion.metrics.get("roc_auc") is not None:
        champion_auc = float(champion.metrics["roc_auc"])
    promote, reason = decide(float(candidate_auc), float(threshold), champion_auc)
    return {
        "promote": promote,
        "reason": reason,
        "candidate_auc": float(candidate_auc),
        "threshold": float(threshold),
        "champion_version": champion.version if champion is not None else None,
        "champion_auc": champion_auc,
        "decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def rejection_record(decision: dict, report_uri: str) -> dict:
    """The record a rejected run leaves: the gate's decision plus where its report is.

    Args:
        decision: What :func:`gate_decision` returned.
        report_uri: Location of the candidate's HTML report.

    Returns:
        The decision's fields with ``report`` added.

    Raises:
        ValueError: The decision promoted the candidate, so there is nothing to record.
    """
    if decision.get("promote"):
        raise ValueError("the gate promoted this candidate; a rejection record would be wrong")
    return {**decision, "report": report_uri}

"""The promotion gate: whether a freshly evaluated model may replace the champion.

A candidate is promoted only when its test ROC-AUC reaches the configured threshold and is
strictly higher than the current champion's. A tie keeps the champion: retraining on the same
data gives the same score, and swapping versions for nothing would only churn deployments.

The champion is re-scored on the candidate's test split whenever it can read that training
set, because the ROC-AUC it recorded at its own evaluation comes from another test window: an
easier window would promote a worse model, a harder one would block a better one.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from churn.errors import ChurnError, RegistryError
from churn.io.leftovers import owned_tempdir

if TYPE_CHECKING:
    from churn.release.registry import Registry, VersionInfo

log = logging.getLogger(__name__)


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


def gate_decision(
    candidate_auc: float,
    threshold: float,
    registry: Registry,
    dataset_dir: str | Path | None = None,
) -> dict:
    """Applies :func:`decide` against the registry's current champion.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        threshold: Minimum ROC-AUC a promoted model must reach.
        registry: The registry whose champion the candidate must beat.
        dataset_dir: The candidate's training set; the champion is re-scored on its test split.
            ``None``, or a champion that cannot read it (other channels or sequence length),
            falls back to the ROC-AUC recorded when the champion was evaluated.

    Returns:
        ``promote``, ``reason``, ``candidate_auc``, ``threshold``, ``champion_version``,
        ``champion_auc`` and ``champion_auc_basis`` (``None`` without a champion), and
        ``decided_at`` (UTC).

    Raises:
        RegistryError: The champion pointer cannot be read, or the champion's recorded ROC-AUC
            is not a finite number; promoting blindly could replace a better model.
    """
    champion = registry.champion()
    champion_auc, basis = None, None
    if champion is not None:
        champion_auc, basis = _champion_auc(registry, champion, dataset_dir)
    promote, reason = decide(float(candidate_auc), float(threshold), champion_auc)
    if champion_auc is not None:
        reason += f" (the champion's ROC-AUC {basis})"
    return {
        "promote": promote,
        "reason": reason,
        "candidate_auc": float(candidate_auc),
        "threshold": float(threshold),
        "champion_version": champion.version if champion is not None else None,
        "champion_auc": champion_auc,
        "champion_auc_basis": basis,
        "decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


RESCORED = "on this run's test split"
RECORDED = "recorded at its own evaluation, on another test split"


def _champion_auc(
    registry: Registry, champion: VersionInfo, dataset_dir: str | Path | None
) -> tuple[float | None, str | None]:
    if dataset_dir is not None:
        from churn.evaluation.evaluate import auc_on_test_split

        try:
            with owned_tempdir("churn-champion-") as tmp:
                folder = registry.download(champion.version, Path(tmp) / champion.version)
                return auc_on_test_split(folder / "model", dataset_dir), RESCORED
        except (ChurnError, ValueError) as exc:
            log.warning(
                "cannot re-score champion %s on %s (%s); comparing with its recorded ROC-AUC",
                champion.version,
                dataset_dir,
                exc,
            )
    recorded = champion.metrics.get("roc_auc")
    if recorded is None:
        return None, None
    try:
        value = float(recorded)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise RegistryError(
            f"champion {champion.version} records the ROC-AUC {recorded!r}, not a finite number; "
            "fix its metrics.json or promote by hand"
        )
    return value, RECORDED


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

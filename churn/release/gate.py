"""The promotion gate: whether a freshly evaluated model may replace the champion.

A candidate is promoted only when its test ROC-AUC reaches the configured threshold and is
strictly higher than the current champion's. A tie keeps the champion: retraining on the same
data gives the same score, and swapping versions for nothing would only churn deployments.

The champion's ROC-AUC is always its score on the candidate's own test split: the one it
recorded at its own evaluation comes from another test window (an easier one would promote a
worse model, a harder one would block a better one), so two recorded AUCs are never compared.
When the champion cannot be re-scored there, no recorded number stands in for that score:

* Its input spec differs (channels, ``bin_days``, ``seq_len``, numeric or categorical features
  and their vocabularies, ``horizon_days`` or ``churn_definition``: see ``churn.model.spec``).
  Every client's requests, or the meaning of the answer, would change under them, so the gate
  refuses unless the run names the breaking change (``allow_input_change``). The horizon and
  the churn definition (lapse, partial defection, contract) define the label, not an input,
  but a model of another label answers another question and cannot be scored on these labels,
  so they count as breaking changes too. With the change named, the candidate replaces the
  champion on the threshold alone: there is nothing like for like to compare.
* Anything else (the champion's files are damaged, the training set is not given): the
  champion stays, and the reason says so; fix the cause and run again, or promote a
  registered version by hand (``churn registry promote``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from churn.errors import ChurnError
from churn.io.leftovers import owned_tempdir
from churn.model.spec import input_spec_changes

if TYPE_CHECKING:
    from churn.release.registry import Registry, VersionInfo


def decide(candidate_auc: float, threshold: float, champion_auc: float | None) -> tuple[bool, str]:
    """Decides whether a candidate model is promoted.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        threshold: Minimum ROC-AUC a promoted model must reach.
        champion_auc: The current champion's ROC-AUC on the candidate's test split; ``None``
            when there is no champion.

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
    *,
    allow_input_change: str = "",
) -> dict:
    """Applies :func:`decide` against the registry's champion, re-scored on the same rows.

    Args:
        candidate_auc: The candidate's test ROC-AUC.
        threshold: Minimum ROC-AUC a promoted model must reach.
        registry: The registry whose champion the candidate must beat.
        dataset_dir: The candidate's training set (its ``meta.json`` is the candidate's input
            spec); the champion is re-scored on its test split. ``None`` leaves nothing to
            re-score on, so a champion is never replaced.
        allow_input_change: Names a deliberate change of the input spec; a candidate whose
            spec differs from the champion's is then judged on the threshold alone. ``""``
            refuses such a candidate.

    Returns:
        ``promote``, ``reason``, ``candidate_auc``, ``threshold``, ``champion_version``,
        ``champion_auc`` and ``champion_auc_basis`` (``None`` unless the champion was
        re-scored), ``input_changes`` (what differs from the champion's input spec),
        ``allow_input_change``, and ``decided_at`` (UTC).

    Raises:
        RegistryError: The champion pointer is damaged; promoting blindly could replace a
            better model.
    """
    champion = registry.champion()
    allowed = allow_input_change.strip()
    champion_auc: float | None = None
    changes: list[str] = []
    if champion is None:
        promote, reason = decide(float(candidate_auc), float(threshold), None)
    else:
        try:
            changes, champion_auc = _against_champion(registry, champion, dataset_dir)
        except (ChurnError, ValueError) as exc:
            promote, reason = False, _unscorable(champion.version, exc)
        else:
            promote, reason = _judge(
                candidate_auc, threshold, champion, champion_auc, changes, allowed
            )
    return {
        "promote": promote,
        "reason": reason,
        "candidate_auc": float(candidate_auc),
        "threshold": float(threshold),
        "champion_version": champion.version if champion is not None else None,
        "champion_auc": champion_auc,
        "champion_auc_basis": RESCORED if champion_auc is not None else None,
        "input_changes": changes,
        "allow_input_change": allowed,
        "decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


RESCORED = "on this run's test split"


def _judge(
    candidate_auc: float,
    threshold: float,
    champion: VersionInfo,
    champion_auc: float | None,
    changes: list[str],
    allowed: str,
) -> tuple[bool, str]:
    if not changes:
        promote, reason = decide(float(candidate_auc), float(threshold), champion_auc)
        return promote, f"{reason} (the champion's ROC-AUC {RESCORED})"
    listed = "; ".join(changes)
    if not allowed:
        return False, (
            f"the candidate changes the input spec of champion {champion.version} ({listed}): "
            "every client's requests or their meaning would change, and the champion cannot be "
            "re-scored on this run's test split, so no ROC-AUCs are compared. To replace it "
            "deliberately, run again with allow_input_change='<what changes for clients>'"
        )
    promote, reason = decide(float(candidate_auc), float(threshold), None)
    if not promote:
        return promote, reason
    return True, (
        f"candidate ROC-AUC {candidate_auc:.4f} reaches the threshold {threshold:.4f}; it "
        f"replaces champion {champion.version} without a comparison because the input spec "
        f"changes ({listed}) and the run allows it: {allowed!r}"
    )


def _unscorable(champion: str, exc: Exception) -> str:
    return (
        f"champion {champion} cannot be re-scored on this run's test split ({exc}); the ROC-AUC "
        "it recorded comes from another test split, so no comparison is made and it stays "
        "champion. Fix the cause and run again, or promote a registered version by hand with "
        f"`churn registry promote VERSION --expect {champion}`"
    )


def _against_champion(
    registry: Registry, champion: VersionInfo, dataset_dir: str | Path | None
) -> tuple[list[str], float | None]:
    """What differs from the champion's input spec, else its ROC-AUC on the test split."""
    from churn.dataset.training_set import load_training_set
    from churn.evaluation.evaluate import auc_on_test_split

    if dataset_dir is None:
        raise ValueError("no training set was given to re-score it on")
    candidate = load_training_set(dataset_dir, splits=()).input_spec
    changes = input_spec_changes(registry.input_spec(champion.version), candidate)
    if changes:
        return changes, None
    with owned_tempdir("churn-champion-") as tmp:
        folder = registry.download(champion.version, Path(tmp) / champion.version)
        return [], auc_on_test_split(folder / "model", dataset_dir)


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

"""Retraining on drift (or a performance alarm), started at most once per cause.

A cause is a model version, a window and why (``drift``, ``performance``). Its key is also the
run's display name, ``churn-retrain-<cause>-<version>-<since>-<until>``, so KFP can be asked
about it by name. Every trigger is recorded in the registry, beside the model, under
``triggers/`` (flat, one folder, so one listing shows them all)::

    <key>.claim-<n>.json    attempt n claimed: why, the report, the window, when, by whom
    <key>.run.json          the run id; the cause is handled
    <key>.failed-<n>.json   attempt n could not submit; a later monitor may claim n + 1

Each file is created write-if-absent (S3 ``If-None-Match: *``, or ``link()`` on a folder), so
of two monitors started together exactly one creates ``claim-n`` and submits; the other
reports who holds the cause. A claim with neither a run nor a failure record older than
``monitor.retrain_claim_timeout_minutes`` belongs to a monitor that died between claiming
and recording. With KFP the next monitor then asks for a run of the deterministic name
before submitting: one found (submitted, but its id never recorded) is adopted, so one cause
never gets two runs. The local pipeline leaves no such trace, so there the timeout must
exceed the longest local retrain.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from churn.errors import ChurnError, PipelineError, RegistryError
from churn.release.registry import open_registry
from churn.release.registry.base import Registry
from churn.settings import Settings

log = logging.getLogger(__name__)

TRIGGERS = "triggers"
# The decision of each cause's monitor that calls for a retraining; any other decision
# (no_drift, healthy, insufficient_data) never triggers one.
CAUSES = {"drift": "drift", "performance": "degraded"}
# KFP states in which a run may still produce a model; a later run for its cause would race it.
ACTIVE_STATES = ("PENDING", "RUNNING", "PAUSED", "CANCELING")
_MAX_NAME = 120
_CLAIM_RE = re.compile(r"\.claim-(\d+)\.json$")

Submit = Callable[[Settings, str], str]


def run_name(cause: str, summary: dict) -> str:
    """The deterministic run name (and record key) of a cause.

    Args:
        cause: ``drift`` or ``performance``.
        summary: The monitor's summary: ``model_version`` and ``window`` ``{since, until}``.

    Returns:
        Lower-case letters, digits and dashes, at most 120 characters; a long name keeps its
        start and ends in a hash of the whole.

    Raises:
        PipelineError: The cause is unknown, or the summary lacks the version or the window.
    """
    import hashlib

    if cause not in CAUSES:
        raise PipelineError(f"retrain cause {cause!r} is not one of {', '.join(CAUSES)}")
    version = summary.get("model_version")
    window = summary.get("window")
    if not isinstance(version, str) or not version:
        raise PipelineError("the monitor summary names no model_version to retrain")
    if not isinstance(window, dict) or not window.get("since") or not window.get("until"):
        raise PipelineError("the monitor summary has no window {since, until}")
    parts = [cause, version, _stamp(window["since"]), _stamp(window["until"])]
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(["churn-retrain", *parts]).lower()).strip("-")
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[: _MAX_NAME - 13].rstrip('-')}-{digest}"
    return name


def _stamp(value: Any) -> str:
    """A window bound as ``YYYYMMDDTHHMMSSZ`` when it parses as a time, else as given."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def maybe_retrain(
    summary: dict,
    settings: Settings,
    *,
    cause: str = "drift",
    submit: Submit | None = None,
    now: datetime | None = None,
) -> dict:
    """Starts a retraining run for a monitor's finding, unless that would duplicate one.

    Skips, in order: a summary whose decision is not its cause's (``drift`` for drift,
    ``degraded`` for performance); a cause already
    handled or claimed by a live monitor; a run of the same name pending or running on KFP;
    a run triggered less than ``monitor.retrain_cooldown_hours`` ago. Otherwise claims the
    cause, submits, and records the run id.

    Args:
        summary: The monitor's summary (``decision``, ``model_version``, ``window``,
            ``report``).
        settings: ``monitor`` says where to run; ``registry`` holds the records.
        cause: ``drift`` (``monitoring.drift``) or ``performance``
            (``monitoring.performance``).
        submit: Starts the run and returns its id; default: KFP at ``monitor.kfp_host``, or
            the local pipeline when no host is set.
        now: The current time (tests).

    Returns:
        ``action`` (``triggered`` or ``skipped``), ``reason``, ``run_name``, and when
        triggered ``run_id`` and ``record`` (the run record's path in the registry).

    Raises:
        PipelineError: The summary is unusable, KFP cannot be reached, or the submission
            failed (the claim is then marked failed, so a later monitor retries).
        RegistryError: The records cannot be read or written.
    """
    name = run_name(cause, summary)
    if summary.get("decision") != CAUSES[cause]:
        return _skipped(name, f"the decision is {summary.get('decision')!r}, not {CAUSES[cause]}")
    now = now or datetime.now(UTC)
    registry = open_registry(settings.registry)
    host = settings.monitor.kfp_host
    records = registry.read_records(TRIGGERS)
    attempt, reason = _next_attempt(records, name, now, settings)
    if reason:
        return _skipped(name, reason)
    if host:
        runs = _runs(host, name, settings.monitor.kfp_namespace)
        active = [run for run, state in runs if state in ACTIVE_STATES]
        if active:
            return _skipped(name, f"run {active[0]} named {name} is pending or running")
        if attempt > 1 and runs:
            # An earlier attempt's submission reached KFP although its id was never recorded.
            return _skipped(name, f"run {runs[0][0]} named {name} exists on KFP already")
    last = _last_trigger(records, name)
    cooldown = timedelta(hours=settings.monitor.retrain_cooldown_hours)
    if last is not None and now - last < cooldown:
        return _skipped(
            name, f"cooldown: the last retrain was triggered at {last:%Y-%m-%dT%H:%M:%SZ}"
        )
    claim = f"{name}.claim-{attempt}.json"
    if not registry.create_record(
        TRIGGERS, claim, _claim(cause, summary, name, attempt, now, host)
    ):
        return _skipped(name, f"already triggered by {TRIGGERS}/{claim}")
    return _submit(registry, settings, summary, cause, name, attempt, submit)


def _skipped(name: str, reason: str) -> dict:
    log.info("retraining skipped (%s): %s", name, reason)
    return {"action": "skipped", "reason": reason, "run_name": name}


def _next_attempt(
    records: dict[str, dict], name: str, now: datetime, settings: Settings
) -> tuple[int, str | None]:
    """The attempt number to claim, or a reason to claim none."""
    if f"{name}.run.json" in records:
        return 0, f"already triggered by {TRIGGERS}/{name}.run.json"
    claims = [int(m[1]) for r in records if r.startswith(f"{name}.") and (m := _CLAIM_RE.search(r))]
    if not claims:
        return 1, None
    latest = max(claims)
    if f"{name}.failed-{latest}.json" in records:
        return latest + 1, None
    claim = f"{name}.claim-{latest}.json"
    claimed_at = _claimed_at(claim, records[claim])
    timeout = timedelta(minutes=settings.monitor.retrain_claim_timeout_minutes)
    if now - claimed_at < timeout:
        return 0, f"already triggered by {TRIGGERS}/{claim} (no run id yet)"
    log.warning("%s is older than %s and has no run: retrying", claim, timeout)
    return latest + 1, None


def _last_trigger(records: dict[str, dict], name: str) -> datetime | None:
    """When the latest claim that did not fail was made, over every other cause.

    A retry of ``name`` itself is not a new retraining, so its own earlier claims do not count.
    """
    times = [
        _claimed_at(key, record)
        for key, record in records.items()
        if (m := _CLAIM_RE.search(key))
        and key[: m.start()] != name
        and f"{key[: m.start()]}.failed-{m[1]}.json" not in records
    ]
    return max(times, default=None)


def _claimed_at(key: str, record: dict) -> datetime:
    try:
        return datetime.fromisoformat(record["claimed_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(
            f"{TRIGGERS}/{key} has no valid claimed_at time ({exc!r}): remove or repair it"
        ) from exc


def _claim(cause: str, summary: dict, name: str, attempt: int, now: datetime, host: str) -> dict:
    return {
        "cause": cause,
        "run_name": name,
        "attempt": attempt,
        "model_version": summary["model_version"],
        "window": summary["window"],
        "report": summary.get("report"),
        "decision": summary.get("decision"),
        "drifted_columns": summary.get("drifted_columns"),
        "target": host or "local",
        "claimed_at": now.isoformat(),
        "claimed_by": f"{socket.gethostname()}:{os.getpid()}",
    }


def _submit(
    registry: Registry,
    settings: Settings,
    summary: dict,
    cause: str,
    name: str,
    attempt: int,
    submit: Submit | None,
) -> dict:
    try:
        run_id = (submit or default_submit)(settings, name)
    except (ChurnError, OSError, KeyboardInterrupt) as exc:
        # Marked failed so the next monitor retries at once; with KFP it first asks for a run
        # of this name, in case the submission got through before the error or the Ctrl-C.
        registry.create_record(
            TRIGGERS,
            f"{name}.failed-{attempt}.json",
            {
                "error": str(exc) or type(exc).__name__,
                "failed_at": datetime.now(UTC).isoformat(),
                "attempt": attempt,
            },
        )
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PipelineError(f"retraining {name} failed to start: {exc}") from exc
    record = f"{name}.run.json"
    registry.create_record(
        TRIGGERS,
        record,
        {
            "run_id": run_id,
            "run_name": name,
            "attempt": attempt,
            "cause": cause,
            "report": summary.get("report"),
            "submitted_at": datetime.now(UTC).isoformat(),
        },
    )
    log.info("retraining %s triggered: run %s", name, run_id)
    return {
        "action": "triggered",
        "reason": cause,
        "run_name": name,
        "run_id": run_id,
        "record": f"{TRIGGERS}/{record}",
    }


def _runs(host: str, name: str, namespace: str) -> list[tuple[str, str]]:
    from pipelines.cluster import runs_named

    return runs_named(host, name, namespace)


def default_submit(settings: Settings, name: str) -> str:
    """Starts the training pipeline on ``monitor.retrain_data``; returns the run id.

    With ``monitor.kfp_host`` set, a KFP run named ``name``; otherwise the local pipeline
    (``kfp.local``, no deployment: the new champion is in the registry), whose id is its
    run folder's name.
    """
    data = settings.monitor.retrain_data
    if settings.monitor.kfp_host:
        from pipelines.cluster import submit

        return submit(
            settings.monitor.kfp_host,
            settings,
            settings.monitor.kfp_experiment,
            name,
            {"data": data},
            settings.monitor.kfp_namespace,
        )
    from pipelines.local import run_local

    result = run_local(settings, {"data": data, "deploy_target": "none"})
    log.info("local retrain: %s (version %s)", result["run_dir"], result["version"])
    return os.path.basename(result["run_dir"])

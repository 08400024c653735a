"""The drift and performance checks' Prometheus metrics: a node-exporter textfile, and a
Pushgateway push.

Evidently 0.7 has no Prometheus exporter; the monitor is a short-lived job (a CronJob), which
Prometheus cannot scrape, so its gauges go to a textfile (node-exporter's textfile collector,
locally) and, when ``monitor.pushgateway_url`` is set, to a Pushgateway.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from churn.errors import MonitorError
from monitoring.drift import DECISIONS
from monitoring.performance import DECISIONS as PERFORMANCE_DECISIONS

JOB = "churn-drift-monitor"
PERFORMANCE_JOB = "churn-performance-monitor"
# Summary metric -> (gauge, help); each is set only when the check computed its metrics.
_PERFORMANCE_GAUGES = {
    "roc_auc": ("churn_performance_roc_auc", "Realised ROC-AUC on matured batch scores."),
    "pr_auc": ("churn_performance_pr_auc", "Realised PR-AUC (average precision)."),
    "precision": ("churn_performance_precision", "Precision of the stored decisions."),
    "recall": ("churn_performance_recall", "Recall of the stored decisions."),
    "log_loss": ("churn_performance_log_loss", "Log loss of the scores against the labels."),
    "brier": ("churn_performance_brier", "Brier score of the scores against the labels."),
    "calibration_error": (
        "churn_performance_calibration_error",
        "Expected calibration error over ten equal-width bins.",
    ),
}


def drift_metrics(summary: dict, finished: float) -> CollectorRegistry:
    """Gauges for one run's summary.

    Args:
        summary: What :func:`monitoring.drift.check_drift` returned.
        finished: Unix time the run finished.

    Returns:
        A registry holding ``churn_drift_share``, ``churn_drift_column_score``
        (labels ``column``, ``method``), ``churn_drift_prediction_score``,
        ``churn_drift_current_rows``, ``churn_drift_decision`` (label ``decision``, 1 for
        this run's), ``churn_drift_last_run_timestamp_seconds`` and, for the columns with a
        threshold of their own (calibrated, or ``monitor.fixed_alarms``),
        ``churn_drift_column_threshold`` (label ``column``), each labelled with
        ``model_version``.
    """
    registry = CollectorRegistry()
    version = summary["model_version"]

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ["model_version", *labels], registry=registry)

    rows = gauge("churn_drift_current_rows", "Champion records in the checked window.")
    rows.labels(version).set(summary["rows"]["current"])
    decision = gauge("churn_drift_decision", "1 for the last run's decision.", ("decision",))
    for name in DECISIONS:
        decision.labels(version, name).set(1.0 if summary["decision"] == name else 0.0)
    last = gauge("churn_drift_last_run_timestamp_seconds", "When the last drift check ended.")
    last.labels(version).set(finished)
    if summary["drift_share"] is not None:
        share = gauge("churn_drift_share", "Share of summary columns that drifted.")
        share.labels(version).set(summary["drift_share"])
        scores = gauge(
            "churn_drift_column_score", "Drift score per summary column.", ("column", "method")
        )
        for column in summary["columns"]:
            scores.labels(version, column["column"], column["method"]).set(column["score"])
        prediction = gauge("churn_drift_prediction_score", "Drift score of churn_probability.")
        prediction.labels(version).set(summary["prediction_drift"]["score"])
    calibration = summary.get("calibration")
    fixed = summary.get("fixed_alarms") or {}
    own = {
        # Thresholds that did not apply to this window (too few rows or values) did not
        # decide it.
        **(calibration["thresholds"] if calibration and calibration["applied"] else {}),
        **{c: use["alarm"] for c, use in fixed.items() if use["applied"]},
    }
    if own:
        limits = gauge(
            "churn_drift_column_threshold",
            "Calibrated or fixed distance at which one column (or the score) decides drift.",
            ("column",),
        )
        for column, limit in own.items():
            limits.labels(version, column).set(limit)
    return registry


def performance_metrics(summary: dict, finished: float) -> CollectorRegistry:
    """Gauges for one performance check's summary.

    Args:
        summary: What :func:`monitoring.performance.check_performance` returned.
        finished: Unix time the check finished.

    Returns:
        A registry holding the metric gauges of :data:`_PERFORMANCE_GAUGES` (when computed),
        ``churn_performance_rows`` (label ``kind``: labelled, pending, unlabelled...),
        ``churn_performance_auc_floor``, ``churn_performance_decision`` (label ``decision``)
        and ``churn_performance_last_run_timestamp_seconds``, each labelled with
        ``model_version``.
    """
    registry = CollectorRegistry()
    version = summary["model_version"]

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ["model_version", *labels], registry=registry)

    rows = gauge("churn_performance_rows", "Stored scores of the window by fate.", ("kind",))
    for kind, count in summary["rows"].items():
        rows.labels(version, kind).set(count)
    gauge("churn_performance_auc_floor", "Configured ROC-AUC floor.").labels(version).set(
        summary["auc_floor"]
    )
    decision = gauge("churn_performance_decision", "1 for the last check's.", ("decision",))
    for name in PERFORMANCE_DECISIONS:
        decision.labels(version, name).set(1.0 if summary["decision"] == name else 0.0)
    last = gauge(
        "churn_performance_last_run_timestamp_seconds", "When the last performance check ended."
    )
    last.labels(version).set(finished)
    if summary["metrics"] is not None:
        for key, (name, doc) in _PERFORMANCE_GAUGES.items():
            gauge(name, doc).labels(version).set(summary["metrics"][key])
    return registry


def export(summary: dict, finished: float, textfile: Path, pushgateway_url: str | None) -> None:
    """Writes the gauges to ``textfile`` (atomically) and pushes them when a URL is set.

    A performance summary (``check: performance``) gets :func:`performance_metrics` under the
    job ``churn-performance-monitor``; a drift summary :func:`drift_metrics`.

    Raises:
        MonitorError: The textfile cannot be written or the Pushgateway refuses the push.
    """
    if summary.get("check") == "performance":
        registry, job = performance_metrics(summary, finished), PERFORMANCE_JOB
    else:
        registry, job = drift_metrics(summary, finished), JOB
    try:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        # prometheus_client writes a temporary file and renames it: node-exporter never
        # reads half a file.
        write_to_textfile(str(textfile), registry)
    except OSError as exc:
        raise MonitorError(f"cannot write the metrics textfile {textfile}: {exc}") from exc
    if pushgateway_url:
        try:
            push_to_gateway(pushgateway_url, job=job, registry=registry, timeout=10)
        except OSError as exc:
            raise MonitorError(f"cannot push to the Pushgateway {pushgateway_url}: {exc}") from exc

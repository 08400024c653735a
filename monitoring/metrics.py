"""The drift check's Prometheus metrics: a node-exporter textfile, and a Pushgateway push.

Evidently 0.7 has no Prometheus exporter; the monitor is a short-lived job (a CronJob), which
Prometheus cannot scrape, so its gauges go to a textfile (node-exporter's textfile collector,
locally) and, when ``monitor.pushgateway_url`` is set, to a Pushgateway.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from churn.errors import MonitorError
from monitoring.drift import DECISIONS

JOB = "churn-drift-monitor"


def drift_metrics(summary: dict, finished: float) -> CollectorRegistry:
    """Gauges for one run's summary.

    Args:
        summary: What :func:`monitoring.drift.check_drift` returned.
        finished: Unix time the run finished.

    Returns:
        A registry holding ``churn_drift_share``, ``churn_drift_column_score``
        (labels ``column``, ``method``), ``churn_drift_prediction_score``,
        ``churn_drift_current_rows``, ``churn_drift_decision`` (label ``decision``, 1 for
        this run's) and ``churn_drift_last_run_timestamp_seconds``, each labelled with
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
    return registry


def export(summary: dict, finished: float, textfile: Path, pushgateway_url: str | None) -> None:
    """Writes the gauges to ``textfile`` (atomically) and pushes them when a URL is set.

    Raises:
        MonitorError: The textfile cannot be written or the Pushgateway refuses the push.
    """
    registry = drift_metrics(summary, finished)
    try:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        # prometheus_client writes a temporary file and renames it: node-exporter never
        # reads half a file.
        write_to_textfile(str(textfile), registry)
    except OSError as exc:
        raise MonitorError(f"cannot write the metrics textfile {textfile}: {exc}") from exc
    if pushgateway_url:
        try:
            push_to_gateway(pushgateway_url, job=JOB, registry=registry, timeout=10)
        except OSError as exc:
            raise MonitorError(f"cannot push to the Pushgateway {pushgateway_url}: {exc}") from exc

"""Realised model performance: stored batch scores joined with the labels observed since.

A batch score of customer ``c`` at cutoff ``t`` (``churn score``, ``churn.release.batch_score``)
predicts whether ``c`` churns in ``(t, t + H]``. Once the transaction log covers ``t + H``, the
truth is known: :func:`churn.dataset.labels.label_cutoffs` labels it with the model's own
horizon, churn definition and lookback (its ``input_spec``), on the feature repository's log
(``data/sources/transactions.parquet``; a rebuilt repository brings newer events). A score
whose ``t + H`` is after the log's observed end is not yet labelled: it is left out and counted
as ``pending``.

Stored scores live under ``monitor.scores_uri`` (default ``<registry uri>/scores``, where the
scoring pipeline writes, in a folder or on S3 alike) in daily partitions,
``date=YYYY-MM-DD/*.parquet`` or ``*.csv``, the partition date being the scoring date (the
cutoff). A check reads the partitions of its window ``[since, until)`` and keeps the rows whose
own cutoff falls in it.

Evidently 0.7's ``ClassificationPreset`` gives ROC-AUC, precision, recall, F1, accuracy and log
loss, at the threshold that produced the stored decisions. It has neither PR-AUC nor a
calibration curve, so those (average precision, Brier score, the reliability bins and their
expected calibration error) come from ``churn.model.metrics``, the functions the offline
evaluation uses.

Decision: ``insufficient_data`` below ``monitor.performance_min_rows`` labelled scores or with a
single label (Evidently is not run: a thin window never raises a false alarm); ``degraded``
when the realised ROC-AUC is below ``monitor.auc_floor``; else ``healthy``. Outputs go to the
monitoring store beside the drift checks, ``runs/<UTC time>-<version>-performance/``:
``report.html`` and ``summary.json`` (written last).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.dataset.labels import ChurnDefinition, label_cutoffs
from churn.errors import ChurnError, MonitorError
from churn.features.store import CANCELLATIONS_FILE, FeatureRepo
from churn.io.tables import csv_from_bytes, parquet_from_bytes
from churn.model import metrics as m
from churn.release.registry import open_registry
from churn.release.registry.base import Registry
from churn.release.score_store import SCORES_FOLDER
from churn.settings import Settings
from monitoring.drift import (
    REPORT_FILE,
    RUNS_FOLDER,
    SUMMARY_FILE,
    Window,
    snapshot_html,
    store_uri,
)
from monitoring.store import Store
from monitoring.times import utc

CHECK = "performance"
DECISIONS = ("degraded", "healthy", "insufficient_data")
SCORE_COLUMNS = ("customer_id", "cutoff", "score", "decision", "model_version", "scored_at")
CALIBRATION_BINS = 10
_EVIDENTLY_METRICS = {
    "RocAuc": "roc_auc",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "Accuracy": "accuracy",
    "LogLoss": "log_loss",
}


def scores_uri(settings: Settings) -> str:
    """Where stored scores live: ``monitor.scores_uri``, else where the scoring pipeline writes.

    The default is the scoring pipeline's own root (:data:`churn.release.score_store.SCORES_FOLDER`
    under the registry's URI, prefix included), so a scheduled scoring run and this check meet
    without a setting.
    """
    if settings.monitor.scores_uri:
        return settings.monitor.scores_uri
    return f"{settings.registry.uri.rstrip('/')}/{SCORES_FOLDER}"


def read_scores(store: Store, window: Window) -> pd.DataFrame:
    """Every stored score whose cutoff falls in the window, of any model version.

    Raises:
        MonitorError: A file is unreadable, lacks a column of :data:`SCORE_COLUMNS`, or holds
            a cutoff that is not a time or a score outside [0, 1] (the message names the file
            and the row).
    """
    frames = []
    for date in window.dates():
        for rel in store.list(f"date={date}"):
            if rel.endswith((".parquet", ".csv")):
                frame = _read_file(store, rel)
                frames.append(
                    frame[(frame["cutoff"] >= window.since) & (frame["cutoff"] < window.until)]
                )
    if not frames:
        return _empty_scores()
    return pd.concat(frames, ignore_index=True)


def _read_file(store: Store, rel: str) -> pd.DataFrame:
    location = store.location(rel)
    try:
        data = store.read(rel)
        table = parquet_from_bytes(data) if rel.endswith(".parquet") else csv_from_bytes(data)
    except (pa.ArrowException, OSError) as exc:
        raise MonitorError(f"scores file {location} is unreadable: {exc}") from exc
    missing = [c for c in SCORE_COLUMNS if c not in table.column_names]
    if missing:
        raise MonitorError(
            f"scores file {location} lacks columns {missing}: `churn score` writes "
            f"{', '.join(SCORE_COLUMNS)}"
        )
    frame = table.select(list(SCORE_COLUMNS)).to_pandas()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["model_version"] = frame["model_version"].astype(str)
    for column in ("cutoff", "scored_at"):
        frame[column] = _times(frame[column], location, column)
    score = pd.to_numeric(frame["score"], errors="coerce")
    bad = np.flatnonzero((frame["score"].notna() & score.isna()) | (score < 0) | (score > 1))
    if len(bad):
        row = int(bad[0])
        raise MonitorError(
            f"scores file {location}, row {row + 1}: score {frame['score'].iloc[row]} is not "
            "a probability in [0, 1]"
        )
    frame["score"] = score.astype("float64")
    return frame


def _times(values: pd.Series, location: str, column: str) -> pd.Series:
    parsed = pd.to_datetime(values, utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna())
    if len(bad):
        row = int(bad[0])
        raise MonitorError(
            f"scores file {location}, row {row + 1}: {column} {values.iloc[row]!r} is not a time"
        )
    return parsed.astype("datetime64[ns, UTC]")


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(dtype=str),
            "cutoff": pd.Series(dtype="datetime64[ns, UTC]"),
            "score": pd.Series(dtype="float64"),
            "decision": pd.Series(dtype=bool),
            "model_version": pd.Series(dtype=str),
            "scored_at": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


class LabelSource:
    """The labels a transaction log can give a model's scores today.

    Args:
        repo_dir: A built feature repository; its log, observed end and cancellations.
        input_spec: The model's ``input_spec``: ``horizon_days``, ``churn_definition``,
            ``seq_len`` and ``bin_days`` (the lookback that makes a customer labelable).

    Raises:
        MonitorError: The repository is not built or the spec lacks the horizon.
    """

    def __init__(self, repo_dir: str, input_spec: dict) -> None:
        try:
            self.repo = FeatureRepo(repo_dir)
            self.observed_until = pd.Timestamp(self.repo.spec["observed_until"])
        except (ChurnError, OSError, KeyError) as exc:
            raise MonitorError(f"no transaction log to label scores with: {exc}") from exc
        try:
            self.horizon_days = int(input_spec["horizon_days"])
            self.lookback_days = int(input_spec["seq_len"]) * int(input_spec["bin_days"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"the model's input_spec has no usable {exc}") from exc
        meta = input_spec.get("churn_definition") or {"name": "lapse"}
        self.definition = ChurnDefinition(
            meta["name"], meta.get("fraction"), meta.get("window_days")
        ).resolved(self.lookback_days)

    def matured(self, cutoffs: pd.Series) -> pd.Series:
        """Whether each cutoff's horizon ends within the observed log."""
        return cutoffs + pd.Timedelta(days=self.horizon_days) <= self.observed_until

    def labels(self, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
        """``customer_id``, ``cutoff``, ``label`` for every customer labelable at the cutoffs."""
        tx = pd.read_parquet(self.repo.sources / "transactions.parquet")
        cancellations = self.repo.sources / CANCELLATIONS_FILE
        labels = label_cutoffs(
            tx,
            cutoffs,
            horizon_days=self.horizon_days,
            lookback_days=self.lookback_days,
            observed_until=self.observed_until,
            definition=self.definition,
            cancellations=pd.read_parquet(cancellations) if cancellations.is_file() else None,
        )
        labels["customer_id"] = labels["customer_id"].astype(str)
        labels["cutoff"] = labels["cutoff"].astype("datetime64[ns, UTC]")
        return labels


def check_performance(
    settings: Settings,
    repo_dir: str,
    since: datetime,
    until: datetime | None = None,
    model: str | None = None,
    scores: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Measures one version's realised performance on its matured scores; writes the outputs.

    Args:
        settings: Resolved settings (``registry``, ``monitor``).
        repo_dir: The feature repository whose log labels the scores.
        since: First cutoff of the window (naive: UTC).
        until: End of the window (exclusive); ``None`` takes the log's observed end, so that
            repeated checks of the same data name the same window (and retraining cause).
        model: The version whose scores count; ``None`` takes the champion.
        scores: Root of the stored scores; ``None`` takes :func:`scores_uri`.
        now: The current time (tests).

    Returns:
        The summary written as ``summary.json``: ``decision``, ``metrics``, ``calibration``,
        ``rows`` (``scores``, ``other_versions``, ``not_scored``, ``duplicates``,
        ``pending``, ``unlabelled``, ``labelled``, ``positives``), the window, the floor.

    Raises:
        MonitorError: No champion, no scores of the version in the window, none matured yet,
            a malformed scores file, or a store that refuses the outputs.
    """
    cfg = settings.monitor
    now = now or datetime.now(UTC)
    registry = open_registry(settings.registry)
    version = model or _champion(registry, settings)
    try:
        labels = LabelSource(repo_dir, registry.input_spec(version))
    except ChurnError as exc:
        raise MonitorError(f"cannot label the scores of {version}: {exc}") from exc
    window = _window(since, until or labels.observed_until.to_pydatetime())
    source = Store(
        scores or scores_uri(settings), cfg.endpoint_url or settings.registry.endpoint_url
    )
    frame = read_scores(source, window)
    rows, joined = _join(frame, version, labels, source.uri, window)
    summary = {
        "check": CHECK,
        "model_name": registry.model_name,
        "model_version": version,
        "window": {"since": window.since.isoformat(), "until": window.until.isoformat()},
        "scores_uri": source.uri,
        "labels_observed_until": labels.observed_until.isoformat(),
        "horizon_days": labels.horizon_days,
        "churn_definition": labels.definition.to_meta(),
        "rows": rows,
        "min_rows": cfg.performance_min_rows,
        "auc_floor": cfg.auc_floor,
        "created_at": now.isoformat(),
    }
    store = Store(store_uri(settings), cfg.endpoint_url)
    run = f"{RUNS_FOLDER}/{now.strftime('%Y%m%dT%H%M%S%fZ')}-{version}-{CHECK}"
    if rows["labelled"] < cfg.performance_min_rows or joined["label"].nunique() < 2:
        summary.update(
            decision="insufficient_data",
            metrics=None,
            calibration=[],
            decision_threshold=None,
            report_html=None,
        )
    else:
        threshold = decision_threshold(joined)
        snapshot = run_report(joined, threshold)
        found = {**read_snapshot(snapshot.dict()), **extra_metrics(joined)}
        summary.update(
            decision="degraded" if found["roc_auc"] < cfg.auc_floor else "healthy",
            metrics={k: v for k, v in found.items() if k != "calibration"},
            calibration=found["calibration"],
            decision_threshold=threshold,
            report_html=store.write(f"{run}/{REPORT_FILE}", snapshot_html(snapshot)),
        )
    summary["summary_json"] = store.location(f"{run}/{SUMMARY_FILE}")
    store.write(f"{run}/{SUMMARY_FILE}", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _champion(registry: Registry, settings: Settings) -> str:
    champion = registry.champion()
    if champion is None:
        raise MonitorError(
            f"{settings.registry.uri} has no champion of {settings.registry.model_name}: "
            "pass --model VERSION"
        )
    return str(champion.version)


def _window(since: datetime, until: datetime) -> Window:
    since, until = utc(since), utc(until)
    if since >= until:
        raise MonitorError(f"the window is empty: --since {since} is not before --until {until}")
    return Window(since, until)


def _join(
    frame: pd.DataFrame, version: str, labels: LabelSource, uri: str, window: Window
) -> tuple[dict, pd.DataFrame]:
    """The version's scored rows with their labels, and what was left out at each step.

    Raises:
        MonitorError: The version has no scores in the window, or none has matured yet.
    """
    span = f"from {window.since.isoformat()} to {window.until.isoformat()}"
    mine = frame[frame["model_version"] == version]
    if mine.empty:
        raise MonitorError(
            f"{uri} has no scores of {version} with a cutoff {span} ({len(frame)} of other "
            "versions)"
        )
    scored = mine[mine["score"].notna()]
    # A partition scored twice keeps the latest score of each customer and cutoff.
    latest = scored.sort_values("scored_at").drop_duplicates(["customer_id", "cutoff"], keep="last")
    if latest.empty:
        raise MonitorError(
            f"none of the {len(mine)} rows of {version} {span} in {uri} has a score (their "
            "customers were unknown or had no history at the cutoff)"
        )
    matured = latest[labels.matured(latest["cutoff"])]
    if matured.empty:
        first = latest["cutoff"].min()
        raise MonitorError(
            f"none of the {len(mine)} scores of {version} {span} has matured: the earliest, at "
            f"{first.date()}, needs the log until "
            f"{(first + pd.Timedelta(days=labels.horizon_days)).date()} and it ends at "
            f"{labels.observed_until.isoformat()}"
        )
    observed = labels.labels(sorted(matured["cutoff"].unique()))
    joined = matured.merge(observed, on=["customer_id", "cutoff"], how="inner")
    rows = {
        "scores": len(frame),
        "other_versions": len(frame) - len(mine),
        "not_scored": len(mine) - len(scored),
        "duplicates": len(scored) - len(latest),
        "pending": len(latest) - len(matured),
        "unlabelled": len(matured) - len(joined),
        "labelled": len(joined),
        "positives": int(joined["label"].sum()),
    }
    return rows, joined


def decision_threshold(joined: pd.DataFrame) -> float:
    """The threshold that reproduces the stored decisions (``decision = score >= threshold``).

    Precision and recall are then those of the decisions the business acted on.

    Raises:
        MonitorError: No single threshold separates the decisions (files of one version that
            disagree).
    """
    positive = joined["decision"].astype(bool).to_numpy()
    score = joined["score"].to_numpy()
    if not positive.any():
        return float(min(1.0, np.nextafter(score.max(), np.inf)))
    threshold = float(score[positive].min())
    if (score[~positive] >= threshold).any():
        raise MonitorError(
            "the stored decisions do not follow one threshold: a score of "
            f"{score[~positive].max():.6f} was not flagged while {threshold:.6f} was"
        )
    return threshold


def run_report(joined: pd.DataFrame, threshold: float):
    """Evidently's classification preset on the labelled scores.

    Returns:
        Evidently's snapshot.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    definition = DataDefinition(
        classification=[
            BinaryClassification(target="label", prediction_probas="score", pos_label=1)
        ]
    )
    data = pd.DataFrame(
        {"label": joined["label"].astype("int64"), "score": joined["score"].astype("float64")}
    )
    report = Report([ClassificationPreset(probas_threshold=threshold)])
    return report.run(current_data=Dataset.from_pandas(data, data_definition=definition))


def read_snapshot(snap: dict) -> dict:
    """``roc_auc``, ``precision``, ``recall``, ``f1``, ``accuracy``, ``log_loss`` from a snapshot.

    Raises:
        MonitorError: The snapshot lacks one of them (another Evidently version).
    """
    found = {}
    for metric in snap["metrics"]:
        name = metric["config"]["type"].rsplit(":", 1)[-1]
        if name in _EVIDENTLY_METRICS:
            found[_EVIDENTLY_METRICS[name]] = float(metric["value"])
    missing = sorted(set(_EVIDENTLY_METRICS.values()) - set(found))
    if missing:
        raise MonitorError(f"Evidently's classification preset gave no {missing}")
    return found


def extra_metrics(joined: pd.DataFrame) -> dict:
    """PR-AUC and calibration, which Evidently 0.7's classification preset lacks.

    Returns:
        ``pr_auc`` (average precision), ``brier``, ``calibration_error`` (expected
        calibration error over :data:`CALIBRATION_BINS` equal-width bins), ``mean_score``,
        ``positive_rate`` and ``calibration`` (the bins: ``mean_predicted``,
        ``frac_positive``, ``count``).
    """
    y = joined["label"].to_numpy(dtype=np.float64)
    p = joined["score"].to_numpy(dtype=np.float64)
    frac, mean, count = m.calibration_bins(y, p, CALIBRATION_BINS)
    return {
        "pr_auc": m.average_precision(y, p),
        "brier": m.brier(y, p),
        "calibration_error": float(np.sum(count * np.abs(frac - mean)) / len(y)),
        "mean_score": float(p.mean()),
        "positive_rate": float(y.mean()),
        "calibration": [
            {"mean_predicted": float(a), "frac_positive": float(b), "count": int(c)}
            for a, b, c in zip(mean, frac, count, strict=True)
        ],
    }

"""Drift of served traffic against the champion's training data, measured with Evidently 0.7.

One run reads the inference log (``serving.inference_log``) for a time window, keeps the champion
version's records, and compares their input summary columns (``churn.features.summary``) with the
version's ``reference.parquet`` in the registry (``churn.release.reference``): a
``DataDriftPreset`` over the summary columns, not the raw bins (Evidently slows sharply with many
columns, evidently#763), plus a ``ValueDrift`` of ``churn_probability`` for prediction drift.

Decision: ``insufficient_data`` below ``monitor.min_rows`` current rows (Evidently is not run,
so a thin window never raises a false alarm); else ``drift`` when the share of drifted summary
columns (all but ``monitor.untested_columns``, which move by construction as the served
population ages) reaches ``monitor.drift_share``, or when one tested column or the score
distribution drifted by at least ``monitor.column_alarm``, or by its calibrated threshold once
the version has one (:mod:`monitoring.calibration`), or by its own ``monitor.fixed_alarms``
distance; else ``no_drift``. Evidently tests
at most ``monitor.max_rows_per_side`` rows of each side, a seeded sample of a larger one
(:func:`evaluate`); ``rows`` keeps the true counts and ``sampled`` the tested ones. Outputs go
to the monitoring store under ``runs/<UTC time>-<version>/``: ``report.html`` (Evidently's) and
``summary.json``, written last, so a run with a summary is complete.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.errors import MonitorError
from churn.features.summary import TICKET_CHANGE_COLUMN
from churn.io.tables import parquet_from_bytes
from churn.release.reference import SCORE_COLUMN
from churn.release.registry import open_registry
from churn.settings import MonitorConfig, Settings
from monitoring.calibration import calibrate
from monitoring.store import Store
from monitoring.times import utc

RUNS_FOLDER = "runs"
TRIGGERS_FOLDER = "triggers"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
DECISIONS = ("drift", "no_drift", "insufficient_data")
_UNKNOWN_CATEGORY = "<unknown>"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[since, until)`` in UTC."""

    since: datetime
    until: datetime

    def dates(self) -> list[str]:
        """The ``date=`` partitions the window touches."""
        day, last = self.since.date(), (self.until - timedelta(microseconds=1)).date()
        out = []
        while day <= last:
            out.append(day.isoformat())
            day += timedelta(days=1)
        return out


def resolve_window(
    since: datetime | None, until: datetime | None, hours: float, now: datetime | None = None
) -> Window:
    """The window to check: ``[since, until)``, by default the last ``hours`` before now.

    Naive times are taken as UTC.

    Raises:
        MonitorError: The window is empty or reversed.
    """
    until = utc(until if until is not None else now or datetime.now(UTC))
    since = utc(since) if since is not None else until - timedelta(hours=hours)
    if since >= until:
        raise MonitorError(f"the window is empty: --since {since} is not before --until {until}")
    return Window(since, until)


def read_current(
    log: Store, window: Window, version: str, columns: list[str]
) -> tuple[pd.DataFrame, int]:
    """The champion's records of the window from the inference log.

    Args:
        log: The inference log's root.
        window: The time window.
        version: The model version whose records count.
        columns: Summary columns the reference has; every log file must have them.

    Returns:
        The records (``columns`` and ``churn_probability``) and how many records of any
        version the window held.

    Raises:
        MonitorError: A log file is unreadable or lacks a column (the message names both).
    """
    keys = ["time", "model_version"]
    wanted = [*keys, SCORE_COLUMN, *columns]
    frames, seen = [], 0
    for date in window.dates():
        for rel in log.list(f"date={date}"):
            if not rel.endswith(".parquet"):
                continue
            location = log.location(rel)
            try:
                table = parquet_from_bytes(log.read(rel))
            except (pa.ArrowException, OSError) as exc:
                raise MonitorError(f"inference log file {location} is unreadable: {exc}") from exc
            absent = [c for c in keys if c not in table.column_names]
            if absent:
                raise MonitorError(f"inference log file {location} lacks columns {absent}")
            records = table.select(keys).to_pandas()
            times = pd.to_datetime(records["time"], utc=True)
            inside = ((times >= window.since) & (times < window.until)).to_numpy()
            seen += int(inside.sum())
            mine = inside & (records["model_version"] == version).to_numpy()
            if not mine.any():
                continue  # another version's records: written for its inputs, not checked
            missing = [c for c in wanted if c not in table.column_names]
            if missing:
                raise MonitorError(
                    f"inference log file {location} lacks columns {missing} that {version}'s "
                    "reference has: it was written for another model's inputs, or by a "
                    "transformer older than the version (upgrade the transformer before "
                    "registering versions with the new columns)"
                )
            frames.append(table.select(wanted).filter(pa.array(mine)).to_pandas())
    if not frames:
        return pd.DataFrame(columns=wanted), seen
    return pd.concat(frames, ignore_index=True), seen


def check_drift(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    hours: float | None = None,
    now: datetime | None = None,
) -> dict:
    """Runs one drift check of the champion and writes its report and summary.

    Args:
        settings: Resolved settings (``registry``, ``monitor``, ``transformer.log_uri``).
        since: Window start; ``None`` takes ``until - hours``.
        until: Window end; ``None`` takes now.
        hours: Window length; ``None`` takes ``monitor.window_hours``.
        now: The current time (tests).

    Returns:
        The summary written as ``summary.json`` (see the module docstring).

    Raises:
        MonitorError: No champion, no reference, no log records in the window, a log file
            without the summary columns, or a store that refuses the outputs.
    """
    cfg = settings.monitor
    now = now or datetime.now(UTC)
    window = resolve_window(since, until, hours or cfg.window_hours, now)
    registry = open_registry(settings.registry)
    champion = registry.champion()
    if champion is None:
        raise MonitorError(f"{settings.registry.uri} has no champion of {registry.model_name}")
    try:
        reference = parquet_from_bytes(registry.reference(champion.version)).to_pandas()
    except Exception as exc:  # RegistryError, or Arrow on a damaged file
        raise MonitorError(f"no usable reference for {champion.version}: {exc}") from exc
    columns = [c for c in reference.columns if c != SCORE_COLUMN]
    tested = tested_columns(columns, cfg.untested_columns, champion.version)
    fixed = fixed_alarms(cfg.fixed_alarms, columns, tested, champion.version)
    log = Store(log_uri(settings), cfg.endpoint_url)
    current, seen = read_current(log, window, champion.version, columns)
    if seen == 0:
        raise MonitorError(
            f"the inference log {log.uri} has no records from {window.since.isoformat()} to "
            f"{window.until.isoformat()}"
        )
    summary = {
        "model_name": registry.model_name,
        "model_version": champion.version,
        "window": {"since": window.since.isoformat(), "until": window.until.isoformat()},
        "rows": {"current": len(current), "reference": len(reference), "window_all": seen},
        "min_rows": cfg.min_rows,
        "drift_share_threshold": cfg.drift_share,
        "untested_columns": [c for c in columns if c not in tested],
        "created_at": now.isoformat(),
    }
    store = Store(store_uri(settings), cfg.endpoint_url)
    run = f"{RUNS_FOLDER}/{now.strftime('%Y%m%dT%H%M%S%fZ')}-{champion.version}"
    if len(current) < cfg.min_rows:
        summary.update(
            decision="insufficient_data",
            drift_share=None,
            reasons=[],
            drifted_columns=[],
            alarm_columns=[],
            columns=[],
            prediction_drift=None,
            sampled=None,
            calibration=None,
            fixed_alarms={},
            empty_columns=[],
            report_html=None,
        )
    else:
        calibration = calibrate(
            store,
            RUNS_FOLDER,
            champion.version,
            min(len(current), cfg.max_rows_per_side),
            [c for c in [*tested, SCORE_COLUMN] if c not in fixed],
            cfg,
        )
        fields, html = evaluate(reference, current, tested, cfg, calibration, fixed)
        summary.update(fields, calibration=calibration)
        summary["report_html"] = store.write(f"{run}/{REPORT_FILE}", html)
    summary["summary_json"] = store.location(f"{run}/{SUMMARY_FILE}")
    store.write(f"{run}/{SUMMARY_FILE}", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def tested_columns(columns: list[str], untested: list[str], version: str) -> list[str]:
    """The summary columns the drift test runs on: all but ``monitor.untested_columns``.

    Raises:
        MonitorError: The setting names a column the version's reference lacks (a typo would
            otherwise test a column the user meant to leave out).
    """
    unknown = [c for c in untested if c not in columns]
    if unknown:
        raise MonitorError(
            f"monitor.untested_columns names {unknown}, which the reference of {version} "
            f"lacks; its columns: {', '.join(columns)}"
        )
    return [c for c in columns if c not in untested]


def fixed_alarms(
    alarms: dict[str, float], columns: list[str], tested: list[str], version: str
) -> dict[str, float]:
    """``monitor.fixed_alarms`` for the tested columns and the score.

    Args:
        alarms: The setting.
        columns: The reference's summary columns.
        tested: Those the drift test runs on.
        version: The champion version (for messages).

    Returns:
        The alarms that apply. The ticket change of a version registered before that column
        existed, and a column ``monitor.untested_columns`` leaves out, are logged and left out.

    Raises:
        MonitorError: A name is neither a column of the reference nor the score (a typo would
            otherwise leave the column it meant to the calibrated threshold).
    """
    unknown = [c for c in alarms if c not in [*columns, SCORE_COLUMN, TICKET_CHANGE_COLUMN]]
    if unknown:
        raise MonitorError(
            f"monitor.fixed_alarms names {unknown}, which the reference of {version} lacks; "
            f"its columns: {', '.join([*columns, SCORE_COLUMN])}"
        )
    left = sorted(c for c in alarms if c not in [*tested, SCORE_COLUMN])
    if left:
        logger.warning(
            "monitor.fixed_alarms names %s, which %s does not test (a reference registered "
            "before the column existed, or monitor.untested_columns): not applied",
            left,
            version,
        )
    return {c: alarms[c] for c in [*tested, SCORE_COLUMN] if c in alarms}


def evaluate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    cfg: MonitorConfig,
    calibration: dict | None = None,
    fixed: dict[str, float] | None = None,
) -> tuple[dict, bytes]:
    """Evidently's report on at most ``cfg.max_rows_per_side`` rows of each side.

    A larger side is cut to a seeded random sample (``cfg.sample_seed``): the statistical
    tests' figures barely move beyond 10,000 rows while their cost grows with the rows,
    and Evidently computes every column's drift three times (``DriftedColumnsCount``, each
    ``ValueDrift``, and the preset's table when it renders).

    Args:
        reference: The version's reference rows.
        current: The window's rows.
        columns: The tested summary columns.
        cfg: Monitor settings.
        calibration: :func:`monitoring.calibration.calibrate`'s thresholds, if any.
        fixed: Columns with an alarm of their own (:func:`fixed_alarms`), which no
            calibration replaces.

    Returns:
        The summary's drift fields (:func:`read_snapshot`) plus ``sampled`` (the rows each
        side was tested on, the cap and the seed), and the HTML report.
    """
    rng = np.random.default_rng(cfg.sample_seed)
    reference = sample_rows(reference, cfg.max_rows_per_side, rng)
    current = sample_rows(current, cfg.max_rows_per_side, rng)
    empty = empty_columns(reference, current, columns)
    columns = [c for c in columns if c not in empty]
    own = fixed_use(fixed or {}, current, cfg.fixed_alarm_min_values)
    snapshot = run_report(reference, current, columns, cfg.drift_share, fixed)
    thresholds = calibration["thresholds"] if calibration and calibration["applied"] else None
    limits = {c: (use["alarm"] if use["applied"] else math.inf) for c, use in own.items()}
    fields = read_snapshot(snapshot.dict(), cfg.drift_share, cfg.column_alarm, thresholds, limits)
    fields["fixed_alarms"] = own
    fields["empty_columns"] = empty
    fields["sampled"] = {
        "reference": len(reference),
        "current": len(current),
        "max_rows_per_side": cfg.max_rows_per_side,
        "seed": cfg.sample_seed,
    }
    return fields, snapshot_html(snapshot)


def empty_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> list[str]:
    """Tested columns without one value on a side, which Evidently cannot test.

    The ticket change is undefined for a customer without a purchase in the last bin, so a
    window of lapsed customers (a win-back campaign) has none. Left out of this run and
    listed in the summary, not a crash of every check.

    Raises:
        MonitorError: No tested column has values on both sides.
    """
    empty = [c for c in columns if reference[c].isna().all() or current[c].isna().all()]
    if empty:
        logger.warning("columns without values on a side, not tested in this window: %s", empty)
    if len(empty) == len(columns):
        raise MonitorError(f"no tested column has values on both sides: {empty}")
    return empty


def fixed_use(fixed: dict[str, float], current: pd.DataFrame, min_values: int) -> dict[str, dict]:
    """Each fixed alarm, the current values its column has, and whether it applies.

    A distance on a few dozen values is noise: on a drift-free simulation 41% of 20-value
    samples reached 0.3, none of 200. Below ``monitor.fixed_alarm_min_values`` the column
    does not decide alone (it still counts for the share).
    """
    out = {}
    for column, alarm in fixed.items():
        values = int(current[column].notna().sum()) if column in current else 0
        out[column] = {"alarm": alarm, "current_values": values, "applied": values >= min_values}
    return out


def sample_rows(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` itself when it has at most ``max_rows`` rows, else that many of its rows.

    The rows are drawn without replacement and kept in their original order.
    """
    if len(frame) <= max_rows:
        return frame
    rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    share: float,
    alarms: Mapping[str, float] | None = None,
):
    """Evidently's data drift preset over ``columns`` and a drift check of the scores.

    ``alarms`` (the columns with a fixed alarm, the score among them) are tested with a
    distance whatever the reference's size: Evidently would otherwise switch to a p-value at
    1,000 reference values or fewer (NaNs dropped), which no alarm distance can compare to.
    Their alarm is Evidently's threshold for them too, so a column noisy enough to need one
    counts for the drifted share only where it would decide alone.

    Returns:
        Evidently's snapshot.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    alarms = alarms or {}
    own = {c: limit for c, limit in alarms.items() if c in columns}
    categorical = [c for c in columns if c.startswith("cat_")]
    numeric = [c for c in columns if c not in categorical] + [SCORE_COLUMN]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def dataset(frame: pd.DataFrame) -> object:
        frame = frame[[*columns, SCORE_COLUMN]].copy()
        # A missing category is a value of its own: serving logs it as null.
        for c in categorical:
            frame[c] = frame[c].astype(object).where(frame[c].notna(), _UNKNOWN_CATEGORY)
        for c in numeric:
            frame[c] = frame[c].astype("float64")
        return Dataset.from_pandas(frame, data_definition=definition)

    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                drift_share=share,
                per_column_method={c: _distance(c) for c in own} or None,
                per_column_threshold=own or None,
            ),
            ValueDrift(
                column=SCORE_COLUMN,
                method="wasserstein" if SCORE_COLUMN in alarms else None,
                threshold=alarms.get(SCORE_COLUMN),
            ),
        ],
        include_tests=True,
    )
    return report.run(current_data=dataset(current), reference_data=dataset(reference))


# Evidently reports a method it chose by its display name, one it was given by its id.
_METHOD_NAMES = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
}


def _distance(column: str) -> str:
    """Evidently's distance for a summary column: Jensen-Shannon for categories."""
    return "jensenshannon" if column.startswith("cat_") else "wasserstein"


def read_snapshot(
    snap: dict,
    share_threshold: float,
    column_alarm: float,
    thresholds: dict[str, float] | None = None,
    fixed: dict[str, float] | None = None,
) -> dict:
    """The summary's drift fields from Evidently's ``snapshot.dict()``.

    Evidently 0.7 has no dataset-drift flag: a column drifted when its ``ValueDrift`` test
    failed. The data drifted when ``DriftedColumnsCount``'s share reached ``share_threshold``,
    or when one column, or the score, drifted by at least its threshold (:func:`strong`):
    ``fixed`` (``monitor.fixed_alarms``) where it names the column, else ``thresholds``
    (calibrated per column) where they do, else ``column_alarm``.
    A drift that moves one quantity strongly moves too few columns for the share.

    Returns:
        ``decision``, ``reasons`` (why ``drift``; empty otherwise), ``drift_share``,
        ``drifted_columns``, ``alarm_columns`` (those deciding alone, the score's name
        included) and ``columns`` (each with ``column``, ``method``, ``score``,
        ``threshold``, ``drifted``) and ``prediction_drift`` (the same fields for
        ``churn_probability``).
    """
    failed = {
        test["metric_config"]["params"]["column"]
        for test in snap["tests"]
        if test["metric_config"]["params"].get("type", "").endswith(":ValueDrift")
        and test["status"] == "FAIL"
    }
    share, found = 0.0, []
    for metric in snap["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            found.append(
                {
                    "column": config["column"],
                    "method": _METHOD_NAMES.get(config["method"], config["method"]),
                    "score": float(metric["value"]),
                    "threshold": float(config["threshold"]),
                    "drifted": config["column"] in failed,
                }
            )
    prediction = next(c for c in found if c["column"] == SCORE_COLUMN)
    columns = [c for c in found if c["column"] != SCORE_COLUMN]
    limits, own = thresholds or {}, fixed or {}
    reasons = []
    if share >= share_threshold:
        reasons.append(f"drifted share {share:.3f} >= drift_share {share_threshold}")
    alarms = []
    for c in [*columns, prediction]:
        name = c["column"]
        limit = own.get(name, limits.get(name, column_alarm))
        if strong(c, limit):
            alarms.append(name)
            if name in own:
                reasons.append(f"{name} distance {c['score']:.3f} >= its fixed alarm {limit}")
            elif name in limits:
                reasons.append(f"{name} distance {c['score']:.3f} >= calibrated {limit}")
            else:
                reasons.append(f"{name} distance >= column_alarm {column_alarm}")
    return {
        "decision": "drift" if reasons else "no_drift",
        "reasons": reasons,
        "drift_share": share,
        "drifted_columns": [c for c in columns if c["drifted"]],
        "alarm_columns": alarms,
        "columns": columns,
        "prediction_drift": prediction,
    }


def strong(column: dict, column_alarm: float) -> bool:
    """Whether one column's drift decides on its own: a distance of at least ``column_alarm``.

    A p-value (Evidently's KS and chi-square, used up to 1,000 reference rows) never decides
    alone: on a window of a few thousand rows it flags differences too small to matter, and
    the share of drifted columns still counts it.
    """
    return (
        column["drifted"]
        and "p_value" not in column["method"]
        and (column["score"] >= column_alarm)
    )


def history(settings: Settings, last: int | None = None) -> tuple[list[dict], int]:
    """Summaries of past runs, oldest first, and the trigger records beside them.

    Args:
        settings: Platform settings; ``monitor.store_uri`` names the store.
        last: Read only the latest this many runs' summaries (run folders are named by
            time, so their names give the order without reading them: one GET per summary
            on S3 adds up under an hourly CronJob); ``None`` reads every one.

    Returns:
        One dict per run's ``summary.json``, then the trigger records (``triggers/*.json``)
        as dicts with ``"kind": "trigger"``; and how many earlier runs were left unread.

    Raises:
        MonitorError: The store cannot be read, or a file in it is not a JSON object.
    """
    store = Store(store_uri(settings), settings.monitor.endpoint_url)
    summaries = [rel for rel in store.list(RUNS_FOLDER) if rel.endswith(f"/{SUMMARY_FILE}")]
    shown = summaries if last is None else summaries[max(len(summaries) - last, 0) :]
    out = [_record(store, rel) for rel in shown]
    out += [
        {"kind": "trigger", **_record(store, rel)}
        for rel in store.list(TRIGGERS_FOLDER)
        if rel.endswith(".json")
    ]
    return out, len(summaries) - len(shown)


def _record(store: Store, rel: str) -> dict:
    """One JSON object of the store.

    Raises:
        MonitorError: The file cannot be read or is not a JSON object; the message names it.
    """
    try:
        record = json.loads(store.read(rel))
    except ValueError as exc:
        raise MonitorError(f"{store.location(rel)} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise MonitorError(f"{store.location(rel)} is not a JSON object")
    return record


def store_uri(settings: Settings) -> str:
    """The monitoring store: ``monitor.store_uri``, else ``HOME/monitoring``."""
    return settings.monitor.store_uri or str(settings.home / "monitoring")


def log_uri(settings: Settings) -> str:
    """The inference log: ``monitor.log_uri``, the transformer's, else ``HOME/inference_log``."""
    return (
        settings.monitor.log_uri
        or settings.transformer.log_uri
        or str(settings.home / "inference_log")
    )


def snapshot_html(snapshot: object) -> bytes:
    """Evidently's HTML report of a snapshot, as bytes (it only writes to a path)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="churn-drift-") as tmp:
        path = Path(tmp) / REPORT_FILE
        snapshot.save_html(str(path))  # type: ignore[attr-defined]
        return path.read_bytes()

"""Drift thresholds per column, set by a version's first drift-free windows.

One ``monitor.column_alarm`` must clear the noisiest column's drift-free distances: on
drift-free days of ``benchmarks/loop.py`` ``num_recency_days`` reached 0.17, while the last
week's purchase count stayed under 0.1. So a drift in the quiet columns waits until it is
large. Each version's own first ``monitor.calibration_windows`` ``no_drift`` windows show how
far served traffic without drift moves each column. ``calibration_margin`` times a column's
largest distance over them, kept within [``calibration_floor``, ``column_alarm``], is that
column's threshold from then on.

Which windows: the version's earliest checks (by run, so a window checked later for an earlier
time changes nothing) that do not overlap (an hourly monitor with 24-hour windows must not
calibrate on one day seen 24 times). They stay fixed, so a drift that grows slowly cannot raise
the thresholds it is measured against. The thresholds apply only to a window tested on at least
as many rows as the fewest of them (``fewest_rows``): distances on fewer rows are noisier.
Only distances count: p-values (Evidently's tests up to 1,000 reference rows) are not on the
same scale. A summary that cannot be read is skipped with a warning: a damaged file in the
store must not stop every later check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from churn.errors import MonitorError
from churn.settings import MonitorConfig
from monitoring.store import Store
from monitoring.times import parse_utc

log = logging.getLogger(__name__)


def calibrate(
    store: Store,
    runs_folder: str,
    version: str,
    tested_rows: int,
    columns: list[str],
    cfg: MonitorConfig,
) -> dict | None:
    """The calibrated thresholds of ``version``, once it has enough drift-free windows.

    Args:
        store: The monitoring store holding ``<runs_folder>/<UTC time>-<version>/summary.json``.
        runs_folder: Its runs folder.
        version: The champion version being checked.
        tested_rows: The rows the window being checked is tested on.
        columns: The names that may get a threshold: the tested columns and the score.
        cfg: ``calibration_windows``, ``calibration_margin``, ``calibration_floor`` and
            ``column_alarm``.

    Returns:
        ``None`` while calibration is off or the version has fewer usable windows; else
        :func:`thresholds`' fields plus ``applied``: whether ``tested_rows`` reaches
        ``fewest_rows`` (if not, ``column_alarm`` decides, as before calibration).
    """
    if cfg.calibration_windows == 0:
        return None
    windows = first_windows(_summaries(store, runs_folder, version), cfg.calibration_windows)
    if len(windows) < cfg.calibration_windows:
        return None
    out = thresholds(windows, columns, cfg)
    out["applied"] = tested_rows >= out["fewest_rows"]
    return out


def thresholds(summaries: list[dict], columns: list[str], cfg: MonitorConfig) -> dict:
    """``calibration_margin`` times each column's largest distance over ``summaries``, within
    [``calibration_floor``, ``column_alarm``]; the score's too, if ``columns`` names it.

    Returns:
        ``windows`` (each ``since/until``), ``fewest_rows`` (the fewest rows any of them was
        tested on) and ``thresholds`` (column to distance).
    """
    largest: dict[str, float] = {}
    for summary in summaries:
        for column in [*summary["columns"], summary["prediction_drift"]]:
            name = column["column"]
            if name in columns and "p_value" not in column["method"]:
                largest[name] = max(largest.get(name, 0.0), float(column["score"]))
    return {
        "windows": [f"{s['window']['since']}/{s['window']['until']}" for s in summaries],
        "fewest_rows": min(int(s["sampled"]["current"]) for s in summaries),
        "thresholds": {
            name: round(
                min(cfg.column_alarm, max(cfg.calibration_floor, cfg.calibration_margin * value)),
                6,
            )
            for name, value in sorted(largest.items())
        },
    }


def first_windows(summaries: Iterable[object], count: int) -> list[dict]:
    """The first ``count`` drift-free summaries, in the order given, whose windows do not
    overlap any chosen before them."""
    chosen: list[tuple[datetime, datetime]] = []
    out: list[dict] = []
    for summary in summaries:
        if not isinstance(summary, dict) or not _usable(summary):
            continue
        since, until = parse_utc(summary["window"]["since"]), parse_utc(summary["window"]["until"])
        if any(since < u and s < until for s, u in chosen):
            continue
        chosen.append((since, until))
        out.append(summary)
        if len(out) == count:
            break
    return out


def _summaries(store: Store, runs_folder: str, version: str) -> Iterator[object]:
    """The version's run summaries in the order the runs were made (their folder names start
    with the run's UTC time), read one at a time; unreadable ones are skipped with a warning."""
    for rel in store.list(runs_folder):
        if not rel.endswith(f"-{version}/summary.json"):
            continue
        try:
            yield json.loads(store.read(rel))
        except (MonitorError, ValueError) as exc:
            log.warning("calibration skips %s: %s", store.location(rel), exc)


def _usable(summary: dict) -> bool:
    """A ``no_drift`` summary with the fields calibration reads, of the expected types."""
    if summary.get("decision") != "no_drift":
        return False
    window, columns = summary.get("window"), summary.get("columns")
    try:
        parse_utc(window["since"]), parse_utc(window["until"])  # type: ignore[index]
        if not isinstance(summary["sampled"]["current"], int):
            return False
        entries = [*columns, summary["prediction_drift"]]  # type: ignore[misc]
        return all(
            isinstance(c["column"], str)
            and isinstance(c["method"], str)
            and isinstance(c["score"], int | float)
            for c in entries
        )
    except (KeyError, TypeError, ValueError):
        return False

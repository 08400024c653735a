"""Drift thresholds per column, set by a version's first drift-free windows.

One ``monitor.column_alarm`` must clear the noisiest column's drift-free distances: on
drift-free days of ``benchmarks/loop.py`` ``num_recency_days`` reached 0.17, while the last
week's purchase count stayed under 0.1. So a drift in the quiet columns waits until it is
large. Each version's own first ``monitor.calibration_windows`` ``no_drift`` windows show how
far served traffic without drift moves each column. ``calibration_margin`` times a column's
largest distance over them, kept within [``calibration_floor``, ``column_alarm``], is that
column's threshold from then on.

The windows are the first ones, and they do not overlap, and they stay fixed. A drift that
grows slowly cannot raise the thresholds it is measured against. An hourly monitor with
24-hour windows cannot calibrate on one day of traffic seen 24 times. Only distances count:
p-values (Evidently's tests up to 1,000 reference rows) are not on the same scale.
"""

from __future__ import annotations

from churn.settings import MonitorConfig


def calibrate(
    past: list[dict], version: str, columns: list[str], cfg: MonitorConfig
) -> dict | None:
    """The calibrated thresholds of ``version``, once it has enough drift-free windows.

    Args:
        past: Earlier run summaries (``summary.json``), in any order; other versions' and
            undecided runs are ignored.
        version: The champion version being checked.
        columns: The names that may get a threshold: the tested columns and the score.
        cfg: ``calibration_windows``, ``calibration_margin``, ``calibration_floor`` and
            ``column_alarm``.

    Returns:
        ``None`` while calibration is off or the version has fewer usable windows; else
        ``windows`` (each ``since/until``) and ``thresholds`` (column to distance).
    """
    if cfg.calibration_windows == 0:
        return None
    windows = _first_disjoint(
        [s for s in past if s.get("model_version") == version and s.get("decision") == "no_drift"],
        cfg.calibration_windows,
    )
    if len(windows) < cfg.calibration_windows:
        return None
    largest: dict[str, float] = {}
    for summary in windows:
        for column in [*summary["columns"], summary["prediction_drift"]]:
            name = column["column"]
            if name in columns and "p_value" not in column["method"]:
                largest[name] = max(largest.get(name, 0.0), float(column["score"]))
    return {
        "windows": [f"{s['window']['since']}/{s['window']['until']}" for s in windows],
        "thresholds": {
            name: round(
                min(cfg.column_alarm, max(cfg.calibration_floor, cfg.calibration_margin * value)),
                6,
            )
            for name, value in sorted(largest.items())
        },
    }


def _first_disjoint(summaries: list[dict], count: int) -> list[dict]:
    """The earliest ``count`` summaries whose windows do not overlap, oldest first."""
    chosen: list[dict] = []
    for summary in sorted(summaries, key=lambda s: (s["window"]["since"], s["window"]["until"])):
        if chosen and summary["window"]["since"] < chosen[-1]["window"]["until"]:
            continue
        chosen.append(summary)
        if len(chosen) == count:
            break
    return chosen

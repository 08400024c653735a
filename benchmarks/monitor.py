"""Benchmark: one drift report on 100,000 current rows against 100,000 reference rows.

Both frames are summaries (``churn.features.summary.summarize``) of synthetic sequences with
the default model's shape (3 channels x 52 weekly bins, windows 1/4/13/26/52, two numeric
features, one categorical) plus a score: 20 summary columns and ``churn_probability``. The
current frame has its spend scaled by 1.6. Each side runs in a process of its own, so its
peak memory is its own: the peak resident set (``VmHWM``, reset once the imports are done
and the frames exist) beyond the resident set at that moment.

* ``monitor``: ``monitoring.drift.evaluate``, what ``churn monitor drift`` does between
  reading and writing: at most ``monitor.max_rows_per_side`` seeded rows of each side,
  DataDriftPreset over the summary columns and ValueDrift of the score with tests, the
  summary's fields read from the snapshot, and the HTML report rendered;
* ``evidently``: Evidently's own ``Report([DataDriftPreset()]).run`` on the whole frames
  (its column-type inference, no HTML, no tests), the baseline.

It prints each side's wall and CPU seconds (the CPU time is the fairer figure on a shared
machine), their ratios, and how far the sample's drift scores are from Evidently's scores on
all rows (the largest absolute difference, and whether the same columns cross the threshold).

Usage: ``python benchmarks/monitor.py [--rows 100000] [--max-rows-per-side 10000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHANNELS = ["n_txn", "spend", "quantity"]
SPEC = {
    "channels": CHANNELS,
    "seq_len": 52,
    "numeric_features": ["tenure_days", "frequency"],
    "categorical_features": {"segment": ["<unk>", "a", "b", "c"]},
}
DRIFT_SHARE = 0.2
# Evidently's default threshold of its Wasserstein and Jensen-Shannon distances.
THRESHOLD = 0.1


def frame(rows: int, seed: int, spend: float) -> pd.DataFrame:
    """Summary columns of ``rows`` synthetic customers, plus a score."""
    from churn.features.summary import summarize, summary_windows

    rng = np.random.default_rng(seed)
    rate = rng.lognormal(np.log(0.5), 0.6, size=(rows, 1, 1))
    n_txn = rng.poisson(np.broadcast_to(rate, (rows, 1, 52))).astype(np.float32)
    # Each customer's usual ticket, varying from week to week (the ticket change sees that).
    ticket = rng.gamma(2.0, 10.0 * spend, (rows, 1, 1)) * rng.lognormal(0.0, 0.3, (rows, 1, 52))
    seq = np.concatenate([n_txn, n_txn * ticket, n_txn], 1)
    num = np.stack([rng.uniform(30, 1000, rows), n_txn.sum(axis=(1, 2))], axis=1)
    cat = rng.choice(np.array([None, "a", "b", "c"], dtype=object), size=(rows, 1))
    columns = summarize(seq, num, cat, SPEC, summary_windows([1, 4, 13, 26, 52], 52))
    out = pd.DataFrame(columns)
    out["churn_probability"] = 1.0 / (1.0 + np.exp(out["seq_n_txn_sum_13"] - 3.0))
    return out


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    # Linux: "5" resets the peak resident set (VmHWM) to the current one.
    Path("/proc/self/clear_refs").write_text("5")


def child(kind: str, rows: int, max_rows: int) -> dict:
    """Runs one side and returns its time, memory and per-column drift scores."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    from churn.settings import MonitorConfig
    from monitoring.drift import evaluate, read_snapshot

    reference, current = frame(rows, 0, 1.0), frame(rows, 1, 1.6)
    columns = [c for c in reference.columns if c != "churn_probability"]
    cfg = MonitorConfig(drift_share=DRIFT_SHARE, max_rows_per_side=max_rows)

    def run(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[dict, dict]:
        if kind == "monitor":
            # As check_drift does: the fixed alarms of the columns the frames have.
            fixed = {c: a for c, a in cfg.fixed_alarms.items() if c in columns}
            fields, html = evaluate(ref, cur, columns, cfg, fixed=fixed)
            return fields, {"decision": fields["decision"], "html_bytes": len(html)} | {
                "sampled": fields["sampled"]
            }
        snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        fields = read_snapshot(snap.dict(), DRIFT_SHARE, cfg.column_alarm)
        return fields, {"metrics": len(snap.dict()["metrics"])}

    # The first report of a process imports Evidently's metrics, plotly and scipy's tests
    # lazily: a warm-up on 1,000 rows a side takes that out of the time (and is reported
    # beside it). The memory counts from before it, so what it holds on to counts too.
    _reset_peak()
    base = _memory_kb("VmRSS")
    warmup = time.perf_counter()
    run(reference.head(1000), current.head(1000))
    warmup = time.perf_counter() - warmup
    wall, cpu = time.perf_counter(), time.process_time()
    fields, detail = run(reference, current)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = (_memory_kb("VmHWM") - base) / 1024
    scores = {c["column"]: [c["method"], c["score"]] for c in fields["columns"]}
    return {
        "kind": kind,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_mb_beyond_imports": round(peak_mb),
        "warmup_seconds": round(warmup, 2),
        **detail,
        "scores": scores,
    }


def compare(monitor: dict, evidently: dict) -> dict:
    """How far the sample's drift scores are from Evidently's on all rows, same method only."""
    same = [
        c
        for c, (method, _) in monitor["scores"].items()
        if c in evidently["scores"] and evidently["scores"][c][0] == method
    ]
    diffs = {c: abs(monitor["scores"][c][1] - evidently["scores"][c][1]) for c in same}
    worst = max(diffs, key=lambda c: diffs[c])
    flips = [
        c
        for c in same
        if (monitor["scores"][c][1] > THRESHOLD) != (evidently["scores"][c][1] > THRESHOLD)
    ]
    return {
        "columns_compared": len(same),
        "max_score_difference": round(diffs[worst], 4),
        "at_column": worst,
        "columns_crossing_the_threshold_differently": flips,
    }


def main() -> None:
    """Runs both sides in child processes and prints their figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--max-rows-per-side", type=int, default=10_000)
    parser.add_argument("--child", choices=["monitor", "evidently"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.max_rows_per_side)))
        return
    results = {}
    for kind in ("monitor", "evidently"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                kind,
                "--rows",
                str(args.rows),
                "--max-rows-per-side",
                str(args.max_rows_per_side),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({k: v for k, v in results[kind].items() if k != "scores"}))
    ours, theirs = results["monitor"], results["evidently"]
    memory = ours["peak_mb_beyond_imports"] / max(theirs["peak_mb_beyond_imports"], 1)
    print(
        "monitor / evidently: "
        f"wall {ours['seconds'] / theirs['seconds']:.2f}, "
        f"CPU {ours['cpu_seconds'] / theirs['cpu_seconds']:.2f}, peak memory {memory:.2f}"
    )
    print("sample against all rows:", json.dumps(compare(ours, theirs)))


if __name__ == "__main__":
    main()

"""Benchmark: one drift report on 100,000 current rows against 100,000 reference rows.

Both frames are summaries (``churn.features.summary.summarize``) of synthetic sequences with
the default model's shape (3 channels x 52 weekly bins, windows 1/4/13/26/52, two numeric
features, one categorical) plus a score: 19 summary columns and ``churn_probability``. The
current frame has its spend scaled by 1.6. Each side runs in its own process so its peak
memory is its own, measured beyond the RSS after the imports:

* ``monitor``: ``monitoring.drift.run_report`` (DataDriftPreset over the summary columns,
  ValueDrift of the score, tests on), reading the snapshot and rendering the HTML report;
* ``evidently``: Evidently's own ``Report([DataDriftPreset()]).run`` on the same pandas
  frames (its column-type inference, no HTML).

Usage: ``python benchmarks/monitor.py [--rows 100000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

CHANNELS = ["n_txn", "spend", "quantity"]
SPEC = {
    "channels": CHANNELS,
    "seq_len": 52,
    "numeric_features": ["tenure_days", "frequency"],
    "categorical_features": {"segment": ["<unk>", "a", "b", "c"]},
}


def frame(rows: int, seed: int, spend: float) -> pd.DataFrame:
    """Summary columns of ``rows`` synthetic customers, plus a score."""
    from churn.features.summary import summarize, summary_windows

    rng = np.random.default_rng(seed)
    rate = rng.lognormal(np.log(0.5), 0.6, size=(rows, 1, 1))
    n_txn = rng.poisson(np.broadcast_to(rate, (rows, 1, 52))).astype(np.float32)
    seq = np.concatenate([n_txn, n_txn * rng.gamma(2.0, 10.0 * spend, (rows, 1, 1)), n_txn], 1)
    num = np.stack([rng.uniform(30, 1000, rows), n_txn.sum(axis=(1, 2))], axis=1)
    cat = rng.choice(np.array([None, "a", "b", "c"], dtype=object), size=(rows, 1))
    columns = summarize(seq, num, cat, SPEC, summary_windows([1, 4, 13, 26, 52], 52))
    out = pd.DataFrame(columns)
    out["churn_probability"] = 1.0 / (1.0 + np.exp(out["seq_n_txn_sum_13"] - 3.0))
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(kind: str, rows: int) -> dict:
    """Runs one side and returns its time and memory."""
    import evidently  # noqa: F401 - imports are not part of the measurement
    from evidently import Report
    from evidently.presets import DataDriftPreset

    from monitoring.drift import _html, read_snapshot, run_report

    reference, current = frame(rows, 0, 1.0), frame(rows, 1, 1.6)
    columns = [c for c in reference.columns if c != "churn_probability"]
    base = _rss_mb()
    start = time.perf_counter()
    if kind == "monitor":
        snap = run_report(reference, current, columns, 0.2)
        result = read_snapshot(snap.dict(), 0.2)
        html = len(_html(snap))
        detail = {"decision": result["decision"], "drift_share": result["drift_share"]}
        detail["html_bytes"] = html
    else:
        snap = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        detail = {"metrics": len(snap.dict()["metrics"])}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "kind": kind,
        "seconds": round(seconds, 2),
        "peak_mb_beyond_imports": round(peak - base),
    }


def main() -> None:
    """Runs both sides in child processes and prints their figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", choices=["monitor", "evidently"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return
    results = {}
    for kind in ("monitor", "evidently"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[kind]))
    ratio = results["monitor"]["seconds"] / results["evidently"]["seconds"]
    print(f"monitor / evidently time: {ratio:.2f}")


if __name__ == "__main__":
    main()

"""Evidently's report as the monitor configures it: fixed-alarm columns keep a distance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.drift import read_snapshot, run_report


def frames(shift: float, rows: int, reference_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def frame(n: int, delta: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "t": rng.normal(delta, 1.0, n),
                "u": rng.normal(0.0, 1.0, n),
                "churn_probability": rng.uniform(0.0, 1.0, n),
            }
        )

    return frame(reference_rows, 0.0), frame(rows, shift)


def ticket(snapshot: object) -> dict:
    fields = read_snapshot(snapshot.dict(), 0.2, 0.2)  # type: ignore[attr-defined]
    return next(c for c in fields["columns"] if c["column"] == "t")


def test_a_column_with_a_fixed_alarm_counts_as_drifted_only_at_that_alarm() -> None:
    reference, current = frames(0.2, 3000, 3000)  # a distance near 0.2: over 0.1, under 0.3
    plain = ticket(run_report(reference, current, ["t", "u"], 0.2))
    fixed = ticket(run_report(reference, current, ["t", "u"], 0.2, {"t": 0.3}))
    assert 0.1 < plain["score"] < 0.3 and plain["drifted"]
    assert fixed["threshold"] == 0.3 and not fixed["drifted"]
    assert fixed["score"] == plain["score"]


def test_a_fixed_alarm_column_keeps_a_distance_on_a_small_reference() -> None:
    reference, current = frames(0.5, 3000, 800)  # Evidently's K-S p-value below 1,000 rows
    plain = ticket(run_report(reference, current, ["t", "u"], 0.2))
    fixed = ticket(run_report(reference, current, ["t", "u"], 0.2, {"t": 0.3}))
    assert "p_value" in plain["method"]
    assert fixed["method"] == "Wasserstein distance (normed)" and fixed["drifted"]

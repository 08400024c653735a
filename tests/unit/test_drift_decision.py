"""The drift decision read from Evidently's figures: the share rule and the one-column rule."""

from __future__ import annotations

from monitoring.drift import strong

WASSERSTEIN = "Wasserstein distance (normed)"


def column(score: float, method: str = WASSERSTEIN, threshold: float = 0.1) -> dict:
    drifted = score < threshold if "p_value" in method else score >= threshold
    return {
        "column": "c",
        "method": method,
        "score": score,
        "threshold": threshold,
        "drifted": drifted,
    }


def test_a_distance_at_the_column_alarm_decides_alone_and_one_below_it_does_not() -> None:
    assert strong(column(0.15), 0.15)
    assert strong(column(0.4, "Jensen-Shannon distance"), 0.15)
    assert not strong(column(0.149), 0.15)


def test_a_column_evidently_did_not_call_drifted_never_decides() -> None:
    assert not strong({**column(0.2), "drifted": False}, 0.15)


def test_a_p_value_never_decides_alone_however_small() -> None:
    assert not strong(column(1e-12, "K-S p_value", 0.05), 0.15)
    assert not strong(column(1e-12, "chi-square p_value", 0.05), 0.15)

"""Smoke tests of benchmarks/loop.py's helpers: its timeline, its goals and who it serves."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from churn.data.cutoffs import default_cutoffs
from churn.data.synth import SIGNUP_SPREAD

START = pd.Timestamp("2024-01-01", tz="UTC")


@pytest.fixture(scope="module")
def loop() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "loop.py"
    spec = importlib.util.spec_from_file_location("loop_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def schedule_days(cfg: object, until_day: int) -> list[int]:
    cutoffs = default_cutoffs(
        START + pd.Timedelta(days=until_day),
        cfg.horizon_days,  # type: ignore[attr-defined]
        cfg.cutoff_step_days,  # type: ignore[attr-defined]
        cfg.n_train_cutoffs,  # type: ignore[attr-defined]
    )
    return [(c - START).days for c in cutoffs]


def test_the_champion_trains_after_the_signups_and_the_retrain_entirely_inside_the_drift(
    loop: ModuleType,
) -> None:
    cfg = loop.FEATURES
    tl = loop.Timeline.make(cfg)
    champion = schedule_days(cfg, tl.drift_day)
    retrain = schedule_days(cfg, tl.retrain_day)
    settle = cfg.bin_days * cfg.seq_len // 2
    assert champion[0] >= SIGNUP_SPREAD * tl.days + settle
    assert champion[-1] + cfg.horizon_days <= tl.drift_day
    assert retrain[0] >= tl.drift_day + 7
    assert min(tl.eval_cutoffs) >= tl.retrain_day
    assert max(tl.eval_cutoffs) + cfg.horizon_days == tl.days


def test_recovery_is_the_share_of_the_lost_auc_won_back_and_not_judged_without_a_loss(
    loop: ModuleType,
) -> None:
    r = loop.KindResult(
        "spend", champion_auc_without_drift=0.80, champion_post_auc=0.70, retrained_post_auc=0.79
    )
    assert r.recovery == pytest.approx(0.9)
    assert loop.verdicts(r)["recovered"]
    r.champion_post_auc = 0.81
    assert r.recovery is None
    assert loop.verdicts(r)["recovered"] is None


def test_detection_counts_up_to_five_thousand_predictions_and_one_drift_before_is_an_alarm(
    loop: ModuleType,
) -> None:
    r = loop.KindResult("rate", pre_decisions=["no_drift", "no_drift"])
    r.predictions_to_decision = 5000
    assert loop.verdicts(r)["detected"] and loop.verdicts(r)["no_false_alarm"]
    r.predictions_to_decision = 5001
    r.pre_decisions.append("drift")
    assert not loop.verdicts(r)["detected"] and not loop.verdicts(r)["no_false_alarm"]
    r.predictions_to_decision = None
    assert not loop.verdicts(r)["detected"]


def test_the_customers_served_are_those_with_a_transaction_in_the_lookback_up_to_the_snapshot(
    loop: ModuleType,
) -> None:
    ts = START + pd.Timedelta(days=400)
    tx = pd.DataFrame(
        {
            "customer_id": ["at-snapshot", "just-inside", "at-lookback-start", "after"],
            "timestamp": [
                ts,
                ts - pd.Timedelta(days=182) + pd.Timedelta(seconds=1),
                ts - pd.Timedelta(days=182),
                ts + pd.Timedelta(seconds=1),
            ],
        }
    )
    assert list(loop.active_ids(tx, ts, 182)) == ["at-snapshot", "just-inside"]

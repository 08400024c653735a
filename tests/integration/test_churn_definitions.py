"""Point-in-time correctness of each churn definition, through the real Feast stores.

Same crafted schedule as ``test_point_in_time``: cutoffs train 2020-01-01, validation
2020-02-01, test T = 2020-03-02, horizon H = 30 days, daily bins over a 28-day lookback (so the
partial-defection window W defaults to 28 days). Background customers fill every split. Each
definition is built twice, from logs that differ only after T (and, for contract, in the
cancellations table), so the features of the test rows must be equal and only labels may move.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churn.dataset.build import build_dataset
from churn.dataset.labels import ChurnDefinition
from churn.dataset.training_set import load_training_set
from churn.errors import DatasetError
from churn.features.build import build_features
from churn.settings import FeatureConfig

CUTOFFS = ["2020-01-01", "2020-02-01", "2020-03-02"]
T = pd.Timestamp("2020-03-02", tz="UTC")
VAL = pd.Timestamp("2020-02-01", tz="UTC")
H = pd.Timedelta(days=30)
CFG = FeatureConfig(bin_days=1, seq_len=28, horizon_days=30)
SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)


def _background() -> list[tuple]:
    rows = []
    for i in range(12):
        last = (
            pd.Timestamp("2020-04-20", tz="UTC") if i % 2 else pd.Timestamp("2019-12-20", tz="UTC")
        )
        for day in pd.date_range(pd.Timestamp("2019-12-10", tz="UTC"), last, freq="9D"):
            rows.append((f"bg{i}", day + pd.Timedelta(hours=i), 10.0 + i))
    rows.append(("bg0", pd.Timestamp("2020-04-30T00:00:00Z"), 1.0))  # observation end
    return rows


def _partial_log(later: bool) -> pd.DataFrame:
    """Trailing window (T - 28d, T]; half the expected spend is the threshold.

    * ``at_t``: 1.0 at T - 20d and 100.0 exactly at T, nothing after: the spend at T is
      trailing (rate 101/28 per day), so it defected (label 1).
    * ``window_edge``: 1000.0 exactly at T - 28d (outside the window), 10.0 at T - 5d and
      8.0 at T + 2d: 8 >= 0.5 * 10 * 30/28, so no defection (the 1000 would make it one).
    * ``at_h``: 100.0 at T - 10d and 50.0 at T + 5d, below 0.5 * 107.1 = 53.6; the later log
      adds 10.0 exactly at T + H, inside (T, T + H]: 60 is enough (label 1 -> 0).
    * ``after_h``: as ``at_h`` without the 50, and the later log adds 1000.0 one second after
      T + H: outside the horizon, so it stays defected.
    * ``probe``: 20.0 at T - 3d; the later log adds 777.0 one second after T (label 1 -> 0),
      which must not reach the features.
    * ``free``: only purchases of amount 0 in the window: no rate, not labelled.
    """
    rows = _background()
    rows += [
        ("at_t", T - 20 * DAY, 1.0),
        ("at_t", T, 100.0),
        ("window_edge", T - 28 * DAY, 1000.0),
        ("window_edge", T - 5 * DAY, 10.0),
        ("window_edge", T + 2 * DAY, 8.0),
        ("at_h", T - 10 * DAY, 100.0),
        ("at_h", T + 5 * DAY, 50.0),
        ("after_h", T - 10 * DAY, 100.0),
        ("probe", T - 3 * DAY, 20.0),
        ("free", T - 4 * DAY, 0.0),
        ("free", T - 2 * DAY, 0.0),
    ]
    if later:
        rows += [
            ("at_h", T + H, 10.0),
            ("after_h", T + H + SECOND, 1000.0),
            ("probe", T + SECOND, 777.0),
        ]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


SUBSCRIBERS = ("early", "at_t", "before_t", "after_t", "at_h", "after_h")


def _contract_log() -> pd.DataFrame:
    rows = _background()
    for name in SUBSCRIBERS:
        for day in pd.date_range("2019-12-12", "2020-04-10", freq="6D", tz="UTC"):
            rows.append((name, day, 5.0))
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


def _cancellations(later: bool) -> pd.DataFrame:
    """``early`` cancels inside the training cutoff's horizon, so that split has both classes.
    ``at_t`` cancels exactly at T, which is also exactly t + H of the validation cutoff;
    ``before_t`` a day before T; ``after_h`` one second after T + H. The later table adds
    ``after_t`` one second after T and ``at_h`` exactly at T + H."""
    rows = [
        ("early", pd.Timestamp("2020-01-15", tz="UTC")),
        ("at_t", T),
        ("before_t", T - DAY),
        ("after_h", T + H + SECOND),
    ]
    if later:
        rows += [("after_t", T + SECOND), ("at_h", T + H)]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp"])


def _build(root, log: pd.DataFrame, definition: ChurnDefinition, cancellations=None):
    log.to_parquet(root / "tx.parquet")
    extra = {}
    if cancellations is not None:
        cancellations.to_csv(root / "cancellations.csv", index=False)
        extra["cancellations"] = root / "cancellations.csv"
    build_features(root / "tx.parquet", root / "repo", CFG, cutoffs=CUTOFFS, **extra)
    build_dataset(root / "repo", root / "ds", horizon_days=30, definition=definition)
    return load_training_set(root / "ds")


PARTIAL = ChurnDefinition("partial_defection", fraction=0.5)


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return {
        later: _build(tmp_path_factory.mktemp(f"partial_{later}"), _partial_log(later), PARTIAL)
        for later in (False, True)
    }


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    return {
        later: _build(
            tmp_path_factory.mktemp(f"contract_{later}"),
            _contract_log(),
            ChurnDefinition("contract"),
            _cancellations(later),
        )
        for later in (False, True)
    }


def _labels(ts, split: str = "test") -> dict[str, float]:
    s = ts.splits[split]
    return dict(zip(s.customer_id.tolist(), s.y.tolist(), strict=True))


def _same_features(before, after) -> None:
    a, b = before.splits["test"], after.splits["test"]
    assert a.customer_id.tolist() == b.customer_id.tolist()
    np.testing.assert_array_equal(a.seq, b.seq)
    np.testing.assert_array_equal(a.num, b.num)


def test_partial_defection_counts_a_purchase_at_exactly_t_as_trailing_spend(partial) -> None:
    assert _labels(partial[False])["at_t"] == 1.0


def test_partial_defection_ignores_spend_at_exactly_the_start_of_the_trailing_window(
    partial,
) -> None:
    assert _labels(partial[False])["window_edge"] == 0.0


def test_partial_defection_counts_spend_at_exactly_t_plus_h_and_nothing_later(partial) -> None:
    before, after = _labels(partial[False]), _labels(partial[True])
    assert (before["at_h"], after["at_h"]) == (1.0, 0.0)
    assert (before["after_h"], after["after_h"]) == (1.0, 1.0)


def test_partial_defection_features_never_see_spend_after_t(partial) -> None:
    before, after = partial[False], partial[True]
    _same_features(before, after)
    assert (_labels(before)["probe"], _labels(after)["probe"]) == (1.0, 0.0)
    assert 777.0 not in after.splits["test"].seq


def test_partial_defection_does_not_label_customers_without_trailing_spend(partial) -> None:
    assert "free" not in _labels(partial[False])


def test_partial_defection_is_recorded_with_its_resolved_window(partial) -> None:
    assert partial[False].meta["churn_definition"] == {
        "name": "partial_defection",
        "fraction": 0.5,
        "window_days": 28,
    }


def test_contract_excludes_customers_who_cancelled_at_or_before_t(contract) -> None:
    labels = _labels(contract[False])
    assert "at_t" not in labels and "before_t" not in labels and "early" not in labels
    assert _labels(contract[False], "train")["early"] == 1.0
    assert labels["after_h"] == 0.0


def test_contract_labels_a_cancellation_at_exactly_t_plus_h(contract) -> None:
    # at_t cancels at T, exactly the validation cutoff's t + H.
    assert _labels(contract[False], "val")["at_t"] == 1.0
    before, after = _labels(contract[False]), _labels(contract[True])
    assert (before["at_h"], after["at_h"]) == (0.0, 1.0)


def test_contract_labels_a_cancellation_one_second_after_t_and_features_do_not_move(
    contract,
) -> None:
    before, after = contract[False], contract[True]
    assert (_labels(before)["after_t"], _labels(after)["after_t"]) == (0.0, 1.0)
    _same_features(before, after)


def test_the_definition_is_recorded_in_the_model_folder_and_the_registry(
    contract, tmp_path
) -> None:
    from churn.dataset.training_set import save_training_set
    from churn.model.train import train
    from churn.release.registry import LocalRegistry
    from churn.settings import ModelConfig, TrainConfig

    # A copy: the fixture's folder is shared by the module.
    save_training_set(contract[False], tmp_path / "ds")
    train(
        tmp_path / "ds",
        tmp_path / "model",
        ModelConfig(hidden=4, dilations=[1]),
        TrainConfig(epochs=1),
    )
    recorded = contract[False].meta["churn_definition"]
    assert recorded == {"name": "contract"}
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert model["input_spec"]["churn_definition"] == recorded
    registry = LocalRegistry(tmp_path / "registry", "churn")
    registry.publish(tmp_path / "model", {"roc_auc": 0.9}, version="v1")
    marker = tmp_path / "registry" / "churn" / "versions" / "v1" / "_COMPLETE"
    assert json.loads(marker.read_text())["churn_definition"] == recorded
    assert registry.input_spec("v1")["churn_definition"] == recorded


def test_contract_labels_need_a_cancellations_table(tmp_path) -> None:
    _contract_log().to_parquet(tmp_path / "tx.parquet")
    build_features(tmp_path / "tx.parquet", tmp_path / "repo", CFG, cutoffs=CUTOFFS)
    with pytest.raises(DatasetError, match="churn_definition=contract needs a cancellations"):
        build_dataset(
            tmp_path / "repo", tmp_path / "ds", 30, definition=ChurnDefinition("contract")
        )
    assert not (tmp_path / "ds").exists()


def test_lapse_stays_the_default_and_is_recorded(tmp_path) -> None:
    ts = _build(tmp_path, _partial_log(False), ChurnDefinition.from_config(CFG))
    assert ts.meta["churn_definition"] == {"name": "lapse"}
    # A customer who buys nothing after T lapses, though their spend would not count.
    assert _labels(ts)["window_edge"] == 0.0 and _labels(ts)["at_t"] == 1.0

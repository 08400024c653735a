"""The promotion gate: threshold, champion comparison, and the records it leaves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from churn.errors import RegistryError
from churn.release.gate import decide, gate_decision, rejection_record
from churn.release.registry import VersionInfo


class StubRegistry:
    """Just enough of ``churn.release.registry.Registry`` for the gate: a champion or none."""

    def __init__(self, champion: VersionInfo | None = None, error: Exception | None = None):
        self._champion = champion
        self._error = error

    def champion(self) -> VersionInfo | None:
        if self._error is not None:
            raise self._error
        return self._champion


def champion_with(metrics: dict) -> VersionInfo:
    return VersionInfo("churn", "20260101T000000Z-00000000", "/reg/churn/v", True, metrics)


def test_first_model_above_the_threshold_is_promoted() -> None:
    promote, reason = decide(0.81, 0.70, None)
    assert promote
    assert "0.8100" in reason and "0.7000" in reason and "no champion" in reason


def test_a_candidate_below_the_threshold_is_rejected_even_without_a_champion() -> None:
    promote, reason = decide(0.65, 0.70, None)
    assert not promote
    assert reason == "candidate ROC-AUC 0.6500 is below the threshold 0.7000"


def test_the_threshold_itself_passes() -> None:
    assert decide(0.70, 0.70, None)[0]


def test_a_candidate_that_beats_the_champion_is_promoted() -> None:
    promote, reason = decide(0.82, 0.70, 0.80)
    assert promote
    assert "beats the champion's 0.8000" in reason


@pytest.mark.parametrize("champion_auc", [0.85, 0.82])
def test_a_candidate_worse_than_or_equal_to_the_champion_is_rejected(champion_auc: float) -> None:
    promote, reason = decide(0.82, 0.70, champion_auc)
    assert not promote
    assert f"does not beat the champion's {champion_auc:.4f}" in reason


def test_the_threshold_is_checked_before_the_champion() -> None:
    promote, reason = decide(0.60, 0.70, 0.50)
    assert not promote
    assert "below the threshold" in reason


@pytest.mark.parametrize("auc", [math.nan, math.inf, None])
def test_a_candidate_without_a_finite_auc_is_rejected(auc: float | None) -> None:
    promote, reason = decide(auc, 0.70, None)  # type: ignore[arg-type]
    assert not promote
    assert "not a finite number" in reason


def test_a_champion_without_a_finite_auc_counts_as_no_champion() -> None:
    assert decide(0.75, 0.70, math.nan)[0]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan, "0.7"])
def test_an_out_of_range_threshold_is_an_error(threshold: object) -> None:
    with pytest.raises(ValueError, match="threshold must lie in"):
        decide(0.8, threshold, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("metrics", [{"roc_auc": 0.5}, {}, {"roc_auc": "n/a"}])
def test_without_the_candidates_test_split_a_champion_is_never_replaced_on_its_record(
    metrics: dict,
) -> None:
    # 0.8 would beat the recorded 0.5, but that number comes from another test split.
    result = gate_decision(0.8, 0.7, StubRegistry(champion_with(metrics)))  # type: ignore[arg-type]
    assert result["promote"] is False
    assert result["champion_version"] == "20260101T000000Z-00000000"
    assert result["champion_auc"] is None and result["champion_auc_basis"] is None
    assert result["candidate_auc"] == 0.8 and result["threshold"] == 0.7
    assert "cannot be re-scored on this run's test split (no training set" in result["reason"]
    assert "no comparison is made and it stays champion" in result["reason"]
    assert "churn registry promote VERSION --expect 20260101T000000Z-00000000" in result["reason"]
    assert result["decided_at"].endswith("Z")


def test_gate_decision_without_a_champion() -> None:
    result = gate_decision(0.8, 0.7, StubRegistry())  # type: ignore[arg-type]
    assert result["promote"] is True
    assert result["champion_version"] is None and result["champion_auc"] is None


def test_gate_decision_fails_when_the_champion_cannot_be_read() -> None:
    registry = StubRegistry(error=RegistryError("champion.json of churn is malformed"))
    with pytest.raises(RegistryError, match="malformed"):
        gate_decision(0.8, 0.7, registry)  # type: ignore[arg-type]


def test_rejection_record_keeps_the_reason_and_points_at_the_report() -> None:
    decision = gate_decision(0.6, 0.7, StubRegistry())  # type: ignore[arg-type]
    record = rejection_record(decision, "/runs/1/evaluate/evaluation/report.html")
    assert record["reason"] == decision["reason"]
    assert record["report"] == "/runs/1/evaluate/evaluation/report.html"


def test_rejection_record_refuses_a_promotion() -> None:
    decision = gate_decision(0.9, 0.7, StubRegistry())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="promoted"):
        rejection_record(decision, "report.html")


def trained(root: Path, make_training_set) -> tuple[Path, Path]:
    """A planted training set under ``root`` and a model trained on it for one epoch."""
    from churn.model.train import train
    from churn.settings import ModelConfig, TrainConfig

    dataset = make_training_set(root, n=600)
    train(dataset, root / "model", ModelConfig(hidden=8, dilations=[1]), TrainConfig(epochs=1))
    return dataset, root / "model"


@pytest.fixture(scope="module")
def champion_registry(tmp_path_factory: pytest.TempPathFactory, make_training_set):
    """A real local registry whose champion was trained on a planted set and recorded 0.99."""
    from churn.release.registry import LocalRegistry

    root = tmp_path_factory.mktemp("gate")
    dataset, model_dir = trained(root, make_training_set)
    registry = LocalRegistry(root / "registry", "churn")
    registry.publish(model_dir, {"roc_auc": 0.99}, version="champ")
    registry.promote("champ")
    return registry, dataset, model_dir


def test_the_champion_is_rescored_on_the_candidates_test_rows(champion_registry) -> None:
    from churn.evaluation.evaluate import auc_on_test_split
    from churn.release.gate import RESCORED

    registry, dataset, model_dir = champion_registry
    on_these_rows = auc_on_test_split(model_dir, dataset)
    assert on_these_rows < 0.99  # what it recorded elsewhere would block any candidate
    result = gate_decision(0.995, 0.5, registry, dataset)
    assert result["champion_auc"] == on_these_rows
    assert result["champion_auc_basis"] == RESCORED
    assert result["promote"] is True and "on this run's test split" in result["reason"]


def spec_variant(make_training_set, parent: Path, name: str, **changes: object) -> Path:
    """A copy of the planted set whose meta.json differs in the given input spec fields."""
    import json

    dataset = make_training_set(parent, name=name, n=600)
    meta = json.loads((dataset / "meta.json").read_text())
    (dataset / "meta.json").write_text(json.dumps({**meta, **changes}))
    return dataset


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        # Daily bins: the champion's weekly steps would be read as days.
        ({"bin_days": 1}, "bin_days 7 -> 1"),
        ({"horizon_days": 30}, "horizon_days 90 -> 30"),
        ({"churn_definition": {"name": "contract"}}, "churn_definition {'name': 'lapse'} -> "),
        ({"channels": ["n_txn", "spend", "returns"]}, "channels: added ['returns'], removed"),
        (
            {"categorical_features": {"segment": ["a", "b"]}},
            "categorical_features['segment'] vocabulary: ",
        ),
    ],
)
def test_a_candidate_that_changes_the_input_spec_is_refused_unless_the_change_is_named(
    champion_registry, make_training_set, tmp_path: Path, changes: dict, named: str
) -> None:
    registry, _, _ = champion_registry
    dataset = spec_variant(make_training_set, tmp_path, "changed", **changes)

    # 0.995 beats the 0.99 the champion recorded, on another split: no reason to promote.
    refused = gate_decision(0.995, 0.5, registry, dataset)
    assert refused["promote"] is False
    assert refused["champion_auc"] is None and refused["champion_auc_basis"] is None
    assert any(named in change for change in refused["input_changes"]), refused["input_changes"]
    listed = "; ".join(refused["input_changes"])
    assert f"changes the input spec of champion champ ({listed})" in refused["reason"]
    assert "allow_input_change=" in refused["reason"]

    allowed = gate_decision(
        0.6, 0.5, registry, dataset, allow_input_change="  daily bins; clients updated  "
    )
    assert allowed["promote"] is True
    assert allowed["allow_input_change"] == "daily bins; clients updated"
    assert "replaces champion champ without a comparison" in allowed["reason"]
    assert named in allowed["reason"]
    below = gate_decision(0.4, 0.5, registry, dataset, allow_input_change="daily bins")
    assert below["promote"] is False and "below the threshold" in below["reason"]


def test_a_champion_whose_files_are_damaged_stays_and_is_not_compared_on_its_record(
    tmp_path: Path, make_training_set
) -> None:
    import shutil

    from churn.release.registry import LocalRegistry

    registry = LocalRegistry(tmp_path / "registry", "churn")
    dataset, model_dir = trained(tmp_path, make_training_set)
    registry.publish(model_dir, {"roc_auc": 0.5}, version="champ")
    registry.promote("champ")
    shutil.rmtree(Path(registry.storage_uri("champ")) / "model-store")

    result = gate_decision(0.9, 0.7, registry, dataset)
    assert result["promote"] is False
    assert result["champion_version"] == "champ" and result["champion_auc"] is None
    assert "champion champ cannot be re-scored on this run's test split" in result["reason"]
    assert "model-store" in result["reason"]

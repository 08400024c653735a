"""How two input specs differ: what the gate and the registry name when clients would break."""

from __future__ import annotations

from churn.model.spec import input_spec_changes

SPEC = {
    "channels": ["n_txn", "spend"],
    "seq_len": 52,
    "bin_days": 7,
    "horizon_days": 90,
    "numeric_features": ["tenure_days"],
    "categorical_features": {"segment": ["a", "b", "c"], "region": ["n", "s"]},
    "norm": {"seq_mean": [0.0, 1.0]},
}


def changed(**fields: object) -> list[str]:
    return input_spec_changes(SPEC, {**SPEC, **fields})


def test_the_same_spec_with_other_normalisation_is_no_change() -> None:
    assert changed(norm={"seq_mean": [5.0, 6.0]}) == []


def test_each_changed_field_is_named_with_its_old_and_new_value() -> None:
    assert changed(bin_days=1, seq_len=365, horizon_days=30) == [
        "seq_len 52 -> 365",
        "bin_days 7 -> 1",
        "horizon_days 90 -> 30",
    ]
    assert changed(channels=["n_txn", "returns"]) == [
        "channels: added ['returns'], removed ['spend']"
    ]
    assert changed(numeric_features=[]) == ["numeric_features: removed ['tenure_days']"]


def test_a_reordering_is_a_change_because_positions_carry_the_meaning() -> None:
    assert changed(channels=["spend", "n_txn"]) == [
        "channels: reordered ['n_txn', 'spend'] -> ['spend', 'n_txn']"
    ]
    swapped = {"region": ["n", "s"], "segment": ["a", "b", "c"]}
    assert changed(categorical_features=swapped) == [
        "categorical_features: reordered ['segment', 'region'] -> ['region', 'segment']"
    ]


def test_a_vocabulary_change_names_the_feature_and_a_few_values() -> None:
    vocab = [f"v{i}" for i in range(40)]
    result = changed(categorical_features={"segment": vocab, "region": ["n", "s"]})
    assert result == [
        "categorical_features['segment'] vocabulary: added ['v0', 'v1', 'v2', 'v3', 'v4', ... "
        "(40 in all)], removed ['a', 'b', 'c']"
    ]


def test_a_field_one_spec_lacks_is_a_change() -> None:
    without = {k: v for k, v in SPEC.items() if k != "bin_days"}
    assert input_spec_changes(without, SPEC) == ["bin_days None -> 7"]


def test_a_changed_churn_definition_is_a_change_with_its_parameters() -> None:
    partial = {"name": "partial_defection", "fraction": 0.5, "window_days": 364}
    assert changed(churn_definition=partial) == [
        f"churn_definition {{'name': 'lapse'}} -> {partial!r}"
    ]
    assert changed(churn_definition={**partial, "fraction": 0.3}) != []


def test_a_spec_from_before_churn_definitions_is_lapse() -> None:
    # Champions trained before the field existed stay comparable with new lapse models.
    assert changed(churn_definition={"name": "lapse"}) == []

"""Online features become the model's request by name, and features that do not fit are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from churn.features.request import (
    build_request,
    check_fits,
    model_feature_spec,
    store_input_spec,
)
from churn.features.store import Features, FeatureStoreError
from churn.model.network import encode_instances

# The store holds one channel more than the model reads, and lists them in another order.
STORE_SPEC = {
    "channels": ["spend", "n_txn", "quantity"],
    "seq_len": 4,
    "bin_days": 7,
    "context_features": ["tenure_days", "recency_days", "frequency", "monetary"],
    "numeric_attributes": ["age"],
    "categorical_attributes": ["region", "segment"],
}
INPUT_SPEC = {
    "channels": ["n_txn", "spend"],
    "seq_len": 4,
    "bin_days": 7,
    "numeric_features": ["tenure_days", "recency_days", "frequency", "monetary", "age"],
    "categorical_features": {"segment": ["<unk>", "a", "b"], "region": ["<unk>", "north"]},
}


def store_features() -> Features:
    """Two known customers and an unknown one, in the store's order of columns."""
    seq = np.zeros((3, 3, 4), dtype=np.float32)
    seq[0, 0] = [0.5, 0.0, 1.25, 3.0]  # spend
    seq[0, 1] = [1, 0, 1, 2]  # n_txn
    seq[0, 2] = [9, 9, 9, 9]  # quantity, which the model does not read
    seq[1, 1] = [0, 0, 0, 1]
    seq[1, 0] = [0, 0, 0, 0.1]
    return Features(
        seq=seq,
        context=np.array([[100, 3, 4, 1.5], [20, 0, 1, 0.1], [0, 0, 0, 0]], dtype=np.float32),
        numeric=np.array([[41], [33], [0]], dtype=np.float32),
        categorical=np.array([["north", "a"], ["", "zz"], ["", ""]], dtype=str),
        has_history=np.array([True, True, False]),
        event_ts=np.array([1_700_000_000, 1_700_000_000, 0], dtype=np.int64),
    )


def test_instances_take_each_feature_by_name_in_the_models_order() -> None:
    request = build_request(["a", "b", "ghost"], store_features(), STORE_SPEC, INPUT_SPEC)
    first = request.instances[0]
    assert list(first["sequence"]) == ["n_txn", "spend"]
    assert first["sequence"]["spend"] == [0.5, 0.0, 1.25, 3.0]
    assert first["sequence"]["n_txn"] == [1, 0, 1, 2]
    assert first["numeric"] == {
        "tenure_days": 100,
        "recency_days": 3,
        "frequency": 4,
        "monetary": 1.5,
        "age": 41,
    }
    assert first["categorical"] == {"segment": "a", "region": "north"}
    # The store's "" is no value: null, which the model maps to its unknown index.
    assert request.instances[1]["categorical"] == {"segment": "zz", "region": None}


def test_instances_survive_json_and_encode_to_exactly_the_stored_values() -> None:
    request = build_request(["a", "b", "ghost"], store_features(), STORE_SPEC, INPUT_SPEC)
    # What the transformer sends is JSON; float32 values must come back bit for bit.
    sent = json.loads(json.dumps(request.instances))
    seq, num, cat = encode_instances(sent, INPUT_SPEC)
    np.testing.assert_array_equal(seq.numpy(), request.seq)
    np.testing.assert_array_equal(num.numpy(), request.num)
    assert cat.tolist() == [[1, 1], [0, 0], [0, 0]]


def test_unknown_customers_are_marked_and_have_no_timestamp() -> None:
    request = build_request(["a", "b", "ghost"], store_features(), STORE_SPEC, INPUT_SPEC)
    assert request.known.tolist() == [True, True, False]
    assert request.feature_timestamp(0).isoformat() == "2023-11-14T22:13:20+00:00"
    assert request.feature_timestamp(2) is None
    assert request.feature_ts.tolist() == [1_700_000_000, 1_700_000_000, 0]
    assert not request.seq[2].any() and request.cat[2].tolist() == [None, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": ["n_txn", "quantity"]}, "channels ['spend'] are missing"),
        ({"seq_len": 8}, "sequences hold 8 bins, the model reads 4"),
        ({"bin_days": 1}, "bins are 1 days wide, the model's 7"),
        ({"numeric_attributes": []}, "numeric features ['age'] are missing"),
        ({"categorical_attributes": ["region"]}, "categorical features ['segment'] are missing"),
    ],
    ids=["channel", "length", "bin-width", "numeric", "categorical"],
)
def test_features_that_do_not_fit_the_model_are_refused_by_name(change: dict, message: str) -> None:
    spec = {**STORE_SPEC, **change}
    with pytest.raises(FeatureStoreError, match="do not fit the model") as caught:
        check_fits(spec, INPUT_SPEC)
    assert message in str(caught.value)
    with pytest.raises(FeatureStoreError, match="do not fit the model"):
        build_request(["a", "b", "ghost"], store_features(), spec, INPUT_SPEC)


def test_a_row_count_that_differs_from_the_ids_is_refused() -> None:
    with pytest.raises(FeatureStoreError, match="3 rows for 2 ids"):
        build_request(["a", "b"], store_features(), STORE_SPEC, INPUT_SPEC)


def test_the_model_reads_only_its_own_features_split_by_view() -> None:
    spec = model_feature_spec(INPUT_SPEC)
    assert spec["channels"] == ["n_txn", "spend"]
    assert spec["context_features"] == ["tenure_days", "recency_days", "frequency", "monetary"]
    assert spec["numeric_attributes"] == ["age"]
    assert spec["categorical_attributes"] == ["segment", "region"]
    check_fits(spec, INPUT_SPEC)


def test_a_store_read_as_a_whole_fits_itself() -> None:
    input_spec = store_input_spec(STORE_SPEC)
    check_fits(STORE_SPEC, input_spec)
    request = build_request(["a", "b", "ghost"], store_features(), STORE_SPEC, input_spec)
    assert list(request.instances[0]["sequence"]) == ["spend", "n_txn", "quantity"]
    assert request.instances[0]["categorical"] == {"region": "north", "segment": "a"}

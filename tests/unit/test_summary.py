"""The input summary: window totals, recency in bins, features as they are, a fixed schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from churn.features.summary import summarize, summary_schema, summary_windows, ticket_change

INPUT_SPEC = {
    "channels": ["n_txn", "spend"],
    "seq_len": 5,
    "numeric_features": ["tenure_days", "age"],
    "categorical_features": {"segment": ["<unk>", "a"]},
}


def sequences() -> np.ndarray:
    seq = np.zeros((3, 2, 5), dtype=np.float32)
    seq[0, 0] = [1, 0, 2, 0, 3]  # active in the last bin
    seq[0, 1] = [10, 0, 20, 0, 30]
    seq[1, 1] = [0, 5, 0, 0, 0]  # last active bin three bins back
    seq[1, 0] = [0, 0, 0, 0, -4]  # negative values count as nothing, as in the model
    return seq  # row 2: no activity at all


def test_windows_are_cut_to_the_sequence_and_deduplicated() -> None:
    assert summary_windows([1, 4, 13, 26, 52], 5) == [1, 4, 5]
    with pytest.raises(ValueError, match="positive integers"):
        summary_windows([0, 2], 5)


def test_window_totals_and_recency_follow_the_bins() -> None:
    num = np.array([[100, 41], [20, 33], [0, 0]], dtype=np.float32)
    cat = np.array([["a"], [None], ["new"]], dtype=object)
    columns = summarize(sequences(), num, cat, INPUT_SPEC, [1, 4])
    assert columns["seq_n_txn_sum_1"].tolist() == [3, 0, 0]
    assert columns["seq_n_txn_sum_4"].tolist() == [5, 0, 0]
    assert columns["seq_spend_sum_4"].tolist() == [50, 5, 0]
    assert columns["seq_recency_bins"].tolist() == [0, 3, 5]
    assert columns["num_tenure_days"].tolist() == [100, 20, 0]
    # Raw values, also outside the vocabulary: a new segment is exactly what drift should see.
    assert columns["cat_segment"].tolist() == ["a", None, "new"]


def test_window_totals_are_the_sums_the_model_feeds_its_head() -> None:
    seq = sequences()
    columns = summarize(seq, np.zeros((3, 2)), np.full((3, 1), None), INPUT_SPEC, [4])
    raw = torch.from_numpy(seq).clamp(min=0)
    model_sums = raw[:, :, -4:].sum(dim=2).numpy()  # what ChurnCNN.forward takes log1p of
    np.testing.assert_allclose(columns["seq_n_txn_sum_4"], model_sums[:, 0])
    np.testing.assert_allclose(columns["seq_spend_sum_4"], model_sums[:, 1])


def test_columns_come_in_the_schemas_order_and_types() -> None:
    schema = summary_schema(INPUT_SPEC, [1, 4])
    columns = summarize(
        sequences(),
        np.zeros((3, 2)),
        np.array([["a"], [None], ["b"]], dtype=object),
        INPUT_SPEC,
        [1, 4],
    )
    assert list(columns) == schema.names
    table = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    assert table.schema.field("seq_recency_bins").type == pa.int32()
    assert table.schema.field("cat_segment").type == pa.string()
    assert table.num_rows == 3


def test_the_ticket_change_is_the_last_bins_spend_per_purchase_against_the_windows() -> None:
    columns = summarize(sequences(), np.zeros((3, 2)), np.full((3, 1), None), INPUT_SPEC, [1, 4])
    # Row 0: 30 / 3 in the last bin against (20 + 30) / (2 + 3) over the last four bins.
    assert columns["seq_spend_per_txn_change"][0] == pytest.approx(np.log(10 / 10))
    # No purchase in the last bin (row 1, whose negative count is nothing) or none at all.
    assert np.isnan(columns["seq_spend_per_txn_change"][1:]).all()


def test_the_ticket_change_cancels_how_much_each_customer_usually_spends() -> None:
    counts = np.array([[1, 1, 1, 1], [2, 2, 2, 2]], dtype=np.float64)
    small, large = [5, 5, 5, 8], [100, 100, 100, 160]  # both: the last ticket up by 60%
    spend = np.array([small, [2 * v for v in large]], dtype=np.float64)
    change = ticket_change(counts, spend, 4)
    # The same change for both, whatever they spend: the window holds the last bin too.
    np.testing.assert_allclose(change, np.log(8 / ((5 + 5 + 5 + 8) / 4)))


def test_channels_without_a_count_then_spend_get_no_ticket_change() -> None:
    spec = {**INPUT_SPEC, "channels": ["spend", "n_txn"]}
    assert "seq_spend_per_txn_change" not in summary_schema(spec, [1]).names
    assert "seq_spend_per_txn_change" in summary_schema(INPUT_SPEC, [1]).names


def test_one_outsized_basket_moves_the_ticket_change_no_further_than_the_clip() -> None:
    counts = np.ones((2, 4))
    spend = np.array([[1, 1, 1, 400], [400, 400, 400, 1]], dtype=np.float64)
    np.testing.assert_allclose(ticket_change(counts, spend, 4), [1.0, -1.0])


def test_a_purchase_of_nothing_is_the_clips_minus_one_not_a_dropped_row() -> None:
    counts = np.array([[2, 2, 2, 2], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float64)
    spend = np.array([[20, 20, 20, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float64)
    change = ticket_change(counts, spend, 4)
    assert change[0] == -1.0
    # No spend at all over the window, or no purchase: undefined.
    assert np.isnan(change[1:]).all()

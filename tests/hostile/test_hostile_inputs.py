"""Hostile logs and settings: values float32 cannot hold, thousands of columns, a sequence length
no machine can hold, events dated in the future. Each is refused before the work, with one line
naming the file, column and row or the setting, and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from churn import errors
from churn.data import contract
from churn.data.contract import load_customers, load_transactions
from churn.errors import ContractError
from churn.features.build import build_features
from churn.settings import FeatureConfig, load_settings

CHURN = str(Path(sys.executable).parent / "churn")
HEADER = "customer_id,timestamp,amount"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _churn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHURN, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )


def _history(path: Path, customers: int = 4) -> Path:
    """A small valid log: each customer buys every ten days through the first half of 2020."""
    rows = [
        (f"c{i}", day + pd.Timedelta(hours=i + 1), 10.0 + i)
        for i in range(customers)
        for day in pd.date_range("2020-01-01", "2020-06-30", freq="10D", tz="UTC")
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_csv(path, index=False)
    return path


# Values float32 cannot hold (item 5) ------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e308", "1e39", "-1e39"])
def test_an_amount_beyond_float32_is_refused_naming_file_column_and_row(tmp_path, value):
    log = _write(tmp_path / "tx.csv", f"{HEADER}\nc1,2020-01-01,5\nc2,2020-01-02,{value}\n")
    with pytest.raises(ContractError, match=r"tx.csv: column 'amount' holds .* at row 2, beyond"):
        load_transactions(log)


def test_an_extra_channel_beyond_float32_is_refused_naming_its_column(tmp_path):
    log = _write(tmp_path / "tx.csv", f"{HEADER},quantity\nc1,2020-01-01,5,4e38\n")
    with pytest.raises(ContractError, match=r"tx.csv: column 'quantity' holds .* at row 1"):
        load_transactions(log)


def test_a_numeric_customer_attribute_beyond_float32_is_refused(tmp_path):
    text = "customer_id,signup_date,age\nc1,2020-01-01,30\nc2,2020-01-01,1e39\n"
    table = _write(tmp_path / "customers.csv", text)
    with pytest.raises(ContractError, match=r"customers.csv: column 'age' holds .* at row 2"):
        load_customers(table)


def test_a_bin_whose_sum_float32_cannot_hold_is_refused_naming_customer_and_channel(tmp_path):
    # Each amount fits in float32; their sum in one daily bin does not.
    log = _history(tmp_path / "tx.csv")
    with log.open("a") as file:
        file.write("big,2020-03-01 10:00:00,3e38\nbig,2020-03-01 11:00:00,3e38\n")
    cfg = FeatureConfig(bin_days=1, seq_len=14, horizon_days=30)
    with pytest.raises(ContractError, match=r"channel 'spend' of customer 'big' sums to 6e\+38"):
        build_features(log, tmp_path / "repo", cfg, cutoffs=["2020-03-05"])
    assert not (tmp_path / "repo").exists()


def test_the_cli_reports_a_huge_amount_in_one_line_and_writes_nothing(tmp_path):
    log = _history(tmp_path / "tx.csv")
    with log.open("a") as file:
        file.write("c9,2020-02-01,1e308\n")
    result = _churn("features", "build", "-t", str(log), "--repo", str(tmp_path / "repo"))
    assert result.returncode == 2, result.stderr
    assert "column 'amount' holds" in result.stderr and "at row" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "repo").exists()


# Too many channels (item 6) --------------------------------------------------------------------


def _wide_csv(path: Path, extra: int) -> Path:
    names = ",".join(f"x{i}" for i in range(extra))
    values = ",".join("1" for _ in range(extra))
    return _write(path, f"{HEADER},{names}\nc1,2020-01-01,5,{values}\n")


def test_a_log_with_a_million_columns_is_refused_from_its_header_before_parsing(
    tmp_path, monkeypatch
):
    log = _wide_csv(tmp_path / "wide.csv", 1_000_000)

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pandas parsed a file the header already refuses")

    monkeypatch.setattr(contract.pd, "read_csv", no_parse)
    with pytest.raises(
        ContractError,
        match=r"wide.csv: has 1000000 extra columns, which make 1000002 channels .* "
        r"more than features.max_channels=64",
    ):
        load_transactions(log)


def test_a_wide_parquet_log_is_refused_from_its_schema(tmp_path, monkeypatch):
    log = tmp_path / "wide.parquet"
    frame = pd.DataFrame({"customer_id": ["c1"], "timestamp": ["2020-01-01"], "amount": [5.0]})
    extra = pd.DataFrame({f"x{i}": [1.0] for i in range(100)})
    pd.concat([frame, extra], axis=1).to_parquet(log)

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pandas parsed a file the schema already refuses")

    monkeypatch.setattr(contract.pd, "read_parquet", no_parse)
    with pytest.raises(ContractError, match=r"wide.parquet: has 100 extra columns.*max_channels"):
        load_transactions(log)


def test_the_channel_cap_is_a_setting(tmp_path):
    log = _wide_csv(tmp_path / "wide.csv", 70)
    with pytest.raises(ContractError, match=r"72 channels"):
        load_transactions(log)
    assert len(load_transactions(log, max_channels=72).columns) == 73
    settings = load_settings(env={"CHURN_FEATURES__MAX_CHANNELS": "72"})
    assert settings.features.max_channels == 72
    with pytest.raises(ValueError, match=r"features\.max_channels"):
        load_settings(env={"CHURN_FEATURES__MAX_CHANNELS": "1"})


def test_the_cli_refuses_a_wide_log_naming_the_count_and_the_setting(tmp_path):
    log = _wide_csv(tmp_path / "wide.csv", 32_000)
    result = _churn("features", "build", "-t", str(log), "--repo", str(tmp_path / "repo"))
    assert result.returncode == 2, result.stderr
    assert "32002 channels" in result.stderr and "features.max_channels=64" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "repo").exists()


# Sequences no machine can hold (item 7) --------------------------------------------------------


def test_a_sequence_length_no_machine_can_hold_is_refused_with_the_estimate(tmp_path):
    # 6,000 customers at four snapshot times: 24,000 rows x 3 channels x 5,000,000 bins of
    # float32 is 1.4 TB per copy.
    rows = [(f"c{i}", f"2020-01-{1 + i % 28:02d} 10:00:00", 1.0, 1.0) for i in range(6000)]
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"])
    log = tmp_path / "tx.parquet"
    frame.to_parquet(log)
    result = _churn(
        "features",
        "build",
        "-t",
        str(log),
        "--repo",
        str(tmp_path / "repo"),
        "--seq-len",
        "5000000",
        "--cutoffs",
        "2020-02-01,2020-03-01,2020-04-01",
    )
    assert result.returncode == 2, result.stderr
    assert "24,000 snapshot rows x 3 channels x features.seq_len=5,000,000" in result.stderr
    assert "GiB of memory, but" in result.stderr and "available" in result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert not (tmp_path / "repo").exists()


def test_the_memory_budget_setting_bounds_the_feature_build(tmp_path):
    log = _history(tmp_path / "tx.csv")
    cfg = FeatureConfig(bin_days=1, seq_len=100_000, horizon_days=30, memory_budget_mb=1)
    with pytest.raises(errors.ResourceError, match=r"allowed by features.memory_budget_mb"):
        build_features(log, tmp_path / "repo", cfg, cutoffs=["2020-03-01"])
    assert not (tmp_path / "repo").exists()


def test_the_training_set_build_refuses_a_join_beyond_the_memory_budget(tmp_path):
    from churn.dataset.build import build_dataset

    log = _history(tmp_path / "tx.csv")
    cfg = FeatureConfig(bin_days=1, seq_len=20_000, horizon_days=30)
    build_features(log, tmp_path / "repo", cfg, cutoffs=["2020-02-01", "2020-03-05", "2020-04-10"])
    with pytest.raises(
        errors.ResourceError,
        match=r"the training set \(12 labelled rows of 16 snapshot rows x 2 channels x "
        r"features.seq_len=20,000 float32 values\) needs about .* allowed by "
        r"features.memory_budget_mb",
    ):
        build_dataset(tmp_path / "repo", tmp_path / "ds", 30, memory_budget_mb=1)
    assert not (tmp_path / "ds").exists()


def test_a_container_memory_limit_lowers_the_available_memory(tmp_path):
    from churn.features import memory

    (tmp_path / "memory.max").write_text(f"{3 * 2**30}\n")
    (tmp_path / "memory.current").write_text(f"{2**30}\n")
    assert memory.available_bytes(tmp_path) == 2 * 2**30
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.available_bytes(tmp_path) > 0


# Events dated in the future (item 8) ------------------------------------------------------------


def test_an_event_after_now_plus_a_day_is_refused_naming_file_and_row(tmp_path):
    soon = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=12)
    late = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=3)
    log = _write(
        tmp_path / "tx.csv",
        f"{HEADER}\nc1,2020-01-01,5\nc2,{soon.isoformat()},5\nc3,{late.isoformat()},5\n",
    )
    with pytest.raises(ContractError, match=r"tx.csv: column 'timestamp' has .* at row 3, later"):
        load_transactions(log)


def test_the_event_time_bound_is_a_setting_and_now_can_be_pinned(tmp_path):
    now = pd.Timestamp("2020-06-01T08:00:00Z")
    assert contract.event_time_bound(None, now=now) == pd.Timestamp("2020-06-02T08:00:00Z")
    assert contract.event_time_bound("2020-06-01") == pd.Timestamp("2020-06-01", tz="UTC")
    settings = load_settings(env={"CHURN_FEATURES__MAX_EVENT_TIME": "2020-06-30T00:00:00Z"})
    bound = contract.event_time_bound(settings.features.max_event_time)
    log = _history(tmp_path / "tx.csv")
    assert len(load_transactions(log, latest_event=bound)) > 0  # the last event is 2020-06-27
    with pytest.raises(ContractError, match=r"at row \d+, later than 2020-06-20"):
        load_transactions(log, latest_event=pd.Timestamp("2020-06-20", tz="UTC"))


def test_a_transaction_in_2030_is_refused_by_the_feature_build(tmp_path):
    log = _history(tmp_path / "tx.csv")
    with log.open("a") as file:
        file.write("typo,2030-01-01 10:00:00,5\n")
    cfg = FeatureConfig(bin_days=1, seq_len=14, horizon_days=30)
    with pytest.raises(ContractError, match=r"tx.csv: column 'timestamp' has 2030-01-01"):
        build_features(log, tmp_path / "repo", cfg)
    assert not (tmp_path / "repo").exists()


def test_an_observed_until_after_the_bound_is_refused(tmp_path):
    log = _history(tmp_path / "tx.csv")
    cfg = FeatureConfig(
        bin_days=1, seq_len=14, horizon_days=30, max_event_time="2020-12-31T00:00:00Z"
    )
    with pytest.raises(ContractError, match=r"observed-until 2206-01-01.*later than 2020-12-31"):
        build_features(log, tmp_path / "repo", cfg, observed_until="2206-01-01")
    assert not (tmp_path / "repo").exists()


def test_the_cli_refuses_a_row_dated_2206_in_one_line(tmp_path):
    log = _history(tmp_path / "tx.csv")
    with log.open("a") as file:
        file.write("typo,2206-05-01,5\n")
    result = _churn("features", "build", "-t", str(log), "--repo", str(tmp_path / "repo"))
    assert result.returncode == 2, result.stderr
    assert "column 'timestamp' has 2206-05-01" in result.stderr
    assert "features.max_event_time" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "repo").exists()

"""Hostile cancellations tables and churn-definition settings: each is refused with one line
naming the file, column and row or the setting, before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from churn.data.contract import load_cancellations
from churn.errors import ContractError
from churn.features.build import build_features
from churn.settings import FeatureConfig, load_settings

CHURN = str(Path(sys.executable).parent / "churn")
CFG = FeatureConfig(bin_days=1, seq_len=14, horizon_days=30)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _history(path: Path) -> Path:
    rows = [
        (f"c{i}", day + pd.Timedelta(hours=i + 1), 10.0 + i)
        for i in range(4)
        for day in pd.date_range("2020-01-01", "2020-06-30", freq="10D", tz="UTC")
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,when\nc1,2020-03-01\n", r"missing required column\(s\) \['timestamp'\]"),
        (
            "customer_id,timestamp\nc1,2020-03-01\nc2,2020-03-02\nc1,2020-04-01\n",
            r"customer_id 'c1' cancels again at row 3 \(first at row 1\)",
        ),
        ("customer_id,timestamp\nc1,2020-03-01\nc2,someday\n", r"'someday' at row 2"),
        ("customer_id,timestamp\nc1,2020-03-01\n,2020-03-02\n", r"'customer_id' is empty at row 2"),
        (
            "customer_id,timestamp,reason\nc1,2020-03-01,price\n",
            r"unexpected column\(s\) \['reason'\]",
        ),
        ("customer_id,timestamp\nc1,2206-03-01\n", r"'timestamp' has 2206-03-01.* at row 1"),
        ("customer_id,timestamp\n", "holds no rows"),
    ],
)
def test_a_malformed_cancellations_table_is_refused_naming_file_column_and_row(
    tmp_path: Path, text: str, message: str
) -> None:
    table = _write(tmp_path / "cancellations.csv", text)
    with pytest.raises(ContractError, match=rf"cancellations.csv: .*{message}"):
        load_cancellations(table)


def test_cancellations_of_customers_the_log_does_not_have_are_refused_before_writing(
    tmp_path: Path,
) -> None:
    log = _history(tmp_path / "tx.csv")
    table = _write(tmp_path / "cancellations.csv", "customer_id,timestamp\nC-1,2020-03-01\n")
    with pytest.raises(ContractError, match=r"none of the customers of .*cancellations.csv"):
        build_features(log, tmp_path / "repo", CFG, cancellations=table)
    assert not (tmp_path / "repo").exists()


def test_the_cli_refuses_a_bad_cancellations_table_with_one_line(tmp_path: Path) -> None:
    log = _history(tmp_path / "tx.csv")
    table = _write(tmp_path / "cancellations.csv", "customer_id,timestamp\nc1,2020-13-45\n")
    args = ["-t", str(log), "--repo", str(tmp_path / "repo"), "--cancellations", str(table)]
    done = subprocess.run(
        [CHURN, "features", "build", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "cancellations.csv: column 'timestamp'" in lines[0] and "row 1" in lines[0]
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("CHURN_FEATURES__CHURN_DEFINITION", "cancel", "features.churn_definition"),
        ("CHURN_FEATURES__PARTIAL_DEFECTION_FRACTION", "0", "features.partial_defection_fraction"),
        ("CHURN_FEATURES__PARTIAL_DEFECTION_FRACTION", "1", "features.partial_defection_fraction"),
        (
            "CHURN_FEATURES__PARTIAL_DEFECTION_WINDOW_DAYS",
            "0",
            "features.partial_defection_window_days",
        ),
    ],
)
def test_an_out_of_range_churn_definition_setting_is_refused_naming_it(
    variable: str, value: str, field: str
) -> None:
    with pytest.raises(ValueError, match=rf"configuration field {field}:"):
        load_settings(env={variable: value})

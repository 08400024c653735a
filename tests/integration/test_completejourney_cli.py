"""`churn data completejourney` on the real Complete Journey panel shipped in its wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.data.completejourney import load_completejourney, package_tables
from churn.data.contract import load_transactions

CHURN = str(Path(sys.executable).parent / "churn")
CHANNELS = ["amount", "items", "departments", "retail_discount", "coupon_discount"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The command's output, written once: the package's data takes seconds to read."""
    out = tmp_path_factory.mktemp("cj") / "completejourney.parquet"
    result = CliRunner().invoke(app, ["data", "completejourney", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_one_transaction_per_basket_without_fuel_and_miscellaneous(written) -> None:
    out, output = written
    assert "141651 baskets of 2467 households, 2017-01-01 to 2018-01-01" in output
    tx = load_transactions(out)  # the contract's own reader accepts it
    assert list(tx.columns) == ["customer_id", "timestamp", *CHANNELS]
    assert len(tx) == 141_651 and tx["customer_id"].nunique() == 2_467
    # FUEL lines reach quantities of 89,638; without them no basket holds 10,000 items.
    assert tx["items"].max() < 10_000
    assert (tx[CHANNELS] >= 0).all().all()
    assert tx["departments"].max() >= 10 and tx["retail_discount"].sum() > 0


def test_basket_channels_sum_their_lines(written) -> None:
    out, _ = written
    lines, products = package_tables()
    basket = lines[lines["basket_id"] == lines["basket_id"].iloc[0]]
    departments = basket["product_id"].map(products.set_index("product_id")["department"])
    basket = basket[~departments.isin(["FUEL", "MISCELLANEOUS"])]
    tx = pd.read_parquet(out)
    row = tx[
        (tx["customer_id"] == str(basket["household_id"].iloc[0]))
        & (tx["timestamp"] == pd.Timestamp(basket["transaction_timestamp"].iloc[0], tz="UTC"))
    ]
    assert len(row) == 1
    assert row["amount"].iloc[0] == pytest.approx(basket["sales_value"].sum())
    assert row["items"].iloc[0] == basket["quantity"].sum()
    assert row["coupon_discount"].iloc[0] == pytest.approx(
        basket["coupon_disc"].abs().sum() + basket["coupon_match_disc"].abs().sum()
    )


def test_negative_discounts_become_magnitudes() -> None:
    lines = pd.DataFrame(
        {
            "household_id": [7, 7],
            "basket_id": [1, 1],
            "product_id": [10, 11],
            "quantity": [2, 1],
            "sales_value": [3.0, 1.5],
            "retail_disc": [-0.5, -0.25],
            "coupon_disc": [-1.0, 0.0],
            "coupon_match_disc": [-0.2, 0.0],
            "transaction_timestamp": pd.to_datetime(["2017-03-01 10:00", "2017-03-01 10:00"]),
        }
    )
    products = pd.DataFrame({"product_id": [10, 11], "department": ["GROCERY", "PRODUCE"]})
    tx = load_completejourney(lines, products)
    assert tx[CHANNELS].iloc[0].tolist() == pytest.approx([4.5, 3.0, 2.0, 0.75, 1.2])


def test_an_existing_file_is_kept_unless_forced(tmp_path) -> None:
    out = tmp_path / "log.csv"
    out.write_text("my own log\n")
    refused = subprocess.run(
        [CHURN, "data", "completejourney", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == f"error: {out} already exists; pass --force to replace it"
    assert out.read_text() == "my own log\n"

    forced = CliRunner().invoke(app, ["data", "completejourney", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_text().startswith("customer_id,timestamp," + ",".join(CHANNELS))
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]

"""The Spark job's entry on bad input: one ``error:`` line, exit status 2, nothing written."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.features import spark_job


def _log(**changes: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": ["2020-01-01T10:00:00Z", "2020-01-05T10:00:00Z", "2020-01-03T00:00:00Z"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    return frame.assign(**changes)


def _run(tmp_path, frame: pd.DataFrame, capsys, out_name: str = "out") -> tuple[int, str]:
    log = tmp_path / "tx.csv"
    frame.to_csv(log, index=False)
    argv = ["--transactions", str(log), "--out", str(tmp_path / out_name)]
    code = spark_job.main([*argv, "--cutoffs", "2020-01-04", "--bin-days", "1", "--seq-len", "5"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_log().drop(columns="amount"), "missing required column(s) ['amount']"),
        (_log(amount=[1.0, -2.0, 3.0]), "amount is empty, negative or not finite"),
        (_log(timestamp=["2020-01-01", "yesterday", "2020-01-03"]), "timestamp is empty or not"),
        (_log(customer_id=["a", None, "b"]), "customer_id is empty"),
    ],
)
def test_a_log_that_breaks_the_contract_is_one_error_line_and_writes_nothing(
    spark, tmp_path, capsys, frame, message
):
    code, err = _run(tmp_path, frame, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_existing_output_folder_is_refused_and_left_as_it_was(spark, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    code, err = _run(tmp_path, _log(), capsys)
    assert code == 2
    assert "exists" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]

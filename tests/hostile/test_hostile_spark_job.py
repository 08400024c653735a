"""The Spark job's entry on bad input: one ``error:`` line, exit status 2, nothing written."""

from __future__ import annotations

import json

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


def _run_parquet(tmp_path, frame: pd.DataFrame, capsys, **extra: str) -> tuple[int, str]:
    log = tmp_path / "tx.parquet"
    frame.to_parquet(log)  # pandas writes its datetimes as TIMESTAMP(NANOS)
    argv = ["--transactions", str(log), "--out", str(tmp_path / "out")]
    argv += [a for k, v in extra.items() for a in (f"--{k.replace('_', '-')}", v)]
    code = spark_job.main([*argv, "--cutoffs", "2020-01-04", "--bin-days", "1", "--seq-len", "5"])
    return code, capsys.readouterr().err


def test_another_nanosecond_column_of_the_log_is_a_time_not_a_channel(spark, tmp_path, capsys):
    # Read as nanoseconds since the epoch, it would have become a numeric channel of sums.
    frame = _log(timestamp=pd.to_datetime(_log()["timestamp"], utc=True))
    frame["ingested_at"] = pd.Timestamp("2020-02-01", tz="UTC")
    code, err = _run_parquet(tmp_path, frame, capsys, extra_channels="ingested_at")
    assert code == 2 and "extra channel(s) ['ingested_at'] are not numeric" in err
    code, err = _run_parquet(tmp_path, frame, capsys)
    assert code == 0, err
    spec = json.loads((tmp_path / "out" / "spec.json").read_text())
    assert spec["channels"] == ["n_txn", "spend"]


def test_an_integer_timestamp_beside_a_nanosecond_column_is_still_refused(spark, tmp_path, capsys):
    # Epoch seconds are no time in the contract; the nanosecond column must not make them one.
    frame = _log(timestamp=[1577872800, 1578218400, 1578009600])
    frame["ingested_at"] = pd.Timestamp("2020-02-01", tz="UTC")
    code, err = _run_parquet(tmp_path, frame, capsys)
    assert code == 2 and "timestamp is empty or not a timestamp" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_log_is_one_error_line(spark, tmp_path, capsys):
    argv = ["--transactions", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "out")]
    assert spark_job.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'nope.parquet'}: no such file or folder\n"


@pytest.mark.parametrize("before", [None, "true"])
def test_the_job_gives_the_session_its_own_nanosecond_setting_back(spark, tmp_path, capsys, before):
    if before is None:
        spark.conf.unset(spark_job.NANOS_AS_LONG)
    else:
        spark.conf.set(spark_job.NANOS_AS_LONG, before)
    frame = _log(timestamp=pd.to_datetime(_log()["timestamp"], utc=True))
    code, err = _run_parquet(tmp_path, frame, capsys)
    assert code == 0, err
    assert spark.conf.get(spark_job.NANOS_AS_LONG, None) == before
    spark.conf.unset(spark_job.NANOS_AS_LONG)

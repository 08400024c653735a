"""The drift monitor on real Parquet inference logs, a real registry and real Evidently.

The champion is a model of the planted training set, published with its reference summary.
Served traffic is another sample of the same generator, summarised by the serving summary
function and written as the transformer's log; the drift kinds mirror ``churn data synth
--drift``: amounts x1.6 (spend), purchase rates halved (rate), and 20% of customers from a
new, busier ``enterprise`` segment (segment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import build_planted_training_set
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import MonitorError
from churn.features.summary import summarize, summary_windows
from churn.io.tables import parquet_from_bytes
from churn.model.network import build_model, load_model, predict_proba, save_model
from churn.release.reference import decode_categories, write_reference
from churn.release.registry import open_registry
from churn.settings import Settings
from monitoring.drift import check_drift, history
from monitoring.metrics import drift_metrics
from serving.inference_log import log_schema, open_sink

ARCH = {
    "windows": [1, 4, 13],
    "stem_stride": 1,
    "hidden": 4,
    "kernel_size": 2,
    "dilations": [1],
    "dropout": 0.0,
    "embedding_dim": 2,
    "head_hidden": 4,
}
UNTIL = datetime(2026, 11, 30, 12, tzinfo=UTC)
VERSION = "v1"
WINDOW = ("--until", UNTIL.isoformat(), "--hours", "1")


@pytest.fixture
def champion(tmp_path: Path, make_training_set: Callable[..., Path]) -> tuple[Path, dict]:
    """A registry whose champion ``v1`` has a reference of 1800 training rows."""
    dataset = make_training_set(tmp_path, seq_len=16)
    ts = build_planted_training_set(seq_len=16)
    spec = ts.input_spec
    torch.manual_seed(0)
    model_dir = save_model(build_model(spec, ARCH), spec, ARCH, 0.5, tmp_path / "model")
    reference = write_reference(model_dir, dataset, tmp_path / "reference.parquet", 20000, 0)
    registry = open_registry(Settings(home=tmp_path).registry)
    registry.publish(model_dir, {"roc_auc": 0.8}, version=VERSION, reference=reference)
    registry.promote(VERSION)
    return model_dir, spec


def traffic(spec: dict, model_dir: Path, drift: str, n: int, seed: int = 1) -> pa.Table:
    """``n`` served records of the champion in the hour before UNTIL, with a drift applied."""
    ts = build_planted_training_set(n=n, seq_len=16, seed=seed)
    seq = np.concatenate([s.seq for s in ts.splits.values()])
    num = np.concatenate([s.num for s in ts.splits.values()])
    cat_idx = np.concatenate([s.cat for s in ts.splits.values()])
    rng = np.random.default_rng(seed)
    cat = decode_categories(cat_idx, spec["categorical_features"])
    if drift == "spend":
        seq[:, 1] *= 1.6
    elif drift == "last-bin":
        # A change that has reached only the last bin: one strong column, too few for the share.
        seq[:, 1, -1] *= 1.4
    elif drift == "mild-last-bin":
        # The same, milder: under column_alarm, over what drift-free traffic moves the column.
        seq[:, 1, -1] *= 1.2
    elif drift == "rate":
        kept = rng.binomial(seq[:, 0].astype(np.int64), 0.5).astype(np.float32)
        ratio = np.divide(kept, seq[:, 0], out=np.zeros_like(kept), where=seq[:, 0] > 0)
        seq = seq * ratio[:, None, :]
        num[:, 1] = seq[:, 0].sum(axis=1)
    elif drift == "age":
        # The same customers served 100 days later: older, with more lifetime purchases.
        num[:, 0] += 100.0
        num[:, 1] *= 1.5
    elif drift == "segment":
        new = rng.random(len(seq)) < 0.2
        seq[new] *= 3.0
        cat[new, 0] = "enterprise"
        cat_idx[new, 0] = 0
    windows = summary_windows(ARCH["windows"], 16)
    columns = summarize(seq, num, cat, spec, windows)
    net, _ = load_model(model_dir)
    scores = predict_proba(
        net, torch.from_numpy(seq), torch.from_numpy(num), torch.from_numpy(cat_idx)
    ).numpy()
    times = [UNTIL - timedelta(minutes=50) + timedelta(milliseconds=i) for i in range(len(seq))]
    records = {
        "request_id": [f"r{i}" for i in range(len(seq))],
        "time": times,
        "customer_id": [f"c{i}" for i in range(len(seq))],
        "model_version": [VERSION] * len(seq),
        "feature_timestamp": times,
        "churn_probability": scores.astype(np.float64),
        "churned": scores >= 0.5,
        **columns,
    }
    return pa.Table.from_pydict(records, schema=log_schema(spec, windows))


def write_log(uri: str, table: pa.Table, endpoint_url: str | None = None) -> None:
    open_sink(uri, endpoint_url).write(UNTIL.date().isoformat(), table)


# Keeps the ticket change from deciding where a test is about another rule.
UNREACHABLE_TICKET_ALARM = {"seq_spend_per_txn_change": 10.0}


def settings_for(tmp_path: Path, **monitor: object) -> Settings:
    return Settings(home=tmp_path, monitor={"min_rows": 500, **monitor})


def test_traffic_like_the_training_data_gives_no_drift(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "none", 3000))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "no_drift"
    assert summary["drifted_columns"] == []
    assert summary["rows"] == {"current": 3000, "reference": 1800, "window_all": 3000}
    assert Path(summary["report_html"]).read_bytes().lstrip().startswith(b"<!DOCTYPE html>")
    assert json.loads(Path(summary["summary_json"]).read_text()) == summary


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ("spend", {"seq_spend_sum_4", "seq_spend_sum_13"}),
        ("rate", {"seq_n_txn_sum_13", "seq_spend_sum_13"}),
        ("segment", {"cat_segment"}),
    ],
)
def test_each_kind_of_drift_gives_drift_and_names_the_drifted_columns(
    tmp_path: Path, champion: tuple[Path, dict], drift: str, expected: set[str]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, drift, 3000))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "drift"
    named = {c["column"] for c in summary["drifted_columns"]}
    assert expected <= named, named
    for column in summary["drifted_columns"]:
        assert column["score"] > column["threshold"]
        assert column["method"] in ("Wasserstein distance (normed)", "Jensen-Shannon distance")


def test_one_column_that_drifts_strongly_decides_drift_below_the_drift_share(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "last-bin", 3000))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["drift_share"] < summary["drift_share_threshold"], summary["drifted_columns"]
    assert summary["decision"] == "drift"
    assert "seq_spend_sum_1" in summary["alarm_columns"]
    assert "seq_spend_sum_1 distance >= column_alarm 0.2" in summary["reasons"]
    lenient = check_drift(
        settings_for(tmp_path, column_alarm=10.0, fixed_alarms=UNREACHABLE_TICKET_ALARM),
        until=UNTIL,
        hours=1,
    )
    assert lenient["decision"] == "no_drift"
    assert lenient["reasons"] == [] and lenient["alarm_columns"] == []
    assert "seq_spend_sum_1" in {c["column"] for c in lenient["drifted_columns"]}


def test_a_calibrated_version_catches_a_drift_below_the_column_alarm(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "none", 3000))
    quiet = check_drift(settings_for(tmp_path, calibration_windows=2), until=UNTIL, hours=1)
    assert quiet["decision"] == "no_drift" and quiet["calibration"] is None
    # A second drift-free window, the hour before: the same figures, an hour earlier.
    earlier = {
        **quiet,
        "window": {"since": "2026-11-30T10:00:00+00:00", "until": "2026-11-30T11:00:00+00:00"},
    }
    run = tmp_path / "monitoring" / "runs" / "20261130T110500000000Z-v1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(earlier))

    mild = tmp_path / "mild_log"
    write_log(str(mild), traffic(spec, model_dir, "mild-last-bin", 3000))
    # Its own store, so that this run's summary is no calibration window of the next one.
    # The ticket change out of reach: it would catch this drift on its own (the next test).
    uncalibrated = check_drift(
        settings_for(
            tmp_path,
            calibration_windows=0,
            fixed_alarms=UNREACHABLE_TICKET_ALARM,
            log_uri=str(mild),
            store_uri=str(tmp_path / "other"),
        ),
        until=UNTIL,
        hours=1,
    )
    score = {c["column"]: c["score"] for c in uncalibrated["columns"]}["seq_spend_sum_1"]
    assert uncalibrated["decision"] == "no_drift" and score < 0.2
    calibrated = check_drift(
        settings_for(
            tmp_path,
            calibration_windows=2,
            fixed_alarms=UNREACHABLE_TICKET_ALARM,
            log_uri=str(mild),
        ),
        until=UNTIL,
        hours=1,
    )
    limit = calibrated["calibration"]["thresholds"]["seq_spend_sum_1"]
    assert calibrated["calibration"]["windows"] == [
        "2026-11-30T10:00:00+00:00/2026-11-30T11:00:00+00:00",
        "2026-11-30T11:00:00+00:00/2026-11-30T12:00:00+00:00",
    ]
    assert 0.1 <= limit <= score
    assert calibrated["calibration"]["applied"] and calibrated["calibration"]["fewest_rows"] == 3000
    assert calibrated["decision"] == "drift"
    assert calibrated["alarm_columns"] == ["seq_spend_sum_1"]
    assert calibrated["reasons"] == [f"seq_spend_sum_1 distance {score:.3f} >= calibrated {limit}"]
    metrics = drift_metrics(calibrated, 0.0)
    assert metrics.get_sample_value(
        "churn_drift_column_threshold", {"model_version": "v1", "column": "seq_spend_sum_1"}
    ) == pytest.approx(limit)


def test_a_larger_ticket_in_the_last_bin_alone_is_caught_by_the_ticket_changes_fixed_alarm(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    table = traffic(spec, model_dir, "mild-last-bin", 3000)
    carried = int((~np.isnan(table.column("seq_spend_per_txn_change").to_numpy())).sum())
    write_log(str(tmp_path / "inference_log"), table)
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    scores = {c["column"]: c["score"] for c in summary["columns"]}
    # Every window total stays under column_alarm: only the per-customer change sees it.
    assert max(v for c, v in scores.items() if c.startswith("seq_spend_sum")) < 0.2
    assert summary["decision"] == "drift"
    assert summary["fixed_alarms"] == {
        "seq_spend_per_txn_change": {"alarm": 0.3, "current_values": carried, "applied": True}
    }
    assert summary["alarm_columns"] == ["seq_spend_per_txn_change"]
    change = scores["seq_spend_per_txn_change"]
    assert summary["reasons"] == [
        f"seq_spend_per_txn_change distance {change:.3f} >= its fixed alarm 0.3"
    ]
    metrics = drift_metrics(summary, 0.0)
    assert metrics.get_sample_value(
        "churn_drift_column_threshold",
        {"model_version": "v1", "column": "seq_spend_per_txn_change"},
    ) == pytest.approx(0.3)


def promote_with_reference(
    tmp_path: Path, model_dir: Path, version: str, reference: pa.Table
) -> None:
    """Publishes ``model_dir`` as ``version`` with this reference table, and promotes it."""
    path = tmp_path / f"reference-{version}.parquet"
    pq.write_table(reference, path)
    registry = open_registry(Settings(home=tmp_path).registry)
    registry.publish(model_dir, {"roc_auc": 0.8}, version=version, reference=path)
    registry.promote(version)


def champion_reference(tmp_path: Path) -> pa.Table:
    return parquet_from_bytes(open_registry(Settings(home=tmp_path).registry).reference(VERSION))


def as_version(table: pa.Table, version: str) -> pa.Table:
    """The same records, answered by ``version``."""
    index = table.schema.get_field_index("model_version")
    return table.set_column(index, "model_version", pa.array([version] * table.num_rows))


def test_a_version_without_the_ticket_change_in_its_reference_is_monitored_without_it(
    tmp_path: Path, champion: tuple[Path, dict], caplog: pytest.LogCaptureFixture
) -> None:
    model_dir, spec = champion
    # A reference written before the column existed.
    old = champion_reference(tmp_path).drop(["seq_spend_per_txn_change"])
    promote_with_reference(tmp_path, model_dir, "v0", old)
    table = as_version(traffic(spec, model_dir, "none", 3000), "v0")
    write_log(str(tmp_path / "inference_log"), table)
    with caplog.at_level("WARNING", logger="monitoring.drift"):
        summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "no_drift" and summary["fixed_alarms"] == {}
    assert "seq_spend_per_txn_change" not in {c["column"] for c in summary["columns"]}
    assert "['seq_spend_per_txn_change']" in caplog.text


def test_the_fixed_alarm_keeps_its_distance_on_a_reference_evidently_would_give_a_p_value(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    small = champion_reference(tmp_path).slice(0, 1500)
    assert small.column("seq_spend_per_txn_change").drop_null().to_numpy().size > 0
    assert (~np.isnan(small.column("seq_spend_per_txn_change").to_numpy())).sum() <= 1000
    promote_with_reference(tmp_path, model_dir, "v2", small)
    table = as_version(traffic(spec, model_dir, "mild-last-bin", 3000), "v2")
    write_log(str(tmp_path / "inference_log"), table)
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    ticket = next(c for c in summary["columns"] if c["column"] == "seq_spend_per_txn_change")
    assert ticket["method"] == "Wasserstein distance (normed)"
    assert summary["alarm_columns"] == ["seq_spend_per_txn_change"]


def test_a_window_of_customers_without_a_purchase_in_the_last_bin_is_checked_without_the_ticket(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    table = traffic(spec, model_dir, "none", 3000)
    lapsed = pa.array([None] * table.num_rows, type=pa.float64())
    index = table.schema.get_field_index("seq_spend_per_txn_change")
    write_log(str(tmp_path / "inference_log"), table.set_column(index, table.field(index), lapsed))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "no_drift"
    assert summary["empty_columns"] == ["seq_spend_per_txn_change"]
    assert summary["fixed_alarms"]["seq_spend_per_txn_change"]["applied"] is False


def test_an_older_transformers_files_of_another_version_do_not_block_the_champions_check(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    log = str(tmp_path / "inference_log")
    # The previous version's records, written before the transformer knew the column.
    old = as_version(traffic(spec, model_dir, "none", 600, seed=2), "v0")
    write_log(log, old.drop(["seq_spend_per_txn_change"]))
    write_log(log, traffic(spec, model_dir, "none", 3000))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "no_drift"
    assert summary["rows"]["current"] == 3000 and summary["rows"]["window_all"] == 3600


def test_the_champions_records_without_its_references_column_name_the_transformer_to_upgrade(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    table = traffic(spec, model_dir, "none", 3000).drop(["seq_spend_per_txn_change"])
    write_log(str(tmp_path / "inference_log"), table)
    with pytest.raises(
        MonitorError, match=r"lacks columns \['seq_spend_per_txn_change'\].*upgrade"
    ):
        check_drift(settings_for(tmp_path), until=UNTIL, hours=1)


def test_columns_that_grow_with_the_customers_age_are_not_tested_and_the_summary_lists_them(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "age", 3000))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["untested_columns"] == ["seq_recency_bins", "num_tenure_days", "num_frequency"]
    # The data does not drift; the decision may still be `drift` through the scores, which a
    # model that reads tenure really does change for older customers.
    assert summary["drift_share"] == 0.0 and summary["drifted_columns"] == []
    assert {c["column"] for c in summary["columns"]}.isdisjoint(summary["untested_columns"])
    tested_all = check_drift(settings_for(tmp_path, untested_columns=[]), until=UNTIL, hours=1)
    assert tested_all["untested_columns"] == []
    assert {"num_tenure_days", "num_frequency"} <= {
        c["column"] for c in tested_all["drifted_columns"]
    }


def test_an_untested_column_the_reference_lacks_is_a_one_line_error(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "none", 600))
    settings = settings_for(tmp_path, untested_columns=["num_tenure_dayz"])
    with pytest.raises(MonitorError, match=r"untested_columns names \['num_tenure_dayz'\].*v1"):
        check_drift(settings, until=UNTIL, hours=1)


def test_too_few_rows_give_insufficient_data_even_when_they_drift(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "rate", 100))
    summary = check_drift(settings_for(tmp_path), until=UNTIL, hours=1)
    assert summary["decision"] == "insufficient_data"
    assert summary["rows"]["current"] == 100
    assert summary["report_html"] is None


def test_evidently_tests_a_seeded_sample_of_a_large_side_and_the_summary_keeps_true_counts(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "spend", 3000))
    settings = settings_for(tmp_path, max_rows_per_side=1500)
    first = check_drift(settings, until=UNTIL, hours=1)
    again = check_drift(settings, until=UNTIL, hours=1, now=UNTIL + timedelta(minutes=1))
    assert first["rows"] == {"current": 3000, "reference": 1800, "window_all": 3000}
    assert first["sampled"] == {
        "reference": 1500,
        "current": 1500,
        "max_rows_per_side": 1500,
        "seed": 0,
    }
    # The same seed draws the same rows: a rerun gives the same figures.
    assert again["columns"] == first["columns"]
    assert first["decision"] == "drift"
    assert {"seq_spend_sum_4", "seq_spend_sum_13"} <= {
        c["column"] for c in first["drifted_columns"]
    }
    whole = check_drift(settings_for(tmp_path), until=UNTIL, hours=1, now=UNTIL)
    assert whole["sampled"]["current"] == 3000
    assert whole["columns"] != first["columns"]


def test_records_of_other_versions_and_outside_the_window_are_left_out(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    table = traffic(spec, model_dir, "none", 1000)
    write_log(str(tmp_path / "inference_log"), as_version(table, "v0"))
    write_log(str(tmp_path / "inference_log"), table)
    summary = check_drift(settings_for(tmp_path, min_rows=1), until=UNTIL, hours=1)
    assert summary["rows"] == {"current": 1000, "reference": 1800, "window_all": 2000}
    with pytest.raises(MonitorError, match=r"has no records from 2026-11-30T10:00"):
        check_drift(settings_for(tmp_path), until=UNTIL - timedelta(hours=1), hours=1)


def test_a_log_without_the_summary_columns_is_one_line_naming_file_and_columns(
    tmp_path: Path, champion: tuple[Path, dict]
) -> None:
    model_dir, spec = champion
    table = traffic(spec, model_dir, "none", 600).drop_columns(["cat_segment"])
    write_log(str(tmp_path / "inference_log"), table)
    result = subprocess.run(
        [sys.executable, "-c", "from churn.cli import run; run()", "monitor", "drift", *WINDOW],
        env={**os.environ, "CHURN_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: inference log")
    assert "lacks columns ['cat_segment']" in result.stderr
    with pytest.raises(MonitorError, match=r"part-.*\.parquet lacks columns \['cat_segment'\]"):
        check_drift(settings_for(tmp_path), until=UNTIL, hours=1)


def test_a_champion_without_a_reference_is_a_one_line_error(
    tmp_path: Path, tiny_model: Callable[[Path, int], Path]
) -> None:
    registry = open_registry(Settings(home=tmp_path).registry)
    registry.publish(tiny_model(tmp_path / "model", 0), {"roc_auc": 0.8}, version="v0")
    registry.promote("v0")
    with pytest.raises(MonitorError, match=r"^no usable reference for v0: .*no reference.parquet"):
        check_drift(settings_for(tmp_path), until=UNTIL, hours=1)


def test_the_log_and_the_reports_can_live_on_s3(
    tmp_path: Path, champion: tuple[Path, dict], s3_endpoint: str, s3_bucket: str
) -> None:
    model_dir, spec = champion
    log = f"s3://{s3_bucket}/log"
    write_log(log, traffic(spec, model_dir, "spend", 1000), s3_endpoint)
    cfg = settings_for(
        tmp_path, log_uri=log, store_uri=f"s3://{s3_bucket}/monitoring", endpoint_url=s3_endpoint
    )
    summary = check_drift(cfg, until=UNTIL, hours=1)
    assert summary["decision"] == "drift"
    assert summary["report_html"].startswith(f"s3://{s3_bucket}/monitoring/runs/")
    past, earlier = history(cfg)
    assert [run["decision"] for run in past] == ["drift"] and earlier == 0


def test_the_cli_prints_the_decision_the_drifted_columns_and_the_paths_and_keeps_history(
    tmp_path: Path, champion: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "spend", 1000))
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    since = (UNTIL - timedelta(hours=1)).isoformat()
    runner = CliRunner()
    result = runner.invoke(
        app, ["monitor", "drift", "--since", since, "--until", UNTIL.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "decision: drift (1000 rows of v1 against 1800 reference rows)" in result.output
    assert "  drifted: seq_spend_sum_13 Wasserstein distance (normed)" in result.output
    assert "because: drifted share " in result.output
    assert "thresholds: column_alarm 0.2 (not calibrated yet)" in result.output
    assert f"report: {tmp_path}/monitoring/runs/" in result.output
    metrics = (tmp_path / "monitoring" / "churn_drift.prom").read_text()
    assert 'churn_drift_decision{decision="drift",model_version="v1"} 1.0' in metrics
    assert 'churn_drift_current_rows{model_version="v1"} 1000.0' in metrics
    assert 'churn_drift_column_score{column="seq_spend_sum_13"' in metrics
    listed = runner.invoke(app, ["monitor", "history"])
    assert listed.exit_code == 0
    assert " v1 " in listed.output and " drift  rows=1000 " in listed.output


def test_retrain_without_drift_triggers_nothing_and_says_so(
    tmp_path: Path, champion: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir, spec = champion
    write_log(str(tmp_path / "inference_log"), traffic(spec, model_dir, "none", 600))
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["monitor", "drift", *WINDOW, "--retrain"])
    assert result.exit_code == 0, result.output
    assert "retrain: skipped" in result.output
    # The report is written first; no training run and no trigger record follow.
    assert len(history(settings_for(tmp_path))[0]) == 1
    assert not list(tmp_path.rglob("*.claim-*.json"))

"""The synthetic generator: reproducible, on contract, and its oracle is the true probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from churn.cli import app
from churn.data import synth
from churn.data.contract import load_customers, load_transactions, to_ns
from churn.dataset.labels import label_cutoffs
from churn.errors import ChurnError
from churn.settings import FeatureConfig

CUSTOMERS, DAYS, SEED = 2000, 400, 3
FILES = ("transactions", "customers", "oracle", "latent")
DAY = pd.Timedelta(days=1)


def _generate(path: Path, **kwargs) -> tuple[synth.SynthSpec, Path]:
    spec = synth.make_spec(
        kwargs.pop("customers", CUSTOMERS), DAYS, kwargs.pop("seed", SEED), **kwargs
    )
    synth.generate(spec, path)
    return spec, path


def _read(path: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(path / f"{name}.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[synth.SynthSpec, Path]]:
    root = tmp_path_factory.mktemp("synth")
    return {kind: _generate(root / kind, drift=kind) for kind in synth.DRIFT_KINDS}


def _labelled(spec: synth.SynthSpec, path: Path, lookback_days: int) -> pd.DataFrame:
    labels = label_cutoffs(
        _read(path, "transactions"),
        list(spec.cutoffs),
        spec.horizon_days,
        lookback_days,
        spec.observed_until,
    )
    return labels.merge(_read(path, "oracle"), on=["customer_id", "cutoff"], how="left")


def test_same_seed_gives_identical_files(tmp_path: Path, runs: dict) -> None:
    _, first = runs["none"]
    _, again = _generate(tmp_path / "again", drift="none")
    for name in FILES:
        assert (first / f"{name}.parquet").read_bytes() == (again / f"{name}.parquet").read_bytes()
    assert (first / "generator.json").read_text() == (again / "generator.json").read_text()
    _, other = _generate(tmp_path / "other", seed=SEED + 1)
    assert not _read(first, "transactions").equals(_read(other, "transactions"))


def test_files_follow_the_schema_and_the_data_contract(runs: dict) -> None:
    spec, path = runs["none"]
    utc = pa.timestamp("ns", tz="UTC")
    expected = {
        "transactions": {
            "customer_id": pa.string(),
            "timestamp": utc,
            "amount": pa.float64(),
            "quantity": pa.float64(),
        },
        "customers": {
            "customer_id": pa.string(),
            "signup_date": utc,
            "segment": pa.string(),
            "region": pa.string(),
            "age": pa.float64(),
        },
        "oracle": {"customer_id": pa.string(), "cutoff": utc, "true_prob": pa.float64()},
        "latent": {
            "customer_id": pa.string(),
            "churn_date": utc,
            "fade_onset": utc,
            "base_rate": pa.float64(),
        },
    }
    for name, columns in expected.items():
        schema = pq.read_schema(path / f"{name}.parquet")
        assert dict(zip(schema.names, schema.types, strict=True)) == columns, name

    tx = load_transactions(path / "transactions.parquet")
    customers = load_customers(path / "customers.parquet")
    assert len(customers) == CUSTOMERS
    assert customers["customer_id"].iloc[0] == "c0000000"
    assert set(customers["segment"]) == {"consumer", "smb"}
    assert (tx["amount"] >= 0).all() and (tx["quantity"] >= 1).all()
    assert 10 <= len(tx) / CUSTOMERS * 730 / DAYS <= 25
    raw = _read(path, "transactions")
    assert raw.equals(raw.sort_values(["customer_id", "timestamp"], kind="stable"))

    meta = json.loads((path / "generator.json").read_text())
    assert meta["seed"] == SEED and meta["drift"] == "none"
    assert meta["counts"]["transactions"] == len(tx)
    assert meta["cutoffs"] == [c.isoformat() for c in spec.cutoffs]
    # The automatic schedule, less the training cutoff that would fall before the start.
    assert [(c - spec.start).days for c in spec.cutoffs] == [10, 40, 70, 100, 130, 220, 310]


def test_no_purchase_before_signup_or_from_the_churn_day_on(runs: dict) -> None:
    _, path = runs["none"]
    tx = _read(path, "transactions").merge(_read(path, "customers"), on="customer_id")
    tx = tx.merge(_read(path, "latent"), on="customer_id")
    assert (tx["timestamp"] > tx["signup_date"]).all()
    churned = tx["churn_date"].notna()
    assert churned.mean() > 0.2
    assert (tx.loc[churned, "timestamp"] <= tx.loc[churned, "churn_date"]).all()
    assert (tx["timestamp"] <= tx["signup_date"].min() + DAYS * DAY).all()


def test_oracle_is_calibrated_against_the_labels(runs: dict) -> None:
    spec, path = runs["none"]
    lookback = FeatureConfig().bin_days * FeatureConfig().seq_len
    rows = _labelled(spec, path, lookback)
    assert rows["true_prob"].notna().all(), "every labelled row has an oracle probability"
    assert len(rows) > 5000
    assert abs(rows["true_prob"].mean() - rows["label"].mean()) < 0.015
    assert roc_auc_score(rows["label"], rows["true_prob"]) > 0.9
    bins = pd.cut(rows["true_prob"], [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], include_lowest=True)
    by_bin = rows.groupby(bins, observed=True).agg(
        n=("label", "size"), label=("label", "mean"), prob=("true_prob", "mean")
    )
    by_bin = by_bin[by_bin["n"] >= 100]
    assert len(by_bin) >= 4
    se = np.sqrt(by_bin["prob"] * (1 - by_bin["prob"]) / by_bin["n"])
    assert ((by_bin["label"] - by_bin["prob"]).abs() <= 4 * se + 0.01).all(), by_bin


def test_oracle_matches_monte_carlo_replicas() -> None:
    # Three latent customers, each replicated with fresh churn and purchase draws: one fading
    # before the cutoff, one starting to fade inside the label window, one that never fades.
    spec = synth.make_spec(1, DAYS, 0, drift="rate", drift_start_day=230, cutoffs=["2022-08-01"])
    k = (spec.cutoffs[0] - spec.start).days
    reps = 4000
    rng = np.random.default_rng(7)

    def replicas(signup: int, rate: float, tau: float, fade_rate: float) -> synth._Latent:
        ones = np.ones(reps)
        return synth._Latent(
            segment=np.zeros(reps, dtype=int),
            region=np.zeros(reps, dtype=int),
            age=40 * ones,
            signup=np.full(reps, signup),
            base_rate=rate * ones,
            price=10 * ones,
            items=ones,
            fades=np.isfinite(tau) & ones.astype(bool),
            tau=tau * ones,
            fade_rate=fade_rate * ones,
            churn_draw=rng.exponential(size=reps),
        )

    rate_factor, _ = synth.day_factors(spec)
    buffer = np.empty((2, (DAYS + 1) * reps), dtype=np.float32)
    cases = [
        (replicas(0, 0.03, k - 25.5, 0.03), True),
        (replicas(100, 0.05, k + 30.2, 0.05), True),
        (replicas(50, 0.01, np.inf, 0.03), False),
    ]
    for lat, fading in cases:
        if fading:
            ce, cw = synth._running_sums(lat, rate_factor, buffer)
        else:
            ce, cw = synth._steady_sums(rate_factor)
        churn_day = synth._churn_days(lat, ce)
        rows, day = synth._purchase_days(rng, lat, cw, churn_day)
        alive = churn_day >= k
        bought = np.zeros(reps, dtype=bool)
        bought[rows[(day >= k) & (day < k + spec.horizon_days)]] = True
        empirical = (~bought[alive]).mean()
        _, _, prob = synth._oracle(spec, lat, ce, cw, churn_day)
        assert np.allclose(prob[~alive], 1.0)
        assert np.ptp(prob[alive]) < 1e-5
        se = np.sqrt(prob[alive][0] * (1 - prob[alive][0]) / alive.sum())
        assert abs(empirical - prob[alive][0]) < 4 * se + 1e-3, (empirical, prob[alive][0])


def test_recent_decline_signals_churn_beyond_totals(runs: dict) -> None:
    spec, path = runs["none"]
    lookback = 120
    rows = _labelled(spec, path, lookback)
    tx = _read(path, "transactions")
    ts, ids = to_ns(tx["timestamp"]), tx["customer_id"].to_numpy()
    parts = []
    for cutoff, group in rows.groupby("cutoff"):
        middle = (cutoff - lookback // 2 * DAY).value
        start = (cutoff - lookback * DAY).value
        early = pd.Series(ids[(ts > start) & (ts <= middle)]).value_counts()
        recent = pd.Series(ids[(ts > middle) & (ts <= cutoff.value)]).value_counts()
        parts.append(
            group.assign(
                early=early.reindex(group["customer_id"]).fillna(0).to_numpy(),
                recent=recent.reindex(group["customer_id"]).fillna(0).to_numpy(),
            )
        )
    rows = pd.concat(parts)
    rows = rows[rows["early"] != rows["recent"]]
    rows["total"] = rows["early"] + rows["recent"]
    rows["declining"] = rows["recent"] < rows["early"]
    rates = rows[rows["total"].between(2, 10)].pivot_table(
        index="total", columns="declining", values="label", aggfunc=["mean", "size"]
    )
    gap = rates["mean"][True] - rates["mean"][False]
    weight = rates["size"].min(axis=1)
    assert (gap > 0).mean() >= 0.8, rates
    assert np.average(gap, weights=weight) > 0.15, rates


def test_spend_drift_scales_amounts_from_the_drift_start_only(runs: dict) -> None:
    spec, path = runs["spend"]
    base = _read(runs["none"][1], "transactions")
    drifted = _read(path, "transactions")
    assert drifted["timestamp"].equals(base["timestamp"])
    after = (drifted["timestamp"] > spec.start + spec.drift_start_day * DAY).to_numpy()
    assert np.array_equal(drifted["amount"][~after], base["amount"][~after])
    ratio = drifted["amount"][after] / base["amount"][after].clip(lower=1.0)
    assert np.allclose(drifted["amount"][after], 1.6 * base["amount"][after], atol=0.02)
    assert ratio.median() == pytest.approx(1.6, abs=0.01)


def test_rate_drift_halves_purchases_after_the_drift_start(runs: dict) -> None:
    spec, path = runs["rate"]
    base_path = runs["none"][1]
    assert _read(path, "latent").equals(_read(base_path, "latent")), "same churn days"
    switch = spec.start + spec.drift_start_day * DAY

    def counts(p: Path) -> tuple[int, int]:
        ts = _read(p, "transactions")["timestamp"]
        return int((ts <= switch).sum()), int((ts > switch).sum())

    (base_before, base_after), (before, after) = counts(base_path), counts(path)
    assert 0.9 < before / base_before < 1.1
    assert 0.4 < after / base_after < 0.6
    rows = _labelled(spec, path, 364)
    late = rows[rows["cutoff"] >= switch]
    assert len(late) > 1000
    assert abs(late["true_prob"].mean() - late["label"].mean()) < 0.03


def test_segment_drift_adds_a_segment_that_arrives_after_the_drift_start(runs: dict) -> None:
    spec, path = runs["segment"]
    customers = _read(path, "customers")
    new = customers["segment"] == "enterprise"
    assert 0.15 < new.mean() < 0.25
    assert (customers.loc[new, "signup_date"] >= spec.start + spec.drift_start_day * DAY).all()
    assert "enterprise" not in set(_read(runs["none"][1], "customers")["segment"])
    meta = json.loads((path / "generator.json").read_text())
    assert meta["counts"]["segments"]["enterprise"] == new.sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customers": 0}, "customers must be at least 1"),
        ({"days": 90}, "too short"),
        ({"days": 200}, "needs at least 271 days"),
        ({"drift": "bogus"}, "--drift must be one of"),
        ({"drift": "rate", "drift_start_day": DAYS}, "drift-start-day must lie inside"),
        ({"drift_start_day": 10}, "needs a --drift"),
        ({"start": "2022-01-01T06:00"}, "midnight"),
        ({"start": "not a date"}, "not a date"),
        ({"cutoffs": ["2021-12-01"]}, "fall outside"),
        ({"cutoffs": ["2022-12-31"]}, "fall outside"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    args = {"customers": 10, "days": DAYS, "seed": 0, **kwargs}
    with pytest.raises(ChurnError, match=message):
        synth.make_spec(args.pop("customers"), args.pop("days"), args.pop("seed"), **args)


def test_failed_run_keeps_the_old_folder_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "generator.json").write_text("{}")  # an earlier output: replaceable
    (out / "keep.txt").write_text("old")

    def boom(*args: object) -> None:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(synth, "_simulate_chunk", boom)
    with pytest.raises(RuntimeError):
        synth.generate(synth.make_spec(10, DAYS, 0), out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "keep.txt").read_text() == "old"


def test_cli_writes_the_folder_and_reports_bad_arguments(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "synth"
    args = ["--customers", "300", "--days", "300", "--seed", "1", "--horizon-days", "60"]
    result = runner.invoke(app, ["data", "synth", "--out", str(out), *args, "--drift", "segment"])
    assert result.exit_code == 0, result.output
    assert "transactions of 300 customers" in result.output
    meta = json.loads((out / "generator.json").read_text())
    assert (meta["horizon_days"], meta["drift"], meta["drift_start_day"]) == (60, "segment", 150)
    assert all((out / f"{name}.parquet").is_file() for name in FILES)

    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--customers", "0"])
    assert isinstance(result.exception, ChurnError)
    assert "customers must be at least 1" in str(result.exception)


def test_read_spec_gives_back_the_parameters_of_every_run(tmp_path: Path, runs: dict) -> None:
    for spec, path in runs.values():
        assert synth.read_spec(path) == spec
    with pytest.raises(ChurnError, match=r"generator\.json is missing"):
        synth.read_spec(tmp_path)
    _, path = runs["none"]
    meta = json.loads((path / "generator.json").read_text())
    (tmp_path / "generator.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(ChurnError, match="format_version 0"):
        synth.read_spec(tmp_path)

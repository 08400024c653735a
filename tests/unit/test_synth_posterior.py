"""The attainable ceiling: the Bayes posterior of the label given only the observed log."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from churn.data import synth
from churn.errors import ChurnError
from churn.evaluation import posterior as synth_posterior
from churn.evaluation.posterior import posterior_probs

CUSTOMERS, DAYS, SEED = 3000, 400, 11


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[synth.SynthSpec, Path]:
    spec = synth.make_spec(CUSTOMERS, DAYS, SEED)
    path = tmp_path_factory.mktemp("posterior") / "data"
    synth.generate(spec, path)
    return spec, path


@pytest.fixture(scope="module")
def scored(synthetic: tuple[synth.SynthSpec, Path]) -> pd.DataFrame:
    """Posterior, oracle and label of every customer signed up before the last cutoff."""
    spec, path = synthetic
    cutoff = spec.cutoffs[-1]
    post = posterior_probs(path, cutoff)
    oracle = pd.read_parquet(path / "oracle.parquet")
    rows = post.merge(oracle, on=["customer_id", "cutoff"], how="left")
    tx = pd.read_parquet(path / "transactions.parquet")
    end = cutoff + pd.Timedelta(days=spec.horizon_days)
    window = tx[(tx.timestamp > cutoff) & (tx.timestamp <= end)]
    rows["label"] = (~rows.customer_id.isin(window.customer_id)).astype(int)
    return rows


def test_posterior_is_the_expected_oracle_given_the_log(scored: pd.DataFrame) -> None:
    # The posterior is E[oracle | log]: in every slice of posterior values the oracle's mean
    # must match, and the oracle is much less noisy than the labels, so the check is tight.
    assert scored["true_prob"].notna().all()
    bins = pd.qcut(scored["posterior_prob"], 8, duplicates="drop")
    means = scored.groupby(bins, observed=True)[["posterior_prob", "true_prob"]].mean()
    gap = (means["posterior_prob"] - means["true_prob"]).abs()
    assert gap.max() < 0.03, means
    se = np.sqrt(scored["label"].var() / len(scored))
    assert abs(scored["posterior_prob"].mean() - scored["label"].mean()) < 4 * se


def test_posterior_is_closer_to_the_oracle_than_with_a_wrong_prior(
    monkeypatch: pytest.MonkeyPatch, synthetic: tuple[synth.SynthSpec, Path], scored: pd.DataFrame
) -> None:
    # E[oracle | log] minimises the squared distance to the oracle among all functions of the
    # log, so a posterior built on a wrong prior must land farther from it. Halving the fade
    # probability puts it about five standard errors farther on this set.
    spec, path = synthetic
    wrong_segments = {
        name: dataclasses.replace(params, fade_prob=params.fade_prob / 2)
        for name, params in synth.SEGMENTS.items()
    }
    monkeypatch.setattr(synth_posterior, "SEGMENTS", wrong_segments)
    wrong = posterior_probs(path, spec.cutoffs[-1])["posterior_prob"].to_numpy()
    right = scored["posterior_prob"].to_numpy()
    oracle = scored["true_prob"].to_numpy()
    assert np.mean((right - oracle) ** 2) < np.mean((wrong - oracle) ** 2)


def test_posterior_ranks_below_the_latent_oracle_and_well_above_chance(
    scored: pd.DataFrame,
) -> None:
    post = roc_auc_score(scored["label"], scored["posterior_prob"])
    oracle = roc_auc_score(scored["label"], scored["true_prob"])
    assert 0.85 < post < oracle


def test_posterior_reads_nothing_after_the_cutoff(
    tmp_path: Path, synthetic: tuple[synth.SynthSpec, Path], scored: pd.DataFrame
) -> None:
    spec, path = synthetic
    cutoff = spec.cutoffs[-1]
    cut = tmp_path / "cut"
    shutil.copytree(path, cut)
    table = pq.read_table(path / "transactions.parquet").to_pandas()
    kept = table[table.timestamp <= cutoff]
    assert len(kept) < len(table)
    kept.to_parquet(cut / "transactions.parquet", index=False)
    ids = scored["customer_id"].to_numpy()[:300]
    again = posterior_probs(cut, cutoff, ids)
    expected = scored.set_index("customer_id").loc[ids, "posterior_prob"].to_numpy()
    np.testing.assert_array_equal(again["posterior_prob"].to_numpy(), expected)


def test_posterior_refuses_what_it_cannot_score(
    tmp_path: Path, synthetic: tuple[synth.SynthSpec, Path]
) -> None:
    spec, path = synthetic
    cutoff = spec.cutoffs[-1]
    with pytest.raises(ChurnError, match="full 90-day horizon"):
        posterior_probs(path, spec.observed_until)
    with pytest.raises(ChurnError, match="midnight"):
        posterior_probs(path, cutoff + pd.Timedelta(hours=3))
    with pytest.raises(ChurnError, match="lacks customers \\['nobody'\\]"):
        posterior_probs(path, cutoff, ["nobody"])
    late = pd.read_parquet(path / "customers.parquet").sort_values("signup_date").iloc[-1]
    with pytest.raises(ChurnError, match=f"{late.customer_id}.*signed up on or after"):
        posterior_probs(path, spec.cutoffs[0], [late.customer_id])
    with pytest.raises(ChurnError, match=r"generator\.json is missing"):
        posterior_probs(tmp_path, cutoff)
    drifted = tmp_path / "drifted"
    shutil.copytree(path, drifted)
    meta = json.loads((drifted / "generator.json").read_text())
    (drifted / "generator.json").write_text(json.dumps({**meta, "drift": "rate"}))
    with pytest.raises(ChurnError, match="without drift"):
        posterior_probs(drifted, cutoff)
    meta["model"]["hazard_faded"] *= 2
    (drifted / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(ChurnError, match="other generator parameters"):
        posterior_probs(drifted, cutoff)

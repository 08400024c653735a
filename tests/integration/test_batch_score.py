"""Batch scoring on a real Feast offline store, a folder registry and a real TorchServe.

One module-wide stack: a synthetic log, a feature repository built from it, a small model
trained on it, published and promoted in a folder registry, and that version served by
TorchServe for the comparison with the endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import promote_small_champion

from churn.data.synth import generate, make_spec
from churn.features.build import build_features
from churn.features.request import build_request
from churn.features.store import FeatureRepo
from churn.release.registry import LocalRegistry
from churn.release.torchserve import LocalTorchServe
from churn.settings import FeatureConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NEWCOMER = "newcomer-at-the-end"
CHURN = [sys.executable, "-c", "from churn.cli import run; run()"]

FEATURES = FeatureConfig(
    bin_days=7, seq_len=8, horizon_days=30, cutoff_step_days=14, n_train_cutoffs=3
)


@dataclass
class Stack:
    root: Path
    repo: FeatureRepo
    registry: LocalRegistry
    version: str
    version_dir: Path
    meta: dict
    at: pd.Timestamp

    def score(self, *args: str, repo: Path | None = None) -> tuple[int, str]:
        """Runs the real `churn score` in a new process; returns the exit code and stderr."""
        env = {
            "CHURN_HOME": str(self.root / "home"),
            "CHURN_REGISTRY__URI": str(self.registry.root),
            "CHURN_REGISTRY__MODEL_NAME": "churn",
        }
        result = subprocess.run(
            [*CHURN, "score", "--repo", str(repo or self.repo.path), *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return result.returncode, result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("batch_score")
    generate(
        make_spec(300, 300, seed=7, horizon_days=30, step_days=14, n_train_cutoffs=3),
        root / "synth",
    )
    # A customer whose only event comes at the end of the log: known to the store, but
    # without history at every earlier snapshot.
    tx = pd.read_parquet(root / "synth" / "transactions.parquet")
    newcomer = tx.iloc[[-1]].copy()
    newcomer["customer_id"] = NEWCOMER
    newcomer["timestamp"] = tx["timestamp"].max()
    pd.concat([tx, newcomer]).to_parquet(root / "log.parquet", index=False)
    build_features(
        root / "log.parquet",
        root / "repo",
        FEATURES,
        customers=root / "synth" / "customers.parquet",
    )
    registry, version = promote_small_champion(root / "repo", root)
    version_dir = registry.download(version, root / "version")
    repo = FeatureRepo(root / "repo")
    # The last training cutoff: a snapshot time with events after it.
    at = pd.Timestamp(repo.spec["cutoffs"][-1])
    yield Stack(
        root=root,
        repo=repo,
        registry=registry,
        version=version,
        version_dir=version_dir,
        meta=json.loads((version_dir / "model" / "model.json").read_text()),
        at=at,
    )


def read_scores(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def test_batch_scores_equal_what_the_served_endpoint_returns_for_the_same_features(
    stack: Stack,
) -> None:
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java is not on PATH)")
    out = stack.root / "champion.parquet"
    code, output = stack.score("--at", str(stack.at.date()), "--out", str(out))
    assert code == 0, output
    scores = read_scores(out)
    assert len(scores) > 20 and (scores["status"] == "ok").all()
    assert set(scores["model_version"]) == {stack.version}
    ids = scores["customer_id"].astype(str).tolist()
    features = stack.repo.historical_features(
        pd.DataFrame({"customer_id": ids, "event_timestamp": [stack.at] * len(ids)})
    )
    request = build_request(ids, features, stack.repo.spec, stack.meta["input_spec"])
    with LocalTorchServe(
        stack.version_dir / "model-store", "churn", workdir=stack.root / "ts"
    ) as server:
        served = server.predict(request.instances)
    expected = np.array([p["churn_probability"] for p in served])
    np.testing.assert_allclose(scores["score"].to_numpy(), expected, rtol=0, atol=1e-6)
    assert scores["decision"].tolist() == [p["churned"] for p in served]
    assert {p["model_version"] for p in served} == {stack.version}


def test_a_named_version_scores_in_chunks_the_same_as_in_one_pass(stack: Stack) -> None:
    one, chunked = stack.root / "one.csv", stack.root / "chunked.csv"
    at = str(stack.at.date())
    assert stack.score("--at", at, "--model", stack.version, "--out", str(one))[0] == 0
    code, output = stack.score("--at", at, "--chunk-rows", "7", "--out", str(chunked))
    assert code == 0, output
    a, b = read_scores(one), read_scores(chunked)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    # A forward pass over another batch size may round the last float32 bit differently.
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-6)


def test_the_default_customers_are_those_active_in_the_lookback_before_the_date(
    stack: Stack,
) -> None:
    out = stack.root / "active.parquet"
    assert stack.score("--at", str(stack.at.date()), "--out", str(out))[0] == 0
    tx = pd.read_parquet(stack.repo.sources / "transactions.parquet")
    lookback = pd.Timedelta(days=FEATURES.seq_len * FEATURES.bin_days)
    # Day bins are right-closed: an event in (at - lookback, at] is in the window.
    window = tx[(tx["timestamp"] > stack.at - lookback) & (tx["timestamp"] <= stack.at)]
    assert sorted(read_scores(out)["customer_id"].astype(str)) == sorted(
        window["customer_id"].astype(str).unique()
    )


def test_a_transaction_after_the_date_does_not_change_the_score(stack: Stack) -> None:
    tx = pd.read_parquet(stack.root / "log.parquet")
    customer = str(tx.loc[tx["timestamp"] <= stack.at, "customer_id"].iloc[0])
    late = tx[tx["customer_id"].astype(str) == customer].iloc[[0]].copy()
    late["timestamp"] = stack.at + pd.Timedelta(days=1)
    late["amount"] = 10_000.0
    pd.concat([tx, late]).to_parquet(stack.root / "later.parquet", index=False)
    build_features(
        stack.root / "later.parquet",
        stack.root / "repo-later",
        FEATURES,
        customers=stack.root / "synth" / "customers.parquet",
        cutoffs=stack.repo.spec["cutoffs"],
    )
    ids = stack.root / "one-customer.csv"
    ids.write_text(f"customer_id\n{customer}\n")
    before, after = stack.root / "before.parquet", stack.root / "after.parquet"
    at = str(stack.at.date())
    assert stack.score("--at", at, "--customers", str(ids), "--out", str(before))[0] == 0
    code, output = stack.score(
        "--at",
        at,
        "--customers",
        str(ids),
        "--out",
        str(after),
        repo=stack.root / "repo-later",
    )
    assert code == 0, output
    assert read_scores(before)["score"].iloc[0] == read_scores(after)["score"].iloc[0]
    # The later transaction does change the score at the next snapshot, so it was read.
    latest = str(pd.Timestamp(stack.repo.spec["latest_snapshot"]).date())
    early, late_out = stack.root / "latest-before.parquet", stack.root / "latest-after.parquet"
    assert stack.score("--at", latest, "--customers", str(ids), "--out", str(early))[0] == 0
    assert (
        stack.score(
            "--at",
            latest,
            "--customers",
            str(ids),
            "--out",
            str(late_out),
            repo=stack.root / "repo-later",
        )[0]
        == 0
    )
    assert read_scores(early)["score"].iloc[0] != read_scores(late_out)["score"].iloc[0]


def test_unknown_customers_and_customers_without_history_are_reported_per_row(
    stack: Stack,
) -> None:
    tx = pd.read_parquet(stack.root / "log.parquet")
    first = tx.groupby(tx["customer_id"].astype(str))["timestamp"].min()
    known = str(first[first <= stack.at].index[0])
    newcomer = NEWCOMER
    earlier = pd.Timestamp(stack.repo.spec["cutoffs"][0])
    ids = stack.root / "mixed.csv"
    ids.write_text(
        f"customer_id,cutoff\n{known},\nnobody-{known},\n{newcomer},\n{known},{earlier.date()}\n"
    )
    out = stack.root / "mixed.csv.out.csv"
    code, output = stack.score(
        "--at", str(stack.at.date()), "--customers", str(ids), "--out", str(out)
    )
    assert code == 0, output
    scores = read_scores(out)
    assert scores["customer_id"].astype(str).tolist() == [
        known,
        f"nobody-{known}",
        newcomer,
        known,
    ]
    status = scores["status"].tolist()
    assert status[1:3] == ["unknown_customer", "no_history"]
    assert scores["score"].isna().tolist()[1:3] == [True, True]
    assert pd.to_datetime(scores["cutoff"], utc=True).tolist() == [stack.at] * 3 + [earlier]


@pytest.mark.parametrize(
    "date, message",
    [
        ("1990-01-01", "is outside the data of"),
        ("2100-01-01", "is outside the data of"),
    ],
)
def test_a_date_outside_the_data_is_a_one_line_error_and_writes_nothing(
    stack: Stack, date: str, message: str
) -> None:
    out = stack.root / f"outside-{date}.parquet"
    code, output = stack.score("--at", date, "--out", str(out))
    last = output.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and message in last
    assert "Traceback" not in output
    assert not out.exists()


def test_a_date_between_snapshots_is_refused_with_the_command_that_adds_it(stack: Stack) -> None:
    between = stack.at - pd.Timedelta(days=1)
    out = stack.root / "between.parquet"
    code, output = stack.score("--at", str(between.date()), "--out", str(out))
    assert code == 2 and "has no feature snapshot" in output and "--cutoffs" in output
    assert not out.exists()


def test_an_existing_file_is_not_overwritten_without_force(stack: Stack) -> None:
    out = stack.root / "users-file.csv"
    out.write_text("the user's data\n")
    code, output = stack.score("--at", str(stack.at.date()), "--out", str(out))
    assert code == 2 and "already exists" in output
    assert out.read_text() == "the user's data\n"
    code, output = stack.score("--at", str(stack.at.date()), "--out", str(out), "--force")
    assert code == 0, output
    assert "status" in out.read_text().splitlines()[0]

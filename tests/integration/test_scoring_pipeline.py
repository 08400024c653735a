"""Real kfp.local runs of the batch-scoring pipeline on a small log and a folder registry.

The pipeline's dated file must hold the rows `churn score` writes for the same log, date and
champion; a second run of the same date must not replace the first run's file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import promote_small_champion

from churn.data.synth import generate, make_spec
from churn.features.build import build_features
from churn.release.score_store import RUN_KEY, scores_uri
from churn.settings import FeatureConfig, RegistryConfig, Settings
from pipelines.arguments import ScoringArguments
from pipelines.scoring_pipeline import build_pipeline

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHURN = [sys.executable, "-c", "from churn.cli import run; run()"]
FEATURES = FeatureConfig(
    bin_days=7, seq_len=8, horizon_days=30, cutoff_step_days=14, n_train_cutoffs=3
)
COMPARED = ["customer_id", "cutoff", "score", "decision", "status", "model_version"]


@dataclass
class Setup:
    root: Path
    data: Path
    settings: Settings
    version: str
    date: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("scoring_pipeline")
    generate(
        make_spec(300, 300, seed=11, horizon_days=30, step_days=14, n_train_cutoffs=3),
        root / "synth",
    )
    # The log as a user hands it over: transactions and customers, no generator's notes.
    data = root / "data"
    data.mkdir()
    for name in ("transactions.parquet", "customers.parquet"):
        shutil.copy(root / "synth" / name, data / name)
    build_features(
        data / "transactions.parquet",
        root / "train_repo",
        FEATURES,
        customers=data / "customers.parquet",
    )
    _, version = promote_small_champion(root / "train_repo", root)
    last = pd.read_parquet(data / "transactions.parquet", columns=["timestamp"])["timestamp"].max()
    # Not one of the training cutoffs: the scoring run must add its own snapshot.
    date = (pd.Timestamp(last).normalize() - pd.Timedelta(days=10)).date().isoformat()
    settings = Settings(
        home=root / "home",
        features=FEATURES,
        registry=RegistryConfig(uri=str(root / "registry")),
    )
    yield Setup(root=root, data=data, settings=settings, version=version, date=date)


def run_scoring(setup: Setup, name: str, **overrides: object) -> None:
    """One kfp.local run of the scoring pipeline, as `churn run` starts the training one."""
    from kfp import local

    pipeline_root = setup.root / f"pipeline_root_{name}"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=False,
    )
    arguments = ScoringArguments.from_settings(
        setup.settings, data=str(setup.data), date=setup.date, **overrides
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_pipeline(setup.settings, local=True)(**arguments.parameters())


def churn_score(setup: Setup, out: Path) -> None:
    """`churn features build` then `churn score` on the same log, date and champion."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CHURN_HOME": str(setup.root / "cli_home"),
        "CHURN_REGISTRY__URI": str(setup.root / "registry"),
        "CHURN_FEATURES__BIN_DAYS": str(FEATURES.bin_days),
        "CHURN_FEATURES__SEQ_LEN": str(FEATURES.seq_len),
    }
    repo = setup.root / "cli_repo"
    for args in (
        [
            "features",
            "build",
            "--transactions",
            str(setup.data / "transactions.parquet"),
            "--customers",
            str(setup.data / "customers.parquet"),
            "--cutoffs",
            setup.date,
            "--repo",
            str(repo),
        ],
        ["score", "--at", setup.date, "--repo", str(repo), "--out", str(out)],
    ):
        result = subprocess.run(
            [*CHURN, *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def first_run(setup: Setup) -> Path:
    run_scoring(setup, "first")
    return Path(scores_uri(str(setup.root / "registry"), setup.date))


def test_the_pipeline_writes_the_scores_under_the_registrys_dated_prefix(
    setup: Setup, first_run: Path
) -> None:
    assert first_run == setup.root / "registry" / "scores" / f"date={setup.date}" / (
        "scores.parquet"
    )
    scores = pd.read_parquet(first_run)
    assert len(scores) > 50
    assert set(scores["model_version"]) == {setup.version}
    assert (scores["cutoff"] == pd.Timestamp(setup.date, tz="UTC")).all()
    assert pq.read_schema(first_run).metadata[RUN_KEY.encode()]
    # Nothing but the file itself in its folder: no temporary left behind.
    assert [p.name for p in first_run.parent.iterdir()] == ["scores.parquet"]


def test_the_pipelines_rows_equal_churn_score_on_the_same_inputs(
    setup: Setup, first_run: Path
) -> None:
    out = setup.root / "cli_scores.parquet"
    churn_score(setup, out)
    expected = pd.read_parquet(out)[COMPARED]
    got = pd.read_parquet(first_run)[COMPARED]
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-6, rtol=0)


def test_a_second_run_of_the_same_date_does_not_replace_the_first_runs_file(
    setup: Setup, first_run: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = first_run.read_bytes()
    with pytest.raises(RuntimeError, match="score"):
        run_scoring(setup, "second")
    assert "already holds the scores of run" in capfd.readouterr().out
    assert first_run.read_bytes() == before


def test_overwrite_replaces_another_runs_file_on_purpose(setup: Setup, first_run: Path) -> None:
    before = pq.read_schema(first_run).metadata[RUN_KEY.encode()]
    run_scoring(setup, "overwrite", overwrite=True)
    after = pq.read_schema(first_run).metadata[RUN_KEY.encode()]
    assert after != before
    assert len(pd.read_parquet(first_run)) > 50

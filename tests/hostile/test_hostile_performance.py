"""`churn monitor performance` on bad input: each case is one line on stderr, exit 2, and
nothing triggered; never a traceback or a silently dropped row.

One module-wide world: a small synthetic log, its feature repository, a champion in a folder
registry, and real batch scores (``churn.release.batch_score``, the code of `churn score`) at
a cutoff whose horizon has passed and at one whose horizon has not.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.features.build import build_features
from churn.model.train import train
from churn.release.batch_score import batch_score
from churn.release.registry import LocalRegistry
from churn.settings import FeatureConfig, ModelConfig, TrainConfig
from monitoring.trigger import TRIGGERS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHURN = [sys.executable, "-c", "from churn.cli import run; run()"]
START = pd.Timestamp("2022-01-01", tz="UTC")


def day(k: int) -> str:
    return (START + pd.Timedelta(days=k)).date().isoformat()


MATURED, PENDING = day(240), day(340)


@dataclass
class World:
    root: Path
    version: str

    def part(self, at: str, scores: str = "scores") -> Path:
        return self.root / scores / f"date={at}" / "part-0.parquet"

    def monitor(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CHURN, "monitor", "performance", "--repo", str(self.root / "repo"), *args],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "CHURN_HOME": str(self.root / "home"),
                "CHURN_REGISTRY__URI": str(self.root / "registry"),
                "CHURN_MONITOR__SCORES_URI": str(self.root / "scores"),
                "CHURN_MONITOR__PERFORMANCE_MIN_ROWS": "50",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=300,
        )

    def triggers(self) -> dict:
        return LocalRegistry(self.root / "registry", "churn").read_records(TRIGGERS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("performance")
    train_cutoffs = [day(k) for k in (70, 84, 98, 112, 126, 160)]
    generate(make_spec(600, 360, seed=5, horizon_days=30, cutoffs=train_cutoffs), root / "synth")
    build_features(
        root / "synth" / "transactions.parquet",
        root / "repo",
        FeatureConfig(bin_days=7, seq_len=8, horizon_days=30),
        customers=root / "synth" / "customers.parquet",
        cutoffs=[*train_cutoffs, MATURED, PENDING],
    )
    build_dataset(root / "repo", root / "dataset", horizon_days=30, cutoffs=train_cutoffs)
    train(
        root / "dataset",
        root / "model",
        ModelConfig(hidden=4, dilations=[1], windows=[1, 4]),
        TrainConfig(epochs=1, batch_size=64, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    version = registry.publish(root / "model", {"roc_auc": 0.7}).version
    registry.promote(version)
    version_dir = registry.download(version, root / "version")
    result = World(root, version)
    for at in (MATURED, PENDING):
        batch_score(root / "repo", version_dir, version, at, result.part(at))
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_scores_file_without_a_column_is_one_line_naming_the_file_and_the_column(
    world: World,
) -> None:
    table = pq.read_table(world.part(MATURED)).drop_columns(["score"])
    broken = world.part(MATURED, "broken")
    broken.parent.mkdir(parents=True)
    pq.write_table(table, broken)
    err = one_line_error(world.monitor("--since", MATURED, "--scores", str(world.root / "broken")))
    assert f"scores file {broken} lacks columns ['score']" in err


def test_a_csv_score_outside_zero_to_one_names_the_file_and_the_row(world: World) -> None:
    frame = pd.read_parquet(world.part(MATURED))
    frame.loc[3, "score"] = 1.7
    bad = world.root / "bad_csv" / f"date={MATURED}" / "scores.csv"
    bad.parent.mkdir(parents=True)
    frame.to_csv(bad, index=False)
    err = one_line_error(world.monitor("--since", MATURED, "--scores", str(bad.parents[1])))
    assert f"scores file {bad}, row 4: score 1.7 is not a probability in [0, 1]" in err


def test_a_window_whose_scores_have_not_matured_is_one_line_saying_when_they_will(
    world: World,
) -> None:
    err = one_line_error(world.monitor("--since", PENDING))
    assert "has matured: the earliest, at " + PENDING in err
    assert f"needs the log until {day(370)}" in err


def test_a_window_without_scores_is_one_line_naming_the_window(world: World) -> None:
    err = one_line_error(world.monitor("--since", day(200), "--until", day(230)))
    assert f"has no scores of {world.version} with a cutoff from {day(200)}T00:00:00+00:00" in err


def test_an_unreachable_kfp_host_is_one_line_and_claims_nothing(world: World) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = world.monitor(
        "--since",
        MATURED,
        "--retrain",
        CHURN_MONITOR__KFP_HOST=f"http://127.0.0.1:{port}",
        CHURN_MONITOR__AUC_FLOOR="0.99",
    )
    err = one_line_error(result)
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in err
    assert "decision: degraded" in result.stdout
    assert world.triggers() == {}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--since", "last tuesday"), {}, "--since 'last tuesday' is not an ISO 8601 time"),
        (("--since", MATURED, "--until", day(200)), {}, "the window is empty"),
        (("--since", MATURED), {"CHURN_MONITOR__AUC_FLOOR": "1.5"}, "auc_floor"),
        (("--since", MATURED, "--model", "v-none"), {}, "cannot label the scores of v-none"),
    ],
)
def test_bad_options_and_settings_are_one_line(
    world: World, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    assert message in one_line_error(world.monitor(*args, **env))


def test_decisions_that_no_single_threshold_explains_are_refused(world: World) -> None:
    frame = pd.read_parquet(world.part(MATURED))
    top = frame["score"].idxmax()
    frame.loc[top, "decision"] = False
    odd = world.part(MATURED, "odd")
    odd.parent.mkdir(parents=True)
    frame.to_parquet(odd, index=False)
    err = one_line_error(world.monitor("--since", MATURED, "--scores", str(world.root / "odd")))
    assert "the stored decisions do not follow one threshold" in err


def test_a_partition_scored_twice_counts_each_customer_once(world: World) -> None:
    twice = world.root / "twice" / f"date={MATURED}"
    shutil.copytree(world.part(MATURED).parent, twice)
    shutil.copy(world.part(MATURED), twice / "part-1.parquet")
    result = world.monitor("--since", MATURED, "--until", day(241), "--scores", str(twice.parent))
    assert result.returncode == 0, result.stderr
    once = world.monitor("--since", MATURED, "--until", day(241))
    labelled = once.stdout.split(" labelled")[0].split("(")[1]
    assert f"({labelled} labelled" in result.stdout


def test_a_window_of_rows_without_a_score_is_one_line_not_a_claim_about_maturity(
    world: World,
) -> None:
    frame = pd.read_parquet(world.part(MATURED))
    frame["score"], frame["decision"], frame["status"] = None, None, "no_history"
    empty = world.part(MATURED, "unscored")
    empty.parent.mkdir(parents=True)
    frame.to_parquet(empty, index=False)
    err = one_line_error(
        world.monitor("--since", MATURED, "--scores", str(world.root / "unscored"))
    )
    assert f"none of the {len(frame)} rows of {world.version}" in err and "has a score" in err

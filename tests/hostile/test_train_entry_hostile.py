"""Malformed input to the torchrun entry point: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def entry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "churn.model.train_entry", *args],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--train-settings", "{epochs: 2", "--train-settings is not JSON"),
        ("--model-settings", "[1, 2]", "--model-settings must be a JSON object"),
        ("--train-settings", '{"epochs": 0}', "train.epochs"),
        ("--model-settings", '{"hidden": 8.5}', "model.hidden"),
    ],
)
def test_bad_settings_are_one_line_naming_the_option(
    tmp_path: Path,
    make_training_set: Callable[..., Path],
    option: str,
    value: str,
    message: str,
) -> None:
    dataset = make_training_set(tmp_path, n=300)
    done = entry("--dataset", str(dataset), "--out", str(tmp_path / "model"), option, value)

    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "model").exists()


def test_a_missing_training_set_is_one_line_naming_it(tmp_path: Path) -> None:
    done = entry("--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "model"))

    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nowhere" in line, line
    assert not (tmp_path / "model").exists()


def test_a_local_run_asking_for_several_training_nodes_is_refused_before_any_step(
    tmp_path: Path,
) -> None:
    from churn.errors import PipelineError
    from churn.settings import Settings
    from pipelines.local import run_local

    with pytest.raises(PipelineError, match=r"train_nodes=2 submits a Kubeflow Trainer TrainJob"):
        run_local(Settings(home=tmp_path), {"train_nodes": 2})
    assert not (tmp_path / "pipeline_root").exists()

"""Training under torchrun, as a Kubeflow Trainer TrainJob runs it, matches one process.

Two CPU processes with gloo (``torch.distributed.run --standalone --nproc-per-node 2``) run
``python -m churn.model.train_entry`` unchanged. What "matches" can mean follows from how
``churn.model.train`` shards: every rank draws the same permutation and takes every
``world``-th row of it, so with ``batch_size`` B per rank one step of two ranks sees exactly the
rows one process sees with batch 2B, and DDP averages the two half-batch mean losses into the
full-batch mean. With dropout off (per-rank dropout masks differ by design) and a training split
that divides into whole global batches, the two runs take the same steps: measured on this
planted set, the largest weight difference is 1.2e-7 (all-reduce summation order) and the
validation AUC is identical. With dropout on, the runs only agree statistically.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"epochs": 3, "patience": 0, "num_threads": 1, "seed": 0}
MODEL = json.dumps({"dropout": 0.0})


def run_training(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


def entry(dataset: Path, out: Path, batch_size: int) -> list[str]:
    return [
        "-m",
        "churn.model.train_entry",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--model-settings",
        MODEL,
        "--train-settings",
        json.dumps({**TRAIN, "batch_size": batch_size}),
    ]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    saved = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)
    state = saved.get("state_dict", saved)
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def test_two_gloo_processes_under_torchrun_train_the_same_model_as_one(
    tmp_path: Path, make_training_set: Callable[..., Path]
) -> None:
    # 2000 rows: 1200 train rows, 12 global batches of 100.
    dataset = make_training_set(tmp_path, n=2000)
    one = run_training(entry(dataset, tmp_path / "one", 100), tmp_path)
    two = run_training(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *entry(dataset, tmp_path / "two", 50),
        ],
        tmp_path,
    )

    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["best_val_auc"] == pytest.approx(one["best_val_auc"], abs=1e-6)
    assert two["threshold"] == pytest.approx(one["threshold"], abs=1e-5)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert w1.keys() == w2.keys() and w1
    worst = max((w1[k].float() - w2[k].float()).abs().max().item() for k in w1)
    assert worst < 1e-5, f"largest weight difference {worst}"


def test_the_entry_point_fetches_the_training_set_from_s3_and_publishes_the_model(
    tmp_path: Path, make_training_set: Callable[..., Path], s3_endpoint: str, s3_bucket: str
) -> None:
    from churn.io.object_store import fetch, upload_folder

    dataset = make_training_set(tmp_path, n=600)
    upload_folder(dataset, f"s3://{s3_bucket}/run/training_set", s3_endpoint)
    out_uri = f"s3://{s3_bucket}/run/model"
    summary = run_training(
        [
            "-m",
            "churn.model.train_entry",
            "--dataset",
            f"s3://{s3_bucket}/run/training_set",
            "--out",
            out_uri,
            "--endpoint-url",
            s3_endpoint,
            "--train-settings",
            json.dumps({**TRAIN, "epochs": 1}),
        ],
        tmp_path,
    )

    assert summary["model_dir"] == out_uri
    back = fetch(out_uri, tmp_path / "back", s3_endpoint)
    assert sorted(p.name for p in back.iterdir()) == ["model.json", "model.pt"]
    recorded = json.loads((back / "model.json").read_text())
    assert f"s3://{s3_bucket}/run/training_set" in json.dumps(recorded)

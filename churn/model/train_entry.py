"""One training process under torchrun: ``python -m churn.model.train_entry``.

A Kubeflow Trainer ``TrainJob`` on the ``torch-distributed`` runtime starts this module on every
node through torchrun, which sets ``RANK``, ``WORLD_SIZE`` and the rendezvous variables. The
module joins the process group (NCCL on GPUs, gloo on CPUs) and calls
:func:`churn.model.train.train` unchanged. The nodes share no disk with the pipeline step that
submitted them, so ``--dataset`` and ``--out`` may be ``s3://`` URIs: every node fetches the
training set, and rank 0 uploads the model folder when training is done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from churn.errors import ChurnError
from churn.io.object_store import fetch, is_s3_uri, upload_folder
from churn.model.train import train
from churn.settings import ModelConfig, TrainConfig, parse_section

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of one training process."""
    parser = argparse.ArgumentParser(prog="python -m churn.model.train_entry")
    parser.add_argument("--dataset", required=True, help="Training set folder or s3:// prefix.")
    parser.add_argument("--out", required=True, help="Model folder or s3:// prefix to write.")
    parser.add_argument("--endpoint-url", default="", help="S3 endpoint; '' for AWS.")
    parser.add_argument("--model-settings", default="{}", help="ModelConfig fields as JSON.")
    parser.add_argument("--train-settings", default="{}", help="TrainConfig fields as JSON.")
    parser.add_argument("--threshold-metric", default="f1", help="f1 or youden.")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Trains once in this process (one rank when torchrun started several).

    Args:
        args: The parsed command line.

    Returns:
        The training summary (see :func:`churn.model.train.train`).

    Raises:
        ChurnError: Bad settings, a bad training set, or S3 refused a read or write.
    """
    model_cfg = parse_section(ModelConfig, _json_object(args.model_settings, "model"), "model")
    train_cfg = parse_section(TrainConfig, _json_object(args.train_settings, "train"), "train")
    with tempfile.TemporaryDirectory(prefix="churn-train-") as scratch:
        dataset = Path(args.dataset)
        if is_s3_uri(args.dataset):
            dataset = fetch(args.dataset, Path(scratch) / "in", args.endpoint_url)
        out = Path(scratch) / "model" if is_s3_uri(args.out) else Path(args.out)
        summary = train(
            dataset,
            out,
            model_cfg,
            train_cfg,
            args.threshold_metric,
            dataset_uri=args.dataset if is_s3_uri(args.dataset) else None,
        )
        if is_s3_uri(args.out) and _rank() == 0:
            upload_folder(out, args.out, args.endpoint_url)
            summary["model_dir"] = args.out
    return summary


def _json_object(text: str, section: str) -> dict:
    """A ``--<section>-settings`` value: a JSON object, or a one-line error naming it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChurnError(f"--{section}-settings is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ChurnError(f"--{section}-settings must be a JSON object, got {text!r}")
    return value


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def main(argv: list[str] | None = None) -> int:
    """Joins the process group when torchrun started several processes, then trains.

    Returns:
        0 on success, 2 on a :class:`ChurnError` or ``OSError`` (one line on stderr).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank = _rank()
    try:
        summary = run(args)
    except (ChurnError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

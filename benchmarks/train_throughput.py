"""Training throughput of ``churn.model.train`` against a bare loop on in-memory tensors.

The bare loop (forward, backward and optimizer step of the same model over batches that are
already sliced and on the device) is the limit the training loop can reach; the ratio shows
what the input pipeline, scheduler and bookkeeping cost. Goal: ratio >= 0.8.

Usage: ``python benchmarks/train_throughput.py [--rows 50000] [--rounds 4] [--steps 20]``
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from churn.dataset.training_set import Split, TrainingSet, normalisation_stats, save_training_set
from churn.model.network import build_model
from churn.model.train import (
    resolve_device,
    resolve_pos_weight,
    seed_everything,
    train,
    train_epoch,
)
from churn.settings import ModelConfig, TrainConfig

CHANNELS = ["n_txn", "spend", "quantity"]
NUMERIC = ["tenure_days", "recency_days", "frequency", "monetary"]


def synthetic_training_set(rows: int, seq_len: int, seed: int = 0) -> TrainingSet:
    """A random training set (80/10/10) with a weak planted signal, so training is realistic."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    rate = rng.lognormal(0.0, 0.7, size=(rows, 1, 1)) * np.where(y[:, None, None] == 1, 0.7, 1.0)
    n_txn = rng.poisson(np.broadcast_to(rate, (rows, 1, seq_len))).astype(np.float32)
    seq = np.concatenate([n_txn, n_txn * rng.gamma(2.0, 15.0, n_txn.shape), 1.5 * n_txn], axis=1)
    num = rng.normal(50.0, 30.0, size=(rows, len(NUMERIC))).astype(np.float32)
    cat = rng.integers(0, 4, size=(rows, 1))
    cuts = [0, int(0.8 * rows), int(0.9 * rows), rows]
    splits = {
        name: Split(
            seq=seq[lo:hi].astype(np.float32),
            num=num[lo:hi],
            cat=cat[lo:hi],
            y=y[lo:hi],
            customer_id=np.arange(lo, hi).astype(str),
            cutoff=np.zeros(hi - lo, dtype=np.int64),
        )
        for name, lo, hi in zip(("train", "val", "test"), cuts[:-1], cuts[1:], strict=True)
    }
    meta = {
        "format_version": 1,
        "channels": CHANNELS,
        "seq_len": seq_len,
        "bin_days": 7,
        "horizon_days": 90,
        "numeric_features": NUMERIC,
        "categorical_features": {"segment": ["<unk>", "a", "b", "c"]},
        "seq_transform": "log1p",
        "num_transform": "signed_log1p",
        "norm": normalisation_stats(splits["train"]),
        "splits": {name: {"rows": len(s)} for name, s in splits.items()},
    }
    return TrainingSet(meta=meta, splits=splits)


def measure(
    ts: TrainingSet, model_cfg: ModelConfig, train_cfg: TrainConfig, rounds: int, steps: int
) -> tuple[float, float]:
    """Best samples/s of the bare loop and of ``churn.model.train.train_epoch``, measured in turns.

    Each round times ``steps`` batches of the bare loop, then ``steps`` batches of the training
    loop on a fresh random permutation; alternating keeps both exposed to the same background
    load on a shared machine, and the best round of each is the least disturbed one.
    """
    device = resolve_device(train_cfg.device)
    split = ts.splits["train"]
    tensors = tuple(
        torch.from_numpy(a).to(device) for a in (split.seq, split.num, split.cat, split.y)
    )
    bs = train_cfg.batch_size
    rows = min(steps * bs, len(split))
    use_amp = device.type == "cuda"

    seed_everything(train_cfg.seed)
    bare_model = build_model(ts.input_spec, model_cfg.model_dump()).to(device).train()
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=train_cfg.lr)
    bare_loss = nn.BCEWithLogitsLoss()
    batches = [tuple(t[i : i + bs] for t in tensors) for i in range(0, rows, bs)]

    def bare_pass() -> None:
        for seq, num, cat, y in batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = bare_model(seq, num, cat)
            loss = bare_loss(logits.float(), y)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()

    seed_everything(train_cfg.seed)
    model = build_model(ts.input_spec, model_cfg.model_dump()).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train_cfg.lr, total_steps=(rounds + 1) * len(batches)
    )
    pos_weight = torch.tensor(resolve_pos_weight("auto", split.y), device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    generator = torch.Generator().manual_seed(train_cfg.seed)

    def loop_pass() -> None:
        order = torch.randperm(len(split), generator=generator)[:rows].to(device)
        train_epoch(model, optimizer, scheduler, loss_fn, tensors, order, bs, use_amp).item()

    bare_pass()
    loop_pass()
    bare_rates: list[float] = []
    loop_rates: list[float] = []
    for _ in range(rounds):
        for run, rates in ((bare_pass, bare_rates), (loop_pass, loop_rates)):
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            rates.append(rows / (time.perf_counter() - t0))
    return max(bare_rates), max(loop_rates)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows over all splits")
    parser.add_argument("--seq-len", type=int, default=52, help="sequence length L")
    parser.add_argument("--batch-size", type=int, default=512, help="samples per step")
    parser.add_argument("--rounds", type=int, default=4, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=20, help="batches per timing round")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    model_cfg = ModelConfig()
    train_cfg = TrainConfig(epochs=1, batch_size=args.batch_size)
    device = resolve_device(train_cfg.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    ts = synthetic_training_set(args.rows, args.seq_len)
    print(
        f"data: {args.rows} rows ({len(ts.splits['train'])} train), C={len(CHANNELS)}, "
        f"L={args.seq_len}, batch {args.batch_size}"
    )
    bare, loop = measure(ts, model_cfg, train_cfg, args.rounds, args.steps)
    print(f"bare loop (limit):        {bare:9.0f} samples/s")
    print(f"churn.model.train epoch loop:   {loop:9.0f} samples/s")
    print(f"ratio:                    {loop / bare:9.2f}   (goal >= 0.80)")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = save_training_set(ts, Path(tmp) / "dataset")
        summary = train(dataset, Path(tmp) / "model", model_cfg, train_cfg)
    print(
        f"train() end to end, 1 epoch: {summary['samples_per_sec']:.0f} samples/s in the "
        f"training phase, {summary['seconds']:.1f} s in all (val AUC "
        f"{summary['best_val_auc']:.3f})"
    )


if __name__ == "__main__":
    main()

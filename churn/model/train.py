"""Training of the churn CNN: one plain function used by the CLI and the Kubeflow component.

The whole training split lives in memory as tensors (on the GPU when there is one). Each epoch
draws one random permutation, gathers the rows once in that order, and feeds contiguous slices
to the model, so there is no per-sample Dataset or DataLoader in the hot loop.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from churn.dataset.training_set import Split, load_training_set
from churn.errors import DatasetError, ModelError
from churn.io.atomic import check_replaceable
from churn.model.calibration import fit_platt
from churn.model.metrics import (
    THRESHOLD_METRICS,
    binary_metrics,
    choose_threshold,
    log_loss,
    roc_auc,
)
from churn.model.network import (
    PLATT,
    UNCALIBRATED,
    ChurnCNN,
    build_model,
    calibrate,
    read_calibration,
    save_model,
)
from churn.settings import ModelConfig, TrainConfig

log = logging.getLogger(__name__)

_EVAL_BATCH = 8192


def train(
    dataset_dir: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    threshold_metric: str = "f1",
    dataset_uri: str | None = None,
) -> dict:
    """Trains the CNN on a training set folder and writes a model folder.

    Only the ``train`` and ``val`` splits are read; the test split is never opened, so it stays
    untouched for evaluation. Platt scaling is fitted on the validation logits of the best
    epoch (see ``churn.model.calibration``), and the decision threshold is then chosen on the
    calibrated validation probabilities, the scale serving answers on.

    Class imbalance is handled in the loss: ``BCEWithLogitsLoss(pos_weight=w)`` multiplies the
    loss of every positive (churned) row by ``w``. ``train_cfg.pos_weight`` sets ``w``:
    ``"auto"`` uses negatives / positives in the training split (so both classes weigh the same
    in total), a number string such as ``"2.5"`` uses that number, and ``"none"`` disables it.

    With ``model_cfg.wide``, the wide term is first fitted as a logistic regression and the
    head's output zeroed (see :func:`fit_wide`); that state counts as epoch 0, so training
    keeps it unless an epoch beats its validation ROC-AUC. A split smaller than
    ``batch_size * min_steps_per_epoch`` rows per process is cut into smaller batches.

    Optimisation is AdamW under a one-cycle learning-rate schedule with early stopping on the
    validation ROC-AUC: training stops after ``train_cfg.patience`` epochs without improvement (0:
    never early) and the best epoch's weights are kept. The device is CUDA when available unless
    ``train_cfg.device`` names one; CUDA runs under bf16 autocast. With the same seed a CPU run
    is reproducible (identical weights and metrics at the same thread count).

    When ``torch.distributed`` is initialised (torchrun, a Kubeflow Trainer TrainJob), the model is
    wrapped in DistributedDataParallel, each rank trains on its shard of every epoch's
    permutation, validation is sharded and gathered so every rank takes the same early-stopping
    decision, and only rank 0 writes the model folder.

    Args:
        dataset_dir: Training set folder (see ``churn.dataset.training_set``).
        out_dir: Model folder to write (replaced atomically if it exists).
        model_cfg: Architecture.
        train_cfg: Optimisation settings.
        threshold_metric: ``"f1"`` picks the threshold with the highest F1 on validation;
            ``"youden"`` the one with the highest TPR - FPR.
        dataset_uri: Where later readers (the drift monitor, an audit) find the training set,
            recorded in ``model.json``: the artifact's ``s3://`` URI in a pipeline, not the
            pod-local path. Defaults to the folder's absolute path.

    Returns:
        A summary: ``model_dir``, ``device``, ``world_size``, ``epochs_run``, ``best_epoch``,
        ``best_val_auc``, ``threshold``, ``threshold_metric``, ``calibration`` (as written to
        ``model.json``), ``val_precision``,
        ``val_recall``, ``val_f1`` (at the threshold), ``pos_weight``, ``batch_size`` (per
        process, after the step floor), ``wide`` (:func:`fit_wide`'s record), ``train_rows``,
        ``val_rows``, ``samples_per_sec`` and ``seconds``.

    Raises:
        DatasetError: The folder is missing or malformed, holds NaN values, or a split has a
            single class.
        ModelError: Training diverged (non-finite outputs).
        OutputError: ``out_dir`` cannot be written, or is a folder of another kind (checked
            before training).
        ValueError: A setting is out of range (names the setting).
    """
    started = time.perf_counter()
    if threshold_metric not in THRESHOLD_METRICS:
        raise ValueError(
            f"threshold metric must be one of {THRESHOLD_METRICS}, got {threshold_metric!r}"
        )
    _check_train_config(train_cfg)
    check_replaceable(out_dir, "model.json")
    dataset_dir = Path(dataset_dir)
    ts = load_training_set(dataset_dir, splits=("train", "val"))
    train_split, val_split = ts.splits["train"], ts.splits["val"]
    if len(np.unique(val_split.y)) < 2:
        raise DatasetError(
            f"{dataset_dir / 'val.npz'}: the validation split needs both classes to compute "
            f"ROC-AUC and a threshold ({val_split.positives} positives of {len(val_split)})"
        )
    pos_weight = resolve_pos_weight(train_cfg.pos_weight, train_split.y)

    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = resolve_device(train_cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(resolve_threads(train_cfg.num_threads))
    seed_everything(train_cfg.seed)
    architecture = model_cfg.model_dump()
    model = build_model(ts.input_spec, architecture).to(device)
    train_t = _to_tensors(train_split, device)
    val_t = _to_tensors(val_split, device)
    loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight, device=device)
    )
    # Before the DDP wrapper: every rank fits the same wide term on the same full split.
    wide = fit_wide(model, train_t, val_t, loss_fn, train_cfg.wide_c_grid)
    # Identical initial weights on every rank, different dropout masks afterwards.
    torch.manual_seed(train_cfg.seed + rank)
    net: nn.Module = model
    if distributed:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    n_train = len(train_split)
    per_rank = math.ceil(n_train / world)
    batch_size = min(train_cfg.batch_size, math.ceil(per_rank / train_cfg.min_steps_per_epoch))
    steps_per_epoch = math.ceil(per_rank / batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train_cfg.lr, total_steps=train_cfg.epochs * steps_per_epoch
    )
    use_amp = device.type == "cuda"
    # The permutation comes from its own CPU generator so every rank draws the same one.
    perm_gen = torch.Generator().manual_seed(train_cfg.seed)

    if rank == 0:
        log.info(
            "training on %s (world size %d): %d train rows (%d positive), %d val rows, "
            "pos_weight %s, %d steps of %d rows per epoch",
            device,
            world,
            n_train,
            train_split.positives,
            len(val_split),
            "none" if pos_weight is None else f"{pos_weight:.3f}",
            steps_per_epoch,
            batch_size,
        )
    history: list[dict] = []
    best_auc, best_epoch, best_state, stale = -math.inf, 0, None, 0
    if wide is not None:
        # Epoch 0 is the wide term alone: the network keeps it unless an epoch beats it.
        best_auc, best_state = wide["val_auc"], copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, train_cfg.epochs + 1), desc="train", unit="epoch", disable=rank != 0)
    for epoch in bar:
        t0 = time.perf_counter()
        shard = _shard(torch.randperm(n_train, generator=perm_gen), rank, world).to(device)
        loss_sum = train_epoch(
            net, optimizer, scheduler, loss_fn, train_t, shard, batch_size, use_amp
        )
        if distributed:
            dist.all_reduce(loss_sum)
        train_loss = loss_sum.item() / (len(shard) * world)
        seconds = time.perf_counter() - t0
        logits = _predict_logits(model, val_t, rank, world)
        if not np.isfinite(logits).all() or not math.isfinite(train_loss):
            raise ModelError(
                f"training diverged at epoch {epoch} (non-finite loss or outputs); "
                f"lower train.lr (now {train_cfg.lr})"
            )
        val_auc = roc_auc(val_split.y, logits)
        val_loss = float(loss_fn(torch.from_numpy(logits).to(device), val_t[3]).item())
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auc": val_auc,
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "samples_per_sec": len(shard) * world / seconds,
        }
        history.append(record)
        bar.set_postfix(loss=f"{train_loss:.4f}", val_auc=f"{val_auc:.4f}")
        if rank == 0:
            log.info(
                "epoch %d/%d: train_loss %.4f val_loss %.4f val_auc %.4f lr %.2e (%.0f samples/s)",
                epoch,
                train_cfg.epochs,
                train_loss,
                val_loss,
                val_auc,
                record["lr"],
                record["samples_per_sec"],
            )
        if val_auc > best_auc:
            best_auc, best_epoch, stale = val_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if train_cfg.patience and stale >= train_cfg.patience:
                if rank == 0:
                    log.info("early stop: no better val AUC for %d epochs", stale)
                break
    bar.close()
    assert best_state is not None  # the wide fit or the first epoch always beats -inf
    model.load_state_dict(best_state)

    # The threshold is chosen on full-precision calibrated probabilities, as serving computes
    # them, so it sits on the scale clients see.
    val_logits = _predict_logits(model, val_t, rank, world)
    calibration = _calibration(val_logits, val_split.y)
    model.calibration = read_calibration(calibration)
    val_prob = calibrate(torch.from_numpy(val_logits), model.calibration).numpy()
    threshold = choose_threshold(val_split.y, val_prob, threshold_metric)
    val_metrics = binary_metrics(val_split.y, val_prob, threshold)
    train_seconds = sum(h["seconds"] for h in history)
    samples_per_sec = sum(h["samples_per_sec"] * h["seconds"] for h in history) / train_seconds
    summary = {
        "model_dir": str(out_dir),
        "device": str(device),
        "world_size": world,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_val_auc": best_auc,
        "threshold": threshold,
        "threshold_metric": threshold_metric,
        "calibration": calibration,
        **{f"val_{k}": val_metrics[k] for k in ("precision", "recall", "f1")},
        "pos_weight": pos_weight,
        "batch_size": batch_size,
        "wide": wide,
        "train_rows": n_train,
        "val_rows": len(val_split),
        "samples_per_sec": samples_per_sec,
        "seconds": time.perf_counter() - started,
    }
    if rank == 0:
        extra = {
            "threshold_metric": threshold_metric,
            "threshold_rule": "churn when probability >= threshold",
            "val_metrics": val_metrics,
            "history": {
                "epochs": history,
                "best_epoch": best_epoch,
                "best_val_auc": best_auc,
                "samples_per_sec": samples_per_sec,
                "device": str(device),
                "world_size": world,
            },
            "training": {
                "dataset": dataset_uri or str(Path(dataset_dir).resolve()),
                "pos_weight": pos_weight,
                "batch_size": batch_size,
                "wide": wide,
                "config": train_cfg.model_dump(),
            },
        }
        save_model(
            model, ts.input_spec, architecture, threshold, out_dir, extra, calibration=calibration
        )
        log.info(
            "wrote %s: best epoch %d, val AUC %.4f, threshold %.4f (%s)",
            out_dir,
            best_epoch,
            best_auc,
            threshold,
            threshold_metric,
        )
    if distributed:
        # Other ranks return only once the model folder exists.
        dist.barrier()
    return summary


def fit_wide(
    model: ChurnCNN,
    train_t: tuple[torch.Tensor, ...],
    val_t: tuple[torch.Tensor, ...],
    loss_fn: nn.Module,
    c_grid: list[float],
) -> dict | None:
    """Fits a wide model's linear term as a logistic regression and zeroes the head's output.

    The network then starts at the logistic regression's logits and learns only what the
    sequences add. The wide inputs are standardised with the training split's statistics and
    the L2 strength ``1 / C`` is chosen on the validation ROC-AUC, as for the logistic
    baseline; each fit is L-BFGS on the full split (the objective is convex and small).

    Args:
        model: A freshly built model; it is changed in place.
        train_t: ``seq``, ``num``, ``cat`` and ``y`` of the training split, on the device.
        val_t: The same for the validation split.
        loss_fn: The training loss (with the positive-class weight).
        c_grid: Inverse L2 strengths to try.

    Returns:
        ``None`` for a model without the wide term, else ``c`` (the chosen one), ``val_auc``
        (of the wide term alone) and ``val_aucs`` (per ``c``).
    """
    if model.wide is None:
        return None
    seq, num, cat, y = train_t
    with torch.no_grad():
        static = model.static_features(seq.clamp(min=0), num)
        val_static = model.static_features(val_t[0].clamp(min=0), val_t[1])
        model.wide_mean.copy_(static.mean(dim=0, keepdim=True))
        std = static.std(dim=0, keepdim=True)
        # A constant column (a window longer than any history) must not divide by zero.
        model.wide_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
    weights, bias = model.wide_parameters()
    params = [*weights, bias]
    fits = []
    for c in c_grid:
        for p in params:
            nn.init.zeros_(p)
        _lbfgs(lambda: loss_fn(model.wide_logit(static, cat), y), weights, params, c, len(y))
        with torch.no_grad():
            val_logits = model.wide_logit(val_static, val_t[2]).float().cpu().numpy()
        state = [p.detach().clone() for p in params]
        fits.append((roc_auc(val_t[3].cpu().numpy(), val_logits), c, state))
    best = max(range(len(fits)), key=lambda i: fits[i][0])
    with torch.no_grad():
        for p, value in zip(params, fits[best][2], strict=True):
            p.copy_(value)
        out = model.head[-1]
        assert isinstance(out, nn.Linear)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    log.info("wide term: C %g, val AUC %.4f", fits[best][1], fits[best][0])
    return {
        "c": fits[best][1],
        "val_auc": fits[best][0],
        "val_aucs": {str(c): auc for auc, c, _ in fits},
    }


def _lbfgs(
    data_loss: Callable[[], torch.Tensor],
    weights: list[torch.Tensor],
    params: list[torch.Tensor],
    c: float,
    n: int,
) -> None:
    """Minimises ``data_loss + |weights|^2 / (2 C n)``: scikit-learn's L2 objective over n."""
    optimizer = torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        penalty = sum((w.float() ** 2).sum() for w in weights) / (2.0 * c * n)
        loss = data_loss().float() + penalty
        loss.backward()
        return loss

    optimizer.step(closure)


def _calibration(val_logits: np.ndarray, y: np.ndarray) -> dict:
    """Platt scaling fitted on the validation logits, with the log loss it moves."""
    logits = torch.from_numpy(val_logits)
    before = log_loss(y, calibrate(logits).numpy())
    slope, intercept = fit_platt(val_logits, y)
    if slope <= 0:
        log.warning(
            "no calibration: the validation logits do not rank churners higher "
            "(Platt slope %.4g), so the probabilities stay the raw sigmoid",
            slope,
        )
        return {"method": UNCALIBRATED, "fitted_slope": slope, "val_log_loss": before}
    after = log_loss(y, calibrate(logits, (slope, intercept)).numpy())
    log.info(
        "Platt scaling on validation: slope %.4f, intercept %.4f, log loss %.4f -> %.4f",
        slope,
        intercept,
        before,
        after,
    )
    return {
        "method": PLATT,
        "slope": slope,
        "intercept": intercept,
        "fitted_on": "val",
        "val_log_loss_before": before,
        "val_log_loss_after": after,
    }


def train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    order: torch.Tensor,
    batch_size: int,
    use_amp: bool,
) -> torch.Tensor:
    """Runs one epoch of :func:`train`'s loop over the rows ``order`` picks.

    The rows are gathered once in permuted order, so each batch is a contiguous view, and the
    loss is accumulated on the device so that no step waits for a host sync.

    Args:
        net: The model (or its DistributedDataParallel wrapper).
        optimizer: Optimizer of the model's parameters.
        scheduler: Learning-rate schedule, stepped after every batch.
        loss_fn: Loss on (logits, labels).
        tensors: ``seq``, ``num``, ``cat`` and ``y`` of the whole split, on the device.
        order: Row indices in visiting order, on the same device.
        batch_size: Rows per step.
        use_amp: Run the forward pass under bf16 autocast.

    Returns:
        The loss summed over rows, a 0-d tensor on the device.
    """
    seq, num, cat, y = (t.index_select(0, order) for t in tensors)
    net.train()
    n = len(order)
    loss_sum = torch.zeros((), device=seq.device)
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        with torch.autocast(device_type=seq.device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = net(seq[start:end], num[start:end], cat[start:end])
        loss = loss_fn(logits.float(), y[start:end])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * (end - start)
    return loss_sum


def _predict_logits(
    model: nn.Module, tensors: tuple[torch.Tensor, ...], rank: int, world: int
) -> np.ndarray:
    """Logits of every row; under DDP each rank scores a contiguous shard and all gather them.

    Always in full precision, even where training runs under bf16 autocast: bf16 logits collapse
    into ties that move the validation AUC picking the epoch, and serving computes in float32.
    """
    seq, num, cat, _ = tensors
    n = len(seq)
    bounds = [n * r // world for r in range(world + 1)]
    lo, hi = bounds[rank], bounds[rank + 1]
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(lo, hi, _EVAL_BATCH):
            end = min(start + _EVAL_BATCH, hi)
            parts.append(model(seq[start:end], num[start:end], cat[start:end]).float())
    local = torch.cat(parts) if parts else torch.zeros(0, device=seq.device)
    if world > 1:
        # all_gather needs equal sizes: pad every shard to the largest, then trim.
        size = max(bounds[r + 1] - bounds[r] for r in range(world))
        padded = torch.zeros(size, device=seq.device)
        padded[: len(local)] = local
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded)
        local = torch.cat([g[: bounds[r + 1] - bounds[r]] for r, g in enumerate(gathered)])
    return local.cpu().numpy()


def _shard(perm: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of a permutation; it wraps around so every rank gets as many rows."""
    if world == 1:
        return perm
    total = math.ceil(len(perm) / world) * world
    padded = torch.cat([perm, perm[: total - len(perm)]])
    return padded[rank::world]


def _to_tensors(split: Split, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The split's model inputs and labels as tensors on ``device``, moved there once."""
    return tuple(
        torch.from_numpy(np.ascontiguousarray(a)).to(device)
        for a in (split.seq, split.num, split.cat, split.y)
    )


def _check_train_config(cfg: TrainConfig) -> None:
    for name in ("epochs", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.patience < 0:
        raise ValueError(f"train.patience must be >= 0, got {cfg.patience}")
    if not cfg.lr > 0:
        raise ValueError(f"train.lr must be > 0, got {cfg.lr}")


def resolve_pos_weight(setting: str, y: np.ndarray) -> float | None:
    """Reads ``TrainConfig.pos_weight``.

    Args:
        setting: ``"auto"``, ``"none"`` or a positive number as a string.
        y: Training labels (0/1).

    Returns:
        The positive-class weight, or None when disabled.

    Raises:
        ValueError: The setting is none of the above.
    """
    text = str(setting).strip().lower()
    if text == "auto":
        positives = float(np.sum(y))
        return (len(y) - positives) / positives
    if text == "none":
        return None
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(
            f"train.pos_weight must be 'auto', 'none' or a positive number, got {setting!r}"
        )
    return weight


def resolve_threads(setting: int) -> int:
    """CPU threads for training: the setting, or with 0 half the usable cores (at least one).

    Half, because OpenMP threads that find their cores busy (a server, another pod on the
    node, the kfp.local parent) spin at every barrier: on 2 shared cores two threads trained
    7x slower than one.

    Args:
        setting: ``TrainConfig.num_threads``.

    Returns:
        The thread count.
    """
    if setting > 0:
        return setting
    return max(1, len(os.sched_getaffinity(0)) // 2)


def resolve_device(name: str) -> torch.device:
    """Turns ``TrainConfig.device`` into a device.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Under torchrun a bare CUDA choice means the process's LOCAL_RANK.

    Returns:
        The device.

    Raises:
        ValueError: The name is not a device, or CUDA is asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"train.device {name!r} is not a device name") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device is {name!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and torch's (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

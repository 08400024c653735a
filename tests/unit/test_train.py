"""Training of the CNN (churn.model.train) and the ``churn train`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

from churn.dataset.training_set import load_training_set
from churn.errors import DatasetError
from churn.model.metrics import choose_threshold, roc_auc
from churn.model.network import build_model, load_model, predict_proba
from churn.model.train import fit_wide, resolve_pos_weight, train
from churn.settings import ModelConfig, TrainConfig

TINY = ModelConfig(hidden=16, dilations=[1, 2, 4], embedding_dim=2, head_hidden=16)
FAST = TrainConfig(epochs=8, batch_size=128, lr=5e-3, patience=3, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def split_proba(model: torch.nn.Module, dataset: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    split = load_training_set(dataset, splits=(name,)).splits[name]
    tensors = (torch.from_numpy(a) for a in (split.seq, split.num, split.cat))
    return split.y, predict_proba(model, *tensors).numpy()


def test_learns_planted_pattern(planted_training_set: Path, tmp_path: Path) -> None:
    summary = train(planted_training_set, tmp_path / "model", TINY, FAST)

    assert summary["best_val_auc"] > 0.85
    model, meta = load_model(tmp_path / "model")
    y, p = split_proba(model, planted_training_set, "test")
    assert roc_auc(y, p) > 0.85
    history = meta["history"]
    assert len(history["epochs"]) == summary["epochs_run"]
    assert history["best_epoch"] == summary["best_epoch"]
    assert history["device"] == "cpu"
    assert history["samples_per_sec"] > 0
    assert {"train_loss", "val_loss", "val_auc", "lr"} <= set(history["epochs"][0])
    assert meta["threshold"] == summary["threshold"]
    assert 0.0 < summary["threshold"] < 1.0
    assert summary["pos_weight"] == pytest.approx(
        resolve_pos_weight(
            "auto", load_training_set(planted_training_set, ("train",)).splits["train"].y
        )
    )


def test_shuffled_labels_stay_near_chance(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, shuffle_labels=True)
    cfg = FAST.model_copy(update=dict(epochs=5, patience=1))
    summary = train(dataset, tmp_path / "model", TINY, cfg)
    assert summary["best_val_auc"] < 0.65

    # Patience 1 stops at the first epoch without a better val AUC and keeps the best weights.
    assert summary["epochs_run"] == min(cfg.epochs, summary["best_epoch"] + 1)
    model, _ = load_model(tmp_path / "model")
    y, p = split_proba(model, dataset, "val")
    assert roc_auc(y, p) == pytest.approx(summary["best_val_auc"], abs=1e-3)
    # Patience 0 never stops early: every epoch runs, and the best one is still kept.
    never = train(dataset, tmp_path / "all", TINY, cfg.model_copy(update=dict(patience=0)))
    assert never["epochs_run"] == cfg.epochs
    epochs = load_model(tmp_path / "all")[1]["history"]["epochs"]
    assert never["best_val_auc"] == max(h["val_auc"] for h in epochs)


def test_same_seed_gives_identical_model(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, n=1200)
    cfg = FAST.model_copy(update=dict(epochs=2))
    first = train(dataset, tmp_path / "a", TINY, cfg)
    second = train(dataset, tmp_path / "b", TINY, cfg)

    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    timing = {"model_dir", "seconds", "samples_per_sec"}
    assert {k: v for k, v in first.items() if k not in timing} == {
        k: v for k, v in second.items() if k not in timing
    }


def test_threshold_comes_from_validation_only(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, n=1200)
    # train() must never open the test split: without it training still works.
    (dataset / "test.npz").unlink()
    summary = train(dataset, tmp_path / "model", TINY, FAST.model_copy(update=dict(epochs=2)))

    model, meta = load_model(tmp_path / "model")
    y, p = split_proba(model, dataset, "val")
    assert meta["threshold"] == choose_threshold(y, p, "f1") == summary["threshold"]
    assert summary["val_f1"] == pytest.approx(meta["val_metrics"]["f1"])


def test_youden_threshold_is_stored(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, n=1200)
    cfg = FAST.model_copy(update=dict(epochs=1, pos_weight="none"))
    summary = train(dataset, tmp_path / "model", TINY, cfg, threshold_metric="youden")
    model, meta = load_model(tmp_path / "model")
    y, p = split_proba(model, dataset, "val")
    assert meta["threshold"] == choose_threshold(y, p, "youden") == summary["threshold"]
    assert meta["threshold_metric"] == "youden"
    assert summary["pos_weight"] is None


def test_resolve_pos_weight() -> None:
    y = np.array([1, 0, 0, 0], dtype=np.float32)
    assert resolve_pos_weight("auto", y) == 3.0
    assert resolve_pos_weight("2.5", y) == 2.5
    assert resolve_pos_weight("none", y) is None
    for bad in ("heavy", "-1", "0", "nan"):
        with pytest.raises(ValueError, match="pos_weight"):
            resolve_pos_weight(bad, y)


def rewrite(file: Path, **changes: np.ndarray) -> None:
    with np.load(file) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(file, **arrays)


def _wrong_shape(d: Path) -> None:
    with np.load(d / "train.npz") as z:
        rewrite(d / "train.npz", seq=z["seq"][:, :, :-1])


def _nan(d: Path) -> None:
    with np.load(d / "train.npz") as z:
        num = z["num"].copy()
    num[3, 1] = np.nan
    rewrite(d / "train.npz", num=num)


def _single_class(name: str):
    def change(d: Path) -> None:
        with np.load(d / f"{name}.npz") as z:
            rewrite(d / f"{name}.npz", y=np.zeros_like(z["y"]))

    return change


def _meta(**changes: object):
    """Edits fields of meta.json the way a hand edit would ("norm.seq_std" edits inside)."""

    def change(d: Path) -> None:
        meta = json.loads((d / "meta.json").read_text())
        for key, value in changes.items():
            outer, _, inner = key.partition("__")
            if inner:
                meta[outer][inner] = value
            else:
                meta[outer] = value
        (d / "meta.json").write_text(json.dumps(meta))

    return change


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_meta(categorical_features=["segment"]), r"'categorical_features' must map each"),
        (_meta(channels=3), r"meta\.json: 'channels' must be a list of names, got 3"),
        (_meta(norm__seq_std=[0.0, 1.0, 1.0]), r"norm\.seq_std must be positive"),
        (_meta(norm__seq_mean=[0.0]), r"meta\.json: norm\.seq_mean must hold 3 finite numbers"),
        (_meta(seq_len="16"), r"'seq_len' must be a positive integer"),
    ],
    ids=["cat-list", "channels-int", "zero-std", "short-mean", "seq-len-str"],
)
def test_a_hand_edited_meta_is_named(make_training_set, tmp_path: Path, damage, match) -> None:
    dataset = make_training_set(tmp_path, n=300)
    damage(dataset)
    with pytest.raises(DatasetError, match=match):
        train(dataset, tmp_path / "model", TINY, FAST)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: d.rename(d.with_name("moved")), "does not exist"),
        (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
        (lambda d: (d / "val.npz").unlink(), "val.npz is missing"),
        (_wrong_shape, "'seq' has shape"),
        (_nan, "NaN"),
        (_single_class("train"), "single class"),
        (_single_class("val"), "validation split needs both classes"),
    ],
    ids=["missing", "no-meta", "no-val", "wrong-shape", "nan", "single-class", "val-one-class"],
)
def test_bad_dataset_folder_raises_dataset_error(
    make_training_set, tmp_path: Path, damage, match: str
) -> None:
    dataset = make_training_set(tmp_path, n=300)
    damage(dataset)
    with pytest.raises(DatasetError, match=match):
        train(dataset, tmp_path / "model", TINY, FAST)
    assert not (tmp_path / "model").exists()


def test_bad_settings_raise_value_error(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, n=300)
    with pytest.raises(ValueError, match="threshold metric"):
        train(dataset, tmp_path / "model", TINY, FAST, threshold_metric="accuracy")
    with pytest.raises(ValueError, match="batch_size"):
        train(dataset, tmp_path / "model", TINY, FAST.model_copy(update=dict(batch_size=0)))
    with pytest.raises(ValueError, match="pos_weight"):
        train(dataset, tmp_path / "model", TINY, FAST.model_copy(update=dict(pos_weight="lots")))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(dataset, tmp_path / "model", TINY, FAST.model_copy(update=dict(device="cuda")))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda_and_serves_on_cpu(planted_training_set: Path, tmp_path: Path) -> None:
    cfg = FAST.model_copy(update=dict(device="auto"))
    summary = train(planted_training_set, tmp_path / "model", TINY, cfg)
    assert summary["device"].startswith("cuda")
    assert summary["best_val_auc"] > 0.85
    model, meta = load_model(tmp_path / "model")
    y, p = split_proba(model, planted_training_set, "val")
    # The threshold was chosen on fp32 GPU outputs; CPU serving must see nearly the same scores.
    assert roc_auc(y, p) == pytest.approx(meta["val_metrics"]["roc_auc"], abs=1e-3)


def _ddp_worker(rank: int, world: int, init_file: str, dataset: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = FAST.model_copy(update=dict(epochs=1))
        summary = train(dataset, out, TINY, cfg)
        assert summary["world_size"] == world
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_two_ranks_rank0_writes_model(make_training_set, tmp_path: Path) -> None:
    dataset = make_training_set(tmp_path, n=500)
    out = tmp_path / "models" / "model"
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "rendezvous"), str(dataset), str(out)),
        nprocs=2,
        join=True,
    )
    model, meta = load_model(out)
    assert meta["history"]["world_size"] == 2
    assert len(meta["history"]["epochs"]) == 1
    assert [p.name for p in out.parent.iterdir()] == ["model"]
    y, p = split_proba(model, dataset, "val")
    assert p.shape == y.shape


def test_cli_train(make_training_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn.cli import app

    dataset = make_training_set(tmp_path, n=600)
    monkeypatch.setenv("CHURN_MODEL__HIDDEN", "8")
    monkeypatch.setenv("CHURN_MODEL__DILATIONS", "1,2")
    runner = CliRunner()
    args = ["train", "--dataset", str(dataset), "--out", str(tmp_path / "model")]
    result = runner.invoke(app, [*args, "--epochs", "1", "--device", "cpu", "--seed", "3"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["epochs_run"] == 1
    _, meta = load_model(tmp_path / "model")
    assert meta["architecture"]["hidden"] == 8
    assert meta["training"]["config"]["seed"] == 3

    missing = runner.invoke(app, ["train", "--dataset", str(tmp_path / "x"), "--out", "y"])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    assert "--epochs" in runner.invoke(app, ["train", "--help"]).output


def test_the_wide_term_starts_the_network_at_a_logistic_regression(
    planted_training_set: Path, tmp_path: Path
) -> None:
    ts = load_training_set(planted_training_set, splits=("train", "val"))
    model = build_model(ts.input_spec, TINY.model_dump())
    tensors = [
        tuple(torch.from_numpy(a) for a in (s.seq, s.num, s.cat, s.y))
        for s in (ts.splits["train"], ts.splits["val"])
    ]
    wide = fit_wide(model, *tensors, torch.nn.BCEWithLogitsLoss(), [0.01, 1.0])

    assert wide is not None and wide["c"] in (0.01, 1.0)
    assert set(wide["val_aucs"]) == {"0.01", "1.0"}
    seq, num, cat, y = tensors[1]
    model.eval()
    with torch.no_grad():
        logits = model(seq, num, cat)
        # The head's output starts at zero: the network's logit is the wide term's alone.
        static = model.static_features(seq.clamp(min=0), num)
        torch.testing.assert_close(logits, model.wide_logit(static, cat))
    assert roc_auc(y.numpy(), logits.numpy()) == pytest.approx(wide["val_auc"])
    assert wide["val_auc"] > 0.8

    summary = train(planted_training_set, tmp_path / "model", TINY, FAST)
    assert summary["wide"]["c"] in FAST.wide_c_grid
    # Training keeps the wide state unless an epoch beats it on validation.
    assert summary["best_val_auc"] >= summary["wide"]["val_auc"]
    assert load_model(tmp_path / "model")[1]["training"]["wide"] == summary["wide"]


def test_a_small_training_split_is_cut_into_at_least_min_steps_per_epoch(
    planted_training_set: Path, tmp_path: Path
) -> None:
    one_epoch = FAST.model_copy(update=dict(epochs=1))
    summary = train(planted_training_set, tmp_path / "a", TINY, one_epoch)
    rows = summary["train_rows"]
    assert rows < FAST.batch_size * FAST.min_steps_per_epoch
    assert summary["batch_size"] == -(-rows // FAST.min_steps_per_epoch)
    whole = train(
        planted_training_set,
        tmp_path / "b",
        TINY,
        one_epoch.model_copy(update=dict(min_steps_per_epoch=1)),
    )
    assert whole["batch_size"] == FAST.batch_size

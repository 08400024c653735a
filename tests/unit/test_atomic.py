"""Atomic output folders: complete or untouched, never a stranger's folder replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import churn.io.atomic as atomic
from churn.errors import OutputError
from churn.io.atomic import check_replaceable, staging_dir
from churn.model.train import train
from churn.settings import ModelConfig, TrainConfig


def test_a_folder_of_another_kind_is_never_replaced(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    with (
        pytest.raises(OutputError, match=r"project is a non-empty folder without meta\.json"),
        staging_dir(project, marker="meta.json") as tmp,
    ):
        (tmp / "meta.json").write_text("{}")
    assert [p.name for p in project.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no staging left over


def test_an_earlier_output_or_an_empty_folder_is_replaced(tmp_path: Path) -> None:
    for name, files in (("earlier", {"meta.json": "{}", "old.npz": "x"}), ("empty", {})):
        dest = tmp_path / name
        dest.mkdir()
        for file, text in files.items():
            (dest / file).write_text(text)
        with staging_dir(dest, marker="meta.json") as tmp:
            (tmp / "meta.json").write_text('{"new": true}')
        assert [p.name for p in dest.iterdir()] == ["meta.json"]


def test_files_in_the_way_are_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile is a file, not a folder"):
        check_replaceable(tmp_path / "afile" / "model", None)
    with pytest.raises(OutputError, match=r"cannot write .*afile: it is a file"):
        check_replaceable(tmp_path / "afile", "model.json")


def test_a_failed_rename_puts_the_old_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two-rename fallback, used where the file system cannot exchange two folders.
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "meta.json").write_text("old")
    real_replace = os.replace
    calls = []

    def replace_failing_second(src: object, dst: object) -> None:
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder into place
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace_failing_second)
    with (
        pytest.raises(OSError, match="disk full"),
        staging_dir(dest, marker="meta.json") as tmp,
    ):
        (tmp / "meta.json").write_text("new")
    assert (dest / "meta.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_outputs_get_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with staging_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_train_refuses_a_foreign_output_folder_before_training(
    tmp_path: Path, planted_training_set: Path
) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"project is a non-empty folder without model\.json"):
        train(planted_training_set, out, ModelConfig(), TrainConfig(epochs=50, device="cpu"))
    assert (out / "notes.txt").read_text() == "mine"

"""``churn registry list``, ``champion`` and ``promote`` on the configured registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import RegistryError
from churn.release.registry import LocalRegistry


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalRegistry:
    # The CLI's callback reads the settings, environment included, on every invocation.
    monkeypatch.setenv("CHURN_REGISTRY__URI", str(tmp_path / "registry"))
    return LocalRegistry(tmp_path / "registry", "churn")


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_list_and_champion(registry: LocalRegistry, tmp_path: Path, tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(tmp_path / "m", 0)
    registry.publish(model, {"roc_auc": 0.81234, "passed": True}, version="v1")
    registry.publish(model, {"roc_auc": 0.85}, version="v2")
    (Path(registry.storage_uri("v2")).parent / "v3").mkdir()
    registry.promote("v1")

    code, out, _ = invoke("registry", "list")
    assert code == 0
    assert out.splitlines() == [
        "* v1  complete  roc_auc=0.8123",
        "  v2  complete  roc_auc=0.85",
        "  v3  INCOMPLETE  ",
    ]
    code, out, _ = invoke("registry", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["version"], r["champion"], r["complete"]) for r in rows] == [
        ("v1", True, True),
        ("v2", False, True),
        ("v3", False, False),
    ]
    code, out, _ = invoke("registry", "champion")
    assert code == 0
    assert out.splitlines()[:2] == ["churn v1", f"storageUri: {registry.storage_uri('v1')}"]
    code, out, _ = invoke("registry", "champion", "--json")
    assert json.loads(out)["metrics"] == {"passed": True, "roc_auc": 0.81234}


def test_champion_before_any_promotion_is_an_error(registry: LocalRegistry) -> None:
    code, _, exc = invoke("registry", "champion")
    assert code != 0 and isinstance(exc, RegistryError) and "no champion" in str(exc)


def test_promote_by_hand_with_and_without_an_expectation(
    registry: LocalRegistry, tmp_path: Path, tiny_model
) -> None:
    model = tiny_model(tmp_path / "m", 0)
    for version in ("v1", "v2"):
        registry.publish(model, {"roc_auc": 0.8}, version=version)
    code, out, _ = invoke("registry", "promote", "v1", "--expect", "none")
    assert code == 0 and out.splitlines()[0] == "champion of churn: none -> v1"
    code, _, exc = invoke("registry", "promote", "v2", "--expect", "none")
    assert code != 0 and isinstance(exc, RegistryError) and "now v1, not none" in str(exc)
    assert registry.champion().version == "v1"
    code, out, _ = invoke("registry", "promote", "v2")
    assert code == 0 and out.splitlines()[0] == "champion of churn: v1 -> v2"
    code, _, exc = invoke("registry", "promote", "v9")
    assert code != 0 and "cannot promote churn v9" in str(exc)


def test_the_cli_finds_the_registry_under_churn_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model
) -> None:
    home = tmp_path / "shared-home"
    LocalRegistry(home / "registry", "churn").publish(
        tiny_model(tmp_path / "m", 0), {"roc_auc": 0.8}, version="v1"
    )
    monkeypatch.delenv("CHURN_REGISTRY__URI", raising=False)
    monkeypatch.setenv("CHURN_HOME", str(home))
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    code, out, _ = invoke("registry", "list")
    assert code == 0 and out.splitlines() == ["  v1  complete  roc_auc=0.8"]
    code, out, _ = invoke("registry", "promote", "v1")
    assert code == 0 and f"storageUri: {home / 'registry' / 'churn' / 'versions' / 'v1'}" in out
    assert list(workdir.iterdir()) == []

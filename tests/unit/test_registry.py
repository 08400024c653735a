"""The folder registry's own mechanics: staging folders renamed into place, a flock'd pointer.

The contract every backend keeps (layout, immutability, promotion, checksums) runs on the
folder and on S3 in ``tests/integration/test_registry_contract.py``; this file holds what only
the folder does, and how :func:`open_registry` picks a backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from churn.errors import RegistryError
from churn.release.registry import LocalRegistry, S3Registry, open_registry
from churn.settings import RegistryConfig


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry", "churn")


@pytest.fixture
def models(tmp_path: Path, tiny_model) -> tuple[Path, Path]:
    return tiny_model(tmp_path / "m1", 1), tiny_model(tmp_path / "m2", 2)


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (OSError(28, "No space left on device"), RegistryError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
    ids=["disk-full", "ctrl-c"],
)
def test_an_interrupted_publish_leaves_no_staging_folder_and_no_version(
    registry: LocalRegistry,
    models: tuple[Path, Path],
    interrupt_publish,
    error: BaseException,
    raised: type[BaseException],
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    interrupt_publish(registry, after=3, error=error)
    with pytest.raises(raised):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    # The staging folder is gone and no v2 folder ever appeared.
    assert [p.name for p in (registry.root / "churn" / "versions").iterdir()] == ["v1"]
    assert [(v.version, v.complete) for v in registry.list_versions()] == [("v1", True)]


def test_a_concurrent_publisher_of_the_same_id_loses_the_rename(
    registry: LocalRegistry,
    models: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both publishers passed the existence check; the second one's rename onto v1 fails.
    registry.publish(models[0], {"roc_auc": 0.9}, version="v1")
    monkeypatch.setattr(registry, "_version_exists", lambda version: False)
    with pytest.raises(RegistryError, match="v1 of churn was published concurrently"):
        registry.publish(models[1], {"roc_auc": 0.6}, version="v1")
    assert [p.name for p in (registry.root / "churn" / "versions").iterdir()] == ["v1"]
    dest = registry.download("v1", tmp_path / "dl")  # every checksum still holds
    assert (dest / "model" / "model.pt").read_bytes() == (models[0] / "model.pt").read_bytes()


def test_open_registry_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_registry(RegistryConfig(uri=str(tmp_path))), LocalRegistry)
    local = open_registry(RegistryConfig(uri=tmp_path.as_uri()))
    assert isinstance(local, LocalRegistry) and local.root == tmp_path
    s3 = open_registry(RegistryConfig(uri="s3://bucket/team/models", model_name="churn"))
    assert isinstance(s3, S3Registry)
    assert s3.storage_uri("v1") == "s3://bucket/team/models/churn/versions/v1"
    with pytest.raises(RegistryError, match="scheme 'gs'"):
        open_registry(RegistryConfig(uri="gs://bucket/models"))


def test_concurrent_promotions_serialise(tmp_path: Path, models: tuple[Path, Path]) -> None:
    from concurrent.futures import ProcessPoolExecutor

    registry = LocalRegistry(tmp_path / "reg", "churn")
    for i in range(6):
        registry.publish(models[i % 2], {"roc_auc": 0.5}, version=f"v{i}")
    with ProcessPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(_promote_from_none, [str(tmp_path / "reg")] * 6, range(6)))
    # Every process judged against "no champion": exactly one may win.
    assert sum(outcomes) == 1
    assert registry.champion() is not None


def _promote_from_none(root: str, i: int) -> bool:
    try:
        LocalRegistry(root, "churn").promote(f"v{i}", expected_champion=None)
    except RegistryError:
        return False
    return True

"""The folder registry: immutable versions, a champion pointer that only moves to complete ones.

``tests/integration/test_registry_s3.py`` runs the same contract against a real S3 endpoint.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from churn.errors import RegistryError
from churn.model.network import load_model
from churn.release.registry import (
    COMPLETE_MARKER,
    LocalRegistry,
    S3Registry,
    new_version_id,
    open_registry,
)
from churn.settings import RegistryConfig

LAYOUT = {
    "model/model.pt",
    "model/model.json",
    "metrics.json",
    "config/config.properties",
    "model-store/churn.mar",
    COMPLETE_MARKER,
}


def fail_after(monkeypatch: pytest.MonkeyPatch, registry: LocalRegistry, ok: int) -> None:
    """Makes the registry's file copy fail after ``ok`` files, as a full disk would."""
    real = registry._put_file
    done: list[str] = []

    def flaky(handle: object, rel: str, src: Path) -> None:
        if len(done) >= ok:
            raise OSError(28, "No space left on device")
        real(handle, rel, src)
        done.append(rel)

    monkeypatch.setattr(registry, "_put_file", flaky)


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry", "churn")


@pytest.fixture
def models(tmp_path: Path, tiny_model) -> tuple[Path, Path]:
    return tiny_model(tmp_path / "m1", 1), tiny_model(tmp_path / "m2", 2)


def test_publish_writes_the_layout_with_the_marker_last(
    registry: LocalRegistry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    root = Path(info.storage_uri)
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == LAYOUT
    assert info.complete and info.metrics == {"roc_auc": 0.8}
    marker = json.loads((root / COMPLETE_MARKER).read_text())
    assert set(marker["files"]) == LAYOUT - {COMPLETE_MARKER}
    dest = registry.download("v1", tmp_path / "dl")
    _, meta = load_model(dest / "model")
    assert meta["threshold"] == 0.5
    assert [v.version for v in registry.list_versions()] == ["v1"]


def test_versions_are_immutable(registry: LocalRegistry, models: tuple[Path, Path]) -> None:
    first = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    before = (Path(first.storage_uri) / "model" / "model.pt").read_bytes()
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v1")
    assert (Path(first.storage_uri) / "model" / "model.pt").read_bytes() == before
    assert registry.list_versions()[0].metrics == {"roc_auc": 0.8}


def test_champion_moves_only_on_promote(registry: LocalRegistry, models: tuple[Path, Path]) -> None:
    assert registry.champion() is None
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    assert registry.champion() is None
    registry.promote("v1")
    registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    assert registry.champion().version == "v1"
    champion = registry.promote("v2")
    assert registry.champion() == champion
    pointer = json.loads((registry.root / "churn" / "champion.json").read_text())
    assert pointer["version"] == "v2" and pointer["previous"] == "v1"


def test_interrupted_publish_keeps_the_old_champion(
    registry: LocalRegistry, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    fail_after(monkeypatch, registry, ok=3)
    with pytest.raises(RegistryError, match=f"after 3 of 5 files.*no {COMPLETE_MARKER}"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("v2")
    assert registry.champion().version == "v1"
    # The staging folder is gone and no v2 folder ever appeared.
    assert [p.name for p in (registry.root / "churn" / "versions").iterdir()] == ["v1"]


def test_incomplete_version_cannot_be_promoted_or_downloaded(
    registry: LocalRegistry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    # What a copy killed half-way (or a hand-made folder) looks like: files, no marker.
    (Path(info.storage_uri).parent / "v2" / "model").mkdir(parents=True)
    assert [(v.version, v.complete) for v in registry.list_versions()] == [
        ("v1", True),
        ("v2", False),
    ]
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("v2")
    with pytest.raises(RegistryError, match="incomplete"):
        registry.download("v2", tmp_path / "dl")
    assert registry.champion().version == "v1"


def test_download_detects_a_changed_file(
    registry: LocalRegistry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    (Path(info.storage_uri) / "metrics.json").write_text('{"roc_auc": 0.99}')
    with pytest.raises(RegistryError, match=r"metrics\.json .* checksum"):
        registry.download("v1", tmp_path / "dl")


def test_a_damaged_version_is_a_clear_error(
    registry: LocalRegistry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    (Path(info.storage_uri) / "model" / "model.pt").unlink()
    with pytest.raises(RegistryError, match=r"churn v1 lacks model/model\.pt, which its"):
        registry.download("v1", tmp_path / "dl")
    marker = Path(info.storage_uri) / COMPLETE_MARKER
    marker.write_text(marker.read_text()[:20])
    with pytest.raises(RegistryError, match=r"_COMPLETE of churn v1 is not valid JSON"):
        registry.champion()


def test_version_ids_sort_by_time_and_differ_by_model(models: tuple[Path, Path]) -> None:
    early = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    late = datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC)
    a, b = new_version_id(models[0], early), new_version_id(models[1], early)
    assert a.startswith("20260101T120000Z-") and a != b
    assert new_version_id(models[0], early) == a
    assert sorted([new_version_id(models[0], late), a]) == [a, new_version_id(models[0], late)]


def test_publish_without_a_version_uses_a_new_id(
    registry: LocalRegistry, models: tuple[Path, Path]
) -> None:
    info = registry.publish(models[0], {"n": 1})
    assert info.version.endswith("-" + new_version_id(models[0]).split("-")[1])


def test_bad_inputs_are_refused(
    registry: LocalRegistry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="not a model folder"):
        registry.publish(tmp_path, {})
    with pytest.raises(RegistryError, match="version id"):
        registry.publish(models[0], {}, version="../escape")
    with pytest.raises(RegistryError, match="JSON"):
        registry.publish(models[0], {"when": datetime.now(UTC)}, version="v9")
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("never-published")
    assert registry.list_versions() == []


def test_open_registry_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_registry(RegistryConfig(uri=str(tmp_path))), LocalRegistry)
    local = open_registry(RegistryConfig(uri=tmp_path.as_uri()))
    assert isinstance(local, LocalRegistry) and local.root == tmp_path
    s3 = open_registry(RegistryConfig(uri="s3://bucket/team/models", model_name="churn"))
    assert isinstance(s3, S3Registry)
    assert s3.storage_uri("v1") == "s3://bucket/team/models/churn/versions/v1"
    with pytest.raises(RegistryError, match="scheme 'gs'"):
        open_registry(RegistryConfig(uri="gs://bucket/models"))


def test_a_promotion_judged_against_a_stale_champion_is_refused(
    registry: LocalRegistry, models: tuple[Path, Path], check_stale_promotion
) -> None:
    check_stale_promotion(registry, models)


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

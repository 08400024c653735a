"""The registry's contract, written once and run on every backend: a folder and a real S3 endpoint.

Versions are immutable and appear with their ``_COMPLETE`` marker written last; the champion
pointer moves only on promote, only to complete versions, and only by compare-and-swap;
downloads check every file against the marker. What only one backend does (the folder's
staging rename and flock, S3's claim marker and conditional-write retries) is tested in
``tests/unit/test_registry.py`` and ``tests/integration/test_registry_s3.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from churn.errors import RegistryError
from churn.model.network import load_model
from churn.release.registry import (
    CHAMPION_FILE,
    CLAIM_MARKER,
    COMPLETE_MARKER,
    LocalRegistry,
    Registry,
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


class Store:
    """The stored bytes behind a registry, reached without it: what tests read, damage or delete.

    Paths and keys are spelled out here rather than taken from the registry, so the layout
    itself is under test. One subclass per backend; each is a handful of primitives.
    """

    # Files a backend keeps in a version beside the layout.
    bookkeeping: frozenset[str] = frozenset()
    # What download() says when a file the marker lists is gone.
    missing_file_error: str = ""

    def uri(self, version: str) -> str:
        """The storage URI the version must have."""
        raise NotImplementedError

    def files(self, version: str) -> set[str]:
        """Every stored file of the version, relative to it."""
        raise NotImplementedError

    def read(self, version: str, rel: str) -> bytes:
        raise NotImplementedError

    def write(self, version: str, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, version: str, rel: str) -> None:
        raise NotImplementedError

    def pointer(self) -> dict:
        """The champion pointer, parsed."""
        raise NotImplementedError


class FolderStore(Store):
    missing_file_error = r"churn v1 lacks model/model\.pt, which its _COMPLETE marker lists"

    def __init__(self, root: Path) -> None:
        self.base = root.resolve() / "churn"

    def uri(self, version: str) -> str:
        return str(self.base / "versions" / version)

    def files(self, version: str) -> set[str]:
        root = Path(self.uri(version))
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    def read(self, version: str, rel: str) -> bytes:
        return (Path(self.uri(version)) / rel).read_bytes()

    def write(self, version: str, rel: str, data: bytes) -> None:
        (Path(self.uri(version)) / rel).write_bytes(data)

    def delete(self, version: str, rel: str) -> None:
        (Path(self.uri(version)) / rel).unlink()

    def pointer(self) -> dict:
        return json.loads((self.base / CHAMPION_FILE).read_text())


class S3Store(Store):
    bookkeeping = frozenset({CLAIM_MARKER})
    missing_file_error = r"downloading model/model\.pt of v1 in s3://\S+/team/churn failed"

    def __init__(self, registry: S3Registry, bucket: str) -> None:
        self.s3, self.bucket = registry._s3, bucket

    def _key(self, version: str, rel: str) -> str:
        return f"team/churn/versions/{version}/{rel}"

    def uri(self, version: str) -> str:
        return f"s3://{self.bucket}/team/churn/versions/{version}"

    def files(self, version: str) -> set[str]:
        prefix = self._key(version, "")
        resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return {obj["Key"][len(prefix) :] for obj in resp.get("Contents", [])}

    def read(self, version: str, rel: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=self._key(version, rel))["Body"].read()

    def write(self, version: str, rel: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self._key(version, rel), Body=data)

    def delete(self, version: str, rel: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(version, rel))

    def pointer(self) -> dict:
        obj = self.s3.get_object(Bucket=self.bucket, Key=f"team/churn/{CHAMPION_FILE}")
        return json.loads(obj["Body"].read())


@pytest.fixture(params=["folder", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """The registry on each backend, opened from its configuration as the pipeline does."""
    if request.param == "folder":
        cfg = RegistryConfig(uri=str(tmp_path / "registry"), model_name="churn")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_endpoint")
        cfg = RegistryConfig(uri=f"s3://{bucket}/team", endpoint_url=endpoint, model_name="churn")
    registry = open_registry(cfg)
    assert isinstance(registry, {"folder": LocalRegistry, "s3": S3Registry}[request.param])
    return registry


@pytest.fixture
def store(registry: Registry, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if isinstance(registry, S3Registry):
        return S3Store(registry, request.getfixturevalue("s3_bucket"))
    return FolderStore(tmp_path / "registry")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return tiny_model(root / "m1", 1), tiny_model(root / "m2", 2)


def test_publish_writes_the_layout_with_the_marker_last(
    registry: Registry,
    store: Store,
    models: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_put, real_commit = registry._put_file, registry._commit
    stored: list[str] = []

    def put_file(handle: object, rel: str, src: Path) -> None:
        # While files land the version is not complete, so nothing can promote or fetch it.
        assert registry._read_marker("v1") is None
        real_put(handle, rel, src)
        stored.append(rel)

    def commit(handle: object, version: str, marker: bytes) -> None:
        assert sorted(stored) == sorted(LAYOUT - {COMPLETE_MARKER})  # the marker comes last
        real_commit(handle, version, marker)

    monkeypatch.setattr(registry, "_put_file", put_file)
    monkeypatch.setattr(registry, "_commit", commit)
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    assert store.files("v1") == LAYOUT | store.bookkeeping
    assert info.complete and info.metrics == {"roc_auc": 0.8}
    marker = json.loads(store.read("v1", COMPLETE_MARKER))
    assert set(marker["files"]) == LAYOUT - {COMPLETE_MARKER}
    for rel, entry in marker["files"].items():
        data = store.read("v1", rel)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    dest = registry.download("v1", tmp_path / "dl")
    _, meta = load_model(dest / "model")
    assert meta["threshold"] == 0.5
    assert "model_store=/mnt/models/model-store" in (dest / "config/config.properties").read_text()
    assert [v.version for v in registry.list_versions()] == ["v1"]


def test_versions_are_immutable(
    registry: Registry, store: Store, models: tuple[Path, Path], tmp_path: Path
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    before = store.read("v1", "model/model.pt")
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v1")
    assert store.read("v1", "model/model.pt") == before
    assert registry.list_versions()[0].metrics == {"roc_auc": 0.8}
    registry.download("v1", tmp_path / "dl")  # every checksum still holds


def test_champion_moves_only_on_promote(
    registry: Registry, store: Store, models: tuple[Path, Path]
) -> None:
    assert registry.champion() is None
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    assert registry.champion() is None
    registry.promote("v1")
    registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    assert registry.champion().version == "v1"
    champion = registry.promote("v2")
    assert registry.champion() == champion
    assert (champion.version, champion.metrics) == ("v2", {"roc_auc": 0.9})
    pointer = store.pointer()
    assert pointer["version"] == "v2" and pointer["previous"] == "v1"


def test_an_interrupted_publish_keeps_the_old_champion(
    registry: Registry, models: tuple[Path, Path], tmp_path: Path, interrupt_publish
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    interrupt_publish(registry, after=3)
    with pytest.raises(RegistryError, match=f"after 3 of 5 files.*no {COMPLETE_MARKER}"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("v2")
    with pytest.raises(RegistryError, match="incomplete"):
        registry.download("v2", tmp_path / "dl")
    assert registry.champion().version == "v1"
    assert [v.version for v in registry.list_versions() if v.complete] == ["v1"]


def test_incomplete_version_cannot_be_promoted_or_downloaded(
    registry: Registry, store: Store, models: tuple[Path, Path], tmp_path: Path
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    # What a copy killed half-way (or a hand-made version) looks like: files, no marker.
    store.delete("v2", COMPLETE_MARKER)
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
    registry: Registry, store: Store, models: tuple[Path, Path], tmp_path: Path
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    store.write("v1", "metrics.json", b'{"roc_auc": 0.99}')
    with pytest.raises(RegistryError, match=r"metrics\.json .* checksum"):
        registry.download("v1", tmp_path / "dl")


def test_a_damaged_version_is_a_clear_error(
    registry: Registry, store: Store, models: tuple[Path, Path], tmp_path: Path
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    store.delete("v1", "model/model.pt")
    with pytest.raises(RegistryError, match=store.missing_file_error):
        registry.download("v1", tmp_path / "dl")
    store.write("v1", COMPLETE_MARKER, store.read("v1", COMPLETE_MARKER)[:20])
    with pytest.raises(RegistryError, match=r"_COMPLETE of churn v1 is not valid JSON"):
        registry.champion()


def test_a_promotion_judged_against_a_stale_champion_is_refused(
    registry: Registry, store: Store, models: tuple[Path, Path]
) -> None:
    # Both runs' gates saw no champion and run a promoted first: run b's promotion, judged
    # against a stale champion, is refused; judged against a, it goes through.
    registry.publish(models[0], {"roc_auc": 0.9}, version="a")
    registry.publish(models[1], {"roc_auc": 0.75}, version="b")
    registry.promote("a", expected_champion=None)
    with pytest.raises(RegistryError, match="champion of churn is now a, not none"):
        registry.promote("b", expected_champion=None)
    assert registry.champion().version == "a"
    assert registry.promote("b", expected_champion="a").version == "b"
    assert json.loads(registry._read_pointer())["previous"] == "a"
    assert store.pointer()["version"] == "b"


def test_a_promotion_against_stale_pointer_bytes_is_refused_though_they_name_the_same_version(
    registry: Registry, store: Store, models: tuple[Path, Path]
) -> None:
    registry.publish(models[0], {"roc_auc": 0.9}, version="a")
    registry.publish(models[1], {"roc_auc": 0.75}, version="b")
    registry.promote("a")
    seen = registry.pointer().raw
    registry.promote("b", expected_champion="a")
    registry.promote("a", expected_champion="b")  # away and back: the same name, new bytes
    with pytest.raises(RegistryError, match="pointer of churn was rewritten since it was read"):
        registry.promote("b", expected_champion="a", expected_pointer=seen)
    assert store.pointer()["version"] == "a" and store.pointer()["previous"] == "b"
    now = registry.pointer().raw
    assert registry.promote("b", expected_champion="a", expected_pointer=now).version == "b"


def test_version_ids_sort_by_time_and_differ_by_model(models: tuple[Path, Path]) -> None:
    early = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    late = datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC)
    a, b = new_version_id(models[0], early), new_version_id(models[1], early)
    assert a.startswith("20260101T120000Z-") and a != b
    assert new_version_id(models[0], early) == a
    assert sorted([new_version_id(models[0], late), a]) == [a, new_version_id(models[0], late)]


def test_publish_without_a_version_uses_a_new_id(
    registry: Registry, models: tuple[Path, Path]
) -> None:
    info = registry.publish(models[0], {"n": 1})
    assert info.version.endswith("-" + new_version_id(models[0]).split("-")[1])
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", info.version)
    assert [v.version for v in registry.list_versions()] == [info.version]


def test_bad_inputs_are_refused(
    registry: Registry, models: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="not a model folder"):
        registry.publish(tmp_path, {})
    with pytest.raises(RegistryError, match="version id"):
        registry.publish(models[0], {}, version="../escape")
    with pytest.raises(RegistryError, match="JSON"):
        registry.publish(models[0], {"when": datetime.now(UTC)}, version="v9")
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("never-published")
    with pytest.raises(RegistryError, match="version id"):
        registry.promote("../escape")
    with pytest.raises(RegistryError, match="does not exist"):
        registry.download("never-published", tmp_path / "dl")
    assert registry.list_versions() == []
    assert registry.champion() is None


def test_list_versions_lists_every_version_oldest_first(
    registry: Registry, store: Store, models: tuple[Path, Path]
) -> None:
    assert registry.list_versions() == []
    ids = ["20260102T000000Z-b", "20260101T000000Z-a", "20260103T000000Z-c"]
    for version in ids:
        registry.publish(models[0], {"id": version}, version=version)
    store.delete(ids[2], COMPLETE_MARKER)
    versions = registry.list_versions()
    assert [(v.version, v.complete, v.metrics) for v in versions] == [
        (ids[1], True, {"id": ids[1]}),
        (ids[0], True, {"id": ids[0]}),
        (ids[2], False, {}),  # incomplete: no metrics are trusted
    ]
    assert all(v.model_name == "churn" and v.storage_uri == store.uri(v.version) for v in versions)


def test_storage_uri_names_where_the_version_lies(
    registry: Registry, store: Store, models: tuple[Path, Path]
) -> None:
    info = registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    assert info.storage_uri == registry.storage_uri("v1") == store.uri("v1")
    registry.promote("v1")
    assert registry.champion().storage_uri == store.pointer()["storage_uri"] == store.uri("v1")


def test_a_storage_uri_names_its_version_only_in_its_own_registry(
    registry: Registry, store: Store
) -> None:
    assert registry.version_of(store.uri("v1")) == "v1"
    assert registry.version_of(store.uri("v1") + "/") == "v1"
    assert registry.version_of("s3://elsewhere/team/churn/versions/v1") is None
    assert registry.version_of(store.uri("v1") + "/model") is None


def test_rollout_records_are_append_only_and_listed_oldest_first(registry: Registry) -> None:
    assert registry.rollouts() == []
    first = registry.record_rollout({"version": "v1", "outcome": "succeeded"})
    second = registry.record_rollout({"version": "v2", "outcome": "failed", "reason": "Timeout"})
    assert re.fullmatch(r"rollouts/\d{8}T\d{6}\.\d{6}Z-v1\.json", first)
    assert first < second
    assert [(r["version"], r["outcome"]) for r in registry.rollouts()] == [
        ("v1", "succeeded"),
        ("v2", "failed"),
    ]
    # The write-if-absent primitive refuses an existing name and leaves the record as it was.
    assert registry._create_object(second, b"{}") is False
    assert registry.rollouts()[1]["reason"] == "Timeout"
    # Records are not versions.
    assert registry.list_versions() == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"outcome": "failed"}, "needs a version id, got None"),
        ({"version": "../v1"}, r"version id '\.\./v1' must match"),
        ({"version": "v1", "at": object()}, "must be JSON-serialisable"),
    ],
)
def test_a_bad_rollout_record_is_refused(registry: Registry, record: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        registry.record_rollout(record)
    assert registry.rollouts() == []

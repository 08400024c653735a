"""The registry and the gate against a damaged pointer, a shared registry and a new input spec.

Every pointer case runs on both backends, a folder and S3 (moto's server on 127.0.0.1): a
damaged ``champion.json`` must not lock the operator out of the CLI, must never be used as a
path, and is replaced only by a deliberate repair that is still a compare-and-swap.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import RegistryError
from churn.release.registry import LocalRegistry, Registry, S3Registry, open_registry
from churn.settings import RegistryConfig

# A pointer that cannot be used, and what the error must say about it.
DAMAGED_POINTERS = {
    "not JSON": (b"{not json", "not a JSON object with a version"),
    "not an object": (b"[1, 2]", "not a JSON object with a version"),
    "no version": (b'{"model_name": "churn"}', "not a JSON object with a version"),
    "a path": (b'{"version": "../../etc"}', "'../../etc', which is not a version id"),
    "a number": (b'{"version": 5}', "5, which is not a version id"),
    "a missing version": (b'{"version": "v9"}', "v9, which does not exist or is not complete"),
    "an incomplete version": (b'{"version": "v3"}', "v3, which does not exist or is not complete"),
}


@pytest.fixture(params=["folder", "s3"])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    """An empty registry of each backend, and the environment that points the CLI at it."""
    if request.param == "folder":
        cfg = RegistryConfig(uri=str(tmp_path / "registry"))
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        cfg = RegistryConfig(uri=f"s3://{bucket}/team", endpoint_url=endpoint)
        monkeypatch.setenv("CHURN_REGISTRY__ENDPOINT_URL", endpoint)
    monkeypatch.setenv("CHURN_REGISTRY__URI", cfg.uri)
    return open_registry(cfg)


@pytest.fixture
def versions(registry: Registry, tmp_path: Path, tiny_model: Callable[[Path, int], Path]) -> None:
    """v1 and v2 complete, v3 a publish that stopped before its marker."""
    for i, version in enumerate(("v1", "v2")):
        registry.publish(tiny_model(tmp_path / f"m{i}", i), {"roc_auc": 0.8}, version=version)
    put_raw(registry, "versions/v3/model/model.json", b"{}")


def put_raw(registry: Registry, rel: str, data: bytes) -> None:
    """Writes bytes under the model's folder of either backend, as a hand edit would."""
    if isinstance(registry, LocalRegistry):
        path = registry.root / registry.model_name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        assert isinstance(registry, S3Registry)
        registry._s3.put_object(Bucket=registry.bucket, Key=f"{registry._base}/{rel}", Body=data)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.usefixtures("versions")
@pytest.mark.parametrize("case", list(DAMAGED_POINTERS))
def test_the_cli_still_lists_the_versions_beside_a_damaged_pointer_and_says_what_is_wrong(
    registry: Registry, case: str
) -> None:
    raw, problem = DAMAGED_POINTERS[case]
    put_raw(registry, "champion.json", raw)

    result = invoke("registry", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line[2:].split()[0] for line in lines[:3]] == ["v1", "v2", "v3"]
    assert not any(line.startswith("*") for line in lines)
    assert lines[3].startswith("! champion.json of churn is damaged: it ")
    assert problem in lines[3] and "churn registry promote VERSION --repair" in lines[3]
    if case == "an incomplete version":
        assert lines[2].startswith("! v3  INCOMPLETE")

    result = invoke("registry", "list", "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["version"], r["champion"]) for r in rows] == [(v, False) for v in ("v1", "v2", "v3")]
    assert problem in result.stderr

    result = invoke("registry", "champion")
    assert isinstance(result.exception, RegistryError)
    assert problem in str(result.exception) and "--repair" in str(result.exception)


@pytest.mark.usefixtures("versions")
@pytest.mark.parametrize("case", list(DAMAGED_POINTERS))
def test_the_cli_repairs_a_damaged_pointer_only_when_asked_and_only_while_it_is_damaged(
    registry: Registry, case: str
) -> None:
    raw, problem = DAMAGED_POINTERS[case]
    put_raw(registry, "champion.json", raw)

    for expect in ("v1", "none"):
        result = invoke("registry", "promote", "v2", "--expect", expect)
        assert isinstance(result.exception, RegistryError)
        assert problem in str(result.exception) and "--repair" in str(result.exception)
    result = invoke("registry", "promote", "v2")
    assert isinstance(result.exception, RegistryError) and "--repair" in str(result.exception)
    result = invoke("registry", "promote", "v2", "--repair", "--expect", "v1")
    assert isinstance(result.exception, RegistryError) and "drop --expect" in str(result.exception)
    assert registry._read_pointer() == raw

    result = invoke("registry", "promote", "v2", "--repair")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "champion of churn: damaged pointer -> v2"
    assert registry.champion().version == "v2"
    pointer = json.loads(registry._read_pointer())
    assert pointer["previous"] is None and problem in pointer["repaired"]

    # Sound again: a second repair has nothing to repair and changes nothing.
    result = invoke("registry", "promote", "v1", "--repair")
    assert isinstance(result.exception, RegistryError)
    assert "not damaged (champion: v2)" in str(result.exception)
    assert registry.champion().version == "v2"
    assert invoke("registry", "list").stdout.splitlines()[1].startswith("* v2")


@pytest.mark.usefixtures("versions")
def test_of_two_concurrent_repairs_only_the_first_wins(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn.release.registry import DAMAGED

    put_raw(registry, "champion.json", b"{not json")
    other = open_registry(
        RegistryConfig(
            uri=os.environ["CHURN_REGISTRY__URI"],
            endpoint_url=os.environ.get("CHURN_REGISTRY__ENDPOINT_URL"),
        )
    )
    read = registry.pointer

    def read_then_lose_the_race():
        # This repair reads the damaged pointer; another repair lands before it swaps.
        state = read()
        monkeypatch.setattr(registry, "pointer", read)
        other.promote("v1", expected_champion=DAMAGED)
        return state

    monkeypatch.setattr(registry, "pointer", read_then_lose_the_race)
    with pytest.raises(RegistryError, match=r"not damaged \(champion: v1\)"):
        registry.promote("v2", expected_champion=DAMAGED)
    assert registry.champion().version == "v1"


def test_a_pointer_naming_a_path_is_never_followed(registry: Registry, tmp_path: Path, tiny_model):
    # Something that looks like a complete version, two levels above the versions.
    registry.publish(tiny_model(tmp_path / "m", 0), {"roc_auc": 0.8}, version="v1")
    for rel in ("_COMPLETE", "metrics.json"):
        put_raw(registry, f"versions/../../etc/{rel}", b'{"roc_auc": 0.99}')
    put_raw(registry, "champion.json", b'{"version": "../../etc"}')

    with pytest.raises(RegistryError, match=r"'\.\./\.\./etc', which is not a version id"):
        registry.champion()
    with pytest.raises(RegistryError, match="damaged"):
        registry.promote("v1", expected_champion="../../etc")


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_folder_registry_outputs_get_the_umasks_permissions(tmp_path: Path, tiny_model) -> None:
    registry = LocalRegistry(tmp_path / "registry", "churn")
    info = registry.publish(tiny_model(tmp_path / "m", 0), {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")

    version_dir = Path(info.storage_uri)
    pointer = registry.root / "churn" / "champion.json"
    paths = [pointer, version_dir, *version_dir.rglob("*")]
    modes = {str(p): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes == {str(p): 0o755 if p.is_dir() else 0o644 for p in paths}


def with_channels(model_dir: Path, channels: list[str]) -> Path:
    """The model folder with its channels renamed: same shapes, another request format."""
    meta = json.loads((model_dir / "model.json").read_text())
    meta["input_spec"]["channels"] = channels
    (model_dir / "model.json").write_text(json.dumps(meta))
    return model_dir


def test_promoting_a_version_that_changes_the_input_spec_needs_the_change_named(
    registry: Registry, tmp_path: Path, tiny_model: Callable[[Path, int], Path]
) -> None:
    registry.publish(tiny_model(tmp_path / "a", 0), {"roc_auc": 0.8}, version="v1")
    other = with_channels(tiny_model(tmp_path / "b", 1), ["orders"])
    registry.publish(other, {"roc_auc": 0.9}, version="v2")
    registry.promote("v1")

    for extra in ([], ["--allow-breaking-input-change", "  "]):
        result = invoke("registry", "promote", "v2", *extra)
        assert isinstance(result.exception, RegistryError)
        message = str(result.exception)
        assert "would change the input spec of churn (champion v1)" in message
        assert "channels: added ['orders'], removed ['n_txn']" in message
        assert "--allow-breaking-input-change" in message
    assert registry.champion().version == "v1"

    result = invoke(
        "registry", "promote", "v2", "--allow-breaking-input-change", "orders replaces n_txn"
    )
    assert result.exit_code == 0, result.output
    assert registry.champion().version == "v2"
    pointer = json.loads(registry._read_pointer())
    assert (pointer["previous"], pointer["input_change"]) == ("v1", "orders replaces n_txn")
    # Going back is a breaking change too.
    with pytest.raises(RegistryError, match=r"channels: added \['n_txn'\], removed \['orders'\]"):
        registry.promote("v1", expected_champion="v2")

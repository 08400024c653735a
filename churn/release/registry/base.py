"""Model registry: immutable published versions and a champion pointer, on a folder or S3.

Layout under the registry URI (``docs/architecture.md``)::

    <model_name>/versions/<version>/model/...                 the model folder
    <model_name>/versions/<version>/metrics.json
    <model_name>/versions/<version>/config/config.properties  TorchServe config for KServe
    <model_name>/versions/<version>/model-store/<model_name>.mar
    <model_name>/versions/<version>/reference.parquet          training summary (drift monitor)
    <model_name>/versions/<version>/_COMPLETE                 written last
    <model_name>/champion.json                                the pointer, moved by promote()
    <model_name>/rollouts/<UTC time>-<version>.json           one per KServe rollout, append-only
    <model_name>/triggers/<cause key>/...                     retraining claims and runs

A version counts only once its ``_COMPLETE`` marker exists; the marker lists every file with
its size and SHA-256, so :meth:`Registry.download` can check what it fetched, and the model's
``churn_definition`` (what its score means: lapse, partial defection or contract). A publish that
fails part-way leaves no marker, so the version can be neither promoted nor served. Versions
are never overwritten. Version ids are ``YYYYMMDDTHHMMSSZ-<8 hex of the model's SHA-256>``:
they sort by publication time and differ for different models published in the same second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from churn.errors import RegistryError, ServingError
from churn.io.leftovers import owned_tempdir
from churn.model.spec import input_spec_changes
from churn.release.archive import write_serving_layout

log = logging.getLogger(__name__)

COMPLETE_MARKER = "_COMPLETE"
REFERENCE_FILE = "reference.parquet"
# S3 only: written with If-None-Match before any upload, so a version id has one publisher.
CLAIM_MARKER = "_CLAIM"
CHAMPION_FILE = "champion.json"
ROLLOUTS_FOLDER = "rollouts"
# promote()'s default: move a sound pointer whatever version it names.
ANY = object()
# promote()'s repair: replace the pointer only while it is damaged (see Registry.pointer).
DAMAGED = object()
_SWAP_ATTEMPTS = 5
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_MODEL_FILES = ("model.pt", "model.json")


@dataclass(frozen=True)
class VersionInfo:
    """One version of a model in the registry.

    Attributes:
        model_name: The model's name.
        version: The version id.
        storage_uri: Where the version's files are (what KServe's ``storageUri`` gets).
        complete: Whether the ``_COMPLETE`` marker exists (only complete versions count).
        metrics: The evaluation metrics published with it (empty when incomplete).
    """

    model_name: str
    version: str
    storage_uri: str
    complete: bool
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChampionPointer:
    """The champion pointer as read once.

    Attributes:
        raw: Its bytes (``None`` when absent): a promotion swaps against exactly these.
        version: The version id it names, when it names a well-formed one.
        problem: Why it cannot be used, when it is damaged; ``None`` when it is sound.
    """

    raw: bytes | None
    version: str | None
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        """Whether the pointer exists but cannot be used."""
        return self.problem is not None


def model_digest(model_dir: str | Path) -> str:
    """SHA-256 over a model folder's file names and bytes, in name order.

    Args:
        model_dir: The model folder.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def new_version_id(model_dir: str | Path, now: datetime | None = None) -> str:
    """A sortable, unique version id: UTC time and a short hash of the model.

    Args:
        model_dir: The model folder.
        now: Publication time (defaults to now, UTC).

    Returns:
        For example ``20260101T120000Z-1a2b3c4d``.
    """
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{model_digest(model_dir)[:8]}"


class Registry(ABC):
    """Immutable model versions plus a champion pointer.

    Subclasses store bytes; this class owns the protocol: what a version holds, that the
    marker is written last, that only complete versions are promoted or downloaded.

    Args:
        model_name: Name of the model (a folder level in the layout and the name clients call).
    """

    def __init__(self, model_name: str) -> None:
        if not _VERSION_RE.fullmatch(model_name):
            raise RegistryError(f"model name {model_name!r} must match {_VERSION_RE.pattern}")
        self.model_name = model_name

    def publish(
        self,
        model_dir: str | Path,
        metrics: dict,
        version: str | None = None,
        *,
        protocol_version: str = "v1",
        reference: str | Path | None = None,
    ) -> VersionInfo:
        """Writes a new immutable version: model, metrics, TorchServe archive and config.

        Files go first and the ``_COMPLETE`` marker last; if anything fails the version stays
        without a marker (S3) or is not created at all (folder), and the champion is untouched.

        Args:
            model_dir: Model folder with ``model.pt`` and ``model.json``.
            metrics: JSON-serialisable evaluation metrics (numpy scalars are accepted).
            version: Version id; a new one from :func:`new_version_id` when ``None``.
            protocol_version: KServe protocol the archive's config selects (``v1``/``v2``).
            reference: Parquet file of the training split's summary
                (``churn.release.reference``); stored as ``reference.parquet``, part of the
                version and its checksums.

        Returns:
            The published version.

        Raises:
            RegistryError: The model folder is incomplete, the metrics are not JSON, the version
                id is malformed or already used, or the storage fails.
        """
        model_dir = Path(model_dir)
        missing = [name for name in _MODEL_FILES if not (model_dir / name).is_file()]
        if reference is not None and not Path(reference).is_file():
            raise RegistryError(f"reference summary {reference} does not exist")
        if missing:
            raise RegistryError(f"{model_dir} is not a model folder: {missing} missing")
        try:
            metrics_text = json.dumps(metrics, indent=2, sort_keys=True, default=_json_scalar)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"metrics must be JSON-serialisable: {exc}") from exc
        version = version or new_version_id(model_dir)
        self._check_version(version)
        if self._version_exists(version):
            raise RegistryError(
                f"version {version} of {self.model_name} already exists; versions are immutable"
            )
        with owned_tempdir("churn-publish-") as tmp:
            stage = Path(tmp)
            shutil.copytree(model_dir, stage / "model")
            (stage / "metrics.json").write_text(metrics_text + "\n")
            if reference is not None:
                shutil.copyfile(reference, stage / REFERENCE_FILE)
            try:
                # From the staged copy, so the archive matches model/ byte for byte.
                write_serving_layout(
                    stage / "model", stage, self.model_name, version, protocol_version
                )
            except ServingError as exc:
                raise RegistryError(f"cannot build the serving files: {exc}") from exc
            files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
            marker = {
                "model_name": self.model_name,
                "version": version,
                "churn_definition": _churn_definition(stage / "model" / "model.json"),
                "completed_at": utc_now(),
                "files": {
                    rel: {"size": (stage / rel).stat().st_size, "sha256": _file_sha256(stage / rel)}
                    for rel in files
                },
            }
            handle = self._begin(version)
            done = 0
            try:
                for rel in files:
                    self._put_file(handle, rel, stage / rel)
                    done += 1
                self._commit(handle, version, json.dumps(marker, indent=2).encode())
            except (OSError, Boto3Error, BotoCoreError, ClientError) as exc:
                self._abort(handle)
                raise RegistryError(
                    f"publishing {self.model_name} {version} failed after {done} of {len(files)} "
                    f"files; the version has no {COMPLETE_MARKER} marker and cannot be "
                    f"promoted: {exc}"
                ) from exc
            except BaseException:
                self._abort(handle)
                raise
        log.info("published %s %s at %s", self.model_name, version, self.storage_uri(version))
        return VersionInfo(
            self.model_name, version, self.storage_uri(version), True, json.loads(metrics_text)
        )

    def promote(
        self,
        version: str,
        expected_champion: str | object | None = ANY,
        *,
        allow_input_change: str = "",
        expected_pointer: bytes | None = None,
    ) -> VersionInfo:
        """Moves the champion pointer to a complete version, in one compare-and-swap write.

        The pointer is replaced only if it still holds the bytes read just before, so two
        concurrent promotions cannot both win on stale information. A damaged pointer is
        replaced only when ``expected_champion`` is :data:`DAMAGED`; a version whose input
        spec differs from the champion's (``churn.model.spec``) only when
        ``allow_input_change`` names the change, since every client's requests would break.

        Args:
            version: The version id.
            expected_champion: The champion the caller's decision was based on (``None``: no
                champion yet). If another promotion moved the pointer since, nothing changes
                and an error says so. :data:`ANY` (the default) promotes over whatever sound
                pointer is there; :data:`DAMAGED` repairs a damaged pointer and nothing else.
            allow_input_change: What changes for clients, when the input spec changes; it is
                recorded in the pointer. Ignored by a repair, which has no champion to compare.
            expected_pointer: The pointer's exact bytes (``ChampionPointer.raw``) as the caller
                read them; if given, any write since (even one naming the same version: a
                promotion away and back) leaves the pointer as it is and raises.

        Returns:
            The new champion.

        Raises:
            RegistryError: The version does not exist or is incomplete, the pointer is not
                what ``expected_champion`` says (damaged, sound, or another champion), the
                input spec changes without ``allow_input_change``, or the write fails.
        """
        self._check_version(version)
        if self._read_marker(version) is None:
            raise RegistryError(
                f"cannot promote {self.model_name} {version}: it does not exist or has no "
                f"{COMPLETE_MARKER} marker (an interrupted publish)"
            )
        for _ in range(_SWAP_ATTEMPTS):
            state = self.pointer()
            self._check_expectation(state, expected_champion, version)
            if expected_pointer is not None and state.raw != expected_pointer:
                raise RegistryError(
                    f"the champion pointer of {self.model_name} was rewritten since it was "
                    f"read (it names {state.version or 'none'} again, promoted anew); "
                    f"{version} is not promoted"
                )
            pointer = self._next_pointer(state, version, allow_input_change.strip())
            if self._swap_pointer(state.raw, json.dumps(pointer, indent=2).encode()):
                log.info("champion of %s is now %s", self.model_name, version)
                return self._info(version, complete=True)
        raise RegistryError(
            f"the champion pointer of {self.model_name} kept changing during {_SWAP_ATTEMPTS} "
            "attempts; try again"
        )

    def _check_expectation(
        self, state: ChampionPointer, expected: str | object | None, version: str
    ) -> None:
        if expected is DAMAGED:
            if not state.damaged:
                current = state.version or "none"
                raise RegistryError(
                    f"{CHAMPION_FILE} of {self.model_name} is not damaged (champion: {current}), "
                    f"so there is nothing to repair; promote with --expect {current} instead"
                )
            return
        if state.damaged:
            raise RegistryError(self.damage_message(state))
        if expected is not ANY and state.version != expected:
            raise RegistryError(
                f"the champion of {self.model_name} is now {state.version or 'none'}, not "
                f"{expected or 'none'} as when {version} was judged; {version} stays "
                "registered but is not promoted (compare the two, then `churn registry "
                f"promote {version}` if it should serve)"
            )

    def _next_pointer(self, state: ChampionPointer, version: str, input_change: str) -> dict:
        """The pointer that replaces ``state``: a repair, or a promotion over a sound champion."""
        pointer = {
            "model_name": self.model_name,
            "version": version,
            "storage_uri": self.storage_uri(version),
            "promoted_at": utc_now(),
            "previous": None if state.damaged else state.version,
        }
        if state.damaged:
            pointer["repaired"] = state.problem
            return pointer
        changes = [] if state.version is None else self._input_changes(state.version, version)
        if changes and not input_change:
            raise RegistryError(
                f"promoting {version} would change the input spec of {self.model_name} "
                f"(champion {state.version}): {'; '.join(changes)}. Every client's requests or "
                "their meaning would change; if that is intended, name the change (`churn "
                "registry promote --allow-breaking-input-change TEXT`, or the pipeline's "
                "allow_input_change)"
            )
        if changes:
            pointer["input_change"] = input_change
        return pointer

    def _input_changes(self, champion: str, version: str) -> list[str]:
        try:
            before = self.input_spec(champion)
        except RegistryError as exc:
            # Nothing shows the two accept the same requests, so it counts as a change.
            return [f"the champion's input spec cannot be read ({exc})"]
        return input_spec_changes(before, self.input_spec(version))

    def input_spec(self, version: str) -> dict:
        """The input spec of a version's model (what its clients send; see ``churn.model.spec``).

        Raises:
            RegistryError: The version's ``model/model.json`` is missing, not JSON, or has no
                ``input_spec`` object.
        """
        self._check_version(version)
        rel = "model/model.json"
        spec = self._json(version, rel, self._read_file(version, rel)).get("input_spec")
        if not isinstance(spec, dict):
            raise RegistryError(f"{rel} of {self.model_name} {version} has no input_spec object")
        return spec

    def pointer(self) -> ChampionPointer:
        """Reads the champion pointer once and says whether it can be used.

        A pointer that is not JSON, lacks a version, names something that is not a version id
        (``../../etc``) or names a version that is missing or incomplete is damaged: it is
        never used as a path, and only a repair (:data:`DAMAGED`) replaces it.
        """
        raw = self._read_pointer()
        if raw is None:
            return ChampionPointer(None, None)
        try:
            version = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError) as exc:
            return ChampionPointer(raw, None, f"it is not a JSON object with a version ({exc!r})")
        if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
            return ChampionPointer(
                raw,
                None,
                # A hand-edited pointer may hold anything; the message shows its start.
                f"it names {repr(version)[:80]}, which is not a version id ({_VERSION_RE.pattern})",
            )
        marker = self._read_optional(version, COMPLETE_MARKER)
        if marker is None:
            return ChampionPointer(
                raw, version, f"it names {version}, which does not exist or is not complete"
            )
        try:
            self._json(version, COMPLETE_MARKER, marker)
        except RegistryError as exc:
            return ChampionPointer(raw, version, f"it names {version}, which is damaged: {exc}")
        return ChampionPointer(raw, version)

    def damage_message(self, state: ChampionPointer) -> str:
        """What is wrong with a damaged pointer and how to repair it, in one line."""
        return (
            f"{CHAMPION_FILE} of {self.model_name} is damaged: {state.problem}. List the versions "
            "with `churn registry list` and repair it with `churn registry promote VERSION "
            "--repair`"
        )

    def champion(self) -> VersionInfo | None:
        """The version the champion pointer names, or ``None`` before the first promotion.

        Raises:
            RegistryError: The pointer is damaged (see :meth:`pointer`); the message says how
                to repair it.
        """
        state = self.pointer()
        if state.damaged:
            raise RegistryError(self.damage_message(state))
        if state.version is None:
            return None
        return self._info(state.version, complete=True)

    def list_versions(self) -> list[VersionInfo]:
        """Every version, complete or not, oldest first."""
        return [
            self._info(version, complete)
            for version, complete in sorted(self._version_states().items())
        ]

    def download(self, version: str, dest: str | Path) -> Path:
        """Copies a complete version's files into ``dest`` and checks their SHA-256.

        Args:
            version: The version id.
            dest: Folder to fill (created if missing).

        Returns:
            ``dest``.

        Raises:
            RegistryError: The version is missing or incomplete, or a file differs from what
                the marker lists.
        """
        self._check_version(version)
        marker = self._read_marker(version)
        if marker is None:
            raise RegistryError(f"{self.model_name} {version} does not exist or is incomplete")
        dest = Path(dest)
        for rel, expected in marker["files"].items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self._get_file(version, rel, target)
            if _file_sha256(target) != expected["sha256"]:
                raise RegistryError(f"{rel} of {self.model_name} {version} fails its checksum")
        return dest

    def record_rollout(self, record: dict) -> str:
        """Appends a rollout record; records are never overwritten or removed.

        Versions are immutable, so what happened when one was deployed (Ready, or rolled back
        and why) is a separate object: ``rollouts/<UTC time>-<version>.json``.

        Args:
            record: JSON-serialisable; ``version`` names the version that was rolled out.

        Returns:
            The record's path under the model's folder.

        Raises:
            RegistryError: The version id is malformed, the record is not JSON, a record of
                that name exists already, or the storage fails.
        """
        version = record.get("version")
        if not isinstance(version, str):
            raise RegistryError(f"a rollout record needs a version id, got {version!r}")
        self._check_version(version)
        try:
            data = json.dumps(record, indent=2, sort_keys=True, default=_json_scalar).encode()
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"a rollout record must be JSON-serialisable: {exc}") from exc
        rel = f"{ROLLOUTS_FOLDER}/{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{version}.json"
        try:
            created = self._create_object(rel, data)
        except (OSError, Boto3Error, BotoCoreError, ClientError) as exc:
            raise RegistryError(f"writing {rel} of {self.model_name} failed: {exc}") from exc
        if not created:
            raise RegistryError(
                f"{rel} of {self.model_name} exists already; records are append-only"
            )
        return rel

    def rollouts(self) -> list[dict]:
        """Every rollout record, oldest first.

        Raises:
            RegistryError: A record is not a JSON object naming a version.
        """
        records = []
        for name, raw in self._read_objects(ROLLOUTS_FOLDER):
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise RegistryError(
                    f"rollout record {ROLLOUTS_FOLDER}/{name} of {self.model_name} is not valid "
                    f"JSON: {exc}"
                ) from exc
            if not isinstance(record, dict) or not isinstance(record.get("version"), str):
                raise RegistryError(
                    f"rollout record {ROLLOUTS_FOLDER}/{name} of {self.model_name} is not a "
                    "JSON object with a version"
                )
            records.append(record)
        return records

    def create_record(self, folder: str, name: str, record: dict) -> bool:
        """Writes a JSON record under the model's folder only if none of that name exists.

        The write-if-absent that makes a version id or a rollout record have one writer,
        offered to outer layers: of several callers creating the same name at once, exactly
        one gets True.

        Args:
            folder: Slash-separated folder under the model's, for example ``triggers/<key>``.
            name: File name, for example ``claim-1.json``.
            record: JSON-serialisable.

        Returns:
            True when this call created it; False when it existed already.

        Raises:
            RegistryError: A path segment is malformed, the record is not JSON, or the
                storage fails.
        """
        for segment in [*folder.split("/"), name]:
            if not _VERSION_RE.fullmatch(segment) or segment in (".", ".."):
                raise RegistryError(f"record path segment {segment!r} is not a plain name")
        try:
            data = json.dumps(record, indent=2, sort_keys=True, default=_json_scalar).encode()
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"a record must be JSON-serialisable: {exc}") from exc
        try:
            return self._create_object(f"{folder}/{name}", data)
        except (OSError, Boto3Error, BotoCoreError, ClientError) as exc:
            raise RegistryError(
                f"writing {folder}/{name} of {self.model_name} failed: {exc}"
            ) from exc

    def read_records(self, folder: str) -> dict[str, dict]:
        """The JSON records directly in ``folder`` (see :meth:`create_record`), by file name.

        Raises:
            RegistryError: A record is not a JSON object, or the storage fails.
        """
        records = {}
        try:
            objects = self._read_objects(folder)
        except (OSError, Boto3Error, BotoCoreError, ClientError) as exc:
            raise RegistryError(f"reading {folder} of {self.model_name} failed: {exc}") from exc
        for name, raw in objects:
            if "/" in name:
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise RegistryError(f"record {folder}/{name} is not valid JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise RegistryError(f"record {folder}/{name} is not a JSON object")
            records[name] = record
        return records

    def version_of(self, storage_uri: str) -> str | None:
        """The version of this registry stored at ``storage_uri``, or ``None``."""
        version = storage_uri.rstrip("/").rpartition("/")[2]
        if _VERSION_RE.fullmatch(version) and self.storage_uri(version) == storage_uri.rstrip("/"):
            return version
        return None

    @abstractmethod
    def storage_uri(self, version: str) -> str:
        """Where a version's files are: an ``s3://`` URI or an absolute folder path."""

    def reference(self, version: str) -> bytes:
        """A complete version's reference summary (``reference.parquet``), as bytes.

        Raises:
            RegistryError: The version is not complete or was published without one.
        """
        self._check_version(version)
        if self._read_marker(version) is None:
            raise RegistryError(f"{self.model_name} has no complete version {version}")
        raw = self._read_optional(version, REFERENCE_FILE)
        if raw is None:
            raise RegistryError(
                f"version {version} of {self.model_name} has no {REFERENCE_FILE}: it was "
                "published without a reference summary; register a new version to monitor it"
            )
        return raw

    def _info(self, version: str, complete: bool) -> VersionInfo:
        metrics = (
            self._json(version, "metrics.json", self._read_file(version, "metrics.json"))
            if complete
            else {}
        )
        return VersionInfo(self.model_name, version, self.storage_uri(version), complete, metrics)

    def _read_marker(self, version: str) -> dict | None:
        raw = self._read_optional(version, COMPLETE_MARKER)
        return None if raw is None else self._json(version, COMPLETE_MARKER, raw)

    def _json(self, version: str, rel: str, raw: bytes | str) -> dict:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(
                f"{rel} of {self.model_name} {version} is not valid JSON ({exc}): the version "
                "is damaged; publish the model again under a new version"
            ) from exc
        if not isinstance(value, dict):
            raise RegistryError(f"{rel} of {self.model_name} {version} is not a JSON object")
        return value

    @staticmethod
    def _check_version(version: str) -> None:
        if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
            raise RegistryError(f"version id {version!r} must match {_VERSION_RE.pattern}")

    @abstractmethod
    def _version_exists(self, version: str) -> bool:
        """Whether anything at all is stored under the version."""

    @abstractmethod
    def _version_states(self) -> dict[str, bool]:
        """Version id to completeness, for every version with stored files."""

    @abstractmethod
    def _begin(self, version: str) -> object:
        """Prepares a publish and returns what :meth:`_put_file` writes to."""

    @abstractmethod
    def _put_file(self, handle: object, rel: str, src: Path) -> None:
        """Stores one file of a version being published."""

    @abstractmethod
    def _commit(self, handle: object, version: str, marker: bytes) -> None:
        """Writes the marker last, making the version complete."""

    @abstractmethod
    def _abort(self, handle: object) -> None:
        """Cleans up after a failed publish where the backend can."""

    @abstractmethod
    def _read_optional(self, version: str, rel: str) -> bytes | None:
        """A version's file, or ``None`` when absent."""

    def _read_file(self, version: str, rel: str) -> bytes:
        raw = self._read_optional(version, rel)
        if raw is None:
            raise RegistryError(f"{rel} of {self.model_name} {version} is missing")
        return raw

    @abstractmethod
    def _get_file(self, version: str, rel: str, target: Path) -> None:
        """Copies a version's file to a local path."""

    @abstractmethod
    def _read_pointer(self) -> bytes | None:
        """The champion pointer's bytes, or ``None`` when absent."""

    @abstractmethod
    def _swap_pointer(self, expected: bytes | None, data: bytes) -> bool:
        """Writes the pointer if it still holds ``expected`` (``None``: absent); else False."""

    @abstractmethod
    def _create_object(self, rel: str, data: bytes) -> bool:
        """Writes a new object at ``rel`` under the model's folder, whole; False if it exists."""

    @abstractmethod
    def _read_objects(self, folder: str) -> list[tuple[str, bytes]]:
        """Name and bytes of every object in a folder under the model's folder, by name."""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _churn_definition(model_json: Path) -> dict:
    """The label definition a model was trained for, recorded in the version's marker.

    A model from before the definitions existed predicts lapse, the only one there was.
    """
    try:
        spec = json.loads(model_json.read_text())["input_spec"]
        return dict(spec.get("churn_definition", {"name": "lapse"}))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegistryError(f"{model_json} has no readable input_spec: {exc!r}") from exc


def _json_scalar(value: object) -> object:
    # numpy scalars (from metrics code) know how to become Python numbers.
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

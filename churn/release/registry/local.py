"""The registry in a local folder: staged version folders renamed into place, a flock'd pointer."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from churn.errors import RegistryError
from churn.io.atomic import umask_mode
from churn.io.leftovers import owner_tag, sweep
from churn.release.registry.base import CHAMPION_FILE, COMPLETE_MARKER, Registry, write_synced

_STAGING = ".staging-"


class LocalRegistry(Registry):
    """Registry in a local folder.

    A publish fills a hidden staging folder beside the versions, writes the marker into it and
    renames it into place, so a version folder appears whole or not at all, and a rename onto
    an existing version fails instead of overwriting it.

    Args:
        root: The registry folder.
        model_name: Name of the model.
    """

    def __init__(self, root: str | Path, model_name: str) -> None:
        super().__init__(model_name)
        self.root = Path(root).expanduser().resolve()
        self._base = self.root / model_name
        self._versions = self._base / "versions"

    def storage_uri(self, version: str) -> str:
        """The version's absolute folder path."""
        return str(self._versions / version)

    def _version_exists(self, version: str) -> bool:
        return (self._versions / version).exists()

    def _version_states(self) -> dict[str, bool]:
        if not self._versions.is_dir():
            return {}
        return {
            p.name: (p / COMPLETE_MARKER).is_file()
            for p in self._versions.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        }

    def _begin(self, version: str) -> Path:
        self._versions.mkdir(parents=True, exist_ok=True)
        # What publishers killed mid-way left; the names say which process owned them.
        sweep(self._versions, _STAGING)
        # Hidden, and on the same file system as the target so the final rename is atomic.
        staging = self._versions / f"{_STAGING}{owner_tag()}-{version}"
        staging.mkdir()
        return staging

    def _put_file(self, handle: object, rel: str, src: Path) -> None:
        target = Path(handle) / rel  # type: ignore[arg-type]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)

    def _commit(self, handle: object, version: str, marker: bytes) -> None:
        staging = Path(handle)  # type: ignore[arg-type]
        write_synced(staging / COMPLETE_MARKER, marker)
        try:
            os.rename(staging, self._versions / version)
        except OSError as exc:
            if (self._versions / version).exists():
                raise RegistryError(
                    f"version {version} of {self.model_name} was published concurrently; "
                    "versions are immutable"
                ) from exc
            raise

    def _abort(self, handle: object) -> None:
        shutil.rmtree(Path(handle), ignore_errors=True)  # type: ignore[arg-type]

    def _read_optional(self, version: str, rel: str) -> bytes | None:
        path = self._versions / version / rel
        return path.read_bytes() if path.is_file() else None

    def _get_file(self, version: str, rel: str, target: Path) -> None:
        try:
            shutil.copyfile(self._versions / version / rel, target)
        except FileNotFoundError as exc:
            raise RegistryError(
                f"{self.model_name} {version} lacks {rel}, which its {COMPLETE_MARKER} marker "
                "lists: the version is damaged"
            ) from exc

    def _read_pointer(self) -> bytes | None:
        path = self._base / CHAMPION_FILE
        return path.read_bytes() if path.is_file() else None

    def _swap_pointer(self, expected: bytes | None, data: bytes) -> bool:
        self._base.mkdir(parents=True, exist_ok=True)
        # An exclusive lock on a side file serialises read-compare-write between processes;
        # the pointer itself is still replaced by a rename, so readers never see half of it.
        with open(self._base / ".champion.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._read_pointer() != expected:
                return False
            fd, tmp = tempfile.mkstemp(prefix=f".{CHAMPION_FILE}.", dir=self._base)
            # mkstemp's file is owner-only; the pointer gets the umask's permissions.
            os.fchmod(fd, umask_mode(0o666))
            os.close(fd)
            try:
                write_synced(Path(tmp), data)
                os.replace(tmp, self._base / CHAMPION_FILE)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return True

    def _create_object(self, rel: str, data: bytes) -> bool:
        target = self._base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".create-", dir=target.parent)
        os.close(fd)
        try:
            write_synced(Path(tmp), data)
            # link() refuses an existing name, so the object appears whole and only once.
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def _read_objects(self, folder: str) -> list[tuple[str, bytes]]:
        root = self._base / folder
        if not root.is_dir():
            return []
        return [
            (p.name, p.read_bytes())
            for p in sorted(root.iterdir())
            if p.is_file() and not p.name.startswith(".")
        ]

"""Files under a folder or an ``s3://bucket/prefix``: the inference log and the monitoring store.

Both the log the monitor reads and the store it writes may live on either; this is the small
common surface (list, read, write) the monitor needs, so the rest of it never branches on
where the bytes are.
"""

from __future__ import annotations

import os
from pathlib import Path

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from churn.errors import MonitorError
from churn.io.object_store import is_s3_uri, parse_s3_uri

_S3_ERRORS = (Boto3Error, BotoCoreError, ClientError)


class Store:
    """Relative paths under a root URI (a folder, ``file://`` allowed, or ``s3://``).

    Args:
        uri: The root.
        endpoint_url: S3 endpoint for non-AWS stores (MinIO, moto).
    """

    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self._s3 = None
        if is_s3_uri(self.uri):
            import boto3

            self.bucket, prefix = parse_s3_uri(self.uri)
            self.prefix = prefix.strip("/")
            self._s3 = boto3.client("s3", endpoint_url=endpoint_url or None)
        else:
            self.root = Path(self.uri.removeprefix("file://"))

    def location(self, rel: str) -> str:
        """The full URI or path of ``rel``."""
        if self._s3 is None:
            return str(self.root / rel)
        return f"s3://{self.bucket}/{self._key(rel)}"

    def list(self, folder: str) -> list[str]:
        """Relative paths of every file under ``folder``, sorted; hidden files are skipped.

        Raises:
            MonitorError: The store cannot be listed.
        """
        try:
            if self._s3 is None:
                base = self.root / folder
                if not base.is_dir():
                    return []
                found = [p.relative_to(self.root).as_posix() for p in base.rglob("*")]
                return sorted(rel for rel in found if (self.root / rel).is_file() and _visible(rel))
            prefix = self._key(folder).rstrip("/") + "/"
            cut = len(self.prefix) + 1 if self.prefix else 0
            keys = []
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys += [obj["Key"][cut:] for obj in page.get("Contents", [])]
            return sorted(rel for rel in keys if _visible(rel))
        except (OSError, *_S3_ERRORS) as exc:
            raise MonitorError(f"cannot list {self.location(folder)}: {exc}") from exc

    def read(self, rel: str) -> bytes:
        """The bytes of ``rel``.

        Raises:
            MonitorError: The file is missing or unreadable.
        """
        try:
            if self._s3 is None:
                return (self.root / rel).read_bytes()
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read()
        except (OSError, *_S3_ERRORS) as exc:
            raise MonitorError(f"cannot read {self.location(rel)}: {exc}") from exc

    def write(self, rel: str, data: bytes) -> str:
        """Writes ``rel`` whole (a temporary name, then a rename, in a folder).

        Returns:
            Where it went.

        Raises:
            MonitorError: The store refuses the write.
        """
        try:
            if self._s3 is None:
                target = self.root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
            else:
                self._s3.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)
        except (OSError, *_S3_ERRORS) as exc:
            raise MonitorError(f"cannot write {self.location(rel)}: {exc}") from exc
        return self.location(rel)

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel) if p)


def _visible(rel: str) -> bool:
    # Writers put files in place under a dotted temporary name first (FolderSink, write()).
    return not any(part.startswith(".") for part in rel.split("/"))

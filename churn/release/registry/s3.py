"""The registry in S3: conditional PUTs claim versions and move the champion pointer."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from churn.errors import RegistryError
from churn.io.object_store import parse_s3_uri
from churn.release.registry.base import (
    CHAMPION_FILE,
    CLAIM_MARKER,
    COMPLETE_MARKER,
    Registry,
    utc_now,
)

log = logging.getLogger(__name__)


class S3Registry(Registry):
    """Registry in an S3 bucket (AWS, MinIO or any S3-compatible store).

    Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    a profile, or a workload identity), never from configuration. A single PUT is atomic on
    S3, so the pointer is replaced in one request; the marker is written with
    ``If-None-Match: *`` so two publishers of the same id cannot both complete it. A failed
    publish leaves its files without a marker: listed as incomplete, never promoted.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix``.
        model_name: Name of the model.
        endpoint_url: Endpoint of a non-AWS store (MinIO, moto); ``None`` for AWS.
    """

    def __init__(self, uri: str, model_name: str, endpoint_url: str | None = None) -> None:
        super().__init__(model_name)
        try:
            self.bucket, prefix = parse_s3_uri(uri)
        except ValueError as exc:
            raise RegistryError(f"S3 registry URI: {exc}") from exc
        prefix = prefix.strip("/")
        self._base = f"{prefix}/{model_name}" if prefix else model_name
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url)

    def storage_uri(self, version: str) -> str:
        """``s3://bucket/<prefix>/<model_name>/versions/<version>``."""
        return f"s3://{self.bucket}/{self._key(version)}"

    def _key(self, version: str, rel: str = "") -> str:
        key = f"{self._base}/versions/{version}"
        return f"{key}/{rel}" if rel else key

    def _version_exists(self, version: str) -> bool:
        with self._errors(f"checking {version}"):
            resp = self._s3.list_objects_v2(
                Bucket=self.bucket, Prefix=self._key(version) + "/", MaxKeys=1
            )
        return resp.get("KeyCount", 0) > 0

    def _version_states(self) -> dict[str, bool]:
        prefix = f"{self._base}/versions/"
        states: dict[str, bool] = {}
        with self._errors("listing versions"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    version, _, rel = obj["Key"][len(prefix) :].partition("/")
                    states[version] = states.get(version, False) or rel == COMPLETE_MARKER
        return states

    def _begin(self, version: str) -> str:
        # Claim the id before any upload: the existence check in publish() is only a check, and
        # a second publisher that passed it too would overwrite the first one's files.
        claim = json.dumps({"claimed_at": utc_now()}).encode()
        if not self._put_if(self._key(version, CLAIM_MARKER), claim, IfNoneMatch="*"):
            raise RegistryError(
                f"version {version} of {self.model_name} already exists (another publisher "
                "claimed it); versions are immutable"
            )
        return version

    def _put_file(self, handle: object, rel: str, src: Path) -> None:
        # upload_file switches to a multipart upload for large files.
        self._s3.upload_file(str(src), self.bucket, self._key(str(handle), rel))

    def _commit(self, handle: object, version: str, marker: bytes) -> None:
        if not self._put_if(self._key(version, COMPLETE_MARKER), marker, IfNoneMatch="*"):
            raise RegistryError(
                f"version {version} of {self.model_name} was completed concurrently; "
                "versions are immutable"
            )

    def _put_if(self, key: str, body: bytes, **condition: str) -> bool:
        """A conditional PUT (``IfNoneMatch="*"`` or ``IfMatch=etag``); False when it fails."""
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except ClientError as exc:
            # 412 PreconditionFailed: the condition is false. 409 ConditionalRequestConflict:
            # AWS saw a concurrent conditional write and asks for a retry; both mean "not now".
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 409:
                return False
            raise RegistryError(f"writing s3://{self.bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"writing s3://{self.bucket}/{key} failed: {exc}") from exc
        return True

    def _abort(self, handle: object) -> None:
        # Deleting could fail for the same reason the upload did; the missing marker already
        # keeps the partial version out of use.
        log.warning("publish of %s %s failed; left incomplete", self.model_name, handle)

    def _read_optional(self, version: str, rel: str) -> bytes | None:
        return self._get_optional(self._key(version, rel))

    def _get_file(self, version: str, rel: str, target: Path) -> None:
        with self._errors(f"downloading {rel} of {version}"):
            self._s3.download_file(self.bucket, self._key(version, rel), str(target))

    def _read_pointer(self) -> bytes | None:
        return self._get_optional(f"{self._base}/{CHAMPION_FILE}")

    def _swap_pointer(self, expected: bytes | None, data: bytes) -> bool:
        key = f"{self._base}/{CHAMPION_FILE}"
        body, etag = self._get_with_etag(key)
        if body != expected:
            return False
        # S3's conditional write: If-Match the ETag just read, or If-None-Match when absent.
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        return self._put_if(key, data, **condition)

    def _create_object(self, rel: str, data: bytes) -> bool:
        return self._put_if(f"{self._base}/{rel}", data, IfNoneMatch="*")

    def _read_objects(self, folder: str) -> list[tuple[str, bytes]]:
        prefix = f"{self._base}/{folder}/"
        with self._errors(f"listing {folder}"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            keys = sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
        objects = []
        for key in keys:
            body = self._get_optional(key)
            if body is not None:
                objects.append((key[len(prefix) :], body))
        return objects

    def _get_optional(self, key: str) -> bytes | None:
        return self._get_with_etag(key)[0]

    def _get_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and ETag, or ``(None, None)`` when there is no such object."""
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=key)
            return obj["Body"].read(), obj["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise RegistryError(f"reading s3://{self.bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"reading s3://{self.bucket}/{key} failed: {exc}") from exc

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise RegistryError(
                f"{action} in s3://{self.bucket}/{self._base} failed: {exc}"
            ) from exc

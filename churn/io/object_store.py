"""Reading inputs from S3 (AWS, MinIO or any S3-compatible store) into local files.

On a cluster the pipeline's pods share no file system with the user, so a transaction log
(or a folder such as ``churn data synth`` writes) is handed over as ``s3://bucket/key``. The
feature step fetches it into its scratch folder and reads it from there like any local file.
Credentials come from the standard AWS chain (environment variables from a Kubernetes Secret,
a profile, or a workload identity), never from configuration or parameters.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import boto3
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from churn.errors import ContractError

log = logging.getLogger(__name__)

S3_SCHEME = "s3://"


def is_s3_uri(value: str) -> bool:
    """Whether ``value`` names an S3 object or prefix (``s3://...``)."""
    return value.startswith(S3_SCHEME)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/key`` into the bucket and the key (``""`` for a whole bucket).

    Args:
        uri: The URI.

    Returns:
        ``(bucket, key)``.

    Raises:
        ValueError: ``uri`` is not ``s3://`` followed by a bucket name.
    """
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not is_s3_uri(uri) or not bucket:
        raise ValueError(f"{uri!r} is not an S3 URI: expected s3://bucket or s3://bucket/key")
    return bucket, key


def fetch(uri: str, dest: str | Path, endpoint_url: str | None = None) -> Path:
    """Downloads one object, or every object under a prefix, into a local folder.

    ``s3://bucket/logs/transactions.parquet`` becomes ``dest/transactions.parquet``;
    ``s3://bucket/logs/run1`` (no such object, but objects under ``run1/``) becomes the folder
    ``dest/run1`` with the same relative layout. Each file is written under a temporary name
    and renamed when complete, so an interrupted download never leaves a truncated log behind.

    Args:
        uri: ``s3://bucket/key`` of an object or a prefix.
        dest: Local folder to download into (created if missing).
        endpoint_url: Endpoint of a non-AWS store (MinIO, moto); ``None`` or ``""`` for AWS.

    Returns:
        The local file, or the local folder for a prefix.

    Raises:
        ContractError: The URI is malformed, names nothing, holds a key that would land
            outside ``dest``, or the store cannot be read (the message names the URI).
    """
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise ContractError(str(exc)) from exc
    dest = Path(dest)
    s3 = boto3.client("s3", endpoint_url=endpoint_url or None)
    try:
        size = _object_size(s3, bucket, key) if key and not key.endswith("/") else None
        if size is not None:
            target = dest / PurePosixPath(key).name
            _download(s3, bucket, {key: (target, size)}, uri)
            return target
        prefix = key.rstrip("/") + "/" if key else ""
        folder = dest / (PurePosixPath(prefix).name or bucket)
        targets = {
            obj_key: (_inside(folder, obj_key[len(prefix) :], uri), obj_size)
            for obj_key, obj_size in _list_sizes(s3, bucket, prefix).items()
            if not obj_key.endswith("/")
        }
        if not targets:
            raise ContractError(f"{uri}: no such object, and no objects under it")
        _download(s3, bucket, targets, uri)
        return folder
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        raise ContractError(f"cannot read {uri}: {exc}") from exc
    except OSError as exc:  # for example keys "x" and "x/y": a file where a folder must go
        raise ContractError(f"cannot write {uri} into {dest}: {exc}") from exc


def _object_size(s3, bucket: str, key: str) -> int | None:
    """The object's size in bytes, or ``None`` when there is no such object."""
    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _list_sizes(s3, bucket: str, prefix: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes.update((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))
    return sizes


def _inside(folder: Path, rel: str, uri: str) -> Path:
    """``folder / rel``, refusing keys such as ``../x`` that would escape the folder."""
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(part in ("..", ".") for part in parts):
        raise ContractError(f"{uri}: the key part {rel!r} would land outside {folder}")
    return folder.joinpath(*parts)


def _download(s3, bucket: str, targets: dict[str, tuple[Path, int]], uri: str) -> None:
    total = sum(size for _, size in targets.values())
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {uri}", leave=False) as bar:
        for key, (target, _) in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            try:
                s3.download_file(bucket, key, str(partial), Callback=bar.update)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    log.info("fetched %s: %d files, %d bytes", uri, len(targets), total)


def upload_folder(folder: str | Path, uri: str, endpoint_url: str | None = None) -> int:
    """Uploads every file under a local folder to ``uri/<relative path>``.

    The counterpart of :func:`fetch` for a folder: ``fetch(uri, dest)`` brings the same
    layout back as ``dest/<last part of uri>``. Pods that share no disk (the nodes of a
    Kubeflow Trainer ``TrainJob`` and the pipeline step that waits for them) hand a model
    folder over this way.

    Args:
        folder: Local folder to upload.
        uri: ``s3://bucket/prefix`` to upload under.
        endpoint_url: Endpoint of a non-AWS store (MinIO, moto); ``None`` or ``""`` for AWS.

    Returns:
        The number of files uploaded.

    Raises:
        ContractError: The URI is malformed, the folder holds no file, or the store refuses
            a write (the message names the URI).
    """
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise ContractError(str(exc)) from exc
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ContractError(f"{folder}: no files to upload to {uri}")
    prefix = key.rstrip("/") + "/" if key else ""
    s3 = boto3.client("s3", endpoint_url=endpoint_url or None)
    try:
        for path in files:
            s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        raise ContractError(f"cannot write {uri}: {exc}") from exc
    log.info("uploaded %s to %s: %d files", folder, uri, len(files))
    return len(files)

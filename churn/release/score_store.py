"""Dated batch scores in the registry's store: the scoring pipeline's output.

A scoring run writes ``<registry uri>/scores/date=YYYY-MM-DD/scores.parquet`` (a folder
registry or ``s3://bucket/prefix``), so a recurring run leaves one file per scoring date
beside the models that produced them, where ``churn monitor performance`` finds them once
their horizon has passed.

A file appears whole or not at all, and is created only if absent (``link()`` on a folder,
``If-None-Match: *`` on S3). The run that wrote it is recorded with it (the Parquet footer and
the S3 object's metadata): a retry of the same run replaces its own file, another run's file
is replaced only when asked to (``overwrite``), never silently.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pandas as pd
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from churn.data.cutoffs import parse_midnight
from churn.errors import ContractError, OutputError, RegistryError
from churn.io.leftovers import owned_tempdir, owner_tag, sweep
from churn.io.object_store import is_s3_uri, parse_s3_uri
from churn.release.batch_score import batch_score
from churn.release.registry import Registry, open_registry
from churn.settings import RegistryConfig

log = logging.getLogger(__name__)

SCORES_FOLDER = "scores"
SCORES_FILE = "scores.parquet"
RUN_KEY = "churn-run-id"


def resolve_scoring_date(
    date: str, run_times: Sequence[str], now: pd.Timestamp | None = None
) -> str:
    """The scoring date of a run: ``date`` when given, else the day the run is for.

    Args:
        date: ``YYYY-MM-DD`` (a midnight UTC), or ``""`` for the run's own date.
        run_times: KFP's scheduled and creation times of the run, in order of preference.
            ``""`` or a placeholder KFP left unresolved (``{{$...}}``) is skipped.
        now: The time used when no run time is known (default: now).

    Returns:
        The date, ``YYYY-MM-DD``.

    Raises:
        ContractError: ``date`` is not a midnight UTC, or a run time is not a timestamp.
    """
    if date.strip():
        return parse_midnight(date.strip(), "date").date().isoformat()
    for value in run_times:
        if not value.strip() or value.startswith("{{$"):
            continue
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise ContractError(f"the run time {value!r} is not a timestamp") from exc
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.date().isoformat()
    return (now if now is not None else pd.Timestamp.now(tz="UTC")).date().isoformat()


def scores_uri(registry_uri: str, date: str) -> str:
    """``<registry uri>/scores/date=<date>/scores.parquet``."""
    return f"{registry_uri.rstrip('/')}/{SCORES_FOLDER}/date={date}/{SCORES_FILE}"


def resolve_version(store: Registry, version: str) -> str:
    """``version``, or the champion's version when it is ``""``.

    Raises:
        RegistryError: No version is given and the registry has no champion.
    """
    if version:
        return version
    champion = store.champion()
    if champion is None:
        raise RegistryError(
            f"no champion yet in {store.model_name}'s registry: promote a version or name one"
        )
    return champion.version


def score_into_registry(
    repo_dir: str | Path,
    registry: RegistryConfig,
    date: str,
    version: str,
    run_id: str,
    overwrite: bool = False,
    chunk_rows: int = 50_000,
) -> dict:
    """Scores every active customer at ``date`` and publishes the file under the dated prefix.

    The destination is checked before any work, so a date another run has scored fails at
    once (unless ``overwrite``).

    Args:
        repo_dir: A feature repository with a snapshot at ``date``.
        registry: The registry holding the model; the scores go under its URI.
        date: ``YYYY-MM-DD``.
        version: A registry version, or ``""`` for the champion.
        run_id: The run's id, recorded with the file.
        overwrite: Replace another run's scores of the same date.
        chunk_rows: Rows per Feast read and forward pass.

    Returns:
        :func:`churn.release.batch_score.batch_score`'s summary, with ``uri`` the published
        file.

    Raises:
        OutputError: Another run's scores of ``date`` exist and ``overwrite`` is off, or the
            file cannot be written.
        ContractError: ``date`` is outside the data or has no snapshot.
        RegistryError: No champion, no such version, or the store fails.
    """
    store = open_registry(registry)
    dest = scores_uri(registry.uri, date)
    _check_replaceable(dest, _existing_run(dest, registry), run_id, overwrite)
    version = resolve_version(store, version)
    with owned_tempdir("churn-scoring-") as tmp:
        version_dir = store.download(version, tmp / "version")
        summary = batch_score(
            repo_dir,
            version_dir,
            version,
            date,
            tmp / SCORES_FILE,
            chunk_rows=chunk_rows,
            metadata={RUN_KEY: run_id},
        )
        summary["uri"] = publish_scores(tmp / SCORES_FILE, registry, date, run_id, overwrite)
    return summary


def publish_scores(
    src: Path, registry: RegistryConfig, date: str, run_id: str, overwrite: bool = False
) -> str:
    """Copies a scores file to the dated prefix: created if absent, else replaced if allowed.

    Args:
        src: The scores Parquet file; its footer records ``run_id`` under :data:`RUN_KEY`
            (``batch_score(..., metadata=...)``), which is what a folder registry keeps.
        registry: Registry settings (``uri``, ``endpoint_url``).
        date: ``YYYY-MM-DD``.
        run_id: The publishing run; the same run may replace its own file (a retried step).
        overwrite: Replace another run's file.

    Returns:
        The file's URI.

    Raises:
        OutputError: Another run's file is there and ``overwrite`` is off, or the store fails.
    """
    dest = scores_uri(registry.uri, date)
    if is_s3_uri(dest):
        _publish_s3(src, dest, registry.endpoint_url, run_id, overwrite)
    else:
        _publish_local(src, _local_path(dest), run_id, overwrite)
    log.info("published the scores of %s to %s", date, dest)
    return dest


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def _existing_run(dest: str, registry: RegistryConfig) -> str | None:
    """The run id recorded with the file at ``dest`` (``""`` if none), ``None`` if absent."""
    if is_s3_uri(dest):
        bucket, key = parse_s3_uri(dest)
        s3 = boto3.client("s3", endpoint_url=registry.endpoint_url or None)
        return _head(s3, bucket, key, dest)[0]
    path = _local_path(dest)
    if not path.exists():
        return None
    try:
        footer = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as exc:
        raise OutputError(f"{dest} exists but is not a scores file: {exc}") from exc
    return footer.get(RUN_KEY.encode(), b"").decode()


def _check_replaceable(dest: str, existing: str | None, run_id: str, overwrite: bool) -> None:
    if existing is None or overwrite or (existing and existing == run_id):
        return
    raise OutputError(
        f"{dest} already holds the scores of run {existing or '(unknown)'}; a run never "
        "replaces another run's scores: delete the file, or rerun with overwrite=true"
    )


def _publish_local(src: Path, dest: Path, run_id: str, overwrite: bool) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep(dest.parent, f".{dest.name}.tmp-")
        tmp = dest.with_name(f".{dest.name}.tmp-{owner_tag()}")
        try:
            shutil.copyfile(src, tmp)
            try:
                # link() refuses an existing name: of two runs of one date, one creates it.
                os.link(tmp, dest)
            except FileExistsError:
                existing = pq.read_schema(dest).metadata or {}
                other = existing.get(RUN_KEY.encode(), b"").decode()
                _check_replaceable(str(dest), other, run_id, overwrite)
                os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def _publish_s3(
    src: Path, dest: str, endpoint_url: str | None, run_id: str, overwrite: bool
) -> None:
    bucket, key = parse_s3_uri(dest)
    s3 = boto3.client("s3", endpoint_url=endpoint_url or None)
    metadata = {RUN_KEY: run_id}
    try:
        # One PUT is atomic; If-None-Match makes it create-only.
        if _put(s3, bucket, key, src, metadata, IfNoneMatch="*"):
            return
        other, etag = _head(s3, bucket, key, dest)
        _check_replaceable(dest, other, run_id, overwrite)
        if not _put(s3, bucket, key, src, metadata, IfMatch=etag or "*"):
            raise OutputError(f"{dest} changed while this run replaced it; rerun to retry")
    except (BotoCoreError, ClientError, OSError) as exc:
        raise OutputError(f"cannot write {dest}: {exc}") from exc


def _put(s3, bucket: str, key: str, src: Path, metadata: dict, **condition: str) -> bool:
    """A conditional PUT of the file; False when its condition does not hold."""
    with src.open("rb") as body:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata, **condition)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 409:
                return False
            raise
    return True


def _head(s3, bucket: str, key: str, uri: str) -> tuple[str | None, str | None]:
    """The run id recorded with an object and its ETag, ``(None, None)`` when absent."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None, None
        raise OutputError(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise OutputError(f"cannot read {uri}: {exc}") from exc
    return head.get("Metadata", {}).get(RUN_KEY, ""), head.get("ETag")

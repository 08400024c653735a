"""Transaction logs in S3, fetched from a real S3 HTTP endpoint (moto's server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from boto3.exceptions import S3TransferFailedError

import churn.io.object_store as object_store
from churn.data.sources import resolve_data
from churn.data.synth import generate, make_spec
from churn.errors import ContractError
from churn.io.object_store import fetch
from churn.settings import FeatureConfig


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "data"
    generate(make_spec(150, 400, seed=3), folder)
    return folder


def upload_folder(endpoint: str, bucket: str, folder: Path, prefix: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            s3.upload_file(str(file), bucket, f"{prefix}/{file.relative_to(folder).as_posix()}")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.part")]


def test_one_object_arrives_intact(
    s3_endpoint: str, s3_bucket: str, synth_folder: Path, tmp_path: Path
) -> None:
    upload_folder(s3_endpoint, s3_bucket, synth_folder, "raw")
    got = fetch(f"s3://{s3_bucket}/raw/transactions.parquet", tmp_path, s3_endpoint)
    assert got == tmp_path / "transactions.parquet"
    assert got.read_bytes() == (synth_folder / "transactions.parquet").read_bytes()
    assert leftovers(tmp_path) == []


def test_a_prefix_resolves_like_the_local_data_folder(
    s3_endpoint: str, s3_bucket: str, synth_folder: Path, tmp_path: Path
) -> None:
    upload_folder(s3_endpoint, s3_bucket, synth_folder, "logs/2026-11")
    cfg = FeatureConfig()
    local = resolve_data(str(synth_folder), tmp_path / "local", cfg)
    remote = resolve_data(
        f"s3://{s3_bucket}/logs/2026-11/", tmp_path / "work", cfg, endpoint_url=s3_endpoint
    )
    assert remote.transactions.read_bytes() == local.transactions.read_bytes()
    assert remote.customers is not None and local.customers is not None
    assert remote.customers.read_bytes() == local.customers.read_bytes()
    meta = json.loads((synth_folder / "generator.json").read_text())
    assert remote.observed_until == local.observed_until == meta["observed_until"]
    assert remote.transactions.is_relative_to(tmp_path / "work")


def test_customers_in_s3_beside_a_local_log(
    s3_endpoint: str, s3_bucket: str, synth_folder: Path, tmp_path: Path
) -> None:
    upload_folder(s3_endpoint, s3_bucket, synth_folder, "tables")
    source = resolve_data(
        str(synth_folder / "transactions.parquet"),
        tmp_path,
        FeatureConfig(),
        customers=f"s3://{s3_bucket}/tables/customers.parquet",
        endpoint_url=s3_endpoint,
    )
    assert source.transactions == synth_folder / "transactions.parquet"
    assert source.customers is not None
    assert source.customers.read_bytes() == (synth_folder / "customers.parquet").read_bytes()


def test_missing_objects_and_buckets_name_the_uri(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(ContractError, match=rf"s3://{s3_bucket}/nothing/here: no such object"):
        fetch(f"s3://{s3_bucket}/nothing/here", tmp_path, s3_endpoint)
    with pytest.raises(ContractError, match=r"cannot read s3://no-such-bucket-x/log\.parquet"):
        fetch("s3://no-such-bucket-x/log.parquet", tmp_path, s3_endpoint)
    with pytest.raises(ContractError, match="is not an S3 URI"):
        fetch("s3:///log.parquet", tmp_path, s3_endpoint)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_endpoint_is_a_clear_error(s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=rf"cannot read s3://{s3_bucket}/log\.parquet"):
        fetch(f"s3://{s3_bucket}/log.parquet", tmp_path, "http://127.0.0.1:9")


def test_a_key_that_would_escape_the_folder_is_refused(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="logs/ok.csv", Body=b"x")
    s3.put_object(Bucket=s3_bucket, Key="logs/../../evil.csv", Body=b"x")
    with pytest.raises(ContractError, match=r"'\.\./\.\./evil\.csv' would land outside"):
        fetch(f"s3://{s3_bucket}/logs", tmp_path / "in", s3_endpoint)
    assert not (tmp_path / "evil.csv").exists()
    assert not (tmp_path / "in").exists()


def test_a_failed_download_keeps_the_file_already_there(
    s3_endpoint: str,
    s3_bucket: str,
    synth_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upload_folder(s3_endpoint, s3_bucket, synth_folder, "raw")
    uri = f"s3://{s3_bucket}/raw/transactions.parquet"
    good = fetch(uri, tmp_path, s3_endpoint).read_bytes()
    real_client = boto3.client

    def client_that_breaks_mid_download(*args: object, **kwargs: object):
        s3 = real_client(*args, **kwargs)

        def broken(bucket: str, key: str, filename: str, **kw: object) -> None:
            Path(filename).write_bytes(b"half a file")
            raise S3TransferFailedError("connection reset by peer")

        s3.download_file = broken
        return s3

    monkeypatch.setattr(object_store.boto3, "client", client_that_breaks_mid_download)
    with pytest.raises(ContractError, match=rf"cannot read {uri}: connection reset"):
        fetch(uri, tmp_path, s3_endpoint)
    assert (tmp_path / "transactions.parquet").read_bytes() == good
    assert leftovers(tmp_path) == []

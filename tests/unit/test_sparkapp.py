"""The Spark feature job's SparkApplication fits the Spark Operator's CRD and is locked down.

Checked against the ``v1beta2`` schema of the ``sparkapplications.sparkoperator.k8s.io`` CRD
(``tests/schemas/``), unknown fields refused as ``kubectl apply --validate=strict`` would.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import pytest

from churn.errors import PipelineError
from pipelines.sparkapp import MAIN_APPLICATION_FILE, SparkJobSpec, build_spark_application

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "sparkapplication-v1beta2.schema.json.gz"


def strict(schema: object) -> object:
    """The schema with unknown fields refused wherever the CRD lists the known ones."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, doc: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def spec(**overrides: object) -> SparkJobSpec:
    values: dict = {
        "name": "churn-features-20240101",
        "namespace": "churn",
        "image": "ghcr.io/churn-platform/churn-spark:0.1.0",
        "transactions_uri": "s3a://churn-data/transactions.parquet",
        "out_uri": "s3a://churn-features/snapshots/20240101",
        "bin_days": 7,
        "seq_len": 52,
        "cutoffs": ("2023-10-01", "2023-11-01"),
        "endpoint_url": "http://seaweedfs.kubeflow:8333",
    }
    return SparkJobSpec(**{**values, **overrides})


def test_spark_application_fits_the_crd(validator: jsonschema.Draft7Validator) -> None:
    app = build_spark_application(spec())
    assert errors(validator, app) == []
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert app["spec"]["type"] == "Python" and app["spec"]["mode"] == "cluster"


def test_the_job_runs_the_feature_module_with_its_arguments() -> None:
    app = build_spark_application(spec(customers_uri="s3a://churn-data/customers.parquet"))
    assert app["spec"]["mainApplicationFile"] == MAIN_APPLICATION_FILE
    assert MAIN_APPLICATION_FILE.endswith("/site-packages/churn/features/spark_job.py")
    args = app["spec"]["arguments"]
    assert dict(zip(args[::2], args[1::2], strict=True)) == {
        "--transactions": "s3a://churn-data/transactions.parquet",
        "--out": "s3a://churn-features/snapshots/20240101",
        "--bin-days": "7",
        "--seq-len": "52",
        "--cutoffs": "2023-10-01,2023-11-01",
        "--customers": "s3a://churn-data/customers.parquet",
    }
    assert "--cutoffs" not in build_spark_application(spec(cutoffs=()))["spec"]["arguments"]


def test_credentials_come_only_from_the_secret() -> None:
    app = build_spark_application(spec())
    for role in ("driver", "executor"):
        env = {e["name"]: e for e in app["spec"][role]["env"]}
        assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        for key, entry in env.items():
            assert "value" not in entry
            assert entry["valueFrom"]["secretKeyRef"] == {"name": "churn-s3", "key": key}
    hadoop = app["spec"]["hadoopConf"]
    assert hadoop["fs.s3a.endpoint"] == "http://seaweedfs.kubeflow:8333"
    assert hadoop["fs.s3a.path.style.access"] == "true"
    assert not any("secret" in k.lower() or "access.key" in k.lower() for k in hadoop)


def test_driver_and_executors_run_non_root_with_a_read_only_root() -> None:
    app = build_spark_application(spec())
    volumes = {v["name"] for v in app["spec"]["volumes"]}
    for role in ("driver", "executor"):
        pod = app["spec"][role]
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["allowPrivilegeEscalation"] is False
        assert {m["name"] for m in pod["volumeMounts"]} <= volumes
    assert app["spec"]["driver"]["serviceAccount"] == "churn-spark"
    assert app["spec"]["executor"]["instances"] == 2


def test_the_schema_check_catches_a_wrong_type(validator: jsonschema.Draft7Validator) -> None:
    app = build_spark_application(spec())
    app["spec"]["executor"]["instances"] = 0
    app["spec"]["driver"]["memoryMb"] = 2048
    found = errors(validator, app)
    assert any("instances" in e for e in found) and any("memoryMb" in e for e in found), found


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"transactions_uri": "/data/tx.parquet"}, "--transactions"),
        ({"out_uri": "s3://b/out"}, "--out"),
        ({"executors": 0}, "executors"),
        ({"seq_len": 0}, "seq_len"),
    ],
)
def test_a_job_the_pods_could_not_run_is_refused(overrides: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        build_spark_application(spec(**overrides))

"""The Spark feature job as a Kubeflow Spark Operator ``SparkApplication`` (``v1beta2``).

The job is ``churn.features.spark_job`` (the same code ``churn features build --engine spark``
runs in local mode); in a cluster the operator runs it in cluster mode with a driver and
executors. The image must be a Spark image (the operator's driver and executors start through
the Spark distribution's entrypoint) with the churn wheel installed in ``/opt/venv``, as the
project's Dockerfiles install it, which fixes the path of the job's file in
:data:`MAIN_APPLICATION_FILE`.

Data is read and written through ``s3a://`` with credentials from the S3 Secret (environment
variables, read by Hadoop's ``EnvironmentVariableCredentialsProvider``), never from the
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from churn.errors import PipelineError

API_VERSION = "sparkoperator.k8s.io/v1beta2"
SPARK_VERSION = "4.0.1"
# The installed module: python:3.11 images with the project's venv at /opt/venv.
MAIN_APPLICATION_FILE = "local:///opt/venv/lib/python3.11/site-packages/churn/features/spark_job.py"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
UID = 1000
LABELS = {"app.kubernetes.io/part-of": "churn-platform"}


@dataclass(frozen=True)
class SparkJobSpec:
    """One run of the Spark feature job.

    Attributes:
        name: The SparkApplication's name.
        namespace: Namespace it runs in (holds the S3 Secret and the service account).
        image: Spark image with the churn package installed.
        transactions_uri: The transaction log (``s3a://``).
        out_uri: Output folder (``s3a://``); must not exist.
        bin_days: Days per sequence bin.
        seq_len: Bins per sequence.
        cutoffs: Snapshot cutoff dates; empty picks them automatically.
        customers_uri: Optional customers table (``s3a://``).
        endpoint_url: S3 endpoint of a non-AWS store (MinIO, SeaweedFS); ``""`` for AWS.
        service_account: ServiceAccount of the driver (it creates the executor pods).
        s3_secret: Secret with the S3 credentials; ``""`` when the account has an IAM role.
        executors: Executor pods.
        driver_cores: Cores of the driver.
        driver_memory: Heap of the driver (Spark's notation, e.g. ``2g``).
        executor_cores: Cores per executor.
        executor_memory: Heap per executor.
        spark_version: Spark version of the image.
    """

    name: str
    namespace: str
    image: str
    transactions_uri: str
    out_uri: str
    bin_days: int = 7
    seq_len: int = 52
    cutoffs: tuple[str, ...] = ()
    customers_uri: str = ""
    endpoint_url: str = ""
    service_account: str = "churn-spark"
    s3_secret: str = "churn-s3"
    executors: int = 2
    driver_cores: int = 1
    driver_memory: str = "2g"
    executor_cores: int = 2
    executor_memory: str = "4g"
    spark_version: str = SPARK_VERSION


def arguments(spec: SparkJobSpec) -> list[str]:
    """The job's command line (see ``churn.features.spark_job``)."""
    args = ["--transactions", spec.transactions_uri, "--out", spec.out_uri]
    args += ["--bin-days", str(spec.bin_days), "--seq-len", str(spec.seq_len)]
    if spec.cutoffs:
        args += ["--cutoffs", ",".join(spec.cutoffs)]
    if spec.customers_uri:
        args += ["--customers", spec.customers_uri]
    return args


def build_spark_application(spec: SparkJobSpec) -> dict[str, Any]:
    """The ``SparkApplication`` manifest for ``spec``.

    Raises:
        PipelineError: A count is below 1 or a URI is not ``s3a://`` (the driver and
            executors share no disk with whoever submits the job).
    """
    if min(spec.bin_days, spec.seq_len, spec.executors, spec.driver_cores, spec.executor_cores) < 1:
        raise PipelineError(
            "bin_days, seq_len, executors, driver_cores and executor_cores must be >= 1"
        )
    uris = {"transactions": spec.transactions_uri, "out": spec.out_uri}
    if spec.customers_uri:
        uris["customers"] = spec.customers_uri
    for label, uri in uris.items():
        if not uri.startswith("s3a://"):
            raise PipelineError(f"--{label} {uri!r}: the Spark pods read and write s3a:// only")
    hadoop = {
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.aws.credentials.provider": (
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
            if spec.s3_secret
            else "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
    }
    if spec.endpoint_url:
        # MinIO and SeaweedFS serve buckets as paths, not as virtual hosts.
        hadoop |= {"fs.s3a.endpoint": spec.endpoint_url, "fs.s3a.path.style.access": "true"}
    return {
        "apiVersion": API_VERSION,
        "kind": "SparkApplication",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": dict(LABELS)},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": spec.image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": MAIN_APPLICATION_FILE,
            "arguments": arguments(spec),
            "sparkVersion": spec.spark_version,
            "hadoopConf": hadoop,
            "sparkConf": {"spark.sql.session.timeZone": "UTC"},
            "restartPolicy": {"type": "Never"},
            "volumes": [{"name": "spark-scratch", "emptyDir": {"sizeLimit": "20Gi"}}],
            "driver": {
                **_pod(spec, spec.driver_cores, spec.driver_memory),
                "serviceAccount": spec.service_account,
            },
            "executor": {
                **_pod(spec, spec.executor_cores, spec.executor_memory),
                "instances": spec.executors,
            },
        },
    }


def _pod(spec: SparkJobSpec, cores: int, memory: str) -> dict[str, Any]:
    """Resources, credentials and a non-root, read-only container for a driver or executor."""
    env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": spec.s3_secret, "key": key}}}
        for key in (S3_SECRET_KEYS if spec.s3_secret else ())
    ]
    return {
        "cores": cores,
        "coreLimit": str(cores),
        "memory": memory,
        "labels": dict(LABELS),
        "env": env,
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # Spark writes shuffle files and its work folders under /tmp (spark.local.dir).
        "volumeMounts": [{"name": "spark-scratch", "mountPath": "/tmp"}],
    }

"""Distributed training on Kubeflow Trainer: the TrainJob fits the CRD, the step waits for it.

The manifest is checked against the ``v1alpha1`` schema of Trainer's ``trainjobs`` CRD
(``tests/schemas/``), with unknown fields refused as ``kubectl apply --validate=strict`` would.
Submission and waiting run the kubernetes client against a stand-in API on 127.0.0.1
(``tests/stub_trainer_api.py``); the end-to-end case lets the stand-in controller run the job's
real command against a real S3 endpoint (moto).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from churn.errors import PipelineError
from churn.io.object_store import upload_folder
from churn.settings import PipelineConfig
from pipelines.trainjob import (
    RUNTIME,
    TrainJobSpec,
    build_train_job,
    custom_objects_api,
    job_name,
    run_train_job,
    train_on_cluster,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    schema = strict(
        json.loads(gzip.decompress((SCHEMAS / "trainjob-v1alpha1.schema.json.gz").read_bytes()))
    )
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, doc: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def spec(**overrides: object) -> TrainJobSpec:
    values: dict = {
        "name": "churn-train-1",
        "namespace": "churn",
        "image": "ghcr.io/churn-platform/churn-gpu:0.1.0",
        "nodes": 2,
        "gpus_per_node": 4,
        "dataset_uri": "s3://pipelines/run/training_set",
        "model_uri": "s3://pipelines/run/model",
        "node_selector": {"cloud.google.com/gke-nodepool": "gpu-pool"},
        "toleration_key": "nvidia.com/gpu",
    }
    return TrainJobSpec(**{**values, **overrides})


def node_pod(job: dict) -> dict:
    (patch,) = job["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return replicated["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(("nodes", "gpus"), [(2, 4), (3, 0)])
def test_train_job_fits_the_crd_with_n_nodes_and_m_gpus(
    validator: jsonschema.Draft7Validator, nodes: int, gpus: int
) -> None:
    job = build_train_job(spec(nodes=nodes, gpus_per_node=gpus))

    assert errors(validator, job) == []
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == nodes
    assert trainer["numProcPerNode"] == max(gpus, 1)
    limits = trainer["resourcesPerNode"]["limits"]
    assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    assert trainer["command"][:3] == ["python", "-m", "churn.model.train_entry"]
    args = dict(zip(trainer["command"][3::2], trainer["command"][4::2], strict=True))
    assert args["--dataset"] == "s3://pipelines/run/training_set"
    assert args["--out"] == "s3://pipelines/run/model"


def test_train_job_targets_the_torch_distributed_runtime_and_its_node_container() -> None:
    runtime = yaml.safe_load((SCHEMAS / "torch-distributed-runtime.yaml").read_text())
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    (container,) = replicated["template"]["spec"]["template"]["spec"]["containers"]
    job = build_train_job(spec())

    assert job["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"] == RUNTIME
    # A runtime patch is merged by name: a name the runtime lacks would add a second container.
    (patch,) = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"
    ]
    assert patch["name"] == replicated["name"]
    assert [c["name"] for c in node_pod(job)["containers"]] == [container["name"]]


def test_train_job_runs_non_root_read_only_with_credentials_only_from_the_secret() -> None:
    job = build_train_job(spec())
    pod = node_pod(job)

    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/dev/shm"}
    env = {e["name"]: e for e in job["spec"]["trainer"]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "churn-s3", "key": key}
    assert pod["serviceAccountName"] == "churn-trainer"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": "gpu-pool"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_nodes_get_no_gpu_placement() -> None:
    pod = node_pod(build_train_job(spec(gpus_per_node=0, node_selector={}, toleration_key="")))
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_the_schema_check_catches_a_wrong_type(validator: jsonschema.Draft7Validator) -> None:
    job = build_train_job(spec())
    job["spec"]["trainer"]["numNodes"] = "two"
    job["spec"]["trainer"]["gpus"] = 4
    found = errors(validator, job)
    assert any("numNodes" in e for e in found) and any("gpus" in e for e in found), found


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nodes": 0}, "train_nodes must be >= 1"),
        ({"gpus_per_node": -1}, "gpus_per_node >= 0"),
        ({"dataset_uri": "/tmp/pipeline/training_set"}, "training set artifact is at"),
        ({"model_uri": "gs://b/model"}, "only s3://"),
    ],
)
def test_a_train_job_the_nodes_could_not_run_is_refused_naming_why(
    overrides: dict, message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        build_train_job(spec(**overrides))


def test_job_names_are_dns_labels_stable_per_output_uri() -> None:
    a, b = job_name("s3://p/run-1/train/model"), job_name("s3://p/run-2/train/model")
    assert a == job_name("s3://p/run-1/train/model") and a != b
    assert len(a) <= 63 and a.replace("-", "").isalnum() and a == a.lower()


@pytest.fixture
def trainer_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """The stand-in Trainer API, reached through a kubeconfig as a cluster would be."""
    import kubernetes.config.kube_config as kube_config
    from stub_trainer_api import StubTrainer

    stub = StubTrainer(
        steps=2,
        env={
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(PROJECT_ROOT),
        },
    ).start()
    kubeconfig = stub.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield stub
    stub.stop()


def test_the_step_submits_the_job_and_returns_once_it_completes(trainer_api) -> None:
    job = build_train_job(spec())
    done = run_train_job(job, timeout_s=30, poll_s=0.01, api=custom_objects_api())

    assert done["status"]["conditions"][0]["type"] == "Complete"
    (post,) = trainer_api.calls("POST")
    assert post[1] == "/apis/trainer.kubeflow.org/v1alpha1/namespaces/churn/trainjobs"
    assert post[2]["spec"] == job["spec"]
    assert len(trainer_api.calls("GET")) == 3


def test_a_failed_job_fails_the_step_with_its_reason(trainer_api) -> None:
    trainer_api.failures["churn-train-1"] = ("JobSetFailed", "jobset node-0 exited 1: OOMKilled")
    with pytest.raises(PipelineError, match=r"churn/churn-train-1 failed: JobSetFailed: .*OOM"):
        run_train_job(build_train_job(spec()), timeout_s=30, poll_s=0.01, api=custom_objects_api())


def test_a_job_that_never_completes_fails_the_step_at_the_timeout(trainer_api) -> None:
    trainer_api.steps = 10**6
    ticks = iter(range(1000))
    with pytest.raises(PipelineError, match=r"did not complete within 5 s.*describe trainjob"):
        run_train_job(
            build_train_job(spec()),
            timeout_s=5,
            poll_s=0.0,
            api=custom_objects_api(),
            clock=lambda: float(next(ticks)),
        )


def test_a_refused_submission_is_a_clear_error(trainer_api) -> None:
    trainer_api.refuse_create = True
    with pytest.raises(PipelineError, match=r"cannot create TrainJob churn/churn-train-1: 403"):
        run_train_job(build_train_job(spec()), timeout_s=5, poll_s=0.01, api=custom_objects_api())


def test_a_retried_step_waits_for_the_job_it_submitted_before(trainer_api) -> None:
    job = build_train_job(spec())
    api = custom_objects_api()
    run_train_job(job, timeout_s=30, poll_s=0.01, api=api)
    again = run_train_job(job, timeout_s=30, poll_s=0.01, api=api)

    assert again["status"]["conditions"][0]["type"] == "Complete"
    assert len(trainer_api.calls("POST")) == 2  # the second answered 409 AlreadyExists


@pytest.mark.usefixtures("one_torch_thread")
def test_train_on_cluster_trains_through_s3_and_fills_the_step_output(
    trainer_api,
    tmp_path: Path,
    make_training_set: Callable[..., Path],
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    trainer_api.run_commands = True
    dataset = make_training_set(tmp_path, n=600)
    root = f"s3://{s3_bucket}/churn-training/run-1"
    upload_folder(dataset, f"{root}/build-training-set/training_set", s3_endpoint)
    model_path = tmp_path / "step" / "model"

    summary = train_on_cluster(
        training_set_uri=f"{root}/build-training-set/training_set",
        model_uri=f"{root}/train/model",
        model_path=str(model_path),
        nodes=2,
        gpus_per_node=0,
        threshold_metric="f1",
        model_settings={},
        train_settings={"epochs": 1, "num_threads": 1},
        pipeline=PipelineConfig(artifact_endpoint_url=s3_endpoint),
        api=custom_objects_api(),
        poll_s=0.01,
    )

    assert sorted(p.name for p in model_path.iterdir()) == ["model.json", "model.pt"]
    meta = json.loads((model_path / "model.json").read_text())
    assert meta["training"]["dataset"] == f"{root}/build-training-set/training_set"
    assert summary["epochs_run"] == 1 and summary["threshold"] == meta["threshold"]
    (post,) = trainer_api.calls("POST")
    assert post[2]["spec"]["trainer"]["image"] == PipelineConfig().image  # CPU nodes
    assert post[2]["spec"]["runtimeRef"]["name"] == PipelineConfig().training_runtime


def test_a_training_failure_inside_the_job_names_the_cause(
    trainer_api, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    trainer_api.run_commands = True
    with pytest.raises(PipelineError, match=r"failed: JobSetFailed: error: .*no such object"):
        train_on_cluster(
            training_set_uri=f"s3://{s3_bucket}/missing/training_set",
            model_uri=f"s3://{s3_bucket}/missing/model",
            model_path=str(tmp_path / "model"),
            nodes=2,
            gpus_per_node=0,
            threshold_metric="f1",
            model_settings={},
            train_settings={"epochs": 1},
            pipeline=PipelineConfig(artifact_endpoint_url=s3_endpoint),
            api=custom_objects_api(),
            poll_s=0.01,
        )
    assert not (tmp_path / "model").exists()

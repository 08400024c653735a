"""The compiled pipeline YAML: GPU placement, resources, images, retry, gate condition.

Also the small helpers around compiling and submitting (cron, struct parameters, arguments).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from churn.cli import app
from churn.data.cutoffs import parse_cutoff_list
from churn.errors import PipelineError
from churn.settings import ModelConfig, PipelineConfig, Settings, TrainConfig, parse_section
from pipelines.arguments import RunArguments, check_arguments
from pipelines.cluster import compile_pipeline, kfp_cron, schedule, submit

CPU_IMAGE = "registry.example.com/churn:test"
GPU_IMAGE = "registry.example.com/churn-gpu:test"
TASKS = {
    "build-features",
    "build-training-set",
    "train",
    "evaluate",
    "gate",
    "register",
    "deploy",
    "deploy-remote",
    "record-rejection",
}


def gpu_settings() -> Settings:
    settings = Settings()
    settings.pipeline = PipelineConfig(
        image=CPU_IMAGE,
        gpu_image=GPU_IMAGE,
        accelerator_type="nvidia.com/gpu",
        accelerator_count=2,
        gpu_node_selector_key="pool",
        gpu_node_selector_value="a100",
        gpu_toleration_key="nvidia.com/gpu",
        cpu_request="500m",
        memory_request="1Gi",
        train_cpu_request="6",
        train_memory_request="24Gi",
        train_retries=3,
    )
    settings.eval.auc_threshold = 0.72
    settings.registry.uri = "s3://models/churn"
    settings.registry.endpoint_url = "http://minio.storage:9000"
    return settings


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The pipeline spec and the Kubernetes platform spec of the compiled YAML."""
    out = compile_pipeline(tmp_path_factory.mktemp("compiled") / "p.yaml", gpu_settings())
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    return spec, platform


def executors(spec: dict) -> dict[str, dict]:
    return {
        name.removeprefix("exec-"): body["container"]
        for name, body in spec["deploymentSpec"]["executors"].items()
    }


def all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the root DAG and of the nested condition DAGs, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_every_step_has_an_executor(compiled: tuple[dict, dict]) -> None:
    assert set(executors(compiled[0])) == TASKS


def test_train_requests_the_configured_accelerator(compiled: tuple[dict, dict]) -> None:
    accelerator = executors(compiled[0])["train"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert accelerator["resourceCount"] == "2"


def test_only_train_asks_for_an_accelerator(compiled: tuple[dict, dict]) -> None:
    with_gpu = [n for n, c in executors(compiled[0]).items() if "accelerator" in c["resources"]]
    assert with_gpu == ["train"]


def test_train_lands_on_the_gpu_pool(compiled: tuple[dict, dict]) -> None:
    platform_executors = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = platform_executors["exec-train"]
    assert train["nodeSelector"]["labels"] == {"pool": "a100"}
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_only_train_lands_on_the_gpu_pool(compiled: tuple[dict, dict]) -> None:
    platform_executors = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    placed = {k for k, v in platform_executors.items() if "nodeSelector" in v or "tolerations" in v}
    assert placed == {"exec-train"}


def test_s3_credentials_come_from_the_secret(compiled: tuple[dict, dict]) -> None:
    platform_executors = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {k for k, v in platform_executors.items() if "secretAsEnv" in v}
    # The feature step reads s3:// logs; the gate and the release steps use the registry; the
    # training step fetches the model a TrainJob wrote back from the artifact store.
    assert with_secret == {
        "exec-build-features",
        "exec-train",
        "exec-gate",
        "exec-register",
        "exec-deploy",
        "exec-deploy-remote",
    }
    (entry,) = platform_executors["exec-register"]["secretAsEnv"]
    assert entry["secretName"] == "churn-s3"
    assert {m["envVar"] for m in entry["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


def test_every_task_requests_cpu_and_memory(compiled: tuple[dict, dict]) -> None:
    for name, container in executors(compiled[0]).items():
        resources = container["resources"]
        expected = ("6", "24Gi") if name == "train" else ("500m", "1Gi")
        assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == expected


def test_images_are_the_configured_ones(compiled: tuple[dict, dict]) -> None:
    for name, container in executors(compiled[0]).items():
        assert container["image"] == (GPU_IMAGE if name == "train" else CPU_IMAGE), name


def test_components_do_not_install_packages_at_start(compiled: tuple[dict, dict]) -> None:
    for name, container in executors(compiled[0]).items():
        command = " ".join(container["command"])
        assert "pip install" not in command, name
        assert "kfp.dsl.executor_main" in command, name


def test_train_is_retried(compiled: tuple[dict, dict]) -> None:
    retry = all_tasks(compiled[0])["train"]["retryPolicy"]
    assert retry["maxRetryCount"] == 3


def test_the_gate_compares_a_float_output_with_a_float(compiled: tuple[dict, dict]) -> None:
    spec = compiled[0]
    outputs = spec["components"]["comp-gate"]["outputDefinitions"]["parameters"]
    assert outputs["Output"]["parameterType"] == "NUMBER_DOUBLE"
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = {
        task["taskInfo"]["name"]: task["triggerPolicy"]["condition"] for task in branches.values()
    }
    promote = "inputs.parameter_values['pipelinechannel--gate-Output'] == 1.0"
    assert conditions == {"promote": promote, "reject": f"!({promote})"}
    # An int/float mix would compile to double(...), which kfp.local cannot evaluate.
    assert all("double(" not in c and "int(" not in c for c in conditions.values())


def test_register_and_deploy_run_only_on_promotion(compiled: tuple[dict, dict]) -> None:
    components = compiled[0]["components"]

    def dag(name: str) -> dict:
        return components[name]["dag"]["tasks"]

    def branch(tasks: dict, negated: bool) -> dict:
        (task,) = [
            t for t in tasks.values() if t["triggerPolicy"]["condition"].startswith("!(") == negated
        ]
        return dag(task["componentRef"]["name"])

    gate = dag("comp-condition-branches-1")
    promote, reject = branch(gate, negated=False), branch(gate, negated=True)
    assert set(promote) == {"register", "condition-branches-2"}
    assert set(reject) == {"record-rejection"}
    assert promote["condition-branches-2"]["dependentTasks"] == ["register"]
    # Only a local deployment reads the run's artifacts; KServe and none read none.
    targets = dag(promote["condition-branches-2"]["componentRef"]["name"])
    local = "inputs.parameter_values['pipelinechannel--deploy_target'] == 'local'"
    assert {t["triggerPolicy"]["condition"] for t in targets.values()} == {local, f"!({local})"}
    assert set(branch(targets, negated=False)) == {"deploy"}
    assert set(branch(targets, negated=True)) == {"deploy-remote"}
    assert set(components["comp-deploy"]["inputDefinitions"]["artifacts"]) == {
        "training_set",
        "feature_repo",
    }
    assert "artifacts" not in components["comp-deploy-remote"]["inputDefinitions"]


def test_steps_that_read_or_move_the_champion_are_never_cached(
    compiled: tuple[dict, dict],
) -> None:
    tasks = all_tasks(compiled[0])
    for name in ("gate", "register", "deploy", "deploy-remote", "record-rejection"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache"), name
    assert tasks["train"]["cachingOptions"]["enableCache"]


def test_parameter_defaults_come_from_the_settings(compiled: tuple[dict, dict]) -> None:
    params = compiled[0]["root"]["inputDefinitions"]["parameters"]
    assert params["auc_threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert params["auc_threshold"]["defaultValue"] == 0.72
    registry = params["registry"]["defaultValue"]
    assert params["registry"]["parameterType"] == "STRUCT"
    assert registry["uri"] == "s3://models/churn"
    # One S3 store for data and models unless a run says otherwise.
    assert params["data_endpoint_url"]["defaultValue"] == "http://minio.storage:9000"
    assert registry["endpoint_url"] == "http://minio.storage:9000"
    assert params["deploy_target"]["defaultValue"] == "kserve"
    assert params["cutoffs"]["defaultValue"] == ""
    assert params["epochs"]["defaultValue"] == TrainConfig().epochs
    assert params["model"]["defaultValue"]["dilations"] == ModelConfig().dilations
    assert "epochs" not in params["train"]["defaultValue"]
    # One declaration: the compiled signature is RunArguments' fields.
    assert set(params) == set(RunArguments.model_fields)


def test_without_a_gpu_pool_train_gets_no_accelerator_or_placement(tmp_path: Path) -> None:
    settings = Settings()
    settings.pipeline = PipelineConfig(
        accelerator_count=0,
        gpu_node_selector_key="",
        gpu_toleration_key="",
        train_retries=0,
        s3_secret_name="",
    )
    spec, *rest = list(
        yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", settings).read_text())
    )
    train = executors(spec)["train"]
    assert "accelerator" not in train["resources"]
    assert rest == []  # no Kubernetes platform spec at all
    assert "retryPolicy" not in all_tasks(spec)["train"]


def test_cli_compiles_the_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "churn_pipeline.yaml"
    result = CliRunner().invoke(app, ["pipeline", "compile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["pipelineInfo"]["name"] == "churn-training"


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 3 * * 1", "0 0 3 * * 1"),
        ("30 0 3 * * 1", "30 0 3 * * 1"),
        (" 0  3 * * 1 ", "0 0 3 * * 1"),
    ],
)
def test_kfp_cron_has_six_fields(cron: str, expected: str) -> None:
    assert kfp_cron(cron) == expected


@pytest.mark.parametrize("cron", ["", "0 3 * *", "0 0 0 3 * * 1"])
def test_kfp_cron_rejects_other_field_counts(cron: str) -> None:
    with pytest.raises(PipelineError, match="5 fields"):
        kfp_cron(cron)


def test_struct_parameters_get_their_integers_back_from_protobuf_doubles() -> None:
    cfg = parse_section(
        ModelConfig, {"hidden": 16.0, "dilations": [1.0, 2.0], "dropout": 0.2}, "model"
    )
    assert cfg.hidden == 16 and isinstance(cfg.hidden, int)
    assert cfg.dilations == [1, 2] and all(isinstance(d, int) for d in cfg.dilations)
    assert cfg.dropout == 0.2
    assert cfg.kernel_size == ModelConfig().kernel_size


def test_struct_parameters_refuse_unknown_fields_fractional_integers_and_bad_ranges() -> None:
    with pytest.raises(ValueError, match=r"unknown configuration field model\.width"):
        parse_section(ModelConfig, {"width": 3}, "model")
    with pytest.raises(ValueError, match=r"configuration field model\.hidden: .*fractional"):
        parse_section(ModelConfig, {"hidden": 16.5}, "model")
    with pytest.raises(ValueError, match=r"configuration field model\.hidden: .*greater than"):
        parse_section(ModelConfig, {"hidden": 0}, "model")


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"deploy_target": "cloud"}, "argument deploy_target: Input should be 'kserve'"),
        ({"auc_threshold": 1.2}, "argument auc_threshold: .*less than or equal to 1"),
        ({"epochs": 0}, "argument epochs"),
        ({"horizon_days": 0}, "argument horizon_days"),
        ({"registry": {"model_name": "../x"}}, "argument registry.model_name"),
        ({"epoch": 3}, "unknown argument epoch"),
    ],
)
def test_check_arguments_rejects_bad_values(arguments: dict, match: str) -> None:
    with pytest.raises(PipelineError, match=match):
        check_arguments(arguments)


def test_check_arguments_accepts_good_values() -> None:
    check_arguments({"deploy_target": "none", "auc_threshold": 0.0, "epochs": 1})


def test_parse_cutoff_list() -> None:
    assert parse_cutoff_list("") is None
    assert parse_cutoff_list(" 1997-06-01, 1997-09-01 ,") == ["1997-06-01", "1997-09-01"]


class FakeClient:
    """Records what submit() and schedule() ask of ``kfp.Client``."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, host: str) -> None:
        self.calls.append(("init", {"host": host}))

    def create_run_from_pipeline_package(self, path: str, **kwargs: object) -> object:
        assert next(yaml.safe_load_all(Path(path).read_text()))["pipelineInfo"]["name"]
        self.calls.append(("run", kwargs))
        return SimpleNamespace(run_id="run-1")

    def create_experiment(self, name: str) -> object:
        self.calls.append(("experiment", {"name": name}))
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs: object) -> object:
        package = Path(str(kwargs["pipeline_package_path"]))
        name = next(yaml.safe_load_all(package.read_text()))["pipelineInfo"]["name"]
        self.calls.append(("recurring", {**kwargs, "pipeline_name": name}))
        return SimpleNamespace(recurring_run_id="job-1")


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.calls = []
    monkeypatch.setattr("kfp.Client", FakeClient)
    return FakeClient


def cluster_settings() -> Settings:
    settings = Settings()
    settings.registry.uri = "s3://models/churn"
    return settings


def test_submit_creates_one_run_with_the_arguments(fake_client: type[FakeClient]) -> None:
    run_id = submit("http://kfp:8080", cluster_settings(), "churn", "nightly", {"epochs": 3})
    assert run_id == "run-1"
    assert fake_client.calls[0] == ("init", {"host": "http://kfp:8080"})
    kind, kwargs = fake_client.calls[1]
    assert kind == "run"
    assert kwargs == {
        "arguments": {"epochs": 3},
        "run_name": "nightly",
        "experiment_name": "churn",
        # The dedicated account that may deploy, not KFP's shared pipeline-runner.
        "service_account": "churn-pipeline",
    }


def test_schedule_creates_a_non_overlapping_recurring_run(fake_client: type[FakeClient]) -> None:
    job_id = schedule("http://kfp:8080", "0 3 * * 1", cluster_settings(), "churn", "weekly", {})
    assert job_id == "job-1"
    kind, kwargs = fake_client.calls[-1]
    assert kind == "recurring"
    assert kwargs["experiment_id"] == "exp-1"
    assert kwargs["job_name"] == "weekly"
    assert kwargs["cron_expression"] == "0 0 3 * * 1"
    assert kwargs["max_concurrency"] == 1 and kwargs["no_catchup"] is True
    assert kwargs["service_account"] == "churn-pipeline"


def test_bad_arguments_fail_before_the_cluster_is_contacted(fake_client: type[FakeClient]) -> None:
    with pytest.raises(PipelineError, match="deploy_target"):
        submit("http://kfp:8080", cluster_settings(), "churn", "r", {"deploy_target": "prod"})
    with pytest.raises(PipelineError, match="5 fields"):
        schedule("http://kfp:8080", "weekly", cluster_settings(), "churn", "weekly")
    assert fake_client.calls == []


def test_a_folder_registry_is_refused_for_cluster_runs(fake_client: type[FakeClient]) -> None:
    # The default registry is a folder: each pod would register into its own empty disk.
    with pytest.raises(PipelineError, match=r"registry '\.churn/registry' is a folder"):
        submit("http://kfp:8080", Settings(), "churn", "r")
    with pytest.raises(PipelineError, match=r"registry '/tmp/models' is a folder"):
        schedule(
            "http://kfp:8080",
            "0 3 * * 1",
            cluster_settings(),
            "churn",
            "w",
            {"registry": {"uri": "/tmp/models"}},
        )
    assert fake_client.calls == []
    submit("http://kfp:8080", Settings(), "churn", "r", {"registry": {"uri": "s3://models/churn"}})
    # A section travels whole: the fields the run did not name keep the settings' values.
    sent = fake_client.calls[-1][1]["arguments"]
    assert sent == {
        "registry": {
            "uri": "s3://models/churn",
            "model_name": "churn",
            "reference_split": "train",
            "reference_max_rows": 20000,
            "reference_seed": 0,
        }
    }


def test_an_unreachable_cluster_is_a_clear_error() -> None:
    with pytest.raises(
        PipelineError, match=r"cannot reach Kubeflow Pipelines at http://127\.0\.0\.1:9"
    ):
        submit("http://127.0.0.1:9", cluster_settings(), "churn", "r")


def test_distributed_training_is_a_run_parameter_off_by_default(
    compiled: tuple[dict, dict],
) -> None:
    params = compiled[0]["root"]["inputDefinitions"]["parameters"]
    assert params["train_nodes"]["defaultValue"] == 1
    assert params["gpus_per_node"]["defaultValue"] == 1
    train_inputs = compiled[0]["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert {"train_nodes", "gpus_per_node", "pipeline_settings"} <= train_inputs.keys()


def test_an_unknown_pipeline_name_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    with pytest.raises(PipelineError, match=r"'nope' is not a pipeline of this project.*training"):
        compile_pipeline(out, Settings(home=tmp_path), "nope")
    assert not out.exists()


def container_env(spec: dict, executor: str) -> dict[str, str]:
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def shared_store_settings() -> Settings:
    settings = cluster_settings()
    settings.features.shared_store = "/mnt/features"
    settings.features.shared_store_config = "production"
    settings.pipeline.feature_store_pvc = "churn-features"
    return settings


def test_the_feature_pipeline_compiles_one_uncached_step_on_the_shared_store(
    tmp_path: Path,
) -> None:
    out = compile_pipeline(tmp_path / "f.yaml", shared_store_settings(), "features")
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    assert spec["pipelineInfo"]["name"] == "churn-features"
    tasks = all_tasks(spec)
    assert set(tasks) == {"publish-features"}
    assert not tasks["publish-features"].get("cachingOptions", {}).get("enableCache")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["features"]["defaultValue"]["shared_store"] == "/mnt/features"
    assert {"data", "customers", "cutoffs", "observed_until"} <= params.keys()
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executor = k8s["exec-publish-features"]
    assert executor["pvcMount"][0]["mountPath"] == "/mnt/features"
    assert executor["pvcMount"][0]["constant"] == "churn-features"
    secrets = {s["secretName"]: s for s in executor["secretAsEnv"]}
    assert {e["envVar"] for e in secrets["churn-feast"]["keyToEnv"]} == {
        "FEAST_REGISTRY_URL",
        "REDIS_CONNECTION_STRING",
    }
    # The production file's Spark offline store runs in the step's pod, which mounts the store.
    assert container_env(spec, "exec-publish-features")["SPARK_MASTER_URL"] == "local[*]"


def test_the_feature_pipeline_needs_a_shared_store(tmp_path: Path) -> None:
    out = tmp_path / "f.yaml"
    with pytest.raises(PipelineError, match=r"set features\.shared_store"):
        compile_pipeline(out, cluster_settings(), "features")
    assert not out.exists()


def test_training_on_the_shared_store_never_caches_the_step_that_checks_it(
    tmp_path: Path, compiled: tuple[dict, dict]
) -> None:
    out = compile_pipeline(tmp_path / "t.yaml", shared_store_settings())
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    assert not all_tasks(spec)["build-features"].get("cachingOptions", {}).get("enableCache")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-build-features", "exec-build-training-set"):
        assert k8s[name]["pvcMount"][0]["mountPath"] == "/mnt/features"
        assert container_env(spec, name)["SPARK_MASTER_URL"] == "local[*]"
    # The default (a repository per run) keeps its cache and mounts nothing.
    assert all_tasks(compiled[0])["build-features"]["cachingOptions"]["enableCache"]
    default_k8s = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "pvcMount" not in default_k8s.get("exec-build-features", {})


def test_the_feature_pipeline_is_scheduled_as_a_recurring_run(
    fake_client: type[FakeClient],
) -> None:
    settings = shared_store_settings()
    # The feature pipeline writes no model: a folder registry does not stop it.
    settings.registry.uri = "/tmp/not-used"
    job_id = schedule(
        "http://kfp:8080",
        "0 2 * * *",
        settings,
        "churn",
        "features-daily",
        {"data": "s3://logs/churn/"},
        "features",
    )
    assert job_id == "job-1"
    kind, kwargs = fake_client.calls[-1]
    assert kind == "recurring" and kwargs["params"] == {"data": "s3://logs/churn/"}
    assert kwargs["pipeline_name"] == "churn-features"
    assert kwargs["cron_expression"] == "0 0 2 * * *" and kwargs["max_concurrency"] == 1


def test_an_argument_the_feature_pipeline_does_not_take_is_refused_before_scheduling(
    fake_client: type[FakeClient],
) -> None:
    with pytest.raises(PipelineError, match="--epochs does not apply to the features pipeline"):
        schedule(
            "http://kfp:8080",
            "0 2 * * *",
            shared_store_settings(),
            "c",
            "f",
            {"epochs": 3},
            "features",
        )
    assert not [c for c in fake_client.calls if c[0] == "recurring"]

"""Kustomize overlays and the InferenceService builder produce valid, locked-down objects.

Built-in kinds are checked with kubernetes-validate (strict: unknown fields fail); the
InferenceService against the ``v1beta1`` schema of KServe's CRD (``tests/schemas/``), with
unknown fields refused as ``kubectl apply --validate=strict`` would.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

from churn.errors import ServingError
from churn.release import archive
from churn.release.archive import KSERVE_ADDRESSES, config_properties
from churn.release.kserve_deploy import (
    Resources,
    build_inference_service,
    deploy,
    storage_patch,
    to_manifest,
)
from churn.settings import PipelineConfig, ServingConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = PROJECT_ROOT / "manifests"
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "inferenceservice-v1beta1.schema.json.gz"
OVERLAYS = ["local", "production", "multi-user", "gpu"]
# Overlays that switch the runtime (components/kserve-runtime): test_runtime_manifests.py.
RUNTIME_OVERLAYS = ["production-kserve"]
K8S_VERSION = "1.32.0"
INFERENCE_PORT = 8080
# The labels KServe puts on every predictor pod (pkg/controller/v1beta1/inferenceservice/
# components/predictor.go): InferenceServicePodLabelKey and KServiceComponentLabel.
PREDICTOR_POD_LABELS = {"serving.kserve.io/inferenceservice": "churn", "component": "predictor"}
TRANSFORMER_POD_LABELS = {**PREDICTOR_POD_LABELS, "component": "transformer"}
COMPONENTS = ("predictor", "transformer")
CLIENT_LABEL = {"churn.io/client": "true"}
GATEWAY_LABEL = {"churn.io/ingress-gateway": "true"}
BASE_KINDS = {
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "LimitRange",
    "NetworkPolicy",
    "ConfigMap",
    "CronJob",
}
KINDS = {
    "local": BASE_KINDS,
    "production": BASE_KINDS | {"PodDisruptionBudget"},
    "multi-user": BASE_KINDS | {"PodDisruptionBudget"},
    "gpu": BASE_KINDS | {"PodDisruptionBudget"},
}
# Kinds of installed CRDs, validated against their schemas instead of kubernetes-validate.
CUSTOM_KINDS = {"gpu": {"ClusterTrainingRuntime"}}
CRD_GROUPS = ("serving.kserve.io/", "trainer.kubeflow.org/")
# Objects without a namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterTrainingRuntime"}
RUNTIME_SCHEMA = SCHEMA.with_name("clustertrainingruntime-v1alpha1.schema.json.gz")
TRAINER_POD_LABEL = {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
# Who may deploy: a service account of the churn pipeline's own, never KFP's shared
# kubeflow/pipeline-runner (which every pipeline in the cluster runs as).
DEPLOYER = {
    "local": {"kind": "ServiceAccount", "name": "churn-pipeline", "namespace": "kubeflow"},
    "production": {"kind": "ServiceAccount", "name": "churn-pipeline", "namespace": "kubeflow"},
    "gpu": {"kind": "ServiceAccount", "name": "churn-pipeline", "namespace": "kubeflow"},
    "multi-user": {
        "kind": "ServiceAccount",
        "name": "default-editor",
        "namespace": "kubeflow-user-example-com",
    },
}
# TorchServe in the kserve-torchserve image runs from /home/model-server: logs under logs/
# (LOG_LOCATION, METRICS_LOCATION), temporary files (the unpacked .mar, pid file, worker
# sockets) in java.io.tmpdir, which the launcher takes from TEMP.
TORCHSERVE_WRITES = {"/tmp", "/home/model-server/logs"}
TORCHSERVE_WRITE_ENV = ("TEMP", "LOG_LOCATION", "METRICS_LOCATION")


def render(path: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; `kubectl kustomize` renders the manifests")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


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
def isvc_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    # metadata is validated by the API server's ObjectMeta, not by the CRD.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def overlay(overlay_name: str) -> list[dict]:
    return render(MANIFESTS / "overlays" / overlay_name)


def only(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def named(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def errors(validator: jsonschema.Draft7Validator, doc: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def containers(component: dict) -> list[dict]:
    """Every container a component spec names: the model, containers, init containers."""
    return [
        *([component["model"]] if "model" in component else []),
        *component.get("containers", []),
        *component.get("initContainers", []),
    ]


def pod_labels(docs: list[dict], component_labels: dict[str, str]) -> dict[str, str]:
    """The labels a component's pod carries: the InferenceService's own plus KServe's."""
    isvc = only(docs, "InferenceService")
    return {**isvc["metadata"].get("labels", {}), **component_labels}


def predictor_labels(docs: list[dict]) -> dict[str, str]:
    """The labels a predictor pod carries."""
    return pod_labels(docs, PREDICTOR_POD_LABELS)


def selects(policy: dict, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert "matchExpressions" not in selector, policy["metadata"]["name"]
    return selector.get("matchLabels", {}).items() <= labels.items()


def applying_policies(docs: list[dict], labels: dict[str, str]) -> list[dict]:
    return [d for d in docs if d["kind"] == "NetworkPolicy" and selects(d, labels)]


def test_every_overlay_renders_and_is_tested() -> None:
    on_disk = sorted(
        path.name
        for path in (MANIFESTS / "overlays").iterdir()
        if (path / "kustomization.yaml").is_file()
    )
    assert on_disk == sorted(OVERLAYS + RUNTIME_OVERLAYS)
    for name in OVERLAYS:
        docs = render(MANIFESTS / "overlays" / name)
        expected = KINDS[name] | {"InferenceService"} | CUSTOM_KINDS.get(name, set())
        assert {doc["kind"] for doc in docs} == expected


def test_builtin_kinds_validate_strictly(overlay_name: str, overlay: list[dict]) -> None:
    kinds = set()
    for doc in overlay:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.add(doc["kind"])
    assert kinds == KINDS[overlay_name]


def test_pipeline_may_deploy_the_inference_service_and_nothing_more(
    overlay_name: str, overlay: list[dict]
) -> None:
    # churn.release.kserve_deploy.deploy creates the InferenceService, or patches it when it exists.
    role = named(overlay, "Role", "churn-deployer")
    binding = named(overlay, "RoleBinding", "churn-deployer")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "churn"
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [DEPLOYER[overlay_name]]
    subjects = [s for doc in overlay for s in doc.get("subjects", [])]
    assert all(s["name"] != "pipeline-runner" for s in subjects), subjects


def test_standalone_kfp_gets_a_dedicated_pipeline_account(
    overlay_name: str, overlay: list[dict]
) -> None:
    accounts = [d for d in overlay if d["kind"] == "ServiceAccount"]
    runner_bindings = [
        d
        for d in overlay
        if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "kubeflow"
    ]
    if DEPLOYER[overlay_name]["name"] == "default-editor":
        # Multi-user: the profile's own account; nothing of ours in the kubeflow namespace.
        assert [a["metadata"]["name"] for a in accounts] == ["churn-models", "churn-monitor"]
        assert runner_bindings == []
        return
    account = named(overlay, "ServiceAccount", "churn-pipeline")
    assert account["metadata"]["namespace"] == "kubeflow"
    # The deploy step calls the Kubernetes API with this account's token.
    assert account.get("automountServiceAccountToken", True) is True
    (runner,) = runner_bindings
    # A run's pods need what KFP grants its own runner account in the kubeflow namespace.
    assert runner["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pipeline-runner",
    }
    assert runner["subjects"] == [DEPLOYER[overlay_name]]


def test_every_object_names_its_namespace(overlay_name: str, overlay: list[dict]) -> None:
    # No kustomize `namespace:` (the pipeline's account lives elsewhere): an object without
    # one would land in whatever namespace kubectl's context names.
    pipeline_namespace = DEPLOYER[overlay_name]["namespace"]
    for doc in overlay:
        if doc["kind"] in CLUSTER_SCOPED:
            continue
        assert doc["metadata"].get("namespace") in ("churn", pipeline_namespace), doc["metadata"]


def test_inference_service_fits_the_crd(
    overlay: list[dict], isvc_validator: jsonschema.Draft7Validator
) -> None:
    isvc = only(overlay, "InferenceService")
    assert errors(isvc_validator, isvc) == []
    model = isvc["spec"]["predictor"]["model"]
    assert (model["modelFormat"]["name"], model["runtime"]) == ("pytorch", "kserve-torchserve")
    typo = copy.deepcopy(isvc)
    # Popped from the copy: the overlay fixture is shared by the module's tests.
    typo_model = typo["spec"]["predictor"]["model"]
    typo_model["storageURI"] = typo_model.pop("storageUri")
    assert any("storageURI" in e for e in errors(isvc_validator, typo))
    # The predictor is a PodSpec extension: its volumes and security context are schema-checked
    # field by field, not passed through as unknown fields.
    typo = copy.deepcopy(isvc)
    empty_dir = typo["spec"]["predictor"]["volumes"][0]["emptyDir"]
    empty_dir["sizelimit"] = empty_dir.pop("sizeLimit")
    typo["spec"]["predictor"]["model"]["securityContext"]["readOnlyRootFileSystem"] = True
    found = errors(isvc_validator, typo)
    assert any("sizelimit" in e for e in found)
    assert any("readOnlyRootFileSystem" in e for e in found)
    # So is the transformer: its storage URIs and its containers.
    typo = copy.deepcopy(isvc)
    transformer = typo["spec"]["transformer"]
    transformer["storageUris"][0]["mountpath"] = transformer["storageUris"][0].pop("mountPath")
    transformer["containers"][0]["envFrom"] = [{"secretRef": {"nme": "churn-s3"}}]
    found = errors(isvc_validator, typo)
    assert any("mountpath" in e for e in found)
    assert any("nme" in e for e in found)


def predictor_pod(isvc: dict) -> dict:
    """The pod parts of the predictor as a v1 Pod, the model container without KServe's fields."""
    predictor = isvc["spec"]["predictor"]
    model = {
        key: value
        for key, value in predictor["model"].items()
        if key not in ("modelFormat", "runtime", "protocolVersion", "storageUri")
    }
    spec = {
        key: predictor[key]
        for key in ("serviceAccountName", "securityContext", "volumes")
        if key in predictor
    }
    # KServe names the container and takes the image from the ClusterServingRuntime; any
    # value does for the schema.
    spec["containers"] = [{"name": "kserve-container", **model, "image": "kserve-torchserve:r"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "churn-predictor"},
        "spec": spec,
    }


def transformer_pod(isvc: dict) -> dict:
    """The pod parts of the transformer as a v1 Pod."""
    transformer = isvc["spec"]["transformer"]
    spec = {
        key: transformer[key]
        for key in ("serviceAccountName", "securityContext", "volumes", "containers")
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": spec}


def test_predictor_and_transformer_pod_parts_validate_as_pods(overlay: list[dict]) -> None:
    isvc = only(overlay, "InferenceService")
    kubernetes_validate.validate(predictor_pod(isvc), K8S_VERSION, strict=True)
    kubernetes_validate.validate(transformer_pod(isvc), K8S_VERSION, strict=True)


def test_the_schema_check_catches_wrong_types(isvc_validator: jsonschema.Draft7Validator) -> None:
    isvc = to_manifest(build_inference_service("churn", "s3://b/v1", ServingConfig()))
    isvc["spec"]["predictor"]["minReplicas"] = "two"
    assert errors(isvc_validator, isvc) == [
        "spec.predictor.minReplicas: 'two' is not of type 'integer'"
    ]


CREDENTIAL_NAME = re.compile(r"(?i)secret|password|passwd|token|access_?key|api_?key|credential")
CREDENTIAL_TEXT = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(aws_secret_access_key|password)\s*[=:]\s*\S"),
]


def literal_secrets(docs: list[dict]) -> list[str]:
    """Where a rendered object holds a credential itself instead of referring to a Secret."""
    found = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            name = node.get("name")
            if isinstance(name, str) and "value" in node and CREDENTIAL_NAME.search(name):
                found.append(f"{path}: {name} has a literal value")
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        elif isinstance(node, str) and any(p.search(node) for p in CREDENTIAL_TEXT):
            found.append(f"{path}: looks like a credential")

    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData")):
            found.append(f"{where}: a Secret with data")
        walk(doc, where)
    return found


def test_no_literal_secrets_in_any_rendered_object(overlay: list[dict]) -> None:
    assert literal_secrets(overlay) == []
    account = named(overlay, "ServiceAccount", "churn-models")
    assert account["secrets"] == [{"name": "churn-s3"}]
    assert account["automountServiceAccountToken"] is False
    isvc = only(overlay, "InferenceService")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]
    # The scan is not vacuous: planted credentials are found.
    planted = copy.deepcopy(overlay)
    model = only(planted, "InferenceService")["spec"]["predictor"]["model"]
    model.setdefault("env", []).append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"})
    model["args"] = ["--key=AKIAABCDEFGHIJKLMNOP"]
    planted.append({"kind": "Secret", "metadata": {"name": "s3"}, "stringData": {"k": "v"}})
    assert len(literal_secrets(planted)) == 3


def test_namespace_enforces_restricted_pod_security(overlay: list[dict]) -> None:
    labels = only(overlay, "Namespace")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_container_runs_as_non_root(overlay: list[dict], name: str) -> None:
    component = only(overlay, "InferenceService")["spec"][name]
    pod = component["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(component):
        ctx = container["securityContext"]
        assert ctx.get("runAsNonRoot", pod["runAsNonRoot"]) is True
        assert ctx.get("runAsUser", pod["runAsUser"]) != 0
        assert ctx.get("seccompProfile", pod["seccompProfile"]) == {"type": "RuntimeDefault"}
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx.get("privileged", False) is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        resources = container["resources"]
        # Guaranteed QoS: CPU and memory requested at their limits.
        for name in ("cpu", "memory"):
            assert resources["limits"][name] == resources["requests"][name]


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_container_has_a_read_only_root_and_bounded_scratch(
    overlay: list[dict], name: str
) -> None:
    component = only(overlay, "InferenceService")["spec"][name]
    volumes = {volume["name"]: volume for volume in component["volumes"]}
    for volume in volumes.values():
        if "configMap" not in volume:
            assert parse_quantity(volume["emptyDir"]["sizeLimit"]) > 0, volume["name"]
    for container in containers(component):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        for mount in container.get("volumeMounts", []):
            # Writable mounts are bounded scratch; configuration is mounted read-only.
            assert "emptyDir" in volumes[mount["name"]] or mount.get("readOnly") is True, mount
    if name == "transformer":
        return
    model = component["model"]
    mounts = {mount["mountPath"] for mount in model["volumeMounts"]}
    assert mounts >= TORCHSERVE_WRITES
    env = {var["name"]: var["value"] for var in model["env"]}
    for name in TORCHSERVE_WRITE_ENV:
        assert any(env[name] == m or env[name].startswith(m + "/") for m in mounts), name


@pytest.mark.parametrize("name", COMPONENTS)
def test_ephemeral_storage_is_bounded(overlay: list[dict], name: str) -> None:
    component = only(overlay, "InferenceService")["spec"][name]
    limit = 0
    for container in containers(component):
        resources = container["resources"]
        assert parse_quantity(resources["requests"]["ephemeral-storage"]) > 0
        limit += parse_quantity(resources["limits"]["ephemeral-storage"])
    # The pod's limit (the sum of its containers') also covers its emptyDirs: they must fit,
    # or filling them evicts the pod.
    scratch = sum(
        parse_quantity(v["emptyDir"]["sizeLimit"]) for v in component["volumes"] if "emptyDir" in v
    )
    assert scratch < limit
    # Containers KServe injects (the storage initializer) get defaults from the namespace.
    (item,) = only(overlay, "LimitRange")["spec"]["limits"]
    assert item["type"] == "Container"
    assert parse_quantity(item["defaultRequest"]["ephemeral-storage"]) > 0
    assert parse_quantity(item["default"]["ephemeral-storage"]) > 0


def test_production_limits_voluntary_disruption_to_one_predictor(
    overlay_name: str, overlay: list[dict]
) -> None:
    budgets = [d for d in overlay if d["kind"] == "PodDisruptionBudget"]
    if "PodDisruptionBudget" not in KINDS[overlay_name]:
        assert budgets == []  # one replica: a budget could only block node drains
        return
    (budget,) = budgets
    spec = budget["spec"]
    assert budget["metadata"]["namespace"] == "churn"
    assert spec["selector"] == {"matchLabels": PREDICTOR_POD_LABELS}
    assert spec["selector"]["matchLabels"].items() <= predictor_labels(overlay).items()
    assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable") == 1
    assert only(overlay, "InferenceService")["spec"]["predictor"]["minReplicas"] >= 2


def test_namespace_denies_all_traffic_by_default(overlay: list[dict]) -> None:
    deny = [
        d
        for d in overlay
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"] == {}
        and sorted(d["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        and not d["spec"].get("ingress")
        and not d["spec"].get("egress")
    ]
    assert [d["metadata"]["namespace"] for d in deny] == ["churn"]


def test_inference_port_admits_only_labelled_callers(overlay: list[dict]) -> None:
    isvc = only(overlay, "InferenceService")
    policies = [d for d in overlay if d["kind"] == "NetworkPolicy"]
    # Apart from the training nodes' policy (which admits only each other, tested in
    # test_training_nodes_reach_each_other_and_storage_only), only the two components' own
    # policies admit anything, each only to its own pods.
    admitting = {
        p["metadata"]["name"]: p
        for p in policies
        if p["spec"].get("ingress")
        and p["spec"]["podSelector"] != {"matchLabels": TRAINER_POD_LABEL}
    }
    assert sorted(admitting) == ["churn-predictor-ingress", "churn-transformer-ingress"]
    caller = {"matchLabels": CLIENT_LABEL}
    # A rule without `from` (or with an empty selector) admits every pod in every namespace.
    callers = [
        {"namespaceSelector": caller, "podSelector": caller},
        {"namespaceSelector": {"matchLabels": GATEWAY_LABEL}},
    ]
    # A podSelector without a namespaceSelector: churn's transformer pods in this namespace.
    from_transformer = [{"podSelector": {"matchLabels": TRANSFORMER_POD_LABELS}}]
    for name, labels, sources in (
        ("churn-transformer-ingress", TRANSFORMER_POD_LABELS, callers),
        ("churn-predictor-ingress", PREDICTOR_POD_LABELS, callers + from_transformer),
    ):
        policy = admitting[name]
        assert policy["spec"]["podSelector"] == {"matchLabels": labels}
        assert selects(policy, pod_labels(overlay, labels))
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"port": INFERENCE_PORT, "protocol": "TCP"}]
        assert rule["from"] == sources
    # The policy can only hold in Standard mode; Knative would route through its queue-proxy.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_the_transformer_reaches_only_its_predictor_the_feature_store_and_storage(
    overlay: list[dict],
) -> None:
    rules = [
        rule
        for policy in applying_policies(overlay, pod_labels(overlay, TRANSFORMER_POD_LABELS))
        for rule in policy["spec"].get("egress", [])
    ]
    by_ports = {}
    for rule in rules:
        assert rule.get("to") and rule.get("ports"), rule
        by_ports[frozenset((p["protocol"], p["port"]) for p in rule["ports"])] = rule["to"]
    assert set(by_ports) == {
        frozenset({("UDP", 53), ("TCP", 53)}),
        frozenset({("TCP", INFERENCE_PORT)}),
        frozenset({("TCP", 6379), ("TCP", 5432)}),
        frozenset({("TCP", 443)}),
        frozenset({("TCP", 8333), ("TCP", 9000)}),
    }
    assert by_ports[frozenset({("TCP", INFERENCE_PORT)})] == [
        {"podSelector": {"matchLabels": PREDICTOR_POD_LABELS}}
    ]
    assert by_ports[frozenset({("TCP", 6379), ("TCP", 5432)})] == [
        {"namespaceSelector": {"matchLabels": {"churn.io/feature-store": "true"}}}
    ]
    (ipv4,) = [
        peer["ipBlock"]
        for peer in by_ports[frozenset({("TCP", 443)})]
        if peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    ]
    assert "169.254.0.0/16" in ipv4["except"]  # no cloud metadata endpoint
    # None of the transformer's egress applies to predictors.
    predictor_policies = applying_policies(overlay, pod_labels(overlay, PREDICTOR_POD_LABELS))
    assert not any("transformer" in p["metadata"]["name"] for p in predictor_policies)


def test_the_transformer_serves_the_predictors_version_with_feast_from_a_configmap(
    overlay: list[dict],
) -> None:
    from churn.settings import load_settings

    isvc = only(overlay, "InferenceService")
    transformer, model = isvc["spec"]["transformer"], isvc["spec"]["predictor"]["model"]
    # Both read one registry version: a release moves both URIs.
    assert transformer["storageUris"] == [{"uri": model["storageUri"], "mountPath": "/mnt/models"}]
    (container,) = transformer["containers"]
    assert container["command"] == ["python", "-m", "serving.transformer"]
    args = container["args"]
    assert args[args.index("--predictor_protocol") + 1] == model["protocolVersion"]
    # KServe appends these itself, naming the InferenceService's predictor.
    assert not {"--predictor_host", "--http_port", "--model_name"} & set(args)
    env = {var["name"]: var for var in container["env"]}
    assert env["CHURN_TRANSFORMER__MODEL_DIR"]["value"] == "/mnt/models"
    # In a pod the transformer must listen beyond the loopback for the Service to reach it.
    assert env["CHURN_TRANSFORMER__HOST"]["value"] == "0.0.0.0"
    settings = load_settings(env={k: v["value"] for k, v in env.items() if "value" in v})
    assert settings.transformer.max_feature_age_hours is not None
    assert settings.transformer.log_uri.startswith("s3://")
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    repo = mounts[env["CHURN_TRANSFORMER__FEATURE_REPO"]["value"]]
    volumes = {volume["name"]: volume for volume in transformer["volumes"]}
    configmap = named(overlay, "ConfigMap", volumes[repo["name"]]["configMap"]["name"])
    text = configmap["data"]["feature_store.yaml"]
    served = yaml.safe_load(text)
    production = yaml.safe_load(
        (PROJECT_ROOT / "feature_repo" / "production" / "feature_store.yaml").read_text()
    )
    for key in ("project", "registry", "online_store", "entity_key_serialization_version"):
        assert served[key] == production[key], key
    # Every secret comes from a Secret reference: the ones Feast's file names and the log's.
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert placeholders == {"FEAST_REGISTRY_URL", "REDIS_CONNECTION_STRING"}
    for name in placeholders | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}:
        assert set(env[name]) == {"name", "valueFrom"}
        assert set(env[name]["valueFrom"]) == {"secretKeyRef"}, name


def test_egress_allows_only_dns_and_object_storage(overlay: list[dict]) -> None:
    pod = predictor_labels(overlay)
    rules = [
        (policy, rule)
        for policy in applying_policies(overlay, pod)
        for rule in policy["spec"].get("egress", [])
    ]
    ports = set()
    for _, rule in rules:
        # A rule without `to` reaches everywhere, one without `ports` every port.
        assert rule.get("to") and rule.get("ports"), rule
        ports |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 8333), ("TCP", 9000)}

    def rule_for(*wanted: tuple[str, int]) -> tuple[dict, dict]:
        (found,) = [
            (p, r)
            for p, r in rules
            if {(port["protocol"], port["port"]) for port in r["ports"]} == set(wanted)
        ]
        return found

    dns_policy, dns = rule_for(("UDP", 53), ("TCP", 53))
    assert dns_policy["spec"]["podSelector"] == {}  # every pod of the namespace resolves names
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    _, https = rule_for(("TCP", 443))
    (ipv4,) = [peer["ipBlock"] for peer in https["to"] if peer["ipBlock"]["cidr"] == "0.0.0.0/0"]
    assert "169.254.0.0/16" in ipv4["except"]  # no cloud metadata endpoint
    _, store = rule_for(("TCP", 8333), ("TCP", 9000))
    (peer,) = store["to"]
    assert set(peer) == {"namespaceSelector"} and peer["namespaceSelector"]["matchLabels"]
    # Any predictor of the namespace fetches its model the same way (the cluster test deploys
    # churn-cluster-test here), but only churn's predictor is reachable.
    other = {**PREDICTOR_POD_LABELS, "serving.kserve.io/inferenceservice": "churn-cluster-test"}
    egress_only = [p for p in applying_policies(overlay, pod) if not p["spec"].get("ingress")]
    assert applying_policies(overlay, other) == egress_only


def test_overlays_size_the_predictor() -> None:
    sizes = {}
    for name in OVERLAYS:
        predictor = only(render(MANIFESTS / "overlays" / name), "InferenceService")["spec"][
            "predictor"
        ]
        sizes[name] = (predictor["minReplicas"], predictor["model"]["resources"]["limits"]["cpu"])
    assert sizes == {
        "local": (1, "500m"),
        "production": (2, "2"),
        "multi-user": (2, "2"),
        "gpu": (2, "2"),
    }


def test_builder_matches_the_base_manifest(isvc_validator: jsonschema.Draft7Validator) -> None:
    base = only(render(MANIFESTS / "base"), "InferenceService")
    storage_uri = base["spec"]["predictor"]["model"]["storageUri"]
    built = to_manifest(
        build_inference_service(
            "churn", storage_uri, ServingConfig(), Resources(cpu="1", memory="2Gi")
        )
    )
    # Also the hardening and the transformer: an InferenceService that deploy() creates is
    # the base manifest, field for field.
    assert built == base
    assert errors(isvc_validator, built) == []


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch, what the API server applies to a custom object's PATCH."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def test_a_release_moves_only_the_storage_uri_of_a_sized_service(
    isvc_validator: jsonschema.Draft7Validator,
) -> None:
    production = only(render(MANIFESTS / "overlays" / "production"), "InferenceService")
    new = build_inference_service("churn", "s3://models/churn/versions/v9", ServingConfig())
    patched = merge_patch(production, to_manifest(storage_patch(new, transformer=True)))
    assert patched["spec"]["predictor"]["model"]["storageUri"] == "s3://models/churn/versions/v9"
    # The transformer reads the same version's model.json: its storageUris move too.
    assert patched["spec"]["transformer"]["storageUris"] == [
        {"uri": "s3://models/churn/versions/v9", "mountPath": "/mnt/models"}
    ]
    # Everything the overlay sized survives; only the storage URIs differ.
    patched["spec"]["predictor"]["model"]["storageUri"] = production["spec"]["predictor"]["model"][
        "storageUri"
    ]
    patched["spec"]["transformer"]["storageUris"] = production["spec"]["transformer"]["storageUris"]
    assert patched == production
    assert errors(isvc_validator, patched) == []


def test_a_release_adds_no_transformer_to_a_service_without_one() -> None:
    new = build_inference_service("churn", "s3://models/churn/versions/v9", ServingConfig())
    assert "transformer" not in to_manifest(storage_patch(new))["spec"]
    bare = ServingConfig(transformer_image="")
    assert (
        "transformer" not in to_manifest(build_inference_service("churn", "s3://b/v", bare))["spec"]
    )


def test_builder_sets_protocol_and_refuses_what_kserve_cannot_serve(
    isvc_validator: jsonschema.Draft7Validator,
) -> None:
    v2 = to_manifest(
        build_inference_service("churn", "s3://b/v1", ServingConfig(protocol_version="v2"))
    )
    assert v2["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    # The transformer calls the predictor in the predictor's protocol.
    assert v2["spec"]["transformer"]["containers"][0]["args"] == ["--predictor_protocol", "v2"]
    assert errors(isvc_validator, v2) == []
    with pytest.raises(ServingError, match="s3://"):
        build_inference_service(
            "churn", "/home/me/.churn/registry/churn/versions/v1", ServingConfig()
        )
    with pytest.raises(ServingError, match="protocol_version"):
        build_inference_service(
            "churn", "s3://b/v1", ServingConfig.model_construct(protocol_version="grpc")
        )
    # The settings refuse it first; the builder still guards a hand-built object.
    with pytest.raises(ValueError, match="protocol_version"):
        ServingConfig(protocol_version="grpc")


def test_kserve_config_keeps_management_inside_the_pod() -> None:
    text = config_properties("churn", "v1", "/mnt/models/model-store", KSERVE_ADDRESSES)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert props["grpc_management_address"] == "127.0.0.1"
    assert props["inference_address"] == "http://0.0.0.0:8085"
    assert props["enable_envvars_config"] == "true"
    assert props["install_py_dep_per_model"] == "false"
    snapshot = json.loads(props["model_snapshot"])
    assert snapshot["models"]["churn"]["v1"]["marName"] == "churn.mar"
    assert props["service_envelope"] == "kserve"
    v2 = config_properties("churn", "v1", "/m", protocol_version="v2")
    assert "service_envelope=kservev2\n" in v2


def test_the_config_admits_archives_from_the_model_store_only() -> None:
    text = config_properties("churn", "v1", "/mnt/models/model-store", KSERVE_ADDRESSES)
    props = dict(line.split("=", 1) for line in text.splitlines())
    # The file doubles each backslash, which Java's Properties reader undoes.
    assert props["allowed_urls"] == r"file:///mnt/models/model\\-store/[^/]+\\.mar"
    pattern = props["allowed_urls"].replace("\\\\", "\\")
    assert re.fullmatch(pattern, "file:///mnt/models/model-store/churn.mar")
    for url in (
        "http://127.0.0.1:8000/churn.mar",
        "https://example.com/churn.mar",
        "file:///tmp/churn.mar",
        "file:///mnt/models/model-store/../evil/churn.mar",
        "file:///mnt/models/model-store-2/churn.mar",
    ):
        assert not re.fullmatch(pattern, url), url


def test_allowed_urls_quote_an_odd_model_store_path() -> None:
    pattern = archive.allowed_urls("/srv/a b,c.d/(x)+store/")
    # TorchServe splits the setting on commas: a comma in the path must not be one.
    assert "," not in pattern
    assert re.fullmatch(pattern, "file:///srv/a b,c.d/(x)+store/churn.mar")
    assert not re.fullmatch(pattern, "file:///srv/a b,cxd/(x)+store/churn.mar")


def test_deploy_without_a_cluster_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import kubernetes.config.kube_config as kube_config

    # The client reads $KUBECONFIG when imported, so the variable alone would change nothing.
    missing = str(tmp_path / "missing-kubeconfig")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", missing)
    isvc = build_inference_service("churn", "s3://b/v1", ServingConfig())
    with pytest.raises(ServingError, match="Kubernetes configuration"):
        deploy(isvc, "churn")


def test_a_superseded_version_is_not_deployed(
    tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn.release.deploy import deploy_version
    from churn.release.registry import open_registry
    from churn.settings import RegistryConfig

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cfg = RegistryConfig(uri=str(tmp_path / "registry"), model_name="churn")
    registry = open_registry(cfg)
    for i, version in enumerate(("a", "b")):
        registry.publish(tiny_model(tmp_path / version, i), {"roc_auc": 0.8}, version=version)
    registry.promote("b")  # a later run promoted b after this run registered a
    result = deploy_version("kserve", "a", cfg, ServingConfig(), tmp_path)
    assert result == {"target": "kserve", "version": "a", "skipped": "champion is b"}
    # The champion itself goes on to the cluster (here: refused, a folder is no storageUri).
    with pytest.raises(ServingError, match="KServe cannot fetch"):
        deploy_version("kserve", "b", cfg, ServingConfig(), tmp_path)


@pytest.fixture(scope="module")
def gpu_overlay() -> list[dict]:
    return render(MANIFESTS / "overlays" / "gpu")


@pytest.fixture(scope="module")
def runtime_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(gzip.decompress(RUNTIME_SCHEMA.read_bytes())))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def runtime_pod(runtime: dict) -> dict:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    return job["template"]["spec"]["template"]["spec"]


def test_gpu_training_runtime_fits_the_crd_and_targets_the_gpu_pool(
    gpu_overlay: list[dict], runtime_validator: jsonschema.Draft7Validator
) -> None:
    runtime = only(gpu_overlay, "ClusterTrainingRuntime")
    assert errors(runtime_validator, runtime) == []
    pod = runtime_pod(runtime)
    cfg = PipelineConfig()
    assert pod["nodeSelector"] == {cfg.gpu_node_selector_key: cfg.gpu_node_selector_value}
    assert pod["tolerations"] == [
        {"key": cfg.gpu_toleration_key, "operator": "Exists", "effect": "NoSchedule"}
    ]
    (container,) = pod["containers"]
    # The name the TrainJob's runtime patch and Trainer's torch plugin look for.
    assert container["name"] == "node"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["serviceAccountName"] == cfg.trainer_service_account
    # The schema check is not vacuous.
    broken = copy.deepcopy(runtime)
    runtime_pod(broken)["containers"][0]["gpus"] = 1
    assert errors(runtime_validator, broken)


def test_gpu_training_pods_run_non_root_with_a_read_only_root(gpu_overlay: list[dict]) -> None:
    pod = runtime_pod(only(gpu_overlay, "ClusterTrainingRuntime"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    for mount in container["volumeMounts"]:
        assert parse_quantity(volumes[mount["name"]]["emptyDir"]["sizeLimit"]) > 0
    assert literal_secrets(gpu_overlay) == []


def test_the_pipeline_may_submit_train_jobs_and_nothing_more(gpu_overlay: list[dict]) -> None:
    role = named(gpu_overlay, "Role", "churn-trainjob-submitter")
    binding = named(gpu_overlay, "RoleBinding", "churn-trainjob-submitter")
    assert role["metadata"]["namespace"] == PipelineConfig().train_namespace == "churn"
    assert role["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["trainjobs"],
            "verbs": ["get", "list", "watch", "create"],
        }
    ]
    assert binding["roleRef"]["name"] == "churn-trainjob-submitter"
    assert binding["subjects"] == [DEPLOYER["gpu"]]
    trainer = named(gpu_overlay, "ServiceAccount", "churn-trainer")
    assert trainer["automountServiceAccountToken"] is False


def test_training_nodes_reach_each_other_and_storage_only(gpu_overlay: list[dict]) -> None:
    policy = named(gpu_overlay, "NetworkPolicy", "churn-trainer-nodes")
    assert policy["spec"]["podSelector"] == {"matchLabels": TRAINER_POD_LABEL}
    # The label the torch-distributed runtime (and ours) puts on every node pod.
    runtime = only(gpu_overlay, "ClusterTrainingRuntime")
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["template"]["metadata"]["labels"].items() >= TRAINER_POD_LABEL.items()
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": TRAINER_POD_LABEL}}]
    peers, storage = policy["spec"]["egress"]
    assert peers == {"to": [{"podSelector": {"matchLabels": TRAINER_POD_LABEL}}]}
    (block,) = storage["to"]
    assert "169.254.0.0/16" in block["ipBlock"]["except"]
    assert storage["ports"]
    assert not selects(policy, predictor_labels(gpu_overlay))


def monitor_pod(overlay: list[dict]) -> dict:
    return named(overlay, "CronJob", "churn-monitor")["spec"]["jobTemplate"]["spec"]["template"]


def test_the_monitor_runs_daily_one_at_a_time_and_may_retrain(overlay: list[dict]) -> None:
    cron = named(overlay, "CronJob", "churn-monitor")
    assert cron["metadata"]["namespace"] == "churn"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = monitor_pod(overlay)["spec"]
    [container] = spec["containers"]
    assert container["command"] == ["churn", "monitor", "drift", "--hours", "24", "--retrain"]
    env = {var["name"]: var for var in container["env"]}
    assert env["CHURN_MONITOR__KFP_HOST"]["value"].endswith(
        "ml-pipeline.kubeflow.svc.cluster.local:8888"
    )
    assert env["CHURN_REGISTRY__URI"]["value"].startswith("s3://")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "churn-s3", "key": key}


def test_the_monitor_has_its_own_account_and_a_locked_down_pod(overlay: list[dict]) -> None:
    pod = monitor_pod(overlay)
    spec = pod["spec"]
    account = named(overlay, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["name"] == "churn-monitor"
    assert account["automountServiceAccountToken"] is False
    assert spec["automountServiceAccountToken"] is False
    ctx = spec["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    [container] = spec["containers"]
    c = container["securityContext"]
    assert c["readOnlyRootFilesystem"] is True and c["allowPrivilegeEscalation"] is False
    assert c["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert parse_quantity(volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"]) > 0
    for mount in mounts.values():
        assert "emptyDir" in volumes[mount["name"]] or mount.get("readOnly") is True, mount
    scratch = sum(
        parse_quantity(v["emptyDir"]["sizeLimit"]) for v in volumes.values() if "emptyDir" in v
    )
    assert scratch < parse_quantity(container["resources"]["limits"]["ephemeral-storage"])
    kubernetes_validate.validate(
        pod | {"apiVersion": "v1", "kind": "Pod"}, K8S_VERSION, strict=True
    )


def test_the_monitor_may_reach_the_kfp_api_and_nothing_in_link_local(
    overlay: list[dict],
) -> None:
    labels = monitor_pod(overlay)["metadata"]["labels"]
    policies = [
        p for p in applying_policies(overlay, labels) if "Egress" in p["spec"]["policyTypes"]
    ]
    ports = {
        (
            peer.get("namespaceSelector", {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name"),
            port["port"],
        )
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [{}])
        for port in rule.get("ports", [])
    }
    assert ("kubeflow", 8888) in ports
    blocks = [
        peer["ipBlock"]
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    assert all("169.254.0.0/16" in b["except"] for b in blocks if b["cidr"] == "0.0.0.0/0")


def test_multi_user_kfp_gets_a_projected_token_and_may_create_runs_in_the_profile(
    overlay_name: str, overlay: list[dict]
) -> None:
    spec = monitor_pod(overlay)["spec"]
    [container] = spec["containers"]
    env = {var["name"]: var.get("value") for var in container["env"]}
    projected = [v for v in spec["volumes"] if "projected" in v]
    roles = [
        d for d in overlay if d["kind"] == "Role" and d["metadata"]["name"] == "churn-monitor-runs"
    ]
    if overlay_name != "multi-user":
        # Standalone KFP authorises nobody: no token, no namespace, no RBAC.
        assert projected == [] and roles == []
        assert "CHURN_MONITOR__KFP_NAMESPACE" not in env
        return
    profile = DEPLOYER["multi-user"]["namespace"]
    assert env["CHURN_MONITOR__KFP_NAMESPACE"] == profile
    assert env["CHURN_PIPELINE__SERVICE_ACCOUNT"] == ""
    [volume] = projected
    assert volume["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "pipelines.kubeflow.org",
                "expirationSeconds": 7200,
                "path": "token",
            }
        }
    ]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    # kfp.Client's default KF_PIPELINES_SA_TOKEN_PATH is <this folder>/token.
    assert mount == {
        "name": volume["name"],
        "mountPath": "/var/run/secrets/kubeflow/pipelines",
        "readOnly": True,
    }
    [role] = roles
    assert role["metadata"]["namespace"] == profile
    assert {
        "apiGroups": ["pipelines.kubeflow.org"],
        "resources": ["runs"],
        "verbs": ["create", "list"],
    } in role["rules"]
    binding = named(overlay, "RoleBinding", "churn-monitor-runs")
    assert binding["metadata"]["namespace"] == profile
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "churn-monitor", "namespace": "churn"}
    ]


def test_a_created_transformer_logs_to_the_store_the_settings_name() -> None:
    def env(cfg: ServingConfig) -> dict[str, str]:
        isvc = to_manifest(build_inference_service("churn", "s3://b/v1", cfg))
        (container,) = isvc["spec"]["transformer"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    # AWS by default; another store (KFP's SeaweedFS on kind) when the settings name one.
    assert "CHURN_TRANSFORMER__LOG_ENDPOINT_URL" not in env(ServingConfig())
    seaweed = ServingConfig(transformer_log_endpoint_url="http://seaweedfs.kubeflow:8333")
    assert env(seaweed)["CHURN_TRANSFORMER__LOG_ENDPOINT_URL"] == "http://seaweedfs.kubeflow:8333"
    assert env(seaweed)["CHURN_TRANSFORMER__LOG_URI"] == "s3://churn-models/inference-log"


def test_a_created_predictor_takes_its_size_from_the_settings() -> None:
    small = ServingConfig(predictor_cpu="500m", predictor_memory="1Gi", max_replicas=1)
    isvc = to_manifest(build_inference_service("churn", "s3://b/v1", small))
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "1Gi",
        "ephemeral-storage": "3Gi",
    }
    assert predictor["model"]["resources"]["limits"] == predictor["model"]["resources"]["requests"]
    assert predictor["maxReplicas"] == isvc["spec"]["transformer"]["maxReplicas"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("predictor_cpu", "half"), ("predictor_memory", "2 GB"), ("max_replicas", 0)],
)
def test_a_predictor_size_kubernetes_would_refuse_is_refused_naming_the_setting(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=field):
        ServingConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_request", "1 core"),
        ("memory_request", "2GB"),
        ("train_cpu_request", "-4"),
        ("train_memory_request", "lots"),
    ],
)
def test_a_step_size_kubernetes_would_refuse_is_refused_before_a_run_is_compiled(
    field: str, value: str
) -> None:
    with pytest.raises(ValueError, match=field):
        PipelineConfig(**{field: value})
    assert PipelineConfig(**{field: "500m" if "cpu" in field else "512Mi"})

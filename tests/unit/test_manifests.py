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
from churn.settings import ServingConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = PROJECT_ROOT / "manifests"
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "inferenceservice-v1beta1.schema.json.gz"
OVERLAYS = ["local", "production"]
K8S_VERSION = "1.32.0"
INFERENCE_PORT = 8080


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
def overlay(request: pytest.FixtureRequest) -> list[dict]:
    return render(MANIFESTS / "overlays" / request.param)


def only(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def errors(validator: jsonschema.Draft7Validator, doc: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_builtin_kinds_validate_strictly(overlay: list[dict]) -> None:
    kinds = set()
    for doc in overlay:
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.add(doc["kind"])
    assert kinds == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"}


def test_pipeline_may_deploy_the_inference_service_and_nothing_more(overlay: list[dict]) -> None:
    # churn.release.kserve_deploy.deploy creates the InferenceService, or patches it when it exists.
    role, binding = only(overlay, "Role"), only(overlay, "RoleBinding")
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
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    ]


def test_inference_service_fits_the_crd(
    overlay: list[dict], isvc_validator: jsonschema.Draft7Validator
) -> None:
    isvc = only(overlay, "InferenceService")
    assert errors(isvc_validator, isvc) == []
    model = isvc["spec"]["predictor"]["model"]
    assert (model["modelFormat"]["name"], model["runtime"]) == ("pytorch", "kserve-torchserve")
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["model"]["storageURI"] = model.pop("storageUri")
    assert any("storageURI" in e for e in errors(isvc_validator, typo))


def test_the_schema_check_catches_wrong_types(isvc_validator: jsonschema.Draft7Validator) -> None:
    isvc = to_manifest(build_inference_service("churn", "s3://b/v1", ServingConfig()))
    isvc["spec"]["predictor"]["minReplicas"] = "two"
    assert errors(isvc_validator, isvc) == [
        "spec.predictor.minReplicas: 'two' is not of type 'integer'"
    ]


def test_no_secret_holds_credentials(overlay: list[dict]) -> None:
    for doc in overlay:
        if doc["kind"] == "Secret":
            assert not doc.get("data") and not doc.get("stringData"), doc["metadata"]["name"]
    account = only(overlay, "ServiceAccount")
    assert account["secrets"] == [{"name": "churn-s3"}]
    isvc = only(overlay, "InferenceService")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]


def test_every_container_runs_as_non_root(overlay: list[dict]) -> None:
    predictor = only(overlay, "InferenceService")["spec"]["predictor"]
    pod = predictor["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    containers = [predictor["model"], *predictor.get("containers", [])]
    for container in containers:
        ctx = container["securityContext"]
        assert ctx.get("runAsNonRoot", pod["runAsNonRoot"]) is True
        assert ctx.get("runAsUser", pod["runAsUser"]) != 0
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"] == container["resources"]["requests"]


def test_network_policy_admits_only_the_inference_port(overlay: list[dict]) -> None:
    policy = only(overlay, "NetworkPolicy")["spec"]
    isvc = only(overlay, "InferenceService")
    assert policy["podSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]
    }
    assert policy["policyTypes"] == ["Ingress"]
    ports = [port for rule in policy["ingress"] for port in rule["ports"]]
    assert ports == [{"port": INFERENCE_PORT, "protocol": "TCP"}]
    # The policy can only hold in Standard mode; Knative would route through its queue-proxy.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_overlays_size_the_predictor() -> None:
    sizes = {}
    for name in OVERLAYS:
        predictor = only(render(MANIFESTS / "overlays" / name), "InferenceService")["spec"][
            "predictor"
        ]
        sizes[name] = (predictor["minReplicas"], predictor["model"]["resources"]["limits"]["cpu"])
    assert sizes == {"local": (1, "500m"), "production": (2, "2")}


def test_builder_matches_the_base_manifest(isvc_validator: jsonschema.Draft7Validator) -> None:
    base = only(render(MANIFESTS / "base"), "InferenceService")
    storage_uri = base["spec"]["predictor"]["model"]["storageUri"]
    built = to_manifest(
        build_inference_service(
            "churn", storage_uri, ServingConfig(), Resources(cpu="1", memory="2Gi")
        )
    )
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
    patched = merge_patch(production, to_manifest(storage_patch(new)))
    assert patched["spec"]["predictor"]["model"]["storageUri"] == "s3://models/churn/versions/v9"
    # Everything the overlay sized survives; only the storage URI differs.
    patched["spec"]["predictor"]["model"]["storageUri"] = production["spec"]["predictor"]["model"][
        "storageUri"
    ]
    assert patched == production
    assert errors(isvc_validator, patched) == []


def test_builder_sets_protocol_and_refuses_what_kserve_cannot_serve(
    isvc_validator: jsonschema.Draft7Validator,
) -> None:
    v2 = to_manifest(
        build_inference_service("churn", "s3://b/v1", ServingConfig(protocol_version="v2"))
    )
    assert v2["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert errors(isvc_validator, v2) == []
    with pytest.raises(ServingError, match="s3://"):
        build_inference_service(
            "churn", "/home/me/.churn/registry/churn/versions/v1", ServingConfig()
        )
    # The settings refuse it first; the builder still guards a hand-built object.
    with pytest.raises(ValueError, match="protocol_version"):
        ServingConfig(protocol_version="grpc")
    with pytest.raises(ServingError, match="protocol_version"):
        build_inference_service(
            "churn", "s3://b/v1", ServingConfig.model_construct(protocol_version="grpc")
        )


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
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
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

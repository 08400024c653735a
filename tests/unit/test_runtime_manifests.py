"""The ServingRuntime churn-kserve and the switch to it fit KServe's CRDs and stay locked down.

``components/kserve-runtime`` adds the runtime and repoints the InferenceService;
``overlays/production-kserve`` is production with it. Every overlay must still render with the
component added, change nothing but the runtime's fields, and validate: the ServingRuntime
against its CRD's ``v1alpha1`` schema (``tests/schemas/``), built-in kinds with
kubernetes-validate, strictly.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity
from test_manifests import (
    CRD_GROUPS,
    K8S_VERSION,
    MANIFESTS,
    OVERLAYS,
    SCHEMA,
    errors,
    named,
    only,
    predictor_pod,
    render,
    strict,
)

from churn.settings import PipelineConfig
from serving.predictor import parse_args

RUNTIME_SCHEMA = (
    Path(__file__).resolve().parents[1] / "schemas" / "servingruntime-v1alpha1.schema.json.gz"
)
COMPONENT = MANIFESTS / "components" / "kserve-runtime"
RUNTIME = "churn-kserve"
INFERENCE_PORT = 8080
# The fields the component changes on the InferenceService; everything else stays.
SWITCHED = {
    ("model", "runtime"),
    ("model", "modelFormat"),
    ("model", "env"),
    ("model", "volumeMounts"),
    ("volumes",),
}


@pytest.fixture(scope="module")
def runtime_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(gzip.decompress(RUNTIME_SCHEMA.read_bytes())))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def isvc_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def with_component(overlay: str, tmp_path: Path) -> list[dict]:
    """An overlay rendered with ``components/kserve-runtime`` added, as the README shows."""
    root = tmp_path / overlay
    root.mkdir()
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(MANIFESTS / "overlays" / overlay, root)],
                "components": [os.path.relpath(COMPONENT, root)],
            }
        )
    )
    return render(root)


@pytest.fixture(scope="module")
def switched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Every overlay with the component, and ``production-kserve`` itself."""
    tmp = tmp_path_factory.mktemp("kserve-runtime")
    docs = {name: with_component(name, tmp) for name in OVERLAYS}
    docs["production-kserve"] = render(MANIFESTS / "overlays" / "production-kserve")
    return docs


def runtime_of(docs: list[dict]) -> dict:
    return named(docs, "ServingRuntime", RUNTIME)


def test_the_production_kserve_overlay_is_production_plus_the_component(
    switched: dict[str, list[dict]], tmp_path: Path
) -> None:
    assert switched["production-kserve"] == with_component("production", tmp_path)


@pytest.mark.parametrize("overlay", [*OVERLAYS, "production-kserve"])
def test_each_overlay_with_the_runtime_fits_the_crds(
    switched: dict[str, list[dict]],
    overlay: str,
    runtime_validator: jsonschema.Draft7Validator,
    isvc_validator: jsonschema.Draft7Validator,
) -> None:
    docs = switched[overlay]
    assert errors(runtime_validator, runtime_of(docs)) == []
    isvc = only(docs, "InferenceService")
    assert errors(isvc_validator, isvc) == []
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_GROUPS):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # The validator is not vacuous: a misspelt field fails.
    typo = copy.deepcopy(runtime_of(docs))
    typo["spec"]["supportedModelFormats"][0]["autoselect"] = False
    assert any("autoselect" in e for e in errors(runtime_validator, typo))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_changes_only_the_runtime_fields(
    switched: dict[str, list[dict]], overlay: str
) -> None:
    before = render(MANIFESTS / "overlays" / overlay)
    after = switched[overlay]
    assert sorted(d["kind"] for d in after) == sorted(
        [d["kind"] for d in before] + ["ServingRuntime"]
    )
    for doc in before:
        if doc["kind"] != "InferenceService":
            assert doc in after
    old, new = (copy.deepcopy(only(docs, "InferenceService")) for docs in (before, after))
    for docs in (old, new):
        predictor = docs["spec"]["predictor"]
        for path in SWITCHED:
            node = predictor
            for key in path[:-1]:
                node = node[key]
            node.pop(path[-1], None)
    # Sizing, replicas, storageUri, protocol and hardening stay as the overlay set them.
    assert old == new


@pytest.mark.parametrize("overlay", [*OVERLAYS, "production-kserve"])
def test_the_inference_service_names_the_runtime_and_its_format(
    switched: dict[str, list[dict]], overlay: str
) -> None:
    docs = switched[overlay]
    model = only(docs, "InferenceService")["spec"]["predictor"]["model"]
    spec = runtime_of(docs)["spec"]
    assert model["runtime"] == RUNTIME
    assert runtime_of(docs)["metadata"]["namespace"] == "churn"
    (fmt,) = spec["supportedModelFormats"]
    # Never picked for other InferenceServices that ask only for a format.
    assert fmt["autoSelect"] is False
    assert model["modelFormat"] == {"name": fmt["name"]}
    assert model["protocolVersion"] in spec["protocolVersions"]
    assert set(spec["protocolVersions"]) == {"v1", "v2"}
    # Nothing of TorchServe's is left on the predictor.
    predictor = only(docs, "InferenceService")["spec"]["predictor"]
    assert "env" not in model
    assert [v["name"] for v in predictor["volumes"]] == ["tmp"]
    assert model["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def runtime_pod(runtime: dict) -> dict:
    """The runtime's container and volumes as a v1 Pod, for the built-in schema."""
    spec = runtime["spec"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "churn-kserve"},
        "spec": {"containers": spec["containers"], "volumes": spec["volumes"]},
    }


def test_the_runtime_container_is_locked_down(switched: dict[str, list[dict]]) -> None:
    runtime = runtime_of(switched["production-kserve"])
    kubernetes_validate.validate(runtime_pod(runtime), K8S_VERSION, strict=True)
    (container,) = runtime["spec"]["containers"]
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        assert parse_quantity(volumes[mount["name"]]["emptyDir"]["sizeLimit"]) > 0
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    env = {var["name"]: var["value"] for var in container["env"]}
    assert writable == {"/tmp"} and env["HOME"] == env["TMPDIR"] == "/tmp"
    for name in ("cpu", "memory"):
        assert container["resources"]["limits"][name] == container["resources"]["requests"][name]


def test_the_predictor_pod_with_the_runtime_validates_as_a_pod(
    switched: dict[str, list[dict]],
) -> None:
    pod = predictor_pod(only(switched["production-kserve"], "InferenceService"))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    # What KServe runs: the runtime's container merged with the InferenceService's model.
    mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"/tmp"}


def test_the_runtime_runs_the_predictor_on_the_admitted_port(
    switched: dict[str, list[dict]],
) -> None:
    docs = switched["production-kserve"]
    runtime = runtime_of(docs)
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == PipelineConfig().image
    assert container["command"] == ["python", "-m", "serving.predictor"]
    # KServe fills {{.Name}} with the InferenceService's name.
    args = parse_args([a.replace("{{.Name}}", "churn") for a in container["args"]])
    assert (args.model_name, args.model_dir, args.host) == ("churn", Path("/mnt/models"), "0.0.0.0")
    assert args.http_port == INFERENCE_PORT
    assert container["ports"] == [{"containerPort": INFERENCE_PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["port"] == INFERENCE_PORT
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(INFERENCE_PORT)
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    # The one port the NetworkPolicy admits callers to is the one the predictor serves on.
    ingress = named(docs, "NetworkPolicy", "churn-predictor-ingress")["spec"]["ingress"]
    assert ingress[0]["ports"] == [{"port": INFERENCE_PORT, "protocol": "TCP"}]

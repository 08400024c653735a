"""The kind setup: the script refuses clearly without its tools; its manifests validate.

The script runs for real (``make kind-up`` and friends in a subprocess) with a PATH that holds
only what a shell needs, so no cluster or Docker is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KIND = PROJECT_ROOT / "manifests" / "kind"
BASICS = ("bash", "dirname", "make", "env")
K8S_VERSION = "1.32.0"


def bare_path(tmp_path: Path, fakes: tuple[str, ...] = ()) -> str:
    """A PATH with a shell's basics and, as scripts that exit 0, the ``fakes``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in BASICS:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    for tool in fakes:
        (folder / tool).write_text("#!/bin/bash\nexit 0\n")
        (folder / tool).chmod(0o755)
    return str(folder)


def make(target: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("make") or "make", "--no-print-directory", "-C", str(PROJECT_ROOT), target],
        env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kind_up_without_docker_or_kind_names_what_is_missing_and_how_to_install_it(
    tmp_path: Path,
) -> None:
    done = make("kind-up", bare_path(tmp_path))

    assert done.returncode != 0
    assert "kind.sh up needs docker kind kubectl helm, not found on PATH" in done.stderr
    assert "docker: Docker Engine" in done.stderr
    assert "kind: kind v0.30.0: https://kind.sigs.k8s.io" in done.stderr
    assert "helm: helm v3.16.3" in done.stderr


def test_only_the_missing_tool_is_named(tmp_path: Path) -> None:
    done = make("kind-up", bare_path(tmp_path, fakes=("docker", "kind", "kubectl")))

    assert done.returncode != 0
    assert "kind.sh up needs helm, not found" in done.stderr
    assert "docker:" not in done.stderr


@pytest.mark.parametrize(
    ("target", "needs"),
    [("kind-load", "docker kind"), ("kind-deploy", "kubectl"), ("kind-down", "kind")],
)
def test_every_kind_target_checks_its_own_prerequisites(
    tmp_path: Path, target: str, needs: str
) -> None:
    done = make(target, bare_path(tmp_path))
    assert done.returncode != 0
    assert f"needs {needs}, not found on PATH" in done.stderr


def test_an_unknown_subcommand_prints_the_usage(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(KIND / "kind.sh"), "sideways"],
        env={"PATH": bare_path(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "usage:" in done.stderr and "up|load|deploy|e2e|down" in done.stderr


def test_the_script_pins_what_the_issue_pins() -> None:
    script = (KIND / "kind.sh").read_text()
    assert "CERT_MANAGER_VERSION=v1.17.0" in script
    assert "KSERVE_VERSION=v0.20.0" in script and "KFP_VERSION=2.17.0" in script
    for chart in ("kserve-crd", "kserve-resources", "kserve-runtime-configs"):
        assert chart in script
    assert "kserve.controller.deploymentMode=Standard" in script
    assert "env/platform-agnostic?ref=$KFP_VERSION" in script
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not any("env/dev" in line for line in commands)
    # Secrets come from files made from the environment, never from literals on a command line.
    assert "--from-literal" not in script


def test_kind_up_installs_kubeflow_trainer_and_its_torch_runtime_at_a_pinned_release(
    tmp_path: Path,
) -> None:
    """kind.sh up for real, with docker, kind, kubectl and helm as fakes that log each call."""
    calls = tmp_path / "calls.log"
    folder = Path(bare_path(tmp_path))
    for tool in ("docker", "kind", "kubectl", "helm"):
        (folder / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> {calls}\n')
        (folder / tool).chmod(0o755)
    done = subprocess.run(
        [str(KIND / "kind.sh"), "up"],
        env={"PATH": str(folder), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    log = calls.read_text().splitlines()
    trainer = "https://github.com/kubeflow/trainer.git/manifests/overlays"
    manager = f"kubectl apply --server-side -k {trainer}/manager?ref=v2.3.0"
    runtimes = f"kubectl apply --server-side -k {trainer}/runtimes?ref=v2.3.0"
    assert manager in log and runtimes in log
    kfp = next(i for i, c in enumerate(log) if "env/platform-agnostic" in c)
    ready = log.index("kubectl -n kubeflow-system wait --for=condition=Available deployment --all "
                      "--timeout=300s")  # fmt: skip
    # Trainer after KFP; its runtimes once its controller (and their CRD) are up.
    assert kfp < log.index(manager) < ready < log.index(runtimes)
    assert log[-1] == "kubectl get clustertrainingruntime torch-distributed"
    # The chart installs no serving runtime (kserve-torchserve among them) unless asked.
    (runtimes_chart,) = [c for c in log if "helm upgrade --install kserve-runtime-configs" in c]
    assert "--set kserve.servingruntime.enabled=true" in runtimes_chart


def test_the_cluster_config_is_a_kind_cluster_with_a_worker() -> None:
    config = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]


def test_the_feature_store_validates_strictly_runs_locked_down_with_secrets_by_reference() -> None:
    docs = [d for d in yaml.safe_load_all((KIND / "feature-store.yaml").read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == ["postgres", "redis"]
    secrets = {}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
        assert not any("PASSWORD" in e["name"] for e in container["env"] if "value" in e)
        (secrets[name],) = refs
    assert secrets == {
        "redis": {"name": "churn-redis", "key": "password"},
        "postgres": {"name": "churn-feast-db", "key": "password"},
    }
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    # The label the transformer's egress policy (manifests/base/networkpolicy.yaml) admits.
    assert namespace["metadata"]["labels"]["churn.io/feature-store"] == "true"


FAKE_KUBECTL = r"""#!/bin/bash
# Records each call, and for a Secret the keys of its env file in the log and the file itself
# beside it (the test reads the values there, never on a command line). Every Secret read
# answers "store-key", as a cluster whose Secrets exist would.
echo "kubectl $*" >>"$KUBECTL_LOG"
for arg in "$@"; do
  case "$arg" in
    --from-env-file=*) echo "keys ${arg#--from-env-file=}: $(cut -d= -f1 "${arg#*=}" | xargs)" \
      >>"$KUBECTL_LOG"
      cp "${arg#*=}" "$KUBECTL_LOG.$2.$6.env" ;;
  esac
done
case "$*" in *jsonpath=*) printf %s c3RvcmUta2V5 ;; esac
exit 0
"""


def test_kind_deploy_puts_the_pipeline_secrets_and_volume_where_kfp_runs_pods(
    tmp_path: Path,
) -> None:
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "kubectl").write_text(FAKE_KUBECTL)
    (fakes / "kubectl").chmod(0o755)
    log = tmp_path / "kubectl.log"
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
        "AWS_SECRET_ACCESS_KEY": "example-secret-value",
    }
    done = subprocess.run(
        [str(KIND / "kind.sh"), "deploy"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    created = {(c.split()[2], c.split()[6]) for c in calls if "create secret generic" in c}
    # Standalone KFP's pods run in kubeflow; KServe's storage initializer reads churn's.
    assert {("kubeflow", "churn-s3"), ("churn", "churn-s3")} <= created
    assert {("kubeflow", "churn-feast"), ("churn", "churn-feast")} <= created
    assert f"kubectl apply -f {KIND / 'pipeline-volumes.yaml'}" in calls
    assert f"kubectl apply -k {KIND / 'overlay'}" in calls
    assert f"kubectl apply -f {KIND / 'seaweedfs-access.yaml'}" in calls
    keys = [c for c in calls if c.startswith("keys ")]
    assert any(k.endswith("AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY") for k in keys)
    # Credentials travel in files, never on a command line another user could read.
    assert not [c for c in calls if "example-secret-value" in c or "AKIAEXAMPLEKEY" in c]
    # The store's own keys, not the developer's AWS ones, which SeaweedFS does not know.
    s3 = Path(f"{log}.kubeflow.churn-s3.env").read_text()
    assert s3 == "AWS_ACCESS_KEY_ID=store-key\nAWS_SECRET_ACCESS_KEY=store-key\n"
    # A second deploy keeps the passwords Redis and PostgreSQL started with.
    assert Path(f"{log}.churn-feast.churn-redis.env").read_text() == "password=store-key\n"
    feast = Path(f"{log}.kubeflow.churn-feast.env").read_text()
    assert "postgresql+psycopg://feast:store-key@postgres.churn-feast:5432/feast" in feast
    annotate = next(c for c in calls if "annotate" in c)
    assert "serving.kserve.io/s3-endpoint=seaweedfs.kubeflow:8333" in annotate


def test_a_password_that_would_break_the_registry_url_is_refused(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    # A cluster without the Secrets yet: every read answers nothing.
    (fakes / "kubectl").write_text('#!/bin/bash\necho "kubectl $*" >>"$KUBECTL_LOG"\nexit 0\n')
    (fakes / "kubectl").chmod(0o755)
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(tmp_path / "kubectl.log"),
        "CHURN_FEAST_DB_PASSWORD": "p@ss/word",
    }
    done = subprocess.run(
        [str(KIND / "kind.sh"), "deploy"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "the password of churn-feast/churn-feast-db may hold only" in done.stderr
    assert "p@ss/word" not in done.stderr
    assert "create secret" not in (tmp_path / "kubectl.log").read_text()


def test_the_feature_volume_validates_and_sits_where_the_pipeline_account_runs() -> None:
    (claim,) = [d for d in yaml.safe_load_all((KIND / "pipeline-volumes.yaml").read_text()) if d]
    kubernetes_validate.validate(claim, K8S_VERSION, strict=True)
    rbac = yaml.safe_load_all((PROJECT_ROOT / "manifests/base/pipeline-rbac.yaml").read_text())
    (account,) = [d for d in rbac if d and d["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == "churn-pipeline"
    assert claim["metadata"]["namespace"] == account["metadata"]["namespace"] == "kubeflow"
    assert claim["metadata"]["name"] == "churn-features"


def test_the_e2e_tests_skip_cleanly_without_a_cluster_naming_how_to_run_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHURN_TEST_CLUSTER"}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/e2e"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "4 skipped" in done.stdout and "passed" not in done.stdout
    assert "CHURN_TEST_CLUSTER=1" in done.stdout and "make kind-e2e" in done.stdout


def render_kind_overlay() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(KIND / "overlay")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_kind_overlay_leaves_the_service_to_the_first_release_and_points_the_monitor_home() -> (
    None
):
    docs = render_kind_overlay()
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert "InferenceService" not in {d["kind"] for d in docs}
    (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "churn-kind-settings"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CHURN_REGISTRY__URI"] == "s3://churn/registry"
    (settings,) = [d for d in docs if d["metadata"]["name"] == "churn-kind-settings"]
    assert settings["data"]["CHURN_MONITOR__ENDPOINT_URL"] == "http://seaweedfs.kubeflow:8333"


def test_kind_settings_compile_a_pipeline_that_trains_on_the_cpu_worker(tmp_path: Path) -> None:
    lines = (KIND / "overlay" / "kind.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    out = tmp_path / "training.yaml"
    done = subprocess.run(
        [sys.executable, "-c", "from churn.cli import run; run()", "pipeline", "compile",
         "--out", str(out)],
        env={**os.environ, **settings}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert "accelerator" not in train.get("resources", {})
    assert train["image"] == settings["CHURN_PIPELINE__GPU_IMAGE"]
    placement = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    (worker,) = [n for n in cluster["nodes"] if n["role"] == "worker"]
    assert placement["nodeSelector"]["labels"].items() <= worker["labels"].items()
    assert "tolerations" not in placement
    serving = spec["root"]["inputDefinitions"]["parameters"]["serving"]["defaultValue"]
    assert serving["transformer_log_endpoint_url"] == "http://seaweedfs.kubeflow:8333"


def test_pipeline_steps_in_kubeflow_may_reach_the_feature_store_and_churn_may_reach_seaweedfs() -> (
    None
):
    docs = [d for d in yaml.safe_load_all((KIND / "feature-store.yaml").read_text()) if d]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 2
    for policy in policies:
        (rule,) = policy["spec"]["ingress"]
        namespaces = {f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for f in rule["from"]}  # fmt: skip
        assert namespaces == {"churn", "kubeflow"}
    (access,) = [d for d in yaml.safe_load_all((KIND / "seaweedfs-access.yaml").read_text()) if d]
    kubernetes_validate.validate(access, K8S_VERSION, strict=True)
    assert access["metadata"]["namespace"] == "kubeflow"
    assert access["spec"]["podSelector"] == {"matchLabels": {"app": "seaweedfs"}}
    (rule,) = access["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8333}]

#!/usr/bin/env bash
# A local Kubernetes cluster for the churn platform (the Makefile's kind-* targets).
#
#   kind.sh up      the cluster, then pinned installs: cert-manager, KServe (Standard mode),
#                   Kubeflow Pipelines (platform-agnostic, which ships SeaweedFS as its S3),
#                   Kubeflow Trainer v2 and its torch-distributed ClusterTrainingRuntime
#   kind.sh load    build both images from docker/ and load them into the cluster's nodes
#   kind.sh deploy  the kind overlay (manifests/kind/overlay), Redis and PostgreSQL (Feast
#                   online store and registry), the buckets, the shared feature store's volume,
#                   access to KFP's SeaweedFS from the churn namespace, and the Secrets
#                   (churn-s3 from the store's own keys, churn-feast...)
#   kind.sh e2e     the tests in tests/e2e against this cluster
#   kind.sh down    delete the cluster
#
# Each subcommand first checks the tools it needs and names any that is missing.
set -euo pipefail

CLUSTER="${KIND_CLUSTER:-churn}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# Pins: KServe v0.20.0's kserve-deps.env (cert-manager), and KFP 2.17.0.
CERT_MANAGER_VERSION=v1.17.0
KSERVE_VERSION=v0.20.0
KFP_VERSION=2.17.0
KFP_MANIFESTS=github.com/kubeflow/pipelines/manifests/kustomize
# Kubeflow Trainer v2 (TrainJob, trainer.kubeflow.org/v1alpha1), as its install guide applies it.
TRAINER_VERSION=v2.3.0
TRAINER_MANIFESTS=https://github.com/kubeflow/trainer.git/manifests/overlays
IMAGE="${CHURN_IMAGE:-ghcr.io/churn-platform/churn:0.1.0}"
GPU_IMAGE="${CHURN_GPU_IMAGE:-ghcr.io/churn-platform/churn-gpu:0.1.0}"
BUCKET="${CHURN_BUCKET:-churn}"
KSERVE_IMAGES=(pytorch/torchserve-kfs:0.9.0 "kserve/storage-initializer:$KSERVE_VERSION")
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

declare -A INSTALL=(
  [docker]="Docker Engine or Docker Desktop: https://docs.docker.com/engine/install/"
  [kind]="kind v0.30.0: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  [kubectl]="kubectl v1.32: https://kubernetes.io/docs/tasks/tools/"
  [helm]="helm v3.16.3: https://helm.sh/docs/intro/install/"
)

# Fails naming every missing tool and where to get it.
require() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "error: kind.sh $SUBCOMMAND needs ${missing[*]}, not found on PATH. Install:" >&2
    for tool in "${missing[@]}"; do
      echo "  $tool: ${INSTALL[$tool]}" >&2
    done
    exit 1
  fi
}

up() {
  require docker kind kubectl helm
  docker info >/dev/null 2>&1 || { echo "error: the Docker daemon is not running" >&2; exit 1; }
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --config "$HERE/cluster.yaml" --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER"
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  kubectl -n cert-manager rollout status deployment --timeout=300s
  local chart
  for chart in kserve-crd kserve-resources kserve-runtime-configs; do
    local args=()
    [[ $chart != kserve-resources ]] || args=(--set kserve.controller.deploymentMode=Standard)
    # The chart installs no ClusterServingRuntime unless asked: kserve-torchserve among them.
    [[ $chart != kserve-runtime-configs ]] || args=(--set kserve.servingruntime.enabled=true)
    helm upgrade --install "$chart" "oci://ghcr.io/kserve/charts/$chart" \
      --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait "${args[@]}"
  done
  # platform-agnostic, not env/dev: from 2.14.3 on env/dev pins every image to :master.
  kubectl apply -k "$KFP_MANIFESTS/cluster-scoped-resources?ref=$KFP_VERSION"
  kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  kubectl apply -k "$KFP_MANIFESTS/env/platform-agnostic?ref=$KFP_VERSION"
  kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout=900s
  trainer
}

# Kubeflow Trainer: the controller manager (with JobSet) in kubeflow-system, then the built-in
# ClusterTrainingRuntimes, torch-distributed among them (pipelines/trainjob.py names it).
# Server-side apply: the CRDs are too large for the last-applied annotation.
trainer() {
  kubectl apply --server-side -k "$TRAINER_MANIFESTS/manager?ref=$TRAINER_VERSION"
  kubectl wait --for condition=established --timeout=120s \
    crd/trainjobs.trainer.kubeflow.org crd/clustertrainingruntimes.trainer.kubeflow.org
  kubectl -n kubeflow-system wait --for=condition=Available deployment --all --timeout=300s
  # The controller's webhook may take a few seconds more to answer after it is Available.
  local try
  for try in 1 2 3 4 5; do
    kubectl apply --server-side -k "$TRAINER_MANIFESTS/runtimes?ref=$TRAINER_VERSION" && break
    ((try < 5)) || { echo "error: Kubeflow Trainer's runtimes could not be applied" >&2; exit 1; }
    sleep 10
  done
  kubectl get clustertrainingruntime torch-distributed
}

# The CPU image first: kind has no GPU, so the e2e flow trains on it too, and a failed CUDA
# build (several GB, from the PyTorch CUDA index) leaves a cluster that still runs.
load() {
  require docker kind
  docker build -f "$ROOT/docker/Dockerfile" -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
  # KServe's images for the first rollout (kserve-runtime-configs' kserve-torchserve runtime
  # and kserve-resources' storage initializer), so it does not wait on Docker Hub.
  local image
  for image in "${KSERVE_IMAGES[@]}"; do
    docker pull "$image"
    kind load docker-image "$image" --name "$CLUSTER"
  done
  docker build -f "$ROOT/docker/Dockerfile.gpu" -t "$GPU_IMAGE" "$ROOT"
  kind load docker-image "$GPU_IMAGE" --name "$CLUSTER"
}

random_password() {
  head -c 24 /dev/urandom | base64 | tr -d '/+='
}

# A Secret's value, empty when the Secret does not exist yet.
secret_value() {
  local namespace=$1 name=$2 key=$3
  kubectl -n "$namespace" get secret "$name" -o jsonpath="{.data.$key}" 2>/dev/null | base64 -d \
    || true
}

# The password a Secret already holds (Redis and PostgreSQL keep the one they started with),
# else the one from the environment, else a new one. It goes into a URL: no characters that
# would need escaping there.
password() {
  local namespace=$1 name=$2 from_env=$3 value
  value="$(secret_value "$namespace" "$name" password)"
  value="${value:-${from_env:-$(random_password)}}"
  if [[ ! $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
    echo "error: the password of $namespace/$name may hold only letters, digits and ._~-" >&2
    exit 1
  fi
  printf %s "$value"
}

# Applies a generic Secret whose values never appear on a command line or in a file in git.
apply_secret() {
  local namespace=$1 name=$2 env_file=$3
  kubectl -n "$namespace" create secret generic "$name" --from-env-file="$env_file" \
    --dry-run=client -o yaml | kubectl apply -f -
}

deploy() {
  require kubectl
  kubectl config use-context "kind-$CLUSTER"
  local scratch
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' RETURN
  chmod 700 "$scratch"
  # The registry and the inference log live in KFP's own object store (SeaweedFS): the same
  # credentials reach the pipeline root, which a TrainJob's nodes read and write. Always the
  # store's own keys: AWS_ACCESS_KEY_ID in a developer's shell is for AWS, which SeaweedFS
  # does not know.
  local key secret
  key="$(secret_value kubeflow mlpipeline-minio-artifact accesskey)"
  secret="$(secret_value kubeflow mlpipeline-minio-artifact secretkey)"
  printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$key" "$secret" >"$scratch/s3.env"
  local redis_pw db_pw
  redis_pw="$(password churn-feast churn-redis "${CHURN_REDIS_PASSWORD:-}")"
  db_pw="$(password churn-feast churn-feast-db "${CHURN_FEAST_DB_PASSWORD:-}")"
  printf 'password=%s\n' "$redis_pw" >"$scratch/redis.env"
  printf 'password=%s\n' "$db_pw" >"$scratch/db.env"
  # What the transformer reads (manifests/base/feast-configmap.yaml), pointing at the store below.
  printf 'FEAST_REGISTRY_URL=%s\nREDIS_CONNECTION_STRING=%s\n' \
    "postgresql+psycopg://feast:$db_pw@postgres.churn-feast:5432/feast" \
    "redis.churn-feast:6379,password=$redis_pw" >"$scratch/feast.env"
  kubectl apply -k "$HERE/overlay"
  # Standalone KFP runs every pipeline pod in the kubeflow namespace, so the steps' Secrets
  # (pipeline.s3_secret_name, pipeline.feature_store_secret) and the shared feature store's
  # volume live there; KServe's storage initializer reads churn-s3 in the churn namespace.
  apply_secret kubeflow churn-s3 "$scratch/s3.env"
  apply_secret churn churn-s3 "$scratch/s3.env"
  kubectl -n churn annotate --overwrite secret churn-s3 \
    serving.kserve.io/s3-endpoint=seaweedfs.kubeflow:8333 \
    serving.kserve.io/s3-usehttps=0 serving.kserve.io/s3-region=us-east-1
  kubectl apply -f "$HERE/feature-store.yaml"
  kubectl apply -f "$HERE/seaweedfs-access.yaml"
  apply_secret churn-feast churn-redis "$scratch/redis.env"
  apply_secret churn-feast churn-feast-db "$scratch/db.env"
  apply_secret churn churn-feast "$scratch/feast.env"
  apply_secret kubeflow churn-feast "$scratch/feast.env"
  kubectl apply -f "$HERE/pipeline-volumes.yaml"
  kubectl -n churn-feast rollout status deployment/redis --timeout=180s
  kubectl -n churn-feast rollout status deployment/postgres --timeout=180s
  # The registry's bucket, and the one the base manifest's transformer logs to
  # (CHURN_TRANSFORMER__LOG_URI=s3://churn-models/inference-log).
  for bucket in "$BUCKET" churn-models; do
    kubectl -n kubeflow exec deploy/seaweedfs -- sh -c "echo 's3.bucket.create -name $bucket' | weed shell" \
      || echo "note: bucket $bucket may exist already"
  done
}

e2e() {
  require kubectl
  [[ -x $PYTHON ]] || { echo "error: $PYTHON not found: run make install first" >&2; exit 1; }
  CHURN_TEST_CLUSTER=1 CHURN_KIND_CLUSTER="$CLUSTER" "$PYTHON" -m pytest -m cluster "$ROOT/tests/e2e"
}

down() {
  require kind
  kind delete cluster --name "$CLUSTER"
}

SUBCOMMAND="${1:-}"
case "$SUBCOMMAND" in
  up | load | deploy | e2e | down) "$SUBCOMMAND" ;;
  *)
    echo "usage: $0 up|load|deploy|e2e|down" >&2
    exit 2
    ;;
esac

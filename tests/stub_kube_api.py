"""A stand-in Kubernetes API on 127.0.0.1 for the InferenceService calls of the kserve SDK.

It serves ``GET/POST/PATCH/DELETE /apis/serving.kserve.io/v1beta1/namespaces/{ns}/
inferenceservices[/{name}]`` over real HTTP, so the SDK and the kubernetes client run unchanged.
A scripted controller stands in for KServe in Standard mode: every GET of a service is one step,
and the status it returns follows what KServe derives from the predictor Deployment
(``pkg/apis/serving/v1beta1/inference_service_status.go``, ``PropagateRawStatus`` and
``PropagateModelStatus``):

* for ``lag`` GETs after a spec change the old status stays (the controller has not acted);
* then ``observedGeneration`` (the Deployment's) rises and the rollout is in progress: with old
  pods serving, ``PredictorReady`` is True with reason ``MinimumReplicasAvailable`` and
  ``Ready`` is True; with none, both are Unknown (``ReplicaSetUpdated``);
* ``ready_after`` GETs later the storageUri's behaviour decides: ``ready`` (reason
  ``NewReplicaSetAvailable``, the message naming the new ReplicaSet), ``never`` (stays in
  progress), ``fail`` (``modelStatus`` target ``FailedToLoad``, ``lastFailureInfo``
  ``ModelLoadFailed``), ``deadline`` (``PredictorReady`` False, ``ProgressDeadlineExceeded``)
  or ``transformer-stuck`` (the predictor rolls out, the transformer's new pods never become
  available while its old ones serve: ``TransformerReady`` stays True with reason
  ``MinimumReplicasAvailable``, and so does ``Ready``);
* a service with a transformer has ``TransformerReady`` too, following the same Deployment
  states as ``PredictorReady`` unless the behaviour says otherwise.

As in KServe, ``lastFailureInfo`` stays after a recovery.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices"
    r"(?:/(?P<name>[^/?]+))?(?:\?.*)?$"
)
BEHAVIOURS = ("ready", "never", "fail", "deadline", "transformer-stuck")


class StubKServe:
    """The stand-in API server and its scripted controller.

    Args:
        lag: GETs after a spec change during which the old status is returned.
        ready_after: Further GETs until a rollout's outcome shows.

    Attributes:
        behaviour: storageUri -> one of :data:`BEHAVIOURS` (``ready`` when absent).
        requests: ``(method, path, body)`` of every request, in order.
        failing_gets: How many of the next GETs of a service answer 500.
        failing_gets_after_patch: ``failing_gets`` is set to this by every PATCH.
        refused_patches: Numbers (from 1) of the PATCHes answered 403, as RBAC would.
    """

    def __init__(self, lag: int = 2, ready_after: int = 3) -> None:
        self.lag, self.ready_after = lag, ready_after
        self.behaviour: dict[str, str] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.failing_gets = 0
        self.failing_gets_after_patch = 0
        self.refused_patches: set[int] = set()
        self._objects: dict[tuple[str, str], dict] = {}
        self._state: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StubKServe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "churn") -> Path:
        """A kubeconfig whose only context is this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "stub-token"}}],
            "contexts": [
                {
                    "name": "stub",
                    "context": {"cluster": "stub", "user": "stub", "namespace": namespace},
                }
            ],
            "current-context": "stub",
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def put(self, namespace: str, obj: dict, mode: str = "Standard") -> None:
        """Stores a service as if it had been rolled out before, Ready on its storageUri."""
        with self._lock:
            key = (namespace, obj["metadata"]["name"])
            stored = copy.deepcopy(obj)
            stored["metadata"].update(namespace=namespace, generation=1)
            self._objects[key] = stored
            self._state[key] = {
                "steps": self.lag + self.ready_after,
                "deployment": 1,
                "observed": True,
                "serving": storage_uri(stored),
            }
            self._state[key]["mode"] = mode
            stored["status"] = self._status(key, "ready", done=True)

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def gets_since_change(self, namespace: str, name: str) -> int:
        with self._lock:
            return self._state[(namespace, name)]["steps"]

    def calls(self, method: str) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == method]

    # The scripted controller.

    def _step(self, key: tuple[str, str]) -> None:
        obj, state = self._objects[key], self._state[key]
        state["steps"] += 1
        if state["steps"] <= self.lag:
            return
        if not state.get("observed"):
            state["deployment"] += 1
            state["observed"] = True
        uri = storage_uri(obj)
        behaviour = self.behaviour.get(uri, "ready")
        done = state["steps"] >= self.lag + self.ready_after
        if done and behaviour == "ready":
            state["serving"] = uri
        obj["status"] = self._status(key, behaviour, done)

    def _status(self, key: tuple[str, str], behaviour: str, done: bool) -> dict:
        obj, state = self._objects[key], self._state[key]
        uri = storage_uri(obj)
        replica_set = f"{key[1]}-predictor-{hashlib.sha256(uri.encode()).hexdigest()[:10]}"
        old = obj.get("status") or {}
        model_status = copy.deepcopy(old.get("modelStatus") or {})
        stuck = behaviour == "transformer-stuck"
        if stuck:
            behaviour = "ready"  # for the predictor
        if done and behaviour == "ready":
            predictor = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{replica_set}" has successfully progressed.',
            )
            ready = "True"
            model_status.update(
                transitionStatus="UpToDate",
                states={"activeModelState": "Loaded", "targetModelState": "Loaded"},
            )
        elif done and behaviour == "deadline":
            predictor = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{replica_set}" has timed out progressing.',
            )
            ready = "False"
        elif state.get("serving"):
            predictor = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            ready = "True"
        else:
            predictor = (
                "Unknown",
                "ReplicaSetUpdated",
                f'ReplicaSet "{replica_set}" is progressing.',
            )
            ready = "Unknown"
        if done and behaviour == "fail":
            model_status.update(
                transitionStatus="BlockedByFailedLoad",
                states={"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
                lastFailureInfo={
                    "reason": "ModelLoadFailed",
                    "message": f"storage-initializer: cannot download {uri}",
                },
            )
        components = [("PredictorReady", predictor)]
        if (obj.get("spec") or {}).get("transformer"):
            transformer = (
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                if stuck and done
                else (*predictor[:2], predictor[2].replace("-predictor-", "-transformer-"))
            )
            components.append(("TransformerReady", transformer))
        return {
            "observedGeneration": state["deployment"],
            "deploymentMode": state.get("mode", "Standard"),
            "conditions": [
                *(
                    {"type": kind, "status": c[0], "reason": c[1], "message": c[2]}
                    for kind, c in components
                ),
                {"type": "IngressReady", "status": "True"},
                {
                    "type": "Ready",
                    "status": ready,
                    **({} if ready == "True" else {"reason": predictor[1]}),
                },
            ],
            "modelStatus": model_status,
        }

    # HTTP.

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without this each reply waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                match = PATH.match(self.path)
                with stub._lock:
                    stub.requests.append((method, self.path, body))
                    if match is None:
                        self._reply(404, status_body(404, "NotFound", f"no route {self.path}"))
                        return
                    key = (match["ns"], match["name"])
                    code, reply = getattr(stub, f"_{method.lower()}")(key, body, self.headers)
                self._reply(code, reply)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler

    def _get(self, key: tuple[str, Any], body: Any, headers: Any) -> tuple[int, dict]:
        if key not in self._objects:
            return 404, status_body(404, "NotFound", f'inferenceservices "{key[1]}" not found')
        if self.failing_gets > 0:
            self.failing_gets -= 1
            return 500, status_body(500, "InternalError", "etcdserver: request timed out")
        self._step(key)
        return 200, self._objects[key]

    def _post(self, key: tuple[str, Any], body: Any, headers: Any) -> tuple[int, dict]:
        name = body["metadata"]["name"]
        key = (key[0], name)
        if key in self._objects:
            return 409, status_body(
                409, "AlreadyExists", f'inferenceservices "{name}" already exists'
            )
        refused = kserve_webhook(body)
        if refused:
            return refused
        obj = copy.deepcopy(body)
        obj["metadata"].update(namespace=key[0], generation=1)
        self._objects[key] = obj
        self._state[key] = {"steps": 0, "deployment": 0, "serving": None}
        return 201, obj

    def _patch(self, key: tuple[str, Any], body: Any, headers: Any) -> tuple[int, dict]:
        if headers.get("Content-Type") != "application/merge-patch+json":
            return 415, status_body(415, "UnsupportedMediaType", headers.get("Content-Type"))
        if key not in self._objects:
            return 404, status_body(404, "NotFound", f'inferenceservices "{key[1]}" not found')
        if len(self.calls("PATCH")) in self.refused_patches:
            return 403, status_body(403, "Forbidden", "cannot patch inferenceservices")
        self.failing_gets = self.failing_gets_after_patch
        obj = self._objects[key]
        patched = merge_patch(copy.deepcopy(obj), {k: v for k, v in body.items() if k != "status"})
        refused = kserve_webhook(patched)
        if refused:
            return refused
        if patched["spec"] != obj["spec"]:
            patched["metadata"]["generation"] += 1
            self._state[key].update(steps=0, observed=False)
        self._objects[key] = patched
        return 200, patched

    def _delete(self, key: tuple[str, Any], body: Any, headers: Any) -> tuple[int, dict]:
        if self._objects.pop(key, None) is None:
            return 404, status_body(404, "NotFound", f'inferenceservices "{key[1]}" not found')
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}


def kserve_webhook(obj: dict) -> tuple[int, dict] | None:
    """What KServe 0.16+'s validating webhook refuses that this platform could send: a name in
    a standard predictor's model (``validatePredictor``, on create and on update)."""
    model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
    if model.get("name"):
        return 400, status_body(
            400,
            "BadRequest",
            'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
            "request: the 'name' field is not allowed in standard predictor",
        )
    return None


def storage_uri(obj: dict) -> str:
    return obj["spec"]["predictor"]["model"]["storageUri"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return patch
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }

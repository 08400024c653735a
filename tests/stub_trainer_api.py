"""A stand-in Kubernetes API on 127.0.0.1 for Kubeflow Trainer ``TrainJob`` objects.

It serves ``POST /apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs`` and ``GET
.../trainjobs/{name}`` over real HTTP, so the kubernetes client runs unchanged. A scripted
controller stands in for Kubeflow Trainer: for ``steps`` GETs a job has no terminal condition
(the JobSet's pods run); then it gets the condition Trainer copies from the JobSet,
``Complete`` or ``Failed`` (status ``True``, with a reason and a message).

With ``run_commands`` the controller really runs the job's ``spec.trainer.command`` once, as
one process with the job's plain ``value`` env and the stub's own environment (where the tests
put the S3 credentials the Secret would hold), and the exit status decides the condition.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PATH = re.compile(
    r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/(?P<ns>[^/]+)/trainjobs"
    r"(?:/(?P<name>[^/?]+))?(?:\?.*)?$"
)


class StubTrainer:
    """The stand-in API server and its scripted Trainer controller.

    Args:
        steps: GETs of a job before its outcome shows.
        run_commands: Run each job's command when its outcome is due.
        env: Extra environment for the commands.

    Attributes:
        failures: Job name -> ``(reason, message)`` of a ``Failed`` condition.
        refuse_create: Answer every POST 403, as RBAC would without ``create`` on trainjobs.
        requests: ``(method, path, body)`` of every request, in order.
    """

    def __init__(self, steps: int = 2, run_commands: bool = False, env: dict | None = None):
        self.steps, self.run_commands, self.env = steps, run_commands, env or {}
        self.failures: dict[str, tuple[str, str]] = {}
        self.refuse_create = False
        self.requests: list[tuple[str, str, Any]] = []
        self._objects: dict[tuple[str, str], dict] = {}
        self._gets: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StubTrainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose only context is this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "stub-token"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            "current-context": "stub",
        }
        path.write_text(json.dumps(config))
        return path

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def calls(self, method: str) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == method]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append((method, self.path, body))
                match = PATH.match(self.path)
                if not match:
                    self._answer(404, status_body(404, "NotFound", self.path))
                    return
                ns, name = match["ns"], match["name"]
                if method == "POST" and name is None:
                    self._answer(*stub._create(ns, body))
                elif method == "GET" and name:
                    self._answer(*stub._read(ns, name))
                else:
                    self._answer(405, status_body(405, "MethodNotAllowed", method))

            def do_POST(self) -> None:
                self._route("POST")

            def do_GET(self) -> None:
                self._route("GET")

        return Handler

    def _create(self, ns: str, body: dict) -> tuple[int, dict]:
        if self.refuse_create:
            return 403, status_body(403, "Forbidden", "cannot create trainjobs")
        key = (ns, body["metadata"]["name"])
        with self._lock:
            if key in self._objects:
                return 409, status_body(409, "AlreadyExists", f'trainjobs "{key[1]}" exists')
            obj = copy.deepcopy(body)
            obj["metadata"]["namespace"] = ns
            self._objects[key] = obj
            self._gets[key] = 0
        return 201, obj

    def _read(self, ns: str, name: str) -> tuple[int, dict]:
        key = (ns, name)
        with self._lock:
            if key not in self._objects:
                return 404, status_body(404, "NotFound", f'trainjobs "{name}" not found')
            self._gets[key] += 1
            obj = self._objects[key]
            if self._gets[key] == self.steps + 1 and "status" not in obj:
                obj["status"] = {"conditions": [self._outcome(obj)]}
            return 200, copy.deepcopy(obj)

    def _outcome(self, obj: dict) -> dict:
        name = obj["metadata"]["name"]
        kind, reason, message = "Complete", "JobSetCompleted", "jobset completed"
        if name in self.failures:
            kind, (reason, message) = "Failed", self.failures[name]
        elif self.run_commands:
            trainer = obj["spec"]["trainer"]
            env = {**os.environ, **self.env}
            env.update({e["name"]: e["value"] for e in trainer.get("env", []) if "value" in e})
            done = subprocess.run(
                trainer["command"], env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode:
                kind, reason = "Failed", "JobSetFailed"
                message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        return {"type": kind, "status": "True", "reason": reason, "message": message}


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }

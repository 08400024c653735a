"""KServe predictor of the churn model: the second runtime beside TorchServe.

It serves one registry version, as KServe's storage initializer lays it out under
``--model_dir`` (``/mnt/models``): the model folder ``model/`` (``model.pt`` + ``model.json``)
and the ``_COMPLETE`` marker that names the version. It speaks KServe v1 (``POST
/v1/models/NAME:predict`` with ``{"instances": [...]}``) and v2 (``POST /v2/models/NAME/infer``
with one BYTES input per instance), and answers exactly as the TorchServe handler does: the
parsing, validation, scoring and reply come from :class:`ChurnHandler`, fed with
``churn.model.network`` instead of the archive's copy of it. A request the handler refuses with
a 400 gets a 400 here with the same message, in KServe's error body ``{"error": message}``.

The two predict routes read the raw body and hand it to the model. KServe's own routes would
decode it first, with different rules and messages: orjson refuses the ``NaN`` the handler
reports by field, and FastAPI answers a v2 body without ``shape`` with a 422. Everything else
(health, readiness, metadata, ``/metrics`` with the per-stage latency histograms) is KServe's.

Run it with ``python -m serving.predictor --model_dir DIR [--model_name churn] [--host H]
[--http_port P] [--model_version V] [--torch_threads N]``; it stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request, Response
from fastapi.responses import ORJSONResponse
from kserve import Model
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InferenceError, InvalidInput, ModelNotReady
from kserve.logging import configure_logging
from kserve.model_repository import ModelRepository
from kserve.model_server import app as kserve_app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from ts.utils.util import PredictionException

from churn.errors import ServingError
from churn.model import network
from churn.release.registry.base import COMPLETE_MARKER
from churn.release.torchserve_handler import ChurnHandler

MODEL_FOLDER = "model"
_LOOPBACK = "127.0.0.1"


class ChurnPredictor(Model):
    """A ``kserve.Model`` that scores raw request bodies with the TorchServe handler's code.

    Args:
        name: Name clients call the model by (the path segment of the predict URLs).
        version_dir: A registry version's folder (``model/`` inside it).
        version: The version reported with every prediction; read from the folder's
            ``_COMPLETE`` marker when ``None``.
    """

    def __init__(self, name: str, version_dir: str | Path, version: str | None = None) -> None:
        super().__init__(name)
        self.version_dir = Path(version_dir)
        self.version = version
        self._handler = ChurnHandler()

    def load(self) -> bool:
        """Loads the model folder and marks the model ready.

        Returns:
            ``True``.

        Raises:
            ServingError: The version cannot be told or the model folder cannot be read; the
                message names the file.
        """
        version = self.version or read_version(self.version_dir)
        manifest = {"model": {"modelName": self.name, "modelVersion": version}}
        try:
            self._handler.setup(network, self.version_dir / MODEL_FOLDER, manifest)
        except ValueError as exc:  # ModelFormatError: the message names the file
            raise ServingError(f"cannot serve {self.version_dir}: {exc}") from exc
        self.version = version
        self.ready = True
        return self.ready

    def preprocess(self, payload: bytes | dict, headers: dict | None = None) -> Any:
        """Parses and validates a request body as TorchServe hands it to the handler.

        Args:
            payload: The raw body, or a body already decoded from JSON.
            headers: Request headers (unused).

        Returns:
            The handler's model tensors and reply shape.

        Raises:
            InvalidInput: The handler refuses the request with a 400; same message.
        """
        return _translated(self._handler.preprocess, [{"body": payload}])

    def predict(self, payload: Any, headers: dict | None = None) -> Any:
        """Scores the tensors.

        Args:
            payload: The output of :meth:`preprocess`.
            headers: Request headers (unused).

        Returns:
            The probabilities and the reply shape.

        Raises:
            InvalidInput: The values are too large to score (the handler's 400).
        """
        return _translated(self._handler.inference, payload)

    def postprocess(self, result: Any, headers: dict | None = None) -> Any:
        """Builds the response body: ``{"predictions": [...]}`` (v1) or the v2 response.

        Args:
            result: The output of :meth:`predict`.
            headers: Request headers (unused).

        Returns:
            The whole response body, as the handler builds it for TorchServe.
        """
        (body,) = _translated(self._handler.postprocess, result)
        return body


def _translated(step: Any, data: Any) -> Any:
    """Runs a handler step, turning its PredictionException into KServe's errors."""
    try:
        return step(data)
    except PredictionException as exc:
        if exc.error_code == 400:
            raise InvalidInput(exc.message) from exc
        raise InferenceError(exc.message) from exc


def read_version(version_dir: Path) -> str:
    """The version a registry version's folder holds, from its ``_COMPLETE`` marker.

    Args:
        version_dir: The folder (KServe's storage initializer copies the marker with the rest).

    Returns:
        The version id.

    Raises:
        ServingError: The marker is missing or does not name a version.
    """
    marker = version_dir / COMPLETE_MARKER
    try:
        version = json.loads(marker.read_text()).get("version")
    except FileNotFoundError as exc:
        raise ServingError(
            f"{marker} is missing: {version_dir} is not a complete registry version "
            "(or pass --model_version)"
        ) from exc
    except (OSError, ValueError, AttributeError) as exc:
        raise ServingError(f"{marker} is not a registry marker: {exc}") from exc
    if not isinstance(version, str) or not version:
        raise ServingError(f"{marker} names no version")
    return version


class _FixedRepository(ModelRepositoryExtension):
    """KServe's v2 repository extension without load and unload.

    KServe serves ``/v2/repository/models/NAME/unload`` on the inference port with no
    authentication: any caller that may predict could take the model down. This predictor
    serves one registry version; a new one rolls out through the InferenceService.
    """

    async def load(self, model_name: str) -> None:
        raise NotImplementedError("this predictor serves one fixed model; it loads no other")

    async def unload(self, model_name: str) -> None:
        raise NotImplementedError("this predictor serves one fixed model; it is never unloaded")


def add_predict_routes(app: FastAPI, model: ChurnPredictor) -> None:
    """Routes the model's v1 predict and v2 infer URLs to :func:`raw_predict`.

    Routes match in the order they were added, so these must come before KServe's own,
    which :meth:`RESTServer.start` adds.

    Args:
        app: KServe's FastAPI application.
        model: The loaded model.
    """

    async def predict(request: Request) -> Response:
        return await raw_predict(model, request)

    for path in (f"/v1/models/{model.name}:predict", f"/v2/models/{model.name}/infer"):
        app.add_api_route(path, predict, methods=["POST"], response_model=None)


async def raw_predict(model: ChurnPredictor, request: Request) -> Response:
    """Answers one predict request from its raw body, in either protocol.

    As on TorchServe, the body says which protocol it speaks (``instances`` or ``inputs``).

    Args:
        model: The loaded model.
        request: The HTTP request.

    Returns:
        The JSON response.

    Raises:
        ModelNotReady: The model is not loaded (503).
        InvalidInput: The handler refuses the request (400).
    """
    if not model.ready:
        raise ModelNotReady(model.name)
    body, _ = await model(await request.body(), dict(request.headers))
    return ORJSONResponse(body)


def serve(model: ChurnPredictor, host: str, port: int) -> None:
    """Serves a loaded model with KServe's REST server until SIGTERM or Ctrl-C.

    Args:
        model: The loaded model.
        host: Interface to bind (``0.0.0.0`` in a pod, ``127.0.0.1`` on a workstation).
        port: HTTP port of the inference, health and metrics endpoints.
    """
    configure_logging()
    repository = ModelRepository()
    repository.update(model)
    server = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        DataPlane(model_registry=repository),
        _FixedRepository(model_registry=repository),
        port,
    )
    # KServe 0.21's RESTServer binds 0.0.0.0 whatever its caller wants.
    server.config.host = host
    add_predict_routes(kserve_app, model)
    asyncio.run(server.start())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The predictor's command line (KServe's own option names where they exist).

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(
        prog="python -m serving.predictor",
        description="Serve a churn registry version with KServe's model server.",
    )
    parser.add_argument(
        "--model_dir", required=True, type=Path, help="The registry version's folder."
    )
    parser.add_argument("--model_name", default="churn", help="Name in the predict URLs.")
    parser.add_argument(
        "--model_version", default=None, help="Version to report (default: from _COMPLETE)."
    )
    parser.add_argument(
        "--host", default=_LOOPBACK, help="Interface to bind; a pod passes 0.0.0.0."
    )
    parser.add_argument("--http_port", type=int, default=8080, help="HTTP port.")
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=1,
        help="Torch's intra-op threads (more replicas scale better than more threads).",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.http_port <= 65535:
        parser.error(f"--http_port must lie in 1..65535, got {args.http_port}")
    if args.torch_threads < 1:
        parser.error(f"--torch_threads must be at least 1, got {args.torch_threads}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Loads the version and serves it; a load failure is one line on stderr and exit 2.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.
    """
    args = parse_args(argv)
    # A request holds a handful of rows of a small network: extra intra-op threads only spin
    # against the event loop for the same cores (2 cores, batch 1: p50 24 ms with torch's
    # default of one thread per core, 1.9 ms with one).
    torch.set_num_threads(args.torch_threads)
    model = ChurnPredictor(args.model_name, args.model_dir, args.model_version)
    try:
        model.load()
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(model, args.host, args.http_port)


if __name__ == "__main__":
    main()

"""TorchServe handler of the churn model, shipped inside the model archive.

It runs inside TorchServe's worker, beside ``model.py`` (a copy of ``churn/model/network.py``), so
it imports only torch, TorchServe and the standard library: the ``churn`` package is not installed
in the serving image. TorchServe requires exactly one class in this module: the handler.

In KServe, requests come through one of its envelopes (``TS_SERVICE_ENVELOPE``, which the ``kserve-
torchserve`` runtime sets from the protocol version):

* ``kserve`` (v1): ``POST /v1/models/churn:predict`` with ``{"instances": [...]}``; the handler
receives the bare list of instances and returns one result per instance, which the envelope wraps as
``{"predictions": [...]}``. * ``kservev2`` (v2): ``POST /v2/models/churn/infer`` with one BYTES
input per instance, whose single element is the instance as a JSON string; each output is the
matching result as a JSON string.

Locally (``churn serve``) there is no envelope: the handler reads the request body itself and
answers in the same two shapes. TorchServe's envelopes fail on a body that is not a JSON object
before any handler code runs (a 503 "Prediction failed"); reading the body here turns every
malformed request into a 400 that says what is wrong.

An instance is ``{"sequence": {channel: [L numbers]}, "numeric": {feature: number}, "categorical":
{feature: "value"}}`` with raw values; a result is ``{"churn_probability": p, "churned": p >=
threshold, "model_version": ...}``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

_V2_KEYS = frozenset(("name", "datatype", "data"))
_MODEL_MODULE = "churn_serving_model"
# torch's default is one intra-op thread per core. On 2 shared cores the second (OpenMP) thread
# spun as long as the worker's own thread ran, and a batch-1 request waited at its barrier
# whenever the scheduler ran something else: handler time p50 1.1 ms but p90 109 ms under
# load, against p90 1.5 ms on one thread. A request of a few rows gains nothing from a second
# thread; several workers, not threads, use more cores.
_TORCH_THREADS = 1
# Python's JSON reader raises RecursionError near 1,000 levels; a valid request nests 5. The
# "from None" keeps that error out of the traceback TorchServe logs with every 400.
_TOO_DEEP = "nests arrays or objects too deeply to be read (a request needs 5 levels)"


class ChurnHandler(BaseHandler):
    """Scores request instances with the churn CNN on the CPU.

    The model holds tens of thousands of weights and a request a handful of rows, so a GPU would
    add transfer time without saving any.
    """

    def initialize(self, context: Any) -> None:
        """Loads the model from the unpacked archive and scores on one torch thread.

        Args:
            context: TorchServe's context; ``system_properties["model_dir"]`` holds the
                archive's files and ``manifest["model"]["modelVersion"]`` the model version.
        """
        model_dir = Path(context.system_properties["model_dir"])
        torch.set_num_threads(_TORCH_THREADS)
        self.setup(_import_model_module(model_dir / "model.py"), model_dir, context.manifest)

    def setup(self, model_module: Any, model_dir: Path, manifest: dict) -> None:
        """Loads the model with a given copy of the model code.

        The KServe predictor (``serving/predictor.py``) calls this with ``churn.model.network``
        and the registry version's model folder, so both runtimes parse, score and answer
        through the same code.

        Args:
            model_module: A module with ``load_model``, ``encode_instances`` and
                ``predict_proba`` (``churn/model/network.py`` or the archive's copy of it).
            model_dir: Folder with ``model.pt`` and ``model.json``.
            manifest: ``{"model": {"modelName": ..., "modelVersion": ...}}``, as in a model
                archive's manifest.
        """
        self.manifest = manifest
        self._model_module = model_module
        self.model, meta = model_module.load_model(model_dir)
        self.input_spec = meta["input_spec"]
        self.threshold = float(meta["threshold"])
        self.model_version = manifest["model"]["modelVersion"]
        self.device = torch.device("cpu")
        self.initialized = True

    def preprocess(
        self, data: list | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Turns the envelope's output into model tensors.

        Args:
            data: The bare instances (v1) or the v2 inputs, as the envelope hands them over.

        Returns:
            ``seq``, ``num`` and ``cat`` tensors, and how to shape the reply: a dict whose
            ``shape`` says which protocol the request spoke (the answer follows it).

        Raises:
            PredictionException: With status 400 and a message that names the instance and
                the field when the request does not fit the model's input spec.
        """
        if not data:
            raise PredictionException(
                'the request holds no instances: send {"instances": [instance, ...]} (v1) '
                "or one BYTES input per instance (v2)",
                400,
            )
        if not isinstance(data, list):
            raise PredictionException(f"instances must be a list, got {type(data).__name__}", 400)
        if _is_raw_request(data):
            data, reply = _read_body(data)
        else:
            v2 = all(isinstance(item, dict) and item.keys() >= _V2_KEYS for item in data)
            reply = {"shape": "v2" if v2 else "v1"}
        if reply["shape"] in ("v2", "body-v2"):
            instances = [_v2_instance(item, i) for i, item in enumerate(data)]
        else:
            instances = data
        try:
            seq, num, cat = self._model_module.encode_instances(instances, self.input_spec)
        except ValueError as exc:
            raise PredictionException(str(exc), 400) from exc
        return seq, num, cat, reply

    def inference(
        self,
        data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict],
        *args: object,
        **kwargs: object,
    ) -> tuple[list, dict]:
        """Computes churn probabilities.

        Args:
            data: The output of :meth:`preprocess`.
            *args: Unused; part of BaseHandler's signature.
            **kwargs: Unused; part of BaseHandler's signature.

        Returns:
            The probabilities as floats and how to shape the reply.
        """
        seq, num, cat, reply = data
        probs = self._model_module.predict_proba(self.model, seq, num, cat)
        unscored = torch.nonzero(~torch.isfinite(probs)).flatten().tolist()
        if unscored:
            # Values near float32's limit can still overflow the sums inside the model.
            raise PredictionException(
                f"instances {unscored}: the values are too large to score (the model's output "
                "is not a finite number)",
                400,
            )
        return probs.tolist(), reply

    def postprocess(self, data: tuple[list, dict]) -> list:
        """Builds one result per instance.

        Args:
            data: Probabilities and the reply shape from :meth:`inference`.

        Returns:
            Behind an envelope: result objects (v1) or the same results as JSON strings, one
            per input (v2). Without one: the whole response body, ``{"predictions": [...]}``
            (v1) or the v2 response with one BYTES output per input.
        """
        probs, reply = data
        results = [
            {
                "churn_probability": p,
                "churned": p >= self.threshold,
                "model_version": self.model_version,
            }
            for p in probs
        ]
        if reply["shape"] == "v1":
            return results
        if reply["shape"] == "v2":
            return [json.dumps(r) for r in results]
        if reply["shape"] == "body-v1":
            return [{"predictions": results}]
        outputs = [
            {"name": name, "shape": [1], "datatype": "BYTES", "data": [json.dumps(r)]}
            for name, r in zip(reply["names"], results, strict=True)
        ]
        body = {
            "model_name": self.manifest["model"]["modelName"],
            "model_version": self.model_version,
            "outputs": outputs,
        }
        if reply.get("id"):
            body["id"] = reply["id"]
        return [body]


def _import_model_module(path: Path) -> Any:
    """Imports the archive's ``model.py`` under a private name.

    A plain ``import model`` would depend on the worker's ``sys.path`` and could pick up an
    unrelated module of that common name.
    """
    spec = importlib.util.spec_from_file_location(_MODEL_MODULE, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import the model code from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODEL_MODULE] = module
    spec.loader.exec_module(module)
    return module


def _is_raw_request(data: list) -> bool:
    """Whether TorchServe handed over the request itself (no envelope): ``[{"body": ...}]``."""
    first = data[0]
    return (
        isinstance(first, dict)
        and ("body" in first or "data" in first)
        and not first.keys() >= _V2_KEYS
    )


def _read_body(data: list) -> tuple[list, dict]:
    """The instances (v1) or inputs (v2) of a request body, and how to shape the reply."""
    if len(data) != 1:
        raise PredictionException(
            f"the handler takes one request at a time (batchSize 1), got {len(data)}", 500
        )
    body = data[0].get("body")
    if body is None:
        body = data[0].get("data")
    if isinstance(body, str):
        # TorchServe's worker decodes a text/* body to a string; it is JSON all the same.
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PredictionException(f"the request body is not JSON: {exc}", 400) from exc
        except RecursionError:
            raise PredictionException(f"the request body {_TOO_DEEP}", 400) from None
    if not isinstance(body, dict):
        raise PredictionException(
            'the request body must be a JSON object, {"instances": [instance, ...]} (v1) or '
            f'{{"inputs": [...]}} (v2), got {type(body).__name__}',
            400,
        )
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise PredictionException("'instances' must be a non-empty list", 400)
        return instances, {"shape": "body-v1"}
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, list) or not inputs:
            raise PredictionException("'inputs' must be a non-empty list", 400)
        unwrapped = []
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or not item.keys() >= _V2_KEYS:
                raise PredictionException(
                    f"input {i} must be an object with name, datatype and data", 400
                )
            # As KServe's v2 envelope does: a BYTES input of shape [1] holds its one element.
            value = item["data"]
            if isinstance(value, list):
                if len(value) != 1:
                    raise PredictionException(
                        f"input {i} ({item['name']!r}): data must hold one element, the "
                        f"instance as a JSON string, got {len(value)}",
                        400,
                    )
                value = value[0]
            unwrapped.append({**item, "data": value})
        names = [item["name"] for item in inputs]
        return unwrapped, {"shape": "body-v2", "names": names, "id": body.get("id")}
    raise PredictionException(
        f"the request body has neither 'instances' (v1) nor 'inputs' (v2): keys {sorted(body)}",
        400,
    )


def _v2_instance(item: dict, index: int) -> dict:
    name = item.get("name")
    if item.get("datatype") != "BYTES":
        raise PredictionException(
            f"input {index} ({name!r}): datatype must be BYTES holding the instance as JSON, "
            f"got {item.get('datatype')!r}",
            400,
        )
    value = item.get("data")
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PredictionException(
                f"input {index} ({name!r}): data is not valid JSON: {exc}", 400
            ) from exc
        except RecursionError:
            raise PredictionException(f"input {index} ({name!r}): data {_TOO_DEEP}", 400) from None
    if not isinstance(value, dict):
        raise PredictionException(
            f"input {index} ({name!r}): data must be one instance object, "
            f"got {type(value).__name__}",
            400,
        )
    return value

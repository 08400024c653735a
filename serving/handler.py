"""TorchServe handler of the churn model, shipped inside the model archive.

It runs inside TorchServe's worker, beside ``model.py`` (a copy of ``churn/model.py``), so it
imports only torch, TorchServe and the standard library: the ``churn`` package is not installed
in the serving image. TorchServe requires exactly one class in this module: the handler.

Requests come through one of KServe's envelopes (``service_envelope`` in config.properties or
``TS_SERVICE_ENVELOPE``):

* ``kserve`` (v1): ``POST /v1/models/churn:predict`` with ``{"instances": [...]}``; the handler
  receives the bare list of instances and returns one result per instance, which the envelope
  wraps as ``{"predictions": [...]}``.
* ``kservev2`` (v2): ``POST /v2/models/churn/infer`` with one BYTES input per instance, whose
  single element is the instance as a JSON string; each output is the matching result as a
  JSON string.

An instance is ``{"sequence": {channel: [L numbers]}, "numeric": {feature: number},
"categorical": {feature: "value"}}`` with raw values; a result is ``{"churn_probability": p,
"churned": p >= threshold, "model_version": ...}``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

_V2_KEYS = frozenset(("name", "datatype", "data"))
_MODEL_MODULE = "churn_serving_model"


class ChurnHandler(BaseHandler):
    """Scores request instances with the churn CNN on the CPU.

    The model holds tens of thousands of weights and a request a handful of rows, so a GPU would
    add transfer time without saving any.
    """

    def initialize(self, context: object) -> None:
        """Loads the model from the unpacked archive.

        Args:
            context: TorchServe's context; ``system_properties["model_dir"]`` holds the
                archive's files and ``manifest["model"]["modelVersion"]`` the model version.
        """
        self.manifest = context.manifest
        model_dir = Path(context.system_properties["model_dir"])
        self._model_module = _import_model_module(model_dir / "model.py")
        self.model, meta = self._model_module.load_model(model_dir)
        self.input_spec = meta["input_spec"]
        self.threshold = float(meta["threshold"])
        self.model_version = self.manifest["model"]["modelVersion"]
        self.device = torch.device("cpu")
        self.initialized = True

    def preprocess(
        self, data: list | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Turns the envelope's output into model tensors.

        Args:
            data: The bare instances (v1) or the v2 inputs, as the envelope hands them over.

        Returns:
            ``seq``, ``num`` and ``cat`` tensors, and whether the request is v2 (the answer
            must follow the same protocol).

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
        if isinstance(data[0], dict) and "body" in data[0]:
            raise PredictionException(
                "the request reached the handler without a KServe envelope: set "
                "service_envelope=kserve (v1) or kservev2 (v2) in config.properties",
                400,
            )
        v2 = all(isinstance(item, dict) and item.keys() >= _V2_KEYS for item in data)
        instances = [_v2_instance(item, i) for i, item in enumerate(data)] if v2 else data
        try:
            seq, num, cat = self._model_module.encode_instances(instances, self.input_spec)
        except ValueError as exc:
            raise PredictionException(str(exc), 400) from exc
        return seq, num, cat, v2

    def inference(
        self,
        data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool],
        *args: object,
        **kwargs: object,
    ) -> tuple[list, bool]:
        """Computes churn probabilities.

        Args:
            data: The output of :meth:`preprocess`.
            *args: Unused; part of BaseHandler's signature.
            **kwargs: Unused; part of BaseHandler's signature.

        Returns:
            The probabilities as floats and whether the request was v2.
        """
        seq, num, cat, v2 = data
        probs = self._model_module.predict_proba(self.model, seq, num, cat)
        unscored = torch.nonzero(~torch.isfinite(probs)).flatten().tolist()
        if unscored:
            # Values near float32's limit can still overflow the sums inside the model.
            raise PredictionException(
                f"instances {unscored}: the values are too large to score (the model's output "
                "is not a finite number)",
                400,
            )
        return probs.tolist(), v2

    def postprocess(self, data: tuple[list, bool]) -> list:
        """Builds one result per instance.

        Args:
            data: Probabilities and the v2 flag from :meth:`inference`.

        Returns:
            Result objects (v1) or the same results as JSON strings, one per input (v2).
        """
        probs, v2 = data
        results = [
            {
                "churn_probability": p,
                "churned": p >= self.threshold,
                "model_version": self.model_version,
            }
            for p in probs
        ]
        return [json.dumps(r) for r in results] if v2 else results


def _import_model_module(path: Path) -> object:
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
    if not isinstance(value, dict):
        raise PredictionException(
            f"input {index} ({name!r}): data must be one instance object, "
            f"got {type(value).__name__}",
            400,
        )
    return value

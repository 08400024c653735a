"""The KServe transformer: predictions by customer id, from the Feast online store.

Applications know a customer id, not a sequence of bins. The transformer takes ids, reads each
customer's latest sequence, context and attributes from the Feast online store (SQLite on a
workstation, Redis in the cluster), builds the model's request with
``churn.features.request.build_request``, calls the predictor in its protocol and answers per
customer: the churn probability, the decision, the model version, the feature timestamp and
the feature age. Every prediction goes to the inference log (``serving.inference_log``).

Requests, v1 (``POST /v1/models/<name>:predict``)::

    {"instances": [{"customer_id": "c1"}, {"customer_id": "c2"}]}
    -> {"predictions": [{"customer_id": "c1", "churn_probability": 0.31, "churned": false,
                         "model_version": "...", "feature_timestamp": "...",
                         "feature_age_seconds": 3600.0},
                        {"customer_id": "c2", "error": "unknown customer"}]}

and v2 (``POST /v2/models/<name>/infer``): one BYTES input named ``customer_id`` holding the
ids; the answer has one BYTES output ``result`` holding each customer's answer as JSON.

An unknown customer, or one whose features are older than ``max_feature_age_hours``, is
answered per customer and the others are scored. A bad request is a 400 naming the problem; a
predictor that cannot be reached or does not answer in time is a 503, one that answers with an
error or nonsense a 502, each with the reason.

KServe starts it as ``python -m serving.transformer --model_name NAME --predictor_host HOST
--http_port 8080``; ``--predictor_protocol`` must match the predictor's ``protocolVersion``.
The remaining settings come from ``churn.settings.TransformerConfig`` (``CHURN_TRANSFORMER__*``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest
from prometheus_client import Counter, Histogram

from churn.errors import ChurnError, ServingError
from churn.features.request import ModelRequest, build_request, check_fits, model_feature_spec
from churn.features.store import FeatureRepo, FeatureStoreError
from churn.features.summary import summarize, summary_windows
from churn.settings import TransformerConfig, load_settings
from serving.inference_log import InferenceLog, log_schema, open_sink

log = logging.getLogger(__name__)

ID_INPUT = "customer_id"
RESULT_OUTPUT = "result"
UNKNOWN = "unknown customer"
_HOUR = 3600.0
_DAY = 24 * _HOUR

FEATURE_AGE = Histogram(
    "churn_feature_age_seconds",
    "Age of the online features of each customer looked up (now minus the snapshot time; "
    "negative while the snapshot's day, which ends at the next midnight UTC, is not over).",
    buckets=(
        0,
        _HOUR,
        6 * _HOUR,
        12 * _HOUR,
        _DAY,
        1.5 * _DAY,
        2 * _DAY,
        3 * _DAY,
        7 * _DAY,
        30 * _DAY,
        365 * _DAY,
        float("inf"),
    ),
)
CUSTOMERS = Counter(
    "churn_transformer_customers",
    "Customers asked for, by outcome: scored, unknown (no features) or stale (too old).",
    ["outcome"],
)


class UpstreamError(Exception):
    """The predictor or the feature store failed: a 502 or 503 that states the reason.

    Args:
        status: 502 (an answer that is an error or unusable) or 503 (no answer).
        message: What failed, naming the service and the reason.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_model_meta(model_dir: str | Path) -> dict:
    """Reads ``model.json`` of a registry version folder or of a model folder.

    Only the JSON is read: the transformer needs the input spec and the summary windows, not
    the weights (nor torch).

    Args:
        model_dir: A registry version (``model/model.json`` inside) or a model folder.

    Returns:
        The parsed ``model.json``.

    Raises:
        ServingError: Neither file exists, or it is not a model description.
    """
    model_dir = Path(model_dir)
    for path in (model_dir / "model" / "model.json", model_dir / "model.json"):
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ServingError(f"{path} is not valid JSON: {exc}") from exc
            if not isinstance(meta, dict) or not isinstance(meta.get("input_spec"), dict):
                raise ServingError(f"{path} has no input_spec: is it a churn model?")
            return meta
    raise ServingError(
        f"{model_dir} holds no model.json (neither a registry version nor a model folder)"
    )


@dataclass
class _Batch:
    """One request on its way through preprocess, predict and postprocess."""

    request_id: str
    protocol: str
    request: ModelRequest
    ages: np.ndarray
    stale: np.ndarray
    received: datetime
    results: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> np.ndarray:
        return np.flatnonzero(self.request.known & ~self.stale)


class ChurnTransformer(Model):
    """Customer ids in, churn predictions out: Feast, then the predictor, then the log.

    Args:
        name: The model name clients and the predictor use (the InferenceService's name).
        cfg: Transformer settings; ``predictor_host``, ``predictor_protocol``,
            ``model_dir``, ``feature_repo`` and ``log_uri`` are taken as resolved (see
            :func:`resolve_settings`).
        use_ssl: Call the predictor over HTTPS.
    """

    def __init__(self, name: str, cfg: TransformerConfig, use_ssl: bool = False) -> None:
        super().__init__(name)
        self.cfg = cfg
        scheme = "https" if use_ssl else "http"
        base = f"{scheme}://{cfg.predictor_host}"
        if cfg.predictor_protocol == "v2":
            self.predictor_url = f"{base}/v2/models/{name}/infer"
        else:
            self.predictor_url = f"{base}/v1/models/{name}:predict"
        self.max_age_seconds = (
            None if cfg.max_feature_age_hours is None else cfg.max_feature_age_hours * _HOUR
        )
        self._client: httpx.AsyncClient | None = None
        self._feast = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feast")
        self._log: InferenceLog | None = None

    def load(self) -> bool:
        """Reads the model's input spec, opens the online store and starts the log.

        Raises:
            ChurnError: The model folder, the feature repository or the online store is
                unusable, or the store's features do not fit the model; the message says which.
        """
        meta = load_model_meta(self.cfg.model_dir)
        self.input_spec = meta["input_spec"]
        self.windows = summary_windows(
            list(meta.get("architecture", {}).get("windows", [])) or [self.input_spec["seq_len"]],
            int(self.input_spec["seq_len"]),
        )
        self.feature_spec = model_feature_spec(self.input_spec)
        assert self.cfg.feature_repo is not None and self.cfg.log_uri is not None
        repo = FeatureRepo(self.cfg.feature_repo)
        # Locally the repository says what it was built with; check it against the model at
        # start-up rather than answer every request with an error. In the cluster the
        # definitions live in Feast's registry and only the model's features are read.
        if (repo.sources / "spec.json").is_file():
            check_fits(repo.spec, self.input_spec)
        self.reader = repo.online_reader(self.feature_spec)
        # A probe read: an online store that was never materialized, or a Redis that is not
        # there, fails here with the reason rather than at the first request.
        self.reader.read(["__churn_probe__"])
        self._log = InferenceLog(
            open_sink(self.cfg.log_uri, self.cfg.log_endpoint_url),
            log_schema(self.input_spec, self.windows),
            batch_size=self.cfg.log_batch_size,
            flush_seconds=self.cfg.log_flush_seconds,
            queue_size=self.cfg.log_queue_size,
        ).start()
        self.ready = True
        return self.ready

    def stop(self) -> None:
        """Flushes the inference log (KServe calls this when it unloads the model)."""
        if self._log is not None:
            self._log.close()
            self._log = None
        self._feast.shutdown(wait=False)

    def validate(self, payload: Any) -> Any:
        # KServe's check looks for "instances"/"inputs" in a dict; preprocess has already
        # turned the request into a batch.
        return payload

    async def preprocess(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> _Batch:
        """Reads the ids, looks up their features and decides who can be scored.

        Raises:
            InvalidInput: The request carries no ids, ids that are not strings, or more ids
                than ``max_ids_per_request``.
            UpstreamError: The online store cannot be read (503).
        """
        received = datetime.now(UTC)
        if isinstance(payload, InferRequest):
            ids, protocol = _v2_ids(payload), "v2"
            request_id = (headers or {}).get("x-request-id") or payload.id
        else:
            ids, protocol = _v1_ids(payload), "v1"
            request_id = (headers or {}).get("x-request-id")
        if len(ids) > self.cfg.max_ids_per_request:
            raise InvalidInput(
                f"the request holds {len(ids)} customer ids, more than the limit of "
                f"{self.cfg.max_ids_per_request} (transformer.max_ids_per_request)"
            )
        loop = asyncio.get_running_loop()
        try:
            # Feast's SQLite and Redis reads block: they run on a thread of their own, so the
            # server keeps answering while one waits.
            features = await loop.run_in_executor(self._feast, self.reader.read, ids)
        except FeatureStoreError as exc:
            raise UpstreamError(503, str(exc)) from exc
        request = build_request(ids, features, self.feature_spec, self.input_spec)
        now = time.time()
        ages = np.where(request.known, now - request.feature_ts, np.nan)
        stale = request.known & (
            ages > self.max_age_seconds if self.max_age_seconds is not None else False
        )
        for age in ages[request.known]:
            FEATURE_AGE.observe(float(age))
        return _Batch(
            request_id=request_id or uuid.uuid4().hex,
            protocol=protocol,
            request=request,
            ages=ages,
            stale=stale,
            received=received,
        )

    async def predict(
        self,
        payload: _Batch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> _Batch:
        """Scores the customers that have fresh features; no call when there are none.

        Raises:
            UpstreamError: 503 when the predictor cannot be reached or does not answer in
                time (or answers 503), 502 when it answers with another error or an answer
                that does not fit the request.
        """
        scored = payload.scored
        if len(scored):
            instances = [payload.request.instances[i] for i in scored]
            payload.results = await self._call_predictor(instances, payload.request_id)
        return payload

    async def postprocess(
        self,
        result: _Batch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict:
        """Answers per customer, in the request's protocol, and logs what was scored."""
        answers = self._answers(result)
        self._record(result)
        if result.protocol == "v1":
            return {"predictions": answers}
        return {
            "id": result.request_id,
            "model_name": self.name,
            "model_version": result.results[0]["model_version"] if result.results else None,
            "outputs": [
                {
                    "name": RESULT_OUTPUT,
                    "shape": [len(answers)],
                    "datatype": "BYTES",
                    "data": [json.dumps(a) for a in answers],
                }
            ],
        }

    async def _call_predictor(self, instances: list[dict], request_id: str) -> list[dict]:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.cfg.predictor_timeout_seconds,
                # One retry on a failed connect: a keep-alive connection the predictor closed
                # while idle is re-opened instead of failing the request.
                transport=httpx.AsyncHTTPTransport(retries=1),
            )
        body = _predictor_body(instances, request_id, self.cfg.predictor_protocol)
        url = self.predictor_url
        try:
            response = await self._client.post(
                url,
                content=orjson.dumps(body),
                headers={"content-type": "application/json", "x-request-id": request_id},
            )
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                503,
                f"the predictor at {url} did not answer within "
                f"{self.cfg.predictor_timeout_seconds:g} s ({type(exc).__name__})",
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                503, f"the predictor at {url} cannot be reached: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            status = 503 if response.status_code == 503 else 502
            text = response.text.strip()[:500]
            raise UpstreamError(
                status, f"the predictor at {url} answered {response.status_code}: {text}"
            )
        try:
            return _predictor_results(response.json(), len(instances), self.cfg.predictor_protocol)
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(
                502, f"the predictor at {url} gave an answer that does not fit: {exc}"
            ) from exc

    def _answers(self, batch: _Batch) -> list[dict]:
        request = batch.request
        by_index = dict(zip(batch.scored.tolist(), batch.results, strict=True))
        answers = []
        for i, customer in enumerate(request.customer_ids):
            if not request.known[i]:
                CUSTOMERS.labels(outcome="unknown").inc()
                answers.append({"customer_id": customer, "error": UNKNOWN})
                continue
            timestamp = request.feature_timestamp(i)
            assert timestamp is not None
            freshness: dict[str, Any] = {
                "feature_timestamp": timestamp.isoformat(),
                "feature_age_seconds": round(float(batch.ages[i]), 3),
            }
            if batch.stale[i]:
                CUSTOMERS.labels(outcome="stale").inc()
                answers.append(
                    {
                        "customer_id": customer,
                        "error": f"stale features: {batch.ages[i] / _HOUR:.1f} h old, more "
                        f"than the maximum of {self.cfg.max_feature_age_hours:g} h "
                        "(transformer.max_feature_age_hours); is `churn features "
                        "materialize` running?",
                        **freshness,
                    }
                )
                continue
            CUSTOMERS.labels(outcome="scored").inc()
            scored = by_index[i]
            answers.append(
                {
                    "customer_id": customer,
                    "churn_probability": scored["churn_probability"],
                    "churned": scored["churned"],
                    "model_version": scored["model_version"],
                    **freshness,
                }
            )
        return answers

    def _record(self, batch: _Batch) -> None:
        if self._log is None or not batch.results:
            return
        rows = batch.scored
        request = batch.request
        summary = summarize(
            request.seq[rows], request.num[rows], request.cat[rows], self.input_spec, self.windows
        )
        columns = {name: values.tolist() for name, values in summary.items()}
        records = []
        for k, (i, scored) in enumerate(zip(rows.tolist(), batch.results, strict=True)):
            records.append(
                {
                    "request_id": batch.request_id,
                    "time": batch.received,
                    "customer_id": request.customer_ids[i],
                    "model_version": scored["model_version"],
                    "feature_timestamp": request.feature_timestamp(i),
                    "churn_probability": scored["churn_probability"],
                    "churned": scored["churned"],
                    **{name: values[k] for name, values in columns.items()},
                }
            )
        self._log.record(records)


def _v1_ids(payload: object) -> list[str]:
    if not isinstance(payload, dict):
        raise InvalidInput(
            'the request body must be a JSON object {"instances": [{"customer_id": "..."}]}, '
            f"got {type(payload).__name__}"
        )
    if "instances" not in payload:
        raise InvalidInput(
            f"the request has no 'instances' (keys: {sorted(payload)}): send "
            '{"instances": [{"customer_id": "..."}]}'
        )
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('\'instances\' must be a non-empty list of {"customer_id": "..."}')
    ids = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or ID_INPUT not in instance:
            raise InvalidInput(f'instance {i} must be an object with a "customer_id"')
        ids.append(_id(instance[ID_INPUT], f"instance {i}"))
    return ids


def _v2_ids(request: InferRequest) -> list[str]:
    inputs = {item.name: item for item in request.inputs}
    if ID_INPUT not in inputs:
        raise InvalidInput(
            f"the request has no input named {ID_INPUT!r} (inputs: {sorted(inputs)}): send one "
            "BYTES input holding the customer ids"
        )
    item = inputs[ID_INPUT]
    if item.datatype != "BYTES":
        raise InvalidInput(
            f"input {ID_INPUT!r} must have datatype BYTES (the ids as strings), got {item.datatype}"
        )
    data = item.data
    if isinstance(data, np.ndarray):
        data = data.ravel().tolist()
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"input {ID_INPUT!r} must hold at least one customer id")
    if int(np.prod(item.shape)) != len(data):
        raise InvalidInput(
            f"input {ID_INPUT!r} has shape {list(item.shape)} but holds {len(data)} ids"
        )
    return [_id(value, f"{ID_INPUT}[{i}]") for i, value in enumerate(data)]


def _id(value: object, where: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where}: the customer id is not UTF-8") from exc
    # Numbers are refused rather than turned into text: 1 and "00001" are different customers.
    if not isinstance(value, str):
        raise InvalidInput(
            f"{where}: customer_id must be a string, got {type(value).__name__} {value!r}"
        )
    if not value.strip():
        raise InvalidInput(f"{where}: customer_id is empty")
    return value.strip()


def _predictor_body(instances: list[dict], request_id: str, protocol: str) -> dict:
    if protocol == "v1":
        return {"instances": instances}
    # One BYTES input per instance, the instance as JSON: the shape the churn handler and the
    # kserve predictor read (churn/release/torchserve_handler.py).
    return {
        "id": request_id,
        "inputs": [
            {"name": f"instance-{i}", "shape": [1], "datatype": "BYTES", "data": [json.dumps(x)]}
            for i, x in enumerate(instances)
        ],
    }


def _predictor_results(answer: Any, expected: int, protocol: str) -> list[dict]:
    if protocol == "v1":
        results = answer["predictions"]
    else:
        outputs = {item["name"]: item for item in answer["outputs"]}
        results = []
        for i in range(expected):
            data = outputs[f"instance-{i}"]["data"]
            results.append(json.loads(data[0] if isinstance(data, list) else data))
    if not isinstance(results, list) or len(results) != expected:
        got = len(results) if isinstance(results, list) else type(results).__name__
        raise ValueError(f"{got} results for {expected} instances")
    for result in results:
        probability = result["churn_probability"]
        if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
            raise ValueError(f"churn_probability {probability!r} is not a probability")
    return results


def resolve_settings(
    args: argparse.Namespace, cfg: TransformerConfig, home: Path
) -> TransformerConfig:
    """The settings with KServe's arguments applied and the folder defaults filled in.

    Args:
        args: Parsed command line (:func:`parse_args`); arguments given win.
        cfg: The transformer section of the settings.
        home: ``CHURN_HOME``, under which the feature repository and log default.

    Returns:
        A copy with ``feature_repo`` and ``log_uri`` set.
    """
    updates: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.http_port),
            ("predictor_host", args.predictor_host),
            ("predictor_protocol", args.predictor_protocol),
            ("predictor_timeout_seconds", args.predictor_request_timeout_seconds),
            ("model_dir", args.model_dir),
            ("feature_repo", args.feature_repo),
        )
        if value is not None
    }
    resolved = TransformerConfig.model_validate({**cfg.model_dump(), **updates})
    if resolved.feature_repo is None:
        resolved.feature_repo = home / "feature_repo"
    if resolved.log_uri is None:
        resolved.log_uri = str(home / "inference_log")
    return resolved


def parse_args(argv: list[str]) -> argparse.Namespace:
    """KServe's transformer arguments, and the churn ones; unknown KServe flags are ignored."""
    parser = argparse.ArgumentParser(prog="python -m serving.transformer", description=__doc__)
    parser.add_argument("--model_name", default=None, help="Name the model is called by.")
    parser.add_argument("--predictor_host", default=None, help="host:port of the predictor.")
    # --protocol is the older name KServe still passes in ModelMesh mode.
    parser.add_argument(
        "--predictor_protocol",
        "--protocol",
        default=None,
        choices=["v1", "v2"],
        dest="predictor_protocol",
    )
    parser.add_argument(
        "--predictor_use_ssl", default="false", choices=["true", "false", "True", "False"]
    )
    parser.add_argument("--predictor_request_timeout_seconds", type=float, default=None)
    parser.add_argument("--http_port", type=int, default=None)
    parser.add_argument("--host", default=None, help="Interface to bind (127.0.0.1 locally).")
    parser.add_argument("--model_dir", type=Path, default=None, help="Registry version folder.")
    parser.add_argument("--feature_repo", type=Path, default=None, help="Feature repo folder.")
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file.")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments %s", unknown)
    return args


def serve(model: ChurnTransformer, host: str, port: int) -> None:
    """Runs KServe's REST server for the model on ``host:port`` until SIGTERM or Ctrl-C.

    KServe's ``ModelServer.start`` binds every interface; this binds the socket itself, so a
    workstation's transformer listens on 127.0.0.1 only. The log is flushed once the server
    has shut down.

    Args:
        model: A loaded transformer.
        host: Interface to bind.
        port: Port to bind.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(http_port=port, enable_grpc=False)
    server.register_model(model)

    async def upstream_error(_request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UpstreamError)
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    async def bad_body(_request: Any, exc: Exception) -> JSONResponse:
        # FastAPI answers a v2 body that is not an inference request with 422; KServe's own
        # bad inputs are 400, and so are these, naming the first problem.
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            status_code=400,
            content={"error": f"invalid request: {where or 'body'}: {first.get('msg', exc)}"},
        )

    app.add_exception_handler(UpstreamError, upstream_error)
    app.add_exception_handler(RequestValidationError, bad_body)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        port,
        # Kubernetes' default grace period is 30 s; the log's flush needs some of it.
        grace_period=5,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServingError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    log.info(
        "transformer %s on http://%s:%d, predictor %s", model.name, host, port, model.predictor_url
    )
    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it found;
    # Python's default would end the process before the log is flushed, this one lets the
    # flush below run.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        rest.run(sockets=[sock])
    finally:
        model.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m serving.transformer``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every predictor call at INFO, a second line per request beside the access log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(args.config)
        cfg = resolve_settings(args, settings.transformer, settings.home)
        model = ChurnTransformer(
            args.model_name or settings.registry.model_name,
            cfg,
            use_ssl=args.predictor_use_ssl.lower() == "true",
        )
        model.load()
        serve(model, cfg.host, cfg.port)
    except (ChurnError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

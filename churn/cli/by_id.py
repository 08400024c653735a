"""Serving by customer id beside ``churn serve``'s predictor, and ``churn predict``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from churn.cli.common import settings
from churn.settings import Settings

if TYPE_CHECKING:
    from serving.local import LocalTransformer


@contextlib.contextmanager
def transformer_beside(
    cfg: Settings, version_dir: Path, predictor_url: str, log_file: Path, enabled: bool = True
) -> Iterator[LocalTransformer | None]:
    """Runs the KServe transformer in front of a local predictor while the block runs.

    Args:
        cfg: The resolved settings (the transformer gets its section and ``home``).
        version_dir: The downloaded registry version the predictor serves.
        predictor_url: The predictor's base URL, ``http://host:port``.
        log_file: Where the transformer's output goes.
        enabled: ``False`` runs nothing and yields ``None``.

    Yields:
        The running ``serving.local.LocalTransformer``, or ``None``.
    """
    if not enabled:
        yield None
        return
    from serving.local import LocalTransformer

    with LocalTransformer(
        cfg.registry.model_name,
        predictor_url.removeprefix("http://"),
        version_dir,
        cfg,
        log_file=log_file,
    ) as transformer:
        yield transformer


def predict_cmd(
    customer_id: list[str] = typer.Option(
        ..., "--customer-id", help="Customer ids: --customer-id ID [ID ...]."
    ),
    more_ids: list[str] | None = typer.Argument(None, hidden=True),
    url: str | None = typer.Option(
        None, "--url", help="Transformer base URL (default: http://transformer.host:port)."
    ),
    protocol: str = typer.Option("v1", "--protocol", help="v1 or v2."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds to wait."),
) -> None:
    """Predict churn for customers by id, through the transformer `churn serve` runs.

    Prints one JSON line per customer: the probability, the decision, the model version, the
    feature timestamp and age, or why the customer was not scored.
    """
    import requests

    from churn.errors import ServingError

    cfg = settings()
    ids = [*customer_id, *(more_ids or [])]
    if protocol not in ("v1", "v2"):
        raise ServingError(f"--protocol must be v1 or v2, got {protocol!r}")
    base = (url or f"http://{cfg.transformer.host}:{cfg.transformer.port}").rstrip("/")
    name = cfg.registry.model_name
    if protocol == "v1":
        endpoint = f"{base}/v1/models/{name}:predict"
        body: dict = {"instances": [{"customer_id": c} for c in ids]}
    else:
        endpoint = f"{base}/v2/models/{name}/infer"
        body = {
            "inputs": [
                {"name": "customer_id", "shape": [len(ids)], "datatype": "BYTES", "data": ids}
            ]
        }
    try:
        resp = requests.post(endpoint, json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise ServingError(
            f"the transformer at {base} cannot be reached ({type(exc).__name__}); is `churn "
            "serve` running?"
        ) from exc
    try:
        answer = resp.json()
    except ValueError:
        answer = {"error": resp.text.strip()}
    if resp.status_code != 200:
        raise ServingError(f"{endpoint} answered {resp.status_code}: {answer.get('error', answer)}")
    if protocol == "v1":
        results = answer["predictions"]
    else:
        results = [json.loads(x) for x in answer["outputs"][0]["data"]]
    for result in results:
        typer.echo(json.dumps(result))

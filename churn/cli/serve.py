"""`churn serve`: the champion on TorchServe (or the KServe predictor) on this machine."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from churn.cli.common import settings


class Runtime(StrEnum):
    """The model servers `churn serve` can run."""

    torchserve = "torchserve"
    kserve = "kserve"


def serve_cmd(
    version: str | None = typer.Option(
        None, "--version", help="Registry version to serve (default: the champion)."
    ),
    runtime: Runtime = typer.Option(
        Runtime.torchserve,
        "--runtime",
        help="torchserve, or kserve: the KServe predictor (serving/predictor.py), same answers.",
    ),
) -> None:
    """Serve the champion with TorchServe (or the KServe predictor) on this machine until Ctrl-C.

    Addresses and protocol come from the serving settings (127.0.0.1:8080 by default);
    TorchServe's management API always stays on 127.0.0.1. The KServe predictor serves
    predictions, health and metrics on the inference port alone.
    """
    import signal
    import tempfile
    import time

    # Imported here so that other commands do not pay for boto3 and requests.
    from churn.errors import RegistryError, ServingError
    from churn.release.registry import open_registry
    from churn.release.torchserve import LocalTorchServe
    from serving.local_kserve import LocalKServePredictor

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # `kill` and container runtimes send SIGTERM: stop TorchServe as cleanly as on Ctrl-C
    # instead of leaving it running in its own process group.
    signal.signal(signal.SIGTERM, interrupt)
    cfg = settings()
    registry = open_registry(cfg.registry)
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise RegistryError("no champion yet: promote a version or pass --version")
        version = champion.version
    with tempfile.TemporaryDirectory(prefix="churn-serve-") as tmp:
        local = registry.download(version, Path(tmp) / "version")
        server: LocalTorchServe | LocalKServePredictor
        if runtime is Runtime.kserve:
            server = LocalKServePredictor(
                local,
                cfg.registry.model_name,
                version,
                host=cfg.serving.host,
                port=cfg.serving.inference_port,
                workdir=Path(tmp) / "kserve",
            )
        else:
            server = LocalTorchServe(
                local / "model-store",
                cfg.registry.model_name,
                host=cfg.serving.host,
                inference_port=cfg.serving.inference_port,
                management_port=cfg.serving.management_port,
                metrics_port=cfg.serving.metrics_port,
                protocol_version=cfg.serving.protocol_version,
                workdir=Path(tmp) / "torchserve",
            )
        with server:
            typer.echo(
                f"serving {cfg.registry.model_name} {version} on {runtime.value}: "
                f"POST {server.predict_url}, metrics {server.metrics_url}; Ctrl-C stops"
            )
            try:
                while server.running:
                    time.sleep(1)
            except KeyboardInterrupt:
                return
            raise ServingError(f"{runtime.value} stopped unexpectedly\n{server.log_tail()}")

"""`churn serve`: the champion on TorchServe on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from churn.cli.by_id import transformer_beside
from churn.cli.common import settings


def serve_cmd(
    version: str | None = typer.Option(
        None, "--version", help="Registry version to serve (default: the champion)."
    ),
    by_id: bool = typer.Option(
        True,
        "--transformer/--no-transformer",
        help="Also serve by customer id: the KServe transformer on the Feast online store.",
    ),
) -> None:
    """Serve the champion with TorchServe on this machine until Ctrl-C.

    Addresses and protocol come from the serving settings (127.0.0.1:8080 by default);
    the management API always stays on 127.0.0.1. The transformer (transformer settings,
    127.0.0.1:8090 by default) answers `churn predict --customer-id ID [ID ...]`.
    """
    import signal
    import tempfile
    import time

    # Imported here so that other commands do not pay for boto3 and requests.
    from churn.errors import RegistryError, ServingError
    from churn.release.registry import open_registry
    from churn.release.torchserve import LocalTorchServe

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
                f"serving {cfg.registry.model_name} {version}: POST {server.predict_url}, "
                f"metrics {server.addresses.metrics}/metrics; Ctrl-C stops"
            )
            log_file = Path(tmp) / "transformer.log"
            with transformer_beside(
                cfg, local, server.addresses.inference, log_file, by_id
            ) as transformer:
                if transformer is not None:
                    typer.echo(f"by customer id: POST {transformer.predict_url}")
                try:
                    while server.running and (transformer is None or transformer.running):
                        time.sleep(1)
                except KeyboardInterrupt:
                    return
                if transformer is not None and not transformer.running:
                    raise ServingError(
                        f"the transformer stopped unexpectedly\n{transformer.log_tail()}"
                    )
            raise ServingError(f"TorchServe stopped unexpectedly\n{server.log_tail()}")

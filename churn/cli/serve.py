"""`churn serve`: the champion on TorchServe (or the KServe predictor) on this machine.

`--status` and `--stop` act on the TorchServe server recorded under CHURN_HOME.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from churn.cli.by_id import transformer_beside
from churn.cli.common import settings


class Runtime(StrEnum):
    """The model servers `churn serve` can run."""

    torchserve = "torchserve"
    kserve = "kserve"


def serve_cmd(
    version: str | None = typer.Option(
        None, "--version", help="Registry version to serve (default: the champion)."
    ),
    stop: bool = typer.Option(
        False,
        "--stop",
        help="Stop the server recorded under CHURN_HOME, also one whose churn serve was killed.",
    ),
    status: bool = typer.Option(
        False,
        "--status",
        help="Say whether a server runs, what it serves, where, and its pids; exit 1 if none.",
    ),
    runtime: Runtime = typer.Option(
        Runtime.torchserve,
        "--runtime",
        help="torchserve, or kserve: the KServe predictor (serving/predictor.py), same answers.",
    ),
    by_id: bool = typer.Option(
        True,
        "--transformer/--no-transformer",
        help="Also serve by customer id: the KServe transformer on the Feast online store.",
    ),
) -> None:
    """Serve the champion with TorchServe on this machine until Ctrl-C, SIGTERM or --stop.

    Addresses and protocol come from the serving settings (127.0.0.1:8080 by default);
    the management API always stays on 127.0.0.1. The running server is recorded in
    CHURN_HOME/serve/torchserve.json, and TorchServe stops when this command ends, however it
    ends (kill -9 included). `--runtime kserve` runs the KServe predictor instead, which
    serves predictions, health and metrics on the inference port alone and ends with this
    process (it is not recorded). The transformer (transformer settings, 127.0.0.1:8090 by
    default) answers `churn predict --customer-id ID [ID ...]` in front of either.
    """
    from churn.errors import ServingError
    from churn.release.serve_record import record_path

    if stop and status:
        raise ServingError("--stop and --status exclude each other")
    if (stop or status) and version is not None:
        raise ServingError("--version starts a server; it does not go with --stop or --status")
    record = record_path(settings().home)
    if stop:
        _stop(record)
    elif status:
        _status(record)
    else:
        _serve(version, record, runtime, by_id)


def _serve(version: str | None, record: Path, runtime: Runtime, by_id: bool) -> None:
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

    # `kill`, `churn serve --stop` and container runtimes send SIGTERM: stop TorchServe as
    # cleanly as on Ctrl-C.
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
                record=record,
            )
        with server:
            stops = "Ctrl-C or `churn serve --stop`" if runtime is Runtime.torchserve else "Ctrl-C"
            typer.echo(
                f"serving {cfg.registry.model_name} {version} on {runtime.value}: "
                f"POST {server.predict_url}, metrics {server.metrics_url}; {stops} stops"
            )
            predictor_url = (
                server.url
                if isinstance(server, LocalKServePredictor)
                else server.addresses.inference
            )
            log_file = Path(tmp) / "transformer.log"
            # Ctrl-C or SIGTERM may come while the transformer starts or stops too: either way
            # it is the normal end of `churn serve`.
            try:
                with transformer_beside(cfg, local, predictor_url, log_file, by_id) as transformer:
                    if transformer is not None:
                        typer.echo(f"by customer id: POST {transformer.predict_url}")
                    while server.running and (transformer is None or transformer.running):
                        time.sleep(1)
                    if transformer is not None and not transformer.running:
                        raise ServingError(
                            f"the transformer stopped unexpectedly\n{transformer.log_tail()}"
                        )
            except KeyboardInterrupt:
                return
            raise ServingError(f"{runtime.value} stopped unexpectedly\n{server.log_tail()}")


def _stop(record: Path) -> None:
    from churn.release.serve_record import stop_recorded

    stopped = stop_recorded(record)
    if stopped is None:
        typer.echo(f"no churn serve is running (none is recorded in {record})")
    else:
        typer.echo(
            f"stopped {stopped.model_name} {stopped.version} on {stopped.inference} "
            f"(churn serve pid {stopped.owner_pid})"
        )


def _status(record: Path) -> None:
    from churn.release.serve_record import group_members, owner_alive, read_record

    found = read_record(record)
    members = group_members(found) if found is not None else []
    owner = found is not None and owner_alive(found)
    if found is None or not (owner or members):
        typer.echo("not running")
        raise typer.Exit(code=1)
    state = (
        "running"
        if owner
        else f"running without its churn serve (pid {found.owner_pid} is gone): "
        "`churn serve --stop` stops it"
    )
    lines = [
        state,
        f"model       {found.model_name} {found.version}",
        f"predict     POST {found.predict_url}",
        f"management  {found.management}",
        f"metrics     {found.metrics}/metrics",
        f"pid         {found.owner_pid} (churn serve); TorchServe process group {found.group}, "
        f"pids {members}",
        f"since       {found.started_at}",
        f"logs        {found.workdir}/logs",
        f"record      {record}",
    ]
    typer.echo("\n".join(lines))

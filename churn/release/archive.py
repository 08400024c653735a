"""TorchServe artefacts of a model folder: the model archive and ``config.properties``.

The archive holds the eager ``state_dict``, ``churn/model/network.py`` and
``churn/release/torchserve_handler.py``, so the in-cluster image (an older TorchServe and torch)
rebuilds the network from source instead of unpickling TorchScript written by a newer torch. The
same archive serves locally and in KServe; only ``config.properties`` differs (addresses and model
store)."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from churn.errors import ServingError
from churn.io.leftovers import owned_tempdir

# Both ship inside the archive, so the serving image needs neither churn nor its dependencies.
_PACKAGE = Path(__file__).resolve().parents[1]
MODEL_FILE = _PACKAGE / "model" / "network.py"
HANDLER_FILE = _PACKAGE / "release" / "torchserve_handler.py"
KSERVE_MODEL_STORE = "/mnt/models/model-store"
# TorchServe's request envelope for each KServe protocol; in KServe the runtime sets
# TS_SERVICE_ENVELOPE from the InferenceService's protocolVersion, which overrides this file.
ENVELOPES = {"v1": "kserve", "v2": "kservev2"}
# Java accepts a backslash before any non-letter; "/" and "_" stay readable.
_REGEX_PUNCTUATION = frozenset(string.punctuation) - {"/", "_"}


@dataclass(frozen=True)
class Addresses:
    """Where TorchServe listens.

    Attributes:
        inference: Inference API, ``http://HOST:PORT``.
        management: Management API (register, scale, unregister models): never public.
        metrics: Prometheus metrics API.
        grpc_inference: gRPC inference ``(host, port)``.
        grpc_management: gRPC management ``(host, port)``.
    """

    inference: str
    management: str
    metrics: str
    grpc_inference: tuple[str, int]
    grpc_management: tuple[str, int]


# KServe's TorchServe image puts a KServe model server on 8080 in front of TorchServe's
# inference API on 8085 and scrapes metrics on 8082 (kserve/kserve docs/samples torchserve);
# the management APIs stay on the loopback interface so nothing outside the pod reaches them.
KSERVE_ADDRESSES = Addresses(
    inference="http://0.0.0.0:8085",
    management="http://127.0.0.1:8083",
    metrics="http://0.0.0.0:8082",
    grpc_inference=("0.0.0.0", 7070),
    grpc_management=("127.0.0.1", 7071),
)


def config_properties(
    model_name: str,
    model_version: str,
    model_store: str,
    addresses: Addresses = KSERVE_ADDRESSES,
    protocol_version: str | None = "v1",
    workers: int = 1,
) -> str:
    """Text of a TorchServe ``config.properties`` that loads one archive at start-up.

    Args:
        model_name: Name clients call the model by; the archive is ``<model_name>.mar``.
        model_version: The archive's version (see :func:`archive_version`); the snapshot
            lists the model under it so TorchServe scales workers for exactly that version.
        model_store: Folder holding the archive as TorchServe sees it; ``allowed_urls`` admits
            only archives in it (see :func:`allowed_urls`).
        addresses: Where TorchServe listens (:data:`KSERVE_ADDRESSES` for KServe).
        protocol_version: ``"v1"`` or ``"v2"``; selects the KServe request envelope. ``None``
            sets no envelope: the handler reads the request body itself (local TorchServe,
            where an envelope would answer a malformed body with a 503 instead of a 400).
        workers: Worker processes for the model (one per CPU core is plenty for this model).

    Returns:
        The file's text.

    Raises:
        ServingError: The protocol version is unknown or ``workers`` is below 1.
    """
    if protocol_version is not None and protocol_version not in ENVELOPES:
        raise ServingError(
            f"protocol_version must be one of {sorted(ENVELOPES)}, got {protocol_version!r}"
        )
    if workers < 1:
        raise ServingError(f"workers must be at least 1, got {workers}")
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            model_name: {
                model_version: {
                    "defaultVersion": True,
                    "marName": f"{model_name}.mar",
                    "minWorkers": workers,
                    "maxWorkers": workers,
                    "batchSize": 1,
                    "maxBatchDelay": 10,
                    "responseTimeout": 60,
                }
            }
        },
    }
    props = {
        "inference_address": addresses.inference,
        "management_address": addresses.management,
        "metrics_address": addresses.metrics,
        "grpc_inference_address": addresses.grpc_inference[0],
        "grpc_inference_port": addresses.grpc_inference[1],
        "grpc_management_address": addresses.grpc_management[0],
        "grpc_management_port": addresses.grpc_management[1],
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "enable_envvars_config": "true",
        # Dependencies are baked into the image; installing per model would reach the network.
        "install_py_dep_per_model": "false",
        "number_of_netty_threads": 4,
        "job_queue_size": 100,
        "model_store": model_store,
        # Java's Properties reader drops a lone backslash, so the regex's escapes are doubled.
        "allowed_urls": allowed_urls(model_store).replace("\\", "\\\\"),
        "load_models": "all",
        "model_snapshot": json.dumps(snapshot, separators=(",", ":")),
    }
    if protocol_version is not None:
        props["service_envelope"] = ENVELOPES[protocol_version]
    return "".join(f"{key}={value}\n" for key, value in props.items())


def allowed_urls(model_store: str) -> str:
    """TorchServe's ``allowed_urls``: ``file://`` URLs of archives in the model store, no other.

    TorchServe's default, ``file://.*|http(s)?://.*``, lets any process that reaches the
    management API (token auth is off; it listens on 127.0.0.1 only) register a model from any
    URL, which runs that model's handler code. A registration by archive name (``churn.mar``)
    reads the model store without consulting this list, so the served model is unaffected.

    Args:
        model_store: The model store as TorchServe sees it.

    Returns:
        A Java regular expression (one entry; TorchServe splits the setting on commas, so a
        comma in the path is written as ``\\x2c``).
    """
    path = "".join(
        "\\x2c" if c == "," else f"\\{c}" if c in _REGEX_PUNCTUATION else c
        for c in model_store.rstrip("/")
    )
    return f"file://{path}/[^/]+\\.mar"


def build_archive(
    model_dir: str | Path, export_dir: str | Path, model_name: str, model_version: str
) -> Path:
    """Packs a model folder into ``<export_dir>/<model_name>.mar`` with torch-model-archiver.

    The archiver runs in a subprocess with a private temporary folder because it stages files
    in ``$TMPDIR/<model_name>`` and deletes that folder first, which would break two builds
    running at once.

    Args:
        model_dir: Model folder with ``model.pt`` and ``model.json``.
        export_dir: Existing folder to write the archive into.
        model_name: Archive and model name.
        model_version: Version recorded in the archive's manifest; the handler reports it
            with every prediction.

    Returns:
        Path of the archive.

    Raises:
        ServingError: A model file is missing or the archiver fails (its output is included).
    """
    model_dir, export_dir = Path(model_dir), Path(export_dir)
    for file in (model_dir / "model.pt", model_dir / "model.json", MODEL_FILE, HANDLER_FILE):
        if not file.is_file():
            raise ServingError(f"cannot build the model archive: {file} is missing")
    with owned_tempdir("churn-mar-") as tmp:
        # Inside the archive the two sources keep the names the handler and every archive
        # already in a registry use: model.py and handler.py.
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copyfile(MODEL_FILE, src / "model.py")
        shutil.copyfile(HANDLER_FILE, src / "handler.py")
        cmd = [
            # The module rather than the console script: a venv whose dependencies come from
            # elsewhere (a layered image, a system site) may not have the script on its path.
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--force",
            "--model-name",
            model_name,
            "--version",
            model_version,
            "--serialized-file",
            str(model_dir / "model.pt"),
            "--model-file",
            str(src / "model.py"),
            "--handler",
            str(src / "handler.py"),
            "--extra-files",
            str(model_dir / "model.json"),
            "--export-path",
            str(export_dir),
        ]
        proc = subprocess.run(
            cmd, env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, text=True, check=False
        )
    mar = export_dir / f"{model_name}.mar"
    if proc.returncode != 0 or not mar.is_file():
        raise ServingError(
            f"torch-model-archiver failed for {model_dir} (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return mar


def archive_version(mar: str | Path) -> str:
    """The model version recorded in a model archive's manifest.

    Args:
        mar: Path of a ``.mar`` file.

    Returns:
        The version.

    Raises:
        ServingError: The file is not a model archive.
    """
    try:
        with zipfile.ZipFile(mar) as zf:
            manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        return str(manifest["model"]["modelVersion"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ServingError(f"{mar} is not a readable model archive: {exc}") from exc


def write_serving_layout(
    model_dir: str | Path,
    dest: str | Path,
    model_name: str,
    model_version: str,
    protocol_version: str = "v1",
) -> Path:
    """Writes the layout KServe's TorchServe runtime reads from a ``storageUri``.

    ``dest/model-store/<model_name>.mar`` and ``dest/config/config.properties`` (KServe
    addresses, model store ``/mnt/models/model-store``).

    Args:
        model_dir: Model folder with ``model.pt`` and ``model.json``.
        dest: Folder to write into (created if missing).
        model_name: Name clients call the model by.
        model_version: Version recorded in the archive (the registry's version id).
        protocol_version: ``"v1"`` or ``"v2"``.

    Returns:
        ``dest``.

    Raises:
        ServingError: The archive cannot be built or the protocol version is unknown.
    """
    dest = Path(dest)
    text = config_properties(
        model_name, model_version, KSERVE_MODEL_STORE, protocol_version=protocol_version
    )
    (dest / "model-store").mkdir(parents=True, exist_ok=True)
    (dest / "config").mkdir(parents=True, exist_ok=True)
    build_archive(model_dir, dest / "model-store", model_name, model_version)
    (dest / "config" / "config.properties").write_text(text)
    return dest

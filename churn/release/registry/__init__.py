"""Model registry: immutable published versions and a champion pointer, on a folder or S3.

``base`` holds the contract every backend keeps (publish, promote by compare-and-swap,
download with checksums); ``local`` and ``s3`` implement its few storage primitives.
"""

from __future__ import annotations

from urllib.parse import urlparse

from churn.errors import RegistryError
from churn.release.registry.base import (
    ANY,
    CHAMPION_FILE,
    CLAIM_MARKER,
    COMPLETE_MARKER,
    DAMAGED,
    ChampionPointer,
    Registry,
    VersionInfo,
    model_digest,
    new_version_id,
)
from churn.release.registry.local import LocalRegistry
from churn.release.registry.s3 import S3Registry
from churn.settings import RegistryConfig

__all__ = [
    "ANY",
    "CHAMPION_FILE",
    "CLAIM_MARKER",
    "COMPLETE_MARKER",
    "DAMAGED",
    "ChampionPointer",
    "LocalRegistry",
    "Registry",
    "S3Registry",
    "VersionInfo",
    "model_digest",
    "new_version_id",
    "open_registry",
]


def open_registry(cfg: RegistryConfig) -> Registry:
    """Opens the registry that ``cfg.uri`` names.

    Args:
        cfg: Registry settings: ``uri`` is a folder (``/path``, ``relative/path`` or
            ``file:///path``) or ``s3://bucket/prefix``.

    Returns:
        A :class:`LocalRegistry` or an :class:`S3Registry`.

    Raises:
        RegistryError: The URI is empty or its scheme is not supported.
    """
    if not cfg.uri.strip():
        # An empty URI means "<home>/registry", which only Settings can resolve; taken as a
        # relative folder it would be the working directory itself.
        raise RegistryError(
            "the registry URI is empty: set CHURN_REGISTRY__URI, or build the settings with "
            "churn.settings.load_settings so that it defaults to <CHURN_HOME>/registry"
        )
    parsed = urlparse(cfg.uri)
    if parsed.scheme == "s3":
        return S3Registry(cfg.uri, cfg.model_name, endpoint_url=cfg.endpoint_url)
    if parsed.scheme == "file":
        return LocalRegistry(parsed.path, cfg.model_name)
    if parsed.scheme == "":
        return LocalRegistry(cfg.uri, cfg.model_name)
    raise RegistryError(
        f"registry URI {cfg.uri!r}: scheme {parsed.scheme!r} is not supported "
        "(use a folder path, file:// or s3://)"
    )

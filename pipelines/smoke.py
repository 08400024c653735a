"""The end of ``churn run``: smoke traffic through the local transformer, then a drift check.

After a local deployment, the new champion is served the way ``churn serve`` serves it
(TorchServe and the KServe transformer as processes on 127.0.0.1, on free ports so that a
running ``churn serve`` keeps its own), the first ``monitor.smoke_customers`` customers of the
online store that the deploy step materialised are predicted by id, the servers stop (the
transformer flushes its inference log on SIGTERM), and ``monitoring.drift.check_drift`` runs on
exactly that window of the log. The loop the platform exists for thus runs once on every
``make run``, with real servers and a real report.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import requests

from churn.errors import ServingError
from churn.features.store import FeatureRepo
from churn.io.leftovers import owned_tempdir
from churn.settings import Settings

log = logging.getLogger(__name__)

_REQUEST_SECONDS = 60.0


def smoke_customers(feature_repo: str | Path, count: int) -> list[str]:
    """The first ``count`` customer ids of the repository's latest snapshot, in sorted order.

    Args:
        feature_repo: A built feature repository (its latest snapshot is what serving reads).
        count: How many ids at most.

    Returns:
        The ids, as strings.
    """
    repo = FeatureRepo(feature_repo)
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    rows = pd.read_parquet(
        repo.sources / "sequences.parquet", columns=["customer_id", "snapshot_ts"]
    )
    ids = rows.loc[rows["snapshot_ts"] == latest, "customer_id"].astype(str)
    return sorted(ids.unique())[:count]


def smoke_and_check(settings: Settings, version: str, feature_repo: str | Path) -> dict:
    """Serves ``version`` locally, predicts the smoke customers by id and checks their drift.

    Args:
        settings: The run's settings (registry, serving, transformer, monitor, home); the
            inference log is the transformer's (``HOME/inference_log`` by default).
        version: The registry version to serve: the run's new champion.
        feature_repo: The run's feature repository, its online store materialised.

    Returns:
        ``customers`` (how many were sent), ``scored`` (how many got a probability),
        ``log_uri`` (where the records went), ``since``/``until`` (the window) and
        ``drift`` (what :func:`monitoring.drift.check_drift` returned).

    Raises:
        ServingError: A server does not start, or the transformer refuses a request.
        MonitorError: The drift check fails (see ``check_drift``).
    """
    from churn.release.registry import open_registry
    from churn.release.torchserve import LocalTorchServe, free_port
    from monitoring.drift import check_drift, log_uri
    from serving.local import LocalTransformer

    ids = smoke_customers(feature_repo, settings.monitor.smoke_customers)
    cfg = settings.model_copy(deep=True)
    cfg.transformer.feature_repo = Path(feature_repo)
    name = cfg.registry.model_name
    with owned_tempdir("churn-smoke-") as tmp:
        version_dir = open_registry(cfg.registry).download(version, tmp / "version")
        since = datetime.now(UTC)
        with (
            LocalTorchServe(
                version_dir / "model-store",
                name,
                host=cfg.serving.host,
                protocol_version=cfg.serving.protocol_version,
                workdir=tmp / "torchserve",
            ) as server,
            LocalTransformer(
                name,
                server.addresses.inference.removeprefix("http://"),
                version_dir,
                cfg,
                port=free_port(cfg.transformer.host),
                log_file=tmp / "transformer.log",
            ) as transformer,
        ):
            scored = _predict(transformer.predict_url, ids, cfg.transformer.max_ids_per_request)
        # The transformer stamps records when it receives them, before this moment.
        until = datetime.now(UTC) + timedelta(microseconds=1)
    log.info("smoke traffic: %d of %d customers scored", scored, len(ids))
    drift = check_drift(settings, since=since, until=until)
    return {
        "customers": len(ids),
        "scored": scored,
        "log_uri": log_uri(cfg),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "drift": drift,
    }


def _predict(url: str, ids: list[str], batch: int) -> int:
    """Posts the ids in batches (v1 protocol) and counts the answers with a probability."""
    scored = 0
    with requests.Session() as session:
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            body = {"instances": [{"customer_id": c} for c in chunk]}
            resp = session.post(url, json=body, timeout=_REQUEST_SECONDS)
            if resp.status_code != 200:
                raise ServingError(
                    f"the smoke request to {url} answered {resp.status_code}: {resp.text[:300]}"
                )
            predictions = resp.json()["predictions"]
            scored += sum(p.get("churn_probability") is not None for p in predictions)
    return scored

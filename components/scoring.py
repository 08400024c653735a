"""Batch-scoring steps: the run's scoring date, and the scores published to the registry.

Component bodies (see ``components.factory.make_scoring_components``): imports sit inside the
functions because KFP ships only the function's source to the container.
"""

from kfp.dsl import Dataset, Input, Output


def scoring_date(date: str, scheduled_time: str, created_time: str) -> str:
    """The date this run scores: ``date`` when given, else the day the run is for.

    Args:
        date: ``YYYY-MM-DD``, or ``""`` for the run's own date.
        scheduled_time: KFP's scheduled time of the run (a recurring run's slot).
        created_time: KFP's creation time of the run, used when there is no scheduled time.

    Returns:
        ``YYYY-MM-DD``; the feature step snapshots the data at that midnight UTC.
    """
    import logging

    from churn.release.score_store import resolve_scoring_date

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resolved = resolve_scoring_date(date, [scheduled_time, created_time])
    logging.getLogger("churn.release.score_store").info("scoring date %s", resolved)
    return resolved


def score(
    feature_repo: Input[Dataset],
    date: str,
    model_version: str,
    registry: dict,
    overwrite: bool,
    run_id: str,
    scores: Output[Dataset],
) -> str:
    """Scores every customer active before ``date`` and publishes the file in the registry.

    Args:
        feature_repo: The feature repository, with a snapshot at ``date``.
        date: ``YYYY-MM-DD``.
        model_version: A registry version, or ``""`` for the champion at run time.
        registry: ``RegistryConfig`` fields; the scores go to
            ``<uri>/scores/date=<date>/scores.parquet``.
        overwrite: Replace another run's scores of the same date (never done silently).
        run_id: The run's id, recorded with the file so a retry may replace its own.
        scores: Output: the run's summary (statuses, version, where the file went).

    Returns:
        The URI of the published scores file.
    """
    import json
    import logging
    from pathlib import Path

    from churn.release.score_store import score_into_registry
    from churn.settings import RegistryConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = score_into_registry(
        feature_repo.path,
        parse_section(RegistryConfig, registry, "registry"),
        date,
        model_version,
        run_id,
        overwrite=overwrite,
    )
    summary.pop("out")
    Path(scores.path).write_text(json.dumps(summary, indent=2) + "\n")
    scores.metadata.update(
        {"uri": summary["uri"], "model_version": summary["model_version"], "date": date}
    )
    scores.metadata.update({f"rows_{k}": v for k, v in summary["statuses"].items()})
    return summary["uri"]

"""The pipelines on a Kubeflow Pipelines cluster: compile, submit, schedule."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from churn.errors import OutputError, PipelineError
from churn.io.atomic import check_new_file
from churn.io.leftovers import owned_tempdir, owner_tag, sweep
from churn.io.object_store import is_s3_uri
from churn.settings import Settings
from pipelines.catalog import arguments_of, check_overrides

log = logging.getLogger(__name__)


def cluster_arguments(
    overrides: dict[str, Any], settings: Settings, pipeline: str = "training"
) -> dict[str, Any]:
    """Checks a cluster run's arguments before Kubeflow is contacted.

    Args:
        overrides: Run arguments that override the compiled defaults (field names of the
            pipeline's arguments, :mod:`pipelines.arguments`; a section as a partial mapping).
        settings: Settings the pipeline is compiled with.
        pipeline: Name of the pipeline in :data:`pipelines.catalog.BUILDERS`.

    Returns:
        The overrides as KFP parameter values (a section whole, merged over its defaults).

    Raises:
        PipelineError: The pipeline is unknown, an argument is unknown or out of range, or the
            registry is a folder: each pod has its own disk, so a version registered (or
            scores written) there would vanish with the pod.
    """
    check_overrides(pipeline, overrides)
    parameters = arguments_of(pipeline).from_settings(settings, **overrides).parameters()
    # The feature pipeline writes no model and no scores: its store is a mounted volume.
    registry = parameters.get("registry", {}).get("uri", "s3://")
    if not is_s3_uri(registry):
        raise PipelineError(
            f"the registry {registry!r} is a folder, which pods on a cluster do "
            "not share: pass --registry-uri s3://bucket/prefix (or set CHURN_REGISTRY__URI)"
        )
    return {name: parameters[name] for name in overrides}


def compile_pipeline(out: str | Path, settings: Settings, pipeline: str = "training") -> Path:
    """Compiles a pipeline, with images and GPU placement from ``settings``, to YAML.

    Args:
        out: Destination ``.yaml`` file.
        settings: Settings whose values become the images, resources and parameter defaults.
        pipeline: Name of the pipeline in :data:`pipelines.catalog.BUILDERS`.

    Returns:
        The written file.

    Raises:
        PipelineError: ``out`` does not end in ``.yaml`` or ``.yml``, or cannot be written
            (checked before compiling), or no pipeline has the name ``pipeline``.
    """
    from kfp import compiler

    from pipelines.catalog import build

    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise PipelineError(f"cannot write {out}: the compiled pipeline is YAML, end it in .yaml")
    try:
        check_new_file(out, force=True)
    except OutputError as exc:
        raise PipelineError(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    if not settings.registry.uri.startswith("s3://"):
        log.warning(
            "the registry %r is a local folder: on a cluster pass registry_uri=s3://... "
            "(or set CHURN_REGISTRY__URI before compiling) so every pod and KServe reach it",
            settings.registry.uri,
        )
    # Through a temporary name, so a failed compile never leaves a half-written file.
    sweep(out.parent, f".{out.name}.tmp-")
    tmp = out.with_name(f".{out.name}.tmp-{owner_tag()}.yaml")
    try:
        compiler.Compiler().compile(build(pipeline, settings), str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("compiled the %s pipeline to %s", pipeline, out)
    return out


def _client(host: str, namespace: str = ""):
    import kfp
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    try:
        # The SDK's version FutureWarning and urllib3's retry lines would precede the one-line
        # error an unreachable host gets; the error itself names the host and the cause.
        pool_log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # Multi-user Kubeflow files runs and experiments under a profile namespace.
            return kfp.Client(host=host, **({"namespace": namespace} if namespace else {}))
    except (ApiException, HTTPError, OSError) as exc:
        raise PipelineError(f"cannot reach Kubeflow Pipelines at {host}: {exc}") from exc
    finally:
        pool_log.setLevel(level)


def runs_named(host: str, run_name: str, namespace: str = "") -> list[tuple[str, str]]:
    """The runs on a Kubeflow Pipelines cluster whose display name is ``run_name``.

    Args:
        host: KFP API endpoint.
        run_name: Exact display name.
        namespace: Profile namespace on multi-user Kubeflow; ``""`` on standalone KFP.

    Returns:
        ``(run id, state)`` pairs, states as KFP spells them (``PENDING``, ``RUNNING``...).

    Raises:
        PipelineError: The cluster cannot be reached or refuses the query.
    """
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    client = _client(host, namespace)
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": run_name}
    found: list[tuple[str, str]] = []
    token = ""
    try:
        while True:
            page = client.list_runs(
                page_token=token, page_size=100, filter=json.dumps({"predicates": [predicate]})
            )
            found += [(run.run_id, str(run.state)) for run in page.runs or []]
            token = page.next_page_token or ""
            if not token:
                return found
    except (ApiException, HTTPError, OSError) as exc:
        raise PipelineError(f"cannot list runs on Kubeflow Pipelines at {host}: {exc}") from exc


def submit(
    host: str,
    settings: Settings,
    experiment: str,
    run_name: str,
    arguments: dict[str, Any] | None = None,
    namespace: str = "",
    pipeline: str = "training",
) -> str:
    """Compiles a pipeline and starts one run on a Kubeflow Pipelines cluster.

    Args:
        host: KFP API endpoint, for example ``http://localhost:8080``.
        settings: Settings the pipeline is compiled with.
        experiment: Experiment name (created when missing).
        run_name: Name of the run.
        arguments: Pipeline arguments that override the compiled defaults.
        namespace: Profile namespace on multi-user Kubeflow; ``""`` on standalone KFP.
        pipeline: Name of the pipeline in :data:`pipelines.catalog.BUILDERS`.

    Returns:
        The run id.

    Raises:
        PipelineError: An argument is out of range, the registry is not in S3, or the
            cluster refuses the run.
    """
    from kfp_server_api.exceptions import ApiException

    arguments = cluster_arguments(arguments or {}, settings, pipeline)
    client = _client(host, namespace)
    with owned_tempdir("churn-pipeline-") as tmp:
        package = compile_pipeline(Path(tmp) / "churn_pipeline.yaml", settings, pipeline)
        try:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                service_account=settings.pipeline.service_account or None,
            )
        except ApiException as exc:
            raise PipelineError(f"Kubeflow Pipelines refused the run: {exc}") from exc
    log.info(
        "submitted run %s (%s) to %s in experiment %s", run_name, result.run_id, host, experiment
    )
    return result.run_id


def kfp_cron(cron: str) -> str:
    """KFP's six-field cron (seconds first) from a five-field or six-field expression.

    Args:
        cron: ``"0 3 * * 1"`` (minute hour day month weekday) or a six-field expression.

    Returns:
        For example ``"0 0 3 * * 1"``.

    Raises:
        PipelineError: The expression has neither five nor six fields.
    """
    fields = cron.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise PipelineError(
        f"cron {cron!r} must have 5 fields (minute hour day month weekday) or 6 (seconds first)"
    )


def schedule(
    host: str,
    cron: str,
    settings: Settings,
    experiment: str,
    job_name: str,
    arguments: dict[str, Any] | None = None,
    pipeline: str = "training",
) -> str:
    """Compiles a pipeline and creates a recurring run of it on a Kubeflow Pipelines cluster.

    Runs do not overlap (at most one at a time) and missed slots are not caught up, so a
    cluster that was down does not start a burst of retrainings (or of scorings: each run
    scores its own scheduled day).

    Args:
        host: KFP API endpoint.
        cron: Five-field cron, for example ``"0 3 * * 1"`` (Mondays at 03:00), or KFP's six.
        settings: Settings the pipeline is compiled with.
        experiment: Experiment name (created when missing).
        job_name: Name of the recurring run.
        arguments: Pipeline arguments that override the compiled defaults.
        pipeline: Name of the pipeline in :data:`pipelines.catalog.BUILDERS` (``features``
            refreshes the shared feature store).

    Returns:
        The recurring run's id.

    Raises:
        PipelineError: The cron or an argument is invalid (also one the pipeline does not
            take), or the cluster refuses the job.
    """
    from kfp_server_api.exceptions import ApiException

    arguments = cluster_arguments(arguments or {}, settings, pipeline)
    expression = kfp_cron(cron)
    client = _client(host)
    with owned_tempdir("churn-pipeline-") as tmp:
        package = compile_pipeline(Path(tmp) / "churn_pipeline.yaml", settings, pipeline)
        try:
            experiment_id = client.create_experiment(experiment).experiment_id
            job = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=job_name,
                cron_expression=expression,
                max_concurrency=1,
                no_catchup=True,
                params=arguments,
                pipeline_package_path=str(package),
                service_account=settings.pipeline.service_account or None,
            )
        except ApiException as exc:
            raise PipelineError(f"Kubeflow Pipelines refused the recurring run: {exc}") from exc
    log.info("scheduled %s (%s) on %s at %r", job_name, job.recurring_run_id, host, expression)
    return job.recurring_run_id

"""Running the Kubeflow training pipeline: compile, submit, schedule, or run it on this machine.

The pipeline itself is ``pipelines.training_pipeline``; this module holds the plain functions
around it (what the CLI calls) and the few helpers its components need beyond the other
modules: resolving the data argument, picking a real request for the serving smoke test, and
deploying a registered version.

Local runs go through ``kfp.local`` with the host's Python (``SubprocessRunner(use_venv=False)``),
so they execute the same component code and the same gate condition as a cluster, offline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from churn.config import FeatureConfig, RegistryConfig, ServingConfig, Settings
from churn.errors import ChurnError, ContractError, ServingError
from churn.object_store import fetch, is_s3_uri

log = logging.getLogger(__name__)

DEPLOY_TARGETS = ("local", "kserve", "none")
T = TypeVar("T")
SYNTH_DEFAULTS = {"customers": 2000, "days": 730, "seed": 0}


class PipelineError(ChurnError):
    """The pipeline cannot be compiled, submitted, scheduled or run as asked."""


@dataclass(frozen=True)
class DataSource:
    """A transaction log ready for ``churn.features.build_features``.

    Attributes:
        transactions: The transaction log file.
        customers: The customers table, if any.
        observed_until: End of the observation period (ISO time); ``None`` takes the last event.
        cutoffs: Cutoffs the source prescribes (the synthetic generator's schedule, which drops
            cutoffs before its first day); ``None`` leaves the choice to the feature step.
    """

    transactions: Path
    customers: Path | None = None
    observed_until: str | None = None
    cutoffs: list[str] | None = None


def resolve_data(
    data: str,
    workdir: str | Path,
    cfg: FeatureConfig,
    customers: str | None = None,
    endpoint_url: str | None = None,
) -> DataSource:
    """Turns the pipeline's ``data`` argument into files that follow the data contract.

    Args:
        data: One of

            * ``cdnow``: the CDNOW log shipped in the ``lifetimes`` package, converted;
            * ``synth`` or ``synth:customers=N,days=D,seed=S``: a synthetic log (defaults in
              :data:`SYNTH_DEFAULTS`) whose cutoff schedule follows ``cfg``;
            * a transaction log file (CSV or Parquet);
            * a folder with ``transactions.parquet`` (or ``.csv``) and optionally
              ``customers.parquet`` and ``generator.json`` (what ``churn data synth`` writes);
            * either of the last two in S3: ``s3://bucket/key`` of the file or of the folder's
              prefix, fetched into ``workdir`` first (see ``churn.object_store.fetch``).
        workdir: Scratch folder for converted, generated or fetched files.
        cfg: Feature settings (horizon and cutoff schedule for synthetic data).
        customers: A customers table (a path or ``s3://`` URI); overrides one found in a data
            folder.
        endpoint_url: S3 endpoint of a non-AWS store for ``s3://`` inputs; ``None`` for AWS.

    Returns:
        The files and the observation period.

    Raises:
        ContractError: ``data`` names nothing usable, or a ``synth:`` option is malformed.
    """
    workdir = Path(workdir)
    if is_s3_uri(data):
        data = str(fetch(data, workdir / "s3-data", endpoint_url))
    if customers and is_s3_uri(customers):
        customers = str(fetch(customers, workdir / "s3-customers", endpoint_url))
    if data == "cdnow":
        from churn.cdnow import load_cdnow, write_table

        source = DataSource(write_table(load_cdnow(), workdir / "cdnow.parquet"))
    elif data == "synth" or data.startswith("synth:"):
        source = _synthesize(data, workdir / "synth", cfg)
    else:
        source = _data_folder(Path(data)) if Path(data).is_dir() else DataSource(Path(data))
        if not source.transactions.is_file():
            raise ContractError(
                f"data {data!r} is neither 'cdnow', 'synth[:customers=N,days=D,seed=S]', "
                "a transaction log file nor a folder holding transactions.parquet"
            )
    if customers:
        source = dataclasses.replace(source, customers=Path(customers))
    return source


def _synthesize(data: str, out: Path, cfg: FeatureConfig) -> DataSource:
    from churn.synth import generate, make_spec

    options = dict(SYNTH_DEFAULTS)
    for item in filter(None, data.partition(":")[2].split(",")):
        key, _, value = item.partition("=")
        if key not in options or not value.strip().isdigit():
            raise ContractError(
                f"data {data!r}: {item!r} is not one of "
                f"{', '.join(f'{k}=<integer>' for k in options)}"
            )
        options[key] = int(value)
    spec = make_spec(
        options["customers"],
        options["days"],
        options["seed"],
        horizon_days=cfg.horizon_days,
        step_days=cfg.cutoff_step_days,
        n_train_cutoffs=cfg.n_train_cutoffs,
    )
    generate(spec, out)
    return DataSource(
        out / "transactions.parquet",
        out / "customers.parquet",
        spec.observed_until.isoformat(),
        [c.date().isoformat() for c in spec.cutoffs],
    )


def _data_folder(folder: Path) -> DataSource:
    transactions = next(
        (p for p in (folder / "transactions.parquet", folder / "transactions.csv") if p.is_file()),
        folder / "transactions.parquet",
    )
    customers = folder / "customers.parquet"
    generator = folder / "generator.json"
    observed_until = (
        json.loads(generator.read_text())["observed_until"] if generator.is_file() else None
    )
    return DataSource(transactions, customers if customers.is_file() else None, observed_until)


def config_from_dict(cls: type[T], values: dict) -> T:
    """Builds a settings dataclass from a pipeline's struct parameter.

    Struct parameters travel as protobuf values, whose numbers are doubles: ``32`` arrives as
    ``32.0``, which ``nn.Conv1d`` or ``torch.manual_seed`` refuse. Integer fields (and lists
    of integers) get integers back.

    Args:
        cls: ``FeatureConfig``, ``ModelConfig``, ``TrainConfig`` or ``ServingConfig``.
        values: Field values; missing fields keep their defaults.

    Returns:
        The dataclass instance.

    Raises:
        PipelineError: A field is unknown, or an integer field holds a fractional number.
    """
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise PipelineError(f"{cls.__name__} has no fields {unknown}")
    return cls(**{name: _integers(value, hints[name], name) for name, value in values.items()})


def _integers(value: object, hint: object, name: str) -> object:
    if typing.get_origin(hint) is list and typing.get_args(hint) == (int,):
        return [_integers(v, int, name) for v in value]  # type: ignore[attr-defined]
    if hint is int and isinstance(value, float):
        if not value.is_integer():
            raise PipelineError(f"{name} must be an integer, got {value}")
        return int(value)
    return value


def parse_cutoff_list(text: str) -> list[str] | None:
    """Splits the pipeline's comma-separated ``cutoffs`` argument; ``""`` means automatic.

    Args:
        text: For example ``"1997-06-01,1997-09-01"``.

    Returns:
        The dates, or ``None`` when the text is empty.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def sample_instance(dataset_dir: str | Path, split: str = "test", row: int = 0) -> tuple[str, dict]:
    """A real serving request built from one row of a training set.

    Args:
        dataset_dir: Training set folder.
        split: Split to take the row from.
        row: Row index.

    Returns:
        The row's customer id and the instance (``sequence``, ``numeric``, ``categorical``
        with raw values, as ``serving/handler.py`` expects).
    """
    from churn.training_set import load_training_set

    ts = load_training_set(dataset_dir, splits=(split,))
    part, meta = ts.splits[split], ts.meta
    instance = {
        "sequence": {name: part.seq[row, c].tolist() for c, name in enumerate(meta["channels"])},
        "numeric": {
            name: float(part.num[row, j]) for j, name in enumerate(meta["numeric_features"])
        },
        "categorical": {
            name: vocab[int(part.cat[row, k])]
            for k, (name, vocab) in enumerate(meta["categorical_features"].items())
        },
    }
    return str(part.customer_id[row]), instance


def deploy_version(
    target: str,
    version: str,
    registry_cfg: RegistryConfig,
    serving_cfg: ServingConfig,
    dataset_dir: str | Path,
) -> dict:
    """Deploys a registered version.

    ``local`` downloads the version (checksums verified), serves its archive with TorchServe
    on free loopback ports, sends one real request from the training set's test split and
    stops; ``kserve`` creates or patches the InferenceService on the version's storage URI;
    ``none`` does nothing.

    Args:
        target: ``local``, ``kserve`` or ``none``.
        version: The version id.
        registry_cfg: Registry settings.
        serving_cfg: Namespace, service account and protocol for KServe.
        dataset_dir: Training set folder the smoke-test request comes from.

    Returns:
        What was done: the target and version, plus the request's customer and prediction
        (``local``) or the InferenceService's namespace, name and storage URI (``kserve``).
        ``kserve`` deploys only the current champion: a version another run has superseded
        since it registered gets ``skipped`` instead, with the reason.

    Raises:
        ServingError: The target is unknown, TorchServe does not answer, or the cluster
            refuses the InferenceService.
    """
    if target not in DEPLOY_TARGETS:
        raise ServingError(f"deploy target must be one of {DEPLOY_TARGETS}, got {target!r}")
    if target == "none":
        log.info(
            "deploy target is 'none': %s %s stays undeployed", registry_cfg.model_name, version
        )
        return {"target": target, "version": version}

    from churn.registry import open_registry

    registry = open_registry(registry_cfg)
    if target == "kserve":
        from churn.kserve_deploy import build_inference_service, deploy

        # A slow run must not roll the service back: if a later run has promoted since this
        # one registered, the service already serves (or is about to serve) the newer champion.
        champion = registry.champion()
        if champion is None or champion.version != version:
            current = champion.version if champion else "none"
            log.warning(
                "%s %s is no longer the champion (%s is); the InferenceService is left as is",
                registry_cfg.model_name,
                version,
                current,
            )
            return {"target": target, "version": version, "skipped": f"champion is {current}"}
        storage_uri = registry.storage_uri(version)
        isvc = build_inference_service(registry_cfg.model_name, storage_uri, serving_cfg)
        deploy(isvc, serving_cfg.namespace)
        log.info(
            "InferenceService %s/%s now serves %s",
            serving_cfg.namespace,
            registry_cfg.model_name,
            storage_uri,
        )
        return {
            "target": target,
            "version": version,
            "namespace": serving_cfg.namespace,
            "name": registry_cfg.model_name,
            "storage_uri": storage_uri,
        }

    from churn.torchserve import LocalTorchServe

    customer_id, instance = sample_instance(dataset_dir)
    with tempfile.TemporaryDirectory(prefix="churn-deploy-") as tmp:
        registry.download(version, tmp)
        # Free ports rather than the configured ones: a served model may already hold them.
        with LocalTorchServe(
            Path(tmp) / "model-store", registry_cfg.model_name, host=serving_cfg.host
        ) as server:
            prediction = server.predict([instance])[0]
    log.info(
        "local TorchServe answered for customer %s: churn probability %.4f (%s %s)",
        customer_id,
        prediction["churn_probability"],
        registry_cfg.model_name,
        version,
    )
    return {
        "target": target,
        "version": version,
        "customer_id": customer_id,
        "prediction": prediction,
    }


def check_arguments(arguments: dict[str, Any]) -> None:
    """Rejects pipeline arguments that would only fail late in a run.

    Args:
        arguments: Pipeline arguments (only the ones present are checked).

    Raises:
        PipelineError: ``deploy_target``, ``auc_threshold``, ``epochs`` or ``horizon_days``
            is out of range.
    """
    target = arguments.get("deploy_target")
    if target is not None and target not in DEPLOY_TARGETS:
        raise PipelineError(f"deploy target must be one of {DEPLOY_TARGETS}, got {target!r}")
    threshold = arguments.get("auc_threshold")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise PipelineError(f"the AUC threshold must lie in [0, 1], got {threshold}")
    for name in ("epochs", "horizon_days"):
        value = arguments.get(name)
        if value is not None and value < 1:
            raise PipelineError(f"{name} must be at least 1, got {value}")


def check_cluster_arguments(arguments: dict[str, Any], settings: Settings) -> None:
    """Rejects arguments a cluster run could not use, before Kubeflow is contacted.

    Args:
        arguments: Pipeline arguments that override the compiled defaults.
        settings: Settings the pipeline is compiled with.

    Raises:
        PipelineError: An argument is out of range (see :func:`check_arguments`), or the
            registry is a folder: each pod has its own disk, so a version registered there
            would vanish with the pod and KServe could never fetch it.
    """
    check_arguments(arguments)
    registry = arguments.get("registry_uri") or settings.registry.uri
    if not is_s3_uri(registry):
        raise PipelineError(
            f"the registry {registry!r} is a folder, which pods on a cluster do not share: pass "
            "--registry-uri s3://bucket/prefix (or set CHURN_REGISTRY__URI)"
        )


def compile_pipeline(out: str | Path, settings: Settings) -> Path:
    """Compiles the pipeline, with images and GPU placement from ``settings``, to YAML.

    Args:
        out: Destination ``.yaml`` file.
        settings: Settings whose values become the images, resources and parameter defaults.

    Returns:
        The written file.
    """
    from kfp import compiler

    from pipelines.training_pipeline import build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not settings.registry.uri.startswith("s3://"):
        log.warning(
            "the registry %r is a local folder: on a cluster pass registry_uri=s3://... "
            "(or set CHURN_REGISTRY__URI before compiling) so every pod and KServe reach it",
            settings.registry.uri,
        )
    compiler.Compiler().compile(build_pipeline(settings), str(out))
    log.info("compiled the pipeline to %s", out)
    return out


def _client(host: str):
    import kfp
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return kfp.Client(host=host)
    except (ApiException, HTTPError, OSError) as exc:
        raise PipelineError(f"cannot reach Kubeflow Pipelines at {host}: {exc}") from exc


def submit(
    host: str,
    settings: Settings,
    experiment: str,
    run_name: str,
    arguments: dict[str, Any] | None = None,
) -> str:
    """Compiles the pipeline and starts one run on a Kubeflow Pipelines cluster.

    Args:
        host: KFP API endpoint, for example ``http://localhost:8080``.
        settings: Settings the pipeline is compiled with.
        experiment: Experiment name (created when missing).
        run_name: Name of the run.
        arguments: Pipeline arguments that override the compiled defaults.

    Returns:
        The run id.

    Raises:
        PipelineError: An argument is out of range, the registry is not in S3, or the
            cluster refuses the run.
    """
    from kfp_server_api.exceptions import ApiException

    arguments = arguments or {}
    check_cluster_arguments(arguments, settings)
    client = _client(host)
    with tempfile.TemporaryDirectory(prefix="churn-pipeline-") as tmp:
        package = compile_pipeline(Path(tmp) / "churn_pipeline.yaml", settings)
        try:
            result = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, run_name=run_name, experiment_name=experiment
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
) -> str:
    """Compiles the pipeline and creates a recurring run on a Kubeflow Pipelines cluster.

    Runs do not overlap (at most one at a time) and missed slots are not caught up, so a
    cluster that was down does not start a burst of retrainings.

    Args:
        host: KFP API endpoint.
        cron: Five-field cron, for example ``"0 3 * * 1"`` (Mondays at 03:00), or KFP's six.
        settings: Settings the pipeline is compiled with.
        experiment: Experiment name (created when missing).
        job_name: Name of the recurring run.
        arguments: Pipeline arguments that override the compiled defaults.

    Returns:
        The recurring run's id.

    Raises:
        PipelineError: The cron or an argument is invalid, or the cluster refuses the job.
    """
    from kfp_server_api.exceptions import ApiException

    arguments = arguments or {}
    check_cluster_arguments(arguments, settings)
    expression = kfp_cron(cron)
    client = _client(host)
    with tempfile.TemporaryDirectory(prefix="churn-pipeline-") as tmp:
        package = compile_pipeline(Path(tmp) / "churn_pipeline.yaml", settings)
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
            )
        except ApiException as exc:
            raise PipelineError(f"Kubeflow Pipelines refused the recurring run: {exc}") from exc
    log.info("scheduled %s (%s) on %s at %r", job_name, job.recurring_run_id, host, expression)
    return job.recurring_run_id


def run_local(
    settings: Settings,
    data: str = "cdnow",
    *,
    customers: str = "",
    cutoffs: str = "",
    epochs: int | None = None,
    auc_threshold: float | None = None,
    deploy_target: str = "local",
    enable_caching: bool = False,
    data_endpoint_url: str | None = None,
) -> dict:
    """Runs the whole pipeline on this machine with ``kfp.local`` and summarises it.

    Artifacts land under ``<settings.home>/pipeline_root/<pipeline>-<timestamp>/``; the
    registry is ``settings.registry.uri`` (a local folder by default). GPU placement and images
    are ignored locally; training uses CUDA if this machine has it.

    Args:
        settings: Settings (feature, model, training, registry and serving sections are used).
        data: ``cdnow``, ``synth[:customers=N,days=D,seed=S]``, or a log file or folder,
            local or ``s3://`` (see :func:`resolve_data`).
        customers: Optional customers table (a path or ``s3://`` URI).
        cutoffs: Comma-separated training cutoffs; ``""`` picks them automatically.
        epochs: Maximum epochs; ``settings.train.epochs`` when ``None``.
        auc_threshold: Promotion threshold; ``settings.eval.auc_threshold`` when ``None``.
        deploy_target: ``local`` (TorchServe smoke test), ``kserve`` or ``none``.
        enable_caching: Reuse outputs of earlier local runs whose inputs were identical
            (the gate and the steps after it always run).
        data_endpoint_url: S3 endpoint for ``s3://`` data of a non-AWS store; ``None`` keeps
            the compiled default (``settings.registry.endpoint_url``).

    Returns:
        See :func:`summarize_run`.

    Raises:
        PipelineError: An argument is invalid or a task failed (the message names it).
        ContractError: ``data`` names nothing usable.
    """
    from kfp import local

    from pipelines.training_pipeline import PIPELINE_NAME, build_pipeline

    arguments: dict[str, Any] = {
        "data": _local_data(data),
        "customers": _absolute_uri(customers) if customers else "",
        "cutoffs": cutoffs,
        "deploy_target": deploy_target,
        # Component processes may run elsewhere than this process's working folder.
        "registry_uri": _absolute_uri(settings.registry.uri),
    }
    if epochs is not None:
        arguments["epochs"] = epochs
    if auc_threshold is not None:
        arguments["auc_threshold"] = float(auc_threshold)
    if data_endpoint_url is not None:
        arguments["data_endpoint_url"] = data_endpoint_url
    check_arguments(arguments)
    root = (settings.home / "pipeline_root").resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    pipeline = build_pipeline(settings)
    log.info("running %s locally on %s; artifacts under %s", PIPELINE_NAME, data, root)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Images, accelerators and resource requests only matter on a cluster; kfp.local
        # says so for every task, which would bury the run's own log.
        for category in (RuntimeWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"kfp\.local")
        try:
            pipeline(**arguments)
        except RuntimeError as exc:
            raise PipelineError(f"the local pipeline run failed: {exc}") from exc
    seconds = time.perf_counter() - started
    runs = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before)
    if len(runs) != 1:
        raise PipelineError(
            f"expected one new run folder under {root}, found {[p.name for p in runs]}"
        )
    return summarize_run(runs[0], seconds)


def _local_data(data: str) -> str:
    if data in ("cdnow", "synth") or data.startswith("synth:") or is_s3_uri(data):
        return data
    path = Path(data)
    if not path.exists():
        raise ContractError(
            f"data {data!r} is neither 'cdnow', 'synth[:customers=N,days=D,seed=S]', an "
            "s3:// URI nor an existing file or folder"
        )
    return _absolute_uri(data)


def _absolute_uri(uri: str) -> str:
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def _artifact(run_dir: Path, name: str) -> Path | None:
    # Tasks inside a condition branch may sit one folder deeper; output names are unique.
    found = sorted(run_dir.rglob(name))
    return found[0] if found else None


def _json(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def summarize_run(run_dir: str | Path, seconds: float) -> dict:
    """What a local run produced, read back from its artifacts.

    Args:
        run_dir: The run's folder under the pipeline root.
        seconds: Wall time of the run.

    Returns:
        ``run_dir``, ``seconds``; ``roc_auc`` (``cnn`` and each baseline, test split);
        ``promoted`` and ``reason`` (the gate); ``version`` and ``version_uri`` (``None``
        unless promoted); ``report`` (the HTML report) and ``evaluation`` (folder with
        ``metrics.json`` and plots); ``rejection`` (record path, or ``None``); ``deployment``
        (what the deploy step did, or ``None``).

    Raises:
        PipelineError: The run has no gate decision or no evaluation (it did not get there).
    """
    run_dir = Path(run_dir)
    decision = _json(_artifact(run_dir, "decision"))
    if decision is None:
        raise PipelineError(f"{run_dir} holds no gate decision: the run did not reach the gate")
    # The decision names the evaluation, which may be a cached output of an earlier run.
    evaluation = Path(decision["evaluation"])
    metrics = json.loads((evaluation / "metrics.json").read_text())
    registration = _json(_artifact(run_dir, "registration"))
    rejection = _artifact(run_dir, "rejection")
    return {
        "run_dir": str(run_dir),
        "seconds": round(seconds, 1),
        "roc_auc": {
            "cnn": metrics["roc_auc"],
            **{name: b["roc_auc"] for name, b in metrics["baselines"].items()},
        },
        "promoted": bool(decision["promote"]),
        "reason": decision["reason"],
        "version": registration["version"] if registration else None,
        "version_uri": registration["storage_uri"] if registration else None,
        "report": str(evaluation / "report.html"),
        "evaluation": str(evaluation),
        "rejection": str(rejection) if rejection is not None else None,
        "deployment": _json(_artifact(run_dir, "deployment")),
    }


def format_summary(summary: dict) -> str:
    """A few lines for the end of ``churn run``.

    Args:
        summary: What :func:`run_local` returned.

    Returns:
        The text.
    """
    minutes, secs = divmod(round(summary["seconds"]), 60)
    auc = summary["roc_auc"]
    baselines = ", ".join(
        f"{name.replace('_', ' ')} {value:.4f}" for name, value in auc.items() if name != "cnn"
    )
    lines = [
        f"pipeline finished in {minutes}m{secs:02d}s: {summary['run_dir']}",
        f"test ROC-AUC: CNN {auc['cnn']:.4f} (baselines: {baselines})",
        f"gate: {'PROMOTED' if summary['promoted'] else 'NOT PROMOTED'}: {summary['reason']}",
    ]
    if summary["version"]:
        lines.append(f"registry: champion is now {summary['version']} at {summary['version_uri']}")
    if summary["rejection"]:
        lines.append(f"rejection record: {summary['rejection']}")
    deployment = summary["deployment"] or {}
    if deployment.get("prediction"):
        lines.append(
            f"local TorchServe smoke test: customer {deployment['customer_id']} -> churn "
            f"probability {deployment['prediction']['churn_probability']:.4f}"
        )
    elif deployment.get("target") == "kserve":
        lines.append(f"KServe: {deployment['namespace']}/{deployment['name']} updated")
    lines.append(f"report: {summary['report']}")
    return "\n".join(lines)

"""The ``churn`` command line: thin wrappers over the package's plain functions."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from churn.config import Settings, load_settings
from churn.errors import ChurnError

app = typer.Typer(
    help="Customer churn prediction: data, features, training, pipelines.", no_args_is_help=True
)
data_app = typer.Typer(
    help="Get transaction logs that follow the data contract.", no_args_is_help=True
)
features_app = typer.Typer(
    help="Build and serve sequence features with Feast.", no_args_is_help=True
)
dataset_app = typer.Typer(help="Build point-in-time-correct training sets.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Compile, submit and schedule the Kubeflow pipeline.", no_args_is_help=True
)
registry_app = typer.Typer(help="Inspect the model registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(dataset_app, name="dataset")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")

_state: dict[str, Settings] = {}


def settings() -> Settings:
    """The settings resolved by the top-level options."""
    if "settings" not in _state:
        _state["settings"] = load_settings()
    return _state["settings"]


@app.callback()
def main(
    config: Path | None = typer.Option(
        None, "--config", envvar="CHURN_CONFIG", help="YAML settings file."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _state["settings"] = load_settings(config)
    except ValueError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# --- data commands ---


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically)."),
    customers: int = typer.Option(10_000, "--customers", help="Number of customers."),
    days: int = typer.Option(730, "--days", help="Length of the simulated period in days."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    drift: str = typer.Option(
        "none",
        "--drift",
        help="none | spend: amounts x1.6 from the drift start | rate: purchase rates x0.5 from "
        "the drift start | segment: a fifth of the customers form a new 'enterprise' segment "
        "that signs up after the drift start.",
    ),
    drift_start_day: int | None = typer.Option(
        None, "--drift-start-day", help="Day index the drift starts on (default: half the period)."
    ),
    horizon_days: int | None = typer.Option(
        None, "--horizon-days", help="Label horizon of the oracle (default: the configured one)."
    ),
    start: str = typer.Option("2022-01-01", "--start", help="First simulated day (UTC date)."),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated oracle cutoff dates; default: automatic."
    ),
) -> None:
    """Generate a synthetic log with known churn probabilities at each cutoff (churn.synth)."""
    from churn.synth import generate, make_spec

    cfg = settings().features
    spec = make_spec(
        customers,
        days,
        seed,
        start=start,
        horizon_days=cfg.horizon_days if horizon_days is None else horizon_days,
        step_days=cfg.cutoff_step_days,
        n_train_cutoffs=cfg.n_train_cutoffs,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        drift=drift,
        drift_start_day=drift_start_day,
    )
    meta = generate(spec, out)
    counts = meta["counts"]
    typer.echo(
        f"wrote {out}: {counts['transactions']} transactions of {counts['customers']} customers, "
        f"oracle at {len(meta['cutoffs'])} cutoffs, drift {meta['drift']}"
    )


@data_app.command("cdnow")
def data_cdnow(
    out: Path = typer.Option(..., "--out", help="Destination .parquet or .csv file."),
) -> None:
    """Convert the real CDNOW log (shipped in the `lifetimes` package) to the data contract."""
    from churn.cdnow import load_cdnow, write_table

    tx = load_cdnow()
    write_table(tx, out)
    typer.echo(
        f"wrote {out}: {len(tx)} transactions of {tx['customer_id'].nunique()} customers, "
        f"{tx['timestamp'].min().date()} to {tx['timestamp'].max().date()}"
    )


# --- features commands ---


def _repo_dir(repo: Path | None) -> Path:
    return repo if repo is not None else settings().home / "feature_repo"


@features_app.command("build")
def features_build(
    transactions: Path = typer.Option(..., "--transactions", "-t", help="Transaction log."),
    customers: Path | None = typer.Option(None, "--customers", help="Optional customers table."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated training cutoff dates; default: automatic."
    ),
    observed_until: str | None = typer.Option(
        None, "--observed-until", help="End of the observation period (default: the last event)."
    ),
    bin_days: int | None = typer.Option(
        None, "--bin-days", min=1, help="Days per bin (1 or 7...)."
    ),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Bins per sequence (L)."),
) -> None:
    """Write the Feast sources (snapshots at cutoffs and latest time) and apply the repo."""
    from churn.features import build_features

    cfg = settings().features
    cfg.bin_days = cfg.bin_days if bin_days is None else bin_days
    cfg.seq_len = cfg.seq_len if seq_len is None else seq_len
    summary = build_features(
        transactions,
        _repo_dir(repo),
        cfg,
        customers=customers,
        cutoffs=cutoffs.split(",") if cutoffs else None,
        observed_until=observed_until,
    )
    typer.echo(
        f"feature repo {summary['repo']}: {summary['snapshot_rows']} snapshot rows of "
        f"{summary['customers']} customers, channels {summary['channels']}, "
        f"cutoffs {summary['cutoffs']} + latest {summary['latest_snapshot']}"
    )


@features_app.command("materialize")
def features_materialize(
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
) -> None:
    """Load the latest snapshot into the online store."""
    from churn.features import materialize

    result = materialize(_repo_dir(repo))
    typer.echo(
        f"online store holds snapshot {result['snapshot']} of {result['customers']} customers"
    )


@features_app.command("get")
def features_get(
    customer_ids: list[str] = typer.Argument(..., help="Customer ids to look up."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
) -> None:
    """Print the online features of customers (as the server would see them)."""
    import json

    from churn.feature_store import FeatureRepo

    repo_ = FeatureRepo(_repo_dir(repo))
    spec = repo_.spec
    feats = repo_.online_features(customer_ids)
    for i, cid in enumerate(customer_ids):
        row = {
            "customer_id": cid,
            "has_history": bool(feats.has_history[i]),
            "sequence": {c: feats.seq[i, j].tolist() for j, c in enumerate(spec["channels"])},
            "context": dict(zip(spec["context_features"], feats.context[i].tolist(), strict=True)),
        }
        typer.echo(json.dumps(row))


# --- dataset commands ---


@dataset_app.command("build")
def dataset_build(
    out: Path = typer.Option(..., "--out", help="Destination training set folder."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Feature repo folder (default: HOME/feature_repo)."
    ),
    cutoffs: str | None = typer.Option(
        None, "--cutoffs", help="Comma-separated cutoff dates; default: those the features have."
    ),
    horizon_days: int | None = typer.Option(
        None,
        "--horizon-days",
        min=1,
        help="Label horizon H in days (default from settings: 90).",
    ),
) -> None:
    """Build a training set through Feast's point-in-time join, split by time."""
    from churn.dataset import build_dataset

    summary = build_dataset(
        _repo_dir(repo),
        out,
        settings().features.horizon_days if horizon_days is None else horizon_days,
        cutoffs=cutoffs.split(",") if cutoffs else None,
    )
    typer.echo(f"training set {summary['out']} ({summary['seconds']} s)")
    typer.echo(f"{'split':<6}{'rows':>9}{'positives':>11}{'negatives':>11}  cutoffs")
    for name, s in summary["splits"].items():
        typer.echo(
            f"{name:<6}{s['rows']:>9}{s['positives']:>11}{s['negatives']:>11}  "
            + ", ".join(s["cutoffs"])
        )


# --- train/evaluate commands ---


@app.command("train")
def train_cmd(
    dataset: Path = typer.Option(..., "--dataset", help="Training set folder (train/val used)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.pt + model.json)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (train.epochs)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Samples per step and process (train.batch_size)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (train.lr)."),
    patience: int | None = typer.Option(
        None, "--patience", help="Epochs without better val ROC-AUC before stopping; 0: never."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of weights and shuffling."),
    pos_weight: str | None = typer.Option(
        None, "--pos-weight", help="Positive-class loss weight: auto, none or a number."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    threshold_metric: str | None = typer.Option(
        None, "--threshold-metric", help="f1 or youden, maximised on val (eval.threshold_metric)."
    ),
) -> None:
    """Train the temporal CNN and write a model folder with its validation-chosen threshold.

    Options left out come from the settings (defaults, --config file, CHURN_TRAIN__* variables).
    """
    import dataclasses
    import json

    # Imported here so that other commands do not pay for torch.
    from churn.train import train

    cfg = settings()
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "seed": seed,
        "pos_weight": pos_weight,
        "device": device,
    }
    train_cfg = dataclasses.replace(
        cfg.train, **{k: v for k, v in overrides.items() if v is not None}
    )
    try:
        summary = train(
            dataset, out, cfg.model, train_cfg, threshold_metric or cfg.eval.threshold_metric
        )
    except ValueError as exc:
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2))


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Model folder (model.pt + model.json)."),
    dataset: Path = typer.Option(..., "--dataset", help="Training set folder."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, plots, report.html."),
) -> None:
    """Score a model on the test split beside gradient-boosting and logistic baselines."""
    # Imported here so that other commands do not pay for torch, scikit-learn and matplotlib.
    from churn.evaluate import evaluate
    from churn.report import format_table

    cfg = settings()
    try:
        result = evaluate(
            model, dataset, out, threshold_metric=cfg.eval.threshold_metric, seed=cfg.train.seed
        )
    except ValueError as exc:
        _fail(exc)
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")


# --- registry commands ---


@registry_app.command("list")
def registry_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per version."),
) -> None:
    """List every version, oldest first; * marks the champion, INCOMPLETE a failed publish."""
    import dataclasses
    import json

    from churn.registry import open_registry

    registry = open_registry(settings().registry)
    champion = registry.champion()
    for info in registry.list_versions():
        is_champion = champion is not None and info.version == champion.version
        if as_json:
            typer.echo(json.dumps({**dataclasses.asdict(info), "champion": is_champion}))
            continue
        metrics = " ".join(
            f"{k}={v:.4g}"
            for k, v in sorted(info.metrics.items())
            if isinstance(v, int | float) and not isinstance(v, bool)
        )
        state = "complete" if info.complete else "INCOMPLETE"
        typer.echo(f"{'*' if is_champion else ' '} {info.version}  {state}  {metrics}")


@registry_app.command("champion")
def registry_champion(
    as_json: bool = typer.Option(False, "--json", help="Print the version as JSON."),
) -> None:
    """Show the champion version and the storageUri KServe serves it from."""
    import dataclasses
    import json

    from churn.errors import RegistryError
    from churn.registry import open_registry

    info = open_registry(settings().registry).champion()
    if info is None:
        raise RegistryError("no champion yet: promote a complete version first")
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(info)))
        return
    typer.echo(f"{info.model_name} {info.version}\nstorageUri: {info.storage_uri}")
    for key, value in sorted(info.metrics.items()):
        typer.echo(f"  {key}: {value}")


@registry_app.command("promote")
def registry_promote(
    version: str = typer.Argument(..., help="A complete version id (see `churn registry list`)."),
    expect: str | None = typer.Option(
        None,
        "--expect",
        help="Promote only if this version is still the champion ('none': no champion yet), "
        "as the pipeline does after its gate.",
    ),
) -> None:
    """Point the champion at a version by hand, for example after a refused promotion.

    The pointer moves by compare-and-swap, so a promotion running at the same time is never
    overwritten unseen. Deploy afterwards (the KServe overlay's storageUri, or `churn serve`).
    """
    from churn.registry import ANY, open_registry

    registry = open_registry(settings().registry)
    expected = ANY if expect is None else (None if expect == "none" else expect)
    previous = registry.champion()
    info = registry.promote(version, expected_champion=expected)
    was = previous.version if previous else "none"
    typer.echo(f"champion of {info.model_name}: {was} -> {info.version}")
    typer.echo(f"storageUri: {info.storage_uri}")


@app.command("serve")
def serve_cmd(
    version: str | None = typer.Option(
        None, "--version", help="Registry version to serve (default: the champion)."
    ),
) -> None:
    """Serve the champion with TorchServe on this machine until Ctrl-C.

    Addresses and protocol come from the serving settings (127.0.0.1:8080 by default);
    the management API always stays on 127.0.0.1.
    """
    import signal
    import tempfile
    import time

    # Imported here so that other commands do not pay for boto3 and requests.
    from churn.errors import RegistryError, ServingError
    from churn.registry import open_registry
    from churn.torchserve import LocalTorchServe

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
            try:
                while server.running:
                    time.sleep(1)
            except KeyboardInterrupt:
                return
            raise ServingError(f"TorchServe stopped unexpectedly\n{server.log_tail()}")


# --- pipeline commands ---


def _pipeline_arguments(**values: object) -> dict:
    """Pipeline arguments the user gave; the rest keep the compiled defaults."""
    return {name: value for name, value in values.items() if value is not None}


_DATA_HELP = (
    "cdnow, synth[:customers=N,days=D,seed=S], or a transaction log file or folder, local or "
    "s3://bucket/key (on a cluster: s3:// or a path the pods can read)."
)
_DATA_ENDPOINT_HELP = "S3 endpoint of a non-AWS store for s3:// data (default: the registry's)."


@pipeline_app.command("compile")
def pipeline_compile(
    out: Path = typer.Option(Path("churn_pipeline.yaml"), "--out", help="Pipeline YAML to write."),
) -> None:
    """Compile the Kubeflow pipeline; images, GPU placement and defaults come from the settings."""
    from churn.pipeline_run import compile_pipeline

    typer.echo(f"wrote {compile_pipeline(out, settings())}")


# Options that submit and schedule share: the cluster, the experiment and the run arguments.
_Host = Annotated[str, typer.Option("--host", help="Kubeflow Pipelines API, e.g. http://kfp:8080.")]
_Experiment = Annotated[str, typer.Option("--experiment", help="Experiment (created if new).")]
_Data = Annotated[str | None, typer.Option("--data", help=_DATA_HELP)]
_Epochs = Annotated[int | None, typer.Option("--epochs", help="Maximum training epochs.")]
_AucThreshold = Annotated[
    float | None, typer.Option("--auc-threshold", help="Minimum test ROC-AUC for promotion.")
]
_DataEndpointUrl = Annotated[
    str | None, typer.Option("--data-endpoint-url", help=_DATA_ENDPOINT_HELP)
]
_RegistryUri = Annotated[str | None, typer.Option("--registry-uri", help="s3://bucket/prefix.")]
_DeployTarget = Annotated[
    str | None, typer.Option("--deploy-target", help="kserve (default), local or none.")
]


@pipeline_app.command("submit")
def pipeline_submit(
    host: _Host,
    run_name: Annotated[str, typer.Option("--run-name", help="Name of the run.")],
    experiment: _Experiment = "churn",
    data: _Data = None,
    data_endpoint_url: _DataEndpointUrl = None,
    cutoffs: Annotated[
        str | None, typer.Option("--cutoffs", help="Comma-separated cutoff dates.")
    ] = None,
    epochs: _Epochs = None,
    auc_threshold: _AucThreshold = None,
    registry_uri: _RegistryUri = None,
    deploy_target: _DeployTarget = None,
) -> None:
    """Start one run of the pipeline on a Kubeflow Pipelines cluster."""
    from churn.pipeline_run import submit

    arguments = _pipeline_arguments(
        data=data,
        data_endpoint_url=data_endpoint_url,
        cutoffs=cutoffs,
        epochs=epochs,
        auc_threshold=auc_threshold,
        registry_uri=registry_uri,
        deploy_target=deploy_target,
    )
    run_id = submit(host, settings(), experiment, run_name, arguments)
    typer.echo(f"submitted run {run_name} ({run_id}) to {host}")


@pipeline_app.command("schedule")
def pipeline_schedule(
    host: _Host,
    cron: Annotated[
        str,
        typer.Option(
            "--cron", help='Cron, e.g. "0 3 * * 1" (Mondays 03:00); KFP\'s 6 fields also work.'
        ),
    ],
    experiment: _Experiment = "churn",
    name: Annotated[str, typer.Option("--name", help="Name of the recurring run.")] = (
        "churn-retrain"
    ),
    data: _Data = None,
    data_endpoint_url: _DataEndpointUrl = None,
    epochs: _Epochs = None,
    auc_threshold: _AucThreshold = None,
    registry_uri: _RegistryUri = None,
    deploy_target: _DeployTarget = None,
) -> None:
    """Retrain on a schedule: a recurring run that never overlaps or catches up."""
    from churn.pipeline_run import schedule

    arguments = _pipeline_arguments(
        data=data,
        data_endpoint_url=data_endpoint_url,
        epochs=epochs,
        auc_threshold=auc_threshold,
        registry_uri=registry_uri,
        deploy_target=deploy_target,
    )
    job_id = schedule(host, cron, settings(), experiment, name, arguments)
    typer.echo(f"scheduled {name} ({job_id}) on {host}: {cron}")


@app.command("run")
def run_cmd(
    data: str = typer.Option("cdnow", "--data", help=_DATA_HELP),
    customers: str = typer.Option(
        "", "--customers", help="Optional customers table (a path or s3:// URI)."
    ),
    data_endpoint_url: str | None = typer.Option(
        None, "--data-endpoint-url", help=_DATA_ENDPOINT_HELP
    ),
    cutoffs: str = typer.Option("", "--cutoffs", help="Comma-separated cutoffs; default: auto."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (train.epochs)."),
    auc_threshold: float | None = typer.Option(
        None, "--auc-threshold", help="Minimum test ROC-AUC for promotion (eval.auc_threshold)."
    ),
    deploy_target: str = typer.Option(
        "local", "--deploy-target", help="local (TorchServe smoke test), kserve or none."
    ),
    cache: bool = typer.Option(
        False, "--cache", help="Reuse steps of earlier local runs with identical inputs."
    ),
) -> None:
    """Run the whole Kubeflow pipeline on this machine (kfp.local), then print a summary."""
    from churn.pipeline_run import format_summary, run_local

    summary = run_local(
        settings(),
        data,
        customers=customers,
        cutoffs=cutoffs,
        epochs=epochs,
        auc_threshold=auc_threshold,
        deploy_target=deploy_target,
        enable_caching=cache,
        data_endpoint_url=data_endpoint_url,
    )
    typer.echo(format_summary(summary))


def run() -> None:
    """Entry point that turns ChurnError into a clean exit."""
    try:
        app()
    except (ChurnError, OSError) as exc:
        # OSError: a disk that is full or read-only, a permission: the message names the path.
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)

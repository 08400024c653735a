"""Typed settings for every step, in one place (pydantic-settings).

Defaults make ``make run`` work on one machine. Values are read, later ones winning, from:

1. the defaults below;
2. a YAML file (``churn --config FILE`` or ``CHURN_CONFIG``) whose nested mapping mirrors
   :class:`Settings`;
3. environment variables ``CHURN_<SECTION>__<FIELD>``, for example ``CHURN_TRAIN__EPOCHS=3``
   or ``CHURN_REGISTRY__URI=s3://bucket/models``.

Every range check lives in the models, so the CLI, the YAML file, the environment and the
pipeline's struct parameters (:func:`parse_section`) all refuse the same values with the same
one-line message naming the field.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "CHURN_"
# The project's CPU image: every pipeline step but training, and the KServe transformer.
DEFAULT_IMAGE = "ghcr.io/churn-platform/churn:0.1.0"
PositiveInt = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
# Kubernetes quantities, checked here so a typo is one error naming the setting, not a 422
# from the API server in the middle of a rollout.
CpuQuantity = Annotated[str, Field(pattern=r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")]
MemoryQuantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")]
# Lists read from the environment as "1,2,4" (pydantic-settings would expect JSON).
IntList = Annotated[list[int], NoDecode]
StrList = Annotated[list[str] | None, NoDecode]
NameList = Annotated[list[str], NoDecode]
# From the environment as ``name=value,name=value`` (empty: none), or as a JSON object.
AlarmMap = Annotated[
    dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(ge=0.1, allow_inf_nan=False)]],
    NoDecode,
]
PositiveFloatList = Annotated[
    list[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]], NoDecode, Field(min_length=1)
]


def _template_folder() -> Path:
    # feature_repo/ ships in the wheel as a namespace package of data files (pyproject), and is
    # the checkout's own folder in an editable install: users run `feast apply` there.
    spec = importlib.util.find_spec("feature_repo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the feature_repo template is not installed with the churn package")
    return Path(next(iter(spec.submodule_search_locations)))


class Section(BaseModel):
    """A settings section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _split_lists(cls, value: Any, info: Any) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and "list" in str(annotation):
            text = value.strip()
            if text.lower() in ("", "none", "null") and "None" in str(annotation):
                return None
            return [item.strip() for item in text.split(",") if item.strip()]
        if isinstance(value, str) and "dict" in str(annotation):
            return _pairs(value)
        return value


def _pairs(text: str) -> dict[str, str] | Any:
    """``a=1,b=2`` as a mapping (values checked by the field's type); JSON objects as they are.

    Raises:
        ValueError: An item without ``=`` or a name, or JSON that does not parse.
    """
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)  # a JSONDecodeError is a ValueError: pydantic names the field
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected name=value pairs separated by commas, got {item!r}")
        if name.strip() in out:
            raise ValueError(f"{name.strip()!r} is named twice")
        out[name.strip()] = value.strip()
    return out


class FeatureConfig(Section):
    """How the raw log becomes sequences and labels.

    Attributes:
        bin_days: Width of one sequence step in days (1 = daily, 7 = weekly).
        seq_len: Number of bins L in each sequence (the lookback is ``bin_days * seq_len``).
        horizon_days: Label horizon H: the label looks at (t, t + H] (see
            ``churn_definition``). At least 1: a negative horizon would put the test cutoff
            into training.
        cutoff_step_days: Spacing of the automatically chosen training cutoffs.
        n_train_cutoffs: How many training cutoffs the automatic schedule produces.
        extra_channels: Extra numeric event columns aggregated as channels; ``None`` takes
            every extra numeric column the log has.
        max_channels: Most channels a log may make: ``n_txn``, ``spend`` and one per extra
            column of the file. A wider log is refused from its header, before it is parsed:
            validation and the Feast sources grow with the square of the column count.
        max_event_time: Latest event time a log may hold; ``None`` is one day after the time of
            the run. A later event (a typo such as 2030 or 2206) would move the serving snapshot
            and the automatic cutoffs to it. Naive values are UTC.
        memory_budget_mb: Memory the feature and training-set builds may plan to use, in MiB;
            ``None`` takes what is available when the step starts (the machine's, or the
            container's limit when lower). Work whose estimate exceeds it is refused.
        retrieval_chunk_rows: Entity rows per point-in-time retrieval in ``churn dataset
            build``: rows are taken in chunks of consecutive customers, so the join reads only
            their snapshots and its memory is bounded by the chunk; the training set is the
            same for any value. At 1M rows, 100,000 peaks 0.3 GB below 200,000, and its
            retrieval takes about 1 s longer (``benchmarks/dataset_build.py``).
        repo_template: The Feast repository that each feature build copies.
        churn_definition: What churned means for the label at cutoff ``t`` (see
            ``churn.dataset.labels``): ``lapse``, no transaction in (t, t + H];
            ``partial_defection``, spend in (t, t + H] below ``partial_defection_fraction`` of
            the customer's own trailing spend rate scaled to H; ``contract``, a cancellation in
            (t, t + H] (needs a cancellations table; customers who cancelled at or before t are
            not labelled).
        partial_defection_fraction: Under ``partial_defection``, the share of the expected
            spend below which a customer counts as defected; strictly between 0 and 1 (0 would
            be lapse, 1 would label half of a steady population).
        partial_defection_window_days: Under ``partial_defection``, the trailing window
            (t - W, t] whose spend sets the customer's rate; ``None`` takes the feature lookback
            (``bin_days * seq_len``), the history the model sees.
        engine: What builds the snapshots: ``pandas`` in this process, or ``spark``
            (``churn.features.spark_job``); the tables are the same.
        spark_master: Spark master of the ``spark`` engine's session when none is running
            (``local[*]``: every core of this machine; ``spark://host:7077``...), and of the
            shared store's Spark offline store in the pipeline's steps (``SPARK_MASTER_URL``).
        shared_store: Folder of the feature repository that training and serving share (on
            a cluster, a volume every pod mounts at this path). The feature pipeline
            (``churn pipeline compile --pipeline features``) builds its sources, applies its
            definitions and materialises its latest snapshot into its online store; with it
            set, the training pipeline reads historical features from it instead of building
            a repository per run (set it when compiling, so the step that checks the store is
            never answered from KFP's cache). ``None`` (``make run``): a repository per run.
        shared_store_config: The ``feature_store.yaml`` the shared store uses instead of the
            template's: a path, or ``production`` for the packaged
            ``feature_repo/production/feature_store.yaml`` (SQL registry, Spark offline store,
            Redis online store; its ``${VAR}`` values come from the environment, Spark's
            master from ``spark_master``). ``None`` keeps the template's (registry, DuckDB and
            SQLite files in the folder).
    """

    bin_days: PositiveInt = 7
    seq_len: PositiveInt = 52
    horizon_days: PositiveInt = 90
    cutoff_step_days: PositiveInt = 30
    n_train_cutoffs: PositiveInt = 6
    extra_channels: StrList = None
    max_channels: int = Field(64, ge=2)
    max_event_time: datetime | None = None
    memory_budget_mb: PositiveInt | None = None
    retrieval_chunk_rows: PositiveInt = 100_000
    repo_template: Path = Field(default_factory=_template_folder)
    churn_definition: Literal["lapse", "partial_defection", "contract"] = "lapse"
    partial_defection_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    partial_defection_window_days: PositiveInt | None = None
    engine: Literal["pandas", "spark"] = "pandas"
    spark_master: str = Field("local[*]", min_length=1)
    shared_store: str | None = None
    shared_store_config: str | None = None

    @field_validator("shared_store", "shared_store_config")
    @classmethod
    def _local_path(cls, value: str | None) -> str | None:
        # Feast and the sources are read through the file system: a URI would be taken for a
        # relative folder named "s3:".
        if value is not None and (not value.strip() or "://" in value):
            raise ValueError(
                "must be a non-empty path (a folder or file the pods mount), not a URI"
            )
        return value


class ModelConfig(Section):
    """Architecture of the temporal CNN (see ``churn.model.network``).

    Attributes:
        wide: Add a linear term on the window totals, recency and context features to the
            CNN's logit; training fits it first as a logistic regression (see
            ``train.wide_c_grid``) and the network learns the residual. On 2,000-customer
            synthetic logs of 400 days it closed most of a 0.10 ROC-AUC gap to logistic
            regression; ``False`` builds the plain CNN of earlier model folders.
    """

    windows: IntList = Field(default_factory=lambda: [1, 4, 13, 26, 52])
    stem_stride: PositiveInt = 2
    hidden: PositiveInt = 16
    kernel_size: PositiveInt = 3
    dilations: IntList = Field(default_factory=lambda: [1, 2, 4, 8])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embedding_dim: PositiveInt = 4
    head_hidden: PositiveInt = 32
    wide: bool = True


class TrainConfig(Section):
    """Optimisation settings.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Samples per optimisation step (per process under DDP).
        lr: Peak learning rate of AdamW under a one-cycle schedule.
        weight_decay: AdamW weight decay.
        patience: Epochs without a better validation ROC-AUC before stopping; 0 never stops
            early (every epoch runs, the best one is kept).
        seed: Seed for weights, shuffling and dropout.
        pos_weight: ``"auto"`` weighs positives by negatives/positives in the training split;
            a number sets it; ``"none"`` disables it.
        device: ``"auto"`` picks CUDA when present, else CPU.
        num_threads: CPU threads; 0 takes half the usable cores (see ``churn.model.train``).
        min_steps_per_epoch: Fewest optimisation steps an epoch takes: a training split of
            fewer than ``batch_size * min_steps_per_epoch`` rows (per process) is cut into
            smaller batches. 2,000 rows in batches of 1,024 made 2 steps an epoch, and the
            network stopped far from its optimum. 1 keeps ``batch_size`` always.
        wide_c_grid: Inverse L2 strengths tried for the wide term's logistic regression (the
            one with the best validation ROC-AUC is kept, as for the logistic baseline); used
            when ``model.wide`` is on.
    """

    epochs: PositiveInt = 12
    batch_size: PositiveInt = 1024
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    patience: int = Field(2, ge=0)
    seed: int = 0
    pos_weight: str = "auto"
    device: str = "auto"
    num_threads: int = Field(0, ge=0)
    min_steps_per_epoch: int = Field(32, ge=1, le=100_000)
    wide_c_grid: PositiveFloatList = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])


class EvalConfig(Section):
    """Evaluation and the promotion gate.

    Attributes:
        threshold_metric: Metric maximised on the validation split to pick the decision
            threshold.
        auc_threshold: Minimum test ROC-AUC for promotion.
        refuse_below_baseline: Refuse a candidate whose test ROC-AUC is significantly below
            the best baseline of its own evaluation (the DeLong 95% interval of the
            difference lies below 0). ``False`` only for smoke runs on logs too small to
            train a model worth serving.
    """

    threshold_metric: Literal["f1", "youden"] = "f1"
    auc_threshold: float = Field(0.70, ge=0.0, le=1.0)
    refuse_below_baseline: bool = True


class RegistryConfig(Section):
    """Where promoted models live.

    Attributes:
        uri: A local folder (``/path`` or ``file:///path``) or ``s3://bucket/prefix``. Empty
            (the default) means ``<home>/registry``, so ``CHURN_HOME`` moves the registry with
            the rest of the working data; :class:`Settings` resolves it when it is built.
        endpoint_url: S3 endpoint for non-AWS stores (MinIO, moto); credentials come from the
            standard AWS environment or a mounted Secret, never from configuration.
        model_name: Name clients call the model by (the key in TorchServe's model snapshot).
        reference_split: The training set's split that a version's ``reference.parquet`` (the
            drift monitor's reference) summarises: ``train`` (the default), ``val`` or
            ``test``. ``test`` is the latest cutoff, the nearest to what will be served, and
            held out, so the model's scores on it are what fresh traffic gets: in
            ``benchmarks/loop.py`` (4,000 customers) it took the drift-free days decided
            ``drift`` on score drift alone from 2 of 45 to none. It is one cutoff, though:
            below 1,000 rows Evidently swaps its distances for KS and chi-square p-values,
            which flag any difference once the served side has thousands of rows (a
            2,000-customer log's test split raised false alarms that way), so the larger
            train split stays the default.
        reference_max_rows: Most rows a version's ``reference.parquet`` holds; a larger split is
            sampled.
        reference_seed: Seed of that sample, so the same model and data give the same rows.
    """

    uri: str = ""
    endpoint_url: str | None = None
    model_name: str = Field("churn", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    reference_split: Literal["train", "val", "test"] = "train"
    reference_max_rows: int = Field(20000, ge=100, le=1_000_000)
    reference_seed: int = Field(0, ge=0)

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # KFP parameters and env variables carry "no endpoint" as "" or "none".
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value


class ServingConfig(Section):
    """Local TorchServe and the KServe deployment.

    Attributes:
        rollout_timeout_seconds: How long a KServe deploy waits for the new version to become
            Ready before it restores the previous ``storageUri``; the restore gets as long
            again. The default matches a Deployment's ``progressDeadlineSeconds`` (600).
        rollout_poll_seconds: How often the deploy reads the InferenceService's status while
            it waits.
        transformer_image: Image of the KServe transformer (``serving.transformer``) that an
            InferenceService the deploy creates gets in front of its predictor; ``""``
            creates none. A release moves the transformer's ``storageUris`` with the
            predictor's whenever the live service has one.
        transformer_log_endpoint_url: S3 endpoint of the inference log for that transformer
            (``CHURN_TRANSFORMER__LOG_ENDPOINT_URL``) when its store is not AWS's: MinIO, or
            KFP's SeaweedFS on kind (``http://seaweedfs.kubeflow:8333``); ``""`` for AWS.
            Only a service the deploy creates gets it: a release patches an existing one's
            storage, nothing else.
        predictor_cpu: CPU request and limit of each predictor replica of a service the
            deploy creates (equal, for the Guaranteed QoS class), e.g. ``1`` or ``500m``.
        predictor_memory: Its memory request and limit, e.g. ``2Gi``.
        max_replicas: Most replicas of its predictor and transformer.
    """

    host: str = "127.0.0.1"
    inference_port: Port = 8080
    management_port: Port = 8081
    metrics_port: Port = 8082
    namespace: str = "churn"
    service_account: str = "churn-models"
    protocol_version: Literal["v1", "v2"] = "v1"
    rollout_timeout_seconds: float = Field(600.0, gt=0, le=3600)
    rollout_poll_seconds: float = Field(5.0, gt=0, le=60)
    transformer_image: str = DEFAULT_IMAGE
    transformer_log_endpoint_url: str = ""
    predictor_cpu: CpuQuantity = "1"
    predictor_memory: MemoryQuantity = "2Gi"
    max_replicas: PositiveInt = 3


class TransformerConfig(Section):
    """The KServe transformer that serves predictions by customer id (``serving.transformer``).

    In KServe, ``--predictor_host``, ``--model_name`` and ``--http_port`` arrive as arguments
    and win over the fields here; ``churn serve`` passes them too.

    Attributes:
        host: Interface the transformer binds: 127.0.0.1 on a workstation; ``0.0.0.0`` in a
            pod, where the Service must reach it.
        port: Its HTTP port.
        predictor_host: ``host:port`` of the predictor it calls.
        predictor_protocol: Protocol of the predictor calls, ``v1`` or ``v2``.
        predictor_timeout_seconds: How long one predictor call may take before the request
            fails with 503.
        max_ids_per_request: Most customer ids one request may carry; more is a 400.
        max_feature_age_hours: Features older than this are reported per customer instead of
            scored; ``None`` scores features of any age (a log from the past, such as CDNOW,
            has only old features). Set it in production, above the materialization interval.
        feature_repo: Folder with the ``feature_store.yaml`` of the online store (SQLite
            locally, Redis in the cluster); ``None`` takes ``HOME/feature_repo``.
        model_dir: The served registry version (``model/model.json`` inside) or a model
            folder; KServe's storage initializer puts it at ``/mnt/models``.
        log_uri: Where the inference log goes: a folder or ``s3://bucket/prefix``; ``None``
            takes ``HOME/inference_log``.
        log_endpoint_url: S3 endpoint of the log store for non-AWS stores (MinIO, moto).
        log_batch_size: Records per Parquet file at most.
        log_flush_seconds: Longest time a record waits before its batch is written.
        log_queue_size: Records waiting to be written at most; beyond it records are dropped
            (and counted) rather than slowing predictions down.
    """

    host: str = "127.0.0.1"
    port: Port = 8090
    predictor_host: str = Field("127.0.0.1:8080", min_length=1)
    predictor_protocol: Literal["v1", "v2"] = "v1"
    predictor_timeout_seconds: float = Field(10.0, gt=0.0)
    max_ids_per_request: PositiveInt = 128
    max_feature_age_hours: float | None = Field(None, gt=0.0)
    feature_repo: Path | None = None
    model_dir: Path = Path("/mnt/models")
    log_uri: str | None = None
    log_endpoint_url: str | None = None
    log_batch_size: PositiveInt = 1000
    log_flush_seconds: float = Field(5.0, gt=0.0)
    log_queue_size: PositiveInt = 10000

    @field_validator(
        "max_feature_age_hours", "feature_repo", "log_uri", "log_endpoint_url", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # Environment variables and ConfigMaps carry "unset" as "" or "none".
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value


class MonitorConfig(Section):
    """The drift and performance monitors (``monitoring.drift``, ``monitoring.performance``,
    ``churn monitor``) and the retraining they start (``monitoring.trigger``).

    Attributes:
        store_uri: Where reports go: a folder or ``s3://bucket/prefix``; ``None`` takes
            ``HOME/monitoring``.
        endpoint_url: S3 endpoint of the store and of an S3 inference log (MinIO, moto).
        log_uri: The inference log to read; ``None`` takes the transformer's ``log_uri``,
            else ``HOME/inference_log``.
        window_hours: Length of the window ending now when no ``--since`` is given.
        min_rows: Fewest current rows a decision needs; fewer gives ``insufficient_data``.
        drift_share: Share of drifted summary columns at which the data counts as drifted.
            Evidently's 0.5 misses a drift that moves one quantity: a spend drift moves
            only the spend windows, a quarter of the columns of a three-channel model. A
            column drifts when its Wasserstein (or Jensen-Shannon) distance exceeds 0.1
            (KS or chi2 at p < 0.05 up to 1000 reference rows), which two samples of the
            same traffic rarely reach, so 0.2 stays clear of false alarms.
        column_alarm: Distance at which one drifted column, or the score, decides ``drift``
            on its own, whatever the share. A drift that moves one quantity moves only the
            shortest windows of one channel at first, too few columns for ``drift_share``
            until the longer windows fill, weeks later. On 2 x 3 x 14 drift-free days of
            ``benchmarks/loop.py`` (seeds 7 and 8) the largest single-column distance was
            0.168 (``num_recency_days``) and the largest score drift 0.113, so 0.2 keeps a
            margin; the score alone at Evidently's 0.1 gave 2 false alarms in 57 days.
            P-value tests (up to 1,000 reference rows) never decide alone.
        calibration_windows: Once a version has this many ``no_drift`` windows that do not
            overlap, its first ones set a threshold per column (and for the score):
            ``calibration_margin`` times the column's largest distance over them, within
            [``calibration_floor``, ``column_alarm``]. A column at its own threshold then
            decides ``drift`` alone, in windows tested on at least as many rows as they were
            (``monitoring.calibration``). Columns differ in how much drift-free traffic moves
            them (``num_recency_days`` up to 0.17, ``seq_n_txn_sum_1`` under 0.1), so one
            ``column_alarm`` is late for the quiet ones. ``0`` turns calibration off.
        calibration_margin: Factor over a column's largest calibration distance.
        calibration_floor: Lowest calibrated threshold, from Evidently's own 0.1 (below it
            Evidently does not call a column drifted, so a lower threshold could never fire)
            up to ``column_alarm``.
        fixed_alarms: Columns with an alarm distance of their own, in place of
            ``column_alarm``, which calibration leaves as it is. The default is for
            ``seq_spend_per_txn_change`` (the last bin's spend per purchase against the
            year's, ``churn.features.summary``): only customers who bought in the last bin
            carry it (about one served row in six in ``benchmarks/loop.py``), so its
            drift-free distances are wide (up to 0.264 over the loop's 84 drift-free days,
            0.278 over 228 days of an offline replay), and seven calibration windows
            underestimate them (one world's first seven reached 0.106, a later drift-free
            day 0.137). A spend drift x1.6 moves it past 0.3 on day +2 to +4 of the drift
            (3,000 to 5,000 predictions at 1,000 a day; ``monitoring/README.md``). The ticket
            change of a version registered before the column existed is logged and not
            applied. From the environment:
            ``CHURN_MONITOR__FIXED_ALARMS=seq_spend_per_txn_change=0.3`` (pairs separated by
            commas, or a JSON object; empty for none). A name that is neither a column of the
            champion's reference nor ``churn_probability`` is an error. These columns are
            tested with a distance (Wasserstein, Jensen-Shannon for categories) even on a
            reference of 1,000 values or fewer, where Evidently would use a p-value.
        fixed_alarm_min_values: Fewest current values (NaN not counted) a fixed alarm's column
            needs to decide alone; with fewer it still counts for the share (at its alarm,
            which is also its Evidently threshold). A distance on a
            few dozen values is noise: in a drift-free simulation 41% of 20-value samples
            reached 0.3, 0.3% of 100-value ones, none of 200. ``benchmarks/loop.py`` serves
            about 165 ticket changes a day.
        untested_columns: Summary columns the inference log records but the drift test
            leaves out (the summary lists them as ``untested_columns``). The defaults move
            by construction, with no change in the traffic: ``num_tenure_days`` and
            ``num_frequency`` (lifetime transactions) grow as the served population ages
            past the training cutoffs (87 to 104 days after them, both drifted on every
            drift-free day of ``benchmarks/loop.py``), and ``seq_recency_bins`` is
            ``num_recency_days`` in bins, so one recency wobble counted twice. A changed
            tenure mix (a wave of new customers) still shows in the spend, activity and
            attribute columns, and a champion that ages badly in the delayed-label check
            (``churn monitor performance``). Each name must be a column of the reference. From
            the environment: ``CHURN_MONITOR__UNTESTED_COLUMNS=num_tenure_days,num_frequency``,
            or empty to test every column.
        textfile: node-exporter textfile the metrics go to; ``None`` takes
            ``HOME/monitoring/churn_drift.prom``.
        pushgateway_url: Pushgateway the metrics are pushed to as well; ``None`` pushes
            nothing (locally).
        kfp_host: Kubeflow Pipelines API the retraining run is submitted to, for example
            ``http://ml-pipeline.kubeflow.svc.cluster.local:8888``. Empty (the default) runs the
            local pipeline on this machine instead.
        kfp_namespace: Multi-user Kubeflow: the profile namespace the runs are created in
            (``manifests/components/monitor-multi-user``). Empty on standalone KFP.
        kfp_experiment: KFP experiment the retraining runs are filed under.
        retrain_data: Data the retraining run trains on (the ``data`` run argument); the
            default is ``churn run``'s.
        retrain_cooldown_hours: Least time between two triggered runs, whatever their cause,
            so a drift that persists over several windows does not start a run per window.
        retrain_claim_timeout_minutes: How long a claim without a run id blocks others: past
            it, the monitor that claimed is taken to have died before submitting, and a later
            monitor asks KFP for the run's deterministic name before submitting again.
        smoke_customers: How many customers ``churn run`` sends through the local transformer
            after a local deployment (the first ids of the online store, in order), before it
            checks the drift of that traffic; 0 sends none and checks nothing. Fewer than
            ``min_rows`` gives the honest ``insufficient_data``.
        max_rows_per_side: Most rows of each side (reference, current) Evidently's tests run
            on: a larger side is cut to a seeded random sample of this size, and the summary
            records the true counts beside it. More than 1,000, so Evidently keeps its
            distance tests (it switches to KS and chi2 at 1,000 reference rows or fewer),
            and at least ``min_rows``. On 10,000 of 100,000 rows a side the distances move
            by at most a few hundredths against the 0.1 threshold (``benchmarks/monitor.py``
            prints the largest difference), while a report on all rows takes ten times
            longer.
        sample_seed: Seed of that sample, so a check reruns to the same figures.
        scores_uri: Where stored batch scores are read by ``churn monitor performance``: a
            folder or ``s3://bucket/prefix`` holding ``date=YYYY-MM-DD/`` partitions of
            ``churn score`` files. ``None`` takes ``<registry uri>/scores``, where the scoring
            pipeline writes, for a folder or an S3 registry alike.
        auc_floor: Realised ROC-AUC on delayed labels below which the champion counts as
            ``degraded`` and ``--retrain`` starts a retraining. Below the promotion gate's
            ``eval.auc_threshold`` (0.70), so a champion that passed the gate narrowly does not
            fire on sampling noise alone.
        performance_min_rows: Fewest labelled scores (with both labels present) a performance
            decision needs; fewer give ``insufficient_data`` and never a retraining. 200 rows
            put the standard error of a ROC-AUC near 0.7 at about 0.04.
        performance_textfile: node-exporter textfile of the performance check's metrics; ``None``
            takes ``HOME/monitoring/churn_performance.prom`` (a file apart from the drift
            check's: each run rewrites its whole file).
    """

    store_uri: str | None = None
    endpoint_url: str | None = None
    log_uri: str | None = None
    window_hours: float = Field(24.0, gt=0.0, le=24.0 * 366)
    min_rows: int = Field(500, ge=1)
    drift_share: float = Field(0.2, gt=0.0, le=1.0)
    column_alarm: float = Field(0.2, gt=0.0)
    calibration_windows: int = Field(7, ge=0)
    calibration_margin: float = Field(1.25, ge=1.0)
    calibration_floor: float = Field(0.1, ge=0.1)
    fixed_alarms: AlarmMap = Field(default_factory=lambda: {"seq_spend_per_txn_change": 0.3})
    fixed_alarm_min_values: int = Field(100, ge=1)
    untested_columns: NameList = Field(
        default_factory=lambda: ["num_tenure_days", "num_frequency", "seq_recency_bins"]
    )
    textfile: Path | None = None
    pushgateway_url: str | None = None
    kfp_host: str = ""
    kfp_namespace: str = Field("", pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$")
    kfp_experiment: str = Field("churn-retrain", min_length=1)
    retrain_data: str = Field("cdnow", min_length=1)
    retrain_cooldown_hours: float = Field(24.0, ge=0.0)
    retrain_claim_timeout_minutes: float = Field(30.0, gt=0.0)
    smoke_customers: int = Field(200, ge=0, le=100_000)
    max_rows_per_side: int = Field(10_000, gt=1_000)
    sample_seed: int = Field(0, ge=0)
    scores_uri: str | None = None
    auc_floor: float = Field(0.65, gt=0.0, lt=1.0)
    performance_min_rows: int = Field(200, ge=2)
    performance_textfile: Path | None = None

    @field_validator(
        "store_uri",
        "endpoint_url",
        "log_uri",
        "textfile",
        "pushgateway_url",
        "scores_uri",
        "performance_textfile",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # Environment variables and ConfigMaps carry "unset" as "" or "none".
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @model_validator(mode="after")
    def _sample_holds_min_rows(self) -> MonitorConfig:
        # A decision on fewer tested rows than min_rows would undo what min_rows guards.
        if self.max_rows_per_side < self.min_rows:
            raise ValueError(
                f"max_rows_per_side ({self.max_rows_per_side}) must be at least min_rows "
                f"({self.min_rows})"
            )
        # Calibration may only lower a column's bar below column_alarm, never raise it.
        if self.calibration_floor > self.column_alarm:
            raise ValueError(
                f"calibration_floor ({self.calibration_floor}) must be at most column_alarm "
                f"({self.column_alarm})"
            )
        return self


class PipelineConfig(Section):
    """Kubeflow settings: images, GPU placement and resources.

    Attributes:
        service_account: ServiceAccount the cluster runs' pods use: the dedicated
            ``churn-pipeline`` (``manifests/base/pipeline-rbac.yaml``) may repoint the churn
            InferenceService, which KFP's shared ``pipeline-runner`` may not. ``""`` leaves
            KFP's default (multi-user Kubeflow: the profile's ``default-editor``).
        s3_secret_name: Secret with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for S3 data
            and the registry (``""`` when the pipeline's ServiceAccount has an IAM role
            instead); the same Secret KServe reads. A TrainJob's nodes read it too, so its
            credentials must reach the pipeline root's bucket.
        train_namespace: Namespace of the Kubeflow Trainer ``TrainJob`` that the training
            step submits when a run asks for ``train_nodes`` > 1 (it holds the S3 Secret
            and the trainer's account; ``manifests/components/distributed-training``).
        training_runtime: ClusterTrainingRuntime the TrainJob names: Kubeflow Trainer's
            ``torch-distributed``, or ``churn-torch-gpu`` from ``manifests/overlays/gpu``
            (placed on the GPU pool by the cluster's admin).
        trainer_service_account: ServiceAccount of the TrainJob's node pods.
        trainjob_timeout_seconds: How long the training step waits for its TrainJob to
            complete before it fails (the job is left in place for inspection).
        artifact_endpoint_url: S3 endpoint of the pipeline root's store as pods reach it
            (KFP 2.17's SeaweedFS: ``http://seaweedfs.kubeflow:8333``); ``""`` for AWS.
        feature_store_pvc: PersistentVolumeClaim mounted at ``features.shared_store`` in the
            steps that write or read the shared feature store (ReadWriteMany when the feature
            pipeline and training may run at once); ``""`` mounts nothing.
        feature_store_secret: Secret whose ``FEAST_REGISTRY_URL`` and
            ``REDIS_CONNECTION_STRING`` fill the ``${VAR}`` values of
            ``features.shared_store_config`` in those steps (``kind.sh deploy`` creates
            ``churn-feast``); ``""`` for none.
    """

    image: str = DEFAULT_IMAGE
    gpu_image: str = "ghcr.io/churn-platform/churn-gpu:0.1.0"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = Field(1, ge=0)
    gpu_node_selector_key: str = "cloud.google.com/gke-nodepool"
    gpu_node_selector_value: str = "gpu-pool"
    gpu_toleration_key: str = "nvidia.com/gpu"
    cpu_request: CpuQuantity = "1"
    memory_request: MemoryQuantity = "2Gi"
    train_cpu_request: CpuQuantity = "4"
    train_memory_request: MemoryQuantity = "16Gi"
    train_retries: int = Field(2, ge=0)
    service_account: str = "churn-pipeline"
    s3_secret_name: str = "churn-s3"
    train_namespace: str = Field("churn", min_length=1)
    training_runtime: str = Field("torch-distributed", min_length=1)
    trainer_service_account: str = Field("churn-trainer", min_length=1)
    trainjob_timeout_seconds: float = Field(86400.0, gt=0)
    feature_store_pvc: str = ""
    feature_store_secret: str = "churn-feast"
    artifact_endpoint_url: str = ""


class Settings(BaseSettings):
    """Every setting of the platform.

    Constructing ``Settings()`` gives the defaults only; :func:`load_settings` adds the YAML
    file and the environment.

    Attributes:
        home: Working folder for data, feature repo copies, datasets, runs and, unless
            ``registry.uri`` names another place, the registry.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        # Other CHURN_* variables (CHURN_CONFIG, CHURN_TEST_CLUSTER...) belong to other tools;
        # a typo inside a known section is still an error (the sections forbid extras).
        extra="ignore",
        validate_assignment=True,
    )

    home: Path = Path(".churn")
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="after")
    def _registry_under_home(self) -> Settings:
        # Resolved here, once, so every reader (CLI, run arguments, pods) gets a concrete URI.
        if not self.registry.uri.strip():
            self.registry.uri = str(self.home / "registry")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Plain construction reads nothing from outside: load_settings() names its sources.
        return (init_settings,)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__")

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def describe_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad field of a validation error.

    Args:
        exc: The error pydantic raised.
        prefix: Dotted path of the section that was validated, for example ``"features."``.

    Returns:
        For example ``configuration field train.epochs: Input should be a valid integer
        (got 'many')``.
    """
    error = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown configuration field {field}"
    return f"configuration field {field}: {error['msg']} (got {error.get('input')!r})"


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Builds settings from defaults, then an optional YAML file, then the environment.

    Args:
        path: Optional YAML file whose nested mapping mirrors :class:`Settings`.
        env: Environment to read ``CHURN_*`` overrides from (defaults to ``os.environ``).

    Returns:
        The resolved settings.

    Raises:
        ValueError: The file is missing or not a mapping, or a field is unknown or out of
            range; the message names it.
    """
    import os

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"configuration file {path} does not exist")
        try:
            values = YamlConfigSettingsSource(Settings, yaml_file=path)()
        except Exception as exc:  # yaml's errors carry the line and column
            raise ValueError(f"configuration file {path}: {exc}") from exc
    try:
        from_env = _MappingEnvSource(os.environ if env is None else env)()
    except Exception as exc:  # pydantic_settings.SettingsError on undecodable values
        raise ValueError(f"configuration from the environment: {exc}") from exc
    for key, value in from_env.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ValueError(describe_error(exc)) from exc


S = TypeVar("S", bound=Section)


def parse_section(cls: type[S], values: Mapping[str, Any], name: str) -> S:
    """Validates one section from a mapping, as pipeline struct parameters arrive.

    Struct parameters travel as protobuf values, whose numbers are doubles: ``32`` arrives as
    ``32.0``. pydantic turns an integral float into an int and refuses ``32.5``.

    Args:
        cls: The section's model, for example :class:`FeatureConfig`.
        values: Field values; missing fields keep their defaults.
        name: The section's name in messages (``features``, ``train``...).

    Returns:
        The validated section.

    Raises:
        ValueError: A field is unknown or out of range; the message names it.
    """
    try:
        return cls.model_validate(dict(values))
    except ValidationError as exc:
        raise ValueError(describe_error(exc, f"{name}.")) from exc


def section_values(section: Section, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A section as a JSON-able mapping for a pipeline struct parameter.

    Paths and unset (``None``) fields are left out: they keep their defaults in the pod.

    Args:
        section: The section.
        drop: Fields to leave out (those that have their own pipeline parameter).

    Returns:
        The field values.
    """
    return {
        key: value
        for key, value in section.model_dump(mode="json").items()
        if key not in drop and value is not None and not isinstance(getattr(section, key), Path)
    }

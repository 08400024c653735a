"""Benchmark: the monitoring loop as a whole, from injected drift to a new champion serving.

For each drift kind of the synthetic generator (``spend``, ``rate``, ``segment``), in a
temporary folder (removed at the end):

1. ``churn.data.synth`` simulates ``--customers`` customers with the drift starting at day
   ``S`` (the timeline is :class:`Timeline`).
2. The champion is built from the log cut at day ``S`` (nothing of the drift): features,
   training set, training, reference summary, publish and promote in a folder registry.
3. The champion is served by TorchServe behind the transformer (``serving.local``). A feature
   repository over the whole log has a snapshot at every served day; each day, that day's
   snapshot is materialised into the Feast SQLite online store, ``--per-day`` customers
   active in the lookback are asked for by id through the transformer, the inference log is
   flushed, and ``monitoring.drift.check_drift`` runs on that day's window. ``--pre-days``
   days before ``S`` look for false alarms; up to ``--post-days`` days from ``S`` on look for
   the first ``drift``.
4. On that decision, ``monitoring.trigger.maybe_retrain`` is called with the summary. Its
   ``submit`` runs the pipeline's steps in this process (features, training set, training,
   reference, publish, promote: no kfp.local, no gate) on the log cut at day ``T``; the
   trigger records the claim and the run in the registry. The old servers stop, the new
   version is downloaded and served, and the clock stops when the transformer answers with
   the new version. Without a ``drift`` decision the same trigger is called with cause
   ``performance`` so that the AUC figures still exist (the table says so).
5. Both models are scored in this process on the same post-drift rows (cutoffs from ``T`` on,
   labels within the log). The champion's loss is its AUC on the same cutoffs of the same
   seed's world generated without drift, minus its AUC on the drifted rows; the recovery is
   the retrained model's gain over the champion as a share of that loss. The generator's
   oracle AUC on both sets of rows shows how much of the loss any model could win back.
6. With ``--matched``, a third model, the matched retrain: built exactly as the champion was
   (the log before ``S``, the same cutoffs) but in a world of the same seed whose drift began
   ``S - M``, where ``M`` is chosen so that the drift is as old at its training cutoffs as at
   the eval cutoffs. It is what a retrain can reach once the new regime has settled and its
   labels have matured, with the champion's data size and model, on the same rows: the
   ceiling on the recovery that the timing of a retrain cannot lift.

Why the retrain reads the log up to ``T`` and not the decision day: labels mature ``H`` days
after a cutoff, so at the decision (days after ``S``) no post-drift label exists yet.
``T = S + 3H + (n - 1) * step + 7`` is the first day on which all ``n`` training cutoffs of
an automatic schedule lie at least a week inside the drift. The wall time measured is the
compute from the decision to serving; the label wait is a property of the data.

The baseline in the same process is the champion's own build (features to promote) on the
pre-drift log, printed beside the retrain's time and the decision-to-serving time. The machine
is shared, so the load average is printed too.

Usage: ``python benchmarks/loop.py [--kinds spend,rate,segment] [--customers 4000]
[--per-day 1000] [--pre-days 3] [--post-days 7] [--drift-share 0.2] [--reference-split test]
[--matched] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and would shadow the project's
# ``serving`` and ``monitoring`` packages with the benchmarks of the same names.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np
import pandas as pd
import requests
import torch

from churn.data.synth import DRIFT_KINDS, SIGNUP_SPREAD, generate, make_spec
from churn.dataset.build import build_dataset
from churn.dataset.labels import label_cutoffs
from churn.features.build import build_features
from churn.features.request import build_request
from churn.features.store import PROFILE_VIEW, SEQUENCE_VIEW, FeatureRepo, Features
from churn.io.processes import sigterm_as_interrupt
from churn.model.metrics import roc_auc
from churn.model.network import encode_instances, load_model, predict_proba
from churn.model.train import train
from churn.release.reference import write_reference
from churn.release.registry import LocalRegistry
from churn.release.torchserve import LocalTorchServe, free_port
from churn.settings import (
    FeatureConfig,
    ModelConfig,
    MonitorConfig,
    RegistryConfig,
    Settings,
    TrainConfig,
    TransformerConfig,
)
from monitoring.drift import Window, check_drift, log_uri, read_current
from monitoring.store import Store
from monitoring.trigger import maybe_retrain
from serving.local import LocalTransformer

FEATURES = FeatureConfig(
    bin_days=7, seq_len=26, horizon_days=28, cutoff_step_days=7, n_train_cutoffs=3
)
MODEL = ModelConfig(windows=[1, 4, 13, 26])
TRAIN = TrainConfig(epochs=6, batch_size=256, device="cpu", patience=2)
KINDS = tuple(k for k in DRIFT_KINDS if k != "none")
MODEL_NAME = "churn"
BATCH = 100
GOAL_PREDICTIONS = 5000
GOAL_RECOVERY = 0.8
LOG_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Timeline:
    """Simulation days of one run (day ``d`` is ``(start + d, start + d + 1]``).

    Attributes:
        drift_day: ``S``, the first drifted day; the champion sees the log before it.
        retrain_day: ``T``, where the retraining run's log ends (see the module docstring).
        eval_cutoffs: Cutoffs of the post-drift rows both models are scored on.
        days: Length of the simulation.
    """

    drift_day: int
    retrain_day: int
    eval_cutoffs: tuple[int, ...]
    days: int

    @classmethod
    def make(cls, cfg: FeatureConfig) -> Timeline:
        """The shortest timeline whose champion trains on a settled population.

        The generator's signups arrive over the first ``SIGNUP_SPREAD`` of the period; while
        they do, the active customers get younger every day, which the monitor rightly calls
        drift. So the champion's first training cutoff comes half a lookback after the last
        signup, and the retrain's training cutoffs all lie at least a week inside the drift.
        """
        h, step, n = cfg.horizon_days, cfg.cutoff_step_days, cfg.n_train_cutoffs
        schedule = 3 * h + (n - 1) * step
        settle = cfg.bin_days * cfg.seq_len // 2
        after = schedule + 7 + 2 * step + h
        drift = schedule
        while drift - schedule < SIGNUP_SPREAD * (drift + after) + settle:
            drift += 1
        retrain = drift + schedule + 7
        evals = (retrain, retrain + step, retrain + 2 * step)
        return cls(drift, retrain, evals, evals[-1] + h)

    def matched_drift_day(self, cfg: FeatureConfig) -> int:
        """The drift start at which a model built on the log before ``S`` (first training
        cutoff ``S - schedule``) sees the drift as old as the first eval cutoff does."""
        schedule = 3 * cfg.horizon_days + (cfg.n_train_cutoffs - 1) * cfg.cutoff_step_days
        return (self.drift_day - schedule) - (self.eval_cutoffs[0] - self.drift_day)


@dataclass
class KindResult:
    """What one drift kind measured."""

    kind: str
    pre_decisions: list[str] = field(default_factory=list)
    post_decisions: list[str] = field(default_factory=list)
    predictions_to_decision: int | None = None
    days_to_decision: int | None = None
    drifted_columns: list[str] = field(default_factory=list)
    cause: str = ""
    trigger: dict = field(default_factory=dict)
    champion_version: str = ""
    new_version: str = ""
    champion_auc_without_drift: float = float("nan")
    champion_post_auc: float = float("nan")
    retrained_post_auc: float = float("nan")
    oracle_auc_without_drift: float = float("nan")
    oracle_post_auc: float = float("nan")
    matched_post_auc: float = float("nan")
    eval_rows: int = 0
    retrain_s: float = float("nan")
    decision_to_serving_s: float = float("nan")
    champion_build_s: float = float("nan")
    new_segment_share: list[float] = field(default_factory=list)
    days: list[dict] = field(default_factory=list)

    @property
    def false_alarm(self) -> bool:
        """Whether a day before the drift was decided ``drift``."""
        return "drift" in self.pre_decisions

    @property
    def recovery(self) -> float | None:
        """Share of the champion's lost AUC the retrained model wins back; None without loss."""
        lost = self.champion_auc_without_drift - self.champion_post_auc
        if not lost > 0:
            return None
        return (self.retrained_post_auc - self.champion_post_auc) / lost

    @property
    def matched_recovery(self) -> float | None:
        """The same share for the matched retrain (``--matched``); None without it or loss."""
        lost = self.champion_auc_without_drift - self.champion_post_auc
        if not lost > 0 or np.isnan(self.matched_post_auc):
            return None
        return (self.matched_post_auc - self.champion_post_auc) / lost


def day_ts(start: pd.Timestamp, day: int) -> pd.Timestamp:
    """The midnight that closes day ``day - 1``: the snapshot that sees days ``< day``."""
    return start + pd.Timedelta(days=day)


def cut_log(synth: Path, start: pd.Timestamp, day: int, out: Path) -> tuple[Path, Path]:
    """The log of the days before ``day`` and the customers seen in it, as Parquet files."""
    out.mkdir(parents=True, exist_ok=True)
    tx = pd.read_parquet(synth / "transactions.parquet")
    tx = tx[tx["timestamp"] <= day_ts(start, day)]
    customers = pd.read_parquet(synth / "customers.parquet")
    customers = customers[customers["customer_id"].isin(tx["customer_id"].unique())]
    tx.to_parquet(out / "transactions.parquet", index=False)
    customers.to_parquet(out / "customers.parquet", index=False)
    return out / "transactions.parquet", out / "customers.parquet"


def build_and_publish(
    synth: Path,
    start: pd.Timestamp,
    day: int,
    work: Path,
    registry: LocalRegistry,
    reference_split: str,
    allow_input_change: str = "",
) -> str:
    """The pipeline's steps in this process on the log before ``day``: returns the version.

    Features (automatic cutoff schedule), training set, training, the reference summary,
    publish and promote. ``allow_input_change`` names an intended change of the input spec
    (the pipeline's argument of that name): segment drift adds ``enterprise`` to the segment
    vocabulary, which the registry refuses to promote silently.
    """
    tx, customers = cut_log(synth, start, day, work / "log")
    until = day_ts(start, day).isoformat()
    build_features(tx, work / "repo", FEATURES, customers=customers, observed_until=until)
    build_dataset(work / "repo", work / "dataset", FEATURES.horizon_days)
    train(work / "dataset", work / "model", MODEL, TRAIN)
    reference = write_reference(
        work / "model", work / "dataset", work / "reference.parquet", 20_000, 0, reference_split
    )
    info = registry.publish(work / "model", {"roc_auc": float("nan")}, reference=reference)
    registry.promote(info.version, allow_input_change=allow_input_change)
    return info.version


def materialize_day(repo: FeatureRepo, ts: pd.Timestamp, with_profile: bool) -> None:
    """Loads the snapshot taken at ``ts`` into the online store (and the profiles once)."""
    store = repo.store()
    window = {"start_date": ts.to_pydatetime(), "end_date": (ts + pd.Timedelta(seconds=1))}
    store.materialize(**window, feature_views=[SEQUENCE_VIEW])
    if with_profile:
        store.materialize(
            start_date=pd.Timestamp("1970-01-01", tz="UTC").to_pydatetime(),
            end_date=window["end_date"],
            feature_views=[PROFILE_VIEW],
        )


def active_ids(tx: pd.DataFrame, ts: pd.Timestamp, lookback_days: int) -> np.ndarray:
    """Customers with a transaction in ``(ts - lookback, ts]``: whom training labels too."""
    times = tx["timestamp"]
    mask = (times > ts - pd.Timedelta(days=lookback_days)) & (times <= ts)
    return np.sort(tx.loc[mask, "customer_id"].unique())


def serve(url: str, ids: list[str], session: requests.Session) -> list[dict]:
    """Asks the transformer for ``ids`` in batches; returns the answers that have a score."""
    answers = []
    for i in range(0, len(ids), BATCH):
        body = {"instances": [{"customer_id": c} for c in ids[i : i + BATCH]]}
        resp = session.post(url, json=body, timeout=60)
        resp.raise_for_status()
        answers += [p for p in resp.json()["predictions"] if "churn_probability" in p]
    return answers


def wait_for_log(settings: Settings, window: Window, version: str, rows: int) -> None:
    """Waits until the inference log holds ``rows`` records of ``version`` in ``window``."""
    log = Store(log_uri(settings))
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        current, _ = read_current(log, window, version, [])
        if len(current) >= rows:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the inference log holds {len(current)} of {rows} records")
        time.sleep(0.5)


@contextmanager
def serving(
    registry: LocalRegistry, version: str, settings: Settings, work: Path
) -> Iterator[LocalTransformer]:
    """TorchServe and the transformer serving ``version``, stopped (log flushed) on exit."""
    version_dir = registry.download(version, work / f"version-{version}")
    with (
        LocalTorchServe(
            version_dir / "model-store", MODEL_NAME, workdir=work / f"ts-{version}"
        ) as predictor,
        LocalTransformer(
            MODEL_NAME,
            predictor.predict_url.removeprefix("http://").split("/", 1)[0],
            version_dir,
            settings,
            port=free_port(),
            log_file=work / f"transformer-{version}.log",
        ) as transformer,
    ):
        yield transformer


@dataclass
class EvalSet:
    """Rows both models are scored on: ids, point-in-time store features, labels, oracle.

    ``oracle`` is the generator's exact churn probability of each row (``oracle.parquet``):
    its AUC is the best any model can reach on these rows.
    """

    ids: list[str]
    features: Features
    labels: np.ndarray
    oracle: np.ndarray
    spec: dict

    @classmethod
    def at(cls, synth: Path, repo: FeatureRepo, start: pd.Timestamp, tl: Timeline) -> EvalSet:
        """The customers active at each eval cutoff, with their features and labels."""
        tx = pd.read_parquet(synth / "transactions.parquet")
        cutoffs = [day_ts(start, d) for d in tl.eval_cutoffs]
        lookback = FEATURES.bin_days * FEATURES.seq_len
        labels = label_cutoffs(tx, cutoffs, FEATURES.horizon_days, lookback, day_ts(start, tl.days))
        oracle = pd.read_parquet(synth / "oracle.parquet")
        rows = labels.merge(oracle, on=["customer_id", "cutoff"], how="left", validate="1:1")
        if rows["true_prob"].isna().any():
            raise RuntimeError("the oracle lacks some labelled rows")
        entity = pd.DataFrame(
            {"customer_id": rows["customer_id"], "event_timestamp": rows["cutoff"]}
        )
        return cls(
            list(rows["customer_id"]),
            repo.historical_features(entity),
            rows["label"].to_numpy(),
            rows["true_prob"].to_numpy(),
            repo.spec,
        )

    @property
    def oracle_auc(self) -> float:
        """The generator's exact probabilities' ROC-AUC: the ceiling of any model here."""
        return roc_auc(self.labels, self.oracle)

    def auc(self, model_dir: Path) -> float:
        """A model's ROC-AUC on the rows, built into requests the way serving builds them."""
        model, meta = load_model(model_dir)
        request = build_request(self.ids, self.features, self.spec, meta["input_spec"])
        inputs = encode_instances(request.instances, meta["input_spec"])
        return roc_auc(self.labels, predict_proba(model, *inputs).numpy())


def simulate(
    kind: str,
    args: argparse.Namespace,
    start: pd.Timestamp,
    out: Path,
    drift_day: int | None = None,
) -> Path:
    """The synthetic world of one drift kind (``none``: the counterfactual), in ``out``; the
    drift starts at ``drift_day``, by default the timeline's ``S``."""
    tl = Timeline.make(FEATURES)
    spec = make_spec(
        args.customers,
        tl.days,
        seed=args.seed,
        start=start,
        horizon_days=FEATURES.horizon_days,
        drift=kind,
        drift_start_day=None
        if kind == "none"
        else tl.drift_day
        if drift_day is None
        else drift_day,
        cutoffs=[day_ts(start, d).date().isoformat() for d in tl.eval_cutoffs],
    )
    generate(spec, out)
    return out


def counterfactual(args: argparse.Namespace, start: pd.Timestamp, root: Path) -> EvalSet:
    """The eval rows of the same world without drift: what the champion would have scored on."""
    tl = Timeline.make(FEATURES)
    synth = simulate("none", args, start, root / "synth")
    build_features(
        synth / "transactions.parquet",
        root / "repo",
        FEATURES,
        customers=synth / "customers.parquet",
        cutoffs=[day_ts(start, d).date().isoformat() for d in tl.eval_cutoffs],
        observed_until=day_ts(start, tl.days).isoformat(),
    )
    return EvalSet.at(synth, FeatureRepo(root / "repo"), start, tl)


class Loop:
    """One drift kind's run of the benchmark in ``root``."""

    def __init__(
        self,
        kind: str,
        args: argparse.Namespace,
        root: Path,
        start: pd.Timestamp,
        without_drift: EvalSet,
    ) -> None:
        self.kind, self.args, self.root, self.start = kind, args, root, start
        self.without_drift = without_drift
        self.timeline = Timeline.make(FEATURES)
        self.registry = LocalRegistry(root / "registry", MODEL_NAME)
        self.result = KindResult(kind)
        self.settings = Settings(
            home=root / "home",
            registry=RegistryConfig(uri=str(root / "registry"), model_name=MODEL_NAME),
            transformer=TransformerConfig(
                feature_repo=root / "serving-repo",
                log_uri=str(root / "inference-log"),
                log_flush_seconds=0.2,
                max_feature_age_hours=24.0 * (self.timeline.days + 30),
            ),
            monitor=MonitorConfig(retrain_data=str(root / "synth"), drift_share=args.drift_share),
        )

    def run(self) -> KindResult:
        """Simulate, train the champion, serve day by day, retrain, evaluate."""
        tl = self.timeline
        synth = simulate(self.kind, self.args, self.start, self.root / "synth")
        t0 = time.perf_counter()
        champion = build_and_publish(
            synth,
            self.start,
            tl.drift_day,
            self.root / "champion",
            self.registry,
            self.args.reference_split,
        )
        self.result.champion_build_s = time.perf_counter() - t0
        self.result.champion_version = champion
        self.tx = pd.read_parquet(synth / "transactions.parquet")
        self.segments = pd.read_parquet(synth / "customers.parquet").set_index("customer_id")
        self.repo = self._serving_repo(synth)
        new_version = self._serve_and_retrain(champion)
        self._evaluate(champion, new_version)
        return self.result

    def _serving_repo(self, synth: Path) -> FeatureRepo:
        """Features over the whole log with a snapshot at every served day and eval cutoff."""
        tl = self.timeline
        days = range(tl.drift_day - self.args.pre_days, tl.drift_day + self.args.post_days)
        cutoffs = sorted({*days, *tl.eval_cutoffs})
        build_features(
            synth / "transactions.parquet",
            self.root / "serving-repo",
            FEATURES,
            customers=synth / "customers.parquet",
            cutoffs=[day_ts(self.start, d).date().isoformat() for d in cutoffs],
            observed_until=day_ts(self.start, tl.days).isoformat(),
        )
        return FeatureRepo(self.root / "serving-repo")

    def _serve_and_retrain(self, champion: str) -> str:
        tl, res = self.timeline, self.result
        decision: dict | None = None
        served_since_drift = 0
        with (
            serving(self.registry, champion, self.settings, self.root) as transformer,
            requests.Session() as session,
        ):
            first = tl.drift_day - self.args.pre_days
            for day in range(first, tl.drift_day + self.args.post_days):
                summary, served = self._day(transformer, session, day, champion, day == first)
                pre = day < tl.drift_day
                (res.pre_decisions if pre else res.post_decisions).append(summary["decision"])
                if pre:
                    continue
                served_since_drift += served
                if summary["decision"] == "drift":
                    decision = summary
                    res.predictions_to_decision = served_since_drift
                    res.days_to_decision = day - tl.drift_day + 1
                    res.drifted_columns = [c["column"] for c in summary["drifted_columns"]]
                    break
            clock = time.perf_counter()
            if decision is None:
                # No drift decision: retrain on a performance alarm, so the AUCs still exist.
                decision, res.cause = {**summary, "decision": "degraded"}, "performance"
            else:
                res.cause = "drift"
            res.trigger = maybe_retrain(
                decision, self.settings, cause=res.cause, submit=self._submit
            )
            if res.trigger["action"] != "triggered":
                raise RuntimeError(f"the trigger did not start a retrain: {res.trigger['reason']}")
        new_version = self.registry.champion().version  # type: ignore[union-attr]
        with (
            serving(self.registry, new_version, self.settings, self.root / "new") as transformer,
            requests.Session() as session,
        ):
            first_id = str(self.tx["customer_id"].iloc[0])
            answer = serve(transformer.predict_url, [first_id], session)
            res.decision_to_serving_s = time.perf_counter() - clock
        if answer[0]["model_version"] != new_version:
            raise RuntimeError(f"the new servers answered with {answer[0]['model_version']}")
        res.new_version = new_version
        return new_version

    def _day(
        self,
        transformer: LocalTransformer,
        session: requests.Session,
        day: int,
        version: str,
        first: bool,
    ) -> tuple[dict, int]:
        """Serves one day's customers and runs the monitor on that day's window."""
        started = time.perf_counter()
        ts = day_ts(self.start, day)
        materialize_day(self.repo, ts, with_profile=first)
        ids = active_ids(self.tx, ts, FEATURES.bin_days * FEATURES.seq_len)
        rng = np.random.default_rng(self.args.seed * 100_003 + day)
        chosen = rng.choice(ids, size=min(self.args.per_day, len(ids)), replace=False)
        since = datetime.now(UTC)
        answers = serve(transformer.predict_url, [str(c) for c in chosen], session)
        until = datetime.now(UTC) + timedelta(microseconds=1)
        window = Window(since, until)
        wait_for_log(self.settings, window, version, len(answers))
        summary = check_drift(self.settings, since=since, until=until)
        new = float(np.mean(self.segments.loc[chosen, "segment"] == "enterprise"))
        self.result.new_segment_share.append(round(new, 4))
        self.result.days.append(day_record(day - self.timeline.drift_day, summary))
        print(
            f"  {self.kind} day {day - self.timeline.drift_day:+d}: {len(answers)} of "
            f"{len(ids)} active served, "
            f"{summary['decision']} (share {summary['drift_share']}: "
            f"{', '.join(c['column'] for c in summary['drifted_columns'])}; score drift "
            f"{(summary['prediction_drift'] or {}).get('score')}), enterprise {new:.1%}, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        return summary, len(answers)

    def _submit(self, settings: Settings, name: str) -> str:
        """The trigger's ``submit``: the pipeline's steps in this process; returns a run id."""
        work, started = self.root / name, time.perf_counter()
        build_and_publish(
            Path(settings.monitor.retrain_data),
            self.start,
            self.timeline.retrain_day,
            work,
            self.registry,
            self.args.reference_split,
            allow_input_change=f"retrained on the {self.kind}-drifted log",
        )
        self.result.retrain_s = time.perf_counter() - started
        return f"in-process-{name}"

    def _evaluate(self, champion: str, new_version: str) -> None:
        res, root = self.result, self.root
        rows = EvalSet.at(self.root / "synth", self.repo, self.start, self.timeline)
        res.eval_rows = len(rows.ids)
        old = self.registry.download(champion, root / "eval-champion") / "model"
        new = self.registry.download(new_version, root / "eval-new") / "model"
        res.champion_auc_without_drift = self.without_drift.auc(old)
        res.oracle_auc_without_drift = self.without_drift.oracle_auc
        res.oracle_post_auc = rows.oracle_auc
        res.champion_post_auc = rows.auc(old)
        res.retrained_post_auc = rows.auc(new)
        if self.args.matched:
            res.matched_post_auc = rows.auc(self._matched_model())

    def _matched_model(self) -> Path:
        """The matched retrain (module docstring, step 6): its model folder."""
        tl, root = self.timeline, self.root / "matched"
        drift_day = tl.matched_drift_day(FEATURES)
        synth = simulate(self.kind, self.args, self.start, root / "synth", drift_day)
        registry = LocalRegistry(root / "registry", MODEL_NAME)
        version = build_and_publish(
            synth, self.start, tl.drift_day, root, registry, self.args.reference_split
        )
        return registry.download(version, root / "eval") / "model"


def day_record(day: int, summary: dict) -> dict:
    """One served day as the JSON keeps it: the decision and every tested column's score."""
    tested = summary.get("columns") or []
    prediction = summary.get("prediction_drift") or {}
    return {
        "day": day,
        "decision": summary["decision"],
        "drift_share": summary["drift_share"],
        "scores": {c["column"]: round(c["score"], 4) for c in tested},
        "drifted": [c["column"] for c in summary["drifted_columns"]],
        "score_drift": prediction.get("score"),
        "reasons": summary.get("reasons") or [],
        "calibrated": bool(summary.get("calibration")),
    }


def verdicts(res: KindResult) -> dict[str, bool | None]:
    """Each goal of the issue, met or not; recovery is ``None`` when the champion lost nothing."""
    detected = res.predictions_to_decision is not None
    recovery = res.recovery
    return {
        "detected": detected and res.predictions_to_decision <= GOAL_PREDICTIONS,  # type: ignore[operator]
        "no_false_alarm": not res.false_alarm,
        "recovered": None if recovery is None else recovery >= GOAL_RECOVERY,
    }


def caveat(r: KindResult) -> str:
    """What the decision day's traffic could show of the drift."""
    if r.days_to_decision == 1:
        # Day +0 is served from the snapshot at the drift's first midnight: no drifted day yet.
        return ", on day +0: no drifted day in the features yet"
    if r.kind == "segment" and r.new_segment_share:
        return f", enterprise {r.new_segment_share[-1]:.1%} of it"
    return ""


def table(results: list[KindResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| drift | predictions (days) to `drift` | false alarm before | champion AUC without "
        "/ with drift | retrained AUC | oracle AUC without / with drift | recovered "
        "| decision to serving (retrain; champion build) "
        "| goals |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        detect = (
            f"{r.predictions_to_decision:,} ({r.days_to_decision} d){caveat(r)}"
            if r.predictions_to_decision is not None
            else f"none in {len(r.post_decisions)} d ({r.cause} retrain)"
        )
        rec = "no loss" if r.recovery is None else f"{r.recovery:.0%}"
        if not np.isnan(r.matched_post_auc):
            matched = "" if r.matched_recovery is None else f", {r.matched_recovery:.0%}"
            rec += f" (matched retrain {r.matched_post_auc:.3f}{matched})"
        goals = ", ".join(
            f"{k} {'n/a' if v is None else 'yes' if v else 'NO'}" for k, v in verdicts(r).items()
        )
        serving_s = (
            f"{r.decision_to_serving_s:.0f} s ({r.retrain_s:.0f} s; {r.champion_build_s:.0f} s)"
        )
        cells = [
            r.kind,
            detect,
            f"{r.pre_decisions.count('drift')} of {len(r.pre_decisions)} days",
            f"{r.champion_auc_without_drift:.3f} / {r.champion_post_auc:.3f}",
            f"{r.retrained_post_auc:.3f}",
            f"{r.oracle_auc_without_drift:.3f} / {r.oracle_post_auc:.3f}",
            rec,
            serving_s,
            goals,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated drift kinds")
    parser.add_argument("--customers", type=int, default=4000, help="synthetic customers")
    parser.add_argument("--per-day", type=int, default=1000, help="predictions served per day")
    parser.add_argument("--pre-days", type=int, default=3, help="days served before the drift")
    parser.add_argument("--post-days", type=int, default=7, help="most days served after it")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument(
        "--drift-share",
        type=float,
        default=MonitorConfig().drift_share,
        help="monitor.drift_share: share of drifted summary columns that decides drift",
    )
    parser.add_argument(
        "--reference-split",
        choices=("train", "val", "test"),
        default=RegistryConfig().reference_split,
        help="registry.reference_split: the split each version's drift reference summarises",
    )
    parser.add_argument(
        "--matched",
        action="store_true",
        help="also score a matched retrain: the champion's recipe in a world whose drift is as "
        "old at its training cutoffs as at the eval cutoffs (the recovery's ceiling)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    # Stopped with SIGTERM (timeout, kill), the servers it started stop and its folder goes.
    sigterm_as_interrupt()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        parser.error(f"--kinds takes some of {', '.join(KINDS)}, got {args.kinds!r}")
    logging.basicConfig(level=logging.WARNING)
    # Six progress bars per kind would bury the per-day lines.
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores", flush=True)
    results = []
    t0 = time.perf_counter()
    timeline = Timeline.make(FEATURES)
    print(f"timeline: {timeline}", flush=True)
    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=timeline.days + 1)
    root = Path(tempfile.mkdtemp(prefix="churn-loop-"))
    try:
        without_drift = counterfactual(args, start, root / "none")
        for kind in kinds:
            results.append(Loop(kind, args, root / kind, start, without_drift).run())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(f"total {time.perf_counter() - t0:.0f} s; load average after: {os.getloadavg()}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))


if __name__ == "__main__":
    main()

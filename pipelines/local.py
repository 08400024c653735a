"""The training pipeline on this machine with ``kfp.local``, and the summary of a run.

Local runs use the host's Python (``SubprocessRunner(use_venv=False)``), so they execute the
same component code and the same gate condition as a cluster, offline.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from churn.errors import ContractError, PipelineError
from churn.io.leftovers import owned_tempdir
from churn.io.object_store import is_s3_uri
from churn.io.processes import environment, wait_for_interrupted
from churn.settings import Settings
from pipelines.arguments import RunArguments

log = logging.getLogger(__name__)

# How long an interrupted run waits for its steps to remove their unfinished outputs.
_CLEANUP_SECONDS = 20
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_local(
    settings: Settings,
    overrides: dict[str, Any] | None = None,
    *,
    enable_caching: bool = False,
) -> dict:
    """Runs the whole pipeline on this machine with ``kfp.local`` and summarises it.

    Artifacts land under ``<settings.home>/pipeline_root/<pipeline>-<timestamp>/``; the
    registry is ``settings.registry.uri`` (a local folder by default). GPU placement and images
    are ignored locally; training uses CUDA if this machine has it.

    Args:
        settings: Settings; they give every argument that ``overrides`` leaves out.
        overrides: Run arguments (fields of :class:`pipelines.arguments.RunArguments`);
            ``deploy_target`` defaults to ``local`` (a TorchServe smoke test) here.
        enable_caching: Reuse outputs of earlier local runs whose inputs were identical
            (the gate and the steps after it always run).

    Returns:
        See :func:`summarize_run`, plus ``smoke``: after a local deployment, the smoke traffic
        through the local transformer and the drift check of it
        (:func:`pipelines.smoke.smoke_and_check`), else ``None``.

    Raises:
        PipelineError: An argument is invalid or a task failed (the message names it).
        ContractError: ``data`` names nothing usable.
    """
    from kfp import local

    from pipelines.training_pipeline import PIPELINE_NAME, build_pipeline

    args = RunArguments.from_settings(settings, **{"deploy_target": "local", **(overrides or {})})
    if args.train_nodes > 1:
        # Refused before any step runs: the train step would fail only after the features and
        # the training set were built.
        raise PipelineError(
            f"train_nodes={args.train_nodes} submits a Kubeflow Trainer TrainJob, whose nodes "
            "need a cluster and an s3:// pipeline root: use `churn pipeline submit`, or on this "
            "machine `torchrun --nproc-per-node N -m churn.model.train_entry`"
        )
    # Component processes may run elsewhere than this process's working folder.
    args.data = _local_data(args.data)
    args.customers = _absolute_uri(args.customers) if args.customers else ""
    args.registry.uri = _absolute_uri(args.registry.uri)
    root = (settings.home / "pipeline_root").resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    pipeline = build_pipeline(settings)
    log.info("running %s locally on %s; artifacts under %s", PIPELINE_NAME, args.data, root)
    started = time.perf_counter()
    # Every step's temporary files (kfp's `mktemp -d` for the step's code, the steps' own
    # scratch folders) go into one folder of this run, removed at the end; if this process is
    # killed, the next run removes it (churn.io.leftovers). owned_tempdir reads (and so fixes)
    # this process's own temporary folder before TMPDIR changes for the children.
    with (
        owned_tempdir("churn-run-") as scratch,
        environment({"TMPDIR": str(scratch)}),
        _StdoutTail() as tail,
        warnings.catch_warnings(),
    ):
        (scratch / "workspace").mkdir()
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            workspace_root=str(scratch / "workspace"),
            enable_caching=enable_caching,
        )
        # Images, accelerators and resource requests only matter on a cluster; kfp.local
        # says so for every task, which would bury the run's own log.
        for category in (RuntimeWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"kfp\.local")
        try:
            pipeline(**args.parameters())
        except RuntimeError as exc:
            raise PipelineError(step_failure(str(exc), tail.lines())) from exc
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the steps clean up their outputs before the scratch goes.
            wait_for_interrupted(timeout=_CLEANUP_SECONDS)
            raise
    seconds = time.perf_counter() - started
    runs = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before)
    if len(runs) != 1:
        raise PipelineError(
            f"expected one new run folder under {root}, found {[p.name for p in runs]}"
        )
    summary = summarize_run(runs[0], seconds)
    summary["smoke"] = _smoke(settings, args, summary)
    return summary


def _smoke(settings: Settings, args: RunArguments, summary: dict) -> dict | None:
    """Smoke traffic and a drift check after a local deployment; ``None`` when there was none.

    The run's own registry and serving arguments apply (``--registry-uri`` and the like).
    """
    from pipelines.smoke import smoke_and_check

    deployment = summary["deployment"] or {}
    if settings.monitor.smoke_customers == 0 or not deployment.get("feature_repo"):
        return None
    cfg = settings.model_copy(update={"registry": args.registry, "serving": args.serving})
    return smoke_and_check(cfg, deployment["version"], deployment["feature_repo"])


class _StdoutTail(io.TextIOBase):
    """Passes stdout through and keeps its last lines, where kfp.local streams each step's log.

    Args:
        keep: How many lines to keep.
    """

    def __init__(self, keep: int = 500) -> None:
        super().__init__()
        self._keep: collections.deque[str] = collections.deque(maxlen=keep)
        self._partial = ""
        self._stream = sys.stdout

    def __enter__(self) -> _StdoutTail:
        self._stream = sys.stdout
        sys.stdout = self
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        *complete, self._partial = (self._partial + text).split("\n")
        self._keep.extend(complete)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def lines(self) -> list[str]:
        """The kept lines, oldest first, with the unfinished last one."""
        return [*self._keep, self._partial]


def step_failure(kfp_message: str, output: list[str]) -> str:
    """One line for a failed local run: the failing step and the error it raised.

    Args:
        kfp_message: kfp.local's message ("... Inner task failed: 'build-features'.").
        output: The last lines of the run's output, which hold the step's traceback.

    Returns:
        ``step <name> failed: <its error>``, or kfp's message when either part is missing.
    """
    text = _ANSI.sub("", kfp_message)
    step = re.search(r"(?:Inner task failed: |Task )'([^']+)'", text)
    error = _last_exception(output)
    if step is None or error is None:
        return f"the local pipeline run failed: {text}"
    return f"step {step[1]} failed: {error}"


def _last_exception(output: list[str]) -> str | None:
    """The first line of the last traceback's exception, without a churn.errors class name."""
    lines = [_ANSI.sub("", line).rstrip() for line in output]
    header = "Traceback (most recent call last):"
    headers = [i for i, line in enumerate(lines) if line.strip() == header]
    if not headers:
        return None
    start = headers[-1]
    indent = len(lines[start]) - len(lines[start].lstrip())
    for line in lines[start + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) < indent:
            return None
        if len(line) - len(line.lstrip()) == indent:
            kind, _, message = line.strip().partition(": ")
            if kind.startswith("churn.errors.") and message:
                return message
            return f"{kind.rpartition('.')[2]}: {message}" if message else kind
    return None


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
    lines += _smoke_lines(summary.get("smoke"))
    return "\n".join(lines)


def _smoke_lines(smoke: dict | None) -> list[str]:
    if not smoke:
        return []
    drift = smoke["drift"]
    rows = drift["rows"]
    decision = drift["decision"]
    if decision == "insufficient_data":
        decision += f" (fewer than monitor.min_rows={drift['min_rows']})"
    elif drift["drift_share"] is not None:
        decision += f" (drifted columns: share {drift['drift_share']:.2f})"
    lines = [
        f"smoke traffic: {smoke['customers']} customers by id through the local transformer, "
        f"{smoke['scored']} scored, logged to {smoke['log_uri']}",
        f"drift check: {decision} on {rows['current']} current against {rows['reference']} "
        "reference rows",
    ]
    if drift["report_html"]:
        lines.append(f"drift report: {drift['report_html']}")
    lines.append(f"drift summary: {drift['summary_json']}")
    return lines

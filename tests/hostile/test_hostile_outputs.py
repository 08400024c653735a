"""Outputs under hostile conditions: foreign folders, kill -9, SIGTERM, read-only folders.

Every case here was a defect (issue 10): a command that overwrote a user's files, a swap that
a crash left without its destination, temporary folders that outlived their process, a write
error reported after the work and naming a hidden path, a damaged input that ended in a
traceback, a failed pipeline step whose reason was buried in its log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from churn.data.sources import resolve_data
from churn.dataset.training_set import load_training_set
from churn.errors import ContractError, DatasetError, OutputError
from churn.evaluation.evaluate import evaluate
from churn.features.build import build_features
from churn.features.store import FeatureRepo, FeatureStoreError
from churn.io import leftovers
from churn.io.atomic import check_replaceable, staging_dir
from churn.io.processes import descendants, wait_gone
from churn.model.train import train
from churn.release.registry import LocalRegistry
from churn.settings import FeatureConfig, ModelConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
CUTOFFS = ["2020-02-01", "2020-03-02", "2020-04-01"]
CFG = FeatureConfig(bin_days=7, seq_len=8, horizon_days=30)
# churn.features.store.REPO_MARKER, spelled out: the file name is part of the on-disk format.
REPO_MARKER = "churn-feature-repo.json"


def churn(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, prefix: list[str] = ()
) -> subprocess.CompletedProcess:
    """Runs the real command line in a new process, as a user would."""
    return subprocess.run(
        [*prefix, sys.executable, "-c", "from churn.cli import run; run()", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_churn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from churn.cli import run; run()", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, text: str, code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and text in last, result.stderr
    return last


def small_log(path: Path) -> Path:
    rows = [
        (f"c{i}", pd.Timestamp("2020-01-05T10:00:00Z") + pd.Timedelta(days=3 * k + i), 1.0 + k)
        for i in range(6)
        for k in range(40)
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_csv(path, index=False)
    return path


def tag_of(pid: int, host: str | None = None, suffix: str = "0123abcd") -> str:
    """An owner tag for another process (``leftovers.owner_tag`` is always this process's)."""
    return f"{host or leftovers._HOST}-{pid}-{suffix}"


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid() -> Callable[[], int]:
    procs: list[subprocess.Popen] = []

    def start() -> int:
        procs.append(subprocess.Popen(["sleep", "300"]))
        return procs[-1].pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def unprivileged() -> list[str]:
    """A prefix that makes permission bits apply, also to root (which ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


# Item 1: a feature build never overwrites a folder that is not a feature repository.


def test_features_build_refuses_a_folder_that_is_not_a_feature_repo(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "data" / "sources").mkdir(parents=True)
    (project / "data" / "sources" / "notes.txt").write_text("n")
    (project / "feature_store.yaml").write_text("mine")
    log = small_log(tmp_path / "tx.csv")

    result = churn("features", "build", "-t", str(log), "--repo", str(project))

    assert_one_line_error(result, f"{project} is a non-empty folder that is not an earlier")
    assert (project / "data" / "sources" / "notes.txt").read_text() == "n"
    assert (project / "feature_store.yaml").read_text() == "mine"
    assert not (project / "customer_features.py").exists()
    assert not (project / REPO_MARKER).exists()


def test_features_build_rebuilds_its_own_repo_also_one_built_before_the_marker(
    tmp_path: Path,
) -> None:
    log = small_log(tmp_path / "tx.csv")
    repo = tmp_path / "repo"
    build_features(log, repo, CFG, cutoffs=CUTOFFS)
    assert json.loads((repo / REPO_MARKER).read_text())["kind"] == "churn feature repository"
    build_features(log, repo, CFG, cutoffs=CUTOFFS[1:])
    assert FeatureRepo(repo).spec["cutoffs"][0].startswith("2020-03-02")

    (repo / REPO_MARKER).unlink()  # as an earlier version of this code left it
    build_features(log, repo, CFG, cutoffs=CUTOFFS)
    assert FeatureRepo(repo).spec["cutoffs"][0].startswith("2020-02-01")


# Item 2: evaluate writes only into its own folders, and data cdnow keeps an existing file.


def test_evaluate_refuses_a_folder_with_someone_elses_metrics_and_report(
    tmp_path: Path, make_training_set: Callable[..., Path]
) -> None:
    dataset = make_training_set(tmp_path, n=600)
    model_cfg = ModelConfig(hidden=4, dilations=[1], head_hidden=4)
    with threadpool_limits(1):
        model = train(dataset, tmp_path / "model", model_cfg, TrainConfig(epochs=1))["model_dir"]
    out = tmp_path / "results"
    out.mkdir()
    (out / "metrics.json").write_text('{"accuracy": 0.99, "owner": "another project"}')
    (out / "report.html").write_text("<p>their report</p>")

    with pytest.raises(OutputError, match=r"results is a non-empty folder that is not an earlier"):
        evaluate(model, dataset, out)

    assert json.loads((out / "metrics.json").read_text())["owner"] == "another project"
    assert (out / "report.html").read_text() == "<p>their report</p>"


def test_data_cdnow_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "log.csv"
    out.write_text("my own log\n")

    refused = churn("data", "cdnow", "--out", str(out))
    assert_one_line_error(refused, f"{out} already exists; pass --force to replace it")
    assert out.read_text() == "my own log\n"

    forced = churn("data", "cdnow", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_text().startswith("customer_id,timestamp,amount,quantity")
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


# Item 3: a crash during the folder swap never leaves the destination missing.

KILL_DURING_SWAP = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import churn.io.atomic as atomic

    def then_die(func):
        def wrapped(*args, **kwargs):
            done = func(*args, **kwargs)
            if done is not False:
                os.kill(os.getpid(), signal.SIGKILL)
            return done
        return wrapped

    # The first rename or exchange that succeeds is the last thing the process does.
    atomic.os.replace = then_die(os.replace)
    if sys.argv[2] == "fallback":
        atomic._exchange = lambda a, b: False
    elif hasattr(atomic, "_exchange"):
        atomic._exchange = then_die(atomic._exchange)
    with atomic.staging_dir(Path(sys.argv[1]), marker="meta.json") as tmp:
        (tmp / "meta.json").write_text("new")
    """
)


def kill_during_swap(dest: Path, mode: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SWAP, str(dest), mode],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_writer_killed_during_the_swap_leaves_the_destination_whole(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "meta.json").write_text("old")

    kill_during_swap(dest, "exchange")

    assert (dest / "meta.json").read_text() in ("old", "new")
    check_replaceable(dest, "meta.json")  # what the next writer does first
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_next_writer_restores_a_folder_a_killed_fallback_swap_left_aside(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "meta.json").write_text("old")

    kill_during_swap(dest, "fallback")
    assert not dest.exists()  # the window the fallback cannot close

    check_replaceable(dest, "meta.json")

    assert (dest / "meta.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_set_aside_by_a_live_writer_is_left_alone(
    tmp_path: Path, live_pid: Callable[[], int]
) -> None:
    aside = tmp_path / f".out.old-{tag_of(live_pid())}"
    aside.mkdir()
    (aside / "meta.json").write_text("old")

    check_replaceable(tmp_path / "out", "meta.json")

    assert not (tmp_path / "out").exists()
    assert (aside / "meta.json").read_text() == "old"


# Item 4: SIGTERM cleans up like Ctrl-C, and dead processes' leftovers go, live ones' stay.


def test_sigterm_during_synth_removes_its_staging_and_exits_143_with_one_line(
    tmp_path: Path,
) -> None:
    out = tmp_path / "synth"
    proc = start_churn("data", "synth", "--out", str(out), "--customers", "5000000", env={})
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".synth.tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "no staging folder appeared"
        time.sleep(0.05)

    proc.send_signal(signal.SIGTERM)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 143
    assert stderr.strip().splitlines()[-1] == (
        "error: interrupted by SIGTERM; unfinished outputs were removed"
    )
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_the_next_writer_removes_dead_writers_staging_and_keeps_live_ones(
    tmp_path: Path, dead_pid: int, live_pid: Callable[[], int]
) -> None:
    dead = tmp_path / f".out.tmp-{tag_of(dead_pid)}"
    live = tmp_path / f".out.tmp-{tag_of(live_pid())}"
    other_host = tmp_path / f".out.tmp-{tag_of(dead_pid, host='00000000')}"
    # Dead by its pid, yet locked: a writer in another pid namespace on this host.
    locked = tmp_path / f".out.tmp-{tag_of(dead_pid, suffix='fedcba98')}"
    for folder in (dead, live, other_host, locked):
        folder.mkdir()
        (folder / "part.npz").write_text("x")
    lock = leftovers.hold_lock(locked)
    try:
        with staging_dir(tmp_path / "out", marker="meta.json") as tmp:
            (tmp / "meta.json").write_text("{}")
    finally:
        os.close(lock)

    assert {p.name for p in tmp_path.iterdir()} == {"out", live.name, other_host.name, locked.name}


def test_a_publish_killed_mid_way_leaves_nothing_after_the_next_publish(
    tmp_path: Path, tiny_model: Callable[[Path, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    model = tiny_model(tmp_path / "model", 0)
    registry_root = tmp_path / "registry"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from churn.release.registry.local import LocalRegistry

        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)

        LocalRegistry._put_file = die
        LocalRegistry(sys.argv[1], "churn").publish(sys.argv[2], {"roc_auc": 0.8}, "a")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(registry_root), str(model)],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    versions = registry_root / "churn" / "versions"
    (staging,) = versions.iterdir()
    (publish_scratch,) = scratch.iterdir()
    assert staging.name.startswith(".staging-")
    assert publish_scratch.name.startswith("churn-publish-")

    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    LocalRegistry(registry_root, "churn").publish(model, {"roc_auc": 0.8}, "b")

    assert [p.name for p in versions.iterdir()] == ["b"]
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_churn_run_stops_every_step_and_leaves_no_temporary_folder(
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    home = tmp_path / "home"
    env = {
        "CHURN_HOME": str(home),
        "CHURN_REGISTRY__URI": str(tmp_path / "registry"),
        "TMPDIR": str(scratch),
        "CHURN_FEATURES__SEQ_LEN": "12",
        "CHURN_FEATURES__HORIZON_DAYS": "30",
        "CHURN_FEATURES__CUTOFF_STEP_DAYS": "15",
        "CHURN_FEATURES__N_TRAIN_CUTOFFS": "3",
        "CHURN_MODEL__HIDDEN": "8",
        "CHURN_MODEL__DILATIONS": "1,2",
        "CHURN_TRAIN__PATIENCE": "0",
    }
    args = ["--data", "synth:customers=800,days=240,seed=1", "--epochs", "1000"]
    proc = start_churn("run", *args, "--deploy-target", "none", env=env)
    deadline = time.monotonic() + 240
    while not list(home.glob("pipeline_root/*/train")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    time.sleep(2)  # inside the training step
    steps = descendants(proc.pid)
    assert steps, "the training step runs in a child process"

    proc.send_signal(signal.SIGTERM)
    stderr = proc.stderr.read()

    assert proc.wait(timeout=60) == 143
    assert stderr.strip().splitlines()[-1] == (
        "error: interrupted by SIGTERM; unfinished outputs were removed"
    )
    assert wait_gone(steps, timeout=5), "a step outlived the interrupted run"
    assert list(scratch.iterdir()) == []
    assert not [p for p in home.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


# Item 17 and the temporary folders of item 4: a failed local run.


@pytest.mark.slow
def test_a_failed_step_is_named_with_its_error_on_the_last_line_and_leaves_no_temporary_folder(
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    log = tmp_path / "refunds.csv"
    log.write_text(
        "customer_id,timestamp,amount\nc1,2022-01-01T10:00:00Z,10\nc2,2022-01-02T10:00:00Z,-5\n"
    )
    env = {
        "CHURN_HOME": str(tmp_path / "home"),
        "CHURN_REGISTRY__URI": str(tmp_path / "registry"),
        "TMPDIR": str(scratch),
    }

    result = churn("run", "--data", str(log), "--deploy-target", "none", env=env, timeout=300)

    last = assert_one_line_error(result, "step build-features failed: ")
    assert last == (
        f"error: step build-features failed: {log}: column 'amount' is negative (-5.0) at row 2; "
        "refunds are not part of the contract, net them out or drop them upstream"
    )
    assert list(scratch.iterdir()) == []


# Item 9: an output that cannot be written is refused before the work, by the user's path.


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--dataset", "{dataset}", "--epochs", "100000", "--out", "{out}"],
        ["evaluate", "--model", "{tmp}/no-model", "--dataset", "{dataset}", "--out", "{out}"],
        ["dataset", "build", "--repo", "{tmp}/no-repo", "--out", "{out}"],
        ["data", "synth", "--customers", "5000000", "--out", "{out}"],
        ["data", "cdnow", "--out", "{out}.csv"],
        ["features", "build", "-t", "{tmp}/tx.csv", "--repo", "{out}"],
        ["pipeline", "compile", "--out", "{out}.yaml"],
    ],
    ids=["train", "evaluate", "dataset-build", "data-synth", "data-cdnow", "features", "compile"],
)
def test_an_unwritable_out_is_refused_before_the_work_by_the_users_path(
    tmp_path: Path, planted_training_set: Path, command: list[str]
) -> None:
    small_log(tmp_path / "tx.csv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = locked / "result"
    args = [a.format(dataset=planted_training_set, out=out, tmp=tmp_path) for a in command]
    user_path = next(a for a in args if a.startswith(str(out)))

    result = churn(*args, prefix=unprivileged(), timeout=90)

    last = assert_one_line_error(result, f"cannot write {user_path}: the folder {locked}")
    assert "tmp-" not in last
    assert list(locked.iterdir()) == []


# Item 10: damaged inputs and a wrong output name give one line, exit 2.


def test_a_truncated_npz_is_named_in_a_one_line_error(
    tmp_path: Path, planted_training_set: Path
) -> None:
    train_npz = planted_training_set / "train.npz"
    train_npz.write_bytes(train_npz.read_bytes()[:1000])

    with pytest.raises(DatasetError, match=r"train\.npz is not a readable \.npz file"):
        load_training_set(planted_training_set)
    result = churn("train", "--dataset", str(planted_training_set), "--out", str(tmp_path / "m"))
    assert_one_line_error(result, f"{train_npz} is not a readable .npz file")


def test_pipeline_compile_refuses_an_out_that_is_not_yaml(tmp_path: Path) -> None:
    result = churn("pipeline", "compile", "--out", str(tmp_path / "notyaml"))
    assert_one_line_error(result, "the compiled pipeline is YAML, end it in .yaml")
    assert list(tmp_path.iterdir()) == []


def test_damaged_json_beside_the_data_is_a_one_line_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data" / "sources").mkdir(parents=True)
    (repo / "data" / "sources" / "spec.json").write_text('{"channels": [')
    with pytest.raises(FeatureStoreError, match=r"spec\.json is not valid JSON"):
        _ = FeatureRepo(repo).spec

    folder = tmp_path / "data"
    folder.mkdir()
    small_log(folder / "transactions.csv")
    (folder / "generator.json").write_text("{}")
    with pytest.raises(ContractError, match=r"generator\.json is damaged"):
        resolve_data(str(folder), tmp_path / "work", CFG)


def test_a_steps_unexpected_exception_keeps_its_class_and_the_last_traceback_counts() -> None:
    from pipelines.local import step_failure

    output = [
        "    Traceback (most recent call last):",
        '      File "x.py", line 1, in f',
        "    KeyError: 'first'",
        "",
        "    During handling of the above exception, another exception occurred:",
        "",
        "    Traceback (most recent call last):",
        '      File "y.py", line 2, in g',
        "        torch.load(path)",
        "        ^^^^^^^^^^^^^^^^",
        "    torch.serialization.UnpicklingError: invalid load key, 'x'.",
        "    ",
        "\x1b[91mERROR\x1b[0m - Task 'train' finished with status FAILURE",
    ]
    message = "Pipeline 'p' failed. Inner task failed: \x1b[96m'train'\x1b[0m."

    assert step_failure(message, output) == (
        "step train failed: UnpicklingError: invalid load key, 'x'."
    )
    assert step_failure(message, []) == (
        "the local pipeline run failed: Pipeline 'p' failed. Inner task failed: 'train'."
    )

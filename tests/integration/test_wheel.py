"""The wheel carries what the platform needs, and runs the pipeline outside the checkout.

An editable install finds files beside the package; a wheel has only what it packs. These
tests build the wheel, check its contents, install it into a fresh virtualenv (the pinned
dependencies come from this one's site-packages, so nothing is downloaded) and run a small
synthetic ``churn run`` end to end from a folder outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Files found at run time by path rather than by import: each one a wheel must carry.
RESOURCES = {
    "feature_repo/feature_store.yaml",
    "feature_repo/customer_features.py",
    "feature_repo/.feastignore",
    "feature_repo/production/feature_store.yaml",
    "churn/model/network.py",
    "churn/release/torchserve_handler.py",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=build,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    (found,) = out.glob("churn_platform-*.whl")
    return found


def test_the_wheel_holds_the_packages_and_their_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert names >= RESOURCES
    for package in ("churn/cli", "churn/release/registry", "pipelines", "components", "serving"):
        assert f"{package}/__init__.py" in names, package
    # Tests, benchmarks and run outputs stay out.
    assert not any(n.startswith(("tests/", "benchmarks/", "feature_repo/data/")) for n in names)


def test_a_wheel_install_outside_the_checkout_runs_the_pipeline(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    # The dependencies, not churn: this venv's editable churn lives in a .pth file that a
    # plain path entry does not process.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin/python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Only the wheel: a PYTHONPATH pointing at a checkout would shadow it.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import churn, feature_repo; print(churn.__file__)"],
        cwd=work,
        env=clean,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(site)), where
    # features.shared_store_config=production names the installed copy, as in a pod.
    production = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "from churn.features.shared import store_config; from churn.settings import "
            "FeatureConfig; p = store_config(FeatureConfig(shared_store_config='production'));"
            " print(p, p.is_file())",
        ],
        cwd=work,
        env=clean,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert production == [f"{site}/feature_repo/production/feature_store.yaml", "True"]

    env = {
        **clean,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "CHURN_HOME": str(work / "home"),
        "CHURN_REGISTRY__URI": str(work / "registry"),
        "CHURN_FEATURES__SEQ_LEN": "12",
        "CHURN_FEATURES__HORIZON_DAYS": "30",
        "CHURN_FEATURES__CUTOFF_STEP_DAYS": "15",
        "CHURN_FEATURES__N_TRAIN_CUTOFFS": "3",
        "CHURN_MODEL__HIDDEN": "8",
        "CHURN_MODEL__DILATIONS": "1,2",
        "CHURN_TRAIN__BATCH_SIZE": "256",
    }
    run = subprocess.run(
        [
            str(venv / "bin/churn"),
            "run",
            "--data",
            "synth:customers=800,days=240,seed=1",
            "--epochs",
            "1",
            "--auc-threshold",
            "0",
            "--deploy-target",
            "local",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "gate: PROMOTED" in run.stdout
    assert "local TorchServe smoke test: customer" in run.stdout
    assert list((work / "registry" / "churn" / "versions").iterdir())

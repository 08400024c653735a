"""Component bodies called directly, with plain objects standing in for KFP artifacts.

The kfp.local runs in ``tests/integration/test_pipeline_local.py`` show the steps wired
together; these show each body's own contract quickly: what it writes, what it returns, and
that a bad struct parameter is refused naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from churn.errors import ServingError
from churn.release.registry import open_registry
from churn.settings import RegistryConfig
from components import release, training


def artifact(path: Path, uri: str | None = None) -> SimpleNamespace:
    """What a component sees of an artifact: ``path``, ``uri`` and ``metadata``."""
    return SimpleNamespace(path=str(path), uri=uri or str(path), metadata={})


def registry_struct(tmp_path: Path) -> dict:
    # As KFP hands it over: a JSON mapping.
    return {"uri": str(tmp_path / "registry"), "model_name": "churn"}


def tiny_training_set(tmp_path: Path, seq_len: int = 4) -> Path:
    """A training set with the inputs of ``tiny_model`` (one channel of ``seq_len`` bins)."""
    import numpy as np

    from churn.dataset.training_set import FORMAT_VERSION, Split, TrainingSet, save_training_set

    rng = np.random.default_rng(0)
    splits = {
        name: Split(
            seq=rng.poisson(2.0, size=(40, 1, seq_len)).astype(np.float32),
            num=np.zeros((40, 0), dtype=np.float32),
            cat=np.zeros((40, 0), dtype=np.int64),
            y=(np.arange(40) % 2).astype(np.float32),
            customer_id=np.array([f"c{i}" for i in range(40)]),
            cutoff=np.zeros(40, dtype=np.int64),
        )
        for name in ("train", "val", "test")
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "channels": ["n_txn"],
        "seq_len": seq_len,
        "bin_days": 7,
        "horizon_days": 90,
        "numeric_features": [],
        "categorical_features": {},
        "seq_transform": "log1p",
        "num_transform": "signed_log1p",
        "norm": {"seq_mean": [0.0], "seq_std": [1.0], "num_mean": [], "num_std": []},
        "splits": {
            name: {"cutoffs": ["1970-01-01"], "rows": 40, "positives": 20, "negatives": 20}
            for name in splits
        },
    }
    return save_training_set(TrainingSet(meta, splits), tmp_path / f"training_set_{seq_len}")


def evaluation_folder(tmp_path: Path, auc: float) -> Path:
    folder = tmp_path / "evaluation"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"roc_auc": auc, "baselines": {}}))
    return folder


@pytest.mark.parametrize(("auc", "expected"), [(0.8, 1.0), (0.6, 0.0)])
def test_gate_returns_a_float_and_writes_its_decision(
    tmp_path: Path, auc: float, expected: float
) -> None:
    decision = artifact(tmp_path / "decision")
    answer = release.gate(
        candidate_auc=auc,
        auc_threshold=0.7,
        registry=registry_struct(tmp_path),
        evaluation=artifact(evaluation_folder(tmp_path, auc), uri="s3://root/run/evaluation"),
        training_set=artifact(tmp_path / "unused"),
        allow_input_change="",
        decision=decision,
    )
    assert answer == expected and isinstance(answer, float)
    record = json.loads(Path(decision.path).read_text())
    assert record["promote"] is (expected == 1.0)
    assert record["champion_version"] is None
    # The decision names the evaluation by URI, which later steps of any pod can read.
    assert record["evaluation"] == "s3://root/run/evaluation"
    assert decision.metadata["promote"] is record["promote"]


def test_gate_refuses_a_candidate_its_metrics_show_significantly_below_a_baseline(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "evaluation"
    folder.mkdir()
    metrics = {
        "roc_auc": 0.755,
        "baselines": {"logistic_regression": {"roc_auc": 0.864}},
        "auc_vs_baselines": {
            "logistic_regression": {"difference": -0.109, "se": 0.011, "ci95": [-0.13, -0.088]}
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    decision = artifact(tmp_path / "decision")
    answer = release.gate(
        candidate_auc=0.755,
        auc_threshold=0.7,
        registry=registry_struct(tmp_path),
        evaluation=artifact(folder),
        training_set=artifact(tmp_path / "unused"),
        allow_input_change="",
        decision=decision,
    )
    assert answer == 0.0
    record = json.loads(Path(decision.path).read_text())
    assert "significantly below the best baseline, logistic_regression" in record["reason"]


def test_a_bad_registry_struct_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"registry\.model_name"):
        release.gate(
            candidate_auc=0.8,
            auc_threshold=0.7,
            registry={"uri": str(tmp_path), "model_name": "../etc"},
            evaluation=artifact(tmp_path),
            training_set=artifact(tmp_path),
            allow_input_change="",
            decision=artifact(tmp_path / "decision"),
        )


def test_register_publishes_promotes_and_records_the_version(
    tmp_path: Path, tiny_model: Callable[[Path, int], Path]
) -> None:
    model = tiny_model(tmp_path / "model", 0)
    decision = tmp_path / "decision"
    decision.write_text(json.dumps({"promote": True, "champion_version": None}))
    registration = artifact(tmp_path / "registration")
    version = release.register(
        model=artifact(model),
        evaluation=artifact(evaluation_folder(tmp_path, 0.8)),
        decision=artifact(decision),
        training_set=artifact(tiny_training_set(tmp_path)),
        registry=registry_struct(tmp_path),
        serving={"protocol_version": "v2"},
        registration=registration,
    )
    champion = open_registry(RegistryConfig(**registry_struct(tmp_path))).champion()
    assert champion is not None and champion.version == version
    record = json.loads(Path(registration.path).read_text())
    assert record == {
        "model_name": "churn",
        "version": version,
        "storage_uri": champion.storage_uri,
        "roc_auc": 0.8,
    }
    properties = Path(champion.storage_uri, "config", "config.properties").read_text()
    # The serving struct reached the archive: KServe's v2 envelope.
    assert "service_envelope=kservev2\n" in properties
    # The drift monitor's reference travels with the version, under its checksums.
    marker = json.loads(Path(champion.storage_uri, "_COMPLETE").read_text())
    assert "reference.parquet" in marker["files"]
    import pyarrow.parquet as pq

    reference = pq.read_table(Path(champion.storage_uri, "reference.parquet"))
    assert reference.num_rows == 40
    assert reference.column_names == ["seq_n_txn_sum_2", "seq_recency_bins", "churn_probability"]


def test_register_moves_the_pointer_over_a_new_input_spec_only_as_the_gate_allowed(
    tmp_path: Path, tiny_model: Callable[[Path, int], Path]
) -> None:
    from churn.errors import RegistryError

    store = open_registry(RegistryConfig(**registry_struct(tmp_path)))
    store.publish(tiny_model(tmp_path / "champion", 0), {"roc_auc": 0.8}, version="v1")
    store.promote("v1")
    evaluation = artifact(evaluation_folder(tmp_path, 0.9))

    def register(seed: int, decision: dict) -> str:
        # Longer sequences: every client's request changes.
        model = tiny_model(tmp_path / f"model-{seed}", seed)
        meta = json.loads((model / "model.json").read_text())
        meta["input_spec"]["seq_len"] = 8
        (model / "model.json").write_text(json.dumps(meta))
        path = tmp_path / "decision.json"
        path.write_text(json.dumps({"promote": True, "champion_version": "v1", **decision}))
        return release.register(
            model=artifact(model),
            evaluation=evaluation,
            decision=artifact(path),
            training_set=artifact(tiny_training_set(tmp_path, seq_len=8)),
            registry=registry_struct(tmp_path),
            serving={},
            registration=artifact(tmp_path / "registration"),
        )

    with pytest.raises(RegistryError, match=r"seq_len 4 -> 8"):
        register(1, {})
    assert store.champion().version == "v1"
    version = register(2, {"allow_input_change": "longer sequences"})
    assert store.champion().version == version
    assert json.loads(store._read_pointer())["input_change"] == "longer sequences"


def test_deploy_to_none_records_what_it_did(tmp_path: Path) -> None:
    deployment = artifact(tmp_path / "deployment")
    release.deploy(
        deploy_target="none",
        version="v1",
        training_set=artifact(tmp_path),
        feature_repo=artifact(tmp_path / "no-repo"),
        registry=registry_struct(tmp_path),
        serving={},
        deployment=deployment,
    )
    assert json.loads(Path(deployment.path).read_text()) == {"target": "none", "version": "v1"}
    assert deployment.metadata == {"target": "none", "version": "v1"}


def test_deploy_remote_needs_no_run_artifact_and_leaves_local_to_deploy(tmp_path: Path) -> None:
    deployment = artifact(tmp_path / "deployment")
    release.deploy_remote(
        deploy_target="none",
        version="v1",
        registry=registry_struct(tmp_path),
        serving={},
        deployment=deployment,
    )
    assert json.loads(Path(deployment.path).read_text()) == {"target": "none", "version": "v1"}
    with pytest.raises(ServingError, match="deploy_target local runs the deploy step"):
        release.deploy_remote(
            deploy_target="local",
            version="v1",
            registry=registry_struct(tmp_path),
            serving={},
            deployment=artifact(tmp_path / "other"),
        )


def test_record_rejection_keeps_the_reason_and_the_report(tmp_path: Path) -> None:
    decision = tmp_path / "decision"
    decision.write_text(json.dumps({"promote": False, "reason": "below the threshold"}))
    rejection = artifact(tmp_path / "rejection")
    release.record_rejection(
        decision=artifact(decision),
        evaluation=artifact(tmp_path, uri="s3://root/evaluation/"),
        rejection=rejection,
    )
    record = json.loads(Path(rejection.path).read_text())
    assert record["report"] == "s3://root/evaluation/report.html"
    assert rejection.metadata == {"reason": "below the threshold"}


@pytest.mark.usefixtures("one_torch_thread")
def test_train_takes_struct_doubles_and_records_the_training_set_uri(
    tmp_path: Path, make_training_set: Callable[..., Path]
) -> None:
    data = make_training_set(tmp_path, n=600)
    model = artifact(tmp_path / "model")
    training.train(
        training_set=artifact(data, uri="s3://root/run/training_set"),
        epochs=1,
        threshold_metric="f1",
        # Struct parameters arrive as protobuf doubles.
        model_settings={"hidden": 8.0, "dilations": [1.0, 2.0], "head_hidden": 8.0},
        train_settings={"batch_size": 256.0, "device": "cpu"},
        train_nodes=1,
        gpus_per_node=0,
        pipeline_settings={},
        model=model,
    )
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["architecture"]["hidden"] == 8
    assert meta["training"]["dataset"] == "s3://root/run/training_set"
    assert model.metadata["epochs_run"] == 1


def test_train_refuses_a_fractional_integer_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.hidden"):
        training.train(
            training_set=artifact(tmp_path),
            epochs=1,
            threshold_metric="f1",
            model_settings={"hidden": 8.5},
            train_settings={},
            train_nodes=1,
            gpus_per_node=0,
            pipeline_settings={},
            model=artifact(tmp_path / "model"),
        )

"""The CNN, its model folder format and request encoding (churn.model.network)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

from churn.features.sequences import CONTEXT_FEATURES
from churn.model import network
from churn.model.network import (
    ARCHITECTURE_FIELDS,
    ChurnCNN,
    InstanceError,
    ModelFormatError,
    build_model,
    encode_instances,
    load_model,
    predict_proba,
    save_model,
)

ARCH = {
    "windows": [1, 4],
    "stem_stride": 2,
    "hidden": 8,
    "kernel_size": 3,
    "dilations": [1, 2],
    "dropout": 0.1,
    "embedding_dim": 2,
    "head_hidden": 8,
}


def make_spec(n_numeric: int = 2, categorical: dict | None = None, seq_len: int = 6) -> dict:
    categorical = {"segment": ["<unk>", "a", "b"]} if categorical is None else categorical
    return {
        "format_version": 1,
        "channels": ["n_txn", "spend"],
        "seq_len": seq_len,
        "numeric_features": [f"f{i}" for i in range(n_numeric)],
        "categorical_features": categorical,
        "norm": {
            "seq_mean": [0.5, 2.0],
            "seq_std": [1.0, 1.5],
            "num_mean": [1.0] * n_numeric,
            "num_std": [2.0] * n_numeric,
        },
    }


def make_inputs(spec: dict, n: int = 5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    c, length = len(spec["channels"]), spec["seq_len"]
    seq = torch.poisson(torch.full((n, c, length), 2.0), generator=g)
    num = torch.randn(n, len(spec["numeric_features"]), generator=g) * 10
    cards = [len(v) for v in spec["categorical_features"].values()]
    if not cards:
        return seq, num, torch.zeros(n, 0, dtype=torch.int64)
    cat = torch.stack([torch.randint(0, k, (n,), generator=g) for k in cards], dim=1)
    return seq, num, cat


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_model_imports_only_torch_and_stdlib() -> None:
    import churn.model.network

    tree = ast.parse(Path(churn.model.network.__file__).read_text())
    roots: dict[str, set[str]] = {}  # imported package -> the functions importing it ("" = top)
    for scope in [tree, *(n for n in tree.body if isinstance(n, ast.FunctionDef))]:
        where = getattr(scope, "name", "")
        for node in ast.walk(scope) if where else scope.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                roots.setdefault(name.split(".")[0], set()).add(where)
    third_party = {r: w for r, w in roots.items() if r not in sys.stdlib_module_names}
    third_party.pop("__future__", None)
    # Serving loads, encodes and predicts with torch alone; only saving (training) uses churn.
    assert third_party == {"torch": {""}, "churn": {"save_model"}}


@pytest.mark.parametrize(
    ("n_numeric", "categorical"),
    [(2, None), (0, {}), (0, None), (3, {}), (1, {"a": ["<unk>", "x"], "b": ["<unk>"]})],
)
def test_forward_gives_one_logit_per_row(n_numeric: int, categorical: dict | None) -> None:
    spec = make_spec(n_numeric, categorical)
    model = build_model(spec, ARCH).eval()
    seq, num, cat = make_inputs(spec)
    logits = model(seq, num, cat)
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()


def test_negative_sequence_values_count_as_zero() -> None:
    spec = make_spec()
    model = build_model(spec, ARCH).eval()
    seq, num, cat = make_inputs(spec)
    seq[:, :, :2] = -3.0
    clipped = seq.clamp(min=0)
    torch.testing.assert_close(model(seq, num, cat), model(clipped, num, cat), rtol=0, atol=0)


def test_last_step_reaches_the_output() -> None:
    # Recency matters: changing only the last bin must change the prediction.
    spec = make_spec()
    model = build_model(spec, ARCH).eval()
    seq, num, cat = make_inputs(spec)
    changed = seq.clone()
    changed[:, :, -1] += 5.0
    assert not torch.allclose(model(seq, num, cat), model(changed, num, cat))


def test_build_model_checks_its_arguments() -> None:
    spec = make_spec()
    with pytest.raises(ModelFormatError, match="hidden"):
        build_model(spec, {k: v for k, v in ARCH.items() if k != "hidden"})
    with pytest.raises(ModelFormatError, match="unknown fields"):
        build_model(spec, {**ARCH, "depth": 3})
    with pytest.raises(ModelFormatError, match="dilations"):
        build_model(spec, {**ARCH, "dilations": []})
    with pytest.raises(ModelFormatError, match="norm"):
        build_model({k: v for k, v in spec.items() if k != "norm"}, ARCH)
    bad_norm = {**spec, "norm": {**spec["norm"], "seq_std": [1.0]}}
    with pytest.raises(ModelFormatError, match="seq_std"):
        build_model(bad_norm, ARCH)
    # "wide" is optional: folders written before it existed lack it and build the plain CNN.
    assert set(ARCH) | {"wide"} == set(ARCHITECTURE_FIELDS)


def test_save_load_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    spec = make_spec()
    torch.manual_seed(1)
    model = build_model(spec, ARCH).eval()
    seq, num, cat = make_inputs(spec, n=20)
    expected = predict_proba(model, seq, num, cat)
    out = save_model(model, spec, ARCH, 0.37, tmp_path / "m", extra={"history": {"epochs": []}})

    loaded, meta = load_model(out)
    assert isinstance(loaded, ChurnCNN)
    assert not loaded.training
    torch.testing.assert_close(predict_proba(loaded, seq, num, cat), expected, rtol=0, atol=0)
    assert meta["format_version"] == 2
    assert meta["threshold"] == 0.37
    assert meta["architecture"] == ARCH
    assert meta["input_spec"]["channels"] == spec["channels"]
    assert meta["history"] == {"epochs": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt"]


def test_save_model_replaces_an_existing_folder(tmp_path: Path) -> None:
    spec = make_spec()
    model = build_model(spec, ARCH)
    save_model(model, spec, ARCH, 0.1, tmp_path / "m")
    save_model(model, spec, ARCH, 0.9, tmp_path / "m")
    assert load_model(tmp_path / "m")[1]["threshold"] == 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_model_failure_leaves_no_folder(tmp_path: Path) -> None:
    spec = make_spec()
    model = build_model(spec, ARCH)
    with pytest.raises(TypeError):
        save_model(model, spec, ARCH, 0.5, tmp_path / "m", extra={"bad": object()})
    with pytest.raises(ValueError, match="reserved"):
        save_model(model, spec, ARCH, 0.5, tmp_path / "m", extra={"threshold": 1})
    assert list(tmp_path.iterdir()) == []


def test_predict_proba_batches_agree() -> None:
    spec = make_spec()
    model = build_model(spec, ARCH).eval()
    seq, num, cat = make_inputs(spec, n=11)
    whole = predict_proba(model, seq, num, cat)
    assert whole.shape == (11,)
    assert ((whole > 0) & (whole < 1)).all()
    torch.testing.assert_close(predict_proba(model, seq, num, cat, batch_size=3), whole)
    # Without calibration the probability is the logit's sigmoid, in float64.
    torch.testing.assert_close(whole, torch.sigmoid(model(seq, num, cat).detach().double()))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    spec = make_spec()
    return save_model(build_model(spec, ARCH), spec, ARCH, 0.5, tmp_path / "m")


def test_load_model_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="does not exist"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize("name", ["model.json", "model.pt"])
def test_load_model_missing_file(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ModelFormatError, match=name):
        load_model(saved)


def test_load_model_malformed_json(saved: Path) -> None:
    (saved / "model.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"model\.json is not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format_version": 7}, "format_version 7"),
        ({"threshold": None, "drop": "threshold"}, "lacks the field 'threshold'"),
        ({"architecture": {**ARCH, "hidden": 16}}, r"model\.pt does not fit"),
        ({"architecture": {**ARCH, "hidden": "x"}}, r"model\.json"),
    ],
)
def test_load_model_inconsistent_meta(saved: Path, change: dict, match: str) -> None:
    meta = json.loads((saved / "model.json").read_text())
    drop = change.pop("drop", None)
    meta.update(change)
    if drop:
        del meta[drop]
    (saved / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=match):
        load_model(saved)


def test_load_model_corrupt_weights(saved: Path) -> None:
    (saved / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match=r"model\.pt"):
        load_model(saved)


def instance(spec: dict, value: float = 1.0) -> dict:
    return {
        "sequence": {c: [value] * spec["seq_len"] for c in spec["channels"]},
        "numeric": {f: 2.0 for f in spec["numeric_features"]},
        "categorical": {"segment": "b"},
    }


def test_encode_instances_builds_model_inputs() -> None:
    spec = make_spec()
    second = instance(spec, 3.0)
    second["categorical"] = {"segment": "never-seen"}
    third = instance(spec)
    del third["categorical"]
    seq, num, cat = encode_instances([instance(spec), second, third], spec)
    assert seq.shape == (3, 2, 6) and seq.dtype == torch.float32
    assert num.shape == (3, 2) and num.dtype == torch.float32
    assert cat.dtype == torch.int64
    assert cat[:, 0].tolist() == [2, 0, 0]
    assert seq[1].unique().tolist() == [3.0]
    logits = build_model(spec, ARCH).eval()(seq, num, cat)
    assert logits.shape == (3,)


def test_encode_instances_without_features() -> None:
    spec = make_spec(n_numeric=0, categorical={})
    inst = {"sequence": {c: [0.0] * 6 for c in spec["channels"]}}
    seq, num, cat = encode_instances([inst], spec)
    assert (seq.shape, num.shape, cat.shape) == ((1, 2, 6), (1, 0), (1, 0))
    empty = encode_instances([], spec)
    assert [t.shape[0] for t in empty] == [0, 0, 0]


def test_encode_instances_refuses_negative_activity_and_context_but_not_attributes() -> None:
    spec = {**make_spec(), "numeric_features": ["recency_days", "balance"]}
    good = instance(spec)
    good["numeric"]["balance"] = -40.0  # a customer attribute may be negative
    assert encode_instances([good], spec)[1].tolist() == [[2.0, -40.0]]
    bad_seq = instance(spec)
    bad_seq["sequence"]["spend"][2] = -0.5
    with pytest.raises(
        InstanceError, match=r"instance 1: channel 'spend' holds -0\.5 at position 2"
    ):
        encode_instances([good, bad_seq], spec)
    bad_recency = instance(spec)
    bad_recency["numeric"]["recency_days"] = -7
    with pytest.raises(InstanceError, match=r"instance 0: numeric feature 'recency_days' holds -7"):
        encode_instances([bad_recency], spec)


def test_the_non_negative_features_are_the_context_features() -> None:
    # network.py ships alone in the archive and keeps its own copy of the names.
    assert set(CONTEXT_FEATURES) == network.NON_NEGATIVE_FEATURES


def test_encode_instances_missing_numeric_names_feature_and_index() -> None:
    spec = make_spec()
    bad = instance(spec)
    del bad["numeric"]["f1"]
    with pytest.raises(InstanceError, match=r"instance 1: .*'f1'"):
        encode_instances([instance(spec), bad], spec)


def test_encode_instances_wrong_length_names_channel_index_and_length() -> None:
    spec = make_spec()
    bad = instance(spec)
    bad["sequence"]["spend"] = [1.0] * 5
    with pytest.raises(InstanceError, match=r"instance 2: channel 'spend' .* 6 numbers, got 5"):
        encode_instances([instance(spec), instance(spec), bad], spec)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["sequence"].pop("n_txn"), "lacks the channel 'n_txn'"),
        (lambda d: d.pop("sequence"), "'sequence' must be an object"),
        (lambda d: d["sequence"]["n_txn"].__setitem__(0, "x"), "channel 'n_txn' holds 'x'"),
        (lambda d: d["numeric"].__setitem__("f0", float("nan")), "'f0' holds nan"),
        (lambda d: d["numeric"].__setitem__("f0", True), "'f0' holds True"),
        (
            lambda d: d["numeric"].__setitem__("f0", 1e39),
            r"'f0' holds 1e\+39, not a finite float32",
        ),
        (lambda d: d["sequence"]["n_txn"].__setitem__(1, 10**400), r"'n_txn' holds 1000.*\.\.\."),
    ],
)
def test_encode_instances_rejects_bad_values(mutate, match: str) -> None:
    spec = make_spec()
    bad = instance(spec)
    mutate(bad)
    with pytest.raises(InstanceError, match=match):
        encode_instances([bad], spec)


def test_encode_instances_rejects_non_list() -> None:
    with pytest.raises(InstanceError, match="must be a list"):
        encode_instances({"sequence": {}}, make_spec())
    with pytest.raises(InstanceError, match="instance 0 must be an object"):
        encode_instances(["x"], make_spec())


def test_a_wide_model_round_trips_and_adds_a_linear_term_to_the_logit(tmp_path: Path) -> None:
    spec = make_spec(categorical={"segment": ["<unk>", "a", "b"]})
    wide_arch = {**ARCH, "wide": True}
    torch.manual_seed(1)
    model = build_model(spec, wide_arch).eval()
    seq, num, cat = make_inputs(spec, n=20)
    assert model.wide is not None
    with torch.no_grad():
        model.wide.bias.fill_(2.0)
        shifted = model(seq, num, cat)
        model.wide.bias.zero_()
        torch.testing.assert_close(shifted - model(seq, num, cat), torch.full((20,), 2.0))

    out = save_model(model, spec, wide_arch, 0.5, tmp_path / "m")
    loaded, meta = load_model(out)
    assert meta["architecture"]["wide"] is True
    expected = predict_proba(model, seq, num, cat)
    torch.testing.assert_close(predict_proba(loaded, seq, num, cat), expected, rtol=0, atol=0)


def test_a_folder_written_before_the_wide_term_loads_as_the_plain_cnn(tmp_path: Path) -> None:
    spec = make_spec()
    torch.manual_seed(2)
    old = build_model(spec, ARCH).eval()
    assert old.wide is None
    out = save_model(old, spec, ARCH, 0.5, tmp_path / "m")
    assert "wide" not in json.loads((out / "model.json").read_text())["architecture"]
    seq, num, cat = make_inputs(spec, n=10)
    loaded, _ = load_model(out)
    assert loaded.wide is None
    torch.testing.assert_close(
        predict_proba(loaded, seq, num, cat), predict_proba(old, seq, num, cat), rtol=0, atol=0
    )

"""The KServe predictor's model, in-process: a registry version in, the handler's answers out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from kserve.errors import InvalidInput

from churn.model.network import encode_instances, load_model, predict_proba
from serving import predictor
from serving.predictor import ChurnPredictor

GOOD = {"sequence": {"n_txn": [1.0, 0.0, 2.0, 3.0]}}


@pytest.fixture
def version_dir(tmp_path: Path, tiny_model: Callable[[Path, int], Path]) -> Path:
    """A registry version's folder as KServe's storage initializer copies it."""
    tiny_model(tmp_path / "v" / "model", 0)
    (tmp_path / "v" / "_COMPLETE").write_text(json.dumps({"version": "20260101T000000Z-abc"}))
    return tmp_path / "v"


def answer(model: ChurnPredictor, body: bytes) -> dict:
    result, _ = asyncio.run(model(body, {}))
    return result


def test_the_version_comes_from_the_registry_marker(version_dir: Path) -> None:
    model = ChurnPredictor("churn", version_dir)
    assert model.load() is True and model.ready
    (prediction,) = answer(model, json.dumps({"instances": [GOOD]}).encode())["predictions"]
    assert prediction["model_version"] == "20260101T000000Z-abc"
    net, meta = load_model(version_dir / "model")
    expected = predict_proba(net, *encode_instances([GOOD], meta["input_spec"])).item()
    assert prediction["churn_probability"] == pytest.approx(expected, abs=1e-6)
    assert prediction["churned"] == (expected >= meta["threshold"])


def test_an_explicit_version_wins_over_the_marker(version_dir: Path) -> None:
    model = ChurnPredictor("churn", version_dir, version="v7")
    model.load()
    (prediction,) = answer(model, json.dumps({"instances": [GOOD]}).encode())["predictions"]
    assert prediction["model_version"] == "v7"


def test_v2_requests_get_a_v2_response_named_after_the_model(version_dir: Path) -> None:
    model = ChurnPredictor("churn-b", version_dir)
    model.load()
    body = {"id": "x", "inputs": [{"name": "c1", "datatype": "BYTES", "data": [json.dumps(GOOD)]}]}
    response = answer(model, json.dumps(body).encode())
    assert (response["model_name"], response["id"]) == ("churn-b", "x")
    assert [o["name"] for o in response["outputs"]] == ["c1"]


def test_a_request_the_handler_refuses_is_invalid_input(version_dir: Path) -> None:
    model = ChurnPredictor("churn", version_dir)
    model.load()
    short = {"sequence": {"n_txn": [1.0]}}
    with pytest.raises(InvalidInput, match="channel 'n_txn' must be a list of 4 numbers, got 1"):
        answer(model, json.dumps({"instances": [short]}).encode())
    with pytest.raises(InvalidInput, match="the request body is not JSON"):
        answer(model, b"{")
    # Decoded bodies (KServe's own routes decode JSON first) go the same way.
    with pytest.raises(InvalidInput, match="'instances' must be a non-empty list"):
        answer(model, {"instances": []})  # type: ignore[arg-type]


@pytest.mark.parametrize(("argv", "threads"), [([], 1), (["--torch_threads=2"], 2)])
def test_the_predictor_scores_on_one_torch_thread_unless_told(
    version_dir: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], threads: int
) -> None:
    seen: dict[str, object] = {}

    def fake_serve(model: ChurnPredictor, host: str, port: int) -> None:
        seen.update(threads=torch.get_num_threads(), ready=model.ready, where=(host, port))

    monkeypatch.setattr(predictor, "serve", fake_serve)
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        predictor.main([f"--model_dir={version_dir}", *argv])
    finally:
        torch.set_num_threads(previous)
    assert seen == {"threads": threads, "ready": True, "where": ("127.0.0.1", 8080)}

"""Hostile calibration fields in model.json: each is refused on load naming the file and the
field, and save_model never writes one, so no model serves probabilities on another scale than
its threshold, or reversed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn.model.network import ModelFormatError, load_model, save_model


def _with_calibration(folder: Path, calibration: object) -> Path:
    meta = json.loads((folder / "model.json").read_text())
    meta["calibration"] = calibration
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(
    ("calibration", "match"),
    [
        ("platt", "calibration must be an object"),
        ({"method": "isotonic", "slope": 1, "intercept": 0}, "calibration.method must be"),
        ({"method": "platt", "intercept": 0}, r"calibration\.slope must be a number"),
        ({"method": "platt", "slope": "1", "intercept": 0}, r"calibration\.slope must be a"),
        ({"method": "platt", "slope": True, "intercept": 0}, r"calibration\.slope must be a"),
        ({"method": "platt", "slope": 0, "intercept": 0}, r"slope must be > 0"),
        ({"method": "platt", "slope": -1.5, "intercept": 0}, r"slope must be > 0"),
        ({"method": "platt", "slope": 1, "intercept": None}, r"calibration\.intercept must"),
        ({"method": "platt", "slope": 1e400, "intercept": 0}, r"calibration\.slope must be fin"),
    ],
    ids=["string", "method", "no-slope", "text", "bool", "zero", "negative", "null", "inf"],
)
def test_a_malformed_calibration_is_refused_naming_the_file(
    tiny_model, tmp_path: Path, calibration: object, match: str
) -> None:
    folder = _with_calibration(tiny_model(tmp_path / "m", 0), calibration)
    with pytest.raises(ModelFormatError, match=match) as caught:
        load_model(folder)
    assert str(folder / "model.json") in str(caught.value)


def test_save_model_refuses_a_calibration_it_could_not_read_back(
    tiny_model, tmp_path: Path
) -> None:
    model, meta = load_model(tiny_model(tmp_path / "source", 0))
    spec, arch, out = meta["input_spec"], meta["architecture"], tmp_path / "out" / "m"
    bad = {"method": "platt", "slope": -1.0, "intercept": 0.0}
    with pytest.raises(ModelFormatError, match="slope must be > 0"):
        save_model(model, spec, arch, 0.5, out, calibration=bad)
    with pytest.raises(ValueError, match="reserved"):
        save_model(model, spec, arch, 0.5, out, extra={"calibration": bad})
    assert not (tmp_path / "out").exists()

"""The sidecar model.json: read and checked without TensorFlow; each mistake is one clear ModelError."""

from __future__ import annotations

import json

import pytest

from sensmap.errors import ModelError
from sensmap.sidecar import read_sidecar, sidecar_path


def write(tmp_path, text: str):
    model = tmp_path / "net.onnx"
    model.write_bytes(b"")
    sidecar_path(model).write_text(text, encoding="utf-8")
    return model


def test_no_sidecar_is_none(tmp_path):
    assert read_sidecar(tmp_path / "net.onnx") is None
    assert sidecar_path(tmp_path / "net.onnx") == tmp_path / "net.json"


def test_a_full_sidecar(tmp_path):
    (tmp_path / "names.txt").write_text("a\nb\n", encoding="utf-8")
    fields = {"preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3}, "output": "Multi_Label", "labels": "names.txt",
              "input_size": [96, 128]}  # fmt: skip
    sidecar = read_sidecar(write(tmp_path, json.dumps(fields)))
    assert sidecar.preprocess == {"mean": [0.5] * 3, "std": [0.25] * 3} and sidecar.output == "multi-label"
    assert sidecar.labels == str((tmp_path / "names.txt").resolve()) and sidecar.input_size == (96, 128)
    listed = read_sidecar(write(tmp_path, json.dumps({"preprocess": "torchvision", "output": "classes",
                                                      "labels": ["cat", "dog"]})))  # fmt: skip
    assert listed.labels == ("cat", "dog") and listed.input_size is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "cannot read the sidecar net.json"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"output": "classes"}', "lacks the field 'preprocess'"),
        ('{"preprocess": "none"}', "lacks the field 'output' (required: what the output vector is, one of classes"),
        ('{"preprocess": "none", "output": "boxes"}', "unknown output kind 'boxes'"),
        ('{"preprocess": "none", "output": "classes", "label": ["a"]}', "unknown fields ['label']"),
        ('{"preprocess": 3, "output": "classes"}', "'preprocess' is required: a preprocessing name"),
        ('{"preprocess": "none", "output": "classes", "labels": [1, 2]}', "'labels' is optional: output names"),
        ('{"preprocess": "none", "output": "classes", "input_size": [224]}', "'input_size' is optional"),
        ('{"preprocess": "none", "output": "classes", "input_size": [0, 5]}', "got [0, 5]"),
    ],
)
def test_each_mistake_is_one_model_error_naming_the_file_and_field(tmp_path, text, message):
    with pytest.raises(ModelError, match=None) as caught:
        read_sidecar(write(tmp_path, text))
    assert message in str(caught.value) and "net.json" in str(caught.value)

"""The dashboard with ONNX models in the operator's folder (AppTest): listed, mapped, compared with a Keras network
on one colour scale; a network without classes maps under its own score with the class views explained; a broken
model is one error and the session keeps its photos and maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import build_random_cnn
from onnx_builders import keras_to_onnx, whole_image_model, write_sidecar
from test_ui import add_sample, button, errors, go, open_app

from sensmap import ui

SHAPES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """An operator folder: a Keras classifier, the same network as ONNX (NCHW input, with a sidecar), an ONNX
    embedding (sidecar only) and a corrupt ONNX file."""
    folder = tmp_path_factory.mktemp("models")
    model = build_random_cnn(48, 64, classes=3, seed=4)
    model.save(folder / "shapes.keras")
    (folder / "shapes.txt").write_text("\n".join(SHAPES) + "\n", encoding="utf-8")
    keras_to_onnx(model, folder / "shapes_torch.onnx", nchw=True)
    write_sidecar(folder / "shapes_torch.onnx", preprocess="none", output="classes", labels=SHAPES)
    weights = np.random.default_rng(0).normal(0, 0.01, (6, 3, 40, 56)).astype(np.float32)
    whole_image_model(folder / "embedder.onnx", weights, np.ones(6, np.float32), layout="NHWC")
    write_sidecar(folder / "embedder.onnx", preprocess="torchvision", output="embedding")
    (folder / "broken.onnx").write_bytes(b"\x08\x07" + b"not a protobuf at all" * 20)
    return folder


@pytest.fixture(autouse=True)
def operator_folder(monkeypatch, models_dir, shared_weights_dir):
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.setenv("SENSMAP_MODELS_DIR", str(models_dir))


def pick(at, role: str, label: str):
    go(at, "pages/networks.py")
    at.selectbox(key=f"w.network.{role}").select(label).run()
    assert not at.exception
    return at


@pytest.mark.slow
def test_an_onnx_model_is_listed_mapped_and_compared_with_the_keras_network_on_one_scale():
    at = pick(open_app(), "A", "shapes_torch (own model, ONNX)")
    listed = {o.split(" · ")[0] for s in at.selectbox if s.key == "w.network.A" for o in s.options}
    assert {"shapes (own model)", "embedder (own model, ONNX)", "broken (own model, ONNX)"} <= listed
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any("shapes_torch (own model, ONNX): loaded, input 64×48 px" in c and "3 classes" in c
               and "input NCHW" in c for c in captions), captions  # fmt: skip
    pick(at, "B", "shapes (own model)")
    add_sample(at)
    go(at, "pages/map.py")
    assert set(at.dataframe[0].value["class"]) <= set(SHAPES)
    at.multiselect(key="w.sizes").set_value(["1/2", "1/4"]).run()
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    go(at, "pages/compare.py")
    button(at, "Run comparison").click().run()
    assert not at.exception and not errors(at), errors(at)
    onnx_result, keras_result = (at.session_state[ui.K_RESULTS][k] for k in at.session_state[ui.K_RESULTS])
    assert onnx_result.metadata["model_source"].endswith("shapes_torch.onnx")
    assert keras_result.metadata["model_source"].endswith("shapes.keras")
    assert np.abs(onnx_result.outputs - keras_result.outputs).max() <= 1e-4, "the same network, the same map"
    (chart,) = at.get("plotly_chart")
    heatmaps = [t for t in json.loads(chart.proto.spec)["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 3 and len({(t["zmin"], t["zmax"]) for t in heatmaps}) == 1, "one colour scale"
    assert heatmaps[0]["zmax"] == pytest.approx(100 * max(np.abs(r.support).max() for r in (onnx_result, keras_result)))


def test_a_network_without_classes_maps_its_similarity_and_explains_the_class_views():
    at = add_sample(pick(open_app(), "A", "embedder (own model, ONNX)"))
    go(at, "pages/map.py")
    assert not at.dataframe and not [s for s in at.selectbox if s.key.startswith("w.target.")]
    assert any("outputs 6 values per image (a feature vector" in i.value.replace("\\", "") for i in at.info)
    assert at.radio(key="w.score.embedding").options == ["similarity (whole output vector)"]
    at.multiselect(key="w.sizes").set_value(["1/2"]).run()
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    (result,) = at.session_state[ui.K_RESULTS].values()
    assert result.score_kind == "similarity" and result.metadata["faithfulness"]["score_kind"] == "similarity"
    assert any("similarity" in c.value for c in at.caption if c.value.startswith("Colours"))
    at.session_state["w.view"] = "Label flip"
    at.run()
    assert not at.exception and any("no class that could win" in i.value.replace("\\", "") for i in at.info)


def test_a_broken_onnx_model_is_one_error_and_the_session_keeps_its_photos_and_maps():
    at = add_sample(pick(open_app(), "A", "shapes_torch (own model, ONNX)"))
    go(at, "pages/map.py")
    at.multiselect(key="w.sizes").set_value(["1/2"]).run()
    button(at, "Run map").click().run()
    assert not errors(at), errors(at)
    photos, maps = list(at.session_state[ui.K_PHOTOS]), dict(at.session_state[ui.K_RESULTS])
    pick(at, "A", "broken (own model, ONNX)")
    assert len(errors(at)) == 1 and "cannot load broken.onnx: it is not a valid ONNX model" in errors(at)[0].replace(
        "\\", ""
    )
    go(at, "pages/map.py")
    assert not at.exception and not at.get("plotly_chart")
    pick(at, "A", "shapes_torch (own model, ONNX)")
    go(at, "pages/map.py")
    assert not errors(at) and list(at.session_state[ui.K_PHOTOS]) == photos
    assert dict(at.session_state[ui.K_RESULTS]) == maps and len(at.get("plotly_chart")) == 2

"""ONNX networks through ONNX Runtime: small graphs built with the onnx helper API (every output recomputed in
numpy), the score kinds on them (multi-label sigmoid, embedding similarity, a regression through a custom
function), layouts and batches read from the graph, sidecars, clear errors for what cannot work, the CLI and
the audit; and (slow) MobileNetV2 through Keras and through ONNX, equal maps."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from conftest import shared_photo
from onnx import TensorProto
from onnx_builders import (
    channel_mean_model,
    graph_with,
    keras_to_onnx,
    whole_image_model,
    whole_image_outputs,
    write_sidecar,
)
from PIL import Image

import sensmap
from sensmap.errors import ModelError, ParameterError
from sensmap.fills import fill_canvas
from sensmap.images import fit_image
from sensmap.onnx_graph import graph_facts
from sensmap.scores import cosine_similarity

H, W = 37, 53  # odd and not square
REGIONS = {"sky": (0, 0, 12, 18), "sea": (25, 35, 37, 53), "boat": (12, 20, 25, 34)}  # (y0, x0, y1, x1)
SIZES = (0.5, 0.25, 0.125)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def occluded_images(result: sensmap.SensitivityResult, photo) -> np.ndarray:
    """The covered images the engine ran: ``(windows, H, W, 3)`` raw pixels, in window order."""
    pixels = fit_image(sensmap.load_image(photo), result.input_size, result.fit)
    canvas = fill_canvas(pixels, result.fill)
    images = np.repeat(pixels[None], len(result.boxes), axis=0)
    for image, (y0, x0, y1, x1) in zip(images, result.boxes, strict=True):
        image[y0:y1, x0:x1] = canvas[y0:y1, x0:x1]
    return images


# --------------------------------------------------------------------------- small graphs


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    """Three labels, each the (scaled) mean brightness of its own planted region, as logits."""
    weights = np.zeros((3, 3, H, W), np.float32)
    for index, (y0, x0, y1, x1) in enumerate(REGIONS.values()):
        weights[index, :, y0:y1, x0:x1] = 1 / (3 * (y1 - y0) * (x1 - x0) * 50)
    bias = np.full(3, -2.5, np.float32)
    photo = np.full((H, W, 3), 20, np.uint8)
    for y0, x0, y1, x1 in REGIONS.values():
        photo[y0:y1, x0:x1] = 230
    folder = tmp_path_factory.mktemp("multi")
    logits = whole_image_model(folder / "logits.onnx", weights, bias)
    ending = whole_image_model(folder / "ending.onnx", weights, bias, layout="NHWC", final="Sigmoid")
    return logits, ending, weights, bias, photo


def test_multi_label_maps_find_each_labels_own_region(multi_label):
    logits_path, ending_path, weights, bias, photo = multi_label
    network = sensmap.load_model(logits_path, output="multi-label", labels=list(REGIONS))
    assert network.sigmoid_applied and network.signature.layout == "NCHW" and network.input_size == (H, W)
    result = sensmap.sensitivity_map(network, photo, sizes=SIZES)
    assert result.score_kind == "sigmoid" and not result.approximate
    expected = sigmoid(whole_image_outputs(occluded_images(result, photo), weights, bias))
    np.testing.assert_allclose(result.outputs, expected, atol=2e-6)
    reference = sigmoid(whole_image_outputs(photo[None], weights, bias))[0]
    np.testing.assert_allclose(result.reference_probabilities, reference, atol=2e-6)
    for index, (y0, x0, y1, x1) in enumerate(REGIONS.values()):
        per_size, support = result.maps_for(index)
        peak = np.unravel_index(np.argmax(per_size[-1]), per_size[-1].shape)
        assert y0 <= peak[0] < y1 and x0 <= peak[1] < x1, (list(REGIONS)[index], peak)
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        positive = np.clip(per_size[-1], 0, None)
        assert positive[inside].sum() / positive.sum() > 0.7
    with pytest.raises(ParameterError, match="no single label wins"):
        result.label_flip()

    ending = sensmap.load_model(ending_path, output="multi-label", labels=list(REGIONS))
    assert not ending.sigmoid_applied and ending.signature.layout == "NHWC" and ending.signature.final_op == "Sigmoid"
    again = sensmap.sensitivity_map(ending, photo, sizes=SIZES)
    np.testing.assert_allclose(again.outputs, result.outputs, atol=2e-6)
    raw = sensmap.sensitivity_map(network, photo, sizes=SIZES, score="logit", target="boat")
    assert raw.target == 2 and raw.metadata["sigmoid_applied"] is False
    np.testing.assert_allclose(raw.outputs, whole_image_outputs(occluded_images(raw, photo), weights, bias), atol=2e-5)
    with pytest.raises(ParameterError, match="does not fit a network whose outputs are independent labels"):
        sensmap.sensitivity_map(network, photo, score="probability")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    """An 8-value embedding of the left half of the image (the right half has no weight)."""
    rng = np.random.default_rng(3)
    weights = rng.normal(0, 0.01, (8, 3, H, W)).astype(np.float32)
    weights[..., W // 2 :] = 0
    bias = rng.normal(0, 0.5, 8).astype(np.float32)
    photo = rng.uniform(0, 255, (H, W, 3)).astype(np.uint8)
    folder = tmp_path_factory.mktemp("embedding")
    path = whole_image_model(folder / "embedder.onnx", weights, bias)
    write_sidecar(path, preprocess="unit", output="embedding")
    return path, weights, bias, photo


def test_embedding_maps_are_one_minus_the_cosine_similarity_to_the_unoccluded_output(embedding):
    path, weights, bias, photo = embedding
    network = sensmap.load_model(path)  # the sidecar: preprocessing unit, an embedding
    assert (network.output_kind, network.preprocess_name, network.labels[0]) == ("embedding", "unit", "output 0")
    result = sensmap.sensitivity_map(network, photo, sizes=SIZES, target=5)  # the target is not used
    assert result.score_kind == "similarity" and result.score == pytest.approx(1.0)
    reference = whole_image_outputs(photo[None], weights, bias, preprocess=lambda x: x / 255)[0]
    occluded = whole_image_outputs(occluded_images(result, photo), weights, bias, preprocess=lambda x: x / 255)
    np.testing.assert_allclose(result.window_support(), 1 - cosine_similarity(occluded, reference), atol=1e-5)
    right_half = result.boxes[:, 1] >= W // 2
    assert right_half.any() and np.abs(result.window_support()[right_half]).max() < 1e-6
    assert result.window_support()[~right_half].max() > 0.01
    with pytest.raises(ParameterError, match="not to a class"):
        result.maps_for(1)
    with pytest.raises(ParameterError, match="outputs embedding, not classes"):
        sensmap.classify(network, photo)
    with pytest.raises(ParameterError, match="use 'similarity'"):
        sensmap.sensitivity_map(network, photo, score="logit")
    numbers = sensmap.faithfulness(network, photo, result, steps=4, random_orders=1)
    assert numbers["score_kind"] == "similarity" and numbers["deletion_curve"][0] == pytest.approx(1.0, abs=1e-6)
    story = sensmap.tell_story(result)
    assert "cosine similarity" in story and "covering it lowers the score to" in story


def test_fixed_batches_still_work_and_say_so(embedding, tmp_path):
    path, weights, bias, photo = embedding
    dynamic = sensmap.sensitivity_map(sensmap.load_model(path), photo, sizes=(0.5, 0.25))
    one = whole_image_model(tmp_path / "one.onnx", weights, bias, batch=1)
    with pytest.warns(UserWarning, match="fixed batch of 1: covers run one at a time"):
        network = sensmap.load_model(one, preprocess="unit", output="embedding")
    assert network.signature.batch == 1
    result = sensmap.sensitivity_map(network, photo, sizes=(0.5, 0.25))
    np.testing.assert_allclose(result.outputs, dynamic.outputs, atol=1e-6)
    assert any("fixed batch of 1" in note for note in result.metadata["network_notes"])
    four = whole_image_model(tmp_path / "four.onnx", weights, bias, batch=4, layout="NHWC")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        network = sensmap.load_model(four, preprocess="unit", output="embedding")
    result = sensmap.sensitivity_map(network, photo, sizes=(0.5, 0.25), batch_size=7)  # chunks of 4, padded
    assert result.passes % 4 != 0
    np.testing.assert_allclose(result.outputs, dynamic.outputs, atol=1e-6)


def top_brightness(outputs: np.ndarray) -> np.ndarray:
    """The regression's only output: mean brightness (0..1) of the image's top half."""
    return outputs[:, 0]


def test_a_regression_through_a_custom_score(tmp_path):
    weights = np.zeros((1, 3, H, W), np.float32)
    weights[0, :, : H // 2] = 1 / (3 * (H // 2) * W * 255)
    path = whole_image_model(tmp_path / "brightness.onnx", weights, np.zeros(1, np.float32))
    network = sensmap.load_model(path, output="values")
    photo = np.random.default_rng(4).uniform(60, 255, (H, W, 3)).astype(np.uint8)
    result = sensmap.sensitivity_map(network, photo, sizes=SIZES, score=top_brightness)
    assert result.score_kind == "custom:top_brightness"
    expected = whole_image_outputs(occluded_images(result, photo), weights, np.zeros(1))[:, 0]
    reference = whole_image_outputs(photo[None], weights, np.zeros(1))[0, 0]
    assert result.score == pytest.approx(reference, abs=1e-5)
    np.testing.assert_allclose(result.window_support(), reference - expected, atol=1e-5)
    assert np.abs(result.window_support()[result.boxes[:, 0] >= H // 2]).max() < 1e-7  # bottom half: no effect
    raw = sensmap.sensitivity_map(network, photo, sizes=SIZES)  # a values network's default: the raw output
    assert raw.score_kind == "logit"
    np.testing.assert_allclose(raw.support, result.support, atol=1e-6)

    loaded = sensmap.SensitivityResult.load(result.to_npz_bytes())
    assert loaded.score_kind == "custom:top_brightness" and np.array_equal(loaded.support, result.support)
    with pytest.raises(ParameterError, match="pass that score's function as score="):
        sensmap.faithfulness(network, photo, loaded, steps=4, random_orders=1)
    numbers = sensmap.faithfulness(network, photo, loaded, steps=4, random_orders=1, score=top_brightness)
    assert numbers["deletion_curve"][0] == pytest.approx(reference, abs=1e-5)
    fast = sensmap.sensitivity_map(network, photo, sizes=SIZES, score=top_brightness, mode="fast")
    assert fast.approximate and fast.passes < result.passes and fast.custom_scores.shape == (1 + fast.window_total,)
    assert fast.metadata["approximate"] and np.abs(fast.support - result.support).max() < 0.05


def test_layouts_incremental_and_fast_modes(multi_label):
    logits_path, ending_path, _, _, photo = multi_label
    nchw = sensmap.load_model(logits_path, output="multi-label")
    nhwc = sensmap.load_model(ending_path, output="multi-label")
    exact = sensmap.sensitivity_map(nchw, photo, sizes=SIZES)
    dense = sensmap.sensitivity_map(nhwc, photo, sizes=SIZES, mode="incremental")
    np.testing.assert_allclose(dense.outputs, exact.outputs, atol=2e-6)
    groups = dense.metadata["incremental_groups"]
    assert len(groups) == 3 and all(g["ran"] == "dense" and "ONNX Runtime" in g["why"] for g in groups)
    fast = sensmap.sensitivity_map(nhwc, photo, sizes=SIZES, mode="fast")
    assert fast.approximate and fast.passes == sensmap.plan_passes(nhwc, SIZES, mode="fast") < exact.passes


def test_input_size_and_preprocessing_from_the_graph_or_the_sidecar(tmp_path):
    path = channel_mean_model(tmp_path / "means.onnx", layout="NHWC")  # dynamic batch and size
    network = sensmap.load_model(path, output="values", preprocess="torchvision")
    assert network.input_size == (224, 224) and any("input size is dynamic" in n for n in network.notes)
    network = sensmap.load_model(path, output="values", preprocess="torchvision", input_size=(8, 6))
    values = network.predict(np.full((8, 6, 3), 200.0))[0]
    expected = (200 / 255 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    write_sidecar(path, preprocess={"mean": [0.5, 0.25, 0.0], "std": [0.5]}, output="values", input_size=[31, 20])
    network = sensmap.load_model(path)
    assert network.input_size == (31, 20) and network.preprocess_name.startswith("mean 0.5, 0.25, 0")
    np.testing.assert_allclose(network.predict(np.full((31, 20, 3), 51.0))[0], [-0.6, -0.1, 0.4], atol=1e-6)
    assert sensmap.load_model(path, input_size=(9, 11)).input_size == (9, 11)  # the call wins over the sidecar
    fixed = channel_mean_model(tmp_path / "fixed.onnx", 8, 10)
    with pytest.raises(ModelError, match="fixed at 8×10 .H×W., not 9×11"):
        sensmap.load_model(fixed, output="values", input_size=(9, 11))
    with pytest.raises(ModelError, match="'std' must be 3 numbers"):
        sensmap.load_model(fixed, output="values", preprocess={"mean": [0.5] * 3, "std": [0.0] * 3})


def test_graph_facts_match_the_onnx_package(multi_label, embedding):
    import onnx
    from onnx import numpy_helper

    for path in (multi_label[0], multi_label[1], embedding[0]):
        model = onnx.load(str(path))
        parameters = sum(numpy_helper.to_array(t).size for t in model.graph.initializer)
        output = model.graph.output[0].name
        producer = next(n for n in model.graph.node if output in n.output)
        assert graph_facts(path.read_bytes(), output) == (parameters, producer.op_type)
    assert sensmap.load_model(multi_label[0], output="multi-label").parameter_count == 3 * 3 * H * W + 3


# --------------------------------------------------------------------------- what cannot work


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, multi_label):
    folder = tmp_path_factory.mktemp("bad")
    f = TensorProto.FLOAT
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07" + b"this is not a protobuf" * 30)
    pool = [("GlobalAveragePool", ["x"], ["p"], {}), ("Flatten", ["p"], ["out"], {"axis": 1})]
    two_inputs = graph_with(
        folder / "two_inputs.onnx", [("a", f, ["n", 3, 8, 8]), ("b", f, ["n", 3, 8, 8])], [("out", f, ["n", 3])],
        [("Add", ["a", "b"], ["x"], {}), *pool],
    )  # fmt: skip
    rank3 = graph_with(folder / "rank3.onnx", [("x", f, ["n", 3, 8])], [("out", f, ["n", 3])], pool)
    ints = graph_with(folder / "ints.onnx", [("i", TensorProto.INT64, ["n", 3, 8, 8])], [("out", f, ["n", 3])],
                      [("Cast", ["i"], ["x"], {"to": f}), *pool])  # fmt: skip
    four = graph_with(folder / "four_channels.onnx", [("x", f, ["n", 4, 8, 8])], [("out", f, ["n", 4])], pool)
    two_outputs = graph_with(
        folder / "two_outputs.onnx", [("x", f, ["n", 3, 8, 8])], [("out", f, ["n", 3]), ("p", f, ["n", 3, 1, 1])], pool
    )  # fmt: skip
    grid = graph_with(folder / "grid.onnx", [("x", f, ["n", 3, 8, 8])], [("p", f, ["n", 3, 1, 1])], pool[:1])
    no_output, wrong_labels = folder / "no_output.onnx", folder / "labels.onnx"
    for path in (no_output, wrong_labels):
        path.write_bytes(multi_label[0].read_bytes())
    write_sidecar(no_output, preprocess="none")
    write_sidecar(wrong_labels, preprocess="none", output="multi-label", labels=["sky", "sea"])
    return {
        "corrupt": (corrupt, "cannot load corrupt.onnx: it is not a valid ONNX model"),
        "two inputs": (two_inputs, "two_inputs.onnx has 2 inputs (a ['n', 3, 8, 8], b ['n', 3, 8, 8]); sensmap needs"),
        "wrong rank": (rank3, "has shape ['n', 3, 8] (rank 3); sensmap needs a batch of RGB images of rank 4"),
        "not an image": (ints, "the input 'i' is tensor(int64), not an image"),
        "no colour axis": (four, "no axis of 3 colour channels"),
        "two outputs": (two_outputs, "has 2 outputs (out ['n', 3], p ['n', 3, 1, 1]); sensmap needs one output"),
        "not a vector": (grid, "of shape ['n', 3, 1, 1]; sensmap needs one float vector per image, (batch, k)"),
        "missing sidecar field": (no_output, "the sidecar no_output.json lacks the field 'output'"),
        "labels that do not match": (wrong_labels, "the labels list has 2 names but the network has 3 outputs"),
    }


@pytest.mark.parametrize(
    "case",
    ["corrupt", "two inputs", "wrong rank", "not an image", "no colour axis", "two outputs", "not a vector",
     "missing sidecar field", "labels that do not match"],
)  # fmt: skip
def test_what_cannot_work_is_one_clear_model_error(bad_models, case, capsys):
    path, message = bad_models[case]
    with pytest.raises(ModelError) as caught:
        sensmap.load_model(path)
    assert message in str(caught.value), str(caught.value)
    from sensmap.cli import main

    assert main(["classify", str(shared_photo("owl.jpg")), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_onnx_files_take_no_keras_constructor_options(multi_label):
    with pytest.raises(ModelError, match="ONNX models take no constructor options .alpha."):
        sensmap.load_model(multi_label[0], alpha=0.5)


# --------------------------------------------------------------------------- CLI and audit


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """Three classes (softmax) of a 40×48 grid: the mean brightness of three horizontal bands, plus a sidecar."""
    weights = np.zeros((3, 3, 40, 48), np.float32)
    for index in range(3):
        weights[index, :, index * 13 : (index + 1) * 13] = 1 / (3 * 13 * 48 * 40)
    folder = tmp_path_factory.mktemp("classifier")
    path = whole_image_model(folder / "bands.onnx", weights, np.zeros(3), final="Softmax")
    write_sidecar(path, preprocess="none", output="classes", labels=["top", "middle", "bottom"])
    return path


def test_cli_classify_and_map_an_onnx_model(classifier, tmp_path, capsys):
    from sensmap.cli import main

    photo = tmp_path / "bands.png"
    pixels = np.zeros((40, 48, 3), np.uint8)
    pixels[13:26] = 255
    Image.fromarray(pixels).save(photo)
    assert main(["classify", str(photo), "--model", str(classifier), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "middle"
    out = tmp_path / "map.npz"
    assert main(["map", str(photo), "-m", str(classifier), "--sizes", "0.5", "0.25", "--score", "logit",
                 "--out-npz", str(out), "-q"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "bands: map of 'middle' (logit" in text and "(class 1)" in text
    result = sensmap.SensitivityResult.load(out)
    assert result.score_kind == "logit" and result.metadata["model_source"] == str(classifier)


def test_audit_resolves_onnx_models_without_tensorflow(classifier, embedding, tmp_path):
    from sensmap import audit

    spec = audit.resolve_model(classifier)
    assert (spec.network, spec.input_size, spec.source) == ("bands", (40, 48), str(classifier))
    dynamic = channel_mean_model(tmp_path / "means.onnx")
    write_sidecar(dynamic, preprocess="none", output="values", input_size=[30, 20])
    assert audit.resolve_model(dynamic).input_size == (30, 20)
    before = audit.resolve_model(dynamic).fingerprint
    write_sidecar(dynamic, preprocess="unit", output="values", input_size=[30, 20])
    assert audit.resolve_model(dynamic).fingerprint != before, "the sidecar is part of the network"
    with pytest.raises(ParameterError, match="the audit takes a named score"):
        audit.AuditSettings.make(score="custom:top_brightness")


@pytest.mark.slow
def test_an_audit_with_an_onnx_model_equals_single_maps(classifier, tmp_path):
    import ray
    from test_audit import write_csv, write_scenes

    from sensmap import audit

    manifest = write_csv(tmp_path / "manifest.csv", write_scenes(tmp_path / "scenes", 3))
    spec = audit.resolve_model(classifier)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        stats = audit.run_audit(manifest, [spec], tmp_path / "out", workers=1, sizes=(0.5, 0.25), score="logit")
    finally:
        ray.shutdown()
    assert (stats.maps, stats.errors) == (3, 0)
    index = audit.open_audit(tmp_path / "out")
    network = spec.load()
    for row in audit.filter_index(index, status="ok").itertuples():
        mapped = audit.load_image_result(index, row.image_id, spec.name)
        alone = sensmap.sensitivity_map(network, sensmap.load_image(row.path), sizes=(0.5, 0.25), score="logit")
        assert mapped.score_kind == "logit"
        np.testing.assert_allclose(mapped.outputs, alone.outputs, atol=1e-6)


# --------------------------------------------------------------------------- slow: MobileNetV2, Keras and ONNX


@pytest.fixture(scope="module")
def mobilenet_v2_onnx(mobilenet_v2, tmp_path_factory):
    """The shared MobileNetV2 converted by tf2onnx: an NHWC graph and one with an NCHW input."""
    folder = tmp_path_factory.mktemp("mobilenet_v2")
    return {
        layout: sensmap.load_model(
            keras_to_onnx(mobilenet_v2.model, folder / f"mobilenet_v2_{layout}.onnx", nchw=layout == "NCHW"),
            preprocess="mobilenet_v2",
        )
        for layout in ("NHWC", "NCHW")
    }


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_mobilenet_v2_maps_through_onnx_equal_the_keras_maps(mobilenet_v2, mobilenet_v2_onnx, layout):
    network = mobilenet_v2_onnx[layout]
    assert network.signature.layout == layout and network.signature.batch is None
    assert (network.input_size, network.labels, network.softmax_applied) == ((224, 224), mobilenet_v2.labels, False)
    photo = sensmap.load_image(shared_photo("wolf_snow.webp"))
    for mode in ("exact", "fast"):
        keras_map = sensmap.sensitivity_map(mobilenet_v2, photo, mode=mode)
        onnx_map = sensmap.sensitivity_map(network, photo, mode=mode)
        assert onnx_map.target == keras_map.target and onnx_map.passes == keras_map.passes
        assert onnx_map.metadata["model_source"].endswith(f"mobilenet_v2_{layout}.onnx")
        assert np.abs(onnx_map.outputs - keras_map.outputs).max() <= 1e-4, mode
        assert np.abs(onnx_map.support - keras_map.support).max() <= 1e-4, mode
        if mode == "fast":
            assert onnx_map.approximate and np.array_equal(onnx_map.measured, keras_map.measured)


def test_per_pixel_methods_on_onnx_networks(classifier):
    from sensmap.methods import explain

    network = sensmap.load_model(classifier)
    photo = np.zeros((40, 48, 3), np.uint8)
    photo[13:26] = 255
    rise = explain(network, photo, method="rise", masks=40, grid=4, seed=1)
    assert rise.method == "rise" and rise.target == 1 and rise.support.shape == (40, 48)
    assert rise.support[13:26].mean() > rise.support[:13].mean(), "covering the bright middle band lowers 'middle'"
    with pytest.raises(ModelError, match="Grad-CAM needs a Keras model's layers and gradients"):
        explain(network, photo, method="gradcam")
    with pytest.raises(ParameterError, match="RISE explains the class probability or its log-odds"):
        explain(network, photo, method="rise", masks=8, score="logit")

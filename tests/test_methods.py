"""Grad-CAM, RISE and the randomisation check (sensmap.methods, sensmap.masks).

Grad-CAM against a hand-computed Grad-CAM; exact mask geometry and aggregation; planted shortcuts found by every
method; RISE seeded, cancellable and bounded by one batch; the randomisation check on a copy; the real MobileNetV2
on pets.jpg (slow).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    WEIGHTS,
    build_mean_brightness_model,
    build_random_cnn,
    shared_photo,
    train_small_cnn,
    watermark_scenes,
)

import sensmap
from sensmap import masks as rise_core
from sensmap.errors import BudgetError, CancelledError, ModelError, ParameterError
from sensmap.images import map_to_photo
from sensmap.methods import explain, map_passes
from sensmap.methods.graph import find_feature_site
from sensmap.methods.sanity import SanityCheck, cascade_counts
from sensmap.result import validate_method

SIZES = [(21, 34), (7, 5), (15, 9)]  # non-square, tiny, odd


def tiny_cnn(height: int, width: int, head: str = "softmax", seed: int = 0) -> keras.Model:
    """Conv → max-pool → conv ("features") → global average pooling → dense ("head"), three classes.

    ``head``: ``softmax`` (Dense with softmax), ``activation`` (Dense, then an Activation("softmax") layer) or
    ``logits`` (Dense without activation: sensmap applies the softmax).
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", padding="same", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax" if head == "softmax" else None, name="head")(x)
    if head == "activation":
        outputs = keras.layers.Activation("softmax")(outputs)
    return keras.Model(inputs, outputs, name=f"tiny_{head}")


def photo_for(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random photo with whole-number pixel values (as loaded photos have: 8 bits per channel)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.float32)


def hand_gradcam(model: keras.Model, pixels: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM of a GAP → dense-softmax head, gradients written out by hand (numpy).

    y = log p_c, p = softmax(W·mean_ij A + b): ∂y/∂A_ijk = Σ_j (δ_cj − p_j) W_kj / (h·w), the same at every
    (i, j), so α_k is that value; cam = ReLU(Σ_k α_k A_k), stretched to the network grid, divided by its max.
    """
    features = keras.Model(model.inputs, model.get_layer("features").output)(pixels[None]).numpy()[0].astype(float)
    kernel, bias = (w.astype(float) for w in model.get_layer("head").get_weights())
    logits = features.mean(axis=(0, 1)) @ kernel + bias
    p = np.exp(logits - logits.max())
    p /= p.sum()
    alpha = kernel @ (np.eye(len(p))[target] - p) / (features.shape[0] * features.shape[1])
    cam = np.maximum(features @ alpha, 0.0)
    upsampled = np.clip(map_to_photo(cam, pixels.shape[:2]).astype(float), 0, None)
    return upsampled / upsampled.max()


# --------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_gradcam_matches_hand_computed_gradcam(height, width):
    model = tiny_cnn(height, width)
    network = sensmap.load_model(model)
    pixels = photo_for(height, width)
    for target in range(3):
        result = sensmap.gradcam(network, pixels, target=target)
        expected = hand_gradcam(model, pixels, target)
        assert np.abs(result.support - expected).max() <= 1e-5
    assert result.method == "gradcam" and result.support.shape == (height, width)
    assert result.method_parameters["layer"] == "features"
    assert result.method_parameters["feature_grid"] == [height // 2, width // 2]
    assert result.support.max() == pytest.approx(1.0) and result.support.min() >= 0


def test_gradcam_is_the_same_for_every_softmax_head():
    """Dense+softmax, Dense then Activation("softmax"), and logits (softmax applied by sensmap): one map."""
    pixels = photo_for(21, 34, seed=3)
    maps = []
    for head in ("softmax", "activation", "logits"):
        model = tiny_cnn(21, 34, head=head)  # same seed: same weights
        network = sensmap.load_model(model)
        assert network.softmax_applied == (head == "logits")
        maps.append(sensmap.gradcam(network, pixels, target=1).support)
    assert np.abs(maps[0] - maps[1]).max() <= 1e-5 and np.abs(maps[0] - maps[2]).max() <= 1e-5
    assert np.abs(maps[0] - hand_gradcam(tiny_cnn(21, 34), pixels, 1)).max() <= 1e-5


def test_gradcam_walks_into_nested_models():
    """A base whose output is already pooled, inside a Sequential: the feature map is found inside the base."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((15, 9, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", padding="same")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Conv2D(7, 3, strides=2, activation="relu", padding="same", name="inner_features")(x)
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="base")
    model = keras.Sequential([keras.Input((15, 9, 3)), base, keras.layers.Dense(4, activation="softmax")])
    network = sensmap.load_model(model)
    site = find_feature_site(network)
    assert site.layer == "inner_features" and len(site.path) == 2
    pixels = photo_for(15, 9, seed=5)
    # reference: tf.GradientTape on the known inner layer through Keras' own model calls
    inner = keras.Model(base.inputs, [base.get_layer("inner_features").output, base.output])
    head = model.layers[-1]
    with_evidence = 0
    for target in range(4):
        result = sensmap.gradcam(network, pixels, target=target)
        with tf.GradientTape() as tape:
            features, pooled = inner(tf.constant(pixels[None]))
            score = tf.nn.log_softmax(tf.matmul(pooled, head.kernel) + head.bias)[0, target]
        alpha = tf.reduce_mean(tape.gradient(score, features)[0], axis=(0, 1)).numpy()
        cam = np.maximum(features.numpy()[0] @ alpha, 0)
        expected = np.clip(map_to_photo(cam, (15, 9)).astype(float), 0, None)
        if expected.max() == 0:  # no feature raises this class: an all-zero map, not NaN
            assert np.all(result.support == 0) and "no feature" in sensmap.tell_story(result)
            continue
        with_evidence += 1
        assert np.abs(result.support - expected / expected.max()).max() <= 1e-5
    assert with_evidence >= 2


def test_gradcam_refuses_networks_without_a_spatial_feature_map():
    network = sensmap.load_model(build_mean_brightness_model(12, 7), labels=["bright", "dark"])
    with pytest.raises(ModelError, match="no spatial feature map.*occlusion or RISE"):
        sensmap.gradcam(network, photo_for(12, 7))
    inputs = keras.Input((12, 7, 3))  # only a rescaled photo before the pooling: not a learnt feature map
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    rescaled = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ModelError, match="no spatial feature map"):
        sensmap.gradcam(sensmap.load_model(rescaled), photo_for(12, 7))
    # occlusion and RISE only need the outputs
    assert sensmap.rise(network, photo_for(12, 7), masks=8, grid=3).support.shape == (12, 7)


def test_gradcam_result_states_its_relative_unit_everywhere(tmp_path):
    from sensmap import render

    network = sensmap.load_model(build_random_cnn(21, 34))
    photo = photo_for(43, 60, seed=1)  # photo larger than, and not shaped like, the network grid
    result = sensmap.gradcam(network, photo, fill="blur")
    assert result.display_unit == (1.0, "relative") and not result.approximate and not result.windowed
    assert "Grad-CAM (relative, max-normalised)" in result.unit_description and result.passes == 1
    assert result.support_photo.shape == (43, 60)
    heat = [t for t in render.overlay_figure(photo, result).data if t.type == "heatmap"][0]
    assert heat.colorbar.title.text == "support (relative)"
    assert "relative" in heat.hovertemplate and " pp" not in heat.hovertemplate
    story = sensmap.tell_story(result)
    assert "Grad-CAM" in story and "pp" not in story and "%" in story  # the class probability, not the map
    with pytest.raises(ParameterError, match="occlusion map"):
        result.maps_for((result.target + 1) % 5)
    with pytest.raises(ParameterError, match="occlusion map"):
        result.label_flip()
    path = tmp_path / "gradcam.npz"
    result.save(path)
    again = sensmap.SensitivityResult.load(path)
    assert again.method == "gradcam" and again.method_parameters == result.method_parameters
    np.testing.assert_array_equal(again.support, result.support)
    assert again.fill == "blur" and again.display_unit == (1.0, "relative")


def test_occlusion_results_without_a_method_still_load():
    """``.npz`` files written before methods existed have no method entry: they are occlusion maps."""
    network = sensmap.load_model(build_random_cnn(21, 34))
    result = sensmap.sensitivity_map(network, photo_for(21, 34), sizes=(0.5,))
    with np.load(io.BytesIO(result.to_npz_bytes())) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["metadata"]))
    del meta["method"], meta["method_parameters"]
    arrays["metadata"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    old = sensmap.SensitivityResult.load(buffer.getvalue())
    assert old.method == "occlusion" and old.windowed and old.display_unit == (100.0, "pp")
    np.testing.assert_array_equal(old.support, result.support)


# --------------------------------------------------------------------------- RISE: masks (numpy)


class _Uniforms:
    """A stand-in generator whose ``random`` returns given uniforms (hand cases)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values, dtype=float)

    def random(self, shape: tuple[int, int]) -> np.ndarray:
        assert shape == self.values.shape
        return self.values


def test_mask_geometry_hand_case():
    # grid 2 on a 4×4 grid: cells of 2 px, stretched to 3 cells (6 px); column profile [1, 1, 2/3, 1/3, 0, 0];
    # shifted by one pixel (u = 0.6 → floor(0.6·2) = 1): [1, 2/3, 1/3, 0] in every row
    uniforms = [[0.1, 0.9, 0.2, 0.7, 0.0, 0.6]]  # cells [[keep, cover], [keep, cover]], row shift 0, column shift 1
    mask = rise_core.rise_masks(_Uniforms(uniforms), 1, (4, 4), 2, 0.5)
    np.testing.assert_allclose(mask[0], np.tile([1, 2 / 3, 1 / 3, 0], (4, 1)), atol=1e-6)
    assert rise_core.mask_cell((21, 34), 7) == (3, 5) and rise_core.mask_cell((224, 224), 7) == (32, 32)
    ones = rise_core.rise_masks(_Uniforms([[0.2, 0.99, 0.99]]), 1, (7, 5), 1, 0.5)
    zeros = rise_core.rise_masks(_Uniforms([[0.7, 0.0, 0.0]]), 1, (7, 5), 1, 0.5)
    assert np.all(ones == 1) and np.all(zeros == 0)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_masks_do_not_depend_on_the_batch_size(height, width):
    whole = rise_core.rise_masks(np.random.default_rng(5), 10, (height, width), 3, 0.4)
    rng = np.random.default_rng(5)
    parts = [rise_core.rise_masks(rng, n, (height, width), 3, 0.4) for n in (3, 1, 6)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    assert whole.shape == (10, height, width) and whole.dtype == np.float32
    assert whole.min() >= 0 and whole.max() <= 1
    many = rise_core.rise_masks(np.random.default_rng(6), 3000, (height, width), 3, 0.3)
    assert abs(float(many.mean()) - 0.3) < 0.02  # the share of the photo kept, on average


def test_mask_sums_hand_case():
    masks = np.array([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]], [[1.0, 1.0, 1.0]]])  # (3, 1, 3)
    scores = np.array([0.9, 0.1, 0.8])
    sums = rise_core.MaskSums((1, 3))
    sums.add(scores[:2], masks[:2])
    sums.add(scores[2:], masks[2:])
    # pixel 0: kept (0.9 + 0.8)/2 − covered 0.1 = 0.75; pixel 1: (0.1 + 0.8)/2 − 0.9 = −0.45; pixel 2 never covered
    np.testing.assert_allclose(sums.support(), [[0.75, -0.45, 0.0]])
    assert sums.count == 3 and sums.total == pytest.approx(1.8)


def test_rise_parameters_are_checked():
    assert rise_core.rise_passes() == rise_core.DEFAULT_MASKS and rise_core.rise_passes(64) == 64
    for bad in (0, 2.5, True, -3):
        with pytest.raises(ParameterError, match="masks"):
            rise_core.rise_passes(bad)
    network = sensmap.load_model(build_random_cnn(21, 34))
    photo = photo_for(21, 34)
    with pytest.raises(ParameterError, match=r"p \("):
        sensmap.rise(network, photo, masks=4, p=1.0)
    with pytest.raises(ParameterError, match="at most 21"):
        sensmap.rise(network, photo, masks=4, grid=22)
    with pytest.raises(BudgetError, match="use at most 10 masks"):
        sensmap.rise(network, photo, masks=50, max_passes=10)


# --------------------------------------------------------------------------- RISE: the map


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_rise_is_reproducible_with_a_seed(height, width):
    network = sensmap.load_model(build_random_cnn(height, width, seed=2))
    photo = photo_for(height + 6, width + 3, seed=4)
    first = sensmap.rise(network, photo, masks=40, grid=3, seed=7, batch_size=16)
    again = sensmap.rise(network, photo, masks=40, grid=3, seed=7, batch_size=16)
    other_batches = sensmap.rise(network, photo, masks=40, grid=3, seed=7, batch_size=7)
    other_seed = sensmap.rise(network, photo, masks=40, grid=3, seed=8, batch_size=16)
    np.testing.assert_array_equal(first.support, again.support)
    np.testing.assert_allclose(first.support, other_batches.support, atol=1e-6)
    assert np.abs(first.support - other_seed.support).max() > 1e-4
    assert first.method == "rise" and first.passes == 40 and first.approximate and first.display_unit == (100, "pp")
    assert first.method_parameters == {
        "masks": 40, "grid": 3, "p": 0.5, "seed": 7, "passes": 40,
        "cell_px": [math.ceil(height / 3), math.ceil(width / 3)], "detail_px": math.ceil(min(height, width) / 3),
    }  # fmt: skip
    assert "40 random masks (seed 7)" in first.approximation_note
    assert first.support.shape == (height, width) and first.support_photo.shape == (height + 6, width + 3)
    again = sensmap.SensitivityResult.load(first.to_npz_bytes())
    assert again.method == "rise" and again.approximate and again.passes == 40
    np.testing.assert_array_equal(again.support, first.support)


def test_rise_map_is_the_expected_score_change(monkeypatch):
    """The map equals MaskSums over the masks the run drew, scored by predicting each masked image apart."""
    network = sensmap.load_model(build_random_cnn(9, 14, seed=3))
    photo = photo_for(9, 14, seed=9)
    drawn = []
    original = rise_core.rise_masks

    def spy(*args, **kwargs):
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(importlib.import_module("sensmap.methods.rise"), "rise_masks", spy)
    result = sensmap.rise(network, photo, masks=30, grid=2, p=0.4, seed=1, batch_size=8, fill="black")
    masks = np.concatenate(drawn)
    expected = rise_core.MaskSums((9, 14))
    probabilities = network.predict(masks[..., None] * photo)  # black fill: covered pixels are 0
    expected.add(probabilities[:, result.target], masks)
    np.testing.assert_allclose(result.support, expected.support(), atol=1e-5)


def test_rise_draws_masks_one_batch_at_a_time_and_cancels(monkeypatch):
    network = sensmap.load_model(build_random_cnn(21, 34))
    photo = photo_for(21, 34)
    calls = []
    original = rise_core.rise_masks

    def spy(rng, count, *args):
        calls.append(count)
        return original(rng, count, *args)

    monkeypatch.setattr(importlib.import_module("sensmap.methods.rise"), "rise_masks", spy)
    progress = []
    sensmap.rise(network, photo, masks=100, grid=4, batch_size=16, progress=lambda d, t: progress.append((d, t)))
    assert calls == [16] * 6 + [4]  # never more than one batch of masks
    assert progress[0] == (0, 100) and progress[-1] == (100, 100)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    calls.clear()
    seen = []
    with pytest.raises(CancelledError, match="cancelled after 16 of 1000"):
        sensmap.rise(network, photo, masks=1000, grid=4, batch_size=16,
                     progress=lambda d, t: seen.append(d), cancel=lambda: bool(seen and seen[-1] > 0))  # fmt: skip
    assert len(calls) <= 3  # the batch run, the one prefetched, at most one being made: not all 63


# --------------------------------------------------------------------------- planted shortcut, every method

MARK = 16  # px: the lower-right quarter of a 32×32 scene decides the class


@pytest.fixture(scope="module")
def quarter_mark_model():
    """A CNN with global average pooling (Grad-CAM's assumption) trained where only a corner mark decides."""
    images, labels = watermark_scenes(512, seed=3, mark=MARK)
    test_images, test_labels = watermark_scenes(128, seed=4, mark=MARK)
    model = train_small_cnn("quarter_mark_cnn", images, labels, test_images, test_labels, "average", 3, 0.003, 5)
    return sensmap.load_model(model, preprocess="none", labels=["red mark", "blue mark"])


def test_every_method_puts_most_support_on_the_planted_shortcut(quarter_mark_model):
    images, labels = watermark_scenes(6, seed=21, mark=MARK)
    box = ((32 - MARK) / 32, (32 - MARK) / 32, 1.0, 1.0)  # a quarter of the image
    for image, label in zip(images, labels, strict=True):
        results = [explain(quarter_mark_model, image, method="occlusion", sizes=(0.25, 0.125)),
                   explain(quarter_mark_model, image, method="gradcam"),
                   explain(quarter_mark_model, image, method="rise", masks=500, grid=8)]  # fmt: skip
        for result in results:
            assert result.target == label
            pointing = sensmap.pointing(result.support, box)
            # measured: occlusion ≥ 0.62, Grad-CAM ≥ 0.59, RISE ≥ 0.54 of the positive support (area 0.25)
            assert pointing["share_inside"] > 0.5, (result.method, pointing)
        assert sensmap.agreement(results[0].support, results[1].support)["spearman"] > 0.3


def test_faithfulness_and_agreement_take_every_method(quarter_mark_model):
    from sensmap.engine import faithfulness

    image = watermark_scenes(1, seed=30, mark=MARK)[0][0]
    for method, options in (("gradcam", {}), ("rise", {"masks": 200, "grid": 8})):
        result = explain(quarter_mark_model, image, method=method, **options)
        numbers = faithfulness(quarter_mark_model, image, result, steps=8, random_orders=2)
        assert result.metadata["faithfulness"] is numbers and 0 <= numbers["deletion_auc"] <= 1
        assert numbers["deletion_auc"] < numbers["random_deletion_auc"]  # the mark goes first
        assert result.detail_px == (2 if method == "gradcam" else 4)  # feature cell (16 → 32 px); mask cell


# --------------------------------------------------------------------------- one entry point


def test_explain_and_map_passes_name_every_method():
    network = sensmap.load_model(build_random_cnn(21, 34))
    photo = photo_for(21, 34)
    assert validate_method("Grad-CAM") == "gradcam" and validate_method("RISE") == "rise"
    with pytest.raises(ParameterError, match="unknown method"):
        validate_method("lime")
    with pytest.raises(ParameterError, match="RISE does not take sizes; its settings are masks, grid"):
        explain(network, photo, method="rise", sizes=(0.5,))
    for method, options in (("occlusion", {"sizes": (0.5, 0.25)}), ("gradcam", {}), ("rise", {"masks": 24})):
        result = explain(network, photo, method=method, target=2, **options)
        assert result.method == method and result.target == 2
        assert map_passes(network, method, **options) == result.passes
    assert map_passes(network, "occlusion") == sensmap.plan_passes(network)


# --------------------------------------------------------------------------- randomisation check


def test_cascade_counts():
    assert cascade_counts(10, 4) == [1, 3, 7, 10]
    assert cascade_counts(105, 4) == [1, 35, 70, 105]
    assert cascade_counts(3, 5) == [1, 2, 3] and cascade_counts(1, 4) == [1] and cascade_counts(6, 1) == [6]
    with pytest.raises(ParameterError, match="steps"):
        cascade_counts(10, 0)


def test_sanity_verdict_reads_the_last_step():
    common = dict(method="rise", model_name="m", target=0, target_name="a", seed=0, threshold=0.5, total_layers=3,
                  randomised=(1, 2, 3), layers=(("c",), ("b",), ("a",)), top_iou=(0.5, 0.3, 0.2),
                  flat=(False,) * 3, passes=40, original=None, maps=())  # fmt: skip
    passing = SanityCheck(spearman=(0.9, 0.6, 0.1), **common)
    failing = SanityCheck(spearman=(0.3, 0.2, 0.5), **common)
    assert passing.trustworthy and passing.verdict.startswith("Passes") and "0.10" in passing.verdict
    assert not failing.trustworthy and failing.verdict.startswith("Fails") and "Do not trust" in failing.verdict
    assert json.loads(json.dumps(failing.as_dict()))["trustworthy"] is False


@pytest.mark.parametrize(
    ("method", "options"), [("occlusion", {"sizes": (0.5, 0.25)}), ("gradcam", {}), ("rise", {"masks": 100})]
)
def test_randomisation_check_leaves_the_network_alone_and_drops_correlation(mobilenet_025, method, options):
    """A small real network (MobileNet α0.25, 128 px): every method's map decorrelates as the weights go random."""
    network = mobilenet_025
    photo = sensmap.load_image(shared_photo("coffee.png"))
    weights = [w.copy() for w in network.model.get_weights()]
    before = network.predict(np.zeros((128, 128, 3)))
    progress = []
    check = sensmap.randomisation_check(network, photo, method=method, steps=4, seed=1,
                                        progress=lambda d, t: progress.append((d, t)), **options)  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(weights, network.model.get_weights(), strict=True))
    np.testing.assert_array_equal(network.predict(np.zeros((128, 128, 3))), before)
    assert check.randomised == (1, 18, 37, 55) and check.total_layers == 55 and check.layers[0] == ("conv_preds",)
    assert sum(len(group) for group in check.layers) == 55 and check.original.method == method
    # measured |ρ| at full randomisation: occlusion 0 (flat: the random network's output no longer moves),
    # Grad-CAM 0.02, RISE 0.02
    assert abs(check.final_spearman) < 0.3 and check.trustworthy and check.verdict.startswith("Passes")
    assert check.passes == sensmap.randomisation_passes(network, method, steps=4, **options) == progress[-1][1]
    assert progress[-1][0] == check.passes and len(check.maps) == 4 and check.maps[0].shape == (128, 128)
    again = sensmap.randomisation_check(network, photo, method=method, seed=1, original=check.original, **options)
    assert again.spearman == check.spearman and again.passes == check.passes - map_passes(network, method, **options)


def test_randomisation_check_flags_maps_that_do_not_depend_on_the_weights():
    """The mean-brightness network: on a grey photo its occlusion map ranks windows by their brightness whatever
    the dense layer's weights, so randomising them keeps |ρ| = 1 (a random sign may mirror the map)."""
    network = sensmap.load_model(build_mean_brightness_model(12, 7), labels=["bright", "dark"])
    grey = np.repeat(photo_for(12, 7, seed=8)[..., :1], 3, axis=2)
    original = sensmap.sensitivity_map(network, grey, sizes=(0.5, 0.25))
    for seed in range(3):
        check = sensmap.randomisation_check(network, grey, method="occlusion", seed=seed, sizes=(0.5, 0.25))
        assert check.randomised == (1,) and check.layers == (("brightness",),)
        assert abs(check.final_spearman) == pytest.approx(1.0) and not check.trustworthy
        assert check.verdict.startswith("Fails")
    np.testing.assert_array_equal(sensmap.sensitivity_map(network, grey, sizes=(0.5, 0.25)).support, original.support)


def test_randomisation_check_refuses_a_mismatched_original(quarter_mark_model):
    image = watermark_scenes(1, seed=40, mark=MARK)[0][0]
    original = sensmap.gradcam(quarter_mark_model, image)
    with pytest.raises(ParameterError, match="Grad-CAM map.*RISE"):
        sensmap.randomisation_check(quarter_mark_model, image, method="rise", original=original, masks=10)


# --------------------------------------------------------------------------- command line

MOBILENET_025 = str(WEIGHTS / "mobilenet_v1_0.25_128.weights.h5")


def test_cli_map_with_gradcam_and_rise(tmp_path, capsys):
    from sensmap.cli import main

    photo = str(shared_photo("coffee.png"))
    npz, png = tmp_path / "gradcam.npz", tmp_path / "gradcam.png"
    args = ["map", photo, "--model", "MobileNet", "--weights", MOBILENET_025, "--quiet"]
    assert main([*args, "--method", "gradcam", "--out-npz", str(npz), "--out-png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM: 1 forward passes" in out and "relative" in out and " pp" not in out
    assert sensmap.SensitivityResult.load(npz).method == "gradcam" and png.stat().st_size > 1000
    assert main([*args, "--method", "rise", "--masks", "32", "--mask-grid", "5", "--seed", "3",
                 "--out-npz", str(npz)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "RISE: 32 forward passes" in out and "Monte Carlo estimate from 32 random masks (seed 3)" in out
    result = sensmap.SensitivityResult.load(npz)
    assert result.method == "rise" and result.method_parameters["grid"] == 5 and result.method_parameters["seed"] == 3
    assert main([*args, "--method", "gradcam", "--sizes", "0.5"]) == 2
    assert "--sizes does not apply to --method gradcam" in capsys.readouterr().err
    assert main([*args, "--masks", "10"]) == 2
    assert "--masks does not apply to --method occlusion" in capsys.readouterr().err


# --------------------------------------------------------------------------- real networks (slow)

FAMILIES = ["Xception", "VGG16", "ResNet50", "ResNet50V2", "InceptionV3", "InceptionResNetV2", "MobileNet",
            "MobileNetV2", "MobileNetV3Small", "DenseNet121", "NASNetMobile", "EfficientNetB0", "EfficientNetV2B0",
            "ConvNeXtTiny"]  # fmt: skip


@pytest.mark.slow
def test_feature_map_found_in_every_keras_applications_family():
    """The feature map is the one the head pools (its global pooling's input; VGG: its Flatten's input)."""
    for name in FAMILIES:
        model = getattr(keras.applications, name)(weights=None)
        site = find_feature_site(types.SimpleNamespace(model=model, name=name))
        pooling = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
        head = pooling[-1] if pooling else model.get_layer("flatten")
        assert site.tensor is head.input, (name, site.layer)
        keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetB0", "ConvNeXtTiny", "NASNetMobile"])
def test_gradcam_runs_every_layer_kind_as_keras_does(name):
    """Graphs with operations, squeeze-and-excitation, nested Sequentials, croppings: the layer-by-layer run equals
    Keras' own model call (a functional model to the feature map and the output, differentiated with a tape)."""
    from sensmap.methods.graph import feature_and_log_probabilities

    shape = (224, 224, 3) if name == "NASNetMobile" else (96, 128, 3)
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=shape, classes=7)
    network = sensmap.load_model(model)
    pixels = photo_for(*shape[:2], seed=2)
    site = find_feature_site(network)
    reference = keras.Model(model.inputs, [site.tensor, model.outputs[0]])
    features, log_probabilities = feature_and_log_probabilities(network, tf.constant(pixels[None]), site)
    expected_features, probabilities = (v.numpy() for v in reference(tf.constant(pixels[None])))
    scale = max(1.0, float(np.abs(expected_features).max()))
    assert np.abs(features.numpy() - expected_features).max() <= 1e-4 * scale
    np.testing.assert_allclose(np.exp(log_probabilities.numpy()), probabilities, atol=1e-5)
    target = int(np.argmax(probabilities[0]))
    with tf.GradientTape() as tape:
        features, probabilities = reference(tf.constant(pixels[None]))
        score = tf.math.log(probabilities[0, target])
    alpha = tf.reduce_mean(tape.gradient(score, features)[0], axis=(0, 1)).numpy()
    cam = np.maximum(features.numpy()[0] @ alpha, 0)
    expected = np.clip(map_to_photo(cam, shape[:2]).astype(float), 0, None)
    result = sensmap.gradcam(network, pixels, target=target)
    if expected.max() == 0:  # random NASNet saturates (p = 1 in float32): no gradient, an all-zero map
        assert np.all(result.support == 0)
    else:
        assert np.abs(result.support - expected / expected.max()).max() <= 1e-4


def _peak_x(values: np.ndarray) -> float:
    return np.unravel_index(np.argmax(values), values.shape)[1] / values.shape[1]


@pytest.mark.slow
def test_pets_gradcam_and_rise_peak_on_different_dogs(mobilenet_v2):
    """Greyhound-like dog on the left, Boston terrier on the right (as the occlusion maps, test_engine)."""
    photo = sensmap.load_image(shared_photo("pets.jpg"))
    peaks = {}
    for method, options in (("gradcam", {}), ("rise", {"masks": 500})):
        for target in ("Italian_greyhound", "Boston_bull"):
            peaks[method, target] = _peak_x(
                explain(mobilenet_v2, photo, method=method, target=target, **options).support
            )
    # measured: Grad-CAM 0.21 / 0.93, RISE (500 masks) 0.32 / 0.88
    for method in ("gradcam", "rise"):
        assert peaks[method, "Italian_greyhound"] < 0.5 < peaks[method, "Boston_bull"], peaks


@pytest.mark.slow
def test_pets_randomisation_check_passes_for_every_method(mobilenet_v2):
    photo = sensmap.load_image(shared_photo("pets.jpg"))
    weights = [w.copy() for w in mobilenet_v2.model.get_weights()]
    for method, options in (("occlusion", {"sizes": (0.5, 0.25)}), ("gradcam", {}), ("rise", {"masks": 200})):
        check = sensmap.randomisation_check(mobilenet_v2, photo, method=method, target="Italian_greyhound", **options)
        assert check.randomised == (1, 35, 70, 105) and check.layers[0] == ("predictions",)
        assert check.final_spearman < 0.3 and check.trustworthy, (method, check.spearman)
    assert all(np.array_equal(a, b) for a, b in zip(weights, mobilenet_v2.model.get_weights(), strict=True))

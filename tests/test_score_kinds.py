"""Score kinds end to end on Keras networks (logit, sigmoid, incremental mode with a sigmoid) and in every view
that uses a score: story, figures, PNG and HTML reports (synthetic results, no TensorFlow needed there)."""

from __future__ import annotations

import numpy as np
import pytest
from test_render import synthetic_photo, synthetic_result

import sensmap
from sensmap import render, report
from sensmap.errors import ParameterError
from sensmap.result import SensitivityResult

SIZES = (0.5, 0.25, 0.125)


def two_heads(height: int = 21, width: int = 30, activation: str | None = None, seed: int = 0):
    """A small random CNN with 4 outputs (linear or ``activation``) on an odd, non-square grid."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation=activation)(x), name="heads")


@pytest.fixture(scope="module")
def photo():
    return np.random.default_rng(2).uniform(0, 255, (21, 30, 3)).astype(np.uint8)


def test_logit_maps_read_the_raw_outputs_and_probability_maps_their_softmax(photo):
    network = sensmap.load_model(two_heads())
    assert network.softmax_applied and network.output_kind == "classes"
    probability = sensmap.sensitivity_map(network, photo, sizes=SIZES, target=1)
    logit = sensmap.sensitivity_map(network, photo, sizes=SIZES, target=1, score="logit")
    raw = network.model.predict(photo[None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(logit.reference_probabilities, raw[0], atol=1e-5)
    softmax = np.exp(logit.outputs - logit.outputs.max(1, keepdims=True))
    np.testing.assert_allclose(probability.outputs, softmax / softmax.sum(1, keepdims=True), atol=1e-6)
    assert logit.metadata["softmax_applied"] is False and probability.metadata["softmax_applied"] is True
    assert logit.score == pytest.approx(raw[0, 1], abs=1e-5) and logit.label_flip()[0].shape == (21, 30)
    assert "(logit " in sensmap.tell_story(logit) and "calls this photo" in sensmap.tell_story(probability)
    similarity = sensmap.sensitivity_map(network, photo, sizes=SIZES, score="similarity")
    assert similarity.score == pytest.approx(1.0) and similarity.support.max() > 0


def test_multi_label_keras_models_in_every_mode(photo):
    linear = sensmap.load_model(two_heads(), output="multi-label")
    ending = sensmap.load_model(two_heads(activation="sigmoid"), output="multi-label")
    assert linear.sigmoid_applied and not linear.softmax_applied and not ending.sigmoid_applied
    exact = sensmap.sensitivity_map(linear, photo, sizes=SIZES)
    assert exact.score_kind == "sigmoid" and exact.metadata["sigmoid_applied"] is True
    np.testing.assert_allclose(sensmap.sensitivity_map(ending, photo, sizes=SIZES).outputs, exact.outputs, atol=1e-6)
    assert np.all((exact.outputs > 0) & (exact.outputs < 1)) and not np.allclose(exact.outputs.sum(1), 1)
    incremental = sensmap.sensitivity_map(linear, photo, sizes=SIZES, mode="incremental")
    assert np.abs(incremental.outputs - exact.outputs).max() <= 1e-4  # the incremental path applies the sigmoid
    assert "%" in sensmap.tell_story(exact) and "label probability" in sensmap.tell_story(exact)


def custom_result(seed: int = 0) -> SensitivityResult:
    base = synthetic_result(seed=seed)
    values = np.concatenate([[0.4], 0.4 - base.window_support()])  # any numbers: a custom score's values
    return SensitivityResult(
        model_name="Regressor", labels=base.labels, input_size=base.input_size, photo_size=base.photo_size,
        fit=base.fit, sizes=base.sizes, stride=base.stride, fill=base.fill, score_kind="custom:sharpness",
        target=0, reference_probabilities=base.reference_probabilities, outputs=base.outputs,
        custom_scores=values, metadata=base.metadata,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["logit", "sigmoid", "similarity", "custom"])
def test_every_view_follows_the_score_kind(kind):
    result = custom_result() if kind == "custom" else synthetic_result(score_kind=kind)
    photo = synthetic_photo()
    factor, unit = render.support_unit(result)
    assert unit == {"logit": "logit", "sigmoid": "pp", "similarity": "similarity", "custom": "sharpness"}[kind]
    story = sensmap.tell_story(result)
    assert "strongest support lies in the" in story and "top 3" not in story
    overlay = render.overlay_figure(photo, result)
    assert unit in overlay.to_plotly_json()["data"][1]["colorbar"]["title"]["text"]
    other = custom_result(1) if kind == "custom" else synthetic_result("Other", score_kind=kind, seed=1)
    render.compare_figure(photo, result, other)
    html = report.report_html(photo, [result])
    flip = "label-flip" in sensmap.scores.supported_views(result.score_kind)
    assert ("per pixel, the cover that lowers" in html) == flip
    assert ("Top classes (whole photo)" in html) == (kind in ("logit", "sigmoid"))
    assert report.report_png(photo, [result, other]).startswith(b"\x89PNG")
    rows = dict(report.parameter_rows(result))
    assert rows["score"] == result.score_kind
    if kind in ("similarity", "custom"):
        assert "'class 0'" not in rows["target class"]
        with pytest.raises(ParameterError, match="not to a class"):
            result.maps_for(1)
    with pytest.raises(ParameterError, match="cannot share one colour scale between maps in"):
        render.compare_figure(photo, result, synthetic_result("Other", score_kind="log-odds"))

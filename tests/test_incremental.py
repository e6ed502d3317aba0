"""Exact incremental inference: geometry against brute force, maps equal to the dense engine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_random_cnn, shared_photo

import sensmap
from sensmap import incremental
from sensmap.incremental import AxisGeometry, IncrementalModel

TOLERANCE = 1e-4  # probability points; the bound for "same numbers as exact"


def _brute_changed(geometry: AxisGeometry, in_size: int, out_size: int, start: int, stop: int) -> tuple[int, int]:
    """Output cells whose window reads an input cell in ``[start, stop)``, by enumeration."""
    touched = [
        o
        for o in range(out_size)
        if any(
            start <= o * geometry.stride - geometry.pad_before + j * geometry.dilation < stop
            for j in range(geometry.kernel)
        )
    ]
    return (min(touched), max(touched) + 1) if touched else (0, 0)


@pytest.mark.parametrize("kernel", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_changed_interval_matches_brute_force(kernel, stride, dilation, padding):
    for size in (7, 8, 13, 32):
        if padding == "valid" and dilation * (kernel - 1) + 1 > size:
            continue
        before, after = incremental._same_padding(size, kernel, stride, dilation) if padding == "same" else (0, 0)
        geometry = AxisGeometry(kernel, stride, dilation, before, after)
        out_size = -(-size // stride) if padding == "same" else (size - geometry.reach) // stride + 1
        starts, stops = np.meshgrid(np.arange(size), np.arange(1, size + 1), indexing="ij")
        ok = stops > starts
        first, last = geometry.changed(starts[ok], stops[ok], out_size)
        for a, b, lo, hi in zip(starts[ok], stops[ok], first, last, strict=True):
            bf, bl = _brute_changed(geometry, size, out_size, a, b)
            if bl == bf:  # the cover falls between a strided kernel's taps: nothing changes
                continue
            # the formula may over-approximate only by dilation gaps, never miss a touched cell
            assert lo <= bf and hi >= bl, (size, a, b)
            if dilation == 1:
                assert (lo, hi) == (bf, bl), (size, a, b)


def test_same_padding_matches_tensorflow():
    import tensorflow as tf

    for size, kernel, stride in [(224, 3, 2), (225, 3, 2), (7, 7, 2), (13, 1, 2), (31, 5, 3)]:
        ones = tf.ones([1, size, 1, 1])
        before, after = incremental._same_padding(size, kernel, stride, 1)
        same = tf.nn.conv2d(ones, tf.ones([kernel, 1, 1, 1]), [1, stride, 1, 1], "SAME")
        padded = tf.pad(ones, [[0, 0], [before, after], [0, 0], [0, 0]])
        valid = tf.nn.conv2d(padded, tf.ones([kernel, 1, 1, 1]), [1, stride, 1, 1], "VALID")
        np.testing.assert_array_equal(same.numpy(), valid.numpy())


def build_zoo_model(height: int, width: int, seed: int = 0):
    """Every layer kind the incremental engine runs on crops, on a non-square input, logits out."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)))(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)
    x = keras.layers.BatchNormalization(
        beta_initializer="random_normal", moving_mean_initializer="random_normal", moving_variance_initializer="ones"
    )(x)
    a = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    b = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same")(x)
    x = keras.layers.Add()([a, b])
    c = keras.layers.SeparableConv2D(8, 5, strides=2, padding="same")(x)
    d = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.Concatenate()([c, d])
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dense(12, activation="gelu")(x)  # per position
    e = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    x = keras.layers.Multiply()([x, e])
    x = keras.layers.AveragePooling2D(2, padding="valid")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(7)(x)  # logits: sensmap applies softmax
    return keras.Model(inputs, outputs, name="zoo")


def _both(network, image, **options):
    exact = sensmap.sensitivity_map(network, image, **options)
    fast = sensmap.sensitivity_map(network, image, mode="incremental", **options)
    return exact, fast


@pytest.mark.parametrize(
    ("size", "fill"), [((37, 53), "gray"), ((64, 48), "blur"), ((9, 11), (255, 0, 0)), ((23, 23), "mean")]
)
def test_zoo_model_matches_dense(size, fill, monkeypatch):
    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)  # run every group on crops
    network = sensmap.load_model(build_zoo_model(*size, seed=sum(size)), preprocess="none")
    image = np.random.default_rng(0).uniform(0, 255, (size[0] + 5, size[1] - 3, 3)).astype(np.float32)
    exact, fast = _both(network, image, sizes=(0.5, 0.25, 0.1), stride=0.5, fill=fill, batch_size=16)
    assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE
    assert np.abs(fast.support - exact.support).max() <= TOLERANCE
    assert fast.mode == "exact" and fast.metadata["mode"] == "exact" and fast.engine_requested == "incremental"
    assert fast.engine in ("incremental", "mixed")
    assert any(group["ran"] == "incremental" for group in fast.metadata["incremental_groups"])


def build_modern_model(height: int, width: int, seed: int = 0):
    """ConvNeXt/NASNet-style pieces: a nested sequential stem, grouped convolution, cropping, ``a + b``."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    stem = keras.Sequential(
        [keras.layers.Conv2D(8, 3, strides=2, padding="same"), keras.layers.LayerNormalization(epsilon=1e-6)],
        name="stem",
    )
    x = stem(inputs / 255.0)
    y = keras.layers.Conv2D(8, 3, padding="same", groups=4, activation="gelu")(x)  # grouped
    x = x + y  # an element-wise Keras operation in the graph, not an Add layer
    z = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    z = keras.layers.Cropping2D(((1, 0), (1, 0)))(z)  # NASNet's shift by one cell
    x = keras.layers.Concatenate()([x, z])
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name="modern")


@pytest.mark.parametrize("size", [(36, 44), (17, 23)])
def test_modern_layers_match_dense(size, monkeypatch):
    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)
    network = sensmap.load_model(build_modern_model(*size, seed=7), preprocess="none")
    model = IncrementalModel(network)
    kinds = {type(step.layer).__name__: step.kind for step in model.steps}
    assert kinds["Conv2D"] == kinds["Cropping2D"] == "window" and kinds["LayerNormalization"] == "pointwise"
    assert kinds["Add"] == "merge"  # keras.src.ops.numpy.Add, recorded by ``x + y``
    image = np.random.default_rng(4).uniform(0, 255, (*size, 3)).astype(np.float32)
    exact, fast = _both(network, image, sizes=(0.4, 0.2), stride=0.5)
    assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE
    assert all(group["ran"] == "incremental" for group in fast.metadata["incremental_groups"])


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1.0])
def test_dense_switch_point_does_not_change_numbers(fraction, monkeypatch):
    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)
    monkeypatch.setattr(incremental, "DENSE_FRACTION", fraction)
    network = sensmap.load_model(build_zoo_model(40, 40, seed=5), preprocess="none")
    image = np.random.default_rng(1).uniform(0, 255, (40, 40, 3)).astype(np.float32)
    exact, fast = _both(network, image, sizes=(0.3, 0.15), stride=0.5)
    assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE


def test_sequential_model_and_batch_size_invariance():
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((30, 42, 3)),
            keras.layers.Conv2D(6, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(6, 3, padding="valid", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    network = sensmap.load_model(model, preprocess="unit")
    image = np.random.default_rng(2).uniform(0, 255, (30, 42, 3)).astype(np.float32)
    exact = sensmap.sensitivity_map(network, image, sizes=(0.25, 0.125), stride=0.5)
    for batch_size in (1, 7, 64):
        fast = sensmap.sensitivity_map(
            network, image, sizes=(0.25, 0.125), stride=0.5, mode="incremental", batch_size=batch_size
        )
        assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE


def _count_traces(monkeypatch) -> list[tuple[int, int]]:
    """The cover sizes traced from now on (``IncrementalModel._trace`` spied on), in order."""
    traced: list[tuple[int, int]] = []
    trace = IncrementalModel._trace  # noqa: SLF001

    def spy(self, entry, plan, state):
        traced.append(tuple(int(v) for v in plan.sizes[self.input_id]))
        return trace(self, entry, plan, state)

    monkeypatch.setattr(IncrementalModel, "_trace", spy)
    return traced


def test_traced_functions_are_reused_across_photos_strides_fills_batch_sizes_and_modes(monkeypatch):
    """One trace per cover size in pixels: other photos, strides, fills, batch sizes and fast mode reuse it."""
    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)
    traced = _count_traces(monkeypatch)
    network = sensmap.load_model(build_random_cnn(48, 64, classes=5, seed=4), preprocess="unit")
    exact, fast = _both(network, shared_photo("pets.jpg"), sizes=(0.25, 0.125), stride=0.5)
    assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE
    assert sorted(traced) == [(6, 8), (12, 16)]
    for options in (
        dict(stride=0.3, fill="blur", batch_size=5),
        dict(stride=1.0, fill=(255, 0, 0), batch_size=64, mode="fast"),
        dict(stride=0.25, fill="mean", score="log-odds", mode="fast"),
    ):
        mode = options.pop("mode", "exact")
        dense = sensmap.sensitivity_map(network, shared_photo("owl.jpg"), sizes=(0.25, 0.125), **options)
        again = sensmap.sensitivity_map(
            network, shared_photo("owl.jpg"), sizes=(0.25, 0.125), mode=mode, engine="incremental", **options
        )
        assert sorted(traced) == [(6, 8), (12, 16)], options  # nothing traced again
        assert [group["ran"] for group in again.metadata["incremental_groups"]] == ["incremental"] * 2
        measured = np.ones(again.window_total, bool) if again.measured is None else again.measured
        assert (mode == "fast") == again.approximate
        assert np.abs(again.outputs[measured] - dense.outputs[measured]).max() <= TOLERANCE, options


def test_global_pooling_inside_blocks_falls_back_to_dense_and_says_why():
    """Squeeze-and-excitation pools the whole grid in the first block: nothing to save."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    squeeze = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    squeeze = keras.layers.Conv2D(8, 1, activation="sigmoid")(squeeze)
    x = keras.layers.Multiply()([x, squeeze])
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)  # most arithmetic comes after it
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    network = sensmap.load_model(keras.Model(inputs, outputs), preprocess="unit")
    image = np.random.default_rng(3).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    exact, fast = _both(network, image, sizes=(0.25,), stride=0.5)
    np.testing.assert_allclose(fast.outputs, exact.outputs, atol=TOLERANCE)
    (group,) = fast.metadata["incremental_groups"]
    assert group["ran"] == "dense"
    assert "GlobalAveragePooling2D" in group["why"]


def test_unknown_model_type_is_refused():
    class NotAGraph:
        model = object()
        input_size = (8, 8)

    with pytest.raises(TypeError, match="functional or sequential"):
        IncrementalModel(NotAGraph())


def test_unknown_mode_is_a_parameter_error():
    network = sensmap.load_model(build_random_cnn(16, 16), preprocess="unit")
    with pytest.raises(sensmap.ParameterError, match="unknown mode"):
        sensmap.sensitivity_map(network, np.zeros((16, 16, 3), np.float32), mode="turbo")


@pytest.mark.slow
def test_mobilenet_v2_incremental_equals_exact(mobilenet_v2):
    exact, fast = _both(mobilenet_v2, shared_photo("hot_dog.jpg"))
    assert np.abs(fast.outputs - exact.outputs).max() <= TOLERANCE
    assert fast.target == exact.target
    assert [g["ran"] for g in fast.metadata["incremental_groups"]] == ["incremental"] * 3


@pytest.mark.parametrize(
    ("name", "gains", "reason"),
    [
        ("ResNet50", True, "GlobalAveragePooling2D"),
        ("EfficientNetB0", False, "block1a_se_squeeze"),  # squeeze-and-excitation in the first block
        ("ConvNeXtTiny", True, "GlobalAveragePooling2D"),  # nested stem, grouped depthwise conv, LayerScale
    ],
)
def test_which_keras_applications_gain(name, gains, reason):
    from sensmap.windows import window_grids

    network = sensmap.load_model(name, weights=None)
    model = IncrementalModel(network)
    assert reason in model.dense_reason()
    finest = window_grids(*network.input_size, (0.125,), 0.5)[0]
    assert (model.estimated_speedup(model.plan(finest.boxes)) >= incremental.MIN_USEFUL_SPEEDUP) == gains


def _dense_fallback(monkeypatch, method: str, error: Exception) -> dict:
    """The one group record of an incremental map whose ``IncrementalModel.<method>`` raises ``error``;
    the map must still equal the exact one."""
    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)
    network = sensmap.load_model(build_random_cnn(24, 30, seed=6), preprocess="unit")
    image = np.random.default_rng(5).uniform(0, 255, (24, 30, 3)).astype(np.float32)
    exact = sensmap.sensitivity_map(network, image, sizes=(0.25,), stride=0.5)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(IncrementalModel, method, broken)
    fast = sensmap.sensitivity_map(network, image, sizes=(0.25,), stride=0.5, mode="incremental")
    np.testing.assert_allclose(fast.outputs, exact.outputs, atol=TOLERANCE)
    (group,) = fast.metadata["incremental_groups"]
    assert group["ran"] == "dense"
    return group


def test_a_graph_the_analysis_cannot_handle_runs_dense_with_exact_numbers(monkeypatch):
    group = _dense_fallback(monkeypatch, "prepare", ValueError("unexpected layer wiring"))
    assert "analysis failed (ValueError: unexpected layer wiring)" in group["why"]


def test_a_layer_that_fails_to_trace_on_crops_runs_dense(monkeypatch):
    group = _dense_fallback(monkeypatch, "_window", NotImplementedError("no crop kernel"))
    assert "tracing failed (NotImplementedError: no crop kernel)" in group["why"]


def test_one_shared_network_serves_several_threads_incrementally(monkeypatch):
    """Dashboard sessions share cached networks: concurrent incremental maps (first ones tracing) stay exact."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(incremental, "MIN_USEFUL_SPEEDUP", 0.0)
    network = sensmap.load_model(build_random_cnn(24, 24, classes=4, seed=9), preprocess="unit")
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (24 + i, 30 - i, 3), dtype=np.uint8) for i in range(5)]
    alone = [sensmap.sensitivity_map(network, image, batch_size=16).outputs for image in images]

    def incremental_map(image):
        return sensmap.sensitivity_map(network, image, batch_size=16, mode="incremental").outputs

    with ThreadPoolExecutor(max_workers=5) as pool:
        together = list(pool.map(incremental_map, images))
    for single, shared in zip(alone, together, strict=True):
        assert np.abs(shared - single).max() <= TOLERANCE

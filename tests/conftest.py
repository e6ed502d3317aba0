"""Shared fixtures: real tiny Keras models built (and trained) in-process, paths to ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
WEIGHTS = SHARED / "weights"
PHOTOS = SHARED / "photos"


def shared_photo(name: str) -> Path:
    path = PHOTOS / name
    if not path.is_file():
        pytest.fail(f"missing shared test photo {path} (the repository expects ../shared beside it)")
    return path


@pytest.fixture(scope="session")
def shared_weights_dir() -> Path:
    if not (WEIGHTS / "manifest.json").is_file():
        pytest.fail(f"missing {WEIGHTS}/manifest.json (the repository expects ../shared beside it)")
    return WEIGHTS


@pytest.fixture(scope="session")
def mobilenet_v2(shared_weights_dir):
    import sensmap

    return sensmap.load_model("MobileNetV2", weights=shared_weights_dir / "mobilenet_v2_1.0_224.weights.h5")


@pytest.fixture(scope="session")
def mobilenet_025(shared_weights_dir):
    import sensmap

    return sensmap.load_model("MobileNet", weights=shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")


def build_mean_brightness_model(height: int, width: int):
    """Analytic model: outputs [m, 1 − m] with m the mean raw pixel value / 255 (preprocess "none")."""
    import keras

    inputs = keras.Input((height, width, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, name="brightness")
    outputs = dense(pooled)
    dense.set_weights([np.array([[1, -1]] * 3, dtype=np.float32) / (3 * 255), np.array([0, 1], dtype=np.float32)])
    return keras.Model(inputs, outputs, name="mean_brightness")


def build_random_cnn(height: int, width: int, classes: int = 5, seed: int = 0):
    """A small random (untrained) CNN with softmax outputs on a fixed non-square input."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="random_cnn")


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


def shortcut_scenes(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic scenes: the background colour decides the class, a random object does not.

    Class 0: warm background, class 1: cool background; each scene has a greenish square object
    (half the side, a quarter of the area) at a random place. Returns (images 0..255, labels, object boxes).
    """
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 2, size=count)
    boxes = np.empty((count, 4), dtype=np.int64)
    side = size // 2
    for i, label in enumerate(labels):
        base = np.array([200, 120, 60]) if label == 0 else np.array([60, 120, 200])
        images[i] = base + rng.normal(0, 12, size=(size, size, 3))
        y0, x0 = rng.integers(0, size - side + 1, size=2)
        # the object's colour (greenish, same distribution in both classes) carries no class information
        images[i, y0 : y0 + side, x0 : x0 + side] = rng.uniform((0, 150, 0), (80, 255, 80))
        boxes[i] = (y0, x0, y0 + side, x0 + side)
    return np.clip(images, 0, 255), labels, boxes


@pytest.fixture(scope="session")
def shortcut_model():
    """A small CNN trained (seconds on CPU) on scenes where only the background decides the class."""
    return train_shortcut_model()


def train_shortcut_model(epochs: int = 2, learning_rate: float = 0.002):
    images, labels, _ = shortcut_scenes(768, seed=1)
    test_images, test_labels, _ = shortcut_scenes(128, seed=2)
    return train_small_cnn(
        "shortcut_cnn", images, labels, test_images, test_labels, "average", epochs, learning_rate, 7
    )


def train_small_cnn(name, images, labels, test_images, test_labels, pooling, epochs, learning_rate, seed):
    """Train a two-convolution CNN on 32×32 scenes (seconds on CPU); fail loudly if it did not learn."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    pool = keras.layers.GlobalAveragePooling2D() if pooling == "average" else keras.layers.GlobalMaxPooling2D()
    outputs = keras.layers.Dense(2, activation="softmax")(pool(x))
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
    accuracy = float((model.predict(test_images, verbose=0).argmax(axis=1) == test_labels).mean())
    assert accuracy > 0.95, f"{name} did not learn its planted shortcut (accuracy {accuracy:.2f})"
    return model


def watermark_scenes(count: int, size: int = 32, seed: int = 0, mark: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scenes with a planted local shortcut: a corner mark decides the class.

    Random textured scenes with a random-coloured object; a ``mark``×``mark`` (default 8×8) mark in the
    lower-right corner is red for class 0 and blue for class 1 — nothing else differs between the classes.
    """
    rng = np.random.default_rng(seed)
    images = rng.uniform(40, 215, size=(count, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=count)
    for i, label in enumerate(labels):
        y0, x0 = rng.integers(0, size // 2, size=2)
        images[i, y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.uniform(0, 255, size=3)
        images[i, -mark:, -mark:] = (230, 30, 30) if label == 0 else (30, 30, 230)
    return images, labels


@pytest.fixture(scope="session")
def watermark_model():
    """A small CNN trained on scenes where only a lower-right corner mark decides the class."""
    return train_watermark_model()


def train_watermark_model():
    images, labels = watermark_scenes(512, seed=3)
    test_images, test_labels = watermark_scenes(128, seed=4)
    return train_small_cnn("watermark_cnn", images, labels, test_images, test_labels, "max", 4, 0.003, 5)


def stripe_scenes(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scenes with a texture shortcut: background stripes decide the class, a random object does not.

    Class 0: horizontal stripes, class 1: vertical stripes (period 4 px, random phase); a greenish square object
    (half the side) at a random place. Unlike a colour shortcut, blurring removes the stripes, so insertion
    curves that start from a blurred photo carry information.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    images = np.empty((count, size, size, 3), dtype=np.float32)
    coords = np.arange(size)
    for i, label in enumerate(labels):
        wave = 128 + 70 * np.sign(np.sin(2 * np.pi * (coords + rng.integers(0, 4)) / 4 + 0.1))
        pattern = np.outer(wave, np.ones(size)) if label == 0 else np.outer(np.ones(size), wave)
        images[i] = pattern[..., None] + rng.normal(0, 10, (size, size, 3))
        y0, x0 = rng.integers(0, size // 2 + 1, size=2)
        images[i, y0 : y0 + size // 2, x0 : x0 + size // 2] = rng.uniform((0, 150, 0), (80, 255, 80))
    return np.clip(images, 0, 255), labels


@pytest.fixture(scope="session")
def stripes_model():
    """A small CNN trained on scenes where only the background stripes' orientation decides the class."""
    images, labels = stripe_scenes(768, seed=1)
    test_images, test_labels = stripe_scenes(128, seed=2)
    return train_small_cnn("stripes_cnn", images, labels, test_images, test_labels, "average", 3, 0.003, 7)

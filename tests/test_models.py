"""Model registry, weights resolution, own .keras models, and real ImageNet classification."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import build_random_cnn, shared_photo

import sensmap
from sensmap.errors import ModelError, ParameterError, WeightsError
from sensmap.models import imagenet_class_names, make_preprocess, tf
from sensmap.registry import REGISTRY, get_spec, keras_cache_dir, variant_label, weights_status

EXPECTED_NETWORKS = {
    "Xception", "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2",
    "ResNet152V2", "InceptionV3", "InceptionResNetV2", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "MobileNetV3Large", "DenseNet121", "DenseNet169", "DenseNet201", "NASNetMobile", "NASNetLarge",
    *(f"EfficientNetB{i}" for i in range(8)), "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2",
    "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L", "ConvNeXtTiny",
    "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge",
}  # fmt: skip


def test_registry_lists_every_keras_applications_classifier():
    assert set(REGISTRY) == EXPECTED_NETWORKS
    for spec in REGISTRY.values():
        assert hasattr(keras.applications, spec.name), spec.name
        assert hasattr(getattr(keras.applications, spec.module), "preprocess_input"), spec.module
        assert spec.input_size in (224, 240, 260, 299, 300, 331, 380, 384, 456, 480, 528, 600)
    assert get_spec("mobilenetv2").name == "MobileNetV2"
    assert get_spec("Xception").input_size == 299


def test_unknown_network_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean MobileNetV2"):
        sensmap.load_model("MobilNetV2")


def test_weights_file_names_match_keras_cache_names():
    assert (
        get_spec("MobileNetV2").cached_weights_name({}) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    )
    assert get_spec("MobileNet").cached_weights_name({"alpha": 0.25, "input_shape": (128, 128, 3)}) == (
        "mobilenet_2_5_128_tf.h5"
    )
    assert get_spec("ResNet50").cached_weights_name({}) == "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    assert get_spec("EfficientNetV2S").cached_weights_name({}) == "efficientnetv2-s.h5"
    assert get_spec("ConvNeXtTiny").cached_weights_name({}) == "convnext_tiny.h5"


def test_weights_status_local_cached_download(tmp_path, monkeypatch, shared_weights_dir):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("SENSMAP_WEIGHTS_DIR", raising=False)
    assert weights_status(get_spec("ResNet50")) == "download"
    (keras_cache_dir()).mkdir(parents=True)
    (keras_cache_dir() / "resnet50_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"x")
    assert weights_status(get_spec("ResNet50")) == "cached"
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    assert weights_status(get_spec("MobileNetV2")) == "local"
    assert weights_status(get_spec("MobileNet"), {"alpha": 0.5, "input_shape": (160, 160, 3)}) == "local"
    assert weights_status(get_spec("MobileNet"), {"alpha": 1.0}) == "download"


def test_offline_without_cached_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("SENSMAP_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(keras.utils, "get_file", _offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", _offline)
    with pytest.raises(WeightsError) as caught:
        sensmap.load_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    message = str(caught.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5" in message
    assert str(tmp_path / "models") in message and "SENSMAP_WEIGHTS_DIR" in message


def _offline(*args, **kwargs):
    raise Exception("URL fetch failure on https://example.invalid: [Errno -2] Name or service not known")


def test_missing_and_corrupt_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        sensmap.load_model("MobileNetV2", weights=tmp_path / "nope.weights.h5")
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(WeightsError, match="corrupt.weights.h5"):
        sensmap.load_model("MobileNet", weights=corrupt, alpha=0.25, input_shape=(128, 128, 3))


def test_weights_folder_and_env_var_resolve_variants(shared_weights_dir, monkeypatch):
    network = sensmap.load_model("MobileNet", weights=shared_weights_dir, alpha=0.25)
    assert network.input_size == (128, 128) and network.name == "MobileNet α0.25 128px"
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    network = sensmap.load_model("MobileNet", alpha=0.5)  # "imagenet" found in the local folder
    assert network.input_size == (160, 160) and network.weights.endswith("mobilenet_v1_0.5_160.weights.h5")
    with pytest.raises(WeightsError, match="has no weights for ResNet50"):
        sensmap.load_model("ResNet50", weights=shared_weights_dir)


def test_weights_file_listed_in_a_manifest_brings_its_constructor_options(shared_weights_dir):
    network = sensmap.load_model("MobileNet", weights=shared_weights_dir / "mobilenet_v1_0.75_192.weights.h5")
    assert network.input_size == (192, 192) and network.family == "MobileNet"
    assert variant_label("MobileNet", {"alpha": 0.75, "input_shape": (192, 192, 3)}) == "MobileNet α0.75 192px"


def test_own_keras_model_with_labels_file(tmp_path):
    model = build_random_cnn(24, 20, classes=3)
    path = tmp_path / "mine.keras"
    model.save(path)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nsnow\n\n")
    network = sensmap.load_model(path, labels=labels, preprocess="unit")
    assert network.labels == ("cat", "dog", "snow") and network.input_size == (24, 20)
    assert network.class_index("Snow") == 2
    image = np.random.default_rng(0).integers(0, 256, (24, 20, 3), np.uint8)
    np.testing.assert_allclose(network.predict(image), model(image[None] / 255.0).numpy(), atol=1e-6)
    labels.write_text("cat\ndog\n")
    with pytest.raises(ModelError, match="2 names but the network has 3 outputs"):
        sensmap.load_model(path, labels=labels)


def test_lambda_layer_is_refused_under_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="safe mode"):
        sensmap.load_model(path)


def test_unknown_custom_layer_is_refused(tmp_path):
    @keras.saving.register_keras_serializable(package="sensmap_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(Doubler()(inputs)))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, outputs).save(path)
    keras.saving.get_custom_objects().clear()
    with pytest.raises(ModelError):
        sensmap.load_model(path)


def test_bad_model_files_and_shapes(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        sensmap.load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"definitely not a zip")
    with pytest.raises(ModelError, match="cannot load junk.keras"):
        sensmap.load_model(junk)
    flat = keras.Input((10,))
    with pytest.raises(ModelError, match="input must be images"):
        sensmap.load_model(keras.Model(flat, keras.layers.Dense(3, activation="softmax")(flat)))
    image = keras.Input((8, 8, 3))
    with pytest.raises(ModelError, match="output must be one class vector"):
        sensmap.load_model(keras.Model(image, keras.layers.Conv2D(4, 1)(image)))
    with pytest.raises(ModelError, match="output must be one class vector"):
        sensmap.load_model(keras.Model(image, keras.layers.Dense(1)(keras.layers.Flatten()(image))))
    variable = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(variable)
    with pytest.raises(ModelError, match="not fixed"):
        sensmap.load_model(keras.Model(variable, keras.layers.Dense(3)(pooled)))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("none", [0.0, 127.5, 255.0]),
        ("unit", [0.0, 0.5, 1.0]),
        ("tf", [-1.0, 0.0, 1.0]),
        ("mobilenet_v2", [-1.0, 0.0, 1.0]),
        ("MobileNetV2", [-1.0, 0.0, 1.0]),
    ],
)
def test_preprocess_modes(name, expected):
    x = tf.constant(np.array([0.0, 127.5, 255.0], np.float32)[None, None, :, None] * np.ones((1, 1, 3, 3), np.float32))
    out = np.asarray(make_preprocess(name)(x))[0, 0, :, 0]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_caffe_and_torch_preprocess_and_unknown_name():
    x = tf.constant(np.full((1, 1, 1, 3), 255.0, np.float32))
    caffe = np.asarray(make_preprocess("caffe")(x))[0, 0, 0]
    np.testing.assert_allclose(caffe, [255 - 103.939, 255 - 116.779, 255 - 123.68], atol=1e-3)  # BGR
    torch = np.asarray(make_preprocess("torch")(x))[0, 0, 0]
    np.testing.assert_allclose(
        torch, (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), atol=1e-4
    )
    with pytest.raises(ModelError, match="unknown preprocessing"):
        make_preprocess("zscore")


def test_imagenet_names_ship_with_the_package(tmp_path, monkeypatch):
    names = imagenet_class_names()
    assert len(names) == 1000 and names[934] == "hotdog" and names[269] == "timber_wolf"


def test_class_index_lookup_is_forgiving(mobilenet_025):
    assert mobilenet_025.class_index("timber wolf") == 269
    assert mobilenet_025.class_index("Timber_Wolf") == 269
    assert mobilenet_025.class_index("269") == 269
    with pytest.raises(ParameterError, match="Did you mean"):
        mobilenet_025.class_index("timber wulf")


# Photos whose top classes the shared README lists (MobileNetV2, squash, bilinear).
README_TOP1 = {
    "cat_720p.jpg": "Egyptian_cat",
    "chelsea.png": "Egyptian_cat",
    "coffee.png": "espresso",
    "hot_dog.jpg": "hotdog",
    "parrot.jpg": "macaw",
    "owl.jpg": "ruffed_grouse",
    "wolf_snow.webp": "timber_wolf",
    "horse_haflinger.webp": "sorrel",
    "horses_icelandic.webp": "bison",
    "deer_whitetail.webp": "impala",
}


@pytest.mark.slow
def test_mobilenet_v2_classifies_shared_photos_as_documented(mobilenet_v2):
    for name, expected in README_TOP1.items():
        top = sensmap.classify(mobilenet_v2, shared_photo(name), top=3)
        assert top[0].name == expected, (name, top)
    pets = {p.name for p in sensmap.classify(mobilenet_v2, shared_photo("pets.jpg"), top=2)}
    assert pets == {"Italian_greyhound", "Boston_bull"}
    horse = {p.name for p in sensmap.classify(mobilenet_v2, shared_photo("horse_mangalarga.jpg"), top=3)}
    assert horse == {"Great_Dane", "whippet", "Saluki"}


@pytest.mark.slow
def test_several_networks_load_and_classify(shared_weights_dir):
    for file in (
        "mobilenet_v1_0.25_128.weights.h5",
        "mobilenet_v1_0.5_160.weights.h5",
        "mobilenet_v1_0.75_192.weights.h5",
    ):
        network = sensmap.load_model("MobileNet", weights=shared_weights_dir / file)
        top = sensmap.classify(network, shared_photo("coffee.png"), top=5)
        assert "espresso" in [p.name for p in top], (file, top)


@pytest.mark.parametrize("name", ["MobileNet", "MobileNetV2"])
@pytest.mark.parametrize("alpha", [0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_mobilenet_parameter_counts_from_arithmetic_equal_the_built_architecture(name, alpha):
    from sensmap.models import built_parameter_count
    from sensmap.registry import parameter_count

    options = {"alpha": alpha, "input_shape": (160, 128, 3)}
    assert parameter_count(name, options) == built_parameter_count(name, options)
    few = {**options, "classes": 7}
    assert parameter_count(name, few) == built_parameter_count(name, few)


def test_parameter_count_is_the_real_count_of_each_variant(shared_weights_dir):
    from sensmap.models import built_parameter_count
    from sensmap.registry import parameter_count

    small = parameter_count("MobileNet", {"alpha": 0.75, "input_shape": (192, 192, 3)})
    loaded = sensmap.load_model(
        "MobileNet", weights=shared_weights_dir / "mobilenet_v1_0.75_192.weights.h5", alpha=0.75,
        input_shape=(192, 192, 3),
    )  # fmt: skip
    assert small == loaded.parameter_count == 2_601_976
    assert parameter_count("mobilenet", {"alpha": 0.25, "input_shape": [128, 128, 3]}) == 475_544
    assert parameter_count("MobileNetV2") == 3_538_984  # Keras' published 3.5 M
    assert parameter_count("ResNet50") is None and parameter_count("MobileNet", {"include_top": False}) is None
    assert built_parameter_count("MobileNetV3Small", {"alpha": 0.75}) > 0
    with pytest.raises(sensmap.ModelError, match="cannot build"):
        built_parameter_count("MobileNet", {"input_shape": (8, 8, 3)})

"""ONNX Runtime against Keras: the same MobileNetV2 (shared ImageNet weights), the same photo, the same default map.

The network is converted to ONNX with tf2onnx (an NHWC graph and one with an NCHW input, both with a dynamic
batch axis); each network makes one warm-up map, then ``--repeats`` timed default maps (283 forward passes).
Prints forward passes per second (the engine's own ``passes_per_s``: passes over the time after the
reference pass), seconds per map and the largest |Δp| of the ONNX maps' outputs against the Keras map's.
Not a test: tests assert correctness (tests/test_onnx.py), this prints numbers.

    .venv/bin/python benchmarks/onnx_bench.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _needs import require  # noqa: E402

require({"tf2onnx": "tf2onnx", "onnx": "onnx"})  # the conversion; checked before TensorFlow loads

import numpy as np

import sensmap

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests"))

from onnx_builders import keras_to_onnx  # noqa: E402


def timed_maps(network: sensmap.Network, photo: sensmap.LoadedImage, repeats: int) -> tuple[list[dict], object]:
    sensmap.sensitivity_map(network, photo)  # warm-up: tracing, ONNX Runtime's first runs
    results = [sensmap.sensitivity_map(network, photo) for _ in range(repeats)]
    rows = [{"passes_per_s": r.metadata["passes_per_s"], "seconds": r.metadata["timings_s"]["total"]} for r in results]
    return rows, results[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photo", default=str(SHARED / "photos" / "hot_dog.jpg"))
    args = parser.parse_args()
    keras_net = sensmap.load_model("MobileNetV2", weights=SHARED / "weights" / "mobilenet_v2_1.0_224.weights.h5")
    photo = sensmap.load_image(args.photo)
    networks = {"Keras (TensorFlow)": keras_net}
    with tempfile.TemporaryDirectory() as folder:
        for layout in ("NHWC", "NCHW"):
            path = keras_to_onnx(keras_net.model, Path(folder) / f"mobilenet_v2_{layout}.onnx", nchw=layout == "NCHW")
            networks[f"ONNX Runtime, {layout} input"] = sensmap.load_model(path, preprocess="mobilenet_v2")
        print(f"MobileNetV2, default map (283 passes), {Path(args.photo).name}, medians of {args.repeats}")
        print(f"{'network':<28} {'passes/s':>9} {'s/map':>7} {'max |Δp| vs Keras':>18}")
        reference = None
        for name, network in networks.items():
            rows, result = timed_maps(network, photo, args.repeats)
            reference = result if reference is None else reference
            delta = float(np.abs(result.outputs - reference.outputs).max())
            rate = statistics.median(r["passes_per_s"] for r in rows)
            seconds = statistics.median(r["seconds"] for r in rows)
            print(f"{name:<28} {rate:>9.1f} {seconds:>7.2f} {delta:>18.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

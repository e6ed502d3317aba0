"""Occlusion benchmark: sensmap's exact engine against the forward-only ceiling and common baselines.

One process, the same network and photo for every method, run side by side:

(a) ceiling   — the same compiled model call on pre-built distinct occluded inputs (no building cost)
(b) naive     — one ``model.predict`` per occluded image (timed on a prefix of the windows)
(c) tf-explain style — build all occluded images in memory, then ``model.predict(batch_size=32)``
(d) sensmap exact + dense — ``sensmap.sensitivity_map`` (the reference of every ratio)
(e) sensmap fast + dense — ``mode="fast"`` (approximate: fewer passes; SSIM and top-5 % IoU against (d) reported)
(f) sensmap exact + incremental — ``engine="incremental"`` (exact; max |Δp| against (d) reported)
(g) sensmap fast + incremental — both (the same windows as (e): max |Δp| against (e) reported)

Incremental rows are timed warm: their functions are traced first by ``sensmap.prepare_incremental`` (once per
process and cover size; the seconds it took are reported as "tracing", for what that map still needed).

Networks: MobileNetV2 with the real shared weights, ResNet50 with ``weights=None`` (timing only).
Maps: default (sizes 1/2, 1/4, 1/8 → 283 passes), fine (1/4, 1/8, 1/16 → 1 235 passes) and detailed
(1/2, 1/4, 1/8, 1/16 → 1 244 passes; only the ceiling among the baselines). Targets on the detailed map
(printed, stored): exact + incremental ≤ 0.35× exact + dense, fast + incremental ≤ 0.2×, exact + dense
≥ 0.9× the ceiling's speed.
Prints forward passes/s, seconds per whole map, peak RSS above the start of each method, and each method's
time per map over sensmap exact's (and exact's over each baseline's); writes JSON and a Markdown table.
Medians over ``--repeats`` runs. Not a test: tests assert correctness, this prints numbers.

    .venv/bin/python benchmarks/occlusion_bench.py --repeats 3 --out benchmarks/results
    .venv/bin/python benchmarks/occlusion_bench.py --networks MobileNetV2 --maps detailed --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _needs import require  # noqa: E402

require({"skimage": "scikit-image"})  # SSIM; checked before TensorFlow loads

import numpy as np

import sensmap
from sensmap.engine import auto_batch_size, fit_image, tf
from sensmap.fills import fill_canvas
from sensmap.windows import window_grids

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAPS = {"default": (0.5, 0.25, 0.125), "fine": (0.25, 0.125, 0.0625), "detailed": (0.5, 0.25, 0.125, 0.0625)}
NAIVE_PREFIX = 60  # windows timed for the one-predict-per-image baseline (it is far too slow for all)
CEILING_PREFIX = 640  # windows the ceiling builds in memory (0.6 MB each at 224 px) and times


class PeakRss:
    """Samples this process's resident memory every 5 ms; ``peak_mb`` is the peak above the start."""

    def __init__(self) -> None:
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def occluded(pixels: np.ndarray, canvas: np.ndarray, box: np.ndarray) -> np.ndarray:
    y0, x0, y1, x1 = box
    image = pixels.copy()
    image[y0:y1, x0:x1] = canvas[y0:y1, x0:x1]
    return image


def method_ceiling(network, pixels, canvas, boxes, batch):
    boxes = boxes[:CEILING_PREFIX]
    batches = [
        np.stack([occluded(pixels, canvas, b) for b in boxes[i : i + batch]]) for i in range(0, len(boxes), batch)
    ]
    tensors = [tf.constant(b) for b in batches]
    network.compiled_predict(tensors[0])  # traced already; keep the first call out of the timing
    start = time.perf_counter()
    for tensor in tensors:
        network.compiled_predict(tensor).numpy()
    return time.perf_counter() - start, len(boxes), None


def method_naive(network, pixels, canvas, boxes, batch):
    model, preprocess = network.model, network.preprocess
    subset = boxes[:NAIVE_PREFIX]
    model.predict(preprocess(tf.constant(pixels[None])), verbose=0)
    start = time.perf_counter()
    for box in subset:
        model.predict(preprocess(tf.constant(occluded(pixels, canvas, box)[None])), verbose=0)
    return time.perf_counter() - start, len(subset), None


def method_tf_explain(network, pixels, canvas, boxes, batch):
    model, preprocess = network.model, network.preprocess
    start = time.perf_counter()
    everything = np.stack([occluded(pixels, canvas, b) for b in boxes])
    model.predict(preprocess(tf.constant(everything)), batch_size=32, verbose=0)
    return time.perf_counter() - start, len(boxes), None


def method_sensmap(network, pixels, boxes, batch, sizes, mode, engine):
    start = time.perf_counter()
    result = sensmap.sensitivity_map(
        network, pixels.astype(np.uint8), sizes=sizes, batch_size=batch, mode=mode, engine=engine
    )
    return time.perf_counter() - start, result.passes, result


BASELINES = {"a_ceiling": method_ceiling, "b_naive": method_naive, "c_tf_explain": method_tf_explain}
MAP_BASELINES = {"detailed": ("a_ceiling",)}  # default: every baseline
SENSMAP = {
    "d_exact_dense": ("exact", "dense"),
    "e_fast_dense": ("fast", "dense"),
    "f_exact_incremental": ("exact", "incremental"),
    "g_fast_incremental": ("fast", "incremental"),
}
#: Detailed map: the most time ÷ exact dense's each row may take (the ceiling: the least speed ratio).
TARGETS = {"f_exact_incremental": 0.35, "g_fast_incremental": 0.2}
CEILING_SHARE = 0.9


def quality(exact, approximate) -> dict:
    """How close a map is to the exact one: SSIM (scikit-image), top-5 % IoU, max |Δ| of the outputs."""
    from skimage.metrics import structural_similarity

    from sensmap.metrics import top_iou

    span = float(exact.support.max() - exact.support.min()) or 1.0
    return {
        "ssim": float(structural_similarity(exact.support, approximate.support, data_range=span)),
        "top5_iou": float(top_iou(exact.support, approximate.support, 0.05)),
        "max_abs_output_diff": float(np.abs(exact.outputs - approximate.outputs).max()),
        "refined_fraction": approximate.metadata.get("refined_fraction"),
    }


def run(network, photo, map_name: str, repeats: int) -> dict:
    sizes = MAPS[map_name]
    height, width = network.input_size
    pixels = np.round(fit_image(photo, network.input_size)).astype(np.float32)
    canvas = fill_canvas(pixels, "gray")
    boxes = np.concatenate([grid.boxes for grid in window_grids(height, width, sizes, 0.5)])
    batch = auto_batch_size(height, width)
    sensmap.sensitivity_map(network, pixels.astype(np.uint8), sizes=(0.5,))  # warm up: trace, allocate
    tracing = sensmap.prepare_incremental(network, sizes, wait=True).seconds  # what this map still needs traced
    rows, results = {}, {}
    for name in [*MAP_BASELINES.get(map_name, BASELINES), *SENSMAP]:
        rates, seconds, peaks = [], [], []
        for _ in range(repeats):
            with PeakRss() as rss:
                if name in SENSMAP:
                    elapsed, passes, result = method_sensmap(network, pixels, boxes, batch, sizes, *SENSMAP[name])
                    results[name] = result
                    whole = elapsed  # the whole map, whatever number of passes it needed
                else:
                    elapsed, passes, _ = BASELINES[name](network, pixels, canvas, boxes, batch)
                    whole = elapsed * len(boxes) / passes  # a timed prefix stands for the whole map
            rates.append(passes / elapsed)
            seconds.append(whole)
            peaks.append(rss.peak_mb)
        rows[name] = {
            "passes_per_s": statistics.median(rates),
            "seconds_per_map": statistics.median(seconds),
            "peak_rss_mb": max(peaks),
            "runs": repeats,
            "timed_passes": passes,
        }
    exact = rows["d_exact_dense"]["seconds_per_map"]
    for row in rows.values():
        row["vs_exact"] = row["seconds_per_map"] / exact  # > 1: slower than sensmap exact + dense
    for name, reference in (("e_fast_dense", "d_exact_dense"), ("f_exact_incremental", "d_exact_dense"),
                            ("g_fast_incremental", "d_exact_dense")):  # fmt: skip
        rows[name]["quality"] = quality(results[reference], results[name])
        rows[name]["engine_used"] = results[name].engine
    same = results["e_fast_dense"], results["g_fast_incremental"]
    rows["g_fast_incremental"]["vs_fast_dense"] = {
        "same_windows": bool(np.array_equal(same[0].measured, same[1].measured)),
        "max_abs_output_diff": float(np.abs(same[0].outputs - same[1].outputs).max()),
    }
    rows["f_exact_incremental"]["tracing_s"] = tracing
    entry = {"passes": len(boxes), "batch_size": batch, "methods": rows}
    if map_name == "detailed":
        entry["targets"] = {
            name: {"limit": limit, "vs_exact": rows[name]["vs_exact"], "met": rows[name]["vs_exact"] <= limit}
            for name, limit in TARGETS.items()
        }
        share = rows["a_ceiling"]["seconds_per_map"] / exact  # exact's speed over the ceiling's
        entry["targets"]["d_exact_dense"] = {"limit": CEILING_SHARE, "of_ceiling": share, "met": share >= CEILING_SHARE}
    return entry


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = tf.config.list_logical_devices("GPU")
    device = f"GPU {gpus[0].name}" if gpus else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {device}, TF {tf.__version__}, Python {platform.python_version()}"


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}  ", f"Photo: {report['photo']}; medians of {report['repeats']} runs.", ""]
    lines.append(
        "| network | map | windows | method | forward passes/s | s/map | time ÷ exact dense's | peak RSS (MB) "
        "| quality vs exact |"
    )
    lines.append("|---|---|---:|---|---:|---:|---:|---:|---|")
    for key, entry in report["results"].items():
        network, map_name = key.split("/")
        for name, row in entry["methods"].items():
            note = ""
            if "quality" in row:
                q = row["quality"]
                note = f"SSIM {q['ssim']:.3f}, top-5% IoU {q['top5_iou']:.2f}, max|Δp| {q['max_abs_output_diff']:.1e}"
            if "vs_fast_dense" in row:
                same = row["vs_fast_dense"]
                note += f"; vs fast+dense: {'same' if same['same_windows'] else 'other'} windows, "
                note += f"max|Δp| {same['max_abs_output_diff']:.1e}"
            if "tracing_s" in row:
                note += f"; tracing {row['tracing_s']:.1f} s (once per process)"
            lines.append(
                f"| {network} | {map_name} | {entry['passes']} | {name} | {row['passes_per_s']:.1f} | "
                f"{row['seconds_per_map']:.2f} | {row['vs_exact']:.2f} | {row['peak_rss_mb']:.0f} | {note} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photo", default=str(SHARED / "photos" / "hot_dog.jpg"))
    parser.add_argument("--networks", nargs="+", default=["MobileNetV2", "ResNet50"])
    parser.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    photo = sensmap.load_image(args.photo)
    report = {"machine": machine(), "photo": Path(args.photo).name, "repeats": args.repeats, "results": {}}
    for name in args.networks:
        if name == "MobileNetV2":
            network = sensmap.load_model(name, weights=SHARED / "weights" / "mobilenet_v2_1.0_224.weights.h5")
        else:
            network = sensmap.load_model(name, weights=None)
        for map_name in args.maps:
            entry = run(network, photo, map_name, args.repeats)
            report["results"][f"{name}/{map_name}"] = entry
            print(f"{name} {map_name}: " + ", ".join(
                f"{m} {r['seconds_per_map']:.2f} s" for m, r in entry["methods"].items()), flush=True)  # fmt: skip
            for target, check in entry.get("targets", {}).items():
                value = check.get("vs_exact", check.get("of_ceiling"))
                bound = "≤" if "vs_exact" in check else "≥"
                verdict = "met" if check["met"] else "MISSED"
                print(f"  target {target}: {value:.2f} {bound} {check['limit']} — {verdict}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "occlusion_bench.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / "occlusion_bench.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

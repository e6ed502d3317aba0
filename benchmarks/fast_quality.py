"""Offline quality of fast mode (``sensmap.fast``) against exact fine maps on the shared photos.

Fine map: sizes (0.25, 0.125, 0.0625), stride 0.5 = 1235 windows, on MobileNetV2 (224×224) or
MobileNet v1 α 0.25 (128×128, ``--network MobileNet025``). Each window's
forward pass is independent of the others, so a fast run is simulated exactly from the cached
outputs of an exact run: the plan only ever sees the windows it asked for (the others are NaN when
``fill`` runs). Per photo: passes, speed-up, SSIM (scikit-image, data range of the exact map) and
IoU of the top-5 % pixels, for the map of the target column of ``FastPlan.fill`` applied to the
support of all 1000 classes (as the engine does).

    python benchmarks/fast_quality.py [--network MobileNetV2|MobileNet025] [--data DIR] [--speedup 3]

Exact outputs are cached in ``--data`` (one ``.npz`` per photo; default ``/tmp/fastdata`` for
MobileNetV2, ``/tmp/fastdata_m025`` for MobileNet025); missing ones are computed with TensorFlow
(about 15–25 s per photo on 2 CPU cores for MobileNetV2, about 1–2 s for MobileNet025).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _needs import require  # noqa: E402

require({"skimage": "scikit-image"})  # SSIM; checked before TensorFlow loads

from sensmap.fast import FastPlan  # noqa: E402
from sensmap.result import support_maps  # noqa: E402
from sensmap.windows import window_grids  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
WEIGHTS = REPO.parent / "shared" / "weights"
#: name → (architecture, weights file, input side in pixels, default cache folder)
NETWORKS = {
    "MobileNetV2": ("MobileNetV2", WEIGHTS / "mobilenet_v2_1.0_224.weights.h5", 224, Path("/tmp/fastdata")),
    "MobileNet025": ("MobileNet", WEIGHTS / "mobilenet_v1_0.25_128.weights.h5", 128, Path("/tmp/fastdata_m025")),
}
SIZES = (0.25, 0.125, 0.0625)
STRIDE = 0.5
TOP_FRACTION = 0.05


def photo_files() -> list[Path]:
    return sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})


def cached_exact(data: Path, network_name: str = "MobileNetV2") -> dict[str, dict[str, np.ndarray]]:
    """``{photo stem: {outputs, reference_probabilities, target}}``, computing what is missing."""
    data.mkdir(parents=True, exist_ok=True)
    missing = [p for p in photo_files() if not (data / f"{p.stem}.npz").is_file()]
    if missing:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import sensmap

        architecture, weights, _, _ = NETWORKS[network_name]
        network = sensmap.load_model(architecture, weights=str(weights))
        for photo in missing:
            result = sensmap.sensitivity_map(network, str(photo), sizes=SIZES, stride=STRIDE)
            np.savez(
                data / f"{photo.stem}.npz",
                outputs=result.outputs,
                reference_probabilities=result.reference_probabilities,
                target=result.target,
            )
    cache = {}
    for photo in photo_files():
        with np.load(data / f"{photo.stem}.npz") as z:
            cache[photo.stem] = {k: np.array(z[k]) for k in ("outputs", "reference_probabilities", "target")}
    return cache


def top_iou(exact: np.ndarray, approx: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    n = int(round(fraction * exact.size))
    a = np.argsort(-exact.ravel(), kind="stable")[:n]
    b = np.argsort(-approx.ravel(), kind="stable")[:n]
    return len(np.intersect1d(a, b)) / len(np.union1d(a, b))


def simulate(
    outputs: np.ndarray, reference: np.ndarray, target: int, speedup: float, side: int = 224
) -> tuple[np.ndarray, int, float]:
    """Fast map support (H, W), passes and planning seconds, from an exact run's outputs."""
    grids = window_grids(side, side, SIZES, STRIDE)
    support_all = reference[None, :].astype(np.float64) - outputs.astype(np.float64)  # (windows, classes)
    started = time.perf_counter()
    plan = FastPlan(grids, speedup=speedup)
    while (indices := plan.next_windows()) is not None:
        plan.record(indices, support_all[indices, target])  # only the windows it asked for
    seen = np.where(plan.measured[:, None], support_all, np.nan)
    filled = plan.fill(seen)
    seconds = time.perf_counter() - started
    return support_maps(filled[:, target], grids).mean(axis=0), plan.passes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="MobileNetV2")
    parser.add_argument("--data", type=Path, default=None, help="cache folder (default: per network)")
    parser.add_argument("--speedup", type=float, default=3.0)
    args = parser.parse_args()
    from skimage.metrics import structural_similarity

    side, data = NETWORKS[args.network][2], args.data or NETWORKS[args.network][3]
    grids = window_grids(side, side, SIZES, STRIDE)
    total = sum(g.count for g in grids)
    rows = []
    print(f"{'photo':18s} {'passes':>6s} {'speed-up':>8s} {'SSIM':>6s} {'IoU5%':>6s} {'plan s':>6s}")
    for name, d in cached_exact(data, args.network).items():
        target = int(d["target"])
        reference = d["reference_probabilities"]
        exact_support = reference[target].astype(np.float64) - d["outputs"][:, target].astype(np.float64)
        exact = support_maps(exact_support, grids).mean(axis=0)
        approx, passes, seconds = simulate(d["outputs"], reference, target, args.speedup, side)
        ssim = structural_similarity(exact, approx, data_range=exact.max() - exact.min())
        iou = top_iou(exact, approx)
        rows.append((ssim, iou, passes))
        print(f"{name:18s} {passes:6d} {total / passes:7.2f}x {ssim:6.3f} {iou:6.3f} {seconds:6.2f}")
    ssim, iou, passes = (np.array(c) for c in zip(*rows, strict=True))
    print(f"worst: SSIM {ssim.min():.3f}  IoU {iou.min():.3f}  | mean: SSIM {ssim.mean():.3f}  IoU {iou.mean():.3f}")
    print(f"passes {passes.max()} of {total} (speed-up ≥ {total / passes.max():.2f}x)")


if __name__ == "__main__":
    main()

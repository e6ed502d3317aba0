"""Offline quality of fast mode (``sensmap.fast``) against exact maps on the shared photos.

Maps (stride 0.5): ``detailed`` — sizes 1/2, 1/4, 1/8, 1/16 (1244 windows at 224 px), the dashboard's
detailed map; ``default`` — 1/2, 1/4, 1/8 (283 windows); ``fine`` — 1/4, 1/8, 1/16 (1235 windows). On
MobileNetV2 (224×224) or MobileNet v1 α 0.25 (128×128, ``--network MobileNet025``).

Each window's forward pass is independent of the others, so a fast run is simulated exactly from the
cached outputs of one exact run: the real :class:`sensmap.fast.FastPlan` is driven as the engine drives
it (``next_windows`` → look up those windows' cached outputs → ``record``), sees only the windows it asked
for (the others are NaN when ``fill`` runs) and fills the support of all classes. Per photo: passes,
speed-up, SSIM (scikit-image, data range of the exact map) and IoU of the top-5 % pixels of the target's
map. Iterating on the algorithm therefore takes seconds, without the network.

    python benchmarks/fast_quality.py [--network MobileNetV2|MobileNet025] [--map detailed|default|fine|all]
                                      [--cache DIR] [--speedup N] [--json PATH]

Exact outputs of every window of sizes 1/2, 1/4, 1/8 and 1/16 (every map's windows are among them) are
cached in ``--cache`` (one ``.npz`` per photo; default ``benchmarks/results/fast_cache_<network>``);
missing ones are computed once with TensorFlow (about 15–30 s per photo on 2 CPU cores for MobileNetV2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _needs import require  # noqa: E402

require({"skimage": "scikit-image"})  # SSIM; checked before TensorFlow loads

from sensmap.fast import FastPlan, default_speedup  # noqa: E402
from sensmap.metrics import top_iou  # noqa: E402
from sensmap.result import support_maps  # noqa: E402
from sensmap.windows import window_grids  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
WEIGHTS = REPO.parent / "shared" / "weights"
RESULTS = REPO / "benchmarks" / "results"
#: name → (architecture, weights file, input side in pixels)
NETWORKS = {
    "MobileNetV2": ("MobileNetV2", WEIGHTS / "mobilenet_v2_1.0_224.weights.h5", 224),
    "MobileNet025": ("MobileNet", WEIGHTS / "mobilenet_v1_0.25_128.weights.h5", 128),
}
STRIDE = 0.5
#: Cover sizes of the cached exact run: every map below uses a subset of them.
CACHE_SIZES = (0.5, 0.25, 0.125, 0.0625)
MAPS = {
    "detailed": (0.5, 0.25, 0.125, 0.0625),
    "default": (0.5, 0.25, 0.125),
    "fine": (0.25, 0.125, 0.0625),
}
TOP_FRACTION = 0.05


def photo_files() -> list[Path]:
    return sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})


def cached_exact(cache: Path, network_name: str = "MobileNetV2") -> dict[str, dict[str, np.ndarray]]:
    """``{photo stem: {outputs, reference_probabilities, target}}`` of exact runs over CACHE_SIZES,
    computing (once) what is missing."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in photo_files() if not (cache / f"{p.stem}.npz").is_file()]
    if missing:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import sensmap

        architecture, weights, _ = NETWORKS[network_name]
        network = sensmap.load_model(architecture, weights=str(weights))
        for photo in missing:
            started = time.perf_counter()
            result = sensmap.sensitivity_map(network, str(photo), sizes=CACHE_SIZES, stride=STRIDE)
            np.savez(
                cache / f"{photo.stem}.npz",
                outputs=result.outputs,
                reference_probabilities=result.reference_probabilities,
                target=result.target,
            )
            print(f"cached {photo.stem}: {len(result.outputs)} windows in {time.perf_counter() - started:.1f} s")
    exact = {}
    for photo in photo_files():
        with np.load(cache / f"{photo.stem}.npz") as z:
            exact[photo.stem] = {k: np.array(z[k]) for k in ("outputs", "reference_probabilities", "target")}
    return exact


def map_rows(side: int, sizes: tuple[float, ...]) -> np.ndarray:
    """Rows of the cached outputs (CACHE_SIZES' windows) that hold the windows of ``sizes``, in order."""
    grids = window_grids(side, side, CACHE_SIZES, STRIDE)
    offsets = np.cumsum([0] + [g.count for g in grids])
    parts = [np.arange(offsets[CACHE_SIZES.index(s)], offsets[CACHE_SIZES.index(s) + 1]) for s in sizes]
    return np.concatenate(parts)


def simulate(
    outputs: np.ndarray, reference: np.ndarray, target: int, grids: list, speedup: float
) -> tuple[np.ndarray, FastPlan, float]:
    """Fast map support (H, W), the finished plan and planning seconds, from an exact run's outputs on ``grids``.

    Drives FastPlan as :func:`sensmap.engine.run_fast` does: a "forward pass" looks up the cached
    output of the window asked for; ``fill`` gets the support of every class, NaN where not measured.
    """
    support_all = reference[None, :].astype(np.float64) - outputs.astype(np.float64)  # (windows, classes)
    started = time.perf_counter()
    plan = FastPlan(grids, speedup=speedup)
    while (indices := plan.next_windows()) is not None:
        plan.record(indices, support_all[indices, target])  # only the windows it asked for
    seen = np.where(plan.measured[:, None], support_all, np.nan)
    filled = plan.fill(seen)
    seconds = time.perf_counter() - started
    return support_maps(filled[:, target], grids).mean(axis=0), plan, seconds


def evaluate(
    exact_runs: dict[str, dict[str, np.ndarray]], side: int, sizes: tuple[float, ...], speedup: float | None
) -> list[dict]:
    """One row per photo: passes, windows, SSIM and top-5 % IoU of the fast map against the exact map."""
    from skimage.metrics import structural_similarity

    grids = window_grids(side, side, sizes, STRIDE)
    rows_of_map = map_rows(side, sizes)
    speedup = default_speedup(grids) if speedup is None else speedup
    rows = []
    for name, run in exact_runs.items():
        target = int(run["target"])
        reference = run["reference_probabilities"]
        outputs = run["outputs"][rows_of_map]
        exact_support = reference[target].astype(np.float64) - outputs[:, target].astype(np.float64)
        exact = support_maps(exact_support, grids).mean(axis=0)
        approx, plan, seconds = simulate(outputs, reference, target, grids, speedup)
        ssim = float(structural_similarity(exact, approx, data_range=exact.max() - exact.min()))
        rows.append(
            {
                "photo": name,
                "passes": plan.passes,
                "windows": len(outputs),
                "ssim": ssim,
                "iou": top_iou(exact, approx, TOP_FRACTION),
                "plan_s": seconds,
            }
        )
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    windows = rows[0]["windows"]
    print(f"\n{title}: {windows} windows")
    print(f"{'photo':18s} {'passes':>6s} {'speed-up':>8s} {'SSIM':>6s} {'IoU5%':>6s} {'plan s':>6s}")
    for r in rows:
        speed = windows / r["passes"]
        print(f"{r['photo']:18s} {r['passes']:6d} {speed:7.2f}x {r['ssim']:6.3f} {r['iou']:6.3f} {r['plan_s']:6.2f}")
    ssim, iou, passes = (np.array([r[k] for r in rows]) for k in ("ssim", "iou", "passes"))
    print(f"worst: SSIM {ssim.min():.3f}  IoU {iou.min():.3f}  | mean: SSIM {ssim.mean():.3f}  IoU {iou.mean():.3f}")
    print(f"passes {passes.max()} of {windows} (speed-up ≥ {windows / passes.max():.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="MobileNetV2")
    parser.add_argument("--map", choices=[*MAPS, "all"], default="all")
    parser.add_argument("--cache", type=Path, default=None, help="exact-output cache folder (default: per network)")
    parser.add_argument("--speedup", type=float, default=None, help="default: the engine's (default_speedup)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    side = NETWORKS[args.network][2]
    cache = args.cache or RESULTS / f"fast_cache_{args.network}"
    exact_runs = cached_exact(cache, args.network)
    report = {}
    for name in MAPS if args.map == "all" else [args.map]:
        report[name] = evaluate(exact_runs, side, MAPS[name], args.speedup)
        print_table(f"{args.network}, {name} map", report[name])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

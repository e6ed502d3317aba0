"""Images per second of ``sensmap audit`` on a local Ray (1 and 2 workers) against a plain loop of
``sensitivity_map`` on the same images — not a test; prints a table.

    .venv/bin/python benchmarks/audit_bench.py                 # 48 images, MobileNet α0.25 128px, 283 passes each
    .venv/bin/python benchmarks/audit_bench.py --images 96 --workers 1 2 4

Rates: *end-to-end* counts the whole ``run_audit`` call (Ray start, actor start-up with TensorFlow import and
model load, index and summary); *pipeline* runs from the pipeline start to the last image (actor start-up
included); *steady* counts from the first finished image to the last; *fixed* is the wall time the steady rate
does not explain (Ray and actor start-up, index, summary). The plain loop loads the model once
(not timed), then maps every image and writes its ``.npz`` (``write``) or not (``map only``).
The photos are synthetic scenes of various sizes plus the real photos of ``../shared/photos``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v1_0.25_128.weights.h5"


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` photos: the shared real photos first, then synthetic scenes from 64 to 480 px."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in sorted((SHARED / "photos").glob("*")):
        if len(paths) < count and photo.suffix.lower() in (".jpg", ".png", ".webp"):
            target = folder / photo.name
            shutil.copyfile(photo, target)
            paths.append(target)
    rng = np.random.default_rng(0)
    while len(paths) < count:
        i = len(paths)
        height, width = int(rng.integers(64, 480)), int(rng.integers(64, 480))
        base = rng.uniform(40, 220, size=3)
        pixels = np.clip(base + rng.normal(0, 25, size=(height, width, 3)), 0, 255).astype(np.uint8)
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        pixels[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.uniform(0, 255, size=3).astype(np.uint8)
        path = folder / f"scene_{i:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], sizes: tuple[float, ...], write_to: Path | None) -> float:
    import sensmap

    network = sensmap.load_model("MobileNet", weights=WEIGHTS)
    sensmap.sensitivity_map(network, sensmap.load_image(paths[0]), sizes=sizes)  # trace the compiled call
    if write_to is not None:
        write_to.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, path in enumerate(paths):
        result = sensmap.sensitivity_map(network, sensmap.load_image(path), sizes=sizes)
        if write_to is not None:
            (write_to / f"{i}.npz").write_bytes(result.to_npz_bytes())
    return len(paths) / (time.perf_counter() - started)


def audit_run(folder: Path, out: Path, workers: int, sizes: tuple[float, ...]) -> dict[str, float]:
    from sensmap.audit import resolve_model, run_audit

    spec = resolve_model("MobileNet", weights=WEIGHTS)
    started = time.perf_counter()
    stats = run_audit(folder, [spec], out, workers=workers, sizes=sizes)
    total = time.perf_counter() - started
    assert stats.maps == stats.processed, stats
    return {
        "end_to_end": stats.processed / total,
        "pipeline": stats.images_per_s,
        "steady": stats.steady_images_per_s,
        "seconds": total,
        "cpus": stats.cluster,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    args = parser.parse_args(argv)
    if not WEIGHTS.is_file():
        print(f"missing {WEIGHTS} (the benchmark expects ../shared beside the repository)", file=sys.stderr)
        return 2
    sizes = tuple(args.sizes)
    with tempfile.TemporaryDirectory(prefix="sensmap-audit-bench-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images)
        print(f"{len(paths)} images, MobileNet α0.25 128px, sizes {sizes}, {os.cpu_count()} CPU cores", flush=True)
        rows = [("plain loop, map only", plain_loop(paths, sizes, None), None, None, None, "")]
        rows.append(("plain loop, map + write .npz", plain_loop(paths, sizes, root / "plain"), None, None, None, ""))
        baseline = rows[-1][1]
        for workers in args.workers:
            numbers = audit_run(root / "images", root / f"audit-{workers}", workers, sizes)
            rows.append((f"audit, {workers} worker{'s' if workers > 1 else ''}", numbers["steady"], numbers["pipeline"],
                         numbers["end_to_end"], numbers["seconds"], numbers["cpus"]))  # fmt: skip
    print(f"\n{'run':<30} {'steady img/s':>12} {'pipeline':>9} {'end-to-end':>11} {'wall s':>7} {'fixed s':>8}"
          "  vs plain loop + write")  # fmt: skip
    for name, steady, pipeline, end, seconds, cpus in rows:
        ratio = f"{steady / baseline:5.2f}x steady, {end / baseline:5.2f}x end-to-end" if pipeline is not None else ""
        fixed = seconds - len(paths) / steady if seconds is not None else None  # start-up, index and summary
        cells = [f"{steady:12.2f}"] + [f"{v:>{w}.2f}" if v is not None else " " * w
                                         for v, w in ((pipeline, 9), (end, 11), (seconds, 7), (fixed, 8))]  # fmt: skip
        print(f"{name:<30} {' '.join(cells)}  {ratio} {cpus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

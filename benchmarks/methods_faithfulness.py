"""Which map does the network follow? Occlusion, Grad-CAM and RISE on the shared photos, scored for faithfulness
against one shared random baseline, and the randomisation sanity check on a few photos.

For each photo (MobileNetV2, its top-1 class): the occlusion map (default settings, 283 passes), Grad-CAM and RISE
(``--masks``, default 500), each with ``sensmap.faithfulness`` against random orders of patches as large as the
occlusion map's finest cover (:func:`sensmap.sidebyside.shared_block`: one random baseline for all three), the
margins over random and the winner (:mod:`sensmap.sidebyside`). Then ``sensmap.randomisation_check`` of each method
on the first ``--sanity-photos`` photos (the maps above are the originals). Prints Markdown tables and writes them,
with the numbers as JSON, to ``--out``.

    python benchmarks/methods_faithfulness.py [--masks 500] [--sanity-photos 3] [--out benchmarks/results]

About 10 minutes on 2 CPU cores (12 photos; three sanity checks with 4 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PHOTOS = REPO.parent / "shared" / "photos"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_1.0_224.weights.h5"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=int, default=500, help="RISE masks per map")
    parser.add_argument("--sanity-photos", type=int, default=3, help="photos with a randomisation check")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    import sensmap
    from sensmap import sidebyside
    from sensmap.methods import explain, randomisation_check

    network = sensmap.load_model("MobileNetV2", weights=WEIGHTS)
    options = {"occlusion": {}, "gradcam": {}, "rise": {"masks": args.masks, "seed": 0}}
    rows, checks, numbers = [], [], {}
    started = time.perf_counter()
    for number, path in enumerate(sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in SUFFIXES)):
        photo = sensmap.load_image(path)
        maps = [explain(network, photo, method=method, **settings) for method, settings in options.items()]
        block = sidebyside.shared_block(maps)
        for result in maps:
            sensmap.faithfulness(network, photo, result, block=block)
        comparison = sidebyside.side_by_side(maps, photo.pixels.shape[:2])
        numbers[path.name] = {"target": maps[0].target_name, **comparison.as_dict(),
                              "faithfulness": comparison.faithfulness}  # fmt: skip
        rows.append((path.name, maps[0].target_name, maps[0].probability, comparison))
        print(f"{path.name}: {comparison.verdict} ({time.perf_counter() - started:.0f} s)", flush=True)
        if number < args.sanity_photos:
            for result in maps:
                check = randomisation_check(network, photo, method=result.method, original=result,
                                            **options[result.method])  # fmt: skip
                checks.append((path.name, check))
                print(f"  {result.method_label}: ρ {', '.join(f'{r:+.2f}' for r in check.spearman)}", flush=True)
    seconds = time.perf_counter() - started
    text = tables(rows, checks, args.masks, seconds)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "methods_faithfulness.md").write_text(text, encoding="utf-8")
    sanity = [{"photo": name, **check.as_dict()} for name, check in checks]
    (args.out / "methods_faithfulness.json").write_text(
        json.dumps({"photos": numbers, "sanity": sanity, "seconds": seconds}, indent=1), encoding="utf-8"
    )


def tables(rows: list, checks: list, masks: int, seconds: float) -> str:
    """Markdown: per photo the AUCs and margins of each method and the winner; wins; the randomisation checks."""
    from sensmap.result import METHOD_LABELS

    methods = ("occlusion", "gradcam", "rise")
    head = ["photo", "class (p)", "block", "random del / ins"]
    head += [f"{METHOD_LABELS[m]} del / ins (margin)" for m in methods] + ["most faithful"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    wins: Counter[str] = Counter()
    for name, target, probability, comparison in rows:
        first = comparison.faithfulness["occlusion"]
        cells = [name, f"{target} ({probability:.0%})", f"{comparison.block} px",
                 f"{first['random_deletion_auc']:.3f} / {first['random_insertion_auc']:.3f}"]  # fmt: skip
        for method in methods:
            auc = comparison.faithfulness[method]
            cells.append(f"{auc['deletion_auc']:.3f} / {auc['insertion_auc']:.3f} ({comparison.margins[method]:+.3f})")
        best = comparison.best
        wins[best or "none"] += 1
        cells.append(METHOD_LABELS[best] if best else "none beats random")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Wins: " + ", ".join(f"{METHOD_LABELS.get(m, m)} {wins[m]}" for m in (*methods, "none")), ""]
    lines += [f"RISE: {masks} masks, grid 7, seed 0; occlusion: default map (283 passes); {seconds:.0f} s in all.", ""]
    lines += ["| photo | method | weighted layers random | Spearman ρ per step | outcome |", "|---|---|---|---|---|"]
    for name, check in checks:
        steps = ", ".join(f"{count}/{check.total_layers}" for count in check.randomised)
        pairs = zip(check.spearman, check.flat, strict=True)
        rhos = ", ".join(f"{r:+.2f}" + (" (flat)" if flat else "") for r, flat in pairs)
        outcome = "passes" if check.trustworthy else "fails (not trustworthy)"
        lines.append(f"| {name} | {METHOD_LABELS[check.method]} | {steps} | {rhos} | {outcome} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

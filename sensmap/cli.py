"""Command-line interface: ``sensmap models | classify | map`` (also ``python -m sensmap``).

User errors print one line on stderr and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import SensmapError

EXIT_USER_ERROR = 2


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"constructor option {text!r} must look like key=value, e.g. alpha=0.75")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _parse_fill(text: str) -> str:
    return text


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="photo: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame)")
    parser.add_argument("--model", "-m", required=True, help="Keras Applications name (see `sensmap models`) or .keras")
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (SENSMAP_WEIGHTS_DIR, else Keras' download cache), a .weights.h5 file, or a weights folder",
    )
    parser.add_argument("--labels", help="class names file, one per line (own models)")
    parser.add_argument("--preprocess", help="none, tf, caffe, torch, unit, or a Keras Applications family name")
    parser.add_argument(
        "--option",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="constructor option passed through, JSON values (e.g. alpha=0.75, input_shape=[192,192,3])",
    )
    parser.add_argument("--fit", choices=("squash", "crop"), default="squash", help="how the photo fits the input")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensmap",
        description="Where does an image classifier look? Occlusion sensitivity maps for Keras networks.",
    )
    parser.add_argument("--version", action="version", version=f"sensmap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the Keras Applications networks and their weights status")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    classify = commands.add_parser("classify", help="top classes of a photo")
    _add_model_arguments(classify)
    classify.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    classify.add_argument("--json", action="store_true", help="print JSON instead of a table")

    smap = commands.add_parser("map", help="occlusion sensitivity map of a photo")
    _add_model_arguments(smap)
    smap.add_argument("--target", help="class index or name (default: the top-1 class)")
    smap.add_argument("--sizes", type=float, nargs="+", default=None, metavar="F",
                      help="cover sizes as fractions of the image side (default 0.5 0.25 0.125)")  # fmt: skip
    smap.add_argument("--stride", type=float, default=0.5, help="stride as a fraction of the cover side (default 0.5)")
    smap.add_argument("--fill", type=_parse_fill, default="gray", help="gray, mean, black, white, blur, or R,G,B")
    smap.add_argument("--score", default="probability", help="probability (default) or log-odds")
    smap.add_argument("--batch-size", type=int, default=None, help="forward-pass batch size (default: automatic)")
    smap.add_argument("--max-passes", type=int, default=None, help="refuse maps needing more forward passes")
    smap.add_argument("--out-npz", help="write the full result (arrays + JSON metadata) to this .npz file")
    smap.add_argument("--out-png", help="write the photo with the map as overlay and a colour bar to this .png")
    smap.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "classify":
            return _cmd_classify(args)
        return _cmd_map(args)
    except SensmapError as error:
        print(f"sensmap: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sensmap: interrupted", file=sys.stderr)
        return 130


def _cmd_models(args: argparse.Namespace) -> int:
    from .registry import REGISTRY, read_manifest, weights_dir_from_env, weights_status

    rows = [
        {
            "name": spec.name,
            "family": spec.family,
            "input_size": spec.input_size,
            "params_millions": spec.params_millions,
            "weights": weights_status(spec),
        }
        for spec in REGISTRY.values()
    ]
    folder = weights_dir_from_env()
    local = [
        {"name": entry.label, "application": entry.application, "options": entry.options, "file": str(entry.path)}
        for entry in (read_manifest(folder) if folder else [])
    ]
    if args.json:
        print(json.dumps({"networks": rows, "local_weights": local}, indent=2, default=list))
        return 0
    print(f"{'network':<20} {'family':<15} {'input':>6} {'params':>8}  weights")
    for row in rows:
        size, params = f"{row['input_size']:>4}px", f"{row['params_millions']:>7.1f}M"
        print(f"{row['name']:<20} {row['family']:<15} {size} {params}  {row['weights']}")
    if local:
        print(f"\nLocal weights in {folder}:")
        for entry in local:
            print(f"  {entry['name']:<28} {entry['file']}")
    elif folder is None:
        print("\nweights: 'download' = Keras fetches them on first use into ~/.keras/models; "
              "set SENSMAP_WEIGHTS_DIR for an offline weights folder")  # fmt: skip
    return 0


def _load(args: argparse.Namespace):
    from .models import load_model

    return load_model(
        args.model, weights=args.weights, labels=args.labels, preprocess=args.preprocess, **dict(args.option)
    )


def _cmd_classify(args: argparse.Namespace) -> int:
    from .engine import classify
    from .images import load_image

    photo = load_image(args.image)
    network = _load(args)
    predictions = classify(network, photo, top=args.top, fit=args.fit)
    if args.json:
        print(json.dumps([p.__dict__ for p in predictions], indent=2))
        return 0
    print(f"{network.name} on {os.path.basename(args.image)}:")
    for rank, prediction in enumerate(predictions, 1):
        print(f"{rank:>3}. {prediction.name:<30} {prediction.probability:7.2%}  (class {prediction.index})")
    return 0


class _ProgressBar:
    """A one-line progress bar on stderr: passes done / total, rate and time left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr is not None
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        left = (total - done) / rate if rate else 0.0
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} passes  {rate:5.1f}/s  {left:4.0f}s left"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _cmd_map(args: argparse.Namespace) -> int:
    from .engine import sensitivity_map
    from .images import load_image
    from .windows import DEFAULT_SIZES

    photo = load_image(args.image)
    network = _load(args)
    target: int | str | None = args.target
    if target is not None and str(target).strip().isdigit():
        target = int(target)
    result = sensitivity_map(
        network,
        photo,
        sizes=tuple(args.sizes) if args.sizes else DEFAULT_SIZES,
        stride=args.stride,
        fill=args.fill,
        target=target,
        score=args.score,
        batch_size=args.batch_size,
        progress=_ProgressBar(not args.quiet),
        fit=args.fit,
        max_passes=args.max_passes,
    )
    support = result.support
    timing = result.metadata["timings_s"]["forward"]
    print(f"{network.name}: target {result.target_name!r} (class {result.target}), p = {result.probability:.2%}")
    print(f"{result.passes} forward passes in {timing:.1f} s ({result.passes / max(timing, 1e-9):.0f}/s)")
    print(f"support: max {support.max() * 100:+.1f} pp, min {support.min() * 100:+.1f} pp "
          "(support > 0: the area supports the class)")  # fmt: skip
    if args.out_npz:
        _write(args.out_npz, result.to_npz_bytes())
        print(f"wrote {args.out_npz}")
    if args.out_png:
        from .report import overlay_png

        _write(args.out_png, overlay_png(photo, result))
        print(f"wrote {args.out_png}")
    return 0


def _write(path: str, data: bytes) -> None:
    from .errors import SensmapError

    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise SensmapError(f"cannot write {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

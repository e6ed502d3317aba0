"""Command-line interface: ``sensmap models | classify | map | audit`` (also ``python -m sensmap``).

User errors print one line on stderr and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import ParameterError, SensmapError
from .masks import DEFAULT_GRID, DEFAULT_MASKS, DEFAULT_P
from .result import METHODS

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

    smap = commands.add_parser("map", help="sensitivity map of a photo: occlusion, Grad-CAM or RISE")
    _add_model_arguments(smap)
    smap.add_argument("--target", help="class index or name (default: the top-1 class)")
    smap.add_argument("--method", default="occlusion", choices=list(METHODS),
                      help="occlusion (default): cover windows in turn; gradcam: Grad-CAM (relative unit); "
                      "rise: random masks (approximate, expected change in pp)")  # fmt: skip
    smap.add_argument("--sizes", type=float, nargs="+", default=None, metavar="F",
                      help="occlusion: cover sizes, fractions of the image side (default 0.5 0.25 0.125)")  # fmt: skip
    smap.add_argument("--stride", type=float, default=None,
                      help="occlusion: stride as a fraction of the cover side (default 0.5)")  # fmt: skip
    smap.add_argument("--masks", type=int, default=None,
                      help=f"rise: random masks = forward passes (default {DEFAULT_MASKS})")  # fmt: skip
    smap.add_argument("--mask-grid", type=int, default=None,
                      help=f"rise: cells per side of each random mask (default {DEFAULT_GRID})")  # fmt: skip
    smap.add_argument("--mask-p", type=float, default=None,
                      help=f"rise: share of cells that keep the photo (default {DEFAULT_P})")  # fmt: skip
    smap.add_argument("--seed", type=int, default=None, help="rise: seed of the masks (default 0; same seed, same map)")
    smap.add_argument("--fill", type=_parse_fill, default="gray", help="gray, mean, black, white, blur, or R,G,B")
    smap.add_argument("--score", default="probability", help="probability (default) or log-odds")
    smap.add_argument("--batch-size", type=int, default=None, help="forward-pass batch size (default: automatic)")
    smap.add_argument("--max-passes", type=int, default=None, help="refuse maps needing more forward passes")
    smap.add_argument("--mode", default=None, choices=["exact", "incremental", "fast"],
                      help="occlusion: which windows are measured: exact (default, all of them); fast: approximate, "
                      "about 3x fewer passes; incremental: exact with --engine incremental")  # fmt: skip
    smap.add_argument("--engine", default=None, choices=["dense", "incremental", "auto"],
                      help="occlusion: how each measured window is computed: dense (default: the whole network); "
                      "incremental: same numbers, recomputing only what each cover changes (traces first, seconds); "
                      "auto: incremental where the network gains, dense where it cannot")  # fmt: skip
    smap.add_argument("--out-npz", help="write the full result (arrays + JSON metadata) to this .npz file")
    smap.add_argument("--out-png", help="write the photo with the map as overlay and a colour bar to this .png")
    smap.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    audit = commands.add_parser("audit", help="occlusion maps of a whole dataset on Ray Data (resumable)")
    audit.add_argument("input", help="folder of images (recursive; label = folder name) or a .parquet/.csv "
                       "manifest (image_id, path, optional label, optional box x0,y0,x1,y1 in fractions)")  # fmt: skip
    audit.add_argument("--model", "-m", action="append", required=True, metavar="[NAME=]MODEL",
                       help="Keras Applications name or .keras file; repeat for several networks; NAME= sets the "
                       "folder name maps/model=NAME")  # fmt: skip
    audit.add_argument("--weights", action="append", help="as for `map`: one for every network, or one per --model")
    audit.add_argument("--labels", action="append", help="class names file (own models): one, or one per --model")
    audit.add_argument("--preprocess", action="append", help="preprocessing name: one, or one per --model")
    audit.add_argument("--option", action="append", type=_parse_option, default=[], metavar="KEY=VALUE",
                       help="constructor option for the Keras Applications networks (JSON values)")  # fmt: skip
    audit.add_argument("--out", "-o", required=True, help="audit folder (created; the same command resumes it)")
    audit.add_argument("--sizes", type=float, nargs="+", default=None, metavar="F",
                       help="cover sizes as fractions of the image side (default 0.5 0.25 0.125)")  # fmt: skip
    audit.add_argument("--stride", type=float, default=0.5, help="stride as a fraction of the cover side (default 0.5)")
    audit.add_argument("--fill", type=_parse_fill, default="gray", help="gray, mean, black, white, blur, or R,G,B")
    audit.add_argument("--score", default="probability", help="probability (default) or log-odds")
    audit.add_argument("--fit", choices=("squash", "crop"), default="squash", help="how each photo fits the input")
    audit.add_argument("--target", help="class index or name for every image, or 'label' for each image's label "
                       "(default: each image's top-1 class)")  # fmt: skip
    audit.add_argument("--batch-size", type=int, default=None, help="forward-pass batch size (default: automatic)")
    audit.add_argument("--max-passes", type=int, default=None, help="refuse maps needing more forward passes")
    audit.add_argument("--mode", default="exact", choices=["exact", "incremental", "fast"],
                       help="as for `map`: which windows are measured (exact or fast)")  # fmt: skip
    audit.add_argument("--engine", default=None, choices=["dense", "incremental", "auto"],
                       help="as for `map`: how each window is computed (incremental and auto give the same maps, "
                       "each worker tracing once)")  # fmt: skip
    audit.add_argument("--workers", type=int, default=None,
                       help="model actors (default: one per GPU, else one per core up to 4; on a cluster "
                       "without GPUs a quarter of its CPUs)")  # fmt: skip
    audit.add_argument("--threads", type=int, default=None,
                       help="TensorFlow threads per actor (default: cores/workers)")  # fmt: skip
    audit.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    audit.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray (default: enough "
                       "for the actors and two decode tasks)")  # fmt: skip
    audit.add_argument("--retries", type=int, default=1, help="resume this many times after a worker dies (default 1)")
    audit.add_argument("--retry-errors", action="store_true", help="try the images that failed before again")
    audit.add_argument("--no-summary", action="store_true", help="skip summary.png / summary.html")
    audit.add_argument("--json", action="store_true", help="print the run's numbers as JSON")
    audit.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "classify":
            return _cmd_classify(args)
        if args.command == "audit":
            return _cmd_audit(args)
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


class _TerminalProgress:
    """A tqdm bar on stderr: count done / total, rate and time left, in ``unit`` (passes for maps, images for
    audits). Silent with ``--quiet`` or when stderr is not a terminal (logs and pipes get no bar)."""

    def __init__(self, enabled: bool, unit: str) -> None:
        self.enabled = enabled and sys.stderr is not None and sys.stderr.isatty()
        self.unit = unit
        self.bar: Any = None

    def update(self, done: int, total: int, postfix: str = "") -> None:
        """Move the bar to ``done`` of ``total``; closes it when the work is complete."""
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {self.unit}", file=sys.stderr, dynamic_ncols=True, leave=True)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def passes(self, done: int, total: int) -> None:
        """The engine's progress callback: forward passes done of the map's total."""
        self.update(done, total)

    def images(self, progress: Any) -> None:
        """The audit's progress callback: images done of this run's total (errors shown beside the bar)."""
        errors = f"{progress.errors} error{'s' if progress.errors != 1 else ''}" if progress.errors else ""
        self.update(progress.done, progress.total, errors)


#: ``sensmap map`` options of each method: ``(argument, keyword of the method's function)``.
_MAP_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "occlusion": (("sizes", "sizes"), ("stride", "stride"), ("mode", "mode"), ("engine", "engine"),
                  ("batch_size", "batch_size"), ("max_passes", "max_passes")),
    "gradcam": (),
    "rise": (("masks", "masks"), ("mask_grid", "grid"), ("mask_p", "p"), ("seed", "seed"),
             ("batch_size", "batch_size"), ("max_passes", "max_passes")),
}  # fmt: skip


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen method's settings from the command line; options of another method are refused."""
    own = dict(_MAP_OPTIONS[args.method])
    for name in {name for options in _MAP_OPTIONS.values() for name, _ in options} - set(own):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise ParameterError(f"{flag} does not apply to --method {args.method}")
    options = {keyword: getattr(args, name) for name, keyword in own.items() if getattr(args, name) is not None}
    if "sizes" in options:
        options["sizes"] = tuple(options["sizes"])
    return {"fill": args.fill, "score": args.score, "fit": args.fit, **options}


def _cmd_map(args: argparse.Namespace) -> int:
    from .images import load_image
    from .methods import explain
    from .render import format_value, support_unit
    from .report import mode_text
    from .result import resolve_mode_engine

    resolve_mode_engine(args.mode or "exact", args.engine)  # a contradiction fails before the network loads
    photo = load_image(args.image)
    options = _method_options(args)
    network = _load(args)
    result = explain(
        network,
        photo,
        method=args.method,
        target=args.target,  # a name, or digits read as a class index
        progress=_TerminalProgress(not args.quiet and args.method != "gradcam", "passes").passes,
        **options,
    )
    support = result.support
    timings = result.metadata["timings_s"]
    timing = timings.get("forward", timings["total"])
    print(f"{network.name}: target {result.target_name!r} (class {result.target}), p = {result.probability:.2%}")
    rate = result.passes / max(timing, 1e-9)
    how = mode_text(result) if result.windowed else result.approximation_note or "exact"
    if result.windowed:
        reason = result.metadata.get("engine_reason", "")
        how += f"; engine {result.engine}" + (f" ({reason})" if reason else "")
    print(f"{result.method_label}: {result.passes} forward passes in {timing:.1f} s ({rate:.0f}/s); {how}")
    factor, unit = support_unit(result)  # percentage points of probability, log-odds, or Grad-CAM's relative unit
    print(f"support: max {format_value(support.max() * factor, unit)}, min {format_value(support.min() * factor, unit)}"
          f" ({result.unit_description})")  # fmt: skip
    if args.out_npz:
        _write(args.out_npz, result.to_npz_bytes())
        print(f"wrote {args.out_npz}")
    if args.out_png:
        from .report import overlay_png

        _write(args.out_png, overlay_png(photo, result))
        print(f"wrote {args.out_png}")
    return 0


def _per_model(values: list[str | None] | None, count: int, what: str) -> list[str | None]:
    from .errors import ParameterError

    if not values:
        return [None] * count
    values = [None if value == "-" else value for value in values]  # "-": this network's default
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise ParameterError(f"give one --{what} for every network or one per --model ({count}), not {len(values)}")
    return list(values)


def _fail_after_from_env() -> tuple[str, int] | None:
    """Test hook: ``SENSMAP_AUDIT_FAIL_AFTER=raise:N`` or ``exit:N`` crashes each worker after N maps."""
    value = os.environ.get("SENSMAP_AUDIT_FAIL_AFTER", "").strip()
    if not value:
        return None
    mode, _, count = value.partition(":")
    return (mode, int(count)) if mode in ("raise", "exit") and count.isdigit() else None


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AuditError, resolve_model, run_audit
    from .windows import DEFAULT_SIZES

    count = len(args.model)
    weights = _per_model(args.weights, count, "weights")
    labels = _per_model(args.labels, count, "labels")
    preprocess = _per_model(args.preprocess, count, "preprocess")
    specs = [
        resolve_model(model, weights=w or "imagenet", labels=lab, preprocess=pre, options=dict(args.option))
        for model, w, lab, pre in zip(args.model, weights, labels, preprocess, strict=True)
    ]
    if not args.quiet:
        names = ", ".join(f"{spec.network} (maps/model={spec.name})" for spec in specs)
        print(f"auditing {args.input} with {names} into {args.out}", file=sys.stderr)
    try:
        stats = run_audit(
            args.input,
            specs,
            args.out,
            sizes=tuple(args.sizes) if args.sizes else DEFAULT_SIZES,
            stride=args.stride,
            fill=args.fill,
            score=args.score,
            fit=args.fit,
            target=args.target,
            batch_size=args.batch_size,
            max_passes=args.max_passes,
            mode=args.mode,
            engine=args.engine,
            workers=args.workers,
            threads=args.threads,
            address=args.address,
            num_cpus=args.num_cpus,
            progress=_TerminalProgress(not args.quiet, "images").images,
            summary=not args.no_summary,
            retry_errors=args.retry_errors,
            retries=args.retries,
            fail_after=_fail_after_from_env(),
        )
    except AuditError as error:
        print(f"sensmap: audit stopped: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2, default=str))
        return 0
    print(f"{stats.images} images, {len(stats.models)} network(s): {stats.skipped} already done, "
          f"{stats.processed} processed now ({stats.maps} maps, {stats.errors} errors)")  # fmt: skip
    if stats.processed:
        print(f"{stats.images_per_s:.2f} images/s over {stats.pipeline_s:.1f} s (worker start-up included; "
              f"{stats.steady_images_per_s:.2f}/s after the first image), "
              f"{stats.workers} worker(s) on {stats.cluster}")  # fmt: skip
    failed = stats.failed_images
    if failed:
        print(f"{failed} image(s) have errors (listed in the index and the summary); "
              "--retry-errors tries them again")  # fmt: skip
    print(f"index: {stats.index_path}")
    if stats.summary:
        print(f"summary: {stats.summary['summary.html']} and summary.png")
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

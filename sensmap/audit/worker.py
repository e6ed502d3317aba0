"""What runs in the Ray workers: the CPU decode tasks that fit each photo to every network grid, and the
:class:`AuditWorker` actor that maps each image and writes its ``.npz`` (or error record). Both are
imported by Ray from this module, so they stay at its top level."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ParameterError
from ..images import LoadedImage, fit_image, load_image
from ..result import SensitivityResult, json_default
from ..tf_setup import configure_tensorflow
from .failures import _InjectedCrash
from .folder import ERROR_SUFFIX, MAPS_DIR, TARGET_LABEL, AuditSettings, _atomic_write, _now
from .index import _index_fields
from .networks import ModelSpec


def _grid_column(grid: Sequence[int]) -> str:
    return f"px_{int(grid[0])}x{int(grid[1])}"


def _decode_rows(batch: dict[str, np.ndarray], grids: Sequence[tuple[int, int]], fit: str) -> dict[str, Any]:
    """CPU task: decode each photo and fit it to every network grid (uint8 bytes; empty on error)."""
    count = len(batch["image_id"])
    errors, meta, heights, widths, refit = [], [], [], [], []
    pixels: dict[str, list[bytes]] = {_grid_column(g): [] for g in grids}
    for i in range(count):
        problem = str(batch["problem"][i] or "")
        photo = None
        if not problem:
            try:
                photo = load_image(str(batch["path"][i]))
            except Exception as exc:  # noqa: BLE001 - any unreadable image is an error row, never a stop
                problem = str(exc) or type(exc).__name__
        errors.append(problem)
        heights.append(photo.height if photo is not None else 0)
        widths.append(photo.width if photo is not None else 0)
        exact = True
        for grid in grids:
            data = b""
            if photo is not None:
                fitted = fit_image(photo, grid, fit)
                as_bytes = fitted.astype(np.uint8)
                if np.array_equal(as_bytes, fitted):
                    data = as_bytes.tobytes()
                else:  # a resampling that is not whole numbers: the worker fits the photo itself
                    exact = False
            pixels[_grid_column(grid)].append(data)
        refit.append(not exact)
        meta.append(
            json.dumps(
                {
                    "source": photo.source,
                    "sha256": photo.sha256,
                    "notes": list(photo.notes),
                    "format": photo.format,
                    "original_size": list(photo.original_size),
                }
                if photo is not None
                else {}
            )
        )
    out = {name: batch[name] for name in ("image_id", "key", "path", "label", "box", "todo")}
    out.update(error=np.array(errors, dtype=object), photo=np.array(meta, dtype=object))
    out.update(photo_h=np.array(heights, dtype=np.int64), photo_w=np.array(widths, dtype=np.int64))
    out["refit"] = np.array(refit, dtype=bool)
    for name, values in pixels.items():
        out[name] = np.array(values, dtype=object)
    return out


class _InputProblem(Exception):
    pass


def _row_record(row: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    box = row["box"]
    box = [float(v) for v in box] if box is not None and len(box) == 4 and not np.isnan(box).any() else None
    return {
        "image_id": str(row["image_id"]),
        "path": str(row["path"]),
        "label": str(row["label"]) if row["label"] else None,
        "box": box,
        "model": spec.name,
        "network": spec.network,
    }


class AuditWorker:
    """Ray actor: loads every network once, then maps each image with each network it still needs.

    Constructed by Ray Data in a worker process from picklable arguments only. ``fail_after`` (tests)
    makes the actor crash after that many maps: ``("raise", n)`` raises, ``("exit", n)`` kills the process.
    """

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        settings: AuditSettings,
        out_dir: str,
        threads: int | None = None,
        fail_after: tuple[str, int] | None = None,
        run_token: str | None = None,
    ) -> None:
        self.run_token = run_token
        self.device = configure_tensorflow(threads)
        from ..engine import sensitivity_map

        self._sensitivity_map = sensitivity_map
        self.specs = list(specs)
        self.settings = settings
        self.out = Path(out_dir)
        self.networks = []
        for spec in self.specs:
            network = spec.load()
            if tuple(network.input_size) != tuple(spec.input_size):
                raise ModelError(
                    f"{spec.network}: the network takes {network.input_size}, the audit planned {spec.input_size}"
                )
            self.networks.append(network)
        self.fail_after = fail_after
        self.mapped = 0
        self.host = socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, maps, errors, messages = [], [], [], []
        for i in range(len(batch["image_id"])):
            row = {name: batch[name][i] for name in batch}
            done = failed = 0
            message = ""
            for k in (int(v) for v in str(row["todo"]).split(",") if v != ""):
                outcome = self._one(row, k)
                if outcome is None:
                    continue
                if outcome == "ok":
                    done += 1
                else:
                    failed += 1
                    message = message or outcome
            ids.append(str(row["image_id"]))
            maps.append(done)
            errors.append(failed)
            messages.append(message)
        return {
            "image_id": np.array(ids, dtype=object),
            "maps": np.array(maps, dtype=np.int64),
            "errors": np.array(errors, dtype=np.int64),
            "error": np.array(messages, dtype=object),
        }

    def _one(self, row: dict[str, Any], k: int) -> str | None:
        """Map one image with network ``k``: ``"ok"``, the error text, or ``None`` if another run did it."""
        spec, network = self.specs[k], self.networks[k]
        folder = self.out / MAPS_DIR / f"model={spec.name}"
        key = str(row["key"])
        final = folder / f"{key}.npz"
        if final.exists() or not self._running():
            return None
        started = time.perf_counter()
        record = _row_record(row, spec)
        try:
            if row["error"]:
                raise _InputProblem(str(row["error"]))
            result = self._map(row, network, spec)
            result.metadata["audit"] = {
                **record,
                **_index_fields(result, record["label"], record["box"], network),
                "seconds": time.perf_counter() - started,
                "host": self.host,
                "pid": os.getpid(),
                "device": self.device,
                "computed_at": _now(),
            }
            data = result.to_npz_bytes()
            if not self._running():
                return None
            _atomic_write(final, data)
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{key}{ERROR_SUFFIX}").unlink()
        except Exception as exc:  # noqa: BLE001 - one image's failure is recorded, the run goes on
            stage = "input" if isinstance(exc, _InputProblem) else "map"
            message = str(exc).strip() or type(exc).__name__
            error = {**record, "stage": stage, "error": message, "at": _now(), "host": self.host, "pid": os.getpid()}
            if not self._running():
                return None
            _atomic_write(folder / f"{key}{ERROR_SUFFIX}", json.dumps(error, default=json_default).encode("utf-8"))
            return message
        self.mapped += 1
        if self.fail_after is not None and self.mapped >= int(self.fail_after[1]):
            if self.fail_after[0] == "exit":
                os._exit(3)
            raise _InjectedCrash(f"injected crash after {self.mapped} maps")
        return "ok"

    def _running(self) -> bool:
        """Whether the driver still runs this audit (its run token exists)."""
        return self.run_token is None or os.path.exists(self.run_token)

    def _map(self, row: dict[str, Any], network: Any, spec: ModelSpec) -> SensitivityResult:
        settings = self.settings
        target: Any = settings.target
        if target == TARGET_LABEL:
            if not row["label"]:
                raise ParameterError("--target label, but this image has no label")
            target = str(row["label"])
        elif target is not None and target.lstrip("-").isdigit():
            target = int(target)
        options = dict(
            sizes=settings.sizes,
            stride=settings.stride,
            fill=settings.fill,
            target=target,
            score=settings.score,
            batch_size=settings.batch_size,
            fit=settings.fit,
            max_passes=settings.max_passes,
            mode=settings.mode,
            engine=settings.engine,
        )
        data = row.get(_grid_column(spec.input_size)) or b""
        if row["refit"] or not data:
            return self._sensitivity_map(network, load_image(str(row["path"])), **options)
        meta = json.loads(str(row["photo"]))
        height, width = spec.input_size
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        # The network input exactly as sensitivity_map would fit the photo (fit_image keeps an H×W photo as is);
        # the photo's own size and identity are restored afterwards.
        fitted = LoadedImage(
            pixels=pixels,
            notes=tuple(meta["notes"]),
            source=meta["source"],
            format=meta["format"],
            original_size=tuple(meta["original_size"]),
            sha256=meta["sha256"],
        )
        result = self._sensitivity_map(network, fitted, **options)
        result.photo_size = (int(row["photo_h"]), int(row["photo_w"]))
        result._photo_support = None
        return result

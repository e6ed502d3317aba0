"""Tracing some cover sizes' incremental functions ahead of the maps, in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..models import Network
from .model import incremental_model


class WarmUp:
    """Incremental functions of some cover sizes being traced in a background thread.

    Started by :func:`sensmap.prepare_incremental`. :attr:`ready`: every cover size settled (traced, failed, or
    not worth it); :meth:`wait` blocks until then; :meth:`status` says how each cover size stands. Meanwhile
    ``engine="auto"`` maps run those covers densely.
    """

    def __init__(self, network: Network, covers: Sequence[tuple[int, int]]) -> None:
        self.network_name = network.name
        self.covers = tuple(dict.fromkeys((int(c[0]), int(c[1])) for c in covers))
        self.error = ""  # why the network cannot run incrementally at all ('' if it can)
        self.seconds: float | None = None  # how long the warm-up took, once done
        self._network = network
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sensmap-warm-up-{network.name}", daemon=True)

    def start(self) -> WarmUp:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            model = incremental_model(self._network)
            model.queue(self.covers)
            for cover in self.covers:
                model.function(cover)  # traces what is still queued; waits for what another thread traces
        except Exception as exc:
            self.error = f"incremental analysis failed ({type(exc).__name__}: {str(exc)[:200]})"
        finally:
            self.seconds = time.perf_counter() - started
            self._done.set()

    @property
    def ready(self) -> bool:
        """True when every cover size is settled: maps then use the traced functions without waiting."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :attr:`ready` (or ``timeout`` seconds); returns :attr:`ready`."""
        return self._done.wait(timeout)

    def status(self) -> dict[str, str]:
        """Per cover size (``"rows×cols px"``): ready, queued, tracing, failed (why), or dense (why: no gain)."""
        label = {cover: f"{cover[0]}×{cover[1]} px" for cover in self.covers}
        if self.error:
            return {label[cover]: f"dense: {self.error}" for cover in self.covers}
        model = incremental_model(self._network, wait=False) if self._network is not None else None
        if model is None:
            return {label[cover]: "queued" for cover in self.covers}
        out = {}
        for cover in self.covers:
            state = model.status(cover)
            if state in ("dense", "failed"):
                state = f"{state}: {model.function(cover, wait=False)[1]}"
            out[label[cover]] = state
        return out

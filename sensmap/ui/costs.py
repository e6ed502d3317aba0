"""What pressing Run costs: forward passes of the maps and of their checks, and the time.

The time comes from one batch of the network timed once per network (cached for all sessions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from .. import metrics
from .networks import NetworkChoice, cached_network

if TYPE_CHECKING:
    from ..models import Network
    from .map_settings import MapSettings

FAITHFULNESS_STEPS = 20
FAITHFULNESS_RANDOM_ORDERS = 3


@st.cache_resource(show_spinner="Timing one batch of the network for the cost estimate…", max_entries=16)
def _seconds_per_pass(choice: NetworkChoice) -> float:
    """Seconds per forward pass: one compiled batch of the network timed after a warm-up batch."""
    from ..engine import auto_batch_size

    network = cached_network(choice)
    height, width = network.input_size
    batch = np.full((auto_batch_size(height, width), height, width, 3), 127.5, dtype=np.float32)
    network.predict(batch)  # traces the compiled function and warms it up
    started = time.perf_counter()
    network.predict(batch)
    return (time.perf_counter() - started) / len(batch)


def faithfulness_passes(steps: int = FAITHFULNESS_STEPS, random_orders: int = FAITHFULNESS_RANDOM_ORDERS) -> int:
    """Forward passes of the faithfulness check run after each map (see :func:`sensmap.metrics.faithfulness_passes`)."""
    return metrics.faithfulness_passes(steps, random_orders)


@dataclass(frozen=True)
class Cost:
    """What pressing Run map costs: the map's passes, the faithfulness check's, and the time."""

    map_passes: int
    check_passes: int
    seconds: float

    @property
    def passes(self) -> int:
        return self.map_passes + self.check_passes


def cost_preview(choice: NetworkChoice, network: Network, settings: MapSettings) -> Cost:
    """Forward passes and estimated seconds of a map plus its faithfulness check (probe timed once per network)."""
    return passes_cost(choice, settings.passes(network), faithfulness_passes())


def passes_cost(choice: NetworkChoice, map_passes: int, check_passes: int) -> Cost:
    """:class:`Cost` of so many map and check passes on this network (seconds from the per-pass probe)."""
    return Cost(map_passes, check_passes, (map_passes + check_passes) * _seconds_per_pass(choice))

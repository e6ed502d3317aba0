"""Pieces of AppTest scripts (``AppTest.from_function`` runs a function's source alone, so scripts import these)."""

from __future__ import annotations

from typing import Any


def small_network_session(weights: str, photo_name: str = "coffee.jpg") -> tuple[Any, Any, Any]:
    """In a running script: add a sample photo and load the small real network (MobileNet α0.25 128 px from
    ``weights``), as the Photos and Networks pages would. Returns ``(photo, choice, network)``."""
    from sensmap import ui

    ui.add_sample_photo(photo_name)
    choice = ui.NetworkChoice("MobileNet", (("alpha", 0.25), ("input_shape", (128, 128, 3))), weights=weights)
    return ui.active_photo(), choice, ui.load_network(choice)

"""Which scores the Map page offers for a network, and which class views a map's score supports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..scores import OUTPUT_KINDS, OUTPUT_SCORES, default_score, supported_views
from ..scores import view_note as view_note  # re-exported: why a class view is not shown
from .map_settings import SCORE_CHOICES

if TYPE_CHECKING:
    from ..models import Network


def score_choices(network: Network) -> dict[str, str]:
    """``{score kind: label}`` of the scores that fit the network's outputs (its default first)."""
    return {kind: SCORE_CHOICES[kind] for kind in OUTPUT_SCORES[network.output_kind]}


def score_for(network: Network, score: str) -> str:
    """``score`` if it fits the network's outputs, else the network's default score."""
    return score if score in OUTPUT_SCORES[network.output_kind] else default_score(network.output_kind)


def has_classes(network: Network) -> bool:
    """Whether the network's outputs are classes or labels (top-5 and a target class make sense)."""
    return "top-k" in supported_views(default_score(network.output_kind))


def no_classes_note(network: Network) -> str:
    """What the Map page says instead of the top-5 for a network without classes."""
    return (
        f"{network.name} outputs {network.num_classes} values per image ({OUTPUT_KINDS[network.output_kind]}): its "
        "maps use a score of the whole output, so there is no class to choose."
    )

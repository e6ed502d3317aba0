"""The Map page's settings (shared with Compare and Report): the choices offered and the chosen ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..serving import ModelWork
from ..windows import DEFAULT_STRIDE
from .session import K_SETTINGS, state

if TYPE_CHECKING:
    from ..models import Network

SIZE_CHOICES: dict[str, float] = {f"1/{n}": 1 / n for n in (2, 3, 4, 6, 8, 12, 16)}
STRIDE_CHOICES: dict[str, float] = {"1 (side by side)": 1.0, "3/4": 0.75, "1/2": 0.5, "1/3": 1 / 3, "1/4": 0.25}
FILL_CHOICES: dict[str, str] = {
    "gray": "gray (middle grey)",
    "mean": "mean colour of the photo",
    "black": "black",
    "white": "white",
    "blur": "blurred photo",
    "custom": "custom colour",
}
SCORE_CHOICES: dict[str, str] = {
    "probability": "probability (pp)",
    "log-odds": "log-odds (saturated networks)",
    "logit": "logit (raw output, no softmax)",
    "sigmoid": "sigmoid (multi-label, pp)",
    "similarity": "similarity (whole output vector)",
}  # the Map page offers those that fit network A's outputs (sensmap.ui.score_views)
MODE_CHOICES: dict[str, str] = {"exact": "Exact", "fast": "Fast, approximate"}  # which windows are measured
ENGINE_CHOICES: dict[str, str] = {"auto": "Auto", "dense": "Dense", "incremental": "Incremental"}  # how
#: The dashboard's default map: detailed (down to 1/16 of the side: 1,244 windows on a 224 px network), exact, auto.
DASHBOARD_SIZES: tuple[float, ...] = (1 / 2, 1 / 4, 1 / 8, 1 / 16)


@dataclass(frozen=True)
class MapSettings:
    """The Map page's settings; :meth:`kwargs` feeds :func:`sensmap.sensitivity_map`.

    Like the Methods page's settings (:class:`sensmap.ui.methods.MethodSettings`) it names its ``method``, its
    cache ``key``, its ``options`` for :func:`sensmap.methods.explain`, its ``passes`` and its model ``work``, so
    :mod:`sensmap.ui.runs` runs either.
    """

    method = "occlusion"

    sizes: tuple[float, ...] = DASHBOARD_SIZES
    stride: float = DEFAULT_STRIDE
    fill: str = "gray"  # a name of FILL_CHOICES; "custom" uses colour
    colour: str = "#808080"
    score: str = "probability"
    mode: str = "exact"  # a key of MODE_CHOICES: which windows are measured
    engine: str = "auto"  # a key of ENGINE_CHOICES: how each measured window is computed

    def fill_value(self) -> str | tuple[float, float, float]:
        if self.fill != "custom":
            return self.fill
        text = self.colour.lstrip("#")
        return tuple(float(int(text[i : i + 2], 16)) for i in (0, 2, 4))  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        """The occlusion settings by :func:`sensmap.sensitivity_map`'s keyword names (no target)."""
        return dict(
            sizes=self.sizes, stride=self.stride, fill=self.fill_value(), score=self.score, mode=self.mode,
            engine=self.engine,
        )  # fmt: skip

    def kwargs(self, target: int | None = None) -> dict[str, Any]:
        return {**self.options(), "target": target}

    def passes(self, network: Network) -> int:
        """Forward passes of the map (:func:`sensmap.plan_passes`)."""
        from ..engine import plan_passes

        return plan_passes(network, self.sizes, self.stride, self.mode)

    def work(self, image: Any, target: int) -> ModelWork:
        """The map as model work (:func:`sensmap.sensitivity_map`, which refines cover size by cover size)."""
        return ModelWork("sensmap.engine:sensitivity_map", (image,), self.kwargs(target), partials=True)

    @property
    def key(self) -> tuple:
        sizes = tuple(round(s, 6) for s in self.sizes)
        return (sizes, round(self.stride, 6), self.fill_value(), self.score, self.mode, self.engine)


def label_for(choices: dict[str, Any], value: Any) -> str:
    """The label of ``value`` in a ``{label: value}`` mapping (closest value for floats)."""
    if isinstance(value, float):
        return min(choices, key=lambda label: abs(choices[label] - value))
    return next((label for label, v in choices.items() if v == value), next(iter(choices)))


def settings() -> MapSettings:
    return state(K_SETTINGS, MapSettings)


def set_settings(value: MapSettings) -> None:
    st.session_state[K_SETTINGS] = value


def describe_settings(value: MapSettings) -> str:
    """One line about the settings, e.g. ``covers 1/2, 1/4 · stride 1/2 · fill gray · probability · exact, auto
    engine``."""
    covers = ", ".join(label_for(SIZE_CHOICES, s) for s in value.sizes)
    fill = value.colour if value.fill == "custom" else value.fill
    how = f"{MODE_CHOICES[value.mode].lower()}, {value.engine} engine"
    return f"covers {covers} · stride {label_for(STRIDE_CHOICES, value.stride)} · fill {fill} · {value.score} · {how}"

"""How the dashboard words things: Markdown-safe text, errors, the colour key, percentages, panel titles, text
without server paths."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import streamlit as st

from .. import render

if TYPE_CHECKING:
    from ..result import SensitivityResult

COLOUR_KEY = f"Colours: {render.COLOUR_CAPTION}. Values in percentage points (pp) of class probability."
"""The colour key of occlusion maps in probability, the dashboard's default (shown on the Home page)."""


DIFFERENCE_KEY = "Difference panel: red where A relies on the area more than B, blue where B relies on it more."


def colour_key(result: SensitivityResult) -> str:
    """The legend under a map: which colour supports, which inhibits, and the unit, from the result's method and
    unit (:func:`sensmap.render.colour_key`; an audit's mean map works too), with an example in pp."""
    example = {"occlusion": "", "rise": " on average over the masks"}.get(result.method)
    pp = result.display_unit[1] == "pp" and example is not None
    return f"Colours: {render.colour_key(result)}" + (
        f" +10 pp: covering the area lowers the probability by 10 points{example}." if pp else ""
    )


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~$:])")


def plain(text: object) -> str:
    """``text`` escaped so Streamlit's Markdown shows it literally (file names, error messages)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


_SERVER_PATH = re.compile(r"(?<![\w./\\~-])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"/\\:,;()\[\]<>]+[/\\])*"
                          r"([^\s'\"/\\:,;()\[\]<>]+)")  # fmt: skip


def without_paths(text: object) -> str:
    """``text`` with every absolute file path (``/a/b/c.jpg``, ``~/x``, ``C:\\x``) cut to its last part
    (``…/c.jpg``): messages written on the server (e.g. an audit's error records) shown in the browser never
    name the server's folders."""
    return _SERVER_PATH.sub(lambda match: f"…/{match.group(1)}", str(text))


def show_error(exc: BaseException) -> None:
    """Show a sensmap error as its message only (never a traceback)."""
    st.error(plain(str(exc)), icon=":material/error:")


def percent(value: float) -> str:
    """A fraction as a percentage (``0.123`` → ``12.3%``); below 0.001 the fraction itself (``0.00012``)."""
    return f"{value:.1%}" if value >= 0.001 else f"{value:.2g}"


def wrap_subplot_titles(fig: Any, width: int = 30) -> Any:
    """Break long subplot titles (Plotly annotations) into lines of about ``width`` characters, so
    the titles of side-by-side panels do not run into each other; the top margin grows to fit."""
    import textwrap

    extra = 0
    for annotation in fig.layout.annotations or ():
        text = annotation.text or ""
        if len(text) > width and "<br>" not in text:
            lines = textwrap.wrap(text, width, break_long_words=False)
            annotation.text = "<br>".join(lines)
            extra = max(extra, len(lines) - 1)
    if extra:
        fig.update_layout(margin_t=(fig.layout.margin.t or 80) + 50 * extra)
    return fig

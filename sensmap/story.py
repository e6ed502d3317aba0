"""The misclassification story in words — numpy only, from the outputs a result already keeps.

For the target class: the strongest supporting and the strongest inhibiting window, where they are
("lower third, centre"), and what the network says when that window is covered (its new top-3), e.g.
"Covering the lower third, centre turns 'soap dish' 41% into 'wolf' 23%".

Per-pixel maps (Grad-CAM, RISE) keep no window outputs: their story names where the map peaks, in
the map's own unit (:attr:`SensitivityResult.display_unit`; Grad-CAM is relative, not a probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import SensitivityResult, format_value

ROW_WORDS = ("upper third", "middle third", "lower third")
COLUMN_WORDS = ("left", "centre", "right")


@dataclass(frozen=True)
class Region:
    """One covered window and what covering it does."""

    kind: str  # "supporting" or "inhibiting"
    window: int  # index into the result's windows
    box: tuple[float, float, float, float]  # (y0, x0, y1, x1) as fractions of the network grid
    position: str  # e.g. "lower third, centre"
    cover_size: float  # fraction of the image side
    support: float  # support of the window (score units; probability: 0..1)
    target_probability: float  # probability of the target class with the window covered
    covered_top3: tuple[tuple[str, float], ...]  # (class name, probability) with the window covered

    @property
    def box_percent(self) -> str:
        y0, x0, y1, x1 = (round(100 * v) for v in self.box)
        return f"rows {y0}–{y1} %, columns {x0}–{x1} %"


def describe_position(box: tuple[float, float, float, float]) -> str:
    """Words for where a box (fractions ``y0, x0, y1, x1``) lies: "upper third, left", "whole image"…"""
    y0, x0, y1, x1 = box
    if y1 - y0 >= 0.99 and x1 - x0 >= 0.99:
        return "whole image"
    row = ROW_WORDS[min(2, int(3 * (y0 + y1) / 2))]
    column = COLUMN_WORDS[min(2, int(3 * (x0 + x1) / 2))]
    return f"{row}, {column}"


def _region(result: SensitivityResult, window: int, kind: str, support: np.ndarray) -> Region:
    height, width = result.input_size
    y0, x0, y1, x1 = (int(v) for v in result.boxes[window])
    box = (y0 / height, x0 / width, y1 / height, x1 / width)
    probabilities = result.outputs[window]
    order = np.argsort(-probabilities, kind="stable")[:3]
    return Region(
        kind=kind,
        window=window,
        box=box,
        position=describe_position(box),
        cover_size=result.sizes[int(result.size_index[window])],
        support=float(support[window]),
        target_probability=float(probabilities[result.target]),
        covered_top3=tuple((result.labels[i], float(probabilities[i])) for i in order),
    )


def key_regions(result: SensitivityResult) -> tuple[Region, Region]:
    """The strongest supporting and the strongest inhibiting window of the target class."""
    support = result.window_support()
    return (
        _region(result, int(np.argmax(support)), "supporting", support),
        _region(result, int(np.argmin(support)), "inhibiting", support),
    )


def display_name(label: str) -> str:
    """A class name as people write it: ``timber_wolf`` → ``timber wolf``."""
    return str(label).replace("_", " ")


def _percent(p: float) -> str:
    """A probability as a percentage with just enough digits not to read 0 % or 100 % when it is not."""
    if 0.01 <= p <= 0.99:
        return f"{100 * p:.0f}%"
    digits = 1
    while digits < 4 and 0 < p < 1 and round(100 * p, digits) in (0.0, 100.0):
        digits += 1
    return f"{100 * p:.{digits}f}%"


def peak_position(values: np.ndarray, strongest: bool = True) -> str:
    """Where the largest (or smallest) value of a map lies, in words ("lower third, left")."""
    height, width = values.shape
    row, col = np.unravel_index(int(np.argmax(values) if strongest else np.argmin(values)), values.shape)
    return describe_position((row / height, col / width, (row + 1) / height, (col + 1) / width))


def _pixel_map_story(result: SensitivityResult, name: str) -> list[str]:
    support = result.support
    if result.method == "gradcam":
        if not np.any(support > 0):
            return [f"Grad-CAM finds no feature that raises '{name}' (the map is zero everywhere)."]
        return [f"Grad-CAM puts its strongest weight for '{name}' in the {peak_position(support)} "
                "(relative unit: the map is scaled to its peak and shows no inhibiting areas)."]  # fmt: skip
    factor, unit = result.display_unit
    lines = [f"RISE ({result.passes:,} random masks): covering the {peak_position(support)} lowers '{name}' by "
             f"{format_value(float(support.max()) * factor, unit, sign=False)} on average."]  # fmt: skip
    if support.min() < 0:
        lines.append(f"The {peak_position(support, strongest=False)} inhibits '{name}': covering it raises it by "
                     f"{format_value(float(-support.min()) * factor, unit, sign=False)} on average.")  # fmt: skip
    return lines


def tell_story(result: SensitivityResult) -> str:
    """A few sentences a user can read next to the map (names, positions, probabilities)."""
    name, probability = display_name(result.target_name), result.probability
    lines = [f"{result.model_name} calls this photo '{name}' ({_percent(probability)})."]
    if not result.windowed:
        return " ".join(lines + _pixel_map_story(result, name))
    strongest, weakest = key_regions(result)
    new_name, new_probability = display_name(strongest.covered_top3[0][0]), strongest.covered_top3[0][1]
    where = f"The strongest support lies in the {strongest.position} (cover {_fraction(strongest.cover_size)})"
    if new_name != name:
        lines.append(f"{where}: covering it turns '{name}' {_percent(probability)} into "
                     f"'{new_name}' {_percent(new_probability)}.")  # fmt: skip
    else:
        lines.append(f"{where}: covering it lowers '{name}' from {_percent(probability)} to "
                     f"{_percent(strongest.target_probability)}.")  # fmt: skip
    if weakest.support < 0:
        lines.append(f"The {weakest.position} inhibits '{name}': covering it raises it to "
                     f"{_percent(weakest.target_probability)}.")  # fmt: skip
    else:
        lines.append(f"No area inhibits '{name}': every cover lowers or keeps its probability.")
    runner_up = ", ".join(f"'{display_name(n)}' {_percent(p)}" for n, p in strongest.covered_top3)
    lines.append(f"With the strongest area covered the network's top 3 are {runner_up}.")
    return " ".join(lines)


def _fraction(size: float) -> str:
    inverse = 1 / size
    return f"1/{inverse:.0f}" if abs(inverse - round(inverse)) < 1e-6 else f"{size:g}"

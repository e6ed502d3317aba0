"""Several methods' maps of one photo and class side by side: how far they agree, how faithful each is against one
shared random baseline, which one the network follows best, and their randomisation checks — numpy only (the
numbers come from the results and their metadata; nothing runs a network here).

Definitions (the Methods page, the reports and ``README.md`` use exactly these):

* **Agreement** of two maps: :func:`sensmap.render.photo_agreement` — Spearman rank correlation (−1..1) and the IoU
  of their top-20 % areas (0..1), both maps resampled onto the photo grid, as the Compare page computes it.
  Scale-free, so maps in different units (occlusion and RISE in pp, Grad-CAM relative) compare.
* **Shared random baseline**: every map's deletion and insertion curves (:func:`sensmap.faithfulness`) are measured
  against random orders of patches of one side, :func:`shared_block` (the occlusion map's finest cover), with the
  same fill, seed and steps, so all methods face the same random curves.
* **Margin** over random (:func:`faithfulness_margin`): ``(random deletion AUC − deletion AUC) + (insertion AUC −
  random insertion AUC)``, in AUC units (probability × fraction of pixels; each AUC lies in 0..1): how much sooner
  than random orders the map's order removes the class (deletion) and brings it back (insertion). > 0: better than
  random; 0: no better than random; at most 2.
* **Verdict**: on this photo the network follows best the map with the largest margin; when that margin is not
  above 0, none of the maps beats random orders. Margins within :data:`TIE` of the best are called about as good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from .errors import ParameterError
from .render import faithfulness_numbers, photo_agreement, sanity_numbers
from .result import METHOD_LABELS, METHODS, SensitivityResult

TIE = 0.02
"""Margins (AUC units) closer than this to the best one count as about as faithful in the verdict."""
VERDICT_RULE = (
    "How the verdict is chosen: for each map, (random deletion AUC − deletion AUC) + (insertion AUC − random "
    "insertion AUC), its margin over random orders of the pixels; the largest margin wins. Every map faces the same "
    "random orders (patches as large as the occlusion map's finest cover), so the margins compare."
)


def shared_block(results: Sequence[SensitivityResult]) -> int:
    """Side (network-grid pixels) of the random orders' patches shared by all maps of a side-by-side: the occlusion
    map's finest cover (its own faithfulness check already uses it), else the largest ``detail_px`` of the maps."""
    results = list(results)
    if not results:
        raise ParameterError("a side-by-side needs at least one map")
    occlusion = [r for r in results if r.method == "occlusion"]
    return occlusion[0].detail_px if occlusion else max(r.detail_px for r in results)


def checked_with(result: SensitivityResult, block: int) -> bool:
    """True when the result carries faithfulness numbers measured against random patches of side ``block``."""
    numbers = faithfulness_numbers(result)
    return numbers is not None and int(numbers.get("block", result.detail_px)) == int(block)


def faithfulness_margin(numbers: dict[str, Any]) -> float:
    """``(random deletion AUC − deletion AUC) + (insertion AUC − random insertion AUC)`` of
    :func:`sensmap.faithfulness` numbers (AUC units, −2..2; > 0 = the map's order beats random orders)."""
    return (numbers["random_deletion_auc"] - numbers["deletion_auc"]) + (
        numbers["insertion_auc"] - numbers["random_insertion_auc"]
    )


@dataclass(frozen=True)
class SideBySide:
    """The numbers of one photo's maps by several methods (see the module docstring for the definitions)."""

    model_name: str
    target_name: str
    methods: tuple[str, ...]  # in METHODS order
    block: int  # side of the shared random patches, network-grid pixels
    agreement: tuple[tuple[str, str, dict[str, float]], ...]  # (method, method, photo_agreement numbers) per pair
    faithfulness: dict[str, dict[str, Any]]  # method → sensmap.faithfulness numbers (shared block)
    margins: dict[str, float]  # method → faithfulness_margin
    sanity: dict[str, dict[str, Any]]  # method → SanityCheck.as_dict(), for the methods checked

    @property
    def best(self) -> str | None:
        """The method with the largest margin over random orders, or None when no margin is above 0."""
        method = max(self.methods, key=lambda m: self.margins[m])
        return method if self.margins[method] > 0 else None

    @property
    def verdict(self) -> str:
        """Which map the network follows best on this photo, in one or two sentences."""
        ranked = sorted(self.methods, key=lambda m: -self.margins[m])
        best = self.best
        if best is None:
            return (
                f"No map beats random orders here: removing or restoring the areas any of the {len(ranked)} maps "
                f"ranks first changes '{self.target_name}' no sooner than random patches do (best margin "
                f"{self.margins[ranked[0]]:+.3f}). Do not read {self.model_name}'s reasons off these maps."
            )
        others = ", ".join(f"{self.margins[m]:+.3f} for {METHOD_LABELS[m]}" for m in ranked[1:])
        text = (
            f"{self.model_name} follows the {METHOD_LABELS[best]} map best on this photo: its order beats random "
            f"orders by {self.margins[best]:+.3f} (deletion and insertion AUC margins combined)"
            + (f", against {others}." if others else ".")
        )
        close = [m for m in ranked[1:] if self.margins[best] - self.margins[m] < TIE]
        if close:
            names = " and ".join(METHOD_LABELS[m] for m in close)
            text += f" {names} {'is' if len(close) == 1 else 'are'} about as faithful (within {TIE:g})."
        check = self.sanity.get(best)
        if check is not None and not check.get("trustworthy", True):
            text += (
                f" But the {METHOD_LABELS[best]} map failed the randomisation check: it barely changes with random "
                "weights, so its faithfulness may come from the photo's structure."
            )
        return text

    def agreement_rows(self) -> list[tuple[str, str, str]]:
        """``(pair, Spearman, top-20 % IoU)`` rows, e.g. ``("occlusion vs Grad-CAM", "+0.62", "0.41")``."""
        return [
            (f"{METHOD_LABELS[a]} vs {METHOD_LABELS[b]}", f"{numbers['spearman']:+.2f}", f"{numbers['top_iou']:.2f}")
            for a, b, numbers in self.agreement
        ]

    def faithfulness_rows(self) -> list[tuple[str, str, str, str]]:
        """``(method, deletion AUC (random), insertion AUC (random), margin)`` rows."""
        rows = []
        for method in self.methods:
            numbers = self.faithfulness[method]
            rows.append((
                METHOD_LABELS[method],
                f"{numbers['deletion_auc']:.3f} (random {numbers['random_deletion_auc']:.3f})",
                f"{numbers['insertion_auc']:.3f} (random {numbers['random_insertion_auc']:.3f})",
                f"{self.margins[method]:+.3f}",
            ))  # fmt: skip
        return rows

    def sanity_rows(self) -> list[tuple[str, str, str]]:
        """``(method, Spearman per step, outcome)`` rows for the methods whose randomisation check ran."""
        rows = []
        for method in self.methods:
            check = self.sanity.get(method)
            if check is None:
                continue
            steps = ", ".join(
                f"{rho:+.2f} ({count}/{check['total_layers']}{', flat' if flat else ''})"
                for rho, count, flat in zip(check["spearman"], check["randomised"], check["flat"], strict=True)
            )
            rows.append((METHOD_LABELS[method], steps, "passes" if check["trustworthy"] else "fails: not trustworthy"))
        return rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (for records and tables)."""
        return {
            "model_name": self.model_name,
            "target_name": self.target_name,
            "methods": list(self.methods),
            "block": self.block,
            "agreement": [{"a": a, "b": b, **numbers} for a, b, numbers in self.agreement],
            "margins": dict(self.margins),
            "best": self.best,
            "verdict": self.verdict,
            "sanity": {method: check["spearman"] for method, check in self.sanity.items()},
        }


def side_by_side(results: Sequence[SensitivityResult], photo_size: tuple[int, int]) -> SideBySide:
    """The side-by-side numbers of maps of one photo, network and class by different methods.

    ``photo_size``: ``(h, w)`` of the photo (the maps are compared on its grid). Every map needs faithfulness
    numbers against the shared random baseline (``sensmap.faithfulness(model, photo, result,
    block=shared_block(results))``); a :class:`ParameterError` says what is missing or inconsistent.
    """
    results = sorted(results, key=lambda r: METHODS.index(r.method))
    if len(results) < 2 or len({r.method for r in results}) != len(results):
        raise ParameterError("a side-by-side needs maps of at least two different methods, one map each")
    first = results[0]
    for result in results[1:]:
        if (result.model_name, result.target, result.input_size, result.photo_size, result.fit, result.fill) != (
            first.model_name, first.target, first.input_size, first.photo_size, first.fit, first.fill
        ):  # fmt: skip
            raise ParameterError(
                "the maps of a side-by-side must come from one network, photo, class, fit and fill "
                f"({result.method_label}: {result.model_name}, '{result.target_name}', fill {result.fill}; "
                f"{first.method_label}: {first.model_name}, '{first.target_name}', fill {first.fill})"
            )
    block = shared_block(results)
    unchecked = [r.method_label for r in results if not checked_with(r, block)]
    if unchecked:
        raise ParameterError(
            f"{', '.join(unchecked)}: no faithfulness numbers against the shared random baseline; run "
            f"sensmap.faithfulness(model, photo, result, block={block}) on each map first"
        )
    faithfulness = {r.method: faithfulness_numbers(r) for r in results}
    sanity = {r.method: sanity_numbers(r) for r in results if sanity_numbers(r) is not None}
    return SideBySide(
        model_name=first.model_name,
        target_name=first.target_name,
        methods=tuple(r.method for r in results),
        block=block,
        agreement=tuple((a.method, b.method, photo_agreement(a, b, photo_size)) for a, b in combinations(results, 2)),
        faithfulness=faithfulness,
        margins={method: faithfulness_margin(numbers) for method, numbers in faithfulness.items()},
        sanity=sanity,
    )

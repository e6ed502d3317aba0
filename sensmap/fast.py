"""Fast mode: adaptive drill-down occlusion — about 3× fewer forward passes, numpy only.

An exact map measures every window of every cover size. Fast mode measures

1. **every window of the coarser sizes** (the longest coarse-to-fine run of sizes that fits the
   pass budget; the coarsest size always), then
2. **the finer sizes only where they matter**, chosen in :data:`NUM_ROUNDS` rounds, each using
   everything measured so far, and
3. **predicts the windows it did not measure** with a per-photo calibrated model (below).

Prediction ("fill") of a finer size, column by column (one column = one class):

* *calibration*: a window's support is modelled as a linear combination (no intercept) of the
  coarser sizes' per-pixel maps averaged over that window's box, fitted by least squares on the
  measured windows of that size (with a small ridge pull towards :data:`BETA_PRIOR` × the next
  coarser map, so that a size with few or no measurements still gets a sensible prediction);
* *residual interpolation*: the residuals (measured − calibrated) are interpolated to the
  unmeasured windows by simple kriging with an exponential correlation
  ``exp(−d / CORRELATION_LENGTH)``, ``d`` the distance between window centres in window sides;
* measured windows keep their measured values.

Where to refine (the target column only): a Gaussian-process view of the same model gives each
unmeasured window a posterior variance; windows are picked greedily to remove the most
*weighted* variance, the weight of a window being the sum over its pixels of the sensitivity of
the quality measures to an error there, computed on the current predicted map:

* ``1 / (2 μ² + C1) + 1 / (2 σ² + C2)`` — the luminance and structure terms of SSIM (μ, σ² the
  local mean and variance over :data:`SSIM_WINDOW` pixels, ``C1 = (K1·range)²``,
  ``C2 = (K2·range)²``): errors matter most where the map is near zero or flat;
* ``TOP_WEIGHT / ((value − threshold)² + C3)`` — the edge of the top-:data:`TOP_FRACTION` region,
  where an error moves pixels in or out of the most supporting area.

The SSIM terms leave out the border of ``SSIM_WINDOW // 2`` pixels that SSIM's mean leaves out;
without this, low-coverage border windows took about a third of the fine budget on 128-px maps.

Units: every value this module handles is *support* in the units the caller records — by default
probability points (reference probability − covered probability, −1..1); log-odds differences work
the same way. Support > 0: covering the window lowers the class score. Window indices are into the
concatenation of the grids' windows, in the order of :func:`sensmap.windows.window_grids`.

Measured limits (``benchmarks/fast_quality.py`` replays cached exact runs through this plan): on the
detailed map (sizes 1/2 … 1/16, 1244 windows, 414 passes, MobileNetV2) the worst SSIM over the 12 shared
photos is 0.933. The constants below sit on a flat optimum: the coarser maps explain only about half of
the finest windows' variance, a selection that knew the exact map would reach 0.947 on the worst photo,
and the variants tried (README, Benchmarks) moved it by −0.03 … +0.005.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .windows import WindowGrid

#: Default ratio of an exact map's passes to a fast map's passes.
DEFAULT_SPEEDUP: float = 3.0
#: Ratio used when the finest cover is smaller than SMALL_COVER_PX pixels: such covers (1/16 of a
#: 128-px input = 8 px) are hardly predictable from the coarser maps. Measured on the 12 shared photos,
#: fine map, MobileNet α0.25 at 128 px: worst SSIM 0.85 / top-5 % IoU 0.70 at 3×, 0.88 / 0.76 at
#: 2.5×, 0.915 / 0.96 at 2×; MobileNetV2 at 224 px (finest cover 14 px): 0.904 / 0.889 at 3×.
SMALL_COVER_SPEEDUP: float = 2.0
SMALL_COVER_PX: int = 12
#: Refinement rounds after the exact coarse sizes. 2, 4 and 8 gave the same worst SSIM (±0.004) on
#: the 12 benchmark photos; 4 keeps the engine's batches large.
NUM_ROUNDS: int = 4
#: Residual correlation length in window sides: fitted to the measured lag correlations of the finest
#: (1/16) residuals, ≈ 0.6 / 0.35 / 0.2 at 1 / 2 / 3 steps of half a window. 0.75 and 1.5 did as well.
CORRELATION_LENGTH: float = 1.0
#: Kriging nugget (relative to the residual variance): a little slack for model misfit; 0.01–0.05 equal.
NUGGET: float = 0.01
#: Prior coefficient of the next coarser map (a finer cover removes less evidence): the per-photo fits
#: on the benchmark photos gave 0.2–0.6.
BETA_PRIOR: float = 0.5
#: Ridge weight of that prior, relative to the mean squared feature (only matters with few measurements).
RIDGE: float = 0.01
#: SSIM's window and constants (scikit-image defaults): the weights mirror the measure we report.
SSIM_WINDOW: int = 7
SSIM_K1: float = 0.01
SSIM_K2: float = 0.03
#: The top region whose edge is weighted (the benchmark's top-5 % IoU), its weight and floor.
#: TOP_WEIGHT 2–4 gave the same worst IoU; below 1 the worst IoU fell under 0.8.
TOP_FRACTION: float = 0.05
TOP_WEIGHT: float = 3.0
TOP_K3: float = 0.01
#: Greedy selection and kriging work on tiles of at most TILE × TILE windows (plus a halo of
#: HALO window sides for kriging), so memory and time stay linear in the number of windows.
TILE: int = 32
HALO: float = 3.0
#: Measured windows a size needs before its residual amplitude is estimated from them.
MIN_FIT: int = 8


@dataclass
class _Level:
    """One cover size: its grid, where its windows sit in the concatenation, and geometry."""

    grid: WindowGrid
    offset: int
    centres_y: np.ndarray  # window centres along each axis, in window sides
    centres_x: np.ndarray

    @property
    def count(self) -> int:
        return self.grid.count

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.grid.starts_y.size), int(self.grid.starts_x.size)

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.count)


@dataclass
class _Tile:
    """A block of windows of one level: ``core`` (local indices it predicts/selects) and ``near``
    (core plus halo, the measured windows it may use)."""

    level: int
    core: np.ndarray
    near: np.ndarray


def default_speedup(grids: Sequence[WindowGrid]) -> float:
    """The fast mode's pass ratio for these grids: :data:`DEFAULT_SPEEDUP`, or :data:`SMALL_COVER_SPEEDUP`
    when the finest cover's shorter side is under :data:`SMALL_COVER_PX` pixels."""
    finest = min(min(grid.window_y, grid.window_x) for grid in grids)
    return SMALL_COVER_SPEEDUP if finest < SMALL_COVER_PX else DEFAULT_SPEEDUP


class FastPlan:
    """Adaptive drill-down schedule over the concatenated windows of ``grids`` (order of window_grids).

    Drive it with :meth:`next_windows` → run those windows → :meth:`record` their target support,
    until :meth:`next_windows` returns ``None``; then :meth:`fill` completes any per-window array
    (for instance the support of every class). At most ``max(coarsest count, floor(total / speedup))``
    windows are measured; with one size, or a budget that covers every window, every window is
    measured and :meth:`fill` returns its input unchanged (exact map).
    """

    def __init__(self, grids: Sequence[WindowGrid], *, speedup: float = DEFAULT_SPEEDUP) -> None:
        grids = list(grids)
        if not grids:
            raise ParameterError("fast mode needs at least one window grid")
        try:
            speedup = float(speedup)
        except (TypeError, ValueError):
            raise ParameterError(f"speed-up must be a number ≥ 1, got {speedup!r}") from None
        if not math.isfinite(speedup) or speedup < 1:
            raise ParameterError(f"speed-up must be a number ≥ 1, got {speedup!r}")
        shape = (grids[0].height, grids[0].width)
        if any((g.height, g.width) != shape for g in grids):
            raise ParameterError("all window grids of a fast plan must be on the same image grid")
        self.grids = grids
        self.speedup = speedup
        offsets = np.cumsum([0] + [g.count for g in grids])
        self.total = int(offsets[-1])
        # Coarse to fine: by window area, largest first (stable for equal areas).
        order = sorted(range(len(grids)), key=lambda i: -grids[i].window_y * grids[i].window_x)
        self._levels = [
            _Level(
                grid=grids[i],
                offset=int(offsets[i]),
                centres_y=(grids[i].starts_y + grids[i].window_y / 2) / grids[i].window_y,
                centres_x=(grids[i].starts_x + grids[i].window_x / 2) / grids[i].window_x,
            )
            for i in order
        ]
        counts = [level.count for level in self._levels]
        self.budget = int(max(counts[0], math.floor(self.total / speedup + 1e-9)))
        if self.budget >= self.total:
            self.budget = self.total
            self._exact_levels = len(self._levels)
        else:
            exact = 1
            while exact < len(counts) and sum(counts[: exact + 1]) <= self.budget:
                exact += 1
            self._exact_levels = exact
        self._measured = np.zeros(self.total, dtype=bool)
        self._values = np.zeros(self.total, dtype=np.float64)
        self._pending = np.zeros(self.total, dtype=bool)
        self._rounds_done = 0  # refinement rounds handed out
        self._started = False
        self._tiles = [self._level_tiles(i) for i in range(len(self._levels))]
        self._kriging_cache: dict[int, tuple[bytes, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]] = {}

    # ------------------------------------------------------------------ public API
    @property
    def measured(self) -> np.ndarray:
        """``(total_windows,)`` bool: True where a forward pass was run (a copy)."""
        return self._measured.copy()

    @property
    def done(self) -> bool:
        """True when the plan has handed out its last windows and all of them were recorded."""
        return self._started and not self._pending.any() and self._remaining_budget_unusable()

    @property
    def passes(self) -> int:
        """Forward passes recorded so far (the unoccluded reference pass not counted)."""
        return int(self._measured.sum())

    def next_windows(self) -> np.ndarray | None:
        """Indices (into the concatenated windows, ascending int64) to measure next, or None when done.

        Every window handed out must be :meth:`record`-ed before the next call: the choice of the
        next windows depends on their values.
        """
        if self._pending.any():
            raise ParameterError(
                f"record the support of the {int(self._pending.sum())} windows handed out before asking for more"
            )
        if not self._started:
            self._started = True
            chosen = np.concatenate([self._levels[i].indices for i in range(self._exact_levels)])
        else:
            if self._remaining_budget_unusable():
                return None
            left = self.budget - self.passes
            rounds_left = max(1, NUM_ROUNDS - self._rounds_done)
            take = int(math.ceil(left / rounds_left))
            chosen = self._select(take)
            self._rounds_done += 1
            if chosen.size == 0:
                return None
        chosen = np.sort(chosen.astype(np.int64))
        self._pending[chosen] = True
        return chosen

    def record(self, indices: np.ndarray, scores: np.ndarray) -> None:
        """Record the measured target-class support of windows handed out by :meth:`next_windows`.

        ``scores``: reference score − covered score (probability points by default, or log-odds
        differences), one float per index; support > 0 means covering the window lowers the score.
        """
        indices = np.asarray(indices, dtype=np.int64).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if indices.shape != scores.shape:
            raise ParameterError(f"got {indices.size} window indices but {scores.size} scores")
        if indices.size and (indices.min() < 0 or indices.max() >= self.total):
            raise ParameterError(f"window indices must lie in 0..{self.total - 1}")
        if not self._pending[indices].all():
            raise ParameterError("record only windows handed out by next_windows() and not yet recorded")
        if not np.isfinite(scores).all():
            raise ParameterError("window scores must be finite numbers")
        self._values[indices] = scores
        self._measured[indices] = True
        self._pending[indices] = False

    def fill(self, values: np.ndarray) -> np.ndarray:
        """Complete a ``(total_windows, K)`` array whose rows are only valid where :attr:`measured`.

        Returns a float64 ``(total_windows, K)`` array (or ``(total_windows,)`` for a 1-D input):
        measured rows unchanged, unmeasured rows predicted column by column with the calibrated
        drill-down model (see the module docstring). Columns are independent, so ``values`` can be
        the support of every class (reference − covered outputs, in probability points): the
        column of the target class is then the fast map's support. Values of unmeasured rows in the
        input are ignored (NaN is fine).
        """
        array = np.asarray(values, dtype=np.float64)
        one_dimensional = array.ndim == 1
        if one_dimensional:
            array = array[:, None]
        if array.ndim != 2 or array.shape[0] != self.total:
            raise ParameterError(f"expected a ({self.total}, K) array of window values, got shape {array.shape}")
        if not np.isfinite(array[self._measured]).all():
            raise ParameterError("measured rows must hold finite numbers")
        filled = self._fill(array, self._measured)
        return filled[:, 0] if one_dimensional else filled

    # ------------------------------------------------------------------ prediction
    def _fill(self, values: np.ndarray, measured: np.ndarray) -> np.ndarray:
        out = np.where(measured[:, None], values, 0.0)
        for number, level in enumerate(self._levels):  # coarse to fine: coarser levels are complete
            rows = level.indices
            mask = measured[rows]
            if not mask.all():
                features = [self._box_means(coarse, level, out[coarse.indices]) for coarse in self._levels[:number]]
                out[rows] = self._predict_level(number, features, out[rows], mask)
        return out

    def _predict_level(
        self, number: int, features: list[np.ndarray], values: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Calibrated prediction plus kriged residuals for one level; ``values`` (n, K)."""
        n, columns = values.shape
        if features:
            stacked = np.stack(features, axis=1)  # (n, p, K)
            beta = self._calibrate(stacked, values, mask)  # (p, K)
            prediction = np.einsum("npk,pk->nk", stacked, beta)
        else:
            prediction = np.zeros((n, columns))
        result = prediction.copy()
        if mask.any():
            residual = values - prediction
            for unmeasured, near_measured, weights in self._kriging_weights(number, mask):
                result[unmeasured] += weights @ residual[near_measured]
            result[mask] = values[mask]
        return result

    @staticmethod
    def _calibrate(features: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per-column ridge least squares of ``values`` on ``features`` over measured rows: (p, K)."""
        p = features.shape[1]
        prior = np.zeros((p, features.shape[2]))
        prior[-1] = BETA_PRIOR  # features are ordered coarse → fine: the last is the next coarser
        fm = features[mask]  # (m, p, K)
        ym = values[mask]  # (m, K)
        gram = np.einsum("mpk,mqk->kpq", fm, fm)
        rhs = np.einsum("mpk,mk->kp", fm, ym)
        scale = np.einsum("npk,npk->k", features, features) / max(1, features.shape[0] * p)
        penalty = RIDGE * max(1, int(mask.sum())) * scale + 1e-30
        gram += penalty[:, None, None] * np.eye(p)[None]
        rhs += penalty[:, None] * prior.T
        return np.linalg.solve(gram, rhs[..., None])[..., 0].T

    def _box_means(self, coarse: _Level, fine: _Level, coarse_values: np.ndarray) -> np.ndarray:
        """Mean of the coarse level's per-pixel map over each fine window's box: ``(n_fine, K)``."""
        c, f = coarse.grid, fine.grid
        ty = _box_mean_operator(c.starts_y, c.window_y, f.starts_y, f.window_y, f.height)
        tx = _box_mean_operator(c.starts_x, c.window_x, f.starts_x, f.window_x, f.width)
        ny, nx = coarse.shape
        rows = (ty @ coarse_values.reshape(ny, -1)).reshape(ty.shape[0], nx, -1)  # (fine rows, nx, K)
        return np.matmul(tx[None], rows).reshape(fine.count, -1)

    # ------------------------------------------------------------------ kriging geometry
    def _level_tiles(self, number: int) -> list[_Tile]:
        level = self._levels[number]
        ny, nx = level.shape
        halo_y = _halo_steps(level.grid.starts_y, level.grid.window_y)
        halo_x = _halo_steps(level.grid.starts_x, level.grid.window_x)
        tiles = []
        for y0 in range(0, ny, TILE):
            for x0 in range(0, nx, TILE):
                y1, x1 = min(ny, y0 + TILE), min(nx, x0 + TILE)
                core = (np.arange(y0, y1)[:, None] * nx + np.arange(x0, x1)[None, :]).ravel()
                ys = np.arange(max(0, y0 - halo_y), min(ny, y1 + halo_y))
                xs = np.arange(max(0, x0 - halo_x), min(nx, x1 + halo_x))
                near = (ys[:, None] * nx + xs[None, :]).ravel()
                tiles.append(_Tile(level=number, core=core, near=near))
        return tiles

    def _correlation(self, number: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        level = self._levels[number]
        nx = level.shape[1]
        dy = level.centres_y[rows // nx][:, None] - level.centres_y[cols // nx][None, :]
        dx = level.centres_x[rows % nx][:, None] - level.centres_x[cols % nx][None, :]
        return np.exp(-np.sqrt(dy * dy + dx * dx) / CORRELATION_LENGTH)

    def _kriging_weights(self, number: int, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per tile: (unmeasured core rows, measured near rows, weights) — cached per measured mask."""
        key = np.packbits(mask).tobytes()
        cached = self._kriging_cache.get(number)
        if cached is not None and cached[0] == key:
            return cached[1]
        parts = []
        for tile in self._tiles[number]:
            unmeasured = tile.core[~mask[tile.core]]
            near = tile.near[mask[tile.near]]
            if unmeasured.size == 0 or near.size == 0:
                continue
            k_near = self._correlation(number, near, near) + NUGGET * np.eye(near.size)
            k_cross = self._correlation(number, unmeasured, near)
            weights = np.linalg.solve(k_near, k_cross.T).T
            parts.append((unmeasured, near, weights))
        self._kriging_cache[number] = (key, parts)
        return parts

    # ------------------------------------------------------------------ selection
    def _remaining_budget_unusable(self) -> bool:
        if self.passes >= self.budget:
            return True
        adaptive = np.concatenate([lv.indices for lv in self._levels[self._exact_levels :]] or [np.zeros(0, int)])
        return bool(self._measured[adaptive].all()) if adaptive.size else True

    def _select(self, take: int) -> np.ndarray:
        """Greedy choice of ``take`` unmeasured windows of the adaptive levels (the target column)."""
        filled = self._fill(self._values[:, None], self._measured)[:, 0]
        per_size = [lv.grid.aggregate(filled[lv.indices]) for lv in self._levels]
        weights = pixel_weights(np.mean(per_size, axis=0))
        states = []
        for number in range(self._exact_levels, len(self._levels)):
            level = self._levels[number]
            mask = self._measured[level.indices]
            if mask.all():
                continue
            amplitude = self._residual_variance(number, filled)
            window_weight = _window_weights(level.grid, weights)

            for tile in self._tiles[number]:
                candidates = tile.core[~mask[tile.core]]  # measured windows have no variance left to remove
                if candidates.size == 0:
                    continue
                near = tile.near[mask[tile.near]]
                cov = self._correlation(number, candidates, candidates)
                if near.size:
                    k_near = self._correlation(number, near, near) + NUGGET * np.eye(near.size)
                    k_cross = self._correlation(number, candidates, near)
                    cov -= k_cross @ np.linalg.solve(k_near, k_cross.T)
                state = _TileState(
                    offset=level.offset,
                    core=candidates,
                    cov=amplitude * cov,
                    weight=window_weight[candidates],
                    open=np.ones(candidates.size, dtype=bool),
                    nugget=NUGGET * amplitude,
                )
                states.append(state)
        chosen: list[int] = []
        best = np.array([state.best() for state in states]) if states else np.zeros(0)
        for _ in range(take):
            if best.size == 0 or not np.isfinite(best).any() or best.max() < 0:
                break
            t = int(np.argmax(best))
            chosen.append(states[t].take())
            best[t] = states[t].best()
        return np.array(chosen, dtype=np.int64)

    def _residual_variance(self, number: int, filled: np.ndarray) -> float:
        """Prior variance of a level's windows around the calibrated prediction (support units²)."""
        level = self._levels[number]
        mask = self._measured[level.indices]
        if mask.sum() >= MIN_FIT and number > 0:
            coarse = [self._box_means(c, level, filled[c.indices][:, None]) for c in self._levels[:number]]
            stacked = np.stack(coarse, axis=1)
            values = self._values[level.indices][:, None]
            beta = self._calibrate(stacked, values, mask)
            residual = (values - np.einsum("npk,pk->nk", stacked, beta))[mask]
            variance = float(np.mean(residual**2))
        else:
            coarser = self._levels[number - 1] if number > 0 else level
            variance = float(BETA_PRIOR**2 * np.mean(filled[coarser.indices] ** 2))
        return max(variance, 1e-30)


@dataclass
class _TileState:
    """Posterior covariance of one tile's windows during greedy selection."""

    offset: int
    core: np.ndarray
    cov: np.ndarray
    weight: np.ndarray
    open: np.ndarray
    nugget: float
    gains: np.ndarray | None = None

    def best(self) -> float:
        """Largest weighted variance reduction one more window of this tile gives (−inf: none left)."""
        if self.gains is None:
            gain = np.einsum("i,ij,ij->j", self.weight, self.cov, self.cov) / (np.diag(self.cov) + self.nugget)
            self.gains = np.where(self.open, gain, -np.inf)
        return float(self.gains.max())

    def take(self) -> int:
        """Measure the best window: condition the covariance on it; its global index."""
        self.best()
        j = int(np.argmax(self.gains))
        column = self.cov[:, j].copy()
        self.cov -= np.outer(column / (column[j] + self.nugget), column)
        self.open[j] = False
        self.gains = None
        return self.offset + int(self.core[j])


def pixel_weights(support: np.ndarray) -> np.ndarray:
    """Per-pixel sensitivity of SSIM and of the top-region IoU to an error in ``support`` (H, W).

    ``1/(2μ² + C1) + 1/(2σ² + C2) + TOP_WEIGHT/((support − threshold)² + C3)`` with μ, σ² the local
    mean and variance over :data:`SSIM_WINDOW` pixels, ``C = (K·range)²`` and ``threshold`` the
    top-:data:`TOP_FRACTION` quantile. The SSIM terms are zero within ``SSIM_WINDOW // 2`` pixels of
    the border, which SSIM's mean leaves out (on a 128-px map, measuring there cost the most).
    Units: 1 / support² (only ratios matter).
    """
    support = np.asarray(support, dtype=np.float64)
    span = float(support.max() - support.min()) or 1.0
    mean = _box_filter(support, SSIM_WINDOW)
    variance = np.maximum(_box_filter(support * support, SSIM_WINDOW) - mean * mean, 0.0)
    c1, c2, c3 = (SSIM_K1 * span) ** 2, (SSIM_K2 * span) ** 2, (TOP_K3 * span) ** 2
    threshold = np.quantile(support, 1.0 - TOP_FRACTION)
    ssim_terms = 1.0 / (2 * mean**2 + c1) + 1.0 / (2 * variance + c2)
    pad = SSIM_WINDOW // 2  # SSIM's mean leaves out this border (scikit-image crops it)
    if min(support.shape) > 2 * pad:
        inside = np.zeros(support.shape, dtype=bool)
        inside[pad:-pad, pad:-pad] = True
        ssim_terms = np.where(inside, ssim_terms, 0.0)
    return ssim_terms + TOP_WEIGHT / ((support - threshold) ** 2 + c3)


def _box_filter(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size × size`` window (clipped at the borders), same shape as ``image``."""
    out = image
    for axis in (0, 1):
        n = out.shape[axis]
        lo = np.clip(np.arange(n) - size // 2, 0, n)
        hi = np.clip(np.arange(n) + size - size // 2, 0, n)
        cumulative = np.concatenate([np.zeros_like(np.take(out, [0], axis=axis)), np.cumsum(out, axis=axis)], axis)
        total = np.take(cumulative, hi, axis=axis) - np.take(cumulative, lo, axis=axis)
        shape = [1, 1]
        shape[axis] = n
        out = total / (hi - lo).reshape(shape)
    return out


def _window_weights(grid: WindowGrid, weights: np.ndarray) -> np.ndarray:
    """Per window: the sum over its pixels of ``weights / coverage²`` — its share of the squared error
    of the pixels it covers (a pixel's value is the mean of ``coverage`` windows)."""
    per_pixel = weights / grid.coverage().astype(np.float64) ** 2
    integral = np.zeros((grid.height + 1, grid.width + 1))
    integral[1:, 1:] = per_pixel.cumsum(0).cumsum(1)
    y0, x0, y1, x1 = grid.boxes.T
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _box_mean_operator(
    coarse_starts: np.ndarray, coarse_window: int, fine_starts: np.ndarray, fine_window: int, side: int
) -> np.ndarray:
    """Along one axis: ``T[a, i]`` = mean over fine window ``a`` of coarse window ``i``'s share of a pixel.

    A coarse per-pixel map is ``Σ_i member[p, i] v_i / coverage[p]`` per axis (separable), so its mean
    over a fine window's box is ``Ty @ V @ Txᵀ``.
    """
    pixels = np.arange(side)[:, None]
    member = ((pixels >= coarse_starts[None, :]) & (pixels < coarse_starts[None, :] + coarse_window)).astype(float)
    share = member / member.sum(axis=1, keepdims=True)  # (side, n_coarse)
    inside = ((pixels.T >= fine_starts[:, None]) & (pixels.T < fine_starts[:, None] + fine_window)).astype(float)
    return inside @ share / fine_window


def _halo_steps(starts: np.ndarray, window: int) -> int:
    """How many window positions along an axis span :data:`HALO` window sides."""
    if starts.size < 2:
        return 0
    step = float(np.median(np.diff(starts)))
    return int(math.ceil(HALO * window / step))

"""Offline generator of Pathfinder / Path-X images: the "snakes" algorithm of Kim, Linsley et al.
(drewlinsley/pathfinder ``snakes.py``/``snakes2.py``) with the LRA settings of every resolution.

An image holds two target contours of ``contour_length`` paddles and ``num_distractor_snakes``
distractor contours of ``distractor_length`` paddles. A contour grows paddle by paddle: the next
paddle's far end is drawn from a ring of radius ``L + m`` around a point ``m`` beyond the last one,
weighted by ``max(cos(min(δ·continuity, π/2)), 0)²`` (δ the turn angle) and by the free space of the
margin-dilated occupancy mask; a paddle that overlaps committed strokes is redrawn. Two markers
are drawn: at the start of one target contour and at the end of the same one (label 1) or of the
other one (label 0).

Faithfulness: every draw of the original happens here in the same order, with the same
distribution (``randint`` bounds, ``rand`` inverse-CDF sampling, uniform choice of a free pixel
in row-major order), and every deterministic step is reproduced exactly: ``ceil`` in
``translate``, truncation of ring points, ``np.unique`` order, float32 paddle canvases, PIL line
drawing at ``antialias_scale`` followed by scipy's old byte-scaling and PIL LANCZOS downsampling,
``cv2.dilate`` semantics (correlation with the kernel, centre anchor, out-of-image taps ignored
and a pixel with no tap inside the image = −DBL_MAX, which makes ``find_available_coordinates``
report "no room"), the struct kernel truncated to ``uint8`` and the ``imsave`` byte-scaling.
Deviations: a seeded ``numpy.random.Generator`` per image replaces the unseeded global state
(``random.shuffle`` of the contrast means uses it too), and Pillow is the installed version.

Speed comes from rendering each paddle orientation once per process (the anti-aliased line and
mask patches depend only on the angle; positions only translate them), evaluating the dilated
mask only where it is read (ring points, patch windows), and boolean shifted-OR dilation for the
seed search instead of full-canvas float dilations.
The hot paths carry ``@no_type_check``: the test suite's run-time type instrumentation
(jaxtyping + beartype on every ``ssm`` function) would cost more than the work itself.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import no_type_check

import numpy as np
from PIL import Image, ImageDraw

DIFFICULTY = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
SIZES = (32, 64, 128, 256)


@dataclass(frozen=True)
class PathfinderParams:
    """The ``Args`` of ``snakes2_wrapper.py`` that matter for one difficulty folder."""

    window: int = 256
    padding: int = 22
    antialias_scale: int = 4
    seed_distance: int = 27
    marker_radius: float = 3.0
    contour_length: int = 15
    distractor_length: int = 5
    num_distractor_snakes: int = 6
    snake_contrast_list: tuple[float, ...] = (1.0,)
    use_single_paddles: bool = True
    max_distractor_contour_retrial: int = 4
    max_paddle_retrial: int = 2
    continuity: float = 1.4
    paddle_length: int = 5
    paddle_thickness: int | float = 1.5  # as the LRA settings spell it (metadata writes str())
    paddle_margin_list: tuple[int, ...] = (4,)
    paddle_contrast_list: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        t = self.paddle_thickness * self.antialias_scale
        if round(t) != t:
            raise ValueError(
                f"paddle_thickness × antialias_scale must be an integer (got {t}): the original "
                "draws the paddle at that integer width"
            )
        if self.contour_length < 1 or self.distractor_length < 1:
            raise ValueError("contour_length and distractor_length must be >= 1")
        if not self.paddle_margin_list or not self.snake_contrast_list or not self.paddle_contrast_list:
            raise ValueError("paddle_margin_list, snake_contrast_list, paddle_contrast_list must be non-empty")


# Per resolution: the LRA customisations of the defaults (LRA lra_benchmarks/data/pathfinder.py
# docstrings; the later ``antialias_scale = 2`` wins), over the wrapper's own settings block
# (continuity 1.8, ``use_single_paddles = False``). ``num_distractor_snakes`` is computed once in
# that block from contour length 14 (``numerator // (14 // 3)``) and not recomputed per difficulty.
_LRA: dict[int, dict] = {
    32: dict(window=32, padding=1, antialias_scale=2, paddle_margin_list=(1,), seed_distance=7,
             marker_radius=1.5, paddle_length=2, paddle_thickness=0.5, continuity=1.0,
             num_distractor_snakes=20 // 4, snake_contrast_list=(2.0,), paddle_contrast_list=(0.75,)),
    64: dict(window=64, padding=1, antialias_scale=2, paddle_margin_list=(1,), seed_distance=12,
             marker_radius=2.5, paddle_thickness=1, continuity=1.8,
             num_distractor_snakes=22 // 4, snake_contrast_list=(0.8,)),
    128: dict(window=128, padding=1, antialias_scale=2, paddle_margin_list=(2, 3), seed_distance=20,
              marker_radius=3.0, paddle_thickness=1.5, continuity=1.8,
              num_distractor_snakes=35 // 4, snake_contrast_list=(0.9,)),
    256: dict(window=256, antialias_scale=2, paddle_margin_list=(3,), marker_radius=5.0,
              paddle_thickness=2, continuity=1.8,
              num_distractor_snakes=30 // 4, snake_contrast_list=(1.0,)),
}  # fmt: skip


def lra_params(size: int, contour: int = 14) -> PathfinderParams:
    """The LRA setting of ``pathfinder<size>/<DIFFICULTY[contour]>`` (128/14 = Path-X)."""
    if size not in _LRA:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    if contour not in DIFFICULTY:
        raise ValueError(f"contour must be one of {tuple(DIFFICULTY)}, got {contour}")
    return PathfinderParams(
        use_single_paddles=False, contour_length=contour, distractor_length=contour // 3, **_LRA[size]
    )


# ------------------------------------------------------------------------------ primitives


_STEPS: dict[tuple[float, float], tuple[float, float]] = {}


@no_type_check
def translate(p: tuple[int, int], theta: float, d: float) -> tuple[int, int]:
    """``translate_coord``: move by ``d`` along ``theta`` (row = sin, column = cos), ceil."""
    step = _STEPS.get((theta, d))
    if step is None:
        step = _STEPS[(theta, d)] = (float(float(d) * np.sin(theta)), float(float(d) * np.cos(theta)))
    return math.ceil(p[0] + step[0]), math.ceil(p[1] + step[1])


@no_type_check
def flip(theta: float) -> float:
    return theta + np.pi if theta < 0 else theta - np.pi


@no_type_check
def disk_offsets(radius: float) -> np.ndarray:
    """Offsets (k, 2) of ``generate_dilation_struct``: x² + y² ≤ r² on a (2r+1)² grid."""
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    keep = x**2 + y**2 <= radius**2
    return np.stack([y[keep], x[keep]], axis=1)


@no_type_check
def dilate_max(src: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``cv2.dilate`` (float, BORDER_CONSTANT default): out[p] = max over taps k of src[p + k]
    among taps inside the image; −inf where no tap is inside."""
    h, w = src.shape
    out = np.full(src.shape, -np.inf, dtype=src.dtype)
    for dy, dx in offsets:
        ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
        xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        np.maximum(out[yd, xd], src[ys, xs], out=out[yd, xd])
    return out


@no_type_check
def dilate_bool(src: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean dilation (same tap convention) and the map of pixels with at least one tap inside."""
    h, w = src.shape
    out = np.zeros(src.shape, bool)
    covered = np.zeros(src.shape, bool)
    for dy, dx in offsets:
        ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
        xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        out[yd, xd] |= src[ys, xs]
        covered[yd, xd] = True
    return out, covered


@no_type_check
def bytescale(a: np.ndarray) -> np.ndarray:
    """scipy.misc's byte-scaling (used by ``imresize``/``imsave``): min → 0, max → 255, +0.5 round."""
    if a.dtype == np.uint8:
        return a
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo if hi - lo != 0 else 1.0
    return ((a - lo) * (255.0 / span)).clip(0, 255).__add__(0.5).astype(np.uint8)


@no_type_check
def lanczos(a8: np.ndarray, size: int) -> np.ndarray:
    """``imresize(..., interp='lanczos')`` of a uint8 image to ``size × size``."""
    return np.asarray(Image.fromarray(a8, "L").resize((size, size), Image.Resampling.LANCZOS))


@no_type_check
def paste_window(shape: tuple[int, int], center: tuple[int, int], half: int):
    """Slices (canvas, patch) placing a (2·half+1)² patch centred at ``center``, clipped."""
    h, w = shape
    y0, y1 = center[0] - half, center[0] + half
    x0, x1 = center[1] - half, center[1] + half
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h - 1), max(x0, 0), min(x1, w - 1)
    size = 2 * half + 1
    py0, py1 = max(0, -y0), size - 1 - max(0, y1 - (h - 1))
    px0, px1 = max(0, -x0), size - 1 - max(0, x1 - (w - 1))
    return (slice(cy0, cy1 + 1), slice(cx0, cx1 + 1)), (slice(py0, py1 + 1), slice(px0, px1 + 1))


@no_type_check
class Paddles:
    """Anti-aliased paddle patches of one (length, thickness, margin, aa), cached by angle.

    ``draw_line_n_mask`` renders a paddle of length ``L`` from the patch centre along ``θ`` at
    ``aa``× resolution (PIL line, width ``round(thickness·aa)``), byte-scales and LANCZOS-resizes
    it to ``2R + 1`` (R = L + ⌈thickness⌉ + m); the mask is the ``disk(m·aa)`` dilation of the same
    fine canvas, resized the same way. Both are pasted into float32 canvases.
    """

    def __init__(self, length: int, thickness: float, margin: int, aa: int):
        self.length, self.thickness, self.margin, self.aa = length, thickness, margin, aa
        self.half = length + int(math.ceil(thickness)) + margin
        self.size = 2 * self.half + 1
        self._big_disk = disk_offsets(margin * aa)
        self.small_disk = disk_offsets(margin)
        self._line: dict[float, np.ndarray] = {}
        self._mask: dict[float, np.ndarray] = {}
        self._line_c: dict[tuple[float, float], np.ndarray] = {}
        self._struct: dict[float, np.ndarray] = {}

    def _render(self, theta: float) -> None:
        aa, c = self.aa, self.half * self.aa
        big = 2 * self.half * aa + 1
        head = translate((c, c), theta, self.length * aa)
        im = Image.new("F", (big, big), "black")
        ImageDraw.Draw(im).line([(c, c), (head[1], head[0])], fill="white",
                                width=int(round(self.thickness * aa)))  # fmt: skip
        fine = np.array(im)
        self._line[theta] = lanczos(bytescale(fine), self.size).astype(np.float64) / 255
        fine_mask = dilate_max(fine, self._big_disk).astype(np.uint8)
        self._mask[theta] = (lanczos(fine_mask, self.size).astype(np.float64) / 255).astype(np.float32)

    def line(self, theta: float, contrast: float) -> np.ndarray:
        key = (theta, contrast)
        patch = self._line_c.get(key)
        if patch is None:
            if theta not in self._line:
                self._render(theta)
            patch = self._line[theta]
            if contrast != 1.0:
                patch = patch * contrast
            patch = self._line_c[key] = patch.astype(np.float32)
        return patch

    def mask(self, theta: float) -> np.ndarray:
        if theta not in self._mask:
            self._render(theta)
        return self._mask[theta]

    def struct(self, theta: float) -> np.ndarray:
        """Taps (k, 2) of the seeding kernel: the mask pasted on a (2(L+m)+1)² canvas at
        (L+m+1, L+m+1), kept where exactly 1 (``astype(uint8)``), relative to the centre anchor."""
        taps = self._struct.get(theta)
        if taps is None:
            n = self.length + self.margin
            canvas = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
            dst, src = paste_window(canvas.shape, (n + 1, n + 1), self.half)
            canvas[dst] = self.mask(theta)[src]
            taps = self._struct[theta] = np.argwhere(canvas.astype(np.uint8) != 0) - n
        return taps


# ------------------------------------------------------------------------------ snakes


class _Fail(Exception):
    """A contour could not be placed (the original's ``success = False``)."""


@no_type_check
@dataclass
class Snake:
    """A contour under construction: its last paddle's mask patch (uncommitted) and pose."""

    seg_window: tuple  # (canvas slices, patch slices) of the last paddle
    seg_mask: np.ndarray  # the last paddle's mask patch
    pivot: tuple[int, int]
    theta: float
    tips: list[tuple[int, int]] = field(default_factory=list)  # paddle heads, in drawing order
    segments: int = 1


@no_type_check
class _Canvas:
    """Image and occupancy mask of one picture (float64, as the original's accumulators)."""

    def __init__(self, n: int):
        self.n = n
        self.image = np.zeros((n, n))
        self.mask = np.zeros((n, n))

    def commit(self, snake: Snake) -> None:
        dst, src = snake.seg_window
        np.maximum(self.mask[dst], snake.seg_mask[src], out=self.mask[dst])


@no_type_check
class Generator:
    """Draws Pathfinder images for one :class:`PathfinderParams` (one per process)."""

    def __init__(self, params: PathfinderParams):
        self.p = params
        self._paddles: dict[int, Paddles] = {}
        self._rings: dict[int, np.ndarray] = {}
        self._structs: dict[tuple[int, float], tuple[np.ndarray, bool]] = {}
        self._cands: dict = {}
        self._free: dict = {}
        self._sigs: dict[bytes, int] = {}
        self._weights: dict = {}
        n, w = params.window, params.padding
        self._padded = np.zeros((n, n))
        self._padded[:w], self._padded[-w:], self._padded[:, :w], self._padded[:, -w:] = 1, 1, 1, 1

    def paddles(self, margin: int) -> Paddles:
        if margin not in self._paddles:
            p = self.p
            self._paddles[margin] = Paddles(p.paddle_length, p.paddle_thickness, margin, p.antialias_scale)
        return self._paddles[margin]

    # -- drawing ---------------------------------------------------------------

    def _draw(self, image: np.ndarray, pad: Paddles, start, theta, contrast):
        """Draw a paddle into ``image`` (max); returns its (window, mask patch)."""
        window = paste_window(image.shape, start, pad.half)
        dst, src = window
        np.maximum(image[dst], pad.line(theta, contrast)[src], out=image[dst])
        return window, pad.mask(theta)

    def _in(self, q: tuple[int, int]) -> bool:
        return 0 <= q[0] < self.p.window and 0 <= q[1] < self.p.window

    def _seed(self, rng, cv: _Canvas, image, pad: Paddles, contrast: float, band: int,
              stop: float | None, fixed: bool = False) -> Snake:  # fmt: skip
        """``seed_snake`` (band 1) / the first seed of ``initialize_two_seeds`` (band 2·seed_distance).

        ``fixed``: the mask is the initial one (padding frame only), so the free pixels depend
        on the angle alone and are cached."""
        L, m, n = self.p.paddle_length, pad.margin, cv.n
        for _ in range(self.p.max_paddle_retrial + 1):
            theta = int(rng.integers(-180, 180)) * np.pi / 180
            if stop is not None and np.count_nonzero(cv.mask <= 0.3) / (n * n) < stop:
                raise _Fail
            taps, full_cover = self._struct(pad, theta)
            if not full_cover:  # cv2's −DBL_MAX border reaches a pixel: "no available coordinates"
                raise _Fail
            free = self._free.get((pad.margin, theta, band)) if fixed else None
            if free is None:
                lined = cv.mask > 0.3  # ⌈x − 0.3⌉ ≠ 0
                lined[:band], lined[n - band :], lined[:, :band], lined[:, n - band :] = True, True, True, True
                blocked, _ = dilate_bool(lined, taps)
                free = np.flatnonzero(~blocked)
                if fixed:
                    self._free[(pad.margin, theta, band)] = free
            if free.size == 0:
                raise _Fail
            k = free[int(rng.integers(0, free.size))]
            tail = (int(k // n), int(k % n))
            head = translate(tail, theta, L)
            pivot = translate(head, flip(theta), L + m)
            if self._in(head) and self._in(pivot):
                window, seg_mask = self._draw(image, pad, tail, theta, contrast)
                return Snake(window, seg_mask, pivot, theta, tips=[tail])
        raise _Fail

    def _struct(self, pad: Paddles, theta: float) -> tuple[np.ndarray, bool]:
        """The seeding taps and whether every pixel has a tap inside the image."""
        key = (pad.margin, theta)
        hit = self._structs.get(key)
        if hit is None:
            taps = pad.struct(theta)
            _, covered = dilate_bool(np.zeros((self.p.window, self.p.window), bool), taps)
            hit = self._structs[key] = (taps, bool(covered.all()))
        return hit

    def _candidates(self, pad: Paddles, pv: tuple[int, int]):
        """Ring points around ``pv`` (``get_coords_cmf``), their angles, and flat indices of their
        ``disk(m)`` neighbourhoods (taps outside the image replaced by the point itself, which
        leaves the maximum unchanged). Cached per (margin, pivot)."""
        key = (pad.margin, pv)
        hit = self._cands.get(key, self)
        if hit is not self:
            return hit
        n = self.p.window
        ring = self._ring(self.p.paddle_length + pad.margin)
        ys, xs = pv[0] + ring[0], pv[1] + ring[1]
        inside = (ys < n) & (ys >= 0) & (xs < n) & (xs >= 0)
        if not inside.any():
            hit = None
        else:
            keys = np.unique(ys[inside].astype(int) * n + xs[inside].astype(int))  # = np.unique(axis=0)
            cy, cx = keys // n, keys % n
            alpha = np.arctan2(cy - pv[0], cx - pv[1])
            ty = cy[:, None] + pad.small_disk[None, :, 0]
            tx = cx[:, None] + pad.small_disk[None, :, 1]
            ok = (ty >= 0) & (ty < n) & (tx >= 0) & (tx < n)
            # Small index types: ~45k pivots are cached per margin on a 128² canvas.
            index_type = np.uint16 if n * n <= 1 << 16 else np.int32
            taps = np.where(ok, ty * n + tx, keys[:, None]).astype(index_type)
            # The angles (hence the continuity weights) depend only on the offsets from pv.
            offsets = np.concatenate([cy - pv[0], cx - pv[1]]).tobytes()
            sig = self._sigs.setdefault(offsets, len(self._sigs))
            hit = (keys.astype(np.int32), alpha, taps, sig)
        self._cands[key] = hit
        return hit

    def _ring(self, radius: int) -> np.ndarray:
        if radius not in self._rings:
            step = 360.0 / (2 * radius * np.pi)
            phi = np.arange(0, 360, step) * np.pi / 180
            self._rings[radius] = np.stack([radius * np.sin(phi), radius * np.cos(phi)])
        return self._rings[radius]

    def _extend(self, rng, cv: _Canvas, image, pad: Paddles, snake: Snake, contrast: float) -> None:
        """``extend_snake``: grow ``snake`` by one paddle (commits its previous paddle's mask)."""
        L, m, n = self.p.paddle_length, pad.margin, cv.n
        pv = translate(snake.pivot, snake.theta, L + 2 * m)
        cands = self._candidates(pad, pv)
        if cands is None:
            raise _Fail
        keys, alpha, taps, sig = cands
        weight = self._weights.get((sig, snake.theta))
        if weight is None:
            diff = np.abs(alpha - snake.theta)
            delta = np.minimum(np.minimum(diff, 2 * np.pi - diff) * self.p.continuity, 0.5 * np.pi)
            weight = np.maximum(np.cos(delta), 0) ** 2
            if len(self._weights) > 200_000:  # bound the memory of a long run
                self._weights.clear()
            self._weights[(sig, snake.theta)] = weight
        pmf = (1 - cv.mask.ravel()[taps].max(axis=1)) * weight  # 1 − dilate(mask, disk(m)) at the ring
        total = pmf.sum()
        if total < 1e-4:
            raise _Fail
        cmf = np.cumsum(pmf / total)
        for _ in range(self.p.max_paddle_retrial + 1):
            # argmax(cmf − u > 0): the first index with cmf > u, else 0 (cmf is non-decreasing)
            i = int(cmf.searchsorted(rng.random(), side="right"))
            i = 0 if i == len(cmf) else i
            head = divmod(int(keys[i]), n)
            theta = float(alpha[i])
            back = flip(theta)
            dst, src = window = paste_window((n, n), head, pad.half)
            seg_mask = pad.mask(back)
            if (cv.mask[dst] + seg_mask[src]).max() < 1.8:
                np.maximum(image[dst], pad.line(back, contrast)[src], out=image[dst])
                cv.commit(snake)
                snake.seg_window, snake.seg_mask = window, seg_mask
                snake.pivot, snake.theta = pv, theta
                snake.tips.append(head)
                snake.segments += 1
                return
        raise _Fail

    def _distractor(self, rng, cv: _Canvas, pad: Paddles, segments: int, stop: float | None) -> bool:
        """``make_snake``: a contour of ``segments`` paddles, or nothing (returns success)."""
        image, mask = cv.image.copy(), cv.mask.copy()
        contrasts = self.p.snake_contrast_list
        try:
            contrast = contrasts[int(rng.integers(0, len(contrasts)))]
            snake = self._seed(rng, cv, image, pad, contrast, 1, stop)
            for _ in range(segments - 1):
                contrast = contrasts[int(rng.integers(0, len(contrasts)))]
                self._extend(rng, cv, image, pad, snake, contrast)
        except _Fail:
            cv.mask = mask
            return False
        cv.commit(snake)
        cv.image = image
        return True

    def _two_snakes(self, rng, pad: Paddles):
        """``two_snakes``: the two target contours, or :class:`_Fail` (the caller redraws)."""
        p, n = self.p, self.p.window
        means = list(p.snake_contrast_list) * 2
        mus = [means[i] for i in rng.permutation(len(means))[:2]]  # random.shuffle, then the first 2
        cv = _Canvas(n)
        cv.mask[:] = self._padded
        pcs = p.paddle_contrast_list

        def seed_contrast(mu: float) -> float:
            return pcs[int(rng.integers(0, len(pcs)))] * mu if len(pcs) > 1 else pcs[0] * mu

        images = [np.zeros((n, n)), np.zeros((n, n))]
        first = self._seed(rng, cv, images[0], pad, seed_contrast(mus[0]), 2 * p.seed_distance, None,
                           fixed=True)
        c2 = seed_contrast(mus[1])
        L, m = p.paddle_length, pad.margin
        for _ in range(p.max_paddle_retrial + 1):
            theta = int(rng.integers(-180, 180)) * np.pi / 180
            psi = int(rng.integers(0, 360)) * np.pi / 180
            t1 = first.tips[0]
            tail = (int(np.round(t1[0] + p.seed_distance * np.sin(psi))),
                    int(np.round(t1[1] + p.seed_distance * np.cos(psi))))  # fmt: skip
            head = translate(tail, theta, L)
            pivot = translate(head, flip(theta), L + m)
            if self._in(head) and self._in(pivot):
                window, seg_mask = self._draw(images[1], pad, tail, theta, c2)
                second = Snake(window, seg_mask, pivot, theta, tips=[tail])
                break
        else:
            raise _Fail
        snakes = [first, second]
        for _ in range(p.contour_length - 1):
            c = pcs[int(rng.integers(0, len(pcs)))]
            for k in range(2):
                self._extend(rng, cv, images[k], pad, snakes[k], c * mus[k])
        cv.commit(snakes[1])  # the original commits only the second contour's last paddle
        cv.image = np.maximum(images[0], images[1])
        return cv, snakes, images

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int, int, dict]:
        """One picture: (uint8 image n×n, label, margin, info) following ``from_wrapper``."""
        p = self.p
        label = int(rng.integers(0, 2))
        margin = p.paddle_margin_list[int(rng.integers(0, len(p.paddle_margin_list)))]
        total_paddles = int(150 * (1.0 / ((7.5 + 13 * margin + 4 * margin * margin) / 123.5)))
        pad = self.paddles(margin)
        while True:
            try:
                cv, targets, target_images = self._two_snakes(rng, pad)
                break
            except _Fail:
                continue
        placed = []
        for _ in range(p.num_distractor_snakes):
            for _ in range(p.max_distractor_contour_retrial + 1):
                if self._distractor(rng, cv, pad, p.distractor_length, 0.01):
                    placed.append(p.distractor_length)
                    break
        if p.use_single_paddles:
            singles = total_paddles - 2 * p.contour_length - p.num_distractor_snakes * p.distractor_length
            for _ in range(max(singles, 0)):
                for _ in range(p.max_paddle_retrial + 1):
                    if self._distractor(rng, cv, pad, 1, 0.01):
                        break
        origin = int(rng.integers(0, 2))
        terminal = origin if label == 1 else 1 - origin
        o_tip, t_tip = targets[origin].tips[0], targets[terminal].tips[-1]
        markers = np.maximum(self._circle(o_tip), self._circle(t_tip)).astype(np.float64) / 255
        out = bytescale(np.maximum(cv.image, markers))
        info = dict(
            margin=margin,
            target_segments=[s.segments for s in targets],
            distractor_segments=placed,
            origin=(origin, o_tip),
            terminal=(terminal, t_tip),
            target_images=target_images,
        )
        return out, label, margin, info

    def _circle(self, tip: tuple[int, int]) -> np.ndarray:
        """``draw_circle``: a disk of radius r·aa on the aa× canvas, byte-scaled, LANCZOS-resized."""
        n, aa = self.p.window, self.p.antialias_scale
        y = np.arange(-tip[0] * aa, (n - tip[0]) * aa)[:, None]
        x = np.arange(-tip[1] * aa, (n - tip[1]) * aa)[None, :]
        disk = (x**2 + y**2 <= (self.p.marker_radius * aa) ** 2).astype(np.float64)
        return lanczos(bytescale(disk), n)


# ------------------------------------------------------------------------------ datasets


@no_type_check
def image_rng(seed: int, params: PathfinderParams, batch: int, index: int) -> np.random.Generator:
    """The stream of picture ``index`` of ``batch``: independent of process count and order."""
    return np.random.default_rng([seed, params.window, params.contour_length, batch, index])


def metadata_row(batch: int, index: int, label: int, margin: int, p: PathfinderParams) -> str:
    """One ``metadata/<batch>.npy`` line (``accumulate_meta``), space separated."""
    fields = [f"imgs/{batch}", f"sample_{index}.png", index, label, p.continuity, p.contour_length,
              p.distractor_length, p.paddle_length, p.paddle_thickness, margin,
              len(p.paddle_contrast_list)]  # fmt: skip
    return " ".join(str(f) for f in fields)


_WORKER: dict = {}


@no_type_check
def _work(job: tuple[PathfinderParams, int, str, int, list[tuple[int, int]]]) -> list[tuple[int, int, int, int]]:
    params, seed, folder, _, items = job
    gen = _WORKER.get(params)
    if gen is None:
        gen = _WORKER[params] = Generator(params)
    done = []
    for batch, index in items:
        img, label, margin, _ = gen.draw(image_rng(seed, params, batch, index))
        Image.fromarray(img, "L").save(os.path.join(folder, "imgs", str(batch), f"sample_{index}.png"))
        done.append((batch, index, label, margin))
    return done


def write_release(out: Path | str, params: PathfinderParams, n: int, seed: int = 0,
                  batch_size: int = 1000, workers: int | None = None, progress: bool = True,
                  on_progress: Callable[[int], None] | None = None) -> Path:  # fmt: skip
    """Write ``n`` pictures as ``<out>/pathfinder<window>/<difficulty>/{imgs/<b>/sample_<i>.png,
    metadata/<b>.npy}`` (batch ``b`` holds pictures ``b·batch_size …``, numbered from 0 within
    the batch, as one machine of the original wrapper). Returns the difficulty folder."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got {n}, {batch_size}")
    folder = Path(out) / f"pathfinder{params.window}" / DIFFICULTY.get(
        params.contour_length, f"curv_contour_length_{params.contour_length}"
    )
    items = [(i // batch_size, i % batch_size) for i in range(n)]
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    for b in sorted({b for b, _ in items}):
        (folder / "imgs" / str(b)).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    per_job = max(1, min(50, n // (workers * 8) or 1))
    jobs = [(params, seed, str(folder), k, items[k : k + per_job]) for k in range(0, n, per_job)]
    rows: dict[tuple[int, int], tuple[int, int]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc=f"pathfinder{params.window}/{params.contour_length}", unit="img",
               disable=not progress, mininterval=1.0, smoothing=0.05)  # fmt: skip
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in pool.map(_work, jobs):
                _collect(done, rows, bar, on_progress)
    else:
        for job in jobs:
            _collect(_work(job), rows, bar, on_progress)
    bar.close()
    by_batch: dict[int, list[str]] = {}
    for (b, i), (label, margin) in sorted(rows.items()):
        by_batch.setdefault(b, []).append(metadata_row(b, i, label, margin, params))
    for b, lines in by_batch.items():
        (folder / "metadata" / f"{b}.npy").write_text("".join(line + "\n" for line in lines))
    return folder


def _collect(done, rows, bar, on_progress) -> None:
    for b, i, label, margin in done:
        rows[(b, i)] = (label, margin)
    bar.update(len(done))
    if on_progress is not None:
        on_progress(len(rows))


__all__ = ["DIFFICULTY", "Generator", "Paddles", "PathfinderParams", "lra_params", "write_release"]

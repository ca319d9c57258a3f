"""Numba CPU kernels of the PatchMatch search. The Python-facing API is in `patchmatch.py`.

Layout: features are (H, W, C) float32, C-contiguous, so the inner loop over channels is a
contiguous dot product that vectorises. Each map comes with its per-position squared norms, and
the patch cost is the mean over the offsets d with p+d inside A and q+d inside B of
‖a(p+d)‖² + ‖b(q+d)‖² − 2·a(p+d)·b(q+d) = ‖a(p+d) − b(q+d)‖², as in the original: a patch at a
border is compared on the part that exists, rather than on a border repeated outwards.

Determinism: rows are grouped into fixed bands; even bands are searched in parallel, then odd
ones. Within a band PatchMatch runs in scan order, as in the serial algorithm; a band's edge rows
read their outside neighbours from bands of the other colour, which are not written at that time.
Random samples come from a counter-based hash of (seed, iteration, position, sample), so nothing
depends on thread scheduling or on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: LLVM's fast-math flags minus "no infs" and "no NaNs": reassociation lets the channel loop
#: vectorise, while LLVM may not assume away the IEEE meaning of comparisons (with "no infs" it
#: could fold a comparison with an infinite bound; NO_LIMIT avoids infinities as well).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: The `limit` that bounds nothing: far above any cost of normalised features, yet finite.
NO_LIMIT = np.float32(1e30)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always")
def _mix64(h):
    """splitmix64's finaliser: a bijective 64-bit hash."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


@njit(inline="always")
def random_in(seed, iteration, y, x, sample, ylo, yhi, xlo, xhi):
    """A reproducible (y, x) uniform in [ylo, yhi] × [xlo, xhi], keyed by (seed, iteration, y, x, sample)."""
    h = _mix64(np.uint64(seed) * _GOLDEN + np.uint64(iteration))
    h = _mix64(h ^ (np.uint64(y) * np.uint64(0x100000001B3) + np.uint64(x)))
    h = _mix64(h + np.uint64(sample) * _GOLDEN)
    ry = np.int64((h & np.uint64(0xFFFFFFFF)) % np.uint64(yhi - ylo + 1))
    rx = np.int64((h >> np.uint64(32)) % np.uint64(xhi - xlo + 1))
    return ylo + ry, xlo + rx


@njit(inline="always")
def overlap(a, b, half, na, nb):
    """The offsets d in [-half, half] with a + d inside [0, na) and b + d inside [0, nb), as (lo, hi)."""
    a, b = np.int64(a), np.int64(b)  # a prange index can be unsigned, and -a must not wrap
    return max(-half, -a, -b), min(half, na - 1 - a, nb - 1 - b)


@njit(inline="always", fastmath=FASTMATH)
def patch_cost(fa, na, fb, nb, ay, ax, by, bx, half, limit):
    """Cost of matching A's patch at (ay, ax) to B's at (by, bx): the mean of ‖a − b‖² over the
    patch offsets that fall inside both maps. Stops early once the mean must exceed `limit`."""
    ha, wa, c = fa.shape
    hb, wb = nb.shape
    y0, y1 = overlap(ay, by, half, ha, hb)
    x0, x1 = overlap(ax, bx, half, wa, wb)
    count = np.float32((y1 - y0 + 1) * (x1 - x0 + 1))
    bound = limit * count
    total = np.float32(0.0)
    for dy in range(y0, y1 + 1):
        ya = ay + dy
        yb = by + dy
        for dx in range(x0, x1 + 1):
            xa = ax + dx
            xb = bx + dx
            dot = np.float32(0.0)
            for k in range(c):
                dot += fa[ya, xa, k] * fb[yb, xb, k]
            total += na[ya, xa] + nb[yb, xb] - np.float32(2.0) * dot
            if total > bound:
                return total / count
    return total / count


@njit(inline="always")
def _try(fa, na, fb, nb, y, x, cy, cx, best_y, best_x, best, half, counts):
    """Evaluate candidate (cy, cx); return the better of it and the current best."""
    if cy == best_y and cx == best_x:
        return best_y, best_x, best
    counts[y] += 1
    c = patch_cost(fa, na, fb, nb, y, x, cy, cx, half, best)
    if c < best:
        return cy, cx, c
    return best_y, best_x, best


@njit(inline="always")
def _improve(fa, na, fb, nb, nnf, cost, half, radius, samples, seed, it, y, x, step, counts):
    """One PatchMatch step at (y, x): propagation from the two neighbours `step` behind, then
    random search in windows of radius `radius`, `radius`/2, … 1 around the running best match
    (clipped to B). Nothing ties a match to where the search started."""
    ha, wa = na.shape
    hb, wb = nb.shape
    by = nnf[y, x, 0]
    bx = nnf[y, x, 1]
    best = cost[y, x]
    nx = x - step
    if 0 <= nx < wa:
        cy = nnf[y, nx, 0]
        cx = min(max(nnf[y, nx, 1] + step, 0), wb - 1)
        by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
    ny = y - step
    if 0 <= ny < ha:
        cy = min(max(nnf[ny, x, 0] + step, 0), hb - 1)
        cx = nnf[ny, x, 1]
        by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
    r = radius
    sample = 0
    while r >= 1:
        for _ in range(samples):
            cy, cx = random_in(seed, it, y, x, sample, max(by - r, 0), min(by + r, hb - 1),
                               max(bx - r, 0), min(bx + r, wb - 1))
            by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
            sample += 1
        r //= 2
    nnf[y, x, 0] = by
    nnf[y, x, 1] = bx
    cost[y, x] = best


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def search(fa, na, fb, nb, nnf, cost, half, iterations, radius, samples, seed, band_height, counts):
    """PatchMatch from A (fa, na) to B (fb, nb), improving `nnf` in place and filling `cost`.

    The random search starts at `radius` and halves down to 1. `counts[y]` is increased by the
    number of patch distances evaluated for row y (each row is written by one thread at a time,
    so the count is exact).
    """
    ha, wa = na.shape
    for y in prange(ha):
        for x in range(wa):
            cost[y, x] = patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half, NO_LIMIT)
            counts[y] += 1
    bands = (ha + band_height - 1) // band_height
    for it in range(iterations):
        reverse = it % 2 == 1
        step = -1 if reverse else 1
        for colour in range(2):
            for j in prange((bands - colour + 1) // 2):
                y0 = (2 * j + colour) * band_height
                y1 = min(y0 + band_height, ha)
                for i in range(y1 - y0):
                    y = y1 - 1 - i if reverse else y0 + i
                    for k in range(wa):
                        x = wa - 1 - k if reverse else k
                        _improve(fa, na, fb, nb, nnf, cost, half, radius, samples, seed, it, y, x, step, counts)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def nnf_cost(fa, na, fb, nb, nnf, half):
    """The exact patch cost of every match of `nnf`, as an (H_A, W_A) float32 array."""
    ha, wa = na.shape
    out = np.empty((ha, wa), dtype=np.float32)
    for y in prange(ha):
        for x in range(wa):
            out[y, x] = patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half, NO_LIMIT)
    return out

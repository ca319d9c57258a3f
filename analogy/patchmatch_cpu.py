"""Numba CPU kernels of the PatchMatch search. The Python-facing API is in `patchmatch.py`.

Layout: features are (H, W, C) float32, C-contiguous, so the inner loop over channels is a
contiguous dot product that vectorises. Each map comes with its per-position squared norms, and
the patch cost is Σ_d ‖a(p+d)‖² + ‖b(q+d)‖² − 2·a(p+d)·b(q+d), i.e. Σ_d ‖a(p+d) − b(q+d)‖²,
with positions outside a map clamped to its border.

Determinism: rows are grouped into fixed bands; even bands are searched in parallel, then odd
ones. Within a band PatchMatch runs in scan order, as in the serial algorithm; a band's edge rows
read their outside neighbours from bands of the other colour, which are not written at that time.
Random samples come from a counter-based hash of (seed, iteration, position, sample), so nothing
depends on thread scheduling or on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

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
def random_offset(seed, iteration, y, x, sample, radius):
    """A reproducible (dy, dx), each uniform in [-radius, radius], keyed by its arguments."""
    h = _mix64(np.uint64(seed) * _GOLDEN + np.uint64(iteration))
    h = _mix64(h ^ (np.uint64(y) * np.uint64(0x100000001B3) + np.uint64(x)))
    h = _mix64(h + np.uint64(sample) * _GOLDEN)
    span = np.uint64(2 * radius + 1)
    dy = np.int64((h & np.uint64(0xFFFFFFFF)) % span) - radius
    dx = np.int64((h >> np.uint64(32)) % span) - radius
    return dy, dx


@njit(inline="always", fastmath=True)
def patch_cost(fa, na, fb, nb, ay, ax, by, bx, half, limit):
    """Cost of matching A's patch at (ay, ax) to B's at (by, bx); stops early once above `limit`."""
    ha, wa, c = fa.shape
    hb, wb = nb.shape
    total = np.float32(0.0)
    for dy in range(-half, half + 1):
        ya = min(max(ay + dy, 0), ha - 1)
        yb = min(max(by + dy, 0), hb - 1)
        for dx in range(-half, half + 1):
            xa = min(max(ax + dx, 0), wa - 1)
            xb = min(max(bx + dx, 0), wb - 1)
            dot = np.float32(0.0)
            for k in range(c):
                dot += fa[ya, xa, k] * fb[yb, xb, k]
            total += na[ya, xa] + nb[yb, xb] - np.float32(2.0) * dot
            if total > limit:
                return total
    return total


@njit(inline="always")
def _window(centre, window, n):
    return max(centre - window, 0), min(centre + window, n - 1)


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
def _improve(fa, na, fb, nb, nnf, cost, centre, window, half, radius, samples, seed, it, y, x, step, counts):
    """One PatchMatch step at (y, x): propagation from the two neighbours `step` behind, then
    random search with halving radius, every candidate kept inside the window around `centre`."""
    ha, wa = na.shape
    hb, wb = nb.shape
    ylo, yhi = _window(centre[y, x, 0], window, hb)
    xlo, xhi = _window(centre[y, x, 1], window, wb)
    by = nnf[y, x, 0]
    bx = nnf[y, x, 1]
    best = cost[y, x]
    nx = x - step
    if 0 <= nx < wa:
        cy = min(max(nnf[y, nx, 0], ylo), yhi)
        cx = min(max(nnf[y, nx, 1] + step, xlo), xhi)
        by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
    ny = y - step
    if 0 <= ny < ha:
        cy = min(max(nnf[ny, x, 0] + step, ylo), yhi)
        cx = min(max(nnf[ny, x, 1], xlo), xhi)
        by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
    r = radius
    sample = 0
    while r >= 1:
        for _ in range(samples):
            dy, dx = random_offset(seed, it, y, x, sample, r)
            cy = min(max(by + dy, ylo), yhi)
            cx = min(max(bx + dx, xlo), xhi)
            by, bx, best = _try(fa, na, fb, nb, y, x, cy, cx, by, bx, best, half, counts)
            sample += 1
        r //= 2
    nnf[y, x, 0] = by
    nnf[y, x, 1] = bx
    cost[y, x] = best


@njit(parallel=True, fastmath=True, cache=True)
def search(fa, na, fb, nb, nnf, cost, centre, window, half, iterations, radius, samples, seed, band_height, counts):
    """PatchMatch from A (fa, na) to B (fb, nb), improving `nnf` in place and filling `cost`.

    Every match stays within `window` (Chebyshev distance) of `centre`; the random search starts
    at `radius` and halves down to 1. `counts[y]` is increased by the number of patch distances
    evaluated for row y (each row is written by one thread at a time, so the count is exact).
    """
    ha, wa = na.shape
    hb, wb = nb.shape
    for y in prange(ha):
        for x in range(wa):
            ylo, yhi = _window(centre[y, x, 0], window, hb)
            xlo, xhi = _window(centre[y, x, 1], window, wb)
            nnf[y, x, 0] = min(max(nnf[y, x, 0], ylo), yhi)
            nnf[y, x, 1] = min(max(nnf[y, x, 1], xlo), xhi)
            cost[y, x] = patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half, np.inf)
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
                        _improve(fa, na, fb, nb, nnf, cost, centre, window, half, radius, samples, seed, it, y, x, step, counts)


@njit(parallel=True, fastmath=True, cache=True)
def nnf_cost(fa, na, fb, nb, nnf, half):
    """The exact patch cost of every match of `nnf`, as an (H_A, W_A) float32 array."""
    ha, wa = na.shape
    out = np.empty((ha, wa), dtype=np.float32)
    for y in prange(ha):
        for x in range(wa):
            out[y, x] = patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half, np.inf)
    return out

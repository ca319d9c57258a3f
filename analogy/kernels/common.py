"""PatchMatch device code that the CPU and CUDA kernels share, written once and compiled for each.

`device_functions(jit, layout)` compiles these functions with a target's decorator (Numba's `njit`
for the CPU, `cuda.jit(device=True)` for the GPU) for that target's feature layout (HWC on the
CPU, CHW on the GPU), the only thing that differs between them. Each target's kernels are then
written in its own module (`cpu.py`, `cuda.py`) on top of the functions returned here, so the
patch cost, the border rule, the random sampling and the propagation candidate are the same code
on both devices, and the same inputs give the same cost and the same random samples on both.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

#: The `limit` that bounds nothing: far above any cost of normalised features, yet finite (a fast-
#: math compiler may assume there are no infinities).
NO_LIMIT = np.float32(1e30)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_FNV = np.uint64(0x100000001B3)
_U32 = np.uint64(0xFFFFFFFF)


def _mix64(h):
    """splitmix64's finaliser: a bijective 64-bit hash."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


def _overlap(a, b, half, na, nb):
    """The offsets d in [-half, half] with a + d inside [0, na) and b + d inside [0, nb), as
    (lo, hi)."""
    a, b = np.int64(a), np.int64(b)  # a CPU prange index can be unsigned, and -a must not wrap
    return max(max(-half, -a), -b), min(min(half, na - 1 - a), nb - 1 - b)


#: The layouts of the feature maps: "HWC", the flat buffer of an (H, W, C) map (the CPU's: a row of
#: a patch is one run of memory), and "CHW", a (C, H, W) map (the GPU's: the threads of a warp read
#: neighbouring floats).
LAYOUTS = ("HWC", "CHW")


class DeviceFunctions(NamedTuple):
    """The shared device functions, compiled for one target (see `device_functions`)."""

    random_in: Callable
    patch_cost: Callable
    try_neighbour: Callable
    random_search: Callable


def device_functions(jit: Callable, layout: str) -> DeviceFunctions:
    """The shared device functions compiled with `jit`, a decorator that makes an inlined device
    function of the target, for feature maps in `layout` (see LAYOUTS). Only the patch cost
    depends on the layout: on HWC maps it sums the squared differences of each position's run of
    channels, a loop that vectorises, from flat buffers (whatever the number of channels: the 8
    of the synthesis's pixel features as the 1024 of two VGG maps); on CHW maps it sums
    ‖a‖² + ‖b‖² − 2a·b (na, nb are the maps' squared norms) reading each channel's plane. Both
    stop after the position that takes the mean over the limit; they give the same costs up to
    float32 rounding."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    mix64, clamp, overlap = jit(_mix64), jit(_clamp), jit(_overlap)

    @jit
    def random_in(seed, counter, y, x, sample, ylo, yhi, xlo, xhi):
        """A reproducible (y, x) uniform in [ylo, yhi] × [xlo, xhi], keyed by
        (seed, counter, y, x, sample)."""
        h = mix64(np.uint64(seed) * _GOLDEN + np.uint64(counter))
        h = mix64(h ^ (np.uint64(y) * _FNV + np.uint64(x)))
        h = mix64(h + np.uint64(sample) * _GOLDEN)
        ry = np.int64((h & _U32) % np.uint64(yhi - ylo + 1))
        rx = np.int64((h >> np.uint64(32)) % np.uint64(xhi - xlo + 1))
        return ylo + ry, xlo + rx

    @jit
    def hwc_cost(fa, na, fb, nb, ay, ax, by, bx, half, limit):
        """Cost of matching A's patch at (ay, ax) to B's at (by, bx): the mean of ‖a − b‖² over
        the patch offsets inside both maps, `fa` and `fb` being the flat buffers of (H, W, C)
        maps whose (H, W) are those of `na` and `nb` (a position's channels are one run of
        memory). Stops early once the mean must exceed `limit`."""
        ha, wa = na.shape
        hb, wb = nb.shape
        c = fa.shape[0] // (ha * wa)
        y0, y1 = overlap(ay, by, half, ha, hb)
        x0, x1 = overlap(ax, bx, half, wa, wb)
        count = np.float32((y1 - y0 + 1) * (x1 - x0 + 1))
        bound = limit * count
        total = np.float32(0.0)
        for dy in range(y0, y1 + 1):
            start_a = ((ay + dy) * wa + ax) * c
            start_b = ((by + dy) * wb + bx) * c
            for dx in range(x0, x1 + 1):
                # unsigned: no wrap-around test per element, so that the loop vectorises
                at_a = np.uint64(start_a + dx * c)
                at_b = np.uint64(start_b + dx * c)
                squares = np.float32(0.0)
                for k in range(np.uint64(c)):
                    d = fa[at_a + k] - fb[at_b + k]
                    squares += d * d
                total += squares
                if total > bound:
                    return total / count
        return total / count

    @jit
    def chw_cost(fa, na, fb, nb, ay, ax, by, bx, half, limit):
        """Cost of matching A's patch at (ay, ax) to B's at (by, bx) on (C, H, W) maps: the mean
        of ‖a‖² + ‖b‖² − 2a·b = ‖a − b‖² over the patch offsets inside both maps. Stops early
        once the mean must exceed `limit`."""
        ha, wa = na.shape
        hb, wb = nb.shape
        c = fa.shape[0]
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
                    dot += fa[k, ya, xa] * fb[k, yb, xb]
                total += na[ya, xa] + nb[yb, xb] - np.float32(2.0) * dot
                if total > bound:
                    return total / count
        return total / count

    patch_cost = hwc_cost if layout == "HWC" else chw_cost

    @jit
    def try_candidate(fa, na, fb, nb, y, x, cy, cx, half, by, bx, best):
        """Evaluate candidate (cy, cx) for (y, x) unless it is the current match (by, bx); return
        the better match, its cost, and the number of patch distances computed (0 or 1)."""
        if cy == by and cx == bx:
            return by, bx, best, 0
        c = patch_cost(fa, na, fb, nb, y, x, cy, cx, half, best)
        if c < best:
            return cy, cx, c, 1
        return by, bx, best, 1

    @jit
    def try_neighbour(fa, na, fb, nb, nnf, y, x, dy, dx, half, by, bx, best):
        """Propagation: try the match of neighbour (y + dy, x + dx), moved back by that offset and
        clipped to B (a neighbour outside A gives nothing)."""
        ha, wa = na.shape
        hb, wb = nb.shape
        ny = y + dy
        nx = x + dx
        if 0 <= ny < ha and 0 <= nx < wa:
            cy = clamp(np.int64(nnf[ny, nx, 0]) - dy, 0, hb - 1)
            cx = clamp(np.int64(nnf[ny, nx, 1]) - dx, 0, wb - 1)
            return try_candidate(fa, na, fb, nb, y, x, cy, cx, half, by, bx, best)
        return by, bx, best, 0

    @jit
    def random_search(fa, na, fb, nb, y, x, half, radius, samples, seed, counter, by, bx, best):
        """Random search: `samples` candidates in each window of radius `radius`, `radius`/2, … 1
        around the running best match, clipped to B. Returns (by, bx, best, distances computed)."""
        hb, wb = nb.shape
        n = 0
        r = radius
        sample = 0
        while r >= 1:
            for _ in range(samples):
                cy, cx = random_in(seed, counter, y, x, sample, max(by - r, 0), min(by + r, hb - 1),
                                   max(bx - r, 0), min(bx + r, wb - 1))
                by, bx, best, tried = try_candidate(fa, na, fb, nb, y, x, cy, cx, half, by, bx,
                                                    best)
                n += tried
                sample += 1
            r //= 2
        return by, bx, best, n

    return DeviceFunctions(random_in, patch_cost, try_neighbour, random_search)


def host_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` means the host ran out of memory: Python's MemoryError (NumPy's and Numba's
    too), torch's OutOfMemoryError, or the RuntimeError of torch's CPU allocator ("can't allocate
    memory") or of SciPy's SuperLU ("SUPERLU_MALLOC fails")."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(
        text in str(exc) for text in ("can't allocate memory", "SUPERLU_MALLOC fails"))

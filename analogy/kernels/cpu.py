"""The CPU kernels: PatchMatch and voting as parallel Numba loops; NNF resampling in plain torch.

Layout: features are (H, W, C) float32, C-contiguous, handed to the kernels as their flat buffer,
so that each row of a patch is one run of memory whose squared differences are summed in one loop,
which vectorises (see `common.device_functions`).

Determinism: rows are grouped into fixed bands; even bands are searched in parallel, then odd
ones. Within a band PatchMatch runs in scan order, as in the serial algorithm (propagation from
the left and upper neighbours on even iterations, from the right and lower ones on odd
iterations); a band's edge rows read their outside neighbours from bands of the other colour,
which are not written at that time. Random samples come from a counter-based hash of
(seed, iteration, position, sample), so nothing depends on thread scheduling or on the number
of threads.

Numba caches the compiled kernels on disk, keyed on this file: after editing `common.py`, touch
this file (or delete its `__pycache__`) so that the kernels are rebuilt.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import ContextManager, Optional, Tuple

import numpy as np
import torch
from numba import njit, prange

from .. import nnf as torch_nnf
from ..deconvolution import memory_rows
from .common import NO_LIMIT, device_functions, host_out_of_memory

#: LLVM's fast-math flags minus "no infs" and "no NaNs": reassociation lets the channel loop
#: vectorise, while LLVM may not assume away the IEEE meaning of comparisons.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _jit(f):
    return njit(inline="always", fastmath=FASTMATH)(f)


#: `random_in` is exposed to check that both targets draw the same random samples.
random_in, _patch_cost, _try_neighbour, _random_search = device_functions(_jit, "HWC")


@_jit
def _improve(fa, na, fb, nb, nnf, cost, half, radius, samples, seed, it, y, x, step, counts):
    """One PatchMatch step at (y, x): propagation from the two neighbours `step` behind, then the
    random search around the running best match."""
    by = np.int64(nnf[y, x, 0])
    bx = np.int64(nnf[y, x, 1])
    best = cost[y, x]
    by, bx, best, n_left = _try_neighbour(fa, na, fb, nb, nnf, y, x, 0, -step, half, by, bx, best)
    by, bx, best, n_up = _try_neighbour(fa, na, fb, nb, nnf, y, x, -step, 0, half, by, bx, best)
    by, bx, best, n_random = _random_search(fa, na, fb, nb, y, x, half, radius, samples, seed, it,
                                            by, bx, best)
    counts[y] += n_left + n_up + n_random
    nnf[y, x, 0] = by
    nnf[y, x, 1] = bx
    cost[y, x] = best


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def search_arrays(fa, na, fb, nb, nnf, cost, half, iterations, radius, samples, seed, band_height,
                  counts):
    """PatchMatch from A (fa, na) to B (fb, nb) on numpy arrays, improving `nnf` in place and
    filling `cost`. `counts[y]` is increased by the number of patch distances evaluated for row y
    (each row is written by one thread at a time, so the count is exact)."""
    ha, wa = na.shape
    for y in prange(ha):
        for x in range(wa):
            cost[y, x] = _patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half,
                                     NO_LIMIT)
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
                        _improve(fa, na, fb, nb, nnf, cost, half, radius, samples, seed, it, y, x,
                                 step, counts)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def cost_arrays(fa, na, fb, nb, nnf, half):
    """The exact patch cost of every match of `nnf`, as an (H_A, W_A) float32 array."""
    ha, wa = na.shape
    out = np.empty((ha, wa), dtype=np.float32)
    for y in prange(ha):
        for x in range(wa):
            out[y, x] = _patch_cost(fa, na, fb, nb, y, x, nnf[y, x, 0], nnf[y, x, 1], half,
                                    NO_LIMIT)
    return out


@njit(parallel=True, cache=True)
def vote_arrays(source, nnf, half, tolerance2, out):
    """Patch voting into `out` (C×H×W) of `source` (H_B×W_B×C: a pixel's channels side by side,
    one cache line for the scattered reads) through `nnf` (H×W×2): the mean of
    source[φ(p + d) − d, c] over the offsets d with p + d inside the target and φ(p + d) − d
    inside the source; with `tolerance2` ≥ 0, only over the votes whose squared distance to
    source[φ(p)] is at most that (the consensus vote of `analogy.nnf.vote`). Summed in
    `analogy.nnf.vote`'s order (dy, then dx) and without fast-math, so that the bytes are torch's.
    One pass, nothing allocated per tap."""
    hb, wb, channels = source.shape
    _, h, w = out.shape
    taps = (2 * half + 1) * (2 * half + 1)
    for y in prange(h):
        ys = np.empty(taps, dtype=np.int64)
        xs = np.empty(taps, dtype=np.int64)
        for x in range(w):
            cy = np.int64(nnf[y, x, 0])
            cx = np.int64(nnf[y, x, 1])
            n = 0
            for dy in range(-half, half + 1):
                yy = y + dy
                for dx in range(-half, half + 1):
                    xx = x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        sy = np.int64(nnf[yy, xx, 0]) - dy
                        sx = np.int64(nnf[yy, xx, 1]) - dx
                        if 0 <= sy < hb and 0 <= sx < wb:
                            if tolerance2 >= 0:
                                d2 = np.float32(0.0)
                                for c in range(channels):
                                    diff = source[sy, sx, c] - source[cy, cx, c]
                                    d2 += diff * diff
                                if not d2 <= tolerance2:
                                    continue
                            ys[n] = sy
                            xs[n] = sx
                            n += 1
            count = np.float32(n)
            for c in range(channels):
                acc = np.float32(0.0)
                for t in range(n):
                    acc += source[ys[t], xs[t], c]
                out[c, y, x] = acc / count


@njit(parallel=True, cache=True)
def resample_arrays(nnf, cell_y, offset_y, cell_x, offset_x, scale_y, scale_x, hb, wb, out):
    """`analogy.nnf.resample_nnf` into `out` (H×W×2) from the per-axis cells and offsets of its
    `resample_axis`: the same float64 arithmetic, so the same matches."""
    h, w = out.shape[0], out.shape[1]
    for y in prange(h):
        cy = cell_y[y]
        oy = offset_y[y]
        for x in range(w):
            cx = cell_x[x]
            my = np.floor((np.float64(nnf[cy, cx, 0]) + oy + 0.5) * scale_y + 1e-6)
            mx = np.floor((np.float64(nnf[cy, cx, 1]) + offset_x[x] + 0.5) * scale_x + 1e-6)
            out[y, x, 0] = np.int32(min(max(my, 0.0), hb - 1.0))
            out[y, x, 1] = np.int32(min(max(mx, 0.0), wb - 1.0))


@njit(parallel=True, cache=True)
def pixel_feature_arrays(appearance, guide, structure, scales, out, sq_norms):
    """`analogy.synthesis.pixel_features` into `out` (H×W×8) and `sq_norms` (H×W) in one pass:
    appearance, guide and structure (C×H×W) times their scales, then a zero."""
    h, w = sq_norms.shape
    for y in prange(h):
        for x in range(w):
            total = np.float32(0.0)
            for c in range(3):
                v = appearance[c, y, x] * scales[0]
                out[y, x, c] = v
                total += v * v
            for c in range(3):
                v = guide[c, y, x] * scales[1]
                out[y, x, 3 + c] = v
                total += v * v
            v = structure[0, y, x] * scales[2]
            out[y, x, 6] = v
            out[y, x, 7] = np.float32(0.0)
            sq_norms[y, x] = total + v * v


@functools.lru_cache(maxsize=None)
def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX), which oneDNN's bfloat16
    convolutions need to be faster than float32 ones (elsewhere it converts, and is slower). Read
    from /proc/cpuinfo; False where there is none."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _row_dots(a, b, out):
    """out[i] = a[i] · b[i]: each row summed by one thread, so the result does not depend on how
    many there are."""
    for i in prange(a.shape[0]):
        total = np.float32(0.0)
        for j in range(a.shape[1]):
            total += a[i, j] * b[i, j]
        out[i] = total


def _flat(side) -> np.ndarray:
    """A SearchFeatures side's (H, W, C) features as the kernels take them: their flat buffer."""
    return side.features.contiguous().numpy().reshape(-1)


class CpuKernels:
    """The kernel interface (see `analogy.kernels.Kernels`) on CPU tensors."""

    device = torch.device("cpu")

    @property
    def native_bfloat16(self) -> bool:
        return native_bfloat16()

    def __init__(self, band_height: int = 4) -> None:
        """`band_height`: rows per band of the parallel search (a fixed partition of the image, so
        results do not depend on the number of cores)."""
        self.band_height = int(band_height)

    def search(self, a, b, init: torch.Tensor, patch_size: int, iterations: int,
               radius: Optional[int] = None, seed: int = 0, samples: int = 1,
               evaluations: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        radius = radius if radius is not None else max(b.shape)
        nnf = init.to(torch.int32).clone().contiguous()
        cost = torch.empty(a.shape, dtype=torch.float32)
        if evaluations is None:
            evaluations = torch.zeros(a.shape[0], dtype=torch.int64)
        search_arrays(
            _flat(a), a.sq_norms.numpy(), _flat(b), b.sq_norms.numpy(),
            nnf.numpy(), cost.numpy(), patch_size // 2, int(iterations), int(radius), int(samples),
            int(seed), self.band_height, evaluations.numpy(),
        )
        return nnf, cost

    def cost(self, a, b, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
        return torch.from_numpy(cost_arrays(
            _flat(a), a.sq_norms.numpy(), _flat(b), b.sq_norms.numpy(),
            nnf.to(torch.int32).contiguous().numpy(), patch_size // 2,
        ))

    def vote(self, source: torch.Tensor, nnf: torch.Tensor, patch_size: int,
             tolerance: Optional[float] = None) -> torch.Tensor:
        if source.dtype != torch.float32:
            return torch_nnf.vote(source, nnf, patch_size, tolerance)
        source = source.permute(1, 2, 0).contiguous()
        nnf = nnf.to(torch.int32).contiguous()
        out = torch.empty((source.shape[2],) + tuple(nnf.shape[:2]), dtype=torch.float32)
        tolerance2 = -1.0 if tolerance is None else float(tolerance) ** 2
        vote_arrays(source.numpy(), nnf.numpy(), patch_size // 2, np.float32(tolerance2),
                    out.numpy())
        return out

    def resample_nnf(self, nnf: torch.Tensor, shape_b, new_shape_a, new_shape_b) -> torch.Tensor:
        if tuple(nnf.shape[:2]) == tuple(new_shape_a) and tuple(shape_b) == tuple(new_shape_b):
            return nnf.to(torch.int32).clone()  # the same sizes: each match stays
        (cell_y, offset_y), (cell_x, offset_x) = (
            (c.numpy(), o.numpy()) for c, o in (
                torch_nnf.resample_axis(nnf.shape[axis], new_shape_a[axis], "cpu")
                for axis in range(2)))
        out = torch.empty(tuple(new_shape_a) + (2,), dtype=torch.int32)
        resample_arrays(nnf.to(torch.int32).contiguous().numpy(), cell_y, offset_y, cell_x,
                        offset_x, new_shape_b[0] / shape_b[0], new_shape_b[1] / shape_b[1],
                        int(new_shape_b[0]), int(new_shape_b[1]), out.numpy())
        return out

    def pixel_features(self, appearance: torch.Tensor, guide: torch.Tensor,
                       structure: torch.Tensor, scales: Tuple[float, float, float]):
        from ..patchmatch import SearchFeatures

        h, w = appearance.shape[-2:]
        out = torch.empty((h, w, 8), dtype=torch.float32)
        sq_norms = torch.empty((h, w), dtype=torch.float32)
        pixel_feature_arrays(appearance.float().contiguous().numpy(),
                             guide.float().contiguous().numpy(),
                             structure.float().contiguous().numpy(),
                             np.asarray(scales, dtype=np.float32), out.numpy(), sq_norms.numpy())
        return SearchFeatures(out, sq_norms)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> float:
        rows_a, rows_b = memory_rows(a).numpy(), memory_rows(b).numpy()
        out = np.empty(rows_a.shape[0], dtype=np.float32)
        _row_dots(rows_a, rows_b, out)  # one pass over both maps, nothing written
        return float(out.sum())

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return host_out_of_memory(exc)

    def deterministic(self) -> ContextManager[None]:
        return contextlib.nullcontext()  # torch's CPU kernels are deterministic for a thread count

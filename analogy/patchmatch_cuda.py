"""Numba CUDA kernels of the PatchMatch search, NNF resampling and patch voting, and the thin layer
that runs them on torch tensors. The Python-facing API stays in `patchmatch.py` and `nnf.py`, which
call in here when their tensors are on a CUDA device; this module is imported only then (and by
`pipeline.resolve_device` when torch sees a GPU), so the CPU path never needs a CUDA target.

Which Numba CUDA target: the code is written against the `numba.cuda` API, which is served either
by the target still built into Numba (deprecated since Numba 0.61: no new features, and its tables
stop at CUDA 12.4 and compute capability 9.0) or by NVIDIA's `numba-cuda` package, which takes
over `numba.cuda` when installed, supports CUDA 12 and 13 toolkits from pip wheels (libNVVM and
NVRTC through `cuda-pathfinder`, as torch's own CUDA wheels are laid out) and current GPUs. The
package's `cuda` extra installs `numba-cuda[cu13]`; the built-in target is enough for CI, which
runs these kernels under the CUDA simulator (`NUMBA_ENABLE_CUDASIM=1`) that both targets provide.

Layout: features are (C, H, W) float32 here (channels first, unlike the CPU kernel's HWC), so
that in the channel loop of a patch distance the 32 threads of a warp, which handle 32
neighbouring positions of a row, read 32 neighbouring floats. NNFs are (H, W, 2) int32 (y, x):
32-bit coordinates, so there is no side limit. Threads map to positions: x along a row, y down.

PatchMatch on the GPU. An iteration is a sequence of passes, one kernel launch each, with jump
steps that halve (8, 4, 2, 1, capped by the map's size). In a pass every position tries the
matches of its four neighbours at ±step, shifted by the step (jump-flooding propagation), then a
random search in windows of radius r, r/2, … 1 around its running best match (clipped to B),
exactly as the CPU kernel does; nothing bounds a match to where the search started. A pass reads
one NNF/cost buffer and writes the other (double buffering), so no thread reads what another
writes in the same launch; the buffers swap between passes. Random offsets come from the CPU
kernel's counter-based hash (splitmix64) keyed by (seed, pass, y, x, sample). Hence the result is
a pure function of the inputs and the seed: no races, no dependence on scheduling or block size.
Each launch is short (one pass over the map), so there is no driver watchdog risk.

The simulator runs every thread as a Python thread, and a patch distance over up to 1024
channels element by element, so a 12×12 search would take many minutes. Under the simulator only,
three things differ, none of which changes a result: the innermost channel loop of a patch
distance is one `numpy.matmul`; device functions are called as plain Python functions; and each
kernel runs as one block of SIMULATOR_BLOCK threads, which walk all positions in the kernels'
grid-stride loops (on a GPU there is one thread per position, and each loop body runs once).
Everything else is the code compiled for the GPU. Kernels are compiled on first use and cached
on disk (`cache=True`).
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from numba import cuda, float32

#: True when Numba runs kernels in its CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR = "simulator" in cuda.jit.__module__
#: Largest jump step of the propagation passes; each iteration runs steps MAX_STEP, …, 2, 1.
MAX_STEP = 8
#: Threads per block along x (a row) and y; under the simulator, the whole (single-block) grid.
BLOCK = (32, 8)
SIMULATOR_BLOCK = (4, 4)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U32 = np.uint64(0xFFFFFFFF)
#: The CPU kernel's NO_LIMIT: a bound above any cost, finite so that fast math cannot misread it.
NO_LIMIT = np.float32(1e30)

if SIMULATOR:
    # numpy warns about uint64 wrap-around, which the hash relies on (the GPU wraps silently).
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning, __name__)


# --------------------------------------------------------------------------- device functions


def _device(f):
    """A device function; under the simulator the plain Python function, which is equivalent (none
    of them uses the `cuda` API) and avoids the simulator's costly wrapping of every call."""
    return f if SIMULATOR else cuda.jit(device=True, inline=True)(f)


@_device
def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


@_device
def _mix64(h):
    """splitmix64's finaliser, as in the CPU kernel."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


@_device
def _random_in(seed, counter, y, x, sample, ylo, yhi, xlo, xhi):
    """The CPU kernel's `random_in`: (y, x) uniform in [ylo, yhi] × [xlo, xhi], keyed by the rest."""
    h = _mix64(np.uint64(seed) * _GOLDEN + np.uint64(counter))
    h = _mix64(h ^ (np.uint64(y) * np.uint64(0x100000001B3) + np.uint64(x)))
    h = _mix64(h + np.uint64(sample) * _GOLDEN)
    ry = np.int64((h & _U32) % np.uint64(yhi - ylo + 1))
    rx = np.int64((h >> np.uint64(32)) % np.uint64(xhi - xlo + 1))
    return ylo + ry, xlo + rx


def _dot_loop(fa, ya, xa, fb, yb, xb):
    total = float32(0.0)
    for k in range(fa.shape[0]):
        total += fa[k, ya, xa] * fb[k, yb, xb]
    return total


def _dot_numpy(fa, ya, xa, fb, yb, xb):
    # matmul, a ufunc, reaches the simulator's arrays without converting them element by element
    return np.float32(np.matmul(fa[:, ya, xa], fb[:, yb, xb]))


#: a(ya, xa) · b(yb, xb) over the channels (see the module docstring for the simulator's variant).
_dot = _device(_dot_numpy if SIMULATOR else _dot_loop)


@_device
def _overlap(a, b, half, na, nb):
    """The CPU kernel's `overlap`: offsets d in [-half, half] with a + d in [0, na), b + d in [0, nb)."""
    return max(max(-half, -a), -b), min(min(half, na - 1 - a), nb - 1 - b)


@_device
def _patch_cost(fa, na, fb, nb, ha, wa, hb, wb, ay, ax, by, bx, half, limit):
    """Mean of ‖a − b‖² = |a|² + |b|² − 2a·b over the patch offsets inside both maps (A is ha×wa,
    B hb×wb); stops once the mean must pass `limit`, as the CPU kernel does."""
    y0, y1 = _overlap(ay, by, half, ha, hb)
    x0, x1 = _overlap(ax, bx, half, wa, wb)
    count = float32((y1 - y0 + 1) * (x1 - x0 + 1))
    bound = limit * count
    total = float32(0.0)
    for dy in range(y0, y1 + 1):
        for dx in range(x0, x1 + 1):
            ya, yb, xa, xb = ay + dy, by + dy, ax + dx, bx + dx
            total += na[ya, xa] + nb[yb, xb] - float32(2.0) * _dot(fa, ya, xa, fb, yb, xb)
            if total > bound:
                return total / count
    return total / count


if SIMULATOR:

    def _mul_rn(a, b):
        return a * b

    def _add_rn(a, b):
        return a + b

else:
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline=True)
    def _mul_rn(a, b):
        """a·b rounded on its own: never fused into an FMA, so results equal torch's on the CPU."""
        return libdevice.dmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _add_rn(a, b):
        return libdevice.dadd_rn(a, b)


# --------------------------------------------------------------------------- kernels
# Each kernel walks its positions in a grid-stride loop: launched as below, with one thread per
# position, every thread runs the loop body once; the simulator, where every thread is a Python
# thread and costs milliseconds, runs one small block instead. Positions never depend on each
# other within a launch, so the results are the same either way.


@_device
def _cost_at(fa, na, fb, nb, nnf, cost, half, y, x):
    ha, wa = na.shape
    hb, wb = nb.shape
    cost[y, x] = _patch_cost(fa, na, fb, nb, ha, wa, hb, wb, y, x, np.int64(nnf[y, x, 0]), np.int64(nnf[y, x, 1]),
                             half, NO_LIMIT)


@cuda.jit(fastmath=True, cache=True)
def _cost_kernel(fa, na, fb, nb, nnf, cost, half):
    """cost = patch cost of each match of `nnf`."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for y in range(y0, na.shape[0], sy):
        for x in range(x0, na.shape[1], sx):
            _cost_at(fa, na, fb, nb, nnf, cost, half, y, x)


@_device
def _try(fa, na, fb, nb, ha, wa, hb, wb, y, x, cy, cx, half, by, bx, best):
    """Evaluate candidate (cy, cx) unless it is the current match (by, bx); return the better
    match, its cost, and 1 if a distance was computed (else 0)."""
    if cy == by and cx == bx:
        return by, bx, best, 0
    c = _patch_cost(fa, na, fb, nb, ha, wa, hb, wb, y, x, cy, cx, half, best)
    if c < best:
        return cy, cx, c, 1
    return by, bx, best, 1


@_device
def _pass_at(fa, na, fb, nb, src, src_cost, dst, dst_cost, half, radius, samples, seed, counter, step, y, x):
    """One PatchMatch pass at (y, x); see the module docstring. Returns the distances computed."""
    ha, wa = na.shape
    hb, wb = nb.shape
    by = np.int64(src[y, x, 0])
    bx = np.int64(src[y, x, 1])
    best = src_cost[y, x]
    n = 0
    for d in range(4):
        dy = 0
        dx = 0
        if d == 0:
            dx = -step
        elif d == 1:
            dx = step
        elif d == 2:
            dy = -step
        else:
            dy = step
        ny = y + dy
        nx = x + dx
        if 0 <= ny < ha and 0 <= nx < wa:
            # the neighbour's match, moved back by the offset to the neighbour
            cy = _clamp(np.int64(src[ny, nx, 0]) - dy, 0, hb - 1)
            cx = _clamp(np.int64(src[ny, nx, 1]) - dx, 0, wb - 1)
            by, bx, best, tried = _try(fa, na, fb, nb, ha, wa, hb, wb, y, x, cy, cx, half, by, bx, best)
            n += tried
    r = radius
    sample = 0
    while r >= 1:
        for _ in range(samples):
            cy, cx = _random_in(seed, counter, y, x, sample, max(by - r, 0), min(by + r, hb - 1),
                                max(bx - r, 0), min(bx + r, wb - 1))
            by, bx, best, tried = _try(fa, na, fb, nb, ha, wa, hb, wb, y, x, cy, cx, half, by, bx, best)
            n += tried
            sample += 1
        r //= 2
    dst[y, x, 0] = by
    dst[y, x, 1] = bx
    dst_cost[y, x] = best
    return n


@cuda.jit(fastmath=True, cache=True)
def _pass_kernel(fa, na, fb, nb, src, src_cost, dst, dst_cost, half, radius, samples, seed, counter, step,
                 counts):
    """One PatchMatch pass: reads (src, src_cost), writes (dst, dst_cost); adds the number of patch
    distances computed in each row y to counts[y] (int64)."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for y in range(y0, na.shape[0], sy):
        n = 0
        for x in range(x0, na.shape[1], sx):
            n += _pass_at(fa, na, fb, nb, src, src_cost, dst, dst_cost, half, radius, samples, seed, counter,
                          step, y, x)
        cuda.atomic.add(counts, y, n)


@_device
def _vote_at(source, nnf, half, out, c, y, x):
    _, h, w = out.shape
    _, hb, wb = source.shape
    acc = float32(0.0)
    count = float32(0.0)
    for dy in range(-half, half + 1):
        yy = y + dy
        for dx in range(-half, half + 1):
            xx = x + dx
            if 0 <= yy < h and 0 <= xx < w:
                sy = np.int64(nnf[yy, xx, 0]) - dy
                sx = np.int64(nnf[yy, xx, 1]) - dx
                if 0 <= sy < hb and 0 <= sx < wb:
                    acc += source[c, sy, sx]
                    count += float32(1.0)
    out[c, y, x] = acc / count


@cuda.jit(cache=True)
def _vote_kernel(source, nnf, half, out):
    """out[c, y, x] = mean of source[c, φ(p + d) − d] over the patch offsets d with p + d in the
    target and φ(p + d) − d in the source, summed in the same order as `analogy.nnf.vote` so that
    the results are equal."""
    x0, y0, c0 = cuda.grid(3)
    sx, sy, sc = cuda.gridsize(3)
    for c in range(c0, out.shape[0], sc):
        for y in range(y0, out.shape[1], sy):
            for x in range(x0, out.shape[2], sx):
                _vote_at(source, nnf, half, out, c, y, x)


@_device
def _resample_at(nnf, cell_y, off_y, cell_x, off_x, scale_y, scale_x, hb, wb, out, y, x):
    cy = cell_y[y]
    cx = cell_x[x]
    # floor((old + offset + 0.5) · scale + 1e-6), rounded step by step as torch does
    vy = math.floor(_add_rn(_mul_rn(_add_rn(_add_rn(float(nnf[cy, cx, 0]), off_y[y]), 0.5), scale_y), 1e-6))
    vx = math.floor(_add_rn(_mul_rn(_add_rn(_add_rn(float(nnf[cy, cx, 1]), off_x[x]), 0.5), scale_x), 1e-6))
    out[y, x, 0] = np.int32(_clamp(vy, 0.0, float(hb - 1)))
    out[y, x, 1] = np.int32(_clamp(vx, 0.0, float(wb - 1)))


@cuda.jit(cache=True)
def _resample_kernel(nnf, cell_y, off_y, cell_x, off_x, scale_y, scale_x, hb, wb, out):
    """`analogy.nnf.resample_nnf` per position, given its per-axis cells and offsets."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for y in range(y0, out.shape[0], sy):
        for x in range(x0, out.shape[1], sx):
            _resample_at(nnf, cell_y, off_y, cell_x, off_x, scale_y, scale_x, hb, wb, out, y, x)


# --------------------------------------------------------------------------- launch helpers


def jump_steps(shape: Tuple[int, int], max_step: int = MAX_STEP) -> Tuple[int, ...]:
    """The propagation steps of one iteration: powers of two from min(max_step, side − 1) to 1."""
    step = 1
    while step * 2 <= min(max_step, max(shape) - 1):
        step *= 2
    steps = []
    while step >= 1:
        steps.append(step)
        step //= 2
    return tuple(steps)


def _launch(shape: Tuple[int, ...]) -> Tuple[tuple, tuple]:
    """(grid, block) for threads over (W, H[, depth]): one thread per position on a GPU (blocks
    shrink for maps smaller than BLOCK); a single block of SIMULATOR_BLOCK under the simulator."""
    h, w = shape[0], shape[1]
    if SIMULATOR:
        block = (min(SIMULATOR_BLOCK[0], w), min(SIMULATOR_BLOCK[1], h))
        grid = (1, 1)
    else:
        block = (min(BLOCK[0], w), min(BLOCK[1], h))
        grid = ((w + block[0] - 1) // block[0], (h + block[1] - 1) // block[1])
    if len(shape) == 3:
        return grid + (1 if SIMULATOR else shape[2],), block + (1,)
    return grid, block


def search_arrays(fa, na, fb, nb, nnf, cost, nnf_tmp, cost_tmp, counts, half, iterations, radius,
                  samples=1, seed=0, stream=0) -> int:
    """PatchMatch on arrays the kernels take (device arrays, or numpy arrays under the simulator).

    fa, fb: (C, H, W) float32 normalised features; na, nb: their (H, W) squared norms; nnf: the
    (H_A, W_A, 2) int32 start; nnf_tmp, cost_tmp: the second buffer.
    `counts`, an int64 array with one entry per row of A, accumulates the patch distances computed.
    Returns 0 when the result is in (nnf, cost), 1 when it is in (nnf_tmp, cost_tmp).
    """
    shape = tuple(na.shape)
    grid, block = _launch(shape)
    seed = int(seed) % 2**64  # the CPU kernel's wrap-around of negative seeds
    _cost_kernel[grid, block, stream](fa, na, fb, nb, nnf, cost, int(half))
    buffers = ((nnf, cost), (nnf_tmp, cost_tmp))
    current = 0
    counter = 0
    steps = jump_steps(shape)
    for _ in range(int(iterations)):
        for step in steps:
            (src, src_cost), (dst, dst_cost) = buffers[current], buffers[1 - current]
            _pass_kernel[grid, block, stream](
                fa, na, fb, nb, src, src_cost, dst, dst_cost, int(half), int(radius), int(samples), seed,
                counter, step, counts,
            )
            current = 1 - current
            counter += 1
    return current


# --------------------------------------------------------------------------- torch tensors


def _array(t: torch.Tensor):
    """A kernel argument sharing memory with `t` (contiguous): a Numba view of a CUDA tensor, or
    the numpy view of a CPU tensor under the simulator."""
    if t.is_cuda:
        if SIMULATOR:
            raise RuntimeError("Numba's CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1); it runs on CPU tensors only")
        return cuda.as_cuda_array(t.detach(), sync=False)
    if not SIMULATOR:
        raise ValueError("the CUDA kernels need CUDA tensors (CPU tensors only under NUMBA_ENABLE_CUDASIM=1)")
    return t.detach().numpy()


@contextlib.contextmanager
def _context(device: torch.device):
    """Numba's context for `device`, and the stream to launch on: torch's current stream, so that
    kernels and torch's own work are ordered without any synchronisation."""
    if device.type != "cuda":
        yield 0
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cuda.gpus[index]:
        yield cuda.external_stream(torch.cuda.current_stream(index).cuda_stream)


def patchmatch(a, b, init: torch.Tensor, patch_size: int, iterations: int, radius: Optional[int] = None,
               seed: int = 0, samples: int = 1,
               evaluations: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """`analogy.patchmatch.patchmatch` with the CUDA kernels: same arguments (`a`, `b` are
    SearchFeatures), same radius semantics; returns (nnf, cost) on init's device."""
    radius = radius if radius is not None else max(b.shape)
    device = init.device
    fa = a.features.permute(2, 0, 1).contiguous()
    fb = b.features.permute(2, 0, 1).contiguous()
    na, nb = a.sq_norms.contiguous(), b.sq_norms.contiguous()
    nnf = init.to(torch.int32).clone().contiguous()
    buffers = (nnf, torch.empty_like(nnf))
    costs = (torch.empty(a.shape, dtype=torch.float32, device=device), torch.empty(a.shape, dtype=torch.float32, device=device))
    counts = torch.zeros(a.shape[0], dtype=torch.int64, device=device)
    with _context(device) as stream:
        result = search_arrays(
            _array(fa), _array(na), _array(fb), _array(nb), _array(buffers[0]), _array(costs[0]),
            _array(buffers[1]), _array(costs[1]), _array(counts), patch_size // 2, int(iterations),
            int(radius), int(samples), int(seed), stream,
        )
    if evaluations is not None:
        evaluations += counts.to(evaluations.device)
    return buffers[result], costs[result]


def nnf_cost(a, b, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`analogy.patchmatch.nnf_cost` with the CUDA kernels."""
    device = nnf.device
    fa = a.features.permute(2, 0, 1).contiguous()
    fb = b.features.permute(2, 0, 1).contiguous()
    nnf = nnf.to(torch.int32).contiguous()
    out = torch.empty(a.shape, dtype=torch.float32, device=device)
    grid, block = _launch(a.shape)
    with _context(device) as stream:
        _cost_kernel[grid, block, stream](
            _array(fa), _array(a.sq_norms.contiguous()), _array(fb), _array(b.sq_norms.contiguous()),
            _array(nnf), _array(out), patch_size // 2,
        )
    return out


def vote(source: torch.Tensor, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`analogy.nnf.vote` with the CUDA kernel (float32 C×H_B×W_B source); equal results."""
    if source.dtype != torch.float32:
        raise TypeError(f"the CUDA vote takes float32 sources, not {source.dtype}")
    source = source.contiguous()
    nnf = nnf.to(torch.int32).contiguous()
    h, w = nnf.shape[:2]
    out = torch.empty((source.shape[0], h, w), dtype=torch.float32, device=source.device)
    grid, block = _launch((h, w, source.shape[0]))
    with _context(source.device) as stream:
        _vote_kernel[grid, block, stream](_array(source), _array(nnf), patch_size // 2, _array(out))
    return out


def resample_nnf(nnf: torch.Tensor, shape_b, new_shape_a, new_shape_b) -> torch.Tensor:
    """`analogy.nnf.resample_nnf` with the CUDA kernel; equal results."""
    from .nnf import _resample_axis

    device = nnf.device
    nnf = nnf.to(torch.int32).contiguous()
    cell_y, off_y = _resample_axis(nnf.shape[0], new_shape_a[0], device)
    cell_x, off_x = _resample_axis(nnf.shape[1], new_shape_a[1], device)
    out = torch.empty((new_shape_a[0], new_shape_a[1], 2), dtype=torch.int32, device=device)
    grid, block = _launch(tuple(new_shape_a))
    with _context(device) as stream:
        _resample_kernel[grid, block, stream](
            _array(nnf), _array(cell_y.contiguous()), _array(off_y.contiguous()), _array(cell_x.contiguous()),
            _array(off_x.contiguous()), new_shape_b[0] / shape_b[0], new_shape_b[1] / shape_b[1],
            int(new_shape_b[0]), int(new_shape_b[1]), _array(out),
        )
    return out


# --------------------------------------------------------------------------- availability, errors


@functools.lru_cache(maxsize=None)
def problem(index: int = 0) -> Optional[str]:
    """None when the kernels run on CUDA device `index`; otherwise why not, in a few words.

    Compiles and runs one small kernel on a torch tensor, so a missing libNVVM, a GPU the target
    does not support or a driver too old for it show up here rather than in the middle of a run.
    """
    if SIMULATOR:
        return "Numba's CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1)"
    try:
        if not cuda.is_available():
            return "Numba finds no usable CUDA driver or device"
        nnf = torch.zeros((2, 2, 2), dtype=torch.int32, device=f"cuda:{index}")
        out = resample_nnf(nnf, (2, 2), (4, 4), (4, 4))
        torch.cuda.synchronize(index)
        if int(out[3, 3, 0]) != 1:
            return "a test kernel gave a wrong result"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with its reason
        return f"Numba's CUDA target cannot run a kernel ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is a CUDA out-of-memory error raised through Numba."""
    try:
        from numba.cuda.cudadrv.driver import CudaAPIError
    except Exception:  # noqa: BLE001
        return False
    return isinstance(exc, CudaAPIError) and (getattr(exc, "code", None) == 2 or "OUT_OF_MEMORY" in str(exc))

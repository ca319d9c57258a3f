"""The CUDA kernels: PatchMatch, patch cost and voting as Numba CUDA kernels on torch's CUDA
tensors; NNF resampling in plain torch (elementwise, on the GPU where the tensors are).

Imported only when a CUDA device is used or probed, so the CPU path never needs a CUDA target.

Which Numba CUDA target: the code is written against the `numba.cuda` API, which is served either
by the target still built into Numba (deprecated since Numba 0.61: no new features, and its tables
stop at CUDA 12.4 and compute capability 9.0) or by NVIDIA's `numba-cuda` package, which takes
over `numba.cuda` when installed, supports CUDA 12 and 13 toolkits from pip wheels and current
GPUs. The package's `cuda` extra installs `numba-cuda[cu13]`.

Layout: features are (C, H, W) float32 here (channels first, unlike the CPU's HWC), so that in the
channel loop of a patch distance the 32 threads of a warp, which handle 32 neighbouring positions
of a row, read 32 neighbouring floats. NNFs are (H, W, 2) int32 (y, x). Threads map to
positions: x along a row, y down; every kernel walks its positions in a grid-stride loop, so any
launch geometry gives the same result.

PatchMatch on the GPU. An iteration is a sequence of passes, one kernel launch each, with jump
steps that halve (8, 4, 2, 1, capped by the map's size). In a pass every position tries the
matches of its four neighbours at ±step, shifted by the step (jump-flooding propagation), then
the random search around its running best match, the same device code as the CPU's. A pass reads
one NNF/cost buffer and writes the other (double buffering), so no thread reads what another
writes in the same launch; the buffers swap between passes. Random samples come from the CPU's
counter-based hash keyed by (seed, pass, y, x, sample). Hence the result is a pure function of the
inputs and the seed: no races, no dependence on scheduling or block size. Each launch is one
short pass over the map, so there is no driver watchdog risk.

Host (CPU) tensors are accepted as well and handed to Numba as numpy arrays, which Numba copies to
the device and back; that is how Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, which runs the
kernels on the CPU) tests them without a GPU.
"""
from __future__ import annotations

import contextlib
import functools
from typing import ContextManager, Optional, Tuple

import numpy as np
import torch
from numba import cuda

from .. import nnf as torch_nnf
from .common import NO_LIMIT, device_functions, host_out_of_memory

#: Largest jump step of the propagation passes; each iteration runs steps MAX_STEP, …, 2, 1.
MAX_STEP = 8
#: Threads per block along x (a row) and y.
BLOCK = (32, 8)


def _jit(f):
    return cuda.jit(device=True, inline=True)(f)


#: `random_in` is exposed to check that both targets draw the same random samples.
random_in, _patch_cost, _try_neighbour, _random_search = device_functions(_jit, "CHW")


# --------------------------------------------------------------------------- kernels


@cuda.jit(fastmath=True, cache=True)
def _cost_kernel(fa, na, fb, nb, nnf, cost, half):
    """cost = patch cost of each match of `nnf`."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for y in range(y0, na.shape[0], sy):
        for x in range(x0, na.shape[1], sx):
            cost[y, x] = _patch_cost(fa, na, fb, nb, y, x, np.int64(nnf[y, x, 0]),
                                     np.int64(nnf[y, x, 1]), half, NO_LIMIT)


@cuda.jit(fastmath=True, cache=True)
def _pass_kernel(fa, na, fb, nb, src, src_cost, dst, dst_cost, half, radius, samples, seed, counter,
                 step, counts):
    """One PatchMatch pass (see the module docstring): reads (src, src_cost), writes (dst,
    dst_cost); adds the number of patch distances computed in each row y to counts[y] (int64)."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for y in range(y0, na.shape[0], sy):
        n = 0
        for x in range(x0, na.shape[1], sx):
            by = np.int64(src[y, x, 0])
            bx = np.int64(src[y, x, 1])
            best = src_cost[y, x]
            by, bx, best, tried = _try_neighbour(fa, na, fb, nb, src, y, x, 0, -step, half, by, bx,
                                                 best)
            n += tried
            by, bx, best, tried = _try_neighbour(fa, na, fb, nb, src, y, x, 0, step, half, by, bx,
                                                 best)
            n += tried
            by, bx, best, tried = _try_neighbour(fa, na, fb, nb, src, y, x, -step, 0, half, by, bx,
                                                 best)
            n += tried
            by, bx, best, tried = _try_neighbour(fa, na, fb, nb, src, y, x, step, 0, half, by, bx,
                                                 best)
            n += tried
            by, bx, best, tried = _random_search(fa, na, fb, nb, y, x, half, radius, samples, seed,
                                                 counter, by, bx, best)
            n += tried
            dst[y, x, 0] = by
            dst[y, x, 1] = bx
            dst_cost[y, x] = best
        cuda.atomic.add(counts, y, n)


@cuda.jit(cache=True)
def _vote_kernel(source, nnf, half, out):
    """out[c, y, x] = mean of source[c, φ(p + d) − d] over the patch offsets d with p + d in the
    target and φ(p + d) − d in the source, summed in the same order as `analogy.nnf.vote` so that
    the results are equal."""
    x0, y0, c0 = cuda.grid(3)
    sx, sy, sc = cuda.gridsize(3)
    _, h, w = out.shape
    _, hb, wb = source.shape
    for c in range(c0, out.shape[0], sc):
        for y in range(y0, h, sy):
            for x in range(x0, w, sx):
                acc = np.float32(0.0)
                count = np.float32(0.0)
                for dy in range(-half, half + 1):
                    yy = y + dy
                    for dx in range(-half, half + 1):
                        xx = x + dx
                        if 0 <= yy < h and 0 <= xx < w:
                            sy_ = np.int64(nnf[yy, xx, 0]) - dy
                            sx_ = np.int64(nnf[yy, xx, 1]) - dx
                            if 0 <= sy_ < hb and 0 <= sx_ < wb:
                                acc += source[c, sy_, sx_]
                                count += np.float32(1.0)
                out[c, y, x] = acc / count


@cuda.jit(cache=True)
def _consensus_vote_kernel(source, nnf, half, tolerance2, out):
    """The consensus vote of `analogy.nnf.vote`: as `_vote_kernel`, but only over the votes whose
    squared distance over the channels to source[:, φ(p)] is at most `tolerance2`, one thread per
    position for all channels. With whole-number sources every sum is exact, so the bytes are the
    CPU's."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    channels, h, w = out.shape
    _, hb, wb = source.shape
    for y in range(y0, h, sy):
        for x in range(x0, w, sx):
            cy = np.int64(nnf[y, x, 0])
            cx = np.int64(nnf[y, x, 1])
            for c in range(channels):
                out[c, y, x] = np.float32(0.0)
            count = np.float32(0.0)
            for dy in range(-half, half + 1):
                yy = y + dy
                for dx in range(-half, half + 1):
                    xx = x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        sy_ = np.int64(nnf[yy, xx, 0]) - dy
                        sx_ = np.int64(nnf[yy, xx, 1]) - dx
                        if 0 <= sy_ < hb and 0 <= sx_ < wb:
                            d2 = np.float32(0.0)
                            for c in range(channels):
                                diff = source[c, sy_, sx_] - source[c, cy, cx]
                                d2 += diff * diff
                            if d2 <= tolerance2:
                                for c in range(channels):
                                    out[c, y, x] += source[c, sy_, sx_]
                                count += np.float32(1.0)
            for c in range(channels):
                out[c, y, x] = out[c, y, x] / count


# --------------------------------------------------------------------------- launching


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


def _array(t: torch.Tensor):
    """A kernel argument sharing memory with `t` (contiguous): a Numba view of a CUDA tensor, or
    the numpy view of a CPU tensor (which Numba transfers, or its simulator uses as it is)."""
    t = t.detach()
    return cuda.as_cuda_array(t, sync=False) if t.is_cuda else t.numpy()


@contextlib.contextmanager
def _stream(device: torch.device):
    """Numba's context for `device`, and the stream to launch on: torch's current stream, so that
    kernels and torch's own work are ordered without any synchronisation (0 for CPU tensors)."""
    if device.type != "cuda":
        yield 0
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cuda.gpus[index]:
        yield cuda.external_stream(torch.cuda.current_stream(index).cuda_stream)


def _chw(side) -> Tuple[torch.Tensor, torch.Tensor]:
    """A SearchFeatures side as the kernels take it: (C, H, W) features and (H, W) squared norms."""
    return side.features.permute(2, 0, 1).contiguous(), side.sq_norms.contiguous()


class CudaKernels:
    """The kernel interface (see `analogy.kernels.Kernels`) on CUDA tensors."""

    #: float32 deconvolutions on GPUs: cuDNN already uses TF32 tensor cores where torch allows it,
    #: and bfloat16 has not been measured on a GPU.
    native_bfloat16 = False

    def __init__(self, device: torch.device, block: Tuple[int, int] = BLOCK,
                 max_step: int = MAX_STEP) -> None:
        """`block`: threads per block along x and y (any geometry gives the same results);
        `max_step`: the largest jump step of the propagation."""
        self.device = device
        self.block = tuple(block)
        self.max_step = int(max_step)

    def _launch(self, shape: Tuple[int, ...]) -> Tuple[tuple, tuple]:
        """(grid, block) with one thread per position of an (H, W[, depth]) map; blocks shrink for
        maps smaller than `block`."""
        h, w = shape[0], shape[1]
        block = (min(self.block[0], w), min(self.block[1], h))
        grid = ((w + block[0] - 1) // block[0], (h + block[1] - 1) // block[1])
        if len(shape) == 3:
            return grid + (shape[2],), block + (1,)
        return grid, block

    def search(self, a, b, init: torch.Tensor, patch_size: int, iterations: int,
               radius: Optional[int] = None, seed: int = 0, samples: int = 1,
               evaluations: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        radius = radius if radius is not None else max(b.shape)
        device = init.device
        (fa, na), (fb, nb) = _chw(a), _chw(b)
        start = init.to(torch.int32).clone().contiguous()
        nnfs = (start, torch.empty_like(start))
        costs = tuple(torch.empty(a.shape, dtype=torch.float32, device=device) for _ in range(2))
        counts = torch.zeros(a.shape[0], dtype=torch.int64, device=device)
        grid, block = self._launch(a.shape)
        seed = int(seed) % 2**64  # the CPU's wrap-around of negative seeds
        args = [_array(t) for t in (fa, na, fb, nb)]
        bufs = [(_array(n), _array(c)) for n, c in zip(nnfs, costs)]
        current = 0
        with _stream(device) as stream:
            _cost_kernel[grid, block, stream](*args, *bufs[0], patch_size // 2)
            counter = 0
            for _ in range(int(iterations)):
                for step in jump_steps(a.shape, self.max_step):
                    _pass_kernel[grid, block, stream](
                        *args, *bufs[current], *bufs[1 - current], patch_size // 2, int(radius),
                        int(samples), seed, counter, step, _array(counts),
                    )
                    current = 1 - current
                    counter += 1
        if evaluations is not None:
            # + the start's costs, as on the CPU
            evaluations += counts.to(evaluations.device) + a.shape[1]
        return nnfs[current], costs[current]

    def cost(self, a, b, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
        (fa, na), (fb, nb) = _chw(a), _chw(b)
        out = torch.empty(a.shape, dtype=torch.float32, device=nnf.device)
        grid, block = self._launch(a.shape)
        with _stream(nnf.device) as stream:
            _cost_kernel[grid, block, stream](
                _array(fa), _array(na), _array(fb), _array(nb),
                _array(nnf.to(torch.int32).contiguous()), _array(out), patch_size // 2,
            )
        return out

    def vote(self, source: torch.Tensor, nnf: torch.Tensor, patch_size: int,
             tolerance: Optional[float] = None) -> torch.Tensor:
        if source.dtype != torch.float32:
            return torch_nnf.vote(source, nnf.to(source.device), patch_size, tolerance)
        source = source.contiguous()
        nnf = nnf.to(device=source.device, dtype=torch.int32).contiguous()
        h, w = nnf.shape[:2]
        out = torch.empty((source.shape[0], h, w), dtype=torch.float32, device=source.device)
        with _stream(source.device) as stream:
            if tolerance is None:
                grid, block = self._launch((h, w, source.shape[0]))
                _vote_kernel[grid, block, stream](_array(source), _array(nnf), patch_size // 2,
                                                  _array(out))
            else:
                grid, block = self._launch((h, w))
                _consensus_vote_kernel[grid, block, stream](
                    _array(source), _array(nnf), patch_size // 2,
                    np.float32(float(tolerance) ** 2), _array(out))
        return out

    def resample_nnf(self, nnf: torch.Tensor, shape_b, new_shape_a, new_shape_b) -> torch.Tensor:
        return torch_nnf.resample_nnf(nnf, shape_b, new_shape_a, new_shape_b)

    def pixel_features(self, appearance: torch.Tensor, guide: torch.Tensor,
                       structure: torch.Tensor, scales: Tuple[float, float, float]):
        from ..patchmatch import pixel_features

        return pixel_features(appearance, guide, structure, scales)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.sum(a * b))  # torch's CUDA reductions do not depend on threads

    def is_out_of_memory(self, exc: BaseException) -> bool:
        if host_out_of_memory(exc):  # torch.OutOfMemoryError is also the GPU's
            return True
        try:
            from numba.cuda.cudadrv.driver import CudaAPIError
        except Exception:  # noqa: BLE001 - a target without it raises no such error
            return False
        return isinstance(exc, CudaAPIError) and (getattr(exc, "code", None) == 2
                                                  or "OUT_OF_MEMORY" in str(exc))

    def deterministic(self) -> ContextManager[None]:
        # cuDNN may otherwise pick a different (or a non-deterministic) convolution
        # algorithm per run
        return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False,
                                          deterministic=True,
                                          allow_tf32=torch.backends.cudnn.allow_tf32)


@functools.lru_cache(maxsize=None)
def problem(index: int = 0) -> Optional[str]:
    """None when the kernels run on CUDA device `index`; otherwise why not, in a few words.

    Compiles and runs the vote kernel on a small torch tensor, so a missing libNVVM, a GPU the
    target does not support or a driver too old for it show up here rather than in the middle of
    a run.
    """
    try:
        if not cuda.is_available():
            return "Numba finds no usable CUDA driver or device"
        device = torch.device("cuda", index)
        source = torch.arange(12, dtype=torch.float32, device=device).reshape(1, 3, 4)
        ident = torch_nnf.identity_nnf((3, 4), (3, 4), device)
        out = CudaKernels(device).vote(source, ident, 3)
        torch.cuda.synchronize(index)
        if not torch.equal(out, source):
            return "a test kernel gave a wrong result"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with its reason
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"Numba's CUDA target cannot run a kernel ({type(exc).__name__}: {first})"
    return None

"""The kernels of the method, one implementation per device behind one interface, chosen once.

`kernels_for(device)` returns the CPU kernels (`cpu.py`: Numba parallel loops, torch) or the CUDA
kernels (`cuda.py`: Numba CUDA kernels on torch's CUDA tensors); the pipeline asks once, from the
resolved device, and calls the same methods either way. Device code both need (the patch cost
with its border rule, the random sampling, propagation and random search) is written once in
`common.py` and compiled for each target.

Where the two differ: the CPU search runs PatchMatch in scan order within fixed bands of rows
(propagation from the two neighbours behind, alternating direction), the GPU search runs every
position at once in jump-flooding passes (propagation from the four neighbours at ±8, 4, 2, 1).
Both reach the same quality (tests and benchmark compare both with the exact NNF), but their NNFs
differ, so a result made on the GPU is not the CPU's byte for byte. On one device, the same
inputs, options and seed give the same bytes: on the CPU whatever the number of threads, on a GPU
whatever the launch geometry (no atomics or races in anything that reaches the output).
"""
from __future__ import annotations

import warnings
from typing import ContextManager, Optional, Protocol, Tuple

import torch

from ..errors import DeviceError

Shape = Tuple[int, int]


class Kernels(Protocol):
    """What every device provides. `a`, `b` are `analogy.patchmatch.SearchFeatures` on the
    device."""

    device: torch.device
    #: Whether the device computes bfloat16 convolutions natively (see
    #: AnalogyConfig.deconv_precision).
    native_bfloat16: bool

    def search(self, a, b, init: torch.Tensor, patch_size: int, iterations: int,
               radius: Optional[int] = None, seed: int = 0, samples: int = 1,
               evaluations: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """PatchMatch from A to B starting at the NNF `init`; returns (nnf, cost per position).

        Each iteration propagates neighbours' matches and then samples `samples` candidates in
        windows of radius `radius`, `radius`/2, … 1 around each position's running best match
        (None: the whole of B), as the original does; nothing ties a match to `init`.
        `evaluations`, int64 with one entry per row of A, counts the patch distances computed."""

    def cost(self, a, b, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
        """The patch cost of every match of `nnf` (the search's cost, without early exit)."""

    def vote(self, source: torch.Tensor, nnf: torch.Tensor, patch_size: int,
             tolerance: Optional[float] = None) -> torch.Tensor:
        """Patch voting of a C×H_B×W_B `source` through `nnf`, or with a `tolerance` the consensus
        vote (see `analogy.nnf.vote`); equal bytes on every device (for the consensus vote, of
        sources with whole-number values such as images)."""

    def resample_nnf(self, nnf: torch.Tensor, shape_b: Shape, new_shape_a: Shape,
                     new_shape_b: Shape) -> torch.Tensor:
        """`analogy.nnf.resample_nnf`; equal results on every device."""

    def pixel_features(self, appearance: torch.Tensor, guide: torch.Tensor,
                       structure: torch.Tensor, scales: Tuple[float, float, float]):
        """`analogy.patchmatch.pixel_features`: a side of the synthesis's search, on the
        device."""

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """Σ a·b over two N×C×H×W maps of one memory layout, in an order that does not depend on
        the number of threads (the deconvolution's L-BFGS)."""

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether `exc` means the device ran out of memory."""

    def deterministic(self) -> ContextManager[None]:
        """Settings under which torch's own work on the device (VGG19, the deconvolution's
        gradients) gives the same bytes on every run."""


def kernels_for(device: torch.device, band_height: int = 4) -> Kernels:
    """The kernels for a resolved `device` (see `resolve_device`); `band_height` is the CPU
    search's."""
    if device.type == "cuda":
        from .cuda import CudaKernels

        return CudaKernels(device)
    from .cpu import CpuKernels

    return CpuKernels(band_height)


def cuda_problem(index: int) -> Optional[str]:
    """None when the CUDA kernels run on GPU `index`, else why not (see `cuda.problem`)."""
    try:
        from .cuda import problem
    except ImportError as exc:
        return f"Numba's CUDA target cannot be imported ({exc})"
    return problem(index)


def resolve_device(device: str) -> torch.device:
    """"cpu"; "auto" → the GPU when torch sees one and the CUDA kernels run on it, else the CPU
    (with a warning if a GPU is there but unusable); "cuda" or "cuda:N" → that GPU, or a
    DeviceError saying why not."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError("no CUDA device is available; use --device cpu (or auto)")
    try:
        target = torch.device("cuda" if device == "auto" else device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    index = target.index if target.index is not None else torch.cuda.current_device()
    if not 0 <= index < torch.cuda.device_count():
        raise DeviceError(f"no CUDA device {index} (there are {torch.cuda.device_count()}); use "
                          "--device cuda (or auto)")
    reason = cuda_problem(index)
    if reason is None:
        return torch.device("cuda", index)
    if device == "auto":
        # stacklevel=1, this line: the warning is about the machine, not a caller, and one location
        # shows it once per process however many callers resolve the device
        warnings.warn(f"a CUDA device is present, but {reason}; running on the CPU "
                      "(pip install 'analogy[cuda]')", stacklevel=1)
        return torch.device("cpu")
    raise DeviceError(f"a CUDA device is present, but {reason}; use --device cpu "
                      "(or pip install 'analogy[cuda]')")

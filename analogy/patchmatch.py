"""PatchMatch search of the nearest-neighbour field between two feature maps, and its exact
brute-force counterpart (a ground truth for tests and benchmarks).

The cost of matching position p of A to q of B is Σ_{d ∈ patch} ‖Ā(p+d) − B̄(q+d)‖² where Ā and B̄
are the channel-concatenation of the two normalised maps of each side: for the search A→B′ at a
level, Ā = [F̄_A, F̄_A′] and B̄ = [F̄_B, F̄_B′], so the cost is the reference's sum over both pairs.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from . import patchmatch_cpu


class SearchFeatures(NamedTuple):
    """A side of the search: (H, W, C) normalised features and their (H, W) squared norms."""

    features: torch.Tensor
    sq_norms: torch.Tensor

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.sq_norms.shape)


def prepare(*maps: torch.Tensor, eps: float = 1e-12) -> SearchFeatures:
    """Normalise each 1×C×H×W map per position, concatenate them along channels, lay out as HWC."""
    parts = [m[0] / m[0].norm(dim=0, keepdim=True).clamp_min(eps) for m in maps]
    features = torch.cat(parts, dim=0).permute(1, 2, 0).contiguous().float()
    return SearchFeatures(features, (features * features).sum(dim=-1).contiguous())


def patchmatch(
    a: SearchFeatures,
    b: SearchFeatures,
    init: torch.Tensor,
    patch_size: int,
    iterations: int,
    radius: Optional[int] = None,
    centre: Optional[torch.Tensor] = None,
    seed: int = 0,
    band_height: int = 4,
    samples: int = 1,
    evaluations: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Improve the NNF `init` from A to B by PatchMatch; return (nnf, cost per position).

    With `radius` set, every match stays within `radius` of `centre` (default: `init`) and the
    random search starts at that radius; with `radius=None` the whole of B is searched.
    `evaluations`, an int64 tensor with one entry per row of A, counts the patch distances
    computed (for benchmarks). On CUDA tensors the GPU kernels of `patchmatch_cuda` run instead
    (`band_height` does not apply there).
    """
    if a.features.is_cuda:
        from . import patchmatch_cuda

        return patchmatch_cuda.patchmatch(a, b, init, patch_size, iterations, radius, centre, seed, samples, evaluations)
    window = radius if radius is not None else max(b.shape)
    search_radius = window
    centre = init if centre is None else centre
    nnf = init.to(torch.int32).clone().contiguous()
    cost = torch.empty(a.shape, dtype=torch.float32, device=nnf.device)
    if evaluations is None:
        evaluations = torch.zeros(a.shape[0], dtype=torch.int64)
    patchmatch_cpu.search(
        a.features.numpy(), a.sq_norms.numpy(), b.features.numpy(), b.sq_norms.numpy(),
        nnf.numpy(), cost.numpy(), centre.to(torch.int32).contiguous().numpy(),
        int(window), patch_size // 2, int(iterations), int(search_radius), int(samples), int(seed),
        int(band_height), evaluations.numpy(),
    )
    return nnf, cost


def nnf_cost(a: SearchFeatures, b: SearchFeatures, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The patch cost of each match of `nnf`, an (H_A, W_A) tensor."""
    if a.features.is_cuda:
        from . import patchmatch_cuda

        return patchmatch_cuda.nnf_cost(a, b, nnf, patch_size)
    out = patchmatch_cpu.nnf_cost(
        a.features.numpy(), a.sq_norms.numpy(), b.features.numpy(), b.sq_norms.numpy(),
        nnf.to(torch.int32).contiguous().numpy(), patch_size // 2,
    )
    return torch.from_numpy(out)


def _clamped_pad(x: torch.Tensor, half: int) -> torch.Tensor:
    """Pad the first two (spatial) dimensions by repeating the border, as the kernels clamp."""
    h, w = x.shape[:2]
    rows = torch.arange(-half, h + half, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-half, w + half, device=x.device).clamp(0, w - 1)
    return x[rows[:, None], cols[None, :]]


def _box_sum(x: torch.Tensor, half: int) -> torch.Tensor:
    """Σ over the (2·half+1)² patch around each position of an (H, W) map, border clamped."""
    h, w = x.shape
    padded = _clamped_pad(x, half)
    out = torch.zeros_like(x)
    for dy in range(2 * half + 1):
        for dx in range(2 * half + 1):
            out += padded[dy : dy + h, dx : dx + w]
    return out


@torch.inference_mode()
def exact_nnf(
    a: SearchFeatures, b: SearchFeatures, patch_size: int, chunk_bytes: int = 256 * 2**20
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The exact nearest-neighbour field (global minimum of the patch cost for every position).

    Computes all dot products between padded positions of A and B with one matrix product per
    chunk of A's rows, then sums them along patch diagonals: O(N_A·N_B·(C + k²)) work.
    """
    half = patch_size // 2
    (ha, wa), (hb, wb) = a.shape, b.shape
    fa = _clamped_pad(a.features, half)
    fb = _clamped_pad(b.features, half).reshape(-1, b.features.shape[-1])
    na = _box_sum(a.sq_norms, half)
    nb = _box_sum(b.sq_norms, half)
    pw, phb, pwb = wa + 2 * half, hb + 2 * half, wb + 2 * half
    rows = max(1, chunk_bytes // (4 * pw * phb * pwb) - 2 * half)
    nnf = torch.empty((ha, wa, 2), dtype=torch.int32, device=fa.device)
    cost = torch.empty((ha, wa), dtype=torch.float32, device=fa.device)
    for y0 in range(0, ha, rows):
        y1 = min(y0 + rows, ha)
        block = fa[y0 : y1 + 2 * half].reshape(-1, fa.shape[-1])
        dots = (block @ fb.T).reshape(y1 - y0 + 2 * half, pw, phb, pwb)
        s = torch.zeros((y1 - y0, wa, hb, wb), dtype=dots.dtype, device=dots.device)
        for dy in range(patch_size):
            for dx in range(patch_size):
                s += dots[dy : dy + y1 - y0, dx : dx + wa, dy : dy + hb, dx : dx + wb]
        full = na[y0:y1, :, None, None] + nb[None, None] - 2.0 * s
        best, index = full.reshape(y1 - y0, wa, -1).min(dim=-1)
        nnf[y0:y1, :, 0] = (index // wb).int()
        nnf[y0:y1, :, 1] = (index % wb).int()
        cost[y0:y1] = best
    return nnf, cost


def exact_windowed_nnf(
    a: SearchFeatures, b: SearchFeatures, patch_size: int, centre: torch.Tensor, radius: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The exact NNF under the pipeline's constraint: every match within `radius` of `centre`.

    Tries each of the (2r+1)² offsets for every position (clamped to B, as the search clamps).
    """
    hb, wb = b.shape
    best = torch.full(a.shape, float("inf"), device=centre.device)
    nnf = centre.clone().to(torch.int32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            cand = torch.stack(
                [(centre[..., 0] + dy).clamp(0, hb - 1), (centre[..., 1] + dx).clamp(0, wb - 1)], -1
            ).to(torch.int32)
            cost = nnf_cost(a, b, cand, patch_size)
            better = cost < best
            best = torch.where(better, cost, best)
            nnf[better] = cand[better]
    return nnf, best

"""The search problem of one level and direction: the features the PatchMatch kernels (see
`analogy.kernels`) match, and the exact brute-force NNF (a ground truth for tests and benchmarks).

The cost of matching position p of A to q of B is the mean of ‖Ā(p+d) − B̄(q+d)‖² over the patch
offsets d with p+d inside A and q+d inside B (the original's border rule), where Ā and B̄
are the channel-concatenation of the two normalised maps of each side: for the search A→B′ at a
level, Ā = [F̄_A, F̄_A′] and B̄ = [F̄_B, F̄_B′], so the cost is the reference's sum over both pairs.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch


class SearchFeatures(NamedTuple):
    """A side of the search: (H, W, C) normalised features and their (H, W) squared norms."""

    features: torch.Tensor
    sq_norms: torch.Tensor

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.sq_norms.shape)


def pixel_features(appearance: torch.Tensor, guide: torch.Tensor, structure: torch.Tensor,
                   scales: Tuple[float, float, float]) -> SearchFeatures:
    """A side of an image-level search (the synthesis above the working size): the H×W×8
    features [appearance · s₀, guide · s₁, structure · s₂, 0] of two 3×H×W images and a 1×H×W
    map, with `scales` (s₀, s₁, s₂). The eighth channel is a zero: the CPU's channel loop runs
    faster on 8 floats than on 7. The kernels' `pixel_features` give the same features (and the
    same squared norms up to float32 rounding)."""
    h, w = appearance.shape[-2:]
    features = torch.zeros((h, w, 8), dtype=torch.float32, device=appearance.device)
    for part, scale, first in ((appearance, scales[0], 0), (guide, scales[1], 3),
                               (structure, scales[2], 6)):
        torch.mul(part.permute(1, 2, 0), float(scale),
                  out=features[..., first:first + part.shape[0]])
    return SearchFeatures(features, (features * features).sum(dim=-1))


def prepare(*maps: torch.Tensor, eps: float = 1e-12) -> SearchFeatures:
    """Normalise each 1×C×H×W map per position, concatenate them along channels, lay out as HWC."""
    parts = [m[0] / m[0].norm(dim=0, keepdim=True).clamp_min(eps) for m in maps]
    features = torch.cat(parts, dim=0).permute(1, 2, 0).contiguous().float()
    return SearchFeatures(features, (features * features).sum(dim=-1).contiguous())


def _zero_pad(x: torch.Tensor, half: int) -> torch.Tensor:
    """Pad the first two (spatial) dimensions with `half` zeros on each side."""
    h, w = x.shape[:2]
    out = x.new_zeros((h + 2 * half, w + 2 * half) + tuple(x.shape[2:]))
    out[half : half + h, half : half + w] = x
    return out


def _overlap_count(n_a: int, n_b: int, half: int, device) -> torch.Tensor:
    """(n_a, n_b): for positions i of A and j of B along one axis, how many offsets d in
    [-half, half] keep both i + d and j + d inside their maps (the kernels' `overlap`)."""
    i = torch.arange(n_a, device=device)[:, None]
    j = torch.arange(n_b, device=device)[None, :]
    lo = torch.maximum(torch.maximum(-i, -j), torch.tensor(-half, device=device))
    hi = torch.minimum(torch.minimum(n_a - 1 - i, n_b - 1 - j), torch.tensor(half, device=device))
    return (hi - lo + 1).float()


@torch.inference_mode()
def exact_nnf(
    a: SearchFeatures, b: SearchFeatures, patch_size: int, chunk_bytes: int = 256 * 2**20
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The exact nearest-neighbour field (global minimum of the patch cost for every position).

    The cost is the kernels' mean over the offsets inside both maps. With A's vectors extended to
    [−2a, ‖a‖², 1] and B's to [b, 1, ‖b‖²], zero outside the maps, one dot product gives
    ‖a‖²·[q+d in B] + ‖b‖²·[p+d in A] − 2a·b, so one matrix product per chunk of A's rows gives
    every pair's terms, summed along patch diagonals: O(N_A·N_B·(C + k²)) work.
    """
    half = patch_size // 2
    (ha, wa), (hb, wb) = a.shape, b.shape
    ones_a = torch.ones_like(a.sq_norms)[..., None]
    ones_b = torch.ones_like(b.sq_norms)[..., None]
    fa = _zero_pad(torch.cat([-2.0 * a.features, a.sq_norms[..., None], ones_a], -1), half)
    fb = (_zero_pad(torch.cat([b.features, ones_b, b.sq_norms[..., None]], -1), half)
          .reshape(-1, fa.shape[-1]))
    rows_count = _overlap_count(ha, hb, half, fa.device)
    cols_count = _overlap_count(wa, wb, half, fa.device)
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
        count = rows_count[y0:y1, None, :, None] * cols_count[None, :, None, :]
        best, index = (s / count).reshape(y1 - y0, wa, -1).min(dim=-1)
        nnf[y0:y1, :, 0] = (index // wb).int()
        nnf[y0:y1, :, 1] = (index % wb).int()
        cost[y0:y1] = best
    return nnf, cost

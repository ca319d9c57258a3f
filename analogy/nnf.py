"""Nearest-neighbour fields (NNFs): creation, resampling between sizes, voting, and display.

An NNF from A to B is an int32 tensor of shape (H_A, W_A, 2): nnf[y, x] = (y', x'), the position
in B matched to position (y, x) of A. Everything here is plain torch, so it runs where the tensors
are (the CUDA kernels of `analogy.kernels.cuda` vote on a GPU with the same results).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

Shape = Tuple[int, int]


def resample_axis(n_old: int, n_new: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """For each new index: the old cell it falls in, and its offset from that cell's centre."""
    pos = (torch.arange(n_new, device=device, dtype=torch.float64) + 0.5) * (n_old / n_new) - 0.5
    cell = torch.floor(pos + 0.5).clamp_(0, n_old - 1)
    return cell.long(), pos - cell


def resample_nnf(nnf: torch.Tensor, shape_b: Shape, new_shape_a: Shape,
                 new_shape_b: Shape) -> torch.Tensor:
    """Resample an NNF from A→B (B of size `shape_b`) to sizes `new_shape_a` → `new_shape_b`.

    Each new position p takes the match of the old cell it falls in, moved by p's offset inside
    that cell, and scaled to B's new size. For an exact ×2 this is φ'(p) = 2·φ(⌊p/2⌋) + (p mod 2),
    the upsampling between pyramid levels; it also takes the final NNF to output resolution.
    """
    out = []
    for axis in range(2):
        cell, offset = resample_axis(nnf.shape[axis], new_shape_a[axis], nnf.device)
        cell_other, _ = resample_axis(nnf.shape[1 - axis], new_shape_a[1 - axis], nnf.device)
        rows, cols = ((cell[:, None], cell_other[None, :]) if axis == 0
                      else (cell_other[:, None], cell[None, :]))
        old = nnf[rows, cols, axis].double()
        off = offset[:, None] if axis == 0 else offset[None, :]
        scale = new_shape_b[axis] / shape_b[axis]
        # round half up; the epsilon makes exact halves round the same way everywhere
        new = torch.floor((old + off + 0.5) * scale + 1e-6)
        out.append(new.clamp_(0, new_shape_b[axis] - 1).to(torch.int32))
    return torch.stack(out, dim=-1).contiguous()


def identity_nnf(shape_a: Shape, shape_b: Shape, device="cpu") -> torch.Tensor:
    """The NNF mapping each position of A to the proportionally same position of B."""
    point = torch.zeros((1, 1, 2), dtype=torch.int32, device=device)
    return resample_nnf(point, (1, 1), shape_a, shape_b)


def upsample_nnf(nnf: torch.Tensor, shape_b: Shape, new_shape_a: Shape,
                 new_shape_b: Shape) -> torch.Tensor:
    """Upsample an NNF from one pyramid level to the next finer one (sizes ×2)."""
    return resample_nnf(nnf, shape_b, new_shape_a, new_shape_b)


def vote(source: torch.Tensor, nnf: torch.Tensor, patch_size: int,
         tolerance: Optional[float] = None) -> torch.Tensor:
    """Patch voting: out(p) = mean over x ∈ N(p) of source(φ(x) + (p − x)).

    `source` is C×H_B×W_B, `nnf` maps a target of size H×W into it; the result is C×H×W.
    As in the original, the mean is over the x inside the target whose φ(x) + (p − x) lies
    inside the source (p itself always contributes).

    With a `tolerance`, a consensus vote: only the votes within that Euclidean distance (over the
    channels) of p's own patch's vote, source(φ(p)), count. Where overlapping patches come from
    different places of the source, their mean is a blur of them; the consensus keeps the votes
    that agree with p's own and still blends the seams where the pieces nearly agree (the mode of
    the votes rather than their mean, as Wexler et al. 2007 argue). For images with whole-number
    values (0–255) every sum is exact, so all devices give the same bytes.
    """
    c, hb, wb = source.shape
    h, w = nnf.shape[:2]
    half = patch_size // 2
    flat = source.reshape(c, hb * wb)
    ys = torch.arange(h, device=nnf.device)
    xs = torch.arange(w, device=nnf.device)
    out = torch.zeros((c, h * w), dtype=source.dtype, device=source.device)
    count = torch.zeros((h * w,), dtype=source.dtype, device=source.device)
    centre = None
    if tolerance is not None:
        own = nnf.long()
        centre = flat.index_select(1, (own[..., 0] * wb + own[..., 1]).reshape(-1))
    for dy in range(-half, half + 1):
        yy = (ys + dy).clamp(0, h - 1)
        for dx in range(-half, half + 1):
            xx = (xs + dx).clamp(0, w - 1)
            match = nnf[yy[:, None], xx[None, :]].long()
            sy = match[..., 0] - dy
            sx = match[..., 1] - dx
            inside = (((ys + dy >= 0) & (ys + dy < h))[:, None]
                      & ((xs + dx >= 0) & (xs + dx < w))[None, :])
            inside &= (sy >= 0) & (sy < hb) & (sx >= 0) & (sx < wb)
            index = (sy.clamp(0, hb - 1) * wb + sx.clamp(0, wb - 1)).reshape(-1)
            votes = flat.index_select(1, index)
            keep = inside.reshape(-1)
            if centre is not None:
                keep = keep & ((votes - centre).pow(2).sum(dim=0) <= tolerance * tolerance)
            weight = keep.to(source.dtype)
            out += votes * weight
            count += weight
    return (out / count).reshape(c, h, w)


def displacement(nnf: torch.Tensor, shape_b: Shape) -> np.ndarray:
    """Per-pixel (dy, dx) from each position's proportional place in B to its match, as float32."""
    ident = identity_nnf(tuple(nnf.shape[:2]), shape_b, nnf.device)
    return (nnf - ident).float().cpu().numpy()


def flow_to_color(nnf: torch.Tensor, shape_b: Shape) -> np.ndarray:
    """Colour-code an NNF's displacement: hue gives the direction, saturation the length.

    White means "matched to the same relative position"; the most saturated colour marks the
    longest displacement in the field.
    """
    d = displacement(nnf, shape_b)
    dy, dx = d[..., 0], d[..., 1]
    mag = np.hypot(dx, dy)
    sat = mag / max(float(mag.max()), 1e-6)
    hue = (np.arctan2(-dy, -dx) / np.pi + 1.0) * 3.0  # in [0, 6)
    k = lambda n: (n + hue) % 6.0  # noqa: E731
    rgb = [1.0 - sat * np.clip(np.minimum(k(n), 4.0 - k(n)), 0.0, 1.0) for n in (5.0, 3.0, 1.0)]
    return np.rint(np.stack(rgb, axis=-1) * 255.0).astype(np.uint8)


def consistency_confidence(nnf_ab: torch.Tensor, nnf_ba: torch.Tensor,
                           sigma: float = 0.01) -> torch.Tensor:
    """Forward–backward consistency of two NNFs, per position of A: float32 (H_A, W_A) in [0, 1].

    For each p of A, q = φ_b→a(φ_a→b(p)) is where the round trip A → B′ → A lands; the confidence
    is exp(−d² / 2s²) with d = ‖q − p‖ in pixels of A and s = `sigma` × A's long side. It is exactly
    1 where the round trip comes back to p, about 0.61 at d = s and below 0.01 beyond d = 3s. Where
    a region of A has no counterpart in B′, its matches land on whatever is least unlike it, and the
    way back from there usually goes elsewhere: low confidence. The confidence of B′'s positions
    is the same function with the NNFs swapped. Plain torch; accepts int tensors or numpy arrays.
    """
    nnf_ab, nnf_ba = torch.as_tensor(nnf_ab), torch.as_tensor(nnf_ba)
    nnf_ba = nnf_ba.to(nnf_ab.device)
    h, w = nnf_ab.shape[:2]
    hb, wb = nnf_ba.shape[:2]
    y = nnf_ab[..., 0].long().clamp(0, hb - 1)
    x = nnf_ab[..., 1].long().clamp(0, wb - 1)
    back = nnf_ba[y, x].float()
    ys = torch.arange(h, device=nnf_ab.device, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=nnf_ab.device, dtype=torch.float32)[None, :]
    d2 = (back[..., 0] - ys) ** 2 + (back[..., 1] - xs) ** 2
    s = sigma * max(h, w)
    return torch.exp(-d2 / (2.0 * s * s))


def discontinuities(nnf: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where neighbouring matches are not neighbours: (H, W−1) across columns, (H−1, W) across rows.

    Entry [y, x] of the first is True when φ(y, x+1) ≠ φ(y, x) + (0, 1), i.e. the edge between
    columns x and x+1 is the border of two copied pieces of B; likewise for rows.
    """
    nnf = torch.as_tensor(nnf).long()
    across_cols = (nnf[:, 1:, 0] != nnf[:, :-1, 0]) | (nnf[:, 1:, 1] != nnf[:, :-1, 1] + 1)
    across_rows = (nnf[1:, :, 0] != nnf[:-1, :, 0] + 1) | (nnf[1:, :, 1] != nnf[:-1, :, 1])
    return across_cols, across_rows


def gridness(nnf: torch.Tensor, cell: int = 16) -> Tuple[float, float]:
    """(gridness, discontinuity rate) of a working-resolution NNF.

    The rate is the fraction of edges between neighbouring positions that are discontinuities
    (see `discontinuities`). Gridness is the rate on the edges that lie on the lines of a grid of
    `cell` positions (the relu5_1 grid: 16 working pixels) divided by the rate on all other edges:
    1.0 means the pieces' borders do not prefer the coarse grid; a result tiled on the relu5_1 grid
    gives much more. NaN when there are no discontinuities off the grid.
    """
    across_cols, across_rows = discontinuities(nnf)
    on_col = ((torch.arange(1, across_cols.shape[1] + 1, device=nnf.device) % cell == 0)[None, :]
              .expand_as(across_cols))
    on_row = ((torch.arange(1, across_rows.shape[0] + 1, device=nnf.device) % cell == 0)[:, None]
              .expand_as(across_rows))
    on_count = int(on_col.sum() + on_row.sum())
    off_count = across_cols.numel() + across_rows.numel() - on_count
    on = int(across_cols[on_col].sum() + across_rows[on_row].sum())
    off = int(across_cols[~on_col].sum() + across_rows[~on_row].sum())
    rate = (on + off) / max(on_count + off_count, 1)
    off_rate = off / max(off_count, 1)
    return (on / max(on_count, 1)) / off_rate if off_rate > 0 else float("nan"), rate

"""Motion between consecutive video frames: optical flow both ways, where it can be trusted, and
the warps that carry what one frame computed (feature maps, NNFs) onto the next frame's grids.

Flows are H×W×2 float32 arrays of (dx, dy) displacements in pixels, OpenCV's convention: with
`backward` the flow from frame t to frame t−1, frame t's pixel p shows what frame t−1 showed at
p + backward(p). The flow is DIS (Kroeger et al. 2016, OpenCV's `DISOpticalFlow`), fast enough to
be a rounding error beside an analogy. A pixel's flow is trusted where the forward and backward
flows agree (Sundaram et al. 2010, as video style transfer uses it, Ruder et al. 2016): what
frame t−1 did not show (a disocclusion, the edge a pan brings in) fails the check, and there the
method starts afresh rather than from a smeared copy of frame t−1.

The warps are small tensor functions on a grid of any size (a VGG level's, a synthesis scale's):
the flow is resized to the grid and its vectors scaled with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

Shape = Tuple[int, int]

#: The forward–backward check (Sundaram et al.): a pixel is trusted when
#: |b(p) + f(p + b(p))|² ≤ CONSISTENCY[0] · (|b(p)|² + |f(p + b(p))|²) + CONSISTENCY[1] (px²).
CONSISTENCY = (0.01, 0.5)
#: Motion boundaries are not trusted either: |∇b|² > BOUNDARY[0] · |b|² + BOUNDARY[1].
BOUNDARY = (0.01, 0.002)
#: A grid cell counts as wholly trusted from this fraction of trusted pixels up (rounding).
WHOLE = 0.99


@dataclass(frozen=True)
class Motion:
    """How frame t relates to frame t−1, at the frames' size (H, W): `backward` (t → t−1) and
    `forward` (t−1 → t) flows and `reliable`, H×W float32, 1 where frame t's pixel is trusted to
    be frame t−1's pixel at p + backward(p), else 0."""

    backward: np.ndarray
    forward: np.ndarray
    reliable: np.ndarray

    @property
    def shape(self) -> Shape:
        return tuple(self.reliable.shape)


def optical_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The H×W×2 flow from `first` to `second` (two H×W×3 uint8 frames): first(p) ≈ second(p +
    flow(p)). DIS at its medium preset, on the luminance."""
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (first, second)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey[0], grey[1], None).astype(np.float32)


def estimate_motion(previous: np.ndarray, current: np.ndarray) -> Motion:
    """The Motion from frame `previous` (t−1) to frame `current` (t), both H×W×3 uint8."""
    backward = optical_flow(current, previous)
    forward = optical_flow(previous, current)
    return Motion(backward, forward, reliability(backward, forward))


def reliability(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """1 where frame t's flow to t−1 is trusted, else 0 (H×W float32): the landing point is inside
    frame t−1, the round trip back by the forward flow returns near the start (CONSISTENCY), and
    the pixel is not on a motion boundary (BOUNDARY)."""
    b = torch.from_numpy(backward).permute(2, 0, 1)[None]
    f = torch.from_numpy(forward).permute(2, 0, 1)[None]
    h, w = backward.shape[:2]
    landed = sample(f, b)[0]
    b = b[0]
    inside = _inside(b, (h, w))
    round_trip = ((b + landed) ** 2).sum(0)
    size = (b ** 2).sum(0) + (landed ** 2).sum(0)
    consistent = round_trip <= CONSISTENCY[0] * size + CONSISTENCY[1]
    gy, gx = torch.gradient(b, dim=(1, 2))
    boundary = (gx ** 2 + gy ** 2).sum(0) > BOUNDARY[0] * (b ** 2).sum(0) + BOUNDARY[1]
    return (inside & consistent & ~boundary).float().numpy()


def _inside(flow: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Whether p + flow(p) lies inside a map of `shape`, for a 2×H×W flow over that map's grid."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype),
                            indexing="ij")
    x, y = xs.to(flow.device) + flow[0], ys.to(flow.device) + flow[1]
    return (x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)


def sample(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x(p + flow(p)) for a 1×C×H×W map `x` and a 1×2×H×W flow on the same grid, bilinear; points
    outside take the nearest border value."""
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32),
                            torch.arange(w, device=x.device, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[0, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[0, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).to(x.dtype)


def flow_on(flow: np.ndarray, shape: Shape, device: torch.device) -> torch.Tensor:
    """A frame's H×W×2 flow as a 1×2×h×w tensor on a grid of `shape` (h, w) over the same frame:
    resized, and its vectors scaled by the grid's step."""
    h, w = shape
    t = torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None].to(device)
    if (h, w) == t.shape[-2:]:
        return t
    mode = "area" if h < t.shape[-2] and w < t.shape[-1] else "bilinear"
    resized = (F.interpolate(t, size=(h, w), mode=mode) if mode == "area"
               else F.interpolate(t, size=(h, w), mode=mode, align_corners=False))
    scale = torch.tensor([w / flow.shape[1], h / flow.shape[0]], device=device).view(1, 2, 1, 1)
    return resized * scale


def mask_on(mask: np.ndarray, shape: Shape, device: torch.device) -> torch.Tensor:
    """A frame's H×W mask in [0, 1] as an h×w tensor on a grid of `shape`: the fraction of each
    grid cell that is set (area) when shrinking, bilinear when growing."""
    t = torch.from_numpy(np.ascontiguousarray(mask))[None, None].to(device)
    if tuple(shape) == tuple(t.shape[-2:]):
        return t[0, 0]
    if shape[0] <= t.shape[-2] and shape[1] <= t.shape[-1]:
        return F.interpolate(t, size=tuple(shape), mode="area")[0, 0]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]


def trusted_on(mask: np.ndarray, shape: Shape, device: torch.device) -> torch.Tensor:
    """A frame's H×W reliability as an h×w weight in [0, 1] on a grid of `shape`, eroded by one
    grid cell: a cell is trusted only as far as its neighbours are, so that what a search or a
    deconvolution reads around a carried position was carried too (at the edge a pan brings in,
    the start is a fresh one a cell deep at every level, not the old edge stretched)."""
    weight = mask_on(mask, shape, device)[None, None]
    return -F.max_pool2d(-weight, 3, stride=1, padding=1)[0, 0]


def carried_on(mask: np.ndarray, shape: Shape, device: torch.device) -> torch.Tensor:
    """Where on a grid of `shape` a match may be carried from the previous frame (h×w bool): the
    cells whose every pixel is trusted, less one cell around the others (`trusted_on`). A cell
    of a coarse level that a slow pan has only partly renewed is searched afresh: carrying its
    old match frame after frame would lock the new content to what the edge showed first."""
    whole = (mask_on(mask, shape, device) >= WHOLE).float()[None, None]
    return (-F.max_pool2d(-whole, 3, stride=1, padding=1)[0, 0]) > 0.5


def warp_map(x: torch.Tensor, motion: Motion) -> torch.Tensor:
    """Frame t−1's 1×C×h×w map `x` (a feature map, an image) carried to frame t's grid of the same
    size: x_t(p) = x(p + backward(p)), bilinear."""
    return sample(x, flow_on(motion.backward, tuple(x.shape[-2:]), x.device))


def warp_nnf_from(previous: torch.Tensor, motion: Motion) -> Tuple[torch.Tensor, torch.Tensor]:
    """An NNF out of frame t−1 (h×w×2 int32 over frame t−1's grid, into a still image) carried to
    frame t's grid: φ_t(p) = φ(round(p + backward(p))). Returns it and the h×w bool map of where
    it holds: the cell is carried (`carried_on`) and lands inside."""
    h, w = previous.shape[:2]
    device = previous.device
    flow = flow_on(motion.backward, (h, w), device)[0]
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                            indexing="ij")
    y = torch.round(ys + flow[1]).long()
    x = torch.round(xs + flow[0]).long()
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    ok &= carried_on(motion.reliable, (h, w), device)
    carried = previous[y.clamp(0, h - 1), x.clamp(0, w - 1)]
    return carried, ok


def warp_nnf_into(previous: torch.Tensor, shape: Shape, motion: Motion
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """An NNF of a still image into frame t−1 (h×w×2 int32, matches on frame t−1's grid of
    `shape`) carried to point into frame t: each match q becomes round(q + forward(q)). Returns it
    and the bool map of where it holds: the match stays inside the frame and lands on a trusted
    pixel of frame t."""
    device = previous.device
    hf, wf = shape
    flow = flow_on(motion.forward, shape, device)[0]
    reliable = carried_on(motion.reliable, shape, device)
    qy = previous[..., 0].long().clamp(0, hf - 1)
    qx = previous[..., 1].long().clamp(0, wf - 1)
    y = torch.round(qy + flow[1][qy, qx]).long()
    x = torch.round(qx + flow[0][qy, qx]).long()
    ok = (y >= 0) & (y < hf) & (x >= 0) & (x < wf)
    ok &= reliable[y.clamp(0, hf - 1), x.clamp(0, wf - 1)]
    return torch.stack([y, x], dim=-1).to(previous.dtype), ok

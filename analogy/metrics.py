"""Quality scores of a result, for judging changes by numbers as well as by eye.

Style: the contextual similarity CX (Mechrez, Talmi, Zelnik-Manor, "The Contextual Loss for Image
Transformation with Non-Aligned Data", ECCV 2018) of a generated image to a target, on VGG19's
relu3_1 and relu4_1 (the mean of the two). It asks how much of the target's features the image is
made of, wherever they lie, so it suits A′ against B′, which share no layout: 1.0 for the target
itself, about 0.01 for an unrelated photograph.

Structure: how far an image's self-similarity departs from a reference's (relu3_1 cosine distances
between all positions, each column divided by its sum; the mean absolute difference times the
number of positions). 0 for the reference itself; lower keeps more of its layout.

Resolution: `block_seams` (how much more the image changes across the borders of the working
grid's cells than elsewhere: a result magnified from the working size is a mosaic of such cells)
and `fine_detail` (the spread of the grey image's Laplacian at its own resolution: soft images have
little). Both are measured at full size, where the VGG scores, taken at 256 px, cannot see.

Both VGG scores use the embedded Caffe VGG19 whatever weights the analogy used, on images resized to
`SCORE_SIDE` px on the long side, with at most `MAX_POSITIONS` positions per map (a fixed random
sample where there are more), so scores of different runs compare.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .features import VGG19Features, load_vgg

#: Long side, in px, at which images are scored.
SCORE_SIDE = 256
#: Positions per map at most; larger maps are sampled with a fixed seed.
MAX_POSITIONS = 4096
#: The contextual similarity's bandwidth h and the ε of its relative distances.
BANDWIDTH = 0.5
EPSILON = 1e-5
#: VGG levels of the style score (relu3_1, relu4_1) and of the structure score (relu3_1).
STYLE_LEVELS = (3, 4)
STRUCTURE_LEVEL = 3


@dataclass(frozen=True)
class QualityScores:
    """A result's scores: style of A′ (CX to B′) and of B (CX to A), higher is more of that look;
    structure of A′ (against A) and of B (against B′), lower keeps more of the layout."""

    style_a_prime: float
    style_b: float
    structure_a_prime: float
    structure_b: float

    def as_dict(self) -> Dict[str, float]:
        return dict(style_a_prime=self.style_a_prime, style_b=self.style_b,
                    structure_a_prime=self.structure_a_prime, structure_b=self.structure_b)


def _scoring_vgg(vgg: Optional[VGG19Features]) -> VGG19Features:
    return vgg if vgg is not None else load_vgg("caffe", "cpu")


def _resized(rgb: np.ndarray, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """`rgb` with its long side at SCORE_SIDE (or at (H, W) `shape`)."""
    h, w = rgb.shape[:2]
    if shape is None:
        scale = SCORE_SIDE / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if tuple(shape) == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def _positions(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """The C×N columns of a 1×C×H×W map, sampled to at most MAX_POSITIONS with a fixed seed."""
    columns = maps[0].reshape(maps.shape[1], -1).float().cpu()
    count = columns.shape[1]
    if count <= MAX_POSITIONS:
        return columns
    chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:MAX_POSITIONS]
    return columns[:, chosen.sort().values]


def _levels(vgg: VGG19Features, rgb: np.ndarray, levels: Sequence[int]) -> Dict[int, torch.Tensor]:
    with torch.no_grad():
        maps = vgg.extract(vgg.preprocess(rgb))
    return {level: maps[level] for level in levels}


def contextual_similarity_of_features(x: torch.Tensor, y: torch.Tensor,
                                      bandwidth: float = BANDWIDTH) -> float:
    """CX of features `x` (C×N) to target features `y` (C×M): both centred by y's mean and
    normalised per position; d_ij = 1 − cos(x_i, y_j), d̃_ij = d_ij / (min_k d_ik + ε),
    CX_ij = softmax over j of (1 − d̃_ij)/h; CX = mean over j of max over i of CX_ij."""
    mean = y.mean(dim=1, keepdim=True)
    xn, yn = F.normalize(x - mean, dim=0), F.normalize(y - mean, dim=0)
    distance = (1.0 - xn.t() @ yn).clamp_min_(0.0)  # N×M: rows are x's positions
    relative = distance / (distance.min(dim=1, keepdim=True).values + EPSILON)
    similarity = torch.softmax((1.0 - relative) / bandwidth, dim=1)
    return float(similarity.max(dim=0).values.mean())


def contextual_similarity(x: np.ndarray, y: np.ndarray,
                          vgg: Optional[VGG19Features] = None) -> float:
    """CX of image `x` to target image `y` (H×W×3 uint8), the mean over relu3_1 and relu4_1."""
    vgg = _scoring_vgg(vgg)
    fx, fy = _levels(vgg, _resized(x), STYLE_LEVELS), _levels(vgg, _resized(y), STYLE_LEVELS)
    scores = [contextual_similarity_of_features(_positions(fx[level], 0), _positions(fy[level], 1))
              for level in STYLE_LEVELS]
    return float(np.mean(scores))


def _self_distances(columns: torch.Tensor) -> torch.Tensor:
    normal = F.normalize(columns, dim=0)
    distance = (1.0 - normal.t() @ normal).clamp_min_(0.0)
    return distance / distance.sum(dim=0, keepdim=True).clamp_min_(1e-12)


def structure_distance(x: np.ndarray, reference: np.ndarray,
                       vgg: Optional[VGG19Features] = None) -> float:
    """How far the self-similarity of image `x` departs from that of `reference` (0: the same
    layout). `x` is first brought to the reference's scored size; both are sampled at the same
    positions."""
    vgg = _scoring_vgg(vgg)
    ref = _resized(reference)
    fx = _levels(vgg, _resized(x, ref.shape[:2]), (STRUCTURE_LEVEL,))[STRUCTURE_LEVEL]
    fr = _levels(vgg, ref, (STRUCTURE_LEVEL,))[STRUCTURE_LEVEL]
    dx, dr = _self_distances(_positions(fx, 2)), _self_distances(_positions(fr, 2))
    return float((dx - dr).abs().mean() * dr.shape[0])


def quality_scores(a_prime: np.ndarray, b: np.ndarray, image_a: np.ndarray, image_b: np.ndarray,
                   vgg: Optional[VGG19Features] = None) -> QualityScores:
    """The four scores of an analogy of A (`image_a`) and B′ (`image_b`) that made A′ and B."""
    vgg = _scoring_vgg(vgg)
    return QualityScores(
        style_a_prime=contextual_similarity(a_prime, image_b, vgg),
        style_b=contextual_similarity(b, image_a, vgg),
        structure_a_prime=structure_distance(a_prime, image_a, vgg),
        structure_b=structure_distance(b, image_b, vgg),
    )


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an H×W×3 image (or an H×W one as it is), float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb if rgb.ndim == 2 else rgb @ np.array([0.299, 0.587, 0.114])


def _cell_borders(n: int, cells: int) -> np.ndarray:
    """For the n − 1 edges between neighbouring pixels of a side of n pixels: whether the edge lies
    on a border of `cells` equal cells (the working grid magnified to n pixels)."""
    index = (np.arange(n) * cells) // n
    return index[1:] != index[:-1]


def block_seams(image: np.ndarray, working_shape: Sequence[int]) -> float:
    """How much more `image` changes across the borders of the working grid's cells than elsewhere:
    the mean |difference| of neighbouring grey pixels on edges that lie on a cell border, over the
    same mean on all other edges, rows and columns together. `working_shape` is the (H, W) of the
    working grid (the working size); 1.0 means no seams along it, a mosaic of cells gives more
    (infinity for one whose cells are flat)."""
    grey = _grey(image)
    h, w = grey.shape
    across_cols = np.abs(np.diff(grey, axis=1))  # H × (W−1)
    across_rows = np.abs(np.diff(grey, axis=0))  # (H−1) × W
    on_cols = np.broadcast_to(_cell_borders(w, int(working_shape[1]))[None, :], across_cols.shape)
    on_rows = np.broadcast_to(_cell_borders(h, int(working_shape[0]))[:, None], across_rows.shape)
    on = across_cols[on_cols].sum() + across_rows[on_rows].sum()
    on_count = on_cols.sum() + on_rows.sum()
    off = across_cols[~on_cols].sum() + across_rows[~on_rows].sum()
    off_count = across_cols.size + across_rows.size - on_count
    if on_count == 0 or (on == 0 and off == 0):
        return float("nan")  # no borders, or a flat image
    if off == 0:
        return float("inf")  # a pure mosaic: every change is on a border
    return float((on / on_count) / (off / off_count))


def fine_detail(image: np.ndarray) -> float:
    """The standard deviation of the grey image's 4-neighbour Laplacian, at the image's own
    resolution (0–255 grey levels): how much detail at the scale of single pixels it holds."""
    grey = _grey(image)
    laplacian = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]
                 - 4.0 * grey[1:-1, 1:-1])
    return float(laplacian.std())

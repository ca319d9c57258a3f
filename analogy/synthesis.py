"""Synthesis beyond the working size: the coarse-to-fine pass continued up to the output size.

The pyramid of VGG levels ends at relu1_1, at the working size (at most 350,000 px). Above it,
A′ and B are synthesised scale by scale, ×2 at a time up to the output size (the last step to the
exact size), instead of magnifying the working result. At each scale both NNFs are upsampled,
then refined by rounds of

    vote:   A′ = vote(B′, φ_a→b),  B = vote(A, φ_b→a)   (overlapping 3×3 patches of the images at
                                                          this scale, by consensus: never blocks)
    search: φ_a→b = PatchMatch minimising, over 5×5 patches,
                ‖A′(p) − B′(q)‖² + w_g·‖A(p) − B(q)‖² + w_s·(S_A(p) − S_B′(q))²
            φ_b→a = PatchMatch minimising
                ‖B(p) − A(q)‖² + w_g·‖B′(p) − A′(q)‖² + w_s·(S_B′(p) − S_A(q))²

The first two terms are the paper's bidirectional cost with the images themselves as the features
(Image Analogies and StyLit/Ebsynth's guided synthesis, with (A, B) as guides and B′ as the
exemplar; with the votes, the expectation–maximisation of texture optimisation): the appearance
term (A′ against B′ for φ_a→b, B against A for φ_b→a) takes the exemplar's look at its own
resolution, patch for patch, and makes the overlapping pieces agree; the guide term, weighed
lightly, keeps the two NNFs consistent. Both only refine what the working size decided: a match
one working pixel off is as cheap to them as the right one. The third term ties
A's detail at this scale to B′'s: S is the local structure (luminance less its local mean, over
its local contrast), which compares a photo's edges with a painting's whatever their colours, so
that a window too small for the working size comes back as a dark stroke of B′ where A has it.
The README gives the measurements behind the weights.

The search is the PatchMatch kernel of the VGG levels (`Kernels.search`, CPU and CUDA, the same
determinism promise) on these pixel features; the random search stays near the upsampled match
(radius `synthesis_radius`), propagation goes anywhere.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import AnalogyConfig
from .kernels import Kernels
from .reconstruction import to_image
from .temporal import Continuity, NoContinuity

Shape = Tuple[int, int]
#: Rec. 601 luma weights.
LUMA = (0.299, 0.587, 0.114)
#: The local structure's window, (2·radius + 1)² px, and the contrast (grey levels) added to its
#: standard deviation, so that flat areas do not become noise.
STRUCTURE_RADIUS = 4
STRUCTURE_CONTRAST = 10.0
#: The structure term is weighed in fully where the two searches at relu5_1 end at a mean cost
#: up to the first of these, not at all from the second up, linearly between (see
#: `structure_weight`).
STRUCTURE_GATE = (1.0, 2.0)


def structure_weight(weight: float, coarse_cost: float) -> float:
    """The weight of the structure term for a pair whose relu5_1 searches ended at a mean patch
    cost of `coarse_cost` (normalised features: 0 for the same content, 4 for opposite ones).

    The term compares A's and B′'s fine structure directly. Where they show the same scene in
    comparable looks (a photo and the same photo moved, or relit), that pins each match to the
    right pixel, which the other two terms cannot do; where B′ is another picture in another
    look (a painting, a print, another scene), it pulls B′'s pieces towards A's texture and costs
    style. Their relu5_1 cost tells the two apart: 0.4 for a textured photo moved by a few pixels,
    1.5 for a portrait and its mirror image, 2.4–2.9 on all thirteen development pairs."""
    low, high = STRUCTURE_GATE
    return weight * min(1.0, max(0.0, (high - coarse_cost) / (high - low)))


class Scale(NamedTuple):
    """One scale of the synthesis: the sizes of A (and A′) and of B′ (and B) there."""

    shape_a: Shape
    shape_b: Shape


def _steps(working: Shape, output: Shape) -> List[Shape]:
    """The shapes from `working` up to `output` (excluded below, included at the end), ×2 at a time
    by the long side: round(log2(ratio)) steps, at least one when the output is larger."""
    ratio = max(output) / max(working)
    if ratio <= 1.0:
        return []
    count = max(1, round(math.log2(ratio)))
    factors = [min(1.0, 2.0 ** k / ratio) for k in range(1, count)] + [1.0]
    return [(max(1, round(output[0] * f)), max(1, round(output[1] * f))) for f in factors]


def scales(working_a: Shape, output_a: Shape, working_b: Shape, output_b: Shape) -> List[Scale]:
    """The scales above the working sizes, coarsest first. Both sides double together, so that
    A's and B′'s pixels keep the ratio the working sizes set (the scale of B′'s texture in A′);
    a side that reaches its output size stays there while the other goes on. Empty when neither
    output is larger than its working size."""
    steps_a, steps_b = _steps(working_a, output_a), _steps(working_b, output_b)
    count = max(len(steps_a), len(steps_b))
    return [Scale(steps_a[k] if k < len(steps_a) else output_a,
                  steps_b[k] if k < len(steps_b) else output_b) for k in range(count)]


def _chw(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """An H×W×3 uint8 image as a 3×H×W float32 tensor (0–255) on `device`."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float()


def local_structure(image: torch.Tensor, radius: int = STRUCTURE_RADIUS,
                    contrast: float = STRUCTURE_CONTRAST) -> torch.Tensor:
    """The 1×H×W structure of a 3×H×W image (0–255): its luminance less the local mean, over the
    local standard deviation plus `contrast` (both over (2·radius + 1)² px). Edges and texture
    come out alike whatever the colours and the contrast, so a photo's structure can be compared
    with a painting's; flat areas come out near 0 rather than as amplified noise."""
    luma = torch.tensordot(torch.tensor(LUMA, dtype=image.dtype, device=image.device), image,
                           dims=1)[None, None]
    def box_mean(x: torch.Tensor) -> torch.Tensor:  # separable: rows, then columns
        x = F.avg_pool2d(x, (1, 2 * radius + 1), 1, (0, radius), count_include_pad=False)
        return F.avg_pool2d(x, (2 * radius + 1, 1), 1, (radius, 0), count_include_pad=False)

    mean = box_mean(luma)
    variance = box_mean(luma * luma) - mean * mean
    return ((luma - mean) / (variance.clamp_min_(0.0).sqrt_() + contrast))[0]


def feature_scales(weights: Tuple[float, float]) -> Tuple[float, float, float]:
    """The scales of the appearance, guide and structure channels of the pixel features
    (`Kernels.pixel_features`) for the weights (w_guide, w_structure): 1/255, √w_guide/255 and
    √w_structure, so that the squared distance of two sides is
    ‖appearance − appearance′‖² + w_guide · ‖guide − guide′‖² + w_structure · (S − S′)²."""
    return 1.0 / 255.0, math.sqrt(weights[0]) / 255.0, math.sqrt(weights[1])


class Synthesis:
    """The synthesis of A′ and B from the finest working NNFs up to the output sizes: `step` once
    per scale of `scales`, then `outputs`.

    Each output is finished at the scale where its side reaches its output size, voted from the
    other image at that scale: a photo of twice the pixels of its painting takes the painting's
    texture at the scale the working sizes matched them at, not the painting's native pixels
    magnified or shrunk. After that its NNF is no longer searched, and the finished image guides
    the other direction's search."""

    def __init__(self, config: AnalogyConfig, kernels: Kernels,
                 resize: Callable[[np.ndarray, Shape], np.ndarray], image_a: np.ndarray,
                 image_b: np.ndarray, working: Scale, output: Scale, nnf_ab: torch.Tensor,
                 nnf_ba: torch.Tensor, coarse_cost: float = 0.0,
                 temporal: Optional[Continuity] = None) -> None:
        """`coarse_cost`: the mean patch cost the relu5_1 searches ended at (see
        `structure_weight`); `temporal`: a video frame's warm starts (analogy/temporal.py)."""
        self.temporal = temporal or NoContinuity()
        self.config, self.kernels, self.resize = config, kernels, resize
        self.weights = (config.synthesis_guide_weight,
                        structure_weight(config.synthesis_structure_weight, coarse_cost))
        self.image_a, self.image_b, self.output = image_a, image_b, output
        self.steps_a = len(_steps(working.shape_a, output.shape_a))
        self.steps_b = len(_steps(working.shape_b, output.shape_b))
        self.scales = scales(working.shape_a, output.shape_a, working.shape_b, output.shape_b)
        self.current = working
        self.nnf_ab, self.nnf_ba = nnf_ab, nnf_ba
        #: A′ and B once finished (3×H×W float, 0–255), with the size of their source
        self.a_prime: Optional[torch.Tensor] = None
        self.b: Optional[torch.Tensor] = None
        self.source_b, self.source_a = working.shape_b, working.shape_a
        if not self.steps_a:
            self.a_prime = self._finish_without_scales("ab")
        if not self.steps_b:
            self.b = self._finish_without_scales("ba")

    def _image(self, image: np.ndarray, shape: Shape) -> torch.Tensor:
        return _chw(self.resize(image, shape), self.kernels.device)

    def _finish_without_scales(self, direction: str) -> torch.Tensor:
        """An output not larger than its working size: its working NNF resampled to it and voted
        as the original votes (the mean), from the other image at the size in the same ratio."""
        kernels, working = self.kernels, self.current
        if direction == "ab":
            out, own, other, image = (self.output.shape_a, working.shape_a, working.shape_b,
                                      self.image_b)
        else:
            out, own, other, image = (self.output.shape_b, working.shape_b, working.shape_a,
                                      self.image_a)
        ratio = max(out) / max(own)
        source = (max(1, round(other[0] * ratio)), max(1, round(other[1] * ratio)))
        nnf = kernels.resample_nnf(self.nnf_ab if direction == "ab" else self.nnf_ba, other, out,
                                   source)
        voted = kernels.vote(self._image(image, source), nnf, self.config.final_patch_size)
        if direction == "ab":
            self.nnf_ab, self.source_b = nnf, source
        else:
            self.nnf_ba, self.source_a = nnf, source
        return voted

    def step(self, index: int) -> None:
        """Scale `index`: the NNFs of the sides still growing upsampled to it, then refined by
        vote and search rounds (see the module docstring); a side whose output size this is, is
        finished."""
        config, kernels = self.config, self.kernels
        scale, before = self.scales[index], self.current
        grow_ab, grow_ba = index < self.steps_a, index < self.steps_b
        a, b_prime = self._image(self.image_a, scale.shape_a), self._image(self.image_b,
                                                                          scale.shape_b)
        if grow_ab:
            self.nnf_ab = kernels.resample_nnf(self.nnf_ab, before.shape_b, scale.shape_a,
                                               scale.shape_b)
        if grow_ba:
            self.nnf_ba = kernels.resample_nnf(self.nnf_ba, before.shape_a, scale.shape_b,
                                               scale.shape_a)
        key = f"scale{index + 1}"
        if grow_ab:
            self.nnf_ab = self.temporal.nnf(key, "ab", self.nnf_ab, scale.shape_b)
        if grow_ba:
            self.nnf_ba = self.temporal.nnf(key, "ba", self.nnf_ba, scale.shape_a)
        scales = feature_scales(self.weights)
        patch, vote = config.synthesis_patch_size, config.final_patch_size
        tolerance = config.synthesis_vote_tolerance
        if self.weights[1] > 0:
            structure_a, structure_b = local_structure(a), local_structure(b_prime)
        else:  # the term is off for this pair (see structure_weight): zeros cost nothing
            structure_a, structure_b = a.new_zeros((1,) + a.shape[1:]), b_prime.new_zeros(
                (1,) + b_prime.shape[1:])
        # (rounds, iterations) of each direction: its last scale has synthesis_last
        plan_ab = (config.synthesis_last if index == self.steps_a - 1
                   else (config.synthesis_rounds, config.synthesis_iterations))
        plan_ba = (config.synthesis_last if index == self.steps_b - 1
                   else (config.synthesis_rounds, config.synthesis_iterations))
        if self.temporal.warm:  # a video frame that starts from the previous one
            plan_ab = (min(plan_ab[0], config.video_synthesis_rounds), plan_ab[1])
            plan_ba = (min(plan_ba[0], config.video_synthesis_rounds), plan_ba[1])
        rounds = max(plan_ab[0] if grow_ab else 0, plan_ba[0] if grow_ba else 0)
        for round_ in range(rounds):
            a_prime = (kernels.vote(b_prime, self.nnf_ab, vote, tolerance) if grow_ab
                       else self.a_prime)
            b = kernels.vote(a, self.nnf_ba, vote, tolerance) if grow_ba else self.b
            seed = config.seed + 104729 * (index + 1) + 7 * round_
            # each direction's own output is its appearance term; the other's is the guide term
            if grow_ab and round_ < plan_ab[0]:
                self.nnf_ab, _ = kernels.search(
                    kernels.pixel_features(a_prime, a, structure_a, scales),  # [A′, A, S(A)]
                    kernels.pixel_features(b_prime, b, structure_b, scales),  # [B′, B, S(B′)]
                    self.nnf_ab, patch, plan_ab[1], config.synthesis_radius, seed)
            if grow_ba and round_ < plan_ba[0]:
                self.nnf_ba, _ = kernels.search(
                    kernels.pixel_features(b, b_prime, structure_b, scales),  # [B, B′, S(B′)]
                    kernels.pixel_features(a, a_prime, structure_a, scales),  # [A, A′, S(A)]
                    self.nnf_ba, patch, plan_ba[1], config.synthesis_radius, seed + 1)
            del a_prime, b
        if grow_ab:
            self.temporal.keep_nnf(key, "ab", self.nnf_ab)
        if grow_ba:
            self.temporal.keep_nnf(key, "ba", self.nnf_ba)
        if index == self.steps_a - 1:
            self.a_prime = kernels.vote(b_prime, self.nnf_ab, vote, tolerance)
            self.source_b = scale.shape_b
        if index == self.steps_b - 1:
            self.b = kernels.vote(a, self.nnf_ba, vote, tolerance)
            self.source_a = scale.shape_a
        self.current = scale

    def outputs(self) -> Tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
        """A′ and B (H×W×3 uint8 at the output sizes) and their NNFs into B′ and A at their
        output sizes."""
        kernels, out = self.kernels, self.output
        nnf_ab = kernels.resample_nnf(self.nnf_ab, self.source_b, out.shape_a, out.shape_b)
        nnf_ba = kernels.resample_nnf(self.nnf_ba, self.source_a, out.shape_b, out.shape_a)
        return to_image(self.a_prime), to_image(self.b), nnf_ab, nnf_ba


def output_shape(shape: Shape, working: Shape, output_size) -> Shape:
    """The size of an output whose input is `shape` and working size `working`, by `output_size`:
    "input" (the input's own), "working", or a long side in px (at most the input's)."""
    if output_size == "input":
        return tuple(shape)
    if output_size == "working":
        return tuple(working)
    long_side = min(int(output_size), max(shape))
    scale = long_side / max(shape)
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


"""Every parameter of the method in one place, with the original implementation's defaults.

Per-level tuples are ordered from the coarsest level to the finest:
index 0 is relu5_1, 1 relu4_1, 2 relu3_1, 3 relu2_1, 4 relu1_1.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from .errors import ConfigError

LEVEL_NAMES: Tuple[str, ...] = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")

#: The device names accepted: auto, cpu, cuda, or cuda:N for GPU N.
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"

#: Seeds are below this: the search derives one seed per level and direction from it, in 64 bits.
MAX_SEED = 2**62


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, expected: str, value) -> None:
    """A ConfigError saying what `name` must be, unless `ok`."""
    if not ok:
        raise ConfigError(f"{name} must be {expected}, not {value!r}")


@dataclass(frozen=True)
class Level:
    """The facts of one pyramid level, from the config (`AnalogyConfig.levels()`)."""

    name: str  # "relu5_1" … "relu1_1"
    layer: int  # VGG level: 5 for relu5_1 … 1 for relu1_1 (0 would be the image)
    patch_size: int  # side of the PatchMatch patches
    radius: Optional[int]  # starting radius of the random search (None: the whole map)
    iterations: int  # PatchMatch iterations
    deconv_iterations: int  # most L-BFGS iterations deconvolving to the level below (0 at relu1_1)
    deconv_layers_down: int  # where that deconvolution's variable lives: 1 or 2 levels down
    alpha: Optional[float]  # α of the fusion that makes this level's features (None at relu5_1)
    seed: int  # seed of the A→B′ search (B′→A uses seed + 1)


#: α for the fused levels relu4_1, relu3_1, relu2_1, relu1_1, by blend level (Liao et al. 2017).
BLEND_PRESETS = {
    1: (0.7, 0.6, 0.5, 0.0),
    2: (0.8, 0.7, 0.6, 0.1),
    3: (0.9, 0.8, 0.7, 0.2),
}

#: Where the deconvolution's variable starts (AnalogyConfig.deconv_start).
DECONV_STARTS = ("voted", "structure")

#: The fast setting for previews (`AnalogyConfig.as_preview`, `--preview`): the deconvolution as
#: this project first ran it, one level down for 10 L-BFGS iterations from the structure image's
#: own map. About a third of the default's deconvolution work, but where A's and B′'s colours
#: differ, much of A's colour stays in A′ (and B′'s in B): the README's Quality section gives the
#: scores.
PREVIEW = dict(deconv_layers_down=1, deconv_iterations=10, deconv_start="structure",
               deconv_tolerance=1e-3, deconv_gradient_tolerance=0.0)

#: Inputs whose shorter side is below this are refused: a 48-px working side is the least that
#: leaves a 3×3 relu5_1 map for a 3×3 patch, and upscaling a thumbnail further gives nothing useful.
MIN_INPUT_SIDE = 32
#: Working sizes are multiples of this (the stride of relu5_1), so every level is exactly half the
#: one below it and NNFs upsample by exactly 2.
SIZE_MULTIPLE = 16
#: Smallest working side: a 3×3 map at relu5_1.
MIN_WORKING_SIDE = 48
#: The named output sizes (AnalogyConfig.output_size); a number is a long side in px.
OUTPUT_SIZES = ("input", "working")


@dataclass(frozen=True)
class AnalogyConfig:
    """Parameters of Deep Image Analogy. Defaults follow the original implementation, except
    deconv_iterations (see below).

    Sizes:
        ratio: scale applied after the original's size rules (0.5 in the original; 1 for full
            quality).
        size: if set, the working long side in pixels, replacing the size rules and `ratio`.
        max_long_side, min_long_side, max_area: the original's size rules, applied before `ratio`.
    PatchMatch (per level, relu5_1 … relu1_1):
        patch_sizes, iterations: patch side and PatchMatch iterations.
        radii: the starting radius of the random search: each iteration samples windows of radius
            r, r/2, … 1 around each position's current best match, as the original does. None
            means the whole map (relu5_1, where the search starts from the identity NNF). Below
            relu5_1 the search starts from the NNF upsampled from the level above, but nothing
            bounds it there: propagation carries a neighbour's match wherever it lies.
        band_height: rows per band in the CPU kernel. Bands are a fixed partition of the image, not
            of the threads, so results do not depend on the number of cores.
    Fusion:
        blend_level: 1, 2 or 3, selects α per level from BLEND_PRESETS (2 is the original's
            default).
        kappa, tau: sharpness and threshold of the sigmoid mask on normalised ‖F_A‖².
    Deconvolution:
        deconv_iterations: the most L-BFGS iterations per level and direction. Each costs one
            forward and backward pass of the sub-network, and the deconvolution is most of the
            run. A tuple gives one count per deconvolution (relu5_1 → relu4_1 first, four in
            all). The original runs 100 at every level. Ours: 10 for the two coarsest, which cost
            about three quarters of the work per iteration and whose results are mostly A's own
            features after the fusion (α 0.8–0.9), and 50 below; on the development pairs they
            score as the original's 100 do, within another seed's spread, in a quarter of the
            time (README, Performance).
        deconv_layers_down: 2 optimises relu(L-2)_1 (or the image) and passes it through the
            sub-network to relu(L-1)_1, as the original does; 1 optimises relu(L-1)_1 itself,
            cheaper per iteration but further from the original's results. A tuple gives one
            value per deconvolution (relu5_1 → relu4_1 first); one level down at the two finest
            cost 7–10 % of the style score on the development pairs (README, Performance).
        deconv_start: where the variable starts. "voted": the appearance image's map at that
            level (B′'s for A′, A's for B) voted through the NNF resampled to it, as the original
            does since July 2017; "structure": the structure image's own map (A's for A′, B′'s for
            B), as its first release did. Starting from the structure's own map, A's colours stay
            in A′ on pairs whose colours differ (README, Quality).
        deconv_history: L-BFGS history size (4 in the original).
        deconv_tolerance: stop when an iteration improves the loss by less than this fraction
            (0: never; the original has no such test).
        deconv_gradient_tolerance: stop when ‖g‖ < this × max(1, ‖x‖), g the gradient of the
            original's loss ½‖CNN(x) − T‖² (1e-4 in the original; 0: never).
        deconv_precision: "float32", "bfloat16" (the sub-network's convolutions in bfloat16; the
            variable, loss and L-BFGS stay float32) or "auto": bfloat16 where the device computes
            it natively (a CPU with AVX512-BF16 or AMX), else float32. bfloat16 about halves the
            deconvolution's time there, at the same final errors (README, benchmark).
    Output size and the synthesis beyond the working size (see analogy/synthesis.py):
        output_size: "input" (A′ at A's size and B at B′'s), "working" (both at their working
            sizes, as the original makes them before resizing; fast), or a long side in px,
            which each output takes up to its input's own long side.
        synthesis_patch_size: patch side of the searches and votes at the scales between the
            working size and the output size (5, as in Image Analogies' fine levels and StyLit).
        synthesis_rounds, synthesis_iterations: vote-and-search rounds per scale (the EM steps
            of texture optimisation) and PatchMatch iterations per round and direction;
            synthesis_last: the same two at the last scale (the output size), where the pixels
            are most and the NNFs, upsampled from a scale that was refined, nearly settled;
            synthesis_radius: the random search's starting radius, around the upsampled match.
        synthesis_guide_weight: weight of the guide term of the image-level cost (for A→B′,
            A against B; for B→A, B′ against A′: the paper's bidirectional term, on the pixels)
            against the appearance term (A′ against B′; B against A). Small: at 1 the searches
            follow the other image's colours and A′'s texture turns to speckles (README).
        synthesis_structure_weight: weight of the A ↔ B′ term on their local structure (luminance
            less its local mean, over its local contrast): what pins A′'s matches to A's pixels
            at the scales the VGG levels do not see. Weighed in only for pairs of the same scene
            in comparable looks, as told by the relu5_1 match (`synthesis.structure_weight`):
            between a photo and a painting it would pull B′'s pieces towards A's texture.
        synthesis_vote_tolerance: above the working size, A′ and B are voted by consensus: at
            each pixel only the overlapping patches' votes within this distance (RGB, 0–255) of
            the pixel's own patch's vote count, so that patches from different places of B′ do
            not average into blur (see `analogy.nnf.vote`).
        final_patch_size: patch side of the vote that makes A′ and B at output resolution.
    Photo mode (see analogy/refinement.py):
        photo: after the vote, refine A′ to A + WLS(A′) − WLS(A), WLS guided by A's luminance
            (and B to B′ + WLS(B) − WLS(B′)): keeps the structure image's edges, takes the colours.
            Off by default; meant for photo-to-photo colour and lighting transfer.
        wls_lambda, wls_alpha, wls_eps: WLS smoothness λ, edge exponent α and ε in the weights
            λ / (|∇ log luminance|^α + ε); 0.8, 1 and 1e-4 are the original's.
        confidence_sigma: scale of AnalogyResult.confidence(), as a fraction of the image's long
            side: a round trip A → B′ → A that misses the start by d pixels gets exp(−d²/2σ²).
            0.01 is 10 px on a 1000-px image, about two working pixels at the default ratio.
    Video (`analogy.video`; frames after the first start warm from the previous frame, see
    analogy/temporal.py):
        video_iterations: PatchMatch iterations per level of a warm frame (the searches start
            from the previous frame's NNFs carried along the optical flow).
        video_deconv_iterations: the most L-BFGS iterations per deconvolution of a warm frame
            (from the previous frame's variable), one value or one per deconvolution.
        video_synthesis_rounds: vote-and-search rounds per synthesis scale of a warm frame.
    Other:
        seed: seeds the PatchMatch random search (0 ≤ seed < 2**62); same inputs, options and seed
            give the same output on the same device.
        weights: "caffe" (embedded original Caffe VGG19), "torchvision", or a path to a state dict.
        device: "auto", "cpu", "cuda" or "cuda:N" (see `analogy.kernels.resolve_device`).
    """

    ratio: float = 0.5
    size: Optional[int] = None
    max_long_side: int = 700
    min_long_side: int = 200
    max_area: int = 350_000

    patch_sizes: Tuple[int, ...] = (3, 3, 3, 5, 5)
    iterations: Tuple[int, ...] = (10, 10, 10, 10, 10)
    radii: Tuple[Optional[int], ...] = (None, 6, 6, 4, 4)
    band_height: int = 4

    blend_level: int = 2
    kappa: float = 300.0
    tau: float = 0.05

    deconv_iterations: Union[int, Tuple[int, ...]] = (10, 10, 50, 50)
    deconv_layers_down: Union[int, Tuple[int, ...]] = 2
    deconv_start: str = "voted"
    deconv_history: int = 4
    deconv_tolerance: float = 0.0
    deconv_gradient_tolerance: float = 1e-4
    deconv_precision: str = "auto"

    output_size: Union[str, int] = "input"
    synthesis_patch_size: int = 5
    synthesis_rounds: int = 2
    synthesis_iterations: int = 1
    synthesis_last: Tuple[int, int] = (1, 1)
    synthesis_radius: int = 2
    synthesis_guide_weight: float = 0.1
    synthesis_structure_weight: float = 0.5
    synthesis_vote_tolerance: float = 10.0
    final_patch_size: int = 3

    video_iterations: int = 2
    video_deconv_iterations: Union[int, Tuple[int, ...]] = (2, 2, 10, 10)
    video_synthesis_rounds: int = 1

    photo: bool = False
    wls_lambda: float = 0.8
    wls_alpha: float = 1.0
    wls_eps: float = 1e-4
    confidence_sigma: float = 0.01

    seed: int = 0
    weights: str = "caffe"
    device: str = "auto"

    alphas: Tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.iterations, int) and not isinstance(self.iterations, bool):
            object.__setattr__(self, "iterations", (self.iterations,) * len(LEVEL_NAMES))
        for name in ("patch_sizes", "iterations", "radii"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != len(LEVEL_NAMES):
                raise ConfigError(f"{name} needs one value per level ({len(LEVEL_NAMES)}, relu5_1 "
                                  f"first), got {value!r}")
            object.__setattr__(self, name, tuple(value))
        _check(self.blend_level in BLEND_PRESETS and _is_int(self.blend_level), "blend_level",
               "1, 2 or 3", self.blend_level)
        object.__setattr__(self, "alphas", BLEND_PRESETS[self.blend_level])
        _check(_is_number(self.ratio) and 0 < self.ratio <= 4, "ratio", "a number in (0, 4]",
               self.ratio)
        _check(self.size is None or (_is_int(self.size) and self.size >= MIN_WORKING_SIDE), "size",
               f"a whole number of pixels, at least {MIN_WORKING_SIDE} "
               "(or None for the size rules)", self.size)
        for name in ("max_long_side", "min_long_side", "max_area"):
            _check(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
                   "a whole number ≥ 1", getattr(self, name))
        _check(self.min_long_side <= self.max_long_side, "min_long_side",
               f"at most max_long_side ({self.max_long_side})", self.min_long_side)
        _check(self.output_size in OUTPUT_SIZES
               or (_is_int(self.output_size) and self.output_size >= MIN_INPUT_SIDE),
               "output_size", f"input, working or a long side in px of at least {MIN_INPUT_SIDE}",
               self.output_size)
        for name in ("synthesis_rounds", "synthesis_iterations", "synthesis_radius"):
            _check(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
                   "a whole number ≥ 1", getattr(self, name))
        if isinstance(self.synthesis_last, list):
            object.__setattr__(self, "synthesis_last", tuple(self.synthesis_last))
        _check(isinstance(self.synthesis_last, tuple) and len(self.synthesis_last) == 2
               and all(_is_int(n) and n >= 1 for n in self.synthesis_last), "synthesis_last",
               "(rounds, iterations), two whole numbers ≥ 1", self.synthesis_last)
        for name in ("synthesis_guide_weight", "synthesis_structure_weight",
                     "synthesis_vote_tolerance"):
            _check(_is_number(getattr(self, name)) and getattr(self, name) >= 0, name,
                   "a number ≥ 0", getattr(self, name))
        for k in self.patch_sizes + (self.final_patch_size, self.synthesis_patch_size):
            _check(_is_int(k) and k >= 1 and k % 2 == 1, "patch sizes", "odd whole numbers ≥ 1", k)
        for n in self.iterations:
            _check(_is_int(n) and n >= 0, "iterations", "whole numbers ≥ 0", n)
        for r in self.radii:
            _check(r is None or (_is_int(r) and r >= 1), "radii",
                   "whole numbers ≥ 1 or None (the whole map)", r)
        _check(_is_int(self.band_height) and self.band_height >= 1, "band_height",
               "a whole number ≥ 1", self.band_height)
        _check(_is_number(self.kappa) and self.kappa > 0, "kappa", "a number > 0", self.kappa)
        _check(_is_number(self.tau) and 0 <= self.tau < 1, "tau", "a number in [0, 1)", self.tau)
        if isinstance(self.deconv_iterations, list):
            object.__setattr__(self, "deconv_iterations", tuple(self.deconv_iterations))
        counts = self._deconv_counts()
        _check(len(counts) == len(LEVEL_NAMES) - 1 and all(_is_int(n) and n >= 0 for n in counts),
               "deconv_iterations", "a whole number ≥ 0, or one per deconvolution "
               f"({len(LEVEL_NAMES) - 1}, relu5_1 → relu4_1 first)", self.deconv_iterations)
        if isinstance(self.video_deconv_iterations, list):
            object.__setattr__(self, "video_deconv_iterations",
                               tuple(self.video_deconv_iterations))
        counts = self._per_deconvolution(self.video_deconv_iterations)
        _check(len(counts) == len(LEVEL_NAMES) - 1 and all(_is_int(n) and n >= 0 for n in counts),
               "video_deconv_iterations", "a whole number ≥ 0, or one per deconvolution "
               f"({len(LEVEL_NAMES) - 1}, relu5_1 → relu4_1 first)", self.video_deconv_iterations)
        _check(_is_int(self.video_iterations) and self.video_iterations >= 0, "video_iterations",
               "a whole number ≥ 0", self.video_iterations)
        _check(_is_int(self.video_synthesis_rounds) and self.video_synthesis_rounds >= 1,
               "video_synthesis_rounds", "a whole number ≥ 1", self.video_synthesis_rounds)
        if isinstance(self.deconv_layers_down, list):
            object.__setattr__(self, "deconv_layers_down", tuple(self.deconv_layers_down))
        downs = self._per_deconvolution(self.deconv_layers_down)
        _check(len(downs) == len(LEVEL_NAMES) - 1
               and all(_is_int(n) and n in (1, 2) for n in downs),
               "deconv_layers_down", "1 or 2, or one per deconvolution "
               f"({len(LEVEL_NAMES) - 1}, relu5_1 → relu4_1 first)", self.deconv_layers_down)
        _check(_is_int(self.deconv_history) and self.deconv_history >= 1, "deconv_history",
               "a whole number ≥ 1", self.deconv_history)
        _check(_is_number(self.deconv_tolerance) and self.deconv_tolerance >= 0, "deconv_tolerance",
               "a number ≥ 0", self.deconv_tolerance)
        _check(self.deconv_start in DECONV_STARTS, "deconv_start", " or ".join(DECONV_STARTS),
               self.deconv_start)
        _check(_is_number(self.deconv_gradient_tolerance) and self.deconv_gradient_tolerance >= 0,
               "deconv_gradient_tolerance", "a number ≥ 0", self.deconv_gradient_tolerance)
        _check(self.deconv_precision in ("auto", "float32", "bfloat16"), "deconv_precision",
               "auto, float32 or bfloat16", self.deconv_precision)
        _check(isinstance(self.photo, bool), "photo", "True or False", self.photo)
        for name in ("wls_lambda", "wls_alpha", "wls_eps", "confidence_sigma"):
            _check(_is_number(getattr(self, name)) and getattr(self, name) > 0, name,
                   "a number > 0", getattr(self, name))
        _check(_is_int(self.seed) and 0 <= self.seed < MAX_SEED, "seed",
               f"a whole number from 0 to 2**{MAX_SEED.bit_length() - 1} − 1", self.seed)
        _check(isinstance(self.weights, str) and self.weights != "", "weights",
               "caffe, torchvision or the path of a state dict", self.weights)
        _check(isinstance(self.device, str)
               and re.fullmatch(DEVICE_PATTERN, self.device) is not None,
               "device", "auto, cpu, cuda or cuda:N", self.device)

    def replace(self, **changes) -> "AnalogyConfig":
        """A copy with the given fields changed (None sets a field to None where it may be None,
        e.g. ``replace(size=None)`` goes back to the size rules)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self) if f.init})
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}; the options are AnalogyConfig's "
                              "fields")
        return dataclasses.replace(self, **changes)

    def as_preview(self) -> "AnalogyConfig":
        """A copy with the fast deconvolution meant for previews (see PREVIEW)."""
        return self.replace(**PREVIEW)

    def _deconv_counts(self) -> Tuple[int, ...]:
        """deconv_iterations as one count per deconvolution, relu5_1 → relu4_1 first."""
        return self._per_deconvolution(self.deconv_iterations)

    @staticmethod
    def _per_deconvolution(value) -> Tuple:
        """A setting of the deconvolutions as one value per deconvolution (relu5_1 → relu4_1
        first): a tuple as it is, one value repeated."""
        if isinstance(value, tuple):
            return value
        return (value,) * (len(LEVEL_NAMES) - 1)

    def levels(self, warm: bool = False) -> Tuple[Level, ...]:
        """The per-level facts, from relu5_1 (coarsest) to relu1_1; `warm`: of a video frame that
        starts from the previous one (video_iterations, video_deconv_iterations)."""
        count = len(LEVEL_NAMES)
        deconv = (self._per_deconvolution(self.video_deconv_iterations) if warm
                  else self._deconv_counts()) + (0,)  # relu1_1 deconvolves nothing
        iterations = (self.video_iterations,) * count if warm else self.iterations
        downs = self._per_deconvolution(self.deconv_layers_down) + (1,)
        return tuple(
            Level(name, count - index, self.patch_sizes[index], self.radii[index],
                  iterations[index], deconv[index], downs[index],
                  None if index == 0 else self.alphas[index - 1],
                  self.seed + 7919 * (count - index))
            for index, name in enumerate(LEVEL_NAMES)
        )

"""Every parameter of the method in one place, with the original implementation's defaults.

Per-level tuples are ordered from the coarsest level to the finest:
index 0 is relu5_1, 1 relu4_1, 2 relu3_1, 3 relu2_1, 4 relu1_1.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .errors import ConfigError

LEVEL_NAMES: Tuple[str, ...] = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")

#: α for the fused levels relu4_1, relu3_1, relu2_1, relu1_1, by blend level (Liao et al. 2017).
BLEND_PRESETS = {
    1: (0.7, 0.6, 0.5, 0.0),
    2: (0.8, 0.7, 0.6, 0.1),
    3: (0.9, 0.8, 0.7, 0.2),
}

#: Inputs whose shorter side is below this are refused: a 48-px working side is the least that
#: leaves a 3×3 relu5_1 map for a 3×3 patch, and upscaling a thumbnail further gives nothing useful.
MIN_INPUT_SIDE = 32
#: Working sizes are multiples of this (the stride of relu5_1), so every level is exactly half the
#: one below it and NNFs upsample by exactly 2.
SIZE_MULTIPLE = 16
#: Smallest working side: a 3×3 map at relu5_1.
MIN_WORKING_SIDE = 48


@dataclass(frozen=True)
class AnalogyConfig:
    """Parameters of Deep Image Analogy. Defaults follow the original implementation.

    Sizes:
        ratio: scale applied after the original's size rules (0.5 in the original; 1 for full quality).
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
        blend_level: 1, 2 or 3, selects α per level from BLEND_PRESETS (2 is the original's default).
        kappa, tau: sharpness and threshold of the sigmoid mask on normalised ‖F_A‖².
    Deconvolution:
        deconv_iterations: L-BFGS iterations per level and direction (the original allows 100;
            starting from the voted features, 10 already remove most of the error). Each iteration
            costs one forward/backward pass of the sub-network (see deconvolution.py).
        deconv_layers_down: 1 optimises relu(L-1)_1 itself; 2 optimises relu(L-2)_1 (or the
            image) as the original does. Either way the variable starts from the structure
            image's own map at that level (A's for A′, B′'s for B), as in the original. 1 is the
            default: it costs about two thirds as much and the results look alike (README).
        deconv_history: L-BFGS history size (4 in the original).
        deconv_tolerance: stop when an iteration improves the loss by less than this fraction.
    Reconstruction:
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
    Other:
        seed: seeds the PatchMatch random search; same inputs, options and seed give the same output.
        weights: "caffe" (embedded original Caffe VGG19), "torchvision", or a path to a state dict.
        device: "auto", "cpu" or "cuda".
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

    deconv_iterations: int = 10
    deconv_layers_down: int = 1
    deconv_history: int = 4
    deconv_tolerance: float = 1e-3

    final_patch_size: int = 3

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
        if self.blend_level not in BLEND_PRESETS:
            raise ConfigError(f"blend_level must be 1, 2 or 3, not {self.blend_level!r}")
        object.__setattr__(self, "alphas", BLEND_PRESETS[self.blend_level])
        if isinstance(self.iterations, int):
            object.__setattr__(self, "iterations", (self.iterations,) * len(LEVEL_NAMES))
        for name in ("patch_sizes", "iterations", "radii"):
            value = tuple(getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != len(LEVEL_NAMES):
                raise ConfigError(f"{name} needs one value per level ({len(LEVEL_NAMES)}), got {value!r}")
        if any(k < 1 or k % 2 == 0 for k in self.patch_sizes + (self.final_patch_size,)):
            raise ConfigError("patch sizes must be odd and positive")
        if any(n < 0 for n in self.iterations):
            raise ConfigError("PatchMatch iterations must be ≥ 0")
        if any(r is not None and r < 1 for r in self.radii):
            raise ConfigError("search radii must be ≥ 1 (or None for the whole map)")
        if not 0 < self.ratio <= 4:
            raise ConfigError(f"ratio must be in (0, 4], not {self.ratio!r}")
        if self.size is not None and self.size < MIN_WORKING_SIDE:
            raise ConfigError(f"working size must be at least {MIN_WORKING_SIDE} px, not {self.size}")
        if self.deconv_layers_down not in (1, 2):
            raise ConfigError("deconv_layers_down must be 1 or 2")
        if self.deconv_iterations < 0:
            raise ConfigError("deconv_iterations must be ≥ 0")
        if not (self.wls_lambda > 0 and self.wls_alpha > 0 and self.wls_eps > 0 and self.confidence_sigma > 0):
            raise ConfigError("wls_lambda, wls_alpha, wls_eps and confidence_sigma must be positive")
        if self.band_height < 1:
            raise ConfigError("band_height must be ≥ 1")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, not {self.device!r}")

    def replace(self, **changes) -> "AnalogyConfig":
        """A copy with some fields changed (None values are ignored, so CLI defaults pass through)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)

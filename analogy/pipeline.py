"""The coarse-to-fine driver: features, then per level PatchMatch, deconvolution and fusion,
then reconstruction at the inputs' resolution."""
from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .config import LEVEL_NAMES, MIN_WORKING_SIDE, SIZE_MULTIPLE, AnalogyConfig
from .deconvolution import deconvolve
from .errors import DeviceError, OutOfMemoryError
from .features import FeatureCache, VGG19Features, load_vgg
from .fusion import fuse, response_mask
from .nnf import consistency_confidence, identity_nnf, upsample_nnf, vote
from .patchmatch import SearchFeatures, patchmatch, prepare
from .reconstruction import output_nnf, reconstruct
from .refinement import refine_photos

Shape = Tuple[int, int]
Progress = Optional[Callable[[str], None]]
#: Called after each search as (level name, direction "ab"/"ba", source, target, start NNF, radius,
#: patch size, nnf): lets benchmarks judge the search against the exact NNF of the same problem.
SearchObserver = Optional[Callable[..., None]]

#: Steps reported to a progress callback: features, 5 searches, 4 deconvolutions, reconstruction.
PROGRESS_STEPS = 1 + len(LEVEL_NAMES) + (len(LEVEL_NAMES) - 1) + 1


def progress_steps(config: AnalogyConfig) -> int:
    """How many times run_analogy calls its progress callback with this config."""
    return PROGRESS_STEPS + (1 if config.photo else 0)


def working_size(shape: Shape, config: AnalogyConfig) -> Shape:
    """The (H, W) at which an input of size `shape` is analysed.

    With `config.size`, the long side becomes `size`. Otherwise the original's rules: the long
    side is brought into [min_long_side, max_long_side], the area to at most max_area, then
    everything is scaled by `ratio`. Both sides are then rounded to the nearest multiple of 16
    (so every VGG level is exactly half the one below; the slight change of aspect is undone when
    the NNF is taken back to the input's size) and to at least 48 px (a 3×3 map at relu5_1).
    """
    h, w = shape
    if config.size is not None:
        scale = config.size / max(h, w)
    else:
        scale = 1.0
        long_side = max(h, w)
        if long_side > config.max_long_side:
            scale = config.max_long_side / long_side
        elif long_side < config.min_long_side:
            scale = config.min_long_side / long_side
        if h * w * scale * scale > config.max_area:
            scale = math.sqrt(config.max_area / (h * w))
        scale *= config.ratio

    def snap(n: float) -> int:
        return max(MIN_WORKING_SIDE, SIZE_MULTIPLE * int(round(n / SIZE_MULTIPLE)))

    return snap(h * scale), snap(w * scale)


def level_shape(shape: Shape, level: int) -> Shape:
    """Size of level `level`'s map for a working image of `shape` (levels 0 and 1 are full size)."""
    f = 2 ** max(level - 1, 0)
    return shape[0] // f, shape[1] // f


def resolve_device(device: str) -> torch.device:
    """"cpu"; "auto" → the GPU when torch sees one and Numba's CUDA kernels run on it, else the CPU
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
        raise DeviceError(f"no CUDA device {index} (there are {torch.cuda.device_count()}); use --device cuda (or auto)")
    try:
        from .patchmatch_cuda import problem

        reason = problem(index)
    except ImportError as exc:
        reason = f"Numba's CUDA target cannot be imported ({exc})"
    if reason is None:
        return torch.device("cuda", index)
    if device == "auto":
        warnings.warn(f"a CUDA device is present, but {reason}; running on the CPU (pip install 'analogy[cuda]')")
        return torch.device("cpu")
    raise DeviceError(f"a CUDA device is present, but {reason}; use --device cpu (or pip install 'analogy[cuda]')")


def _out_of_memory(exc: BaseException, device: torch.device) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if device.type == "cuda":
        from .patchmatch_cuda import is_out_of_memory

        return is_out_of_memory(exc)
    return False


@dataclass
class AnalogyResult:
    """What one analogy produced. NNFs are int32 (H, W, 2) arrays of (y, x) at the inputs' sizes:
    nnf_ab[y, x] is where pixel (y, x) of A lies in B′, nnf_ba the same from B′ to A.

    In photo mode a_prime and b are the WLS-refined images and a_prime_raw, b_raw the voted ones
    before refinement; otherwise the raw ones are the same arrays as a_prime and b. working_nnf_ab
    and working_nnf_ba are the finest level's NNFs at the working sizes, before resampling."""

    a_prime: np.ndarray
    b: np.ndarray
    nnf_ab: np.ndarray
    nnf_ba: np.ndarray
    working_size_a: Shape
    working_size_b: Shape
    timings: Dict[str, float] = field(default_factory=dict)
    levels: List[Dict[str, float]] = field(default_factory=list)
    a_prime_raw: Optional[np.ndarray] = None
    b_raw: Optional[np.ndarray] = None
    confidence_sigma: float = 0.01
    working_nnf_ab: Optional[np.ndarray] = None
    working_nnf_ba: Optional[np.ndarray] = None

    def confidence(self, side: str = "ab", sigma: Optional[float] = None) -> np.ndarray:
        """Forward–backward consistency of the NNFs as float32 in [0, 1], computed on demand:
        side "ab" gives A's map (H_A×W_A), "ba" B′'s. 1 where the round trip through the other
        image comes back to the same pixel, falling as exp(−d²/2s²) with the miss d, s = sigma ×
        the long side (default: the config's confidence_sigma). Low values mark regions without a
        counterpart in the other image; nothing in the pipeline uses it."""
        if side not in ("ab", "ba"):
            raise ValueError(f"side must be 'ab' or 'ba', not {side!r}")
        forward, backward = (self.nnf_ab, self.nnf_ba) if side == "ab" else (self.nnf_ba, self.nnf_ab)
        sigma = self.confidence_sigma if sigma is None else sigma
        return consistency_confidence(torch.from_numpy(forward), torch.from_numpy(backward), sigma).numpy()


class _Clock:
    """Accumulates wall time per stage."""

    def __init__(self) -> None:
        self.totals: Dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[stage] = self.totals.get(stage, 0.0) + time.perf_counter() - start


def _resize(rgb: np.ndarray, shape: Shape) -> np.ndarray:
    from PIL import Image

    if rgb.shape[:2] == shape:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def run_analogy(
    image_a: np.ndarray,
    image_b: np.ndarray,
    config: AnalogyConfig,
    vgg: Optional[VGG19Features] = None,
    progress: Progress = None,
    on_search: SearchObserver = None,
    cache: Optional[FeatureCache] = None,
    keys: Tuple[Optional[tuple], Optional[tuple]] = (None, None),
) -> AnalogyResult:
    """Deep Image Analogy of A (structure) and B′ (appearance), both H×W×3 uint8 arrays.

    With a `cache`, the VGG maps of an image with a key in `keys` (for A, for B′) are taken from it,
    or computed once and stored there under (key, working size).
    """
    device = resolve_device(config.device)
    vgg = vgg if vgg is not None else load_vgg(config.weights, str(device))
    size_a, size_b = working_size(image_a.shape[:2], config), working_size(image_b.shape[:2], config)
    try:
        return _run(image_a, image_b, size_a, size_b, config, vgg, progress or (lambda _: None), on_search,
                    cache, keys)
    except Exception as exc:
        if isinstance(exc, OutOfMemoryError) or not _out_of_memory(exc, device):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        smaller = max(MIN_WORKING_SIDE, SIZE_MULTIPLE * int(0.7 * max(size_a + size_b) / SIZE_MULTIPLE))
        raise OutOfMemoryError(
            f"out of memory at working sizes {size_a[1]}×{size_a[0]} and {size_b[1]}×{size_b[0]} "
            f"({type(exc).__name__}); use a smaller --size (e.g. --size {smaller}) or --ratio"
        ) from None


def _features(vgg: VGG19Features, image: np.ndarray, size: Shape, cache: Optional[FeatureCache],
              key: Optional[tuple]) -> List[torch.Tensor]:
    def compute() -> List[torch.Tensor]:
        return vgg.extract(vgg.preprocess(_resize(image, size)))

    return compute() if cache is None or key is None else cache.get((key, size), compute)


def _run(image_a, image_b, size_a, size_b, config, vgg, progress, on_search=None, cache=None,
         keys=(None, None)) -> AnalogyResult:
    clock = _Clock()
    t_start = time.perf_counter()
    progress("extracting VGG19 features")
    with clock("features"):
        fa = _features(vgg, image_a, size_a, cache, keys[0])
        fb = _features(vgg, image_b, size_b, cache, keys[1])
    fa_prime: Dict[int, torch.Tensor] = {5: fa[5]}  # F_A′, A's structure with B′'s appearance
    fb_plain: Dict[int, torch.Tensor] = {5: fb[5]}  # F_B, B′'s structure with A's appearance
    nnf_ab = identity_nnf(level_shape(size_a, 5), level_shape(size_b, 5), fa[5].device)
    nnf_ba = identity_nnf(level_shape(size_b, 5), level_shape(size_a, 5), fa[5].device)
    levels = []
    for index, name in enumerate(LEVEL_NAMES):
        level = 5 - index
        k, radius = config.patch_sizes[index], config.radii[index]
        stats: Dict[str, float] = {"level": name}
        progress(f"{name}: PatchMatch")
        with clock("patchmatch"):
            side_a: SearchFeatures = prepare(fa[level], fa_prime[level])
            side_b: SearchFeatures = prepare(fb_plain[level], fb[level])
            for direction, (src, dst, init) in (("ab", (side_a, side_b, nnf_ab)), ("ba", (side_b, side_a, nnf_ba))):
                t0 = time.perf_counter()
                nnf, cost = patchmatch(
                    src, dst, init, k, config.iterations[index], radius, seed=config.seed + 7919 * level + (direction == "ba"),
                    band_height=config.band_height,
                )
                stats[f"patchmatch_{direction}_s"] = time.perf_counter() - t0
                stats[f"cost_{direction}"] = float(cost.mean())
                if on_search is not None:
                    on_search(name, direction, src, dst, init, radius, k, nnf)
                if direction == "ab":
                    nnf_ab = nnf
                else:
                    nnf_ba = nnf
        if level > 1:
            progress(f"{name} → {LEVEL_NAMES[index + 1]}: deconvolution and fusion")
            up_ab = upsample_nnf(nnf_ab, level_shape(size_b, level), level_shape(size_a, level - 1), level_shape(size_b, level - 1))
            up_ba = upsample_nnf(nnf_ba, level_shape(size_a, level), level_shape(size_b, level - 1), level_shape(size_a, level - 1))
            fa_prime[level - 1] = _next_level(vgg, config, clock, stats, "ab", level, k, fa, fb, nnf_ab)
            fb_plain[level - 1] = _next_level(vgg, config, clock, stats, "ba", level, k, fb, fa, nnf_ba)
            nnf_ab, nnf_ba = up_ab, up_ba
        levels.append(stats)
    progress("reconstructing A′ and B")
    with clock("reconstruction"):
        shape_a, shape_b = image_a.shape[:2], image_b.shape[:2]
        out_ab = output_nnf(nnf_ab, size_b, shape_a, shape_b)
        out_ba = output_nnf(nnf_ba, size_a, shape_b, shape_a)
        a_prime = reconstruct(image_b, out_ab, config.final_patch_size)
        b = reconstruct(image_a, out_ba, config.final_patch_size)
    a_prime_raw, b_raw = a_prime, b
    if config.photo:
        progress("refining A′ and B (photo mode)")
        with clock("refinement"):
            try:
                a_prime, b = refine_photos([(a_prime_raw, image_a), (b_raw, image_b)],
                                           config.wls_lambda, config.wls_alpha, config.wls_eps)
            except MemoryError:
                (ha, wa), (hb, wb) = image_a.shape[:2], image_b.shape[:2]
                raise OutOfMemoryError(
                    f"out of memory in the photo-mode refinement, which works at the inputs' sizes "
                    f"({wa}×{ha} and {wb}×{hb}); use smaller input images or leave out --photo"
                ) from None
    clock.totals["total"] = time.perf_counter() - t_start
    return AnalogyResult(
        a_prime, b, out_ab.cpu().numpy(), out_ba.cpu().numpy(), size_a, size_b, clock.totals, levels,
        a_prime_raw, b_raw, config.confidence_sigma, nnf_ab.cpu().numpy(), nnf_ba.cpu().numpy(),
    )


def _next_level(vgg, config, clock, stats, direction, level, k, struct, appear, nnf):
    """Features at level-1 for the unknown image on the `struct` side: A′ (direction "ab", struct
    = A, appearance from B′) or B ("ba", struct = B′, appearance from A).

    The appearance side's level-L map is warped by the NNF (patch voting), deconvolved to level
    L-1 starting from the structure image's own map `deconv_layers_down` levels below L, as the
    original does, and fused with the structure's own level L-1 map.
    """
    lower = level - config.deconv_layers_down
    with clock("deconvolution"):
        t0 = time.perf_counter()
        with torch.no_grad():
            target = vote(appear[level][0], nnf, k)[None]
        warped, info = deconvolve(
            vgg, level, target, struct[lower], config.deconv_layers_down, config.deconv_iterations,
            config.deconv_history, config.deconv_tolerance,
        )
        stats[f"deconv_{direction}_s"] = time.perf_counter() - t0
        stats[f"deconv_{direction}_loss"] = (info.initial_loss, info.final_loss)
    with clock("fusion"), torch.no_grad():
        alpha = config.alphas[5 - level]
        mask = response_mask(struct[level - 1], config.kappa, config.tau)
        return fuse(struct[level - 1], warped, alpha, mask)

"""The coarse-to-fine driver (the paper's Algorithm 1): VGG19 features of A and B′; then, from
relu5_1 down to relu1_1, one step per level: the NNF search both ways, and, above relu1_1, the next
level's features of A′ and B (warp, deconvolve, fuse) and the NNFs upsampled to start the next
search; finally A′ and B voted from the images at the inputs' resolution."""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, TypeVar

import numpy as np
import torch

from .config import LEVEL_NAMES, MIN_WORKING_SIDE, SIZE_MULTIPLE, AnalogyConfig, Level
from .deconvolution import deconvolve
from .errors import OutOfMemoryError, raise_if_interrupted
from .features import FeatureCache, VGG19Features, load_vgg
from .fusion import fuse, response_mask
from .kernels import Kernels, kernels_for, resolve_device
from .metrics import QualityScores, quality_scores
from .nnf import consistency_confidence, identity_nnf
from .patchmatch import SearchFeatures, prepare
from .refinement import refine_photos
from .synthesis import Scale, Synthesis, output_shape, scales
from .temporal import Continuity, NoContinuity

Shape = Tuple[int, int]
T = TypeVar("T")
Progress = Optional[Callable[[str], None]]


class Search(NamedTuple):
    """One search the pipeline ran, as given to an `on_search` observer (benchmarks judge it
    against the exact NNF of the same problem)."""

    level: Level
    direction: str  # "ab" (A → B′) or "ba" (B′ → A)
    source: SearchFeatures
    target: SearchFeatures
    start: torch.Tensor
    nnf: torch.Tensor
    cost: torch.Tensor


SearchObserver = Optional[Callable[[Search], None]]

#: Steps reported to a progress callback: features, one per level, reconstruction (then one per
#: scale of the synthesis, and the refinement in photo mode).
PROGRESS_STEPS = 1 + len(LEVEL_NAMES) + 1


class Plan(NamedTuple):
    """The sizes of one analogy: working sizes, output sizes and the synthesis's scales between."""

    working_a: Shape
    working_b: Shape
    output_a: Shape
    output_b: Shape
    scales: List[Scale]


def plan(shape_a: Shape, shape_b: Shape, config: AnalogyConfig) -> Plan:
    """The sizes at which A (of `shape_a`) and B′ (of `shape_b`) are analysed and synthesised."""
    working_a, working_b = working_size(shape_a, config), working_size(shape_b, config)
    output_a = output_shape(shape_a, working_a, config.output_size)
    output_b = output_shape(shape_b, working_b, config.output_size)
    return Plan(working_a, working_b, output_a, output_b,
                scales(working_a, output_a, working_b, output_b))


def progress_steps(config: AnalogyConfig, shape_a: Optional[Shape] = None,
                   shape_b: Optional[Shape] = None) -> int:
    """How many times run_analogy calls its progress callback with this config, for inputs of
    these (H, W) shapes (without them: at the working sizes, no synthesis scales)."""
    count = 0 if shape_a is None or shape_b is None else len(plan(shape_a, shape_b, config).scales)
    return PROGRESS_STEPS + count + (1 if config.photo else 0)


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


@dataclass
class AnalogyResult:
    """What one analogy produced. NNFs are int32 (H, W, 2) arrays of (y, x) at the inputs' sizes:
    nnf_ab[y, x] is where pixel (y, x) of A lies in B′, nnf_ba the same from B′ to A.

    In photo mode a_prime and b are the WLS-refined images and a_prime_raw, b_raw the voted ones
    before refinement; otherwise the raw ones are the same arrays as a_prime and b. working_nnf_ab
    and working_nnf_ba are the finest level's NNFs at the working sizes, before resampling;
    image_a and image_b the inputs A and B′ (for `quality`)."""

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
    image_a: Optional[np.ndarray] = None
    image_b: Optional[np.ndarray] = None

    def quality(self, vgg: Optional[VGG19Features] = None) -> QualityScores:
        """The result's quality scores (`analogy.metrics`): style of A′ and B, structure of A′ and
        B, computed on demand from A′, B and the inputs `image_a` (A) and `image_b` (B′)."""
        if self.image_a is None or self.image_b is None:
            raise ValueError("this result does not hold its inputs (image_a, image_b), which the "
                             "scores need")
        return quality_scores(self.a_prime, self.b, self.image_a, self.image_b, vgg)

    def confidence(self, side: str = "ab", sigma: Optional[float] = None) -> np.ndarray:
        """Forward–backward consistency of the NNFs as float32 in [0, 1], computed on demand:
        side "ab" gives A's map (H_A×W_A), "ba" B′'s. 1 where the round trip through the other
        image comes back to the same pixel, falling as exp(−d²/2s²) with the miss d, s = sigma ×
        the long side (default: the config's confidence_sigma). Low values mark regions without a
        counterpart in the other image; nothing in the pipeline uses it."""
        if side not in ("ab", "ba"):
            raise ValueError(f"side must be 'ab' or 'ba', not {side!r}")
        forward, backward = ((self.nnf_ab, self.nnf_ba) if side == "ab"
                             else (self.nnf_ba, self.nnf_ab))
        sigma = self.confidence_sigma if sigma is None else sigma
        return consistency_confidence(torch.from_numpy(forward), torch.from_numpy(backward),
                                      sigma).numpy()


class _Clock:
    """Wall time per stage (`totals`) and per level (`levels`, keyed by level name)."""

    def __init__(self) -> None:
        self.totals: Dict[str, float] = {}
        self.levels: Dict[str, Dict[str, object]] = {}

    @contextmanager
    def __call__(self, stage: str, level: Optional[str] = None,
                 key: Optional[str] = None) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.totals[stage] = self.totals.get(stage, 0.0) + elapsed
            if level is not None and key is not None:
                self.note(level, key, elapsed)

    def note(self, level: str, key: str, value: object) -> None:
        """Record a per-level figure (a time, a cost, a loss)."""
        self.levels.setdefault(level, {"level": level})[key] = value


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
    continuity: Optional[Continuity] = None,
) -> AnalogyResult:
    """Deep Image Analogy of A (structure) and B′ (appearance), both H×W×3 uint8 arrays.

    With a `cache`, the VGG maps of an image with a key in `keys` (for A, for B′) are taken from it,
    or computed once and stored there under (key, working size). With a `continuity` (a video
    frame, see analogy/temporal.py), the searches and deconvolutions start from the previous
    frame's where it holds one, and what this frame ends with is kept in `continuity.memory`.
    """
    device = resolve_device(config.device)
    kernels = kernels_for(device, config.band_height)
    vgg = vgg if vgg is not None else load_vgg(config.weights, str(device))
    sizes = plan(image_a.shape[:2], image_b.shape[:2], config)
    run = _Run(image_a, image_b, sizes, config, vgg, kernels, progress or (lambda _: None),
               continuity or NoContinuity())
    with kernels.deterministic(), torch.no_grad():
        state = _out_of_memory_said(lambda: run.analyse(on_search, cache, keys), kernels,
                                    lambda failure, free: _working_out_of_memory(sizes, failure,
                                                                                 free))
        return _out_of_memory_said(lambda: run.synthesise(state), kernels,
                                   lambda failure, free: _output_out_of_memory(sizes, failure,
                                                                               free, config.photo))


def _out_of_memory_said(work: Callable[[], T], kernels: Kernels,
                        message: Callable[[str, Optional[int]], str]) -> T:
    """`work()`; if the device runs out of memory there, an OutOfMemoryError with the line
    `message(failure, free bytes)` instead."""
    try:
        return work()
    except Exception as exc:
        if isinstance(exc, OutOfMemoryError) or not kernels.is_out_of_memory(exc):
            raise
        failure = type(exc).__name__
    # Out of the except block, what the failed work held is freed: what is free now is what
    # a run has.
    if kernels.device.type == "cuda":
        torch.cuda.empty_cache()
    raise OutOfMemoryError(message(failure, free_memory(kernels.device)))


def _working_out_of_memory(sizes: Plan, failure: str, free: Optional[int]) -> str:
    """The one line for an out-of-memory at the working sizes, with a --size that should fit."""
    (ha, wa), (hb, wb) = sizes.working_a, sizes.working_b
    side = None if free is None else size_that_fits(sizes.working_a, sizes.working_b, free)
    where = f"out of memory at working sizes {wa}×{ha} and {wb}×{hb} ({failure})"
    if free is None:
        return f"{where}; use a smaller --size or --ratio"
    if side is None:
        return (f"{where}; only {free / 1e9:.1f} GB is free here, too little even for the "
                "smallest working size: free some memory (close other programs)")
    return (f"{where}; use a smaller --size (--size {side} should fit in the {free / 1e9:.1f} GB "
            "free here) or --ratio")


def _output_out_of_memory(sizes: Plan, failure: str, free: Optional[int], photo: bool) -> str:
    """The one line for an out-of-memory above the working size: the output sizes that did not
    fit and an --output-size that should."""
    (ha, wa), (hb, wb) = sizes.output_a, sizes.output_b
    where = (f"out of memory making A′ and B at their output sizes {wa}×{ha} and {wb}×{hb} "
             f"({failure}{', photo mode' if photo else ''})")
    side = None if free is None else output_size_that_fits(sizes, free)
    if side is None:
        return f"{where}; use a smaller --output-size, or --output-size working"
    return (f"{where}; use --output-size {side} (it should fit in the {free / 1e9:.1f} GB free "
            "here), or --output-size working")


#: Memory the synthesis above the working size and the refinement need per output pixel (A′'s
#: and B's together) at their peak: about 90 bytes measured on the CPU (growth of the peak
#: address space at 2048 and 3136 px, photo mode), and half as much again for a heap that the
#: attempt which ran out left fragmented.
BYTES_PER_OUTPUT_PIXEL = 136


def output_size_that_fits(sizes: Plan, free: int) -> Optional[int]:
    """The largest --output-size (a long side, a multiple of 16) below the outputs' own at which
    A′ and B together should fit in `free` bytes (BYTES_PER_OUTPUT_PIXEL), if it is still above
    the working sizes; None otherwise."""
    shapes = (sizes.output_a, sizes.output_b)
    floor = max(sizes.working_a + sizes.working_b)
    side = SIZE_MULTIPLE * ((max(max(shape) for shape in shapes) - 1) // SIZE_MULTIPLE)
    while side > floor:
        pixels = sum(h * w * min(1.0, side / max(h, w)) ** 2 for h, w in shapes)
        if pixels * BYTES_PER_OUTPUT_PIXEL <= free:
            return side
        side -= SIZE_MULTIPLE
    return None


#: Memory an analogy needs per working pixel (A's and B′'s together) at its peak, with a margin:
#: about 3.6 KB measured on the CPU (peak resident memory at working sizes 192, 320 and 640).
BYTES_PER_WORKING_PIXEL = 4096


def free_memory(device: torch.device) -> Optional[int]:
    """Bytes an analogy could use now on `device`: the GPU's free memory; on the host, the memory
    available, or less where this process is held to less: by its address-space limit (ulimit -v)
    or by its control group's memory limit (a container's). None if it cannot be told."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    bounds = [_host_available(), _address_space_left(), _cgroup_memory_left()]
    known = [b for b in bounds if b is not None]
    return max(0, min(known)) if known else None


def _host_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> Optional[int]:
    """RLIMIT_AS less the address space in use; None without a limit (or off Linux)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return limit - int(line.split()[1]) * 1024
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_memory_left() -> Optional[int]:
    """The control group's memory limit less its usage (cgroup v2's memory.max and
    memory.current, or v1's limit_in_bytes and usage_in_bytes, where the group's files are
    mounted at its own path or at the root, as in a container); None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    groups = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path.lstrip("/")
    root = Path("/sys/fs/cgroup")
    for controller, folders, limit_name, usage_name in (
            ("", (root,), "memory.max", "memory.current"),
            ("memory", (root / "memory",), "memory.limit_in_bytes", "memory.usage_in_bytes")):
        if controller not in groups:
            continue
        for base in folders:
            for folder in (base / groups[controller], base):
                try:
                    limit = (folder / limit_name).read_text().strip()
                    usage = int((folder / usage_name).read_text())
                except (OSError, ValueError):
                    continue
                if limit == "max" or int(limit) >= 2**60:  # no limit ("max", or v1's huge one)
                    return None
                return int(limit) - usage
    return None


def size_that_fits(size_a: Shape, size_b: Shape, free: int) -> Optional[int]:
    """The largest working long side (a --size) below that of `size_a` and `size_b` at which A's and
    B′'s estimated memory (BYTES_PER_WORKING_PIXEL) fits in `free` bytes; None if none does."""
    long_side = max(size_a + size_b)
    # at --size S: this × S²
    pixels_per_side2 = sum(h * w / max(h, w) ** 2 for h, w in (size_a, size_b))
    fits = math.sqrt(free / (BYTES_PER_WORKING_PIXEL * pixels_per_side2))
    side = SIZE_MULTIPLE * int(min(fits, long_side - 1) / SIZE_MULTIPLE)
    return side if side >= MIN_WORKING_SIDE else None


def _features(vgg: VGG19Features, image: np.ndarray, size: Shape, cache: Optional[FeatureCache],
              key: Optional[tuple]) -> List[torch.Tensor]:
    def compute() -> List[torch.Tensor]:
        return vgg.extract(vgg.preprocess(_resize(image, size)))

    return compute() if cache is None or key is None else cache.get((key, size), compute)


def deconv_in_bfloat16(config: AnalogyConfig, kernels: Kernels) -> bool:
    """Whether the deconvolution's convolutions run in bfloat16 (see
    AnalogyConfig.deconv_precision)."""
    return config.deconv_precision == "bfloat16" or (config.deconv_precision == "auto"
                                                     and kernels.native_bfloat16)


@dataclass(frozen=True)
class LevelState:
    """What one level's step starts from: the features of the two unknown images at that level,
    F_A′ (A's structure, B′'s appearance) and F_B (B′'s structure, A's appearance), and the NNFs
    φ_a→b, φ_b→a the searches start from. At relu5_1, F_A′ = F_A, F_B = F_B′ and the NNFs are
    the identity; at the end of the last step, the NNFs are the final ones."""

    a_prime: torch.Tensor
    b: torch.Tensor
    nnf_ab: torch.Tensor
    nnf_ba: torch.Tensor


class _Pyramid:
    """The per-level step and its stages, on the known images' features `fa` (A) and `fb` (B′),
    lists indexed by VGG level (0 = the image, 1 … 5 = relu1_1 … relu5_1)."""

    def __init__(self, config: AnalogyConfig, vgg: VGG19Features, kernels: Kernels,
                 fa: List[torch.Tensor], fb: List[torch.Tensor], clock: _Clock,
                 on_search: SearchObserver, temporal: Continuity) -> None:
        self.config, self.vgg, self.kernels = config, vgg, kernels
        self.fa, self.fb = fa, fb
        self.clock, self.on_search, self.temporal = clock, on_search, temporal
        self.bfloat16 = deconv_in_bfloat16(config, kernels)

    def start(self, top: Level) -> LevelState:
        fa, fb = self.fa[top.layer], self.fb[top.layer]
        shape_a, shape_b = tuple(fa.shape[-2:]), tuple(fb.shape[-2:])
        return LevelState(fa, fb, identity_nnf(shape_a, shape_b, fa.device),
                          identity_nnf(shape_b, shape_a, fa.device))

    def step(self, level: Level, state: LevelState, below: Optional[Level]) -> LevelState:
        """The NNFs at `level` both ways, then (unless it is the finest) the state of `below`. (A
        video frame starts each search from the previous frame's NNF where it holds.)"""
        side_a = prepare(self.fa[level.layer], state.a_prime)  # [F_A, F_A′]
        side_b = prepare(state.b, self.fb[level.layer])  # [F_B, F_B′]
        nnf_ab = self.search(level, "ab", side_a, side_b,
                             self.temporal.nnf(level.name, "ab", state.nnf_ab, side_b.shape))
        nnf_ba = self.search(level, "ba", side_b, side_a,
                             self.temporal.nnf(level.name, "ba", state.nnf_ba, side_a.shape))
        self.temporal.keep_nnf(level.name, "ab", nnf_ab)
        self.temporal.keep_nnf(level.name, "ba", nnf_ba)
        if below is None:
            return LevelState(state.a_prime, state.b, nnf_ab, nnf_ba)
        return LevelState(
            a_prime=self.reconstruct(level, below, "ab", nnf_ab, structure=self.fa,
                                     appearance=self.fb),
            b=self.reconstruct(level, below, "ba", nnf_ba, structure=self.fb, appearance=self.fa),
            nnf_ab=self.resample(nnf_ab, self.fb[level.layer], self.fa[below.layer],
                                 self.fb[below.layer]),
            nnf_ba=self.resample(nnf_ba, self.fa[level.layer], self.fb[below.layer],
                                 self.fa[below.layer]),
        )

    def search(self, level: Level, direction: str, source: SearchFeatures, target: SearchFeatures,
               start: torch.Tensor) -> torch.Tensor:
        """PatchMatch from `source` to `target` starting at `start` (the NNF φ_a→b or φ_b→a)."""
        seed = level.seed + (direction == "ba")
        with self.clock("patchmatch", level.name, f"patchmatch_{direction}_s"):
            nnf, cost = self.kernels.search(source, target, start, level.patch_size,
                                            level.iterations, level.radius, seed)
        raise_if_interrupted()  # a signal that came while the kernels were loading
        self.clock.note(level.name, f"cost_{direction}", float(cost.mean()))
        if self.on_search is not None:
            self.on_search(Search(level, direction, source, target, start, nnf, cost))
        return nnf

    def reconstruct(self, level: Level, below: Level, direction: str, nnf: torch.Tensor,
                    structure: List[torch.Tensor], appearance: List[torch.Tensor]) -> torch.Tensor:
        """The unknown image's features at `below`: A′'s (direction "ab", structure A, appearance
        B′) or B's ("ba", structure B′, appearance A).

        The appearance image's map at `level` is warped by the NNF (patch voting), deconvolved to
        `below` from `level.deconv_layers_down` levels below `level` (two in the original), and
        fused with the structure image's own map at `below`.
        """
        config = self.config
        with self.clock("deconvolution", level.name, f"deconv_{direction}_s"):
            warped = self.kernels.vote(appearance[level.layer][0], nnf, level.patch_size)[None]
            start = self.temporal.variable(level.name, direction,
                                           self.deconv_start(level, nnf, structure, appearance))
            deconvolved, info = deconvolve(
                self.vgg, level.layer, warped, start, level.deconv_layers_down,
                level.deconv_iterations, config.deconv_history, config.deconv_tolerance,
                config.deconv_gradient_tolerance, self.bfloat16, self.kernels.dot,
            )
        raise_if_interrupted()
        self.temporal.keep_variable(level.name, direction, info.variable)
        self.clock.note(level.name, f"deconv_{direction}_loss",
                        (info.initial_loss, info.final_loss))
        self.clock.note(level.name, f"deconv_{direction}_evaluations", info.evaluations)
        with self.clock("fusion"):
            own = structure[below.layer]
            return fuse(own, deconvolved, below.alpha, response_mask(own, config.kappa, config.tau))

    def deconv_start(self, level: Level, nnf: torch.Tensor, structure: List[torch.Tensor],
                     appearance: List[torch.Tensor]) -> torch.Tensor:
        """Where the deconvolution's variable starts, `deconv_layers_down` levels below `level`:
        the structure image's own map there, or (deconv_start "voted") the appearance image's
        map there voted through the NNF resampled to that level's grid."""
        lower = level.layer - level.deconv_layers_down
        if self.config.deconv_start == "structure":
            return structure[lower]
        resampled = self.resample(nnf, appearance[level.layer], structure[lower], appearance[lower])
        return self.kernels.vote(appearance[lower][0], resampled, level.patch_size)[None]

    def resample(self, nnf: torch.Tensor, target: torch.Tensor, source_below: torch.Tensor,
                 target_below: torch.Tensor) -> torch.Tensor:
        """An NNF into `target`'s map, taken to the maps of a lower level (one level down: sizes
        ×2)."""
        return self.kernels.resample_nnf(nnf, tuple(target.shape[-2:]),
                                         tuple(source_below.shape[-2:]),
                                         tuple(target_below.shape[-2:]))


class _Run:
    """One analogy's stages, in the order `run_analogy` calls them: `analyse` (the VGG pyramid, at
    the working sizes) and then `synthesise` (the scales above them, the final vote and the
    photo-mode refinement, at the output sizes), so that running out of memory in either is told
    apart."""

    def __init__(self, image_a: np.ndarray, image_b: np.ndarray, sizes: Plan,
                 config: AnalogyConfig, vgg: VGG19Features, kernels: Kernels,
                 progress: Callable[[str], None], temporal: Continuity) -> None:
        self.image_a, self.image_b, self.sizes = image_a, image_b, sizes
        self.config, self.vgg, self.kernels, self.progress = config, vgg, kernels, progress
        self.temporal = temporal
        self.clock = _Clock()
        self.started = time.perf_counter()

    def stage(self, name: str) -> None:
        raise_if_interrupted()  # a signal whose interruption was lost on the way (see errors.py)
        self.progress(name)

    def analyse(self, on_search: SearchObserver = None, cache: Optional[FeatureCache] = None,
                keys: Tuple[Optional[tuple], Optional[tuple]] = (None, None)) -> LevelState:
        """The paper's pyramid, relu5_1 to relu1_1: the last level's state, with the finest NNFs
        at the working sizes."""
        clock, sizes = self.clock, self.sizes
        self.stage("extracting VGG19 features")
        with clock("features"):
            fa = _features(self.vgg, self.image_a, sizes.working_a, cache, keys[0])
            fb = _features(self.vgg, self.image_b, sizes.working_b, cache, keys[1])
        pyramid = _Pyramid(self.config, self.vgg, self.kernels, fa, fb, clock, on_search,
                           self.temporal)
        levels = self.config.levels(warm=self.temporal.warm)
        state = pyramid.start(levels[0])
        for level, below in zip(levels, levels[1:] + (None,)):
            self.stage(f"{level.name}: PatchMatch"
                       + (f", deconvolution to {below.name}" if below else ""))
            state = pyramid.step(level, state, below)
        return state

    def coarse_cost(self) -> float:
        """The mean patch cost of the two relu5_1 searches."""
        top = self.clock.levels[LEVEL_NAMES[0]]
        return (top["cost_ab"] + top["cost_ba"]) / 2.0

    def synthesise(self, state: LevelState) -> AnalogyResult:
        """From the working NNFs up to the output sizes, then A′ and B voted there (and refined
        in photo mode)."""
        config, kernels, clock, sizes = self.config, self.kernels, self.clock, self.sizes
        image_a, image_b = self.image_a, self.image_b
        synthesis = Synthesis(config, kernels, _resize, image_a, image_b,
                              Scale(sizes.working_a, sizes.working_b),
                              Scale(sizes.output_a, sizes.output_b), state.nnf_ab, state.nnf_ba,
                              self.coarse_cost(), self.temporal)
        for index, ((ha, wa), (hb, wb)) in enumerate(synthesis.scales):
            self.stage(f"scale {index + 1}/{len(synthesis.scales)}: A′ {wa}×{ha}, B {wb}×{hb}: "
                       "voting and PatchMatch")
            with clock("synthesis"):
                synthesis.step(index)
        self.stage("reconstructing A′ and B")
        with clock("reconstruction"):
            a_prime, b, out_ab, out_ba = synthesis.outputs()
            structure_a = _resize(image_a, sizes.output_a)
            structure_b = _resize(image_b, sizes.output_b)
        a_prime_raw, b_raw = a_prime, b
        if config.photo:
            self.stage("refining A′ and B (photo mode)")
            with clock("refinement"):
                a_prime, b = refine_photos([(a_prime_raw, structure_a), (b_raw, structure_b)],
                                           config.wls_lambda, config.wls_alpha, config.wls_eps)
        clock.totals["total"] = time.perf_counter() - self.started
        raise_if_interrupted()
        return AnalogyResult(
            a_prime, b, out_ab.cpu().numpy(), out_ba.cpu().numpy(), sizes.working_a,
            sizes.working_b, clock.totals,
            [clock.levels[level.name] for level in config.levels()], a_prime_raw, b_raw,
            config.confidence_sigma, state.nnf_ab.cpu().numpy(), state.nnf_ba.cpu().numpy(),
            image_a, image_b,
        )

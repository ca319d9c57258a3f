"""Benchmark of the analogy pipeline: time per stage, peak memory, NNF quality and kernel speed.

  python benchmarks/bench.py                        # photo→painting pair, working sizes 112 224 448
  python benchmarks/bench.py --pair face --sizes 224 --json bench.json
  python benchmarks/bench.py --pair painting face sketch --sizes 224 --skip-quality --skip-identity
  python benchmarks/bench.py --pair my_a.png my_b.png --device cuda
  python benchmarks/bench.py --sizes 224 --set deconv_iterations=25   # a lever, measured
  python benchmarks/bench.py --sizes 224 --against deconv_iterations=25
                                                    # beside another setting, in the same run
                                                    # (by default: beside the previous default)
  python benchmarks/bench.py --sizes 224 --threads 1 2 --skip-quality --skip-identity
  python benchmarks/bench.py --batch --sizes 224    # local worker processes against Ray workers
  python benchmarks/bench.py --manifest --sizes 224 --skip-quality --skip-identity
                                                    # the 13 development pairs
  python benchmarks/bench.py --large                # the 12-MP case: full-resolution output
  python benchmarks/bench.py --video                # the video case: flicker and time per frame

For each working size S, both inputs are first resized to S·2 × S·2 (so S = 224 is exactly the
448×448-pair-at-ratio-0.5 case; `--keep-aspect` keeps their shapes, long side 2·S instead) and
the analogy runs at working long side S. A warm-up run at the smallest size comes first, so
Numba compilation and allocator warm-up are not counted.

`--large` measures instead the 12-MP case of the full-resolution synthesis: the photo
carcassonne_photo.png (4096×3072) with The Starry Night (3008×2400), both enlarged ×4 (Lanczos)
from ../shared/images, at the default settings with the outputs at the inputs' sizes and at the
working size (the ratio of the two wall times), and the same photo with eilean_donan.png ×4
(2720×1812) in photo mode: time per stage, peak RSS, block seams and fine detail of A′ and B.

`--video` measures the video case: a 12-frame 256×192 camera pan moving 3 px a frame across
examples/skyline.jpg, styled as The Starry Night, made one frame at a time with `analogy`, with
each part of the warm start (VIDEO_ROWS) and as a video (`analogy.video`), same seed: the
temporal error (mean |O_t − O_{t−1} moved by the pan| on the overlap), the time per frame after
the first, and the frames' mean style and structure scores, with the ratios to one by one. With
`--manifest`, the same for a pan over each pair's A in its B′'s look (one by one and as a video).

Printed and written to JSON per size:
  * quality scores of the result (analogy.metrics): style CX(A′, B′), CX(B, A) and structure;
  * wall time end to end and per stage: features, PatchMatch per level and direction,
    deconvolution per level (both directions), fusion, reconstruction;
  * peak process RSS during the run (sampled every 5 ms from /proc) and peak GPU memory on CUDA;
  * NNF quality: mean cost of the PatchMatch NNF over mean cost of the global exact NNF of the
    same features, at relu5_1 (search from the identity), relu4_1 and relu3_1 (search from the
    upsampled NNF; nothing bounds it, so the global optimum is what it aims at);
  * blockiness: gridness of the finest A→B′ and B′→A NNFs (discontinuity rate on the relu5_1 grid
    lines over the rate elsewhere; 1.0 = no preference for the coarse grid) and their overall
    discontinuity rate (analogy.nnf.gridness);
  * identity PSNR: the analogy of A with itself, A′ and B against A, in dB;
  * PatchMatch kernel throughput in patch-distance evaluations per second, and the useful
    arithmetic rate 2·C·k²·evaluations/s next to the GFLOP/s of torch's own 3×3 convolution on
    the same machine in the same run.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analogy  # noqa: E402
from analogy.executor_base import set_threads  # noqa: E402
from analogy.features import load_vgg  # noqa: E402
from analogy.kernels import kernels_for, resolve_device  # noqa: E402
from analogy.kernels.cpu import CpuKernels  # noqa: E402
from analogy.metrics import quality_scores  # noqa: E402
from analogy.nnf import gridness  # noqa: E402
from analogy.patchmatch import exact_nnf  # noqa: E402
from analogy.pipeline import Search, deconv_in_bfloat16, run_analogy  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
PAIRS = {
    "painting": ("skyline-sf-dusk-back.jpeg", "starry_night.jpg"),
    "face": ("astronaut.png", "grace_hopper.jpg"),
    "sketch": ("carcassonne_sketch.png", "carcassonne_photo.png"),
}
QUALITY_LEVELS = ("relu5_1", "relu4_1", "relu3_1")
#: The default deconvolution before issue 31 (README, Performance), which `--against` measures
#: each run beside unless told otherwise.
PREVIOUS_DEFAULT = ["deconv_iterations=(10,10,50,50)", "deconv_layers_down=2"]
#: The development pairs: a manifest `analogy batch` reads, with the kind of each pair and the
#: blend level the original recommends for it.
MANIFEST = SHARED / "pairs.csv"


class ManifestPair(NamedTuple):
    """One pair of a manifest: its name (the output column), image paths, kind and blend level."""

    name: str
    a: str
    b_prime: str
    kind: str = ""
    blend_level: Optional[int] = None


def read_manifest(path: Path) -> List[ManifestPair]:
    """The pairs of a manifest (columns A, B′, output, and optionally kind and blend_level), image
    paths relative to the manifest's folder."""
    if not path.is_file():
        raise SystemExit(f"manifest {path} not found (the development pairs live in "
                         "../shared/images)")
    pairs = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            b_prime = row.get("B′") or row.get("B'") or row["Bprime"]
            level = row.get("blend_level")
            pairs.append(ManifestPair(row["output"], str(path.parent / row["A"]),
                                      str(path.parent / b_prime), row.get("kind", ""),
                                      int(level) if level else None))
    return pairs


class PeakRSS:
    """Samples the process's resident set size in a thread; `peak` is the largest seen (bytes)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:  # not Linux: the lifetime peak is the best there is
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def load_pair(a: str, b: str) -> Tuple[np.ndarray, np.ndarray]:
    def find(name: str) -> Path:
        for candidate in (Path(name), SHARED / name, ROOT / "examples" / name):
            if candidate.exists():
                return candidate
        raise SystemExit(f"image {name} not found (looked in ., {SHARED}, examples/)")

    return analogy.load_image(find(a)), analogy.load_image(find(b))


def resize_input(rgb: np.ndarray, size: int, keep_aspect: bool) -> np.ndarray:
    """The benchmark's input for working size `size`: 2·size square, or long side 2·size."""
    h, w = rgb.shape[:2]
    if keep_aspect:
        scale = 2 * size / max(h, w)
        shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    else:
        shape = (2 * size, 2 * size)
    return np.asarray(Image.fromarray(rgb).resize(shape, Image.Resampling.LANCZOS))


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def conv_gflops(device: torch.device, repeats: int = 5, bfloat16: bool = False) -> float:
    """GFLOP/s of torch's 3×3 convolution at a relu3_1-like shape (256→256 channels, 56×56), in
    float32 or, with `bfloat16`, as the deconvolution runs it then (bfloat16, channels-last)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device)
    x = torch.randn(1, 256, 56, 56, device=device)
    if bfloat16:
        conv = conv.to(torch.bfloat16, memory_format=torch.channels_last)
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    flops = 2 * 256 * 256 * 9 * 56 * 56
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return flops / min(times[1:]) / 1e9


def deconv_flops(vgg, level: int, layers_down: int, working: Tuple[int, int],
                 evaluations: int) -> float:
    """Convolution FLOPs of one deconvolution from `level` (a working image of size `working`):
    every evaluation of the loss is a forward pass of the sub-network and a backward pass for the
    input's gradient (as many FLOPs again; no weight gradients), plus one last forward pass of the
    layers below relu(level-1)_1 when the variable sits two levels down."""
    lower = level - layers_down
    scale = 2 ** max(lower - 1, 0)
    h, w = working[0] // scale, working[1] // scale

    def forward(modules) -> float:
        nonlocal h, w
        total = 0.0
        for m in modules:
            if isinstance(m, torch.nn.Conv2d):
                total += (2.0 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                          * h * w)
            elif isinstance(m, torch.nn.MaxPool2d):
                h, w = h // 2, w // 2
        return total

    below = forward(vgg.sub_network(lower, level - 1)) if layers_down == 2 else 0.0
    upper = forward(vgg.sub_network(level - 1, level))
    return evaluations * 2.0 * (below + upper) + below


class SearchRecorder:
    """Keeps the search problems the pipeline solved at the levels whose quality is judged."""

    def __init__(self) -> None:
        self.problems: Dict[Tuple[str, str], tuple] = {}

    def __call__(self, search: Search) -> None:
        if search.level.name in QUALITY_LEVELS:
            self.problems[(search.level.name, search.direction)] = (
                search.source, search.target, search.start.clone(), search.level.radius,
                search.level.patch_size, search.nnf.clone())


def nnf_quality(recorder: SearchRecorder) -> Dict[str, float]:
    """Mean PatchMatch cost over mean global exact cost of the same features, per level (both
    directions together)."""
    out: Dict[str, float] = {}
    for level in QUALITY_LEVELS:
        pm = exact = 0.0
        for direction in ("ab", "ba"):
            src, dst, _, _, k, nnf = recorder.problems[(level, direction)]
            src, dst = _to_cpu(src), _to_cpu(dst)
            pm += float(CpuKernels().cost(src, dst, nnf.cpu(), k).mean())
            exact += float(exact_nnf(src, dst, k)[1].mean())
        out[level] = pm / exact
    return out


def _to_cpu(side):
    return type(side)(*(t.cpu() for t in side))


def kernel_throughput(recorder: SearchRecorder, iterations: int = 10,
                      seed: int = 0) -> Dict[str, float]:
    """Patch-distance evaluations per second of the PatchMatch search, on relu3_1 A→B′.

    The search is rerun from the recorded start (its result is discarded) counting the candidates
    it evaluates; the full-distance rate comes from scoring a whole NNF (no early exit). Both
    take the fastest of five runs, as conv_gflops does.
    """
    src, dst, start, radius, k, nnf = recorder.problems[("relu3_1", "ab")]
    kernels = kernels_for(src.features.device)
    channels = src.features.shape[-1]
    # Best of `repeats` runs, as for the convolution: the search is deterministic, so every run
    # evaluates the same candidates, and the fastest run is the least disturbed by the machine.
    repeats = 5
    search_time, full_time = math.inf, math.inf

    def sync() -> None:
        if src.features.is_cuda:
            torch.cuda.synchronize()

    for _ in range(repeats):
        evaluations = torch.zeros(src.shape[0], dtype=torch.int64, device=src.features.device)
        sync()
        t0 = time.perf_counter()
        kernels.search(src, dst, start, k, iterations, radius, seed=seed, evaluations=evaluations)
        sync()
        search_time = min(search_time, time.perf_counter() - t0)
        t0 = time.perf_counter()
        kernels.cost(src, dst, nnf, k)
        sync()
        full_time = min(full_time, time.perf_counter() - t0)
    search_rate = float(evaluations.sum()) / search_time
    full_rate = nnf.shape[0] * nnf.shape[1] / full_time
    flops_per_eval = 2 * channels * k * k
    return {
        "channels": channels, "patch": k,
        "search_evals_per_s": search_rate, "search_gflops": search_rate * flops_per_eval / 1e9,
        "full_evals_per_s": full_rate, "full_gflops": full_rate * flops_per_eval / 1e9,
    }


def parse_set(items: Optional[List[str]]) -> Dict[str, object]:
    """`--set FIELD=VALUE …` as AnalogyConfig fields, each value a Python literal where it is one
    (`deconv_iterations=25`, `iterations=(10, 10, 10, 5, 5)`), else the string."""
    options = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def settle(config: analogy.AnalogyConfig, preview: bool,
           options: Dict[str, object]) -> analogy.AnalogyConfig:
    """`config` as --preview (when given) and then --set's `options` change it."""
    return (config.as_preview() if preview else config).replace(**options)


def make_config(args, size: int, device: torch.device) -> analogy.AnalogyConfig:
    """The configuration a run at working size `size` measures."""
    config = analogy.AnalogyConfig(size=size, seed=args.seed, weights=args.weights,
                                   device=str(device))
    return settle(config, args.preview, parse_set(args.set))


def against_config(args, size: int, device: torch.device) -> analogy.AnalogyConfig:
    """The configuration `--against` compares with: the measured one with its fields changed."""
    return make_config(args, size, device).replace(**parse_set(args.against))


def run_size(vgg, a: np.ndarray, b: np.ndarray, size: int, args, device: torch.device,
             config: Optional[analogy.AnalogyConfig] = None) -> Dict:
    config = config or make_config(args, size, device)
    ia, ib = resize_input(a, size, args.keep_aspect), resize_input(b, size, args.keep_aspect)
    recorder = SearchRecorder()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        result = run_analogy(ia, ib, config, vgg, on_search=recorder)
        wall = time.perf_counter() - t0
    row: Dict = {
        "size": size, "input_a": list(ia.shape[:2]), "input_b": list(ib.shape[:2]),
        "working_a": list(result.working_size_a), "working_b": list(result.working_size_b),
        "wall_s": wall, "stages_s": {k: v for k, v in result.timings.items() if k != "total"},
        "peak_rss_mb": rss.peak / 2**20,
        "levels": [
            {k: v for k, v in lv.items() if k == "level" or k.endswith("_s")
             or k.startswith("deconv_")}
            for lv in result.levels
        ],
    }
    if device.type == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    row["quality"] = quality_scores(result.a_prime, result.b, ia, ib).as_dict()
    flops = 0.0
    for lv, level in zip(result.levels, config.levels()[:-1]):
        for direction, working in (("ab", result.working_size_a), ("ba", result.working_size_b)):
            flops += deconv_flops(vgg, level.layer, level.deconv_layers_down, working,
                                  lv[f"deconv_{direction}_evaluations"])
    row["deconv_precision"] = ("bfloat16" if deconv_in_bfloat16(config, kernels_for(device))
                               else "float32")
    row["deconv_gflop"] = flops / 1e9
    row["deconv_gflops"] = flops / 1e9 / result.timings["deconvolution"]
    for direction in ("ab", "ba"):
        g, rate = gridness(torch.from_numpy(getattr(result, f"working_nnf_{direction}")))
        row[f"gridness_{direction}"], row[f"discontinuity_rate_{direction}"] = g, rate
    if not args.skip_quality:
        row["nnf_quality"] = nnf_quality(recorder)
        if device.type == "cpu":
            row["kernel"] = kernel_throughput(recorder, config.iterations[2], args.seed)
    if not args.skip_identity:
        same = run_analogy(ia, ia, config, vgg)
        row["identity_psnr_db"] = {"a_prime": psnr(same.a_prime, ia), "b": psnr(same.b, ia)}
    return row


def print_row(row: Dict, conv: float) -> None:
    s = row["stages_s"]
    (ha, wa), (hb, wb) = row["working_a"], row["working_b"]
    print(f"\n== working size {row['size']}: A {wa}×{ha}, B′ {wb}×{hb} (inputs "
          f"{row['input_a'][1]}×{row['input_a'][0]}, {row['input_b'][1]}×{row['input_b'][0]})")
    print(f"   end to end {row['wall_s']:.2f} s | "
          + " | ".join(f"{k} {v:.2f}" for k, v in s.items()))
    mem = f"   peak RSS {row['peak_rss_mb']:.0f} MB"
    if "peak_gpu_mb" in row:
        mem += f", peak GPU {row['peak_gpu_mb']:.0f} MB"
    print(mem)
    q = row["quality"]
    print(f"   quality: style A′ {q['style_a_prime']:.3f}, B {q['style_b']:.3f} (CX, higher is "
          f"better); structure A′ {q['structure_a_prime']:.3f}, B {q['structure_b']:.3f} "
          "(lower keeps more layout)")
    limit = conv[row["deconv_precision"]]
    print(f"   deconvolution in {row['deconv_precision']}: {row['deconv_gflop']:.0f} GFLOP of "
          f"convolution at {row['deconv_gflops']:.0f} GFLOP/s ({row['deconv_gflops'] / limit:.0%} "
          f"of torch's {row['deconv_precision']} convolution, {limit:.0f} GFLOP/s, in this run)")
    print("   level     PM a→b   PM b→a   deconv (both)  evaluations  relative error a→b, b→a "
          "(start → end)")
    for lv in row["levels"]:
        deconv = lv.get("deconv_ab_s", 0.0) + lv.get("deconv_ba_s", 0.0)
        line = (f"   {lv['level']:8s} "
                f"{lv['patchmatch_ab_s']:7.3f}  {lv['patchmatch_ba_s']:7.3f}  {deconv:8.3f}")
        if "deconv_ab_loss" in lv:
            (a0, a1), (b0, b1) = lv["deconv_ab_loss"], lv["deconv_ba_loss"]
            line += (f"       {lv['deconv_ab_evaluations']:3d} {lv['deconv_ba_evaluations']:3d}    "
                     f"{a0:.3f} → {a1:.3f}, {b0:.3f} → {b1:.3f}")
        print(line)
    print(f"   gridness a→b {row['gridness_ab']:.2f}, b→a {row['gridness_ba']:.2f}; discontinuity "
          f"rate a→b {row['discontinuity_rate_ab']:.3f}, b→a {row['discontinuity_rate_ba']:.3f}")
    if "nnf_quality" in row:
        print("   NNF quality (PatchMatch/global exact mean cost): "
              + ", ".join(f"{lvl} {v:.4f}" for lvl, v in row["nnf_quality"].items()))
    if "kernel" in row:
        kr = row["kernel"]
        print(f"   PatchMatch kernel (relu3_1, C={kr['channels']}, k={kr['patch']}): search "
              f"{kr['search_evals_per_s'] / 1e6:.2f} M evals/s = {kr['search_gflops']:.1f} GFLOP/s "
              f"({kr['search_gflops'] / conv['float32']:.0%} of float32 conv); full distances "
              f"{kr['full_evals_per_s'] / 1e6:.2f} M/s = {kr['full_gflops']:.1f} GFLOP/s "
              f"({kr['full_gflops'] / conv['float32']:.0%} of float32 conv)")
    if "identity_psnr_db" in row:
        p = row["identity_psnr_db"]
        print(f"   identity PSNR: A′ {p['a_prime']:.2f} dB, B {p['b']:.2f} dB")


def batch_figures(size: int, count: int = 6, jobs: int = 2) -> Dict[str, float]:
    """Wall time of a batch of `count` pairs (crops of the example images × The Starry Night, at
    working size `size`) with `jobs` local worker processes and with `jobs` Ray workers on a local
    Ray, whose start-up is timed apart; the same bytes are checked."""
    import tempfile

    import ray

    examples = ROOT / "examples"
    sources = [np.asarray(Image.open(examples / n).convert("RGB"))
               for n in ("skyline.jpg", "astronaut.jpg", "grace_hopper.jpg")]
    figures: Dict[str, float] = {"pairs": count, "jobs": jobs, "size": size}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "content"
        folder.mkdir()
        for i in range(count):
            rgb = sources[i % len(sources)]
            h, w = rgb.shape[:2]
            Image.fromarray(rgb[: h - 16 * (i // len(sources)),
                                : w - 16 * (i // len(sources))]).save(folder / f"c{i}.png")
        config = analogy.AnalogyConfig(size=size)
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        figures["ray_startup_s"] = time.perf_counter() - t0
        try:
            for executor in ("local", "ray"):
                pairs = analogy.pairs_from_lists([folder], [examples / "starry_night.jpg"],
                                                 Path(tmp) / executor)
                t0 = time.perf_counter()
                outcomes = list(analogy.batch(pairs, config, jobs=jobs, executor=executor))
                figures[f"{executor}_s"] = time.perf_counter() - t0
                assert all(o.status == "done" for o in outcomes), [o.error for o in outcomes]
        finally:
            ray.shutdown()
        same = all((Path(tmp) / "local" / p.name / n).read_bytes()
                   == (Path(tmp) / "ray" / p.name / n).read_bytes()
                   for p in pairs for n in ("A_prime.png", "B.png", "analogy.json"))
    figures["ray_overhead_per_pair_s"] = (figures["ray_s"] - figures["local_s"]) / count
    print(f"batch of {count} pairs at size {size}, {jobs} workers: local processes "
          f"{figures['local_s']:.1f} s, Ray {figures['ray_s']:.1f} s "
          f"(+{figures['ray_overhead_per_pair_s']:.2f} s per pair; Ray's start-up "
          f"{figures['ray_startup_s']:.1f} s more); same bytes: {same}")
    return figures


LARGE_PAIRS = (("carcassonne_photo.png", "starry_night.jpg", False),
               ("carcassonne_photo.png", "eilean_donan.png", True))


def large_figures(vgg, device: torch.device, seed: int) -> List[Dict]:
    """The 12-MP case (module docstring): one row per run, with its time per stage, peak RSS,
    block seams along the working grid and fine detail (analogy.metrics) of A′ and B."""
    from analogy.metrics import block_seams, fine_detail

    def enlarge(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        return np.asarray(Image.fromarray(rgb).resize((4 * w, 4 * h), Image.Resampling.LANCZOS))

    rows = []
    for a_name, b_name, photo in LARGE_PAIRS:
        a, b = (enlarge(x) for x in load_pair(a_name, b_name))
        for output_size in (("input",) if photo else ("input", "working")):
            config = analogy.AnalogyConfig(seed=seed, device=str(device), photo=photo,
                                           blend_level=3 if photo else 2, output_size=output_size)
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                result = run_analogy(a, b, config, vgg)
                wall = time.perf_counter() - t0
            row = {"a": a_name, "b_prime": b_name, "photo": photo, "output_size": output_size,
                   "input_a": list(a.shape[:2]), "input_b": list(b.shape[:2]),
                   "output_a": list(result.a_prime.shape[:2]), "output_b": list(result.b.shape[:2]),
                   "working_a": list(result.working_size_a),
                   "working_b": list(result.working_size_b),
                   "wall_s": wall, "peak_rss_mb": rss.peak / 2**20,
                   "stages_s": {k: v for k, v in result.timings.items() if k != "total"}}
            (ha, wa), (hb, wb) = row["output_a"], row["output_b"]
            print(f"\n== {a_name} ×4 → {b_name} ×4{' (photo mode)' if photo else ''}, "
                  f"--output-size {output_size}: A′ {wa}×{ha}, B {wb}×{hb}")
            print(f"   end to end {wall:.1f} s | "
                  + " | ".join(f"{k} {v:.1f}" for k, v in row["stages_s"].items()))
            line = f"   peak RSS {row['peak_rss_mb']:.0f} MB"
            if output_size != "working":  # at the working size a cell is one pixel
                seams = row["block_seams"] = {
                    "a_prime": block_seams(result.a_prime, result.working_size_a),
                    "b": block_seams(result.b, result.working_size_b)}
                detail = row["fine_detail"] = {
                    "a_prime": fine_detail(result.a_prime), "b": fine_detail(result.b),
                    "a": fine_detail(a), "b_prime": fine_detail(b)}
                line += (f"; block seams A′ {seams['a_prime']:.3f}, B {seams['b']:.3f}; fine "
                         f"detail A′ {detail['a_prime'] / detail['b_prime']:.2f} of B′'s, B "
                         f"{detail['b'] / detail['a']:.2f} of A's")
            print(line)
            rows.append(row)
    full, working = rows[0]["wall_s"], rows[1]["wall_s"]
    print(f"\nfull resolution takes {full / working:.2f}× the time at --output-size working "
          f"({full:.1f} against {working:.1f} s)")
    return rows


def pan(photo: np.ndarray, count: int, shape: Tuple[int, int], step: int) -> List[np.ndarray]:
    """`count` frames of a camera pan of `shape` moving `step` px a frame to the right across
    `photo` (enlarged, Lanczos, as needed): frame t shows at (y, x) what t − 1 showed at
    (y, x + step)."""
    h, w = shape
    scale = max(h / photo.shape[0], (w + step * (count - 1)) / photo.shape[1])
    size = (int(np.ceil(photo.shape[1] * scale)), int(np.ceil(photo.shape[0] * scale)))
    big = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))
    top = (big.shape[0] - h) // 2
    return [np.ascontiguousarray(big[top:top + h, step * t:step * t + w]) for t in range(count)]


def temporal_error(frames: List[np.ndarray], step: int) -> float:
    """Mean |O_t − O_{t−1} moved by the pan| on the overlap of consecutive frames (0–255)."""
    return float(np.mean([np.abs(b[:, :-step].astype(float) - a[:, step:].astype(float)).mean()
                          for a, b in zip(frames, frames[1:])]))


#: The video case's rows: how each frame after the first starts. "one by one": as a single image
#: (`analogy` per frame); the others with analogy.video: "carried NNFs" (the NNFs carried along
#: the flow, the deconvolutions from the single image's start, the full iterations), "+ carried
#: deconvolutions" (their variables carried too, full iterations) and "video" (both, with the
#: fewer iterations of a warm frame: the default).
VIDEO_ROWS = ("one by one", "carried NNFs", "+ carried deconvolutions", "video")


def video_frames(vgg, frames: List[np.ndarray], style: np.ndarray, config, row: str
                 ) -> Tuple[List[np.ndarray], List[float]]:
    """The frames made as `row` of VIDEO_ROWS says, and the seconds each took."""
    from analogy import temporal
    from analogy.video import VideoAnalogy

    if row in ("carried NNFs", "+ carried deconvolutions"):  # a warm frame's full iterations
        config = config.replace(video_iterations=config.iterations[0],
                                video_deconv_iterations=config.deconv_iterations,
                                video_synthesis_rounds=config.synthesis_rounds)
    stylise = VideoAnalogy(style, config, vgg)
    carry_variable = temporal.Continuity.variable
    if row == "carried NNFs":
        temporal.Continuity.variable = lambda self, key, direction, fresh: fresh
    outputs, seconds = [], []
    try:
        for frame in frames:
            t0 = time.perf_counter()
            outputs.append(run_analogy(frame, stylise.style, config, vgg).a_prime
                           if row == "one by one" else stylise(frame))
            seconds.append(time.perf_counter() - t0)
    finally:
        temporal.Continuity.variable = carry_variable
    return outputs, seconds


def video_figures(vgg, device: torch.device, seed: int, photo: Optional[np.ndarray] = None,
                  style: Optional[np.ndarray] = None, rows=VIDEO_ROWS, count: int = 12,
                  shape: Tuple[int, int] = (192, 256), step: int = 3, name: str = "") -> Dict:
    """The video case: a `count`-frame pan of `shape` over `photo` (default examples/skyline.jpg)
    moving `step` px a frame, styled as `style` (default The Starry Night, examples/), made as
    each of `rows` (VIDEO_ROWS), same seed: the temporal error, the time per frame, the mean
    style and structure scores of the frames (analogy.metrics) and, against one by one, the
    ratios; after a warm-up run, so compiling is not counted."""
    from analogy.metrics import contextual_similarity, structure_distance

    examples = Path(__file__).resolve().parents[1] / "examples"
    if photo is None:
        photo = np.asarray(Image.open(examples / "skyline.jpg").convert("RGB"))
        style = np.asarray(Image.open(examples / "starry_night.jpg").convert("RGB"))
        name = "skyline.jpg → The Starry Night"
    frames = pan(photo, count, shape, step)
    config = analogy.AnalogyConfig(seed=seed, device=str(device))
    run_analogy(frames[0], style, config, vgg)  # warm-up
    figures: Dict = {"pair": name, "frames": count, "shape": list(shape), "step_px": step}
    print(f"\n== video: {count} frames of {shape[1]}×{shape[0]}, a pan of {step} px a frame, "
          f"{name}")
    for row in rows:
        outputs, seconds = video_frames(vgg, frames, style, config, row)
        figures[row] = {
            "temporal_error": temporal_error(outputs, step), "first_frame_s": seconds[0],
            "later_frames_s": float(np.mean(seconds[1:])),
            "style": float(np.mean([contextual_similarity(o, style) for o in outputs])),
            "structure": float(np.mean([structure_distance(o, f)
                                        for o, f in zip(outputs, frames)]))}
    base = figures[rows[0]]
    for row in rows:
        r = figures[row]
        ratios = ("" if row == rows[0] else
                  f" | ×{r['temporal_error'] / base['temporal_error']:.3f} error, "
                  f"×{r['later_frames_s'] / base['later_frames_s']:.2f} time, style "
                  f"{100 * (r['style'] / base['style'] - 1):+.1f} %, structure "
                  f"{100 * (r['structure'] / base['structure'] - 1):+.1f} %")
        print(f"   {row:24s}: temporal error {r['temporal_error']:5.2f} | first frame "
              f"{r['first_frame_s']:.1f} s | later frames {r['later_frames_s']:.2f} s each"
              + ratios)
    if "video" in figures and rows[0] == "one by one":
        figures["error_ratio"] = figures["video"]["temporal_error"] / base["temporal_error"]
        figures["time_ratio"] = figures["video"]["later_frames_s"] / base["later_frames_s"]
        print(f"   video / one by one: temporal error {figures['error_ratio']:.3f}× (target ≤ "
              f"0.35), time per later frame {figures['time_ratio']:.2f}× (target ≤ 0.5)")
    return figures


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", nargs="+", default=["painting"],
                        help=f"named pairs ({', '.join(PAIRS)}) or two image paths "
                             "[default: painting]")
    parser.add_argument("--manifest", type=Path, nargs="?", const=MANIFEST,
                        help="instead of --pair, every pair of a manifest "
                             f"[default when given alone: {MANIFEST}]")
    parser.add_argument("--sizes", nargs="+", type=int, default=[112, 224, 448],
                        help="working long sides")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--weights", default="caffe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-aspect", action="store_true",
                        help="keep the inputs' aspect (long side 2·size)")
    parser.add_argument("--skip-quality", action="store_true",
                        help="no NNF quality (against exact NNFs) and no kernel throughput")
    parser.add_argument("--skip-identity", action="store_true", help="no identity-PSNR run")
    parser.add_argument("--preview", action="store_true",
                        help="the --preview setting (before --set)")
    parser.add_argument("--set", nargs="*", metavar="FIELD=VALUE",
                        help="AnalogyConfig fields, e.g. deconv_iterations=25")
    parser.add_argument("--against", nargs="*", metavar="FIELD=VALUE", default=PREVIOUS_DEFAULT,
                        help="also run each size with these fields changed and print the ratio "
                             "of the end-to-end times [default: the previous default, "
                             f"{' '.join(PREVIOUS_DEFAULT)}; --against alone: no such run]")
    parser.add_argument("--threads", nargs="+", type=int,
                        help="run each size at each of these thread counts (torch and Numba)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--batch", action="store_true",
                        help="instead: a 6-pair batch with 2 local worker processes and with 2 Ray "
                             "workers (at the first of --sizes; needs the ray extra)")
    parser.add_argument("--large", action="store_true",
                        help="instead: the 12-MP case of the full-resolution synthesis (see above)")
    parser.add_argument("--video", action="store_true",
                        help="instead: the video case (a 12-frame 256×192 pan, one by one, with "
                             "each part of the warm start, and as a video: temporal error, time "
                             "per frame, scores); with --manifest, each pair's A panned in its "
                             "B′'s look, one by one and as a video")
    args = parser.parse_args(argv)
    if args.video:
        device = resolve_device(args.device)
        print(f"analogy {analogy.__version__}, torch {torch.__version__}, device {device}, "
              f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
        vgg = load_vgg(args.weights, str(device))
        if args.manifest:  # each pair's A panned, in its B′'s look; one by one and as a video
            figures = [video_figures(vgg, device, args.seed, *load_pair(p.a, p.b_prime),
                                     rows=("one by one", "video"), name=p.name)
                       for p in read_manifest(args.manifest)]
            for key in ("error_ratio", "time_ratio"):
                print(f"mean {key}: {np.mean([f[key] for f in figures]):.3f}")
            for key in ("style", "structure"):
                change = [f["video"][key] / f["one by one"][key] - 1 for f in figures]
                print(f"mean {key} of the video's frames against one by one: "
                      f"{100 * np.mean(change):+.1f} %")
        else:
            figures = video_figures(vgg, device, args.seed)
        if args.json:
            args.json.write_text(json.dumps({"device": str(device), "video": figures}, indent=2))
        return
    if args.large:
        device = resolve_device(args.device)
        print(f"analogy {analogy.__version__}, torch {torch.__version__}, device {device}, "
              f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
        rows = large_figures(load_vgg(args.weights, str(device)), device, args.seed)
        if args.json:
            args.json.write_text(json.dumps({"device": str(device), "large": rows}, indent=2))
        return
    if args.batch:
        figures = batch_figures(args.sizes[0])
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return

    if args.manifest:
        pairs = [(p.a, p.b_prime) for p in read_manifest(args.manifest)]
    elif all(name in PAIRS for name in args.pair):
        pairs = [PAIRS[name] for name in args.pair]
    elif len(args.pair) == 2:
        pairs = [tuple(args.pair)]
    else:
        parser.error(f"--pair takes named pairs ({', '.join(PAIRS)}) or two image paths")
    device = resolve_device(args.device)
    vgg = load_vgg(args.weights, str(device))
    threads = torch.get_num_threads()
    print(f"analogy {analogy.__version__}, torch {torch.__version__}, device {device}, "
          f"{os.cpu_count()} CPUs, torch threads {threads}")
    settings = " ".join((["--preview"] if args.preview else []) + (args.set or [])) or "defaults"
    print(f"settings: {settings}")
    conv = None
    reports = []
    for names in pairs:
        a, b = load_pair(*names)
        print(f"\n#### pair {names[0]} → {names[1]}")
        warm = make_config(args, min(args.sizes), device)
        run_analogy(resize_input(a, min(args.sizes), args.keep_aspect),
                    resize_input(b, min(args.sizes), args.keep_aspect), warm, vgg)
        if conv is None:
            bf16 = deconv_in_bfloat16(warm, kernels_for(device))
            conv = {"float32": conv_gflops(device)}
            if bf16:
                conv["bfloat16"] = conv_gflops(device, bfloat16=True)
            print("torch conv2d 3×3 256→256 @56×56: "
                  + ", ".join(f"{v:.1f} GFLOP/s in {k}" for k, v in conv.items())
                  + f"; the deconvolution runs in {'bfloat16' if bf16 else 'float32'}")
        rows = []
        for size in args.sizes:
            for threads in args.threads or [None]:
                if threads is not None:
                    set_threads(threads)
                    print(f"\n-- {threads} thread{'s' if threads > 1 else ''}")
                row = run_size(vgg, a, b, size, args, device)
                row["threads"] = torch.get_num_threads()
                print_row(row, conv)
                if args.against:
                    base = run_size(vgg, a, b, size, args, device,
                                    against_config(args, size, device))
                    quality = ", ".join(f"{k} {v:.3f}" for k, v in base["quality"].items())
                    print(f"   against {' '.join(args.against)}: end to end "
                          f"{base['wall_s']:.2f} s, deconvolution {base['deconv_gflop']:.0f} "
                          f"GFLOP; this setting takes {row['wall_s'] / base['wall_s']:.2f}× its "
                          f"time and {row['deconv_gflop'] / base['deconv_gflop']:.2f}× its "
                          f"deconvolution work; its quality: {quality}")
                    row["against"] = {"settings": args.against, **base}
                rows.append(row)
            if args.threads:
                set_threads(max(args.threads))
        if len(args.sizes) > 1 and not args.threads:
            base = rows[0]
            growth = ", ".join(f"{r['size']}: {r['wall_s'] / base['wall_s']:.2f}× for "
                               f"{(r['size'] / base['size']) ** 2:.0f}× pixels" for r in rows[1:])
            print(f"\ngrowth against size {base['size']}: {growth}")
        reports.append({"pair": names, "runs": rows})
    if args.json:
        report = {"device": str(device), "cpus": os.cpu_count(), "torch_threads": threads,
                  "settings": settings,
                  "torch": torch.__version__, "conv_gflops": conv, "pairs": reports}
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")

if __name__ == "__main__":
    main()

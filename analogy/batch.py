"""Many analogies in one run: pairs from a CSV manifest or from content × style lists.

VGG is loaded once per worker and the features of an image used by several pairs are computed once
per working size. Every pair's files are written atomically, so a run that is interrupted (Ctrl-C,
a killed process) leaves each pair's outputs complete or absent, and `resume` redoes exactly the
unfinished pairs.
"""
from __future__ import annotations

import collections
import csv
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from .config import AnalogyConfig
from .errors import AnalogyError, ConfigError, Terminated
from .features import FeatureCache
from .image_io import output_lock
from .results import output_names, save_result

PathLike = Union[str, os.PathLike]
#: File extensions taken as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Accepted spellings of the manifest's three columns (compared case-insensitively).
MANIFEST_COLUMNS = {
    "a": ("a",),
    "b_prime": ("b′", "b'", "bprime", "b_prime", "b-prime"),
    "output": ("output", "out", "output folder", "output_folder"),
}


class ManifestError(ConfigError):
    """The manifest cannot be used: wrong header, no rows, a missing file, a bad row."""


@dataclass(frozen=True)
class Pair:
    """One analogy of a batch: structure image `a`, appearance image `b_prime`, output folder `out`."""

    a: Path
    b_prime: Path
    out: Path

    @property
    def name(self) -> str:
        return self.out.name


@dataclass
class PairOutcome:
    """What became of one pair: status "done", "skipped" (complete outputs already there, with
    resume) or "failed" (with the one-line reason in `error`)."""

    pair: Pair
    status: str
    error: Optional[str] = None
    seconds: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)


def _image_files(spec: PathLike) -> List[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{path}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    return [path]


def pairs_from_lists(content: Iterable[PathLike], style: Iterable[PathLike], out: PathLike) -> List[Pair]:
    """Every content image × every style image (files, or folders of images), in that order; pair
    outputs go to OUT/<content name>__<style name>, numbered if two pairs would share a name."""
    contents = [f for spec in content for f in _image_files(spec)]
    styles = [f for spec in style for f in _image_files(spec)]
    if not contents or not styles:
        raise ConfigError("give at least one content image (--content) and one style image (--style)")
    pairs, seen = [], {}
    for a in contents:
        for b in styles:
            name = f"{a.stem}__{b.stem}"
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}-{seen[name]}"
            pairs.append(Pair(a, b, Path(out) / name))
    return pairs


def pairs_from_manifest(manifest: PathLike, out: Optional[PathLike] = None) -> List[Pair]:
    """Pairs from a CSV file with a header naming the columns A, B′ (or B', Bprime) and output.

    Image paths are relative to the manifest's folder; output folders to `out` if given, else to
    the manifest's folder (the output root), and must resolve inside it, `..` and symbolic links
    resolved: a manifest is data, often from someone else, and may not write elsewhere. Raises
    ManifestError naming the line and column at fault, before any work.
    """
    manifest = Path(manifest)
    base = manifest.parent
    root = Path(out if out is not None else base).resolve()
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: no such manifest file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{manifest}: cannot be read as CSV ({exc})") from None
    if not rows:
        raise ManifestError(f"{manifest}: the manifest is empty; expected a header A,B′,output and one row per pair")
    header = [c.strip().lower() for c in rows[0][1]]
    index = {}
    for key, names in MANIFEST_COLUMNS.items():
        found = [i for i, c in enumerate(header) if c in names]
        if len(found) != 1:
            raise ManifestError(
                f"{manifest} line {rows[0][0]}: the header must name the columns A, B′ and output once each "
                f"(found: {', '.join(rows[0][1]) or 'nothing'}; column {names[0].upper() if key != 'output' else 'output'} "
                f"{'is missing' if not found else 'is repeated'})"
            )
        index[key] = found[0]
    if len(rows) == 1:
        raise ManifestError(f"{manifest}: the manifest has a header but no pairs")
    pairs = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ManifestError(f"{manifest} line {line}: expected {len(header)} fields, found {len(row)}")
        cells = {key: row[i].strip() for key, i in index.items()}
        for key, column in (("a", "A"), ("b_prime", "B′"), ("output", "output")):
            if not cells[key]:
                raise ManifestError(f"{manifest} line {line}: column {column} is empty")
        images = {}
        for key, column in (("a", "A"), ("b_prime", "B′")):
            path = base / cells[key]
            if not path.is_file():
                raise ManifestError(f"{manifest} line {line}, column {column}: no such file {cells[key]!r} (paths are relative to the manifest)")
            images[key] = path
        target = Path(out if out is not None else base) / cells["output"]
        resolved = target.resolve()  # `..` and symbolic links resolved
        if resolved != root and root not in resolved.parents:
            raise ManifestError(
                f"{manifest} line {line}, column output: {cells['output']!r} is outside the output folder {root}; "
                f"a manifest's outputs must stay inside it (give a relative folder without '..')"
            )
        pairs.append(Pair(images["a"], images["b_prime"], target))
    outs = [p.out.resolve() for p in pairs]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise ManifestError(f"{manifest}: two rows write to the same output folder {dup}")
    return pairs


def is_complete(pair: Pair, names: Sequence[str]) -> bool:
    """True when every output file of the pair is there (they appear only complete)."""
    return all((pair.out / name).is_file() for name in names)


def _clear_stale(folder: Path) -> None:
    """Remove temporaries left by a run that was killed while writing this folder."""
    if folder.is_dir():
        for tmp in folder.glob(".*.part"):
            tmp.unlink(missing_ok=True)


class _Worker:
    """One VGG and one feature cache, running pairs one after another."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool]) -> None:
        from . import Analogy

        self.runner = Analogy(config, feature_cache=FeatureCache())
        self.save = save

    def run(self, pair: Pair) -> PairOutcome:
        t0 = time.perf_counter()
        try:
            with output_lock(pair.out):  # no other run writes here meanwhile, so its temporaries are stale
                _clear_stale(pair.out)
                result = self.runner(pair.a, pair.b_prime)
                save_result(result, pair.out, **self.save)
        except AnalogyError as exc:
            return PairOutcome(pair, "failed", str(exc).splitlines()[0], time.perf_counter() - t0)
        except (MemoryError, torch.OutOfMemoryError):
            return PairOutcome(pair, "failed", "out of memory; use a smaller --size or --ratio", time.perf_counter() - t0)
        except Exception as exc:  # an unforeseen error in one pair should not end the batch
            return PairOutcome(pair, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0], time.perf_counter() - t0)
        return PairOutcome(pair, "done", None, time.perf_counter() - t0, dict(result.timings))


_PROCESS_WORKER: Optional[_Worker] = None


def _init_process(config: AnalogyConfig, save: Dict[str, bool], threads: int, devices) -> None:
    global _PROCESS_WORKER
    import numba

    # Ctrl-C in a terminal reaches every process of the group: the parent alone handles it, and
    # stops its workers with SIGTERM, on which a worker cleans up like on Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_terminated)

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if devices is not None:
        config = config.replace(device=devices.get())
    _PROCESS_WORKER = _Worker(config, save)


_WORKING = False  # whether this worker process is running a pair (and may have files to clean up)


def _raise_terminated(signum, frame) -> None:
    if _WORKING:
        Terminated.raise_on_signal(signum, frame)
    os._exit(128 + signum)  # starting or idle: nothing to clean up, nothing to say


def _run_in_process(pair: Pair) -> PairOutcome:
    global _WORKING
    _WORKING = True
    try:
        return _PROCESS_WORKER.run(pair)
    finally:
        _WORKING = False


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _as_pair(item: Union[Pair, Tuple[PathLike, PathLike, PathLike]]) -> Pair:
    if isinstance(item, Pair):
        return item
    a, b, out = item
    return Pair(Path(a), Path(b), Path(out))


def _worker_devices(config: AnalogyConfig, jobs: int) -> Tuple[int, Optional[List[str]]]:
    """How many workers to start, and the GPU each takes (None: CPU workers)."""
    from .kernels import resolve_device

    device = resolve_device(config.device)
    if device.type != "cuda":
        return jobs, None
    if config.device.startswith("cuda:"):
        return 1, [config.device]
    count = torch.cuda.device_count()
    return min(jobs, count), [f"cuda:{i}" for i in range(min(jobs, count))]


def batch(
    pairs: Iterable[Union[Pair, Tuple[PathLike, PathLike, PathLike]]],
    config: Optional[AnalogyConfig] = None,
    *,
    jobs: int = 1,
    resume: bool = False,
    fail_fast: bool = False,
    save_nnf: bool = False,
    save_flow: bool = False,
    save_confidence: bool = False,
    on_start: Optional[Callable[[Pair], None]] = None,
) -> Iterator[PairOutcome]:
    """Run the analogy of every pair and yield a PairOutcome for each as it finishes.

    Pairs are Pair objects or (A, B′, output folder) tuples. A pair that fails is yielded with
    its reason and the batch goes on, unless `fail_fast`. With `resume`, pairs whose outputs are
    complete are yielded as "skipped" without work. `jobs` > 1 runs pairs in that many processes,
    splitting the CPU cores between them (or one per GPU); results are the same bytes as with one.
    """
    config = config or AnalogyConfig()
    pairs = [_as_pair(p) for p in pairs]
    if jobs < 1:
        raise ConfigError("jobs must be ≥ 1")
    save = {"save_nnf": save_nnf, "save_flow": save_flow, "save_confidence": save_confidence}
    names = output_names(**save)
    todo = []
    for pair in pairs:
        if resume and is_complete(pair, names):
            try:
                with output_lock(pair.out):
                    _clear_stale(pair.out)
            except AnalogyError:
                pass  # another run is writing there: its temporaries are not stale
            yield PairOutcome(pair, "skipped")
        else:
            todo.append(pair)
    if not todo:
        return
    workers, devices = _worker_devices(config, min(jobs, len(todo)))
    if workers == 1:
        worker = _Worker(config.replace(device=devices[0]) if devices else config, save)
        for pair in todo:
            if on_start is not None:
                on_start(pair)
            outcome = worker.run(pair)
            yield outcome
            if fail_fast and outcome.status == "failed":
                return
        return
    yield from _batch_processes(todo, config, save, workers, devices, fail_fast, on_start)


def _batch_processes(todo, config, save, workers, devices, fail_fast, on_start) -> Iterator[PairOutcome]:
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's and Numba's thread pools
    queue = None
    if devices is not None:
        queue = ctx.Manager().Queue()
        for d in devices:
            queue.put(d)
    threads = max(1, _usable_cpus() // workers) if devices is None else max(1, torch.get_num_threads())
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_process,
                               initargs=(config, save, threads, queue))
    pending: Dict[Future, Pair] = {}
    order = {pair: i for i, pair in enumerate(todo)}
    queue_pairs = collections.deque(todo)
    try:
        while queue_pairs or pending:
            while queue_pairs and len(pending) < workers:
                pair = queue_pairs.popleft()
                if on_start is not None:
                    on_start(pair)
                pending[pool.submit(_run_in_process, pair)] = pair
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: order[pending[f]]):
                pair = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # a worker died (killed, crashed): report, go on
                    outcome = PairOutcome(pair, "failed", f"worker process failed ({type(exc).__name__}: {exc})")
                yield outcome
                if fail_fast and outcome.status == "failed":
                    return
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed here: stop the workers now rather than after
        # their current pairs; each removes its temporary files on the way out.
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

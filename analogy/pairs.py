"""One pair of a batch: what it is, what became of it, and the code that runs it wherever a batch's
work is done (this process, a worker process, a Ray worker).

Every pair's folder gets, with its images and in the same all-or-nothing write, a record
(`analogy.json`) of what made them: the inputs' SHA-256 digests and the options. `resume` skips a
pair only when that record matches the inputs and options asked for now, so a folder whose inputs
were edited or replaced, or that was made with other options, is made again.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .config import AnalogyConfig
from .errors import AnalogyError
from .features import FeatureCache
from .image_io import ImageLike, file_key, output_folder, write_files_atomically
from .kernels.common import host_out_of_memory
from .pipeline import Progress
from .results import result_files

#: The record of what made a pair's outputs, written with them.
RECORD = "analogy.json"


@dataclass(frozen=True)
class Pair:
    """One analogy of a batch: structure image `a`, appearance image `b_prime`, output folder
    `out`, and `options`, (field, value) pairs of AnalogyConfig that this pair sets over the
    batch's configuration (a manifest's output_size column)."""

    a: Path
    b_prime: Path
    out: Path
    options: Tuple[Tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.out.name

    def configure(self, config: AnalogyConfig) -> AnalogyConfig:
        """The batch's configuration with this pair's own options."""
        return config.replace(**dict(self.options)) if self.options else config


@dataclass
class PairOutcome:
    """What became of one pair: status "done", "skipped" (complete outputs from the same inputs
    and options already there, with resume) or "failed" (with the one-line reason in `error`)."""

    pair: Pair
    status: str
    error: Optional[str] = None
    seconds: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)


@functools.lru_cache(maxsize=256)
def _digest(key: tuple) -> str:
    sha = hashlib.sha256()
    with open(key[0], "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, computed once per (path, size, modification time)."""
    key = file_key(path)
    if key is None:
        raise FileNotFoundError(path)
    return _digest(key)


def pair_record(pair: Pair, config: AnalogyConfig, names: Sequence[str]) -> dict:
    """What the outputs of `pair` are made from. Under "made_from" what decides them (compared by
    resume): the inputs' digests, the options (all but the device, which only says where) and the
    files written; beside it, for the reader, the input paths."""
    options = dataclasses.asdict(pair.configure(config))
    options.pop("device")
    made_from = {"A_sha256": file_digest(pair.a), "B′_sha256": file_digest(pair.b_prime),
                 "options": options, "outputs": list(names)}
    record = {"A": str(pair.a), "B′": str(pair.b_prime), "made_from": made_from}
    return json.loads(json.dumps(record))  # tuples as lists, as they read back


def is_complete(pair: Pair, config: AnalogyConfig, names: Sequence[str]) -> bool:
    """Whether `pair.out` holds every output file, made from these inputs with these options."""
    try:
        found = json.loads((pair.out / RECORD).read_text(encoding="utf-8"))
        expected = pair_record(pair, config, names)
    except (OSError, ValueError):
        return False
    return (isinstance(found, dict) and found.get("made_from") == expected["made_from"]
            and all((pair.out / name).is_file() for name in names))


def outcome_of(pair: Pair, work: Callable[[], Dict[str, float]]) -> PairOutcome:
    """Run `work` (which returns the pair's timings) and say what became of the pair: an error is
    a "failed" outcome with a one-line reason, not an exception (an interruption still raises)."""
    t0 = time.perf_counter()
    try:
        timings = work()
    except AnalogyError as exc:
        return PairOutcome(pair, "failed", str(exc).splitlines()[0], time.perf_counter() - t0)
    except Exception as exc:  # an unforeseen error in one pair should not end the batch
        reason = ("out of memory; use a smaller --size or --ratio" if host_out_of_memory(exc)
                  else f"{type(exc).__name__}: {exc}".splitlines()[0])
        return PairOutcome(pair, "failed", reason, time.perf_counter() - t0)
    return PairOutcome(pair, "done", None, time.perf_counter() - t0, timings)


def write_pair_files(pair: Pair, files: Dict[str, bytes], config: AnalogyConfig) -> None:
    """Write a pair's output files and its record into its folder, all or nothing (the caller
    holds the folder, see output_folder)."""
    names = list(files)
    record = json.dumps(pair_record(pair, config, names), indent=1, ensure_ascii=False) + "\n"
    # last: its presence says the others are complete
    files = {**files, RECORD: record.encode("utf-8")}
    write_files_atomically({pair.out / name: data for name, data in files.items()})


class PairRunner:
    """Runs pairs one after another: one VGG19 and one feature cache, loaded once."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool]) -> None:
        from .runner import Analogy

        self.runner = Analogy(config, feature_cache=FeatureCache())
        self.config = config
        self.save = save

    def compute(self, a: ImageLike, b_prime: ImageLike, progress: Progress = None,
                **options) -> Tuple[Dict[str, bytes], Dict[str, float]]:
        """The encoded output files of one analogy (with these AnalogyConfig `options` over the
        runner's), and its timings."""
        result = self.runner(a, b_prime, progress, **options)
        return result_files(result, **self.save), dict(result.timings)

    def __call__(self, pair: Pair, progress: Progress = None) -> PairOutcome:
        """Run `pair` here and write its files, holding its folder from start to end."""
        def work() -> Dict[str, float]:
            with output_folder(pair.out):
                files, timings = self.compute(pair.a, pair.b_prime, progress, **dict(pair.options))
                write_pair_files(pair, files, self.config)
            return timings

        return outcome_of(pair, work)

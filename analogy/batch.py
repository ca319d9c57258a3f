"""Many analogies in one run: pairs from a CSV manifest or from content × style lists.

VGG is loaded once per worker and the features of an image used by several pairs are computed once
per working size. Every pair's files are written atomically with a record of what made them, so a
run that is interrupted (Ctrl-C, a killed process) leaves each pair's outputs complete or absent,
and `resume` redoes exactly the pairs that are unfinished or whose inputs or options changed.
Where the pairs run (this process, worker processes, a Ray cluster) is the executor's business.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .config import AnalogyConfig
from .errors import ConfigError
from .executor_base import OnProgress, OnRetry, OnStart
from .executors import executor_for
from .image_io import check_output_folder, clear_stale_temporaries, input_replaced_by, shown
from .pairs import RECORD, Pair, PairOutcome, is_complete
from .results import output_names

PathLike = Union[str, os.PathLike]
#: File extensions taken as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Accepted spellings of the manifest's three columns (compared case-insensitively).
MANIFEST_COLUMNS = {
    "a": ("a",),
    "b_prime": ("b′", "b'", "bprime", "b_prime", "b-prime"),
    "output": ("output", "out", "output folder", "output_folder"),
}
#: Optional columns of a manifest: per-pair options over the batch's (an empty cell keeps the
#: batch's), by the AnalogyConfig field they set and their accepted spellings.
MANIFEST_OPTIONS = {
    "output_size": ("output_size", "output size", "output-size"),
}


class ManifestError(ConfigError):
    """The manifest cannot be used: wrong header, no rows, a missing file, a bad row."""


def _image_files(spec: PathLike) -> List[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file()
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{shown(path)}: no image files in this folder "
                              f"({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not path.exists():
        raise ConfigError(f"{shown(path)}: no such file or folder")
    if _is_empty(path):
        raise ConfigError(f"{shown(path)}: an empty file (0 bytes), not an image")
    return [path]


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _folder_names(files: Sequence[Path]) -> Dict[Path, str]:
    """A name for each file in its pairs' folder names: its stem; where stems clash, its file
    name; where file names clash too, that and a digest of its full path. The same whatever the
    order the files are listed in, so a folder always belongs to the same input."""
    stems = collections.Counter(f.stem for f in files)
    names = collections.Counter(f.name for f in files)
    return {f: f.stem if stems[f.stem] == 1 else f.name if names[f.name] == 1
            else f"{f.name}-{hashlib.sha256(str(f.resolve()).encode()).hexdigest()[:8]}"
            for f in files}


def pairs_from_lists(content: Iterable[PathLike], style: Iterable[PathLike],
                     out: PathLike) -> List[Pair]:
    """Every content image × every style image (files, or folders of images), in that order; pair
    outputs go to OUT/<content name>__<style name> (see _folder_names)."""
    contents = list(dict.fromkeys(f for spec in content for f in _image_files(spec)))
    styles = list(dict.fromkeys(f for spec in style for f in _image_files(spec)))
    if not contents or not styles:
        raise ConfigError("give at least one content image (--content) and one style image "
                          "(--style)")
    content_names, style_names = _folder_names(contents), _folder_names(styles)
    pairs = [Pair(a, b, Path(out) / f"{content_names[a]}__{style_names[b]}")
             for a in contents for b in styles]
    folders = collections.Counter(p.out for p in pairs)
    clash = next((p for p in pairs if folders[p.out] > 1), None)
    if clash is not None:
        raise ConfigError(f"two pairs would write to {clash.out}; rename one of the images "
                          "(no '__' in names)")
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
    name = shown(manifest)
    root = Path(out if out is not None else base).resolve()
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1)
                    if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise ManifestError(f"{name}: no such manifest file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{name}: cannot be read as CSV ({exc})") from None
    if not rows:
        raise ManifestError(f"{name}: the manifest is empty; expected a header A,B′,output and one "
                            "row per pair")
    header = [c.strip().lower() for c in rows[0][1]]
    index = {}
    for key, names in MANIFEST_COLUMNS.items():
        found = [i for i, c in enumerate(header) if c in names]
        if len(found) != 1:
            raise ManifestError(
                f"{name} line {rows[0][0]}: the header must name the columns A, B′ and output once "
                f"each (found: {', '.join(rows[0][1]) or 'nothing'}; column "
                f"{names[0].upper() if key != 'output' else 'output'} "
                f"{'is missing' if not found else 'is repeated'})"
            )
        index[key] = found[0]
    optional = {}
    for key, names in MANIFEST_OPTIONS.items():
        found = [i for i, c in enumerate(header) if c in names]
        if len(found) > 1:
            raise ManifestError(f"{name} line {rows[0][0]}: the column {names[0]} is repeated")
        if found:
            optional[key] = found[0]
    if len(rows) == 1:
        raise ManifestError(f"{name}: the manifest has a header but no pairs")
    pairs = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ManifestError(f"{name} line {line}: expected {len(header)} fields, found "
                                f"{len(row)}")
        cells = {key: row[i].strip() for key, i in index.items()}
        for key, column in (("a", "A"), ("b_prime", "B′"), ("output", "output")):
            if not cells[key]:
                raise ManifestError(f"{name} line {line}: column {column} is empty")
            if "\0" in cells[key]:
                raise ManifestError(f"{name} line {line}, column {column}: a NUL byte in the "
                                    "field; save the manifest as plain text")
        images = {}
        for key, column in (("a", "A"), ("b_prime", "B′")):
            path = base / cells[key]
            if not path.is_file():
                raise ManifestError(f"{name} line {line}, column {column}: no such file "
                                    f"{cells[key]!r} (paths are relative to the manifest)")
            if _is_empty(path):
                raise ManifestError(f"{name} line {line}, column {column}: {cells[key]!r} is an "
                                    "empty file (0 bytes), not an image")
            images[key] = path
        target = Path(out if out is not None else base) / cells["output"]
        resolved = target.resolve()  # `..` and symbolic links resolved
        if resolved != root and root not in resolved.parents:
            raise ManifestError(
                f"{name} line {line}, column output: {cells['output']!r} is outside the output "
                f"folder {root}; a manifest's outputs must stay inside it (give a relative folder "
                "without '..')"
            )
        options = tuple((key, _option_value(key, row[i].strip(), f"{name} line {line}"))
                        for key, i in optional.items() if row[i].strip())
        pairs.append(Pair(images["a"], images["b_prime"], target, options))
    outs = [p.out.resolve() for p in pairs]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise ManifestError(f"{name}: two rows write to the same output folder {dup}")
    return pairs


def _option_value(key: str, text: str, where: str):
    """A manifest cell's value for option `key`, checked as AnalogyConfig checks it: a
    ManifestError naming `where` and the column otherwise."""
    value = int(text) if text.isdigit() else text.lower()
    try:
        AnalogyConfig(**{key: value})
    except ConfigError as exc:
        raise ManifestError(f"{where}, column {key}: {exc}") from None
    return value


def _check_outputs_spare_inputs(pairs: Sequence[Pair], names: Sequence[str]) -> None:
    """ConfigError, before any work, if a pair's output would replace one of the batch's inputs."""
    outputs = {pair.out / name: pair for pair in pairs for name in (*names, RECORD)}
    clash = input_replaced_by(outputs, {p for pair in pairs for p in (pair.a, pair.b_prime)})
    if clash is not None:
        output, image = clash
        raise ConfigError(f"{image}: an input of this batch, which pair {outputs[output].name} "
                          f"would overwrite with its {output.name}; choose another output folder")


def _as_pair(item: Union[Pair, Tuple[PathLike, PathLike, PathLike]]) -> Pair:
    if isinstance(item, Pair):
        return item
    a, b, out = item
    return Pair(Path(a), Path(b), Path(out))


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
    executor: str = "local",
    address: Optional[str] = None,
    retries: int = 1,
    on_start: OnStart = None,
    on_retry: OnRetry = None,
    on_progress: OnProgress = None,
) -> Iterator[PairOutcome]:
    """Run the analogy of every pair and yield a PairOutcome for each as it finishes.

    Pairs are Pair objects or (A, B′, output folder) tuples. A pair that fails is yielded with
    its reason and the batch goes on, unless `fail_fast`. With `resume`, pairs whose outputs are
    complete and were made from the same inputs and options are yielded as "skipped" without
    work. `jobs` > 1 runs pairs in that many worker processes, splitting the CPU cores between them
    (or one per GPU); `executor="ray"` runs them as Ray tasks (on the cluster at `address`, or a
    local Ray started for the batch). A worker that dies mid-pair costs it one attempt of
    1 + `retries`. The options and output folders are checked when `batch` is called, before any
    work (which is done as the outcomes are asked for); results are the same bytes whatever runs
    them. `on_start`, `on_progress` and `on_retry` are called as a pair starts, as its analogy
    starts each stage (not on Ray) and when its worker died and it is tried again.
    """
    config = config or AnalogyConfig()
    pairs = [_as_pair(p) for p in pairs]
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a whole number ≥ 1, got {jobs!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be a whole number ≥ 0, got {retries!r}")
    save = {"save_nnf": save_nnf, "save_flow": save_flow, "save_confidence": save_confidence}
    names = output_names(**save)
    _check_outputs_spare_inputs(pairs, names)
    complete = {p for p in pairs if resume and is_complete(p, config, names)}
    done = [p for p in pairs if p in complete]
    todo = [p for p in pairs if p not in complete]
    _check_output_folders(todo)
    return _outcomes(done, todo, config, save, jobs, fail_fast, executor, address, retries,
                     on_start, on_retry, on_progress)


def _check_output_folders(pairs: Sequence[Pair]) -> None:
    """OutputError, before any work, if a pair's folder cannot be written or made (a read-only
    folder or file system, a root that cannot be created): one error, not one per pair."""
    for parent in dict.fromkeys(pair.out.parent for pair in pairs):
        check_output_folder(parent, probe=True)
    for pair in pairs:
        check_output_folder(pair.out)


def _outcomes(done: List[Pair], todo: List[Pair], config: AnalogyConfig, save: Dict[str, bool],
              jobs: int, fail_fast: bool, executor: str, address: Optional[str], retries: int,
              on_start: OnStart, on_retry: OnRetry,
              on_progress: OnProgress) -> Iterator[PairOutcome]:
    runner = (executor_for(executor, config, save, min(jobs, len(todo)), retries, address)
              if todo else None)
    for pair in done:
        clear_stale_temporaries(pair.out)
        yield PairOutcome(pair, "skipped")
    if runner is None:
        return
    with contextlib.closing(runner.run(todo, on_start, on_retry, on_progress)) as outcomes:
        for outcome in outcomes:
            yield outcome
            if fail_fast and outcome.status == "failed":
                return

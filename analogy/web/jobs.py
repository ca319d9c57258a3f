"""The jobs of `analogy serve`: the options a job takes, a bounded queue worked off the request
threads, and each job's folder under the server's data folder.

A job is two checked images and a configuration made by the command line's own option handling (see
JobOptions). A worker thread runs it with the pipeline's public API and writes, all or nothing, what
`analogy A B -o OUT --save-nnf --save-flow --save-confidence` writes, with the same bytes, beside
the inputs as analysed, a record of inputs and options, and a zip of everything.

A video job is a checked clip (kept as uploaded, with its first frame as A.png) and a style image:
the worker runs `analogy.video.video` on them, as `analogy video CLIP B -o A_prime.mp4` does, with
its own loaded VGG19, and reports the frames done as they come.

Jobs live in memory: a server that stops removes their folders, and one that starts removes what a
killed one left.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import click
import numba
import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..config import AnalogyConfig
from ..errors import ConfigError, InputImageWarning
from ..executors import _worker_devices, set_threads, usable_cpus
from ..features import load_vgg
from ..image_io import (
    EncodedImage,
    check_output_folder,
    load_image,
    output_lock,
    png_bytes,
    write_files_atomically,
)
from ..kernels import resolve_device
from ..pairs import Pair, outcome_of
from ..pipeline import progress_steps, run_analogy, working_size
from ..results import result_files

log = logging.getLogger("analogy.web")

#: The inputs as analysed (RGB, EXIF orientation applied, transparency flattened), written when the
#: job is made: the worker reads them back, and the page shows them while the job waits.
INPUT_A, INPUT_B = "A.png", "B_prime.png"
#: The record of what made a job's files, and the zip of all of them.
RECORD, ARCHIVE = "analogy.json", "analogy.zip"
#: A video job's clip as uploaded is this name with the upload's extension (A_video.mp4); its result
#: is an H.264 MP4, which browsers play.
VIDEO_STEM, VIDEO_RESULT = "A_video", "A_prime.mp4"
#: Marks a folder as a job's, so that clearing what a killed server left touches nothing else.
MARKER = ".analogy-job"
#: Job ids: secrets.token_urlsafe(18), 144 random bits.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{24}")
#: Decoding is serialised: load_image sets warning filters, which are process-wide.
_DECODING = threading.Lock()


class Cancelled(BaseException):
    """Raised from a cancelled job's progress callback, so the pipeline stops at its next step. A
    BaseException, as KeyboardInterrupt is, so that no handler of errors takes it for a failure."""


class QueueFull(Exception):
    """Every place in the queue is taken; `retry_after` is a guess, in seconds, of when one
    frees."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class JobOptions:
    """The options a job takes, as form fields, and how their values become a configuration: the
    command line's own options and function (cli.py passes them), so that the same values give the
    same configuration, the same checks and the same messages."""

    fields: Sequence[click.Option]
    # keyword arguments: the fields' values, absent = not given
    make_config: Callable[..., AnalogyConfig]

    def parse(self, form: Mapping[str, str]) -> Tuple[Dict[str, Any], AnalogyConfig]:
        """The values given (empty fields are not given) and the configuration they make; a
        one-line ConfigError for an unknown field or a bad value. Names may use - or _."""
        by_name = {f.name: f for f in self.fields}
        values: Dict[str, Any] = {}
        for key, text in form.items():
            name = key.replace("-", "_")
            if name not in by_name:
                raise ConfigError(f"unknown option {key!r}; the options are {', '.join(by_name)}")
            if text.strip():
                option = by_name[name]
                try:
                    values[name] = (click.BOOL if option.is_flag
                                    else option.type).convert(text.strip(), option, None)
                except click.BadParameter as exc:
                    raise ConfigError(f"{name}: {exc.message}") from None
        return values, self.make_config(**values)

    def describe(self) -> List[dict]:
        """The fields for the page's form: name, kind (int, float, choice, flag, text), choices,
        default (the server's configuration without options; a list where it differs by level)
        and help."""
        base = self.make_config()
        fields = []
        for option in self.fields:
            default = getattr(base, option.name, None)
            if isinstance(default, tuple):  # a per-level value: one number when all levels agree
                default = default[0] if len(set(default)) == 1 else list(default)
            kind = ("flag" if option.is_flag else "choice" if isinstance(option.type, click.Choice)
                    else {"integer": "int", "float": "float"}.get(option.type.name, "text"))
            choices = list(option.type.choices) if kind == "choice" else None
            fields.append({"name": option.name, "kind": kind, "choices": choices,
                           "default": default, "help": option.help or ""})
        return fields

    def command_line(self, values: Mapping[str, Any]) -> List[str]:
        """The command-line options that give these values."""
        args: List[str] = []
        for option in self.fields:
            if option.name in values and values[option.name] is not None:
                flag = max(option.opts, key=len)
                if option.is_flag:
                    args += [flag] if values[option.name] else []
                else:
                    args += [flag, str(values[option.name])]
        return args


@dataclass(frozen=True)
class InputImage:
    """An uploaded image, checked and decoded: its file name, its bytes' digest, its pixels."""

    name: str
    sha256: str
    rgb: np.ndarray


@dataclass(frozen=True)
class InputVideo:
    """An uploaded clip, checked: its file name, its bytes' digest, the file (in the folder of the
    job to be, see JobQueue.new_folder), what open_clip found in it, and its first frame."""

    name: str
    sha256: str
    path: Path
    frames: int
    shape: Tuple[int, int]  # (H, W)
    rate: Optional[Fraction]
    audio: bool
    first: np.ndarray


def image_size(data: bytes) -> Tuple[int, int]:
    """An image file's (width, height) from its header, without decoding it; (0, 0) when it
    cannot be read (decode says why)."""
    with _DECODING, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as header:
                return header.size
        except Exception:
            return 0, 0


def decode(name: str, data: bytes, label: str) -> Tuple[np.ndarray, List[str]]:
    """An upload's pixels, read exactly as the command line reads a file (load_image: the same
    conversions and the same one-line InputImageError), and the warnings it gave (one line each)."""
    with _DECODING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputImageWarning)
        rgb = load_image(EncodedImage(name, data), label)
    return rgb, [str(w.message) for w in caught if issubclass(w.category, InputImageWarning)]


def _iso(t: Optional[float]) -> Optional[str]:
    return (None if t is None
            else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds"))


@dataclass
class Job:
    """One job: its inputs, options, state and progress. Fields change under the queue's lock."""

    id: str
    folder: Path
    inputs: Dict[str, dict]  # "a", "bprime" → name, sha256, width, height (a clip: frames, …)
    options: Dict[str, Any]  # the fields given
    command: List[str]  # the command-line options given (see JobOptions.command_line)
    config: AnalogyConfig
    warnings: List[str]
    state: str = "queued"  # queued, running, done or failed
    step: int = 0  # progress callbacks so far: the step running is `step` of `steps`
    stage: str = ""
    error: Optional[str] = None
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    finished: Optional[float] = None
    files: List[str] = field(default_factory=lambda: [INPUT_A, INPUT_B])
    summary: Dict[str, Any] = field(default_factory=dict)  # working sizes and timings, once done
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    kind: str = "image"  # or "video"
    video: str = ""  # a video job's clip, as uploaded (A_video.mp4, …)
    frames_done: int = 0  # a video job's frames finished so far

    @property
    def steps(self) -> int:
        """How many progress steps the job's analogy reports (the scales depend on the sizes); for
        a video, one per frame and the encode."""
        a, b = self.inputs["a"], self.inputs["bprime"]
        if self.kind == "video":
            return a["frames"] + 1
        return progress_steps(self.config, (a["height"], a["width"]), (b["height"], b["width"]))

    def view(self, position: Optional[int] = None) -> dict:
        """The job as the API shows it; `position` is the number of jobs ahead of a queued one."""
        steps = self.steps
        done = steps if self.state == "done" else max(0, self.step - 1)
        progress = {"step": self.step, "steps": steps, "stage": self.stage,
                    "fraction": done / steps}
        if self.kind == "video":
            progress.update(frames_done=self.frames_done, frames=self.inputs["a"]["frames"])
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "url": f"/jobs/{self.id}",
            "progress": progress,
            "queue_position": position, "error": self.error, "warnings": self.warnings,
            "inputs": self.inputs, "options": self.options, "files": self.files, **self.summary,
            "created": _iso(self.created), "started": _iso(self.started),
            "finished": _iso(self.finished),
        }


def _zip(files: Mapping[str, bytes]) -> bytes:
    """A zip of `files`; PNGs, already compressed, are stored as they are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            method = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


class JobQueue:
    """The jobs of one server: the data folder that holds their files (held against a second
    server), the workers that run them (VGG19 loaded once per device, when the queue is made), and
    the jobs waiting, at most `capacity`. Finished jobs are removed `keep_seconds` after they
    end."""

    def __init__(self, data: Optional[Path] = None, weights: str = "caffe", device: str = "auto",
                 workers: Optional[int] = None, capacity: int = 16,
                 keep_seconds: float = 3600.0) -> None:
        """`data` None: a temporary folder, removed by close(). `workers` None: one on the CPU, one
        per GPU. Errors (a bad device or weights, a data folder in use) are one-line
        AnalogyErrors."""
        if capacity < 1 or (workers is not None and workers < 1) or keep_seconds < 0:
            raise ConfigError("capacity and workers must be at least 1, keep_seconds at least 0")
        config = AnalogyConfig(weights=weights, device=device)
        cuda = resolve_device(device).type == "cuda"
        self.devices = _worker_devices(config,
                                       workers or (torch.cuda.device_count() if cuda else 1))
        self.weights, self.capacity, self.keep_seconds = weights, capacity, keep_seconds
        self.jobs: Dict[str, Job] = {}
        self._waiting: "collections.deque[Job]" = collections.deque()
        self._durations: "collections.deque[float]" = collections.deque(maxlen=8)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._closed = False
        self._held = contextlib.ExitStack()
        self._temporary = data is None
        self.data = Path(tempfile.mkdtemp(prefix="analogy-serve-")) if data is None else Path(data)
        try:
            self._held.enter_context(output_lock(check_output_folder(self.data, create=True)))
            self._clear_stale()
            # the pipeline sets cuDNN's flags per run; with one thread per GPU, keep them set
            if cuda:
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            elif len(self.devices) > 1:
                _check_threads_may_share_kernels(len(self.devices))
            for device_name in sorted({d or "cpu" for d in self.devices}):
                # here, so a bad --weights is one error before the server listens
                load_vgg(weights, device_name)
        except BaseException:
            self._release()
            raise

    # -- the data folder ------------------------------------------------------------------------

    def _clear_stale(self) -> None:
        """Remove the job folders a killed server left (ours: named like an id, with the marker)."""
        for path in self.data.iterdir():
            if ID_PATTERN.fullmatch(path.name) and (path / MARKER).is_file():
                shutil.rmtree(path, ignore_errors=True)

    def _release(self) -> None:
        self._held.close()
        if self._temporary:
            shutil.rmtree(self.data, ignore_errors=True)

    # -- workers --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and the janitor that removes expired jobs."""
        cpu_workers = sum(d is None for d in self.devices)
        # One CPU worker computes with this process's threads, which a worker thread does not
        # inherit (Numba's count is per thread): torch's CPU convolutions round differently with
        # another count, and a job would then not give the command's bytes.
        threads = (max(1, usable_cpus() // cpu_workers) if cpu_workers > 1
                   else torch.get_num_threads())
        for index, device in enumerate(self.devices):
            self._spawn(f"analogy-worker-{index}", self._work, device, threads)
        self._spawn("analogy-janitor", self._janitor)

    def _spawn(self, name: str, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self, device: Optional[str], threads: int) -> None:
        set_threads(threads)
        # loaded by __init__: this is the cached model
        vgg = load_vgg(self.weights, device or "cpu")
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.state, job.started = "running", time.time()
            self._run(job, vgg, device)

    def _run(self, job: Job, vgg, device: Optional[str]) -> None:
        log.info("job %s running", job.id)

        def progress(stage: str) -> None:  # called at the start of each of the pipeline's steps
            if job.cancelled.is_set():
                raise Cancelled()
            job.step, job.stage = job.step + 1, stage

        def work() -> Dict[str, float]:
            config = job.config if device is None else job.config.replace(device=device)
            with _DECODING:
                image_a, image_b = (load_image(job.folder / INPUT_A, "A"),
                                    load_image(job.folder / INPUT_B, "B′"))
            result = run_analogy(image_a, image_b, config, vgg, progress)
            if job.cancelled.is_set():
                raise Cancelled()
            job.stage = "writing the results"
            files = result_files(result, save_nnf=True, save_flow=True, save_confidence=True)
            (ha, wa), (hb, wb) = result.working_size_a, result.working_size_b
            job.summary = {"working_sizes": {"a": [wa, ha], "bprime": [wb, hb]},
                           "timings": {k: round(v, 3) for k, v in result.timings.items()}}
            files[RECORD] = self._record(job, config).encode("utf-8")
            inputs = {name: (job.folder / name).read_bytes() for name in (INPUT_A, INPUT_B)}
            files[ARCHIVE] = _zip({**inputs, **files})
            write_files_atomically({job.folder / name: data for name, data in files.items()})
            job.files = [INPUT_A, INPUT_B, *files]
            return result.timings

        try:
            outcome = outcome_of(Pair(job.folder / INPUT_A, job.folder / INPUT_B, job.folder),
                                 (lambda: self._run_video(job, vgg, device)) if job.kind == "video"
                                 else work)
        except Cancelled:
            outcome = None
        with self._lock:
            # removed from the queue meanwhile: its folder is ours to remove
            gone = job.cancelled.is_set()
            if not gone:
                # messages name the job's files, not where the server keeps them
                error = outcome.error and outcome.error.replace(f"{job.folder}{os.sep}", "")
                job.state, job.error, job.finished = outcome.status, error, time.time()
                self._durations.append(job.finished - job.started)
        if gone:
            shutil.rmtree(job.folder, ignore_errors=True)
            log.info("job %s cancelled at step %d of %d", job.id, job.step, job.steps)
        elif outcome.status == "failed":
            log.info("job %s failed: %s", job.id, outcome.error)
        else:
            log.info("job %s done in %.1f s", job.id, outcome.seconds)

    def _run_video(self, job: Job, vgg, device: Optional[str]) -> Dict[str, float]:
        """A video job's work: every frame of its clip in B′'s look, into VIDEO_RESULT, with the
        frames done and the time left in its progress."""
        from ..video import video

        if job.cancelled.is_set():
            raise Cancelled()
        config = job.config if device is None else job.config.replace(device=device)
        frames = job.inputs["a"]["frames"]
        began = time.perf_counter()
        encoding: List[float] = []

        def progress(line: str) -> None:  # a line after each frame, and one before the encode
            if job.cancelled.is_set():
                raise Cancelled()
            if line.startswith("frame "):
                job.frames_done += 1
                left = line.partition(", about ")[2]
                job.step = job.frames_done + 1
                job.stage = (f"frame {job.step} of {frames}" + (f", about {left}" if left else "")
                             if job.frames_done < frames else "encoding the video")
            elif line.startswith("encoding "):
                job.step, job.stage = frames + 1, "encoding the video"
                encoding.append(time.perf_counter())

        job.step, job.stage = 1, f"frame 1 of {frames}"
        result = video(job.folder / job.video, job.folder / INPUT_B, job.folder / VIDEO_RESULT,
                       config, progress=progress, vgg=vgg)
        if job.cancelled.is_set():
            raise Cancelled()
        end = time.perf_counter()
        seconds = result.seconds
        timings = {"first_frame": seconds[0], "frames": sum(seconds),
                   "encoding": end - (encoding[0] if encoding else end), "total": end - began}
        if len(seconds) > 1:
            timings["later_frames"] = sum(seconds[1:]) / (len(seconds) - 1)
        a = job.inputs["a"]
        h, w = working_size((a["height"], a["width"]), config)
        job.summary = {"working_sizes": {"a": [w, h]},
                       "timings": {k: round(v, 3) for k, v in timings.items()},
                       "frame_seconds": [round(s, 3) for s in seconds]}
        write_files_atomically({job.folder / RECORD: self._record(job, config).encode("utf-8")})
        job.files = [job.video, INPUT_A, INPUT_B, VIDEO_RESULT, RECORD]
        return timings

    def _record(self, job: Job, config: AnalogyConfig) -> str:
        options = dataclasses.asdict(config)
        options.pop("device")
        server = ["--weights", self.weights, "--device", job.config.device]
        command = (["analogy", "video", job.video, INPUT_B, "-o", VIDEO_RESULT, *job.command,
                    *server] if job.kind == "video"
                   else ["analogy", INPUT_A, INPUT_B, "-o", "OUT", *job.command, "--save-nnf",
                         "--save-flow", "--save-confidence", *server])
        record = {"analogy": __version__, **({"kind": "video"} if job.kind == "video" else {}),
                  "A": job.inputs["a"], "B′": job.inputs["bprime"],
                  "options_given": job.options, "options": options,
                  "device": str(resolve_device(config.device)),
                  "command": shlex.join(command), **job.summary, "created": _iso(job.created)}
        return json.dumps(record, indent=1, ensure_ascii=False) + "\n"

    def _janitor(self) -> None:
        interval = min(60.0, max(0.05, self.keep_seconds / 4))
        while not self._stop.wait(interval):
            self.expire()

    # -- jobs -----------------------------------------------------------------------------------

    def full(self) -> bool:
        return len(self._waiting) >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a place in the queue may free: the recent mean duration of a job (30 s
        before any has run) times the jobs ahead per worker."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 30.0
        return max(1, math.ceil(mean * max(1, len(self._waiting)) / len(self.devices)))

    def new_folder(self) -> Path:
        """A new job's folder (named by its id, marked), for an upload to be checked in before the
        job is submitted; the caller removes it if no job takes it."""
        folder = self.data / secrets.token_urlsafe(18)
        folder.mkdir()
        (folder / MARKER).touch()
        return folder

    def submit(self, a: Union[InputImage, InputVideo], b: InputImage, options: Dict[str, Any],
               command: List[str], config: AnalogyConfig, warnings: List[str]) -> Job:
        """A new queued job for these checked inputs (A an image, or a clip already in the folder
        of new_folder, which makes it a video job); QueueFull when every place is taken."""
        video = isinstance(a, InputVideo)
        if self.full() or self._closed:
            if video:
                shutil.rmtree(a.path.parent, ignore_errors=True)
            raise QueueFull(self.retry_after())
        folder = a.path.parent if video else self.new_folder()
        job_id = folder.name
        first = a.first if video else a.rgb
        write_files_atomically({folder / INPUT_A: png_bytes(first),
                                folder / INPUT_B: png_bytes(b.rgb)})
        inputs = {key: {"name": image.name, "sha256": image.sha256, "width": rgb.shape[1],
                        "height": rgb.shape[0]}
                  for key, image, rgb in (("a", a, first), ("bprime", b, b.rgb))}
        job = Job(job_id, folder, inputs, options, command, config, warnings)
        if video:
            rate = None if a.rate is None else float(a.rate)
            inputs["a"].update(frames=a.frames, rate=rate, audio=a.audio)
            job.kind, job.video = "video", a.path.name
            job.files = [job.video, INPUT_A, INPUT_B]
        with self._lock:
            accepted = not self.full() and not self._closed
            if accepted:
                self.jobs[job_id] = job
                self._waiting.append(job)
                self._wake.notify()
        if not accepted:
            shutil.rmtree(folder, ignore_errors=True)
            raise QueueFull(self.retry_after())
        log.info("job %s queued: A %s%s, B′ %s", job_id, a.name,
                 f" ({a.frames} frames)" if video else "", b.name)
        return job

    def get(self, job_id: str) -> Optional[Tuple[Job, Optional[int]]]:
        """The job and, while it waits, the number of jobs ahead of it; None if there is no such
        job."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            return job, (self._waiting.index(job) if job.state == "queued" else None)

    def remove(self, job_id: str) -> bool:
        """Cancel or delete a job: a queued or finished one goes at once with its folder; a running
        one stops at its next step and its worker removes the folder. False if there is no such
        job."""
        with self._lock:
            job = self.jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled.set()
            if job.state == "queued":
                self._waiting.remove(job)
            running = job.state == "running"
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        log.info("job %s %s", job_id, "cancelled" if job.state in ("queued", "running")
                 else "deleted")
        return True

    def expire(self, now: Optional[float] = None) -> List[str]:
        """Remove the jobs that finished more than keep_seconds ago; their ids."""
        now = time.time() if now is None else now
        with self._lock:
            old = [job for job in self.jobs.values()
                   if job.finished is not None and now - job.finished >= self.keep_seconds]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return [job.id for job in old]

    def close(self) -> None:
        """Stop: cancel every job (a running one stops at its next step), wait for the workers,
        remove every job's folder and release the data folder. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = [job for job in self.jobs.values() if job.state == "running"]
            for job in self.jobs.values():
                job.cancelled.set()
            self._wake.notify_all()
        self._stop.set()
        if running:
            log.info("stopping: the running job stops at its next step")
        try:
            for thread in self._threads:
                thread.join()
        finally:
            # also when a second Ctrl-C ends the wait: the workers are daemons, gone with
            # the process
            for job in list(self.jobs.values()):
                shutil.rmtree(job.folder, ignore_errors=True)
            self.jobs.clear()
            self._release()

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@numba.njit(parallel=True, cache=False)
def _parallel_sum(values: np.ndarray) -> float:
    total = 0.0
    for i in numba.prange(values.shape[0]):
        total += values[i]
    return total


def _check_threads_may_share_kernels(workers: int) -> None:
    """CPU workers share this process, so Numba's parallel kernels must allow calls from many
    threads at once: its TBB or OpenMP threading layer, not the fallback 'workqueue'."""
    try:
        numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: ask for a layer that allows it
        numba.config.THREADING_LAYER = "threadsafe"
    try:
        _parallel_sum(np.ones(2))
        layer = numba.threading_layer()
    except ValueError:
        layer = "workqueue"
    if layer == "workqueue":
        raise ConfigError(f"--workers {workers} on the CPU needs Numba's TBB or OpenMP threading "
                          "layer (pip install tbb), or --workers 1")


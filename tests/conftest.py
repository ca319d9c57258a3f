"""Shared fixtures: real images from examples/ (shipped with the project, see examples/CREDITS.md)
and one VGG. The tests read nothing outside the repository, so a fresh clone runs all of them."""
from __future__ import annotations

import functools
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
from PIL import Image

from analogy import AnalogyConfig, DeviceError, load_image
from analogy.features import load_vgg

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def image_path(name: str) -> Path:
    """A test image from examples/; a missing one is an error, never a skip."""
    path = EXAMPLES / name
    if not path.is_file():
        raise FileNotFoundError(f"test image {path} is missing: the tests need the images shipped "
                                "in examples/")
    return path


@functools.lru_cache(maxsize=None)
def no_gpu_reason() -> str:
    """Why the `gpu` tests cannot run here ("" when they can)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 runs the CUDA kernels in the simulator, not on a GPU"
    import torch

    from analogy.kernels import resolve_device

    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    try:
        resolve_device("cuda")
    except DeviceError as exc:
        return str(exc)
    return ""


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where the CUDA kernels run on a GPU, and are skipped with the reason
    elsewhere."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and no_gpu_reason():
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {no_gpu_reason()}")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vgg():
    return load_vgg("caffe", "cpu")


@pytest.fixture(scope="session")
def skyline() -> np.ndarray:
    return load_image(image_path("skyline.jpg"))


@pytest.fixture(scope="session")
def starry() -> np.ndarray:
    return load_image(image_path("starry_night.jpg"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load_image(image_path("astronaut.jpg"))


@pytest.fixture
def images(tmp_path, skyline, starry) -> Path:
    """A folder with two small real images: a.png (a crop of the skyline) and b.png (of the
    painting)."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(skyline[:96, :128]).save(folder / "a.png")
    Image.fromarray(starry[:96, :112]).save(folder / "b.png")
    return folder


@pytest.fixture
def small_config() -> AnalogyConfig:
    """Small working size and the preview's deconvolution, so that a whole analogy takes about a
    second on two cores (for tests of everything but the result's quality)."""
    return AnalogyConfig(size=96).as_preview()


def assert_one_line_error(res, *words) -> None:
    """A click result that failed with one line of output holding each of `words`."""
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def no_outputs(folder: Path) -> bool:
    """Whether `folder` is absent or empty."""
    return not folder.exists() or not any(folder.iterdir())


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


class Command:
    """`analogy ARGS` running in its own process group (as a command started from a terminal),
    its output (stdout and stderr together) read as it comes, so that a test acts on a line the
    command prints, never after a time. `code`, if given, is run with `python -c` instead of
    cli.py (it ends by calling cli.entry()); `python` options go before either. A bar redrawn with
    carriage returns gives a line per drawing."""

    def __init__(self, args: Sequence, code: Optional[str] = None, python: Sequence[str] = (),
                 stdin: bool = False) -> None:
        program = ["-c", code] if code is not None else [str(ROOT / "cli.py")]
        self.proc = subprocess.Popen([sys.executable, *python, *program, *map(str, args)], cwd=ROOT,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: List[str] = []  # every line read so far
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        pending = b""
        for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 1 << 16), b""):
            *complete, pending = re.split(rb"[\r\n]", pending + chunk)
            for line in complete:
                self._queue.put(line.decode("utf-8", "replace"))
        self._queue.put(pending.decode("utf-8", "replace"))
        self._queue.put(None)

    def _next(self, timeout: float) -> Optional[str]:
        if self._ended:
            return None
        try:
            line = self._queue.get(timeout=timeout)  # (a guard against a hang, not a wait)
        except queue.Empty:
            raise AssertionError(f"no output for {timeout} s; so far: {self.lines[-20:]}") from None
        if line is None:
            self._ended = True
        else:
            self.lines.append(line)
        return line

    def wait_for(self, text: str, timeout: float = 300) -> str:
        """The next line that holds `text`; an assertion error if the command ends first."""
        while True:
            line = self._next(timeout)
            if line is None:
                raise AssertionError(f"the command ended before printing {text!r}: "
                                     f"{self.lines[-20:]}")
            if text in line:
                return line

    def send(self, sig: int, group: bool = False) -> None:
        """Signal the command (with `group`, its whole process group, as Ctrl-C in a terminal
        does)."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def reply(self, line: str = "") -> None:
        """Write a line to the command's standard input (when a test's `code` waits for it)."""
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # it has ended
            pass

    def finish(self, timeout: float = 300) -> Tuple[int, List[str]]:
        """Its exit status and every non-blank line it printed."""
        status = self.proc.wait(timeout=timeout)
        while self._next(timeout) is not None:
            pass
        return status, [line for line in self.lines if line.strip()]

    def kill(self) -> None:
        """SIGKILL, if it still runs (a test's clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def command():
    """Start Commands (see there) that are killed, if still running, when the test ends."""
    started: List[Command] = []

    def start(*args, **options) -> Command:
        started.append(Command(*args, **options))
        return started[-1]

    yield start
    for c in started:
        c.kill()


#: A line of the command's progress, as printed where stderr is not a terminal ("analogy 2/7: …",
#: "batch 1/4: …").
PROGRESS_LINE = re.compile(r"(analogy|batch) \d+/\d+: ")


def without_progress(lines: Sequence[str]) -> List[str]:
    """`lines` less the progress lines."""
    return [line for line in lines if not PROGRESS_LINE.match(line)]


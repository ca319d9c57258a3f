"""Shared fixtures: real images from examples/ (shipped with the project, see examples/CREDITS.md)
and one VGG. The tests read nothing outside the repository, so a fresh clone runs all of them."""
from __future__ import annotations

from pathlib import Path

import functools
import os

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
        raise FileNotFoundError(f"test image {path} is missing: the tests need the images shipped in examples/")
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
    """`gpu` tests run where the CUDA kernels run on a GPU, and are skipped with the reason elsewhere."""
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
    """A folder with two small real images: a.png (a crop of the skyline) and b.png (of the painting)."""
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

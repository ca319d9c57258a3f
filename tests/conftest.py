"""Shared fixtures: real images from ../shared/images (or the bundled examples) and one VGG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analogy import AnalogyConfig, load_image
from analogy.features import load_vgg

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
EXAMPLES = ROOT / "examples"


def image_path(name: str) -> Path:
    """A test image by file name, from ../shared/images, else from examples/."""
    for folder in (SHARED, EXAMPLES):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"test image {name} not found in {SHARED} or {EXAMPLES}")


@pytest.fixture(scope="session")
def vgg():
    return load_vgg("caffe", "cpu")


@pytest.fixture(scope="session")
def skyline() -> np.ndarray:
    return load_image(image_path("skyline-sf-dusk-back.jpeg"))


@pytest.fixture(scope="session")
def starry() -> np.ndarray:
    return load_image(image_path("starry_night.jpg"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load_image(image_path("astronaut.png"))


@pytest.fixture
def small_config() -> AnalogyConfig:
    """Small working size so that a whole analogy takes about a second on two cores."""
    return AnalogyConfig(size=96)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)

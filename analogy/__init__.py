"""Deep Image Analogy (Liao et al., SIGGRAPH 2017) on VGG19 features, CPU first.

    >>> import analogy
    >>> result = analogy.analogy("photo.png", "painting.png")
    >>> result.a_prime  # the photo's layout in the painting's look, H×W×3 uint8
    >>> analogy.video_analogy("clip.mp4", "painting.png", "clip_painted.mp4")  # a video
"""
from __future__ import annotations

from . import image_io
from .batch import Pair, PairOutcome, batch, pairs_from_lists, pairs_from_manifest
from .config import BLEND_PRESETS, LEVEL_NAMES, AnalogyConfig
from .errors import (
    AnalogyError,
    ConfigError,
    DeviceError,
    InputImageError,
    InputImageWarning,
    OutOfMemoryError,
    OutputError,
    WeightsError,
)
from .features import FeatureCache, VGG19Features, load_vgg
from .image_io import load_image
from .kernels import resolve_device
from .metrics import QualityScores, contextual_similarity, quality_scores, structure_distance
from .pipeline import AnalogyResult, Progress, run_analogy, working_size
from .results import save_result
from .runner import Analogy, analogy
from .video import VideoAnalogy, VideoResult, video as video_analogy

__all__ = [
    "Analogy", "AnalogyConfig", "AnalogyResult", "analogy", "load_image", "save_result",
    "AnalogyError", "ConfigError", "DeviceError", "InputImageError", "InputImageWarning",
    "OutOfMemoryError", "OutputError", "WeightsError", "BLEND_PRESETS", "LEVEL_NAMES",
    "working_size", "batch", "Pair", "PairOutcome", "pairs_from_lists", "pairs_from_manifest",
    "FeatureCache", "resolve_device", "run_analogy", "VGG19Features", "load_vgg", "Progress",
    "image_io", "QualityScores", "contextual_similarity", "quality_scores", "structure_distance",
    "VideoAnalogy", "VideoResult", "video_analogy",
]
__version__ = "0.1.0"

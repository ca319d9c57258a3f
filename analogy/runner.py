"""Running analogies from Python: `Analogy` keeps VGG19 loaded for many pairs, `analogy` runs
one."""
from __future__ import annotations

from typing import Optional

from .config import AnalogyConfig
from .errors import ConfigError
from .features import FeatureCache, VGG19Features, load_vgg
from .image_io import ImageLike, file_key, load_image
from .kernels import resolve_device
from .pipeline import AnalogyResult, Progress, run_analogy


class Analogy:
    """Loads VGG19 once and runs many analogies with one configuration.

    >>> runner = Analogy(AnalogyConfig(blend_level=3))
    >>> for photo in photos:
    ...     result = runner(photo, "starry_night.jpg")
    """

    def __init__(self, config: Optional[AnalogyConfig] = None,
                 feature_cache: Optional[FeatureCache] = None, **options) -> None:
        """`feature_cache`, if given, keeps the VGG maps of images given as file paths, so that a
        file used in many pairs (a style image) is analysed once per working size."""
        self.config = (config or AnalogyConfig()).replace(**options)
        self.device = resolve_device(self.config.device)
        self.vgg: VGG19Features = load_vgg(self.config.weights, str(self.device))
        self.feature_cache = feature_cache

    def __call__(self, a: ImageLike, b_prime: ImageLike, progress: Progress = None,
                 **options) -> AnalogyResult:
        """Analogy of structure image `a` and appearance image `b_prime` (paths, PIL images or
        H×W×3 uint8 arrays). `options` override this runner's configuration for this pair
        (fields that change the network, `weights` and `device`, need a new runner)."""
        config = self.config.replace(**options)
        if (config.weights, config.device) != (self.config.weights, self.config.device):
            raise ConfigError("weights and device are fixed per Analogy object; create a new one")
        image_a = load_image(a, "A")
        image_b = load_image(b_prime, "B′")
        return run_analogy(image_a, image_b, config, self.vgg, progress, cache=self.feature_cache,
                           keys=(file_key(a), file_key(b_prime)))


def analogy(a: ImageLike, b_prime: ImageLike, config: Optional[AnalogyConfig] = None,
            progress: Progress = None, **options) -> AnalogyResult:
    """One Deep Image Analogy: A′ (A's layout, B′'s look) and B (B′'s layout, A's look).

    Options are AnalogyConfig fields, e.g. ``analogy(a, b, ratio=1.0, blend_level=3, seed=1)``.
    """
    return Analogy(config, **options)(a, b_prime, progress)

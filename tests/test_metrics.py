"""The quality scores (analogy.metrics) on real images: what they give for the extremes."""
from __future__ import annotations

import numpy as np
import pytest

from analogy.metrics import contextual_similarity, quality_scores, structure_distance


def test_contextual_similarity_of_an_image_to_itself_is_one(starry, vgg):
    assert contextual_similarity(starry, starry, vgg) == pytest.approx(1.0, abs=1e-3)


def test_contextual_similarity_of_unrelated_images_is_small(skyline, astronaut, starry, vgg):
    for x, y in ((skyline, astronaut), (astronaut, starry)):
        assert contextual_similarity(x, y, vgg) < 0.05


def test_contextual_similarity_rises_with_the_target_s_content(starry, skyline, vgg):
    """Half of the painting pasted into the photo makes it far more the painting's than the photo
    alone: the score measures content, not layout."""
    h, w = skyline.shape[:2]
    from PIL import Image

    painting = np.asarray(Image.fromarray(starry).resize((w, h)))
    mixed = skyline.copy()
    mixed[:, : w // 2] = painting[:, : w // 2]
    assert contextual_similarity(mixed, starry, vgg) > 4 * contextual_similarity(skyline, starry, vgg)


def test_structure_distance_is_zero_for_the_image_and_large_for_another(skyline, starry, vgg):
    assert structure_distance(skyline, skyline, vgg) == 0.0
    assert structure_distance(starry, skyline, vgg) > 0.1
    # the same layout a little blurred stays close
    from PIL import Image, ImageFilter

    blurred = np.asarray(Image.fromarray(skyline).filter(ImageFilter.GaussianBlur(1)))
    assert structure_distance(blurred, skyline, vgg) < 0.5 * structure_distance(starry, skyline, vgg)


def test_quality_scores_of_a_result(skyline, starry, vgg):
    """A′ = B′ itself and B = A itself would be perfect style scores (1.0) with B′'s and A's
    structures."""
    from PIL import Image

    h, w = skyline.shape[:2]
    painting = np.asarray(Image.fromarray(starry).resize((w, h)))
    scores = quality_scores(painting, skyline, skyline, painting, vgg)
    assert scores.style_a_prime == pytest.approx(1.0, abs=1e-3)
    assert scores.style_b == pytest.approx(1.0, abs=1e-3)
    assert scores.structure_a_prime > 0.1 and scores.structure_b > 0.1


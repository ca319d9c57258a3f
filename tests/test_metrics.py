"""The quality scores (analogy.metrics) on real images: what they give for the extremes."""
from __future__ import annotations

import numpy as np
import pytest

import analogy
from analogy import AnalogyConfig
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
    assert (contextual_similarity(mixed, starry, vgg)
            > 4 * contextual_similarity(skyline, starry, vgg))


def test_structure_distance_is_zero_for_the_image_and_large_for_another(skyline, starry, vgg):
    assert structure_distance(skyline, skyline, vgg) == 0.0
    assert structure_distance(starry, skyline, vgg) > 0.1
    # the same layout a little blurred stays close
    from PIL import Image, ImageFilter

    blurred = np.asarray(Image.fromarray(skyline).filter(ImageFilter.GaussianBlur(1)))
    assert (structure_distance(blurred, skyline, vgg)
            < 0.5 * structure_distance(starry, skyline, vgg))


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


@pytest.mark.slow
def test_defaults_take_the_appearance_s_look_where_the_preview_keeps_a_s_colours(
        astronaut, starry, vgg):
    """The astronaut (white suit, red and blue flag, skin) with The Starry Night (blues and
    yellows), at working size 64: A′ at the defaults (the original's deconvolution: two levels
    down, L-BFGS from B′'s voted features) is made of far more of the
    painting than the preview's (one level down, 10 iterations from A's own features), which
    keeps A's colours (the figures are printed; the README's Quality section gives them)."""
    config = AnalogyConfig(size=64)
    full = analogy.analogy(astronaut, starry, config)
    preview = analogy.analogy(astronaut, starry, config.as_preview())
    full_a, preview_a = (contextual_similarity(full.a_prime, starry, vgg),
                         contextual_similarity(preview.a_prime, starry, vgg))
    full_b, preview_b = (contextual_similarity(full.b, astronaut, vgg),
                         contextual_similarity(preview.b, astronaut, vgg))
    print(f"CX(A′, B′): defaults {full_a:.3f}, preview {preview_a:.3f}; CX(B, A): {full_b:.3f}, "
          f"{preview_b:.3f}")
    assert full_a > 2 * preview_a and full_b > 2 * preview_b
    assert full.quality(vgg).style_a_prime == pytest.approx(full_a)

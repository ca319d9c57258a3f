"""Photo mode (WLS refinement) and the forward–backward confidence of the NNFs, on real images."""
import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from click.testing import CliRunner
from PIL import Image

import analogy
from analogy import AnalogyConfig, ConfigError
from analogy.config import PREVIEW
from analogy.nnf import consistency_confidence, identity_nnf
from analogy.refinement import (
    WLSSolver,
    fast_wls_smooth,
    refine_photo,
    wls_matrix,
    wls_smooth,
    wls_weights,
)
from cli import main

from .conftest import psnr


def _grade(image: np.ndarray) -> np.ndarray:
    """A colour grade: per-channel gamma and gain, and a lift of the blue channel."""
    x = image / 255.0
    graded = np.stack([1.05 * x[..., 0] ** 0.8, 0.95 * x[..., 1] ** 1.1,
                       0.85 * x[..., 2] ** 1.3 + 0.05], axis=-1)
    return np.clip(np.rint(255.0 * graded), 0, 255).astype(np.uint8)


def _gradient_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of the luminance gradients (both directions) of two images of one size."""
    def grads(image):
        lum = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.concatenate([np.diff(lum, axis=0).ravel(), np.diff(lum, axis=1).ravel()])

    return float(np.corrcoef(grads(x), grads(y))[0, 1])


@pytest.fixture(scope="module")
def graded_pair(astronaut):
    """A (astronaut at 250×247) and B′ = A moved by (6, 9) px and colour-graded; the true A′ is A
    graded."""
    image = astronaut[::2, ::2]
    dy, dx = 6, 9
    h, w = image.shape[0] - dy, image.shape[1] - dx
    a = np.ascontiguousarray(image[:h, :w])
    b_prime = _grade(np.ascontiguousarray(image[dy:, dx:]))
    return a, b_prime, _grade(a)


def test_photo_mode_is_closer_to_the_true_answer(graded_pair):
    a, b_prime, truth = graded_pair
    result = analogy.analogy(a, b_prime, size=96, blend_level=3, photo=True, **PREVIEW)
    raw, refined = result.a_prime_raw, result.a_prime
    assert refined.shape == raw.shape == a.shape and refined.dtype == np.uint8
    p_raw, p_ref = psnr(raw, truth), psnr(refined, truth)
    g_raw, g_ref = _gradient_correlation(raw, a), _gradient_correlation(refined, a)
    g_truth = _gradient_correlation(truth, a)
    print(f"PSNR to the true A′: {p_raw:.1f} → {p_ref:.1f} dB; gradient correlation with A: "
          f"{g_raw:.2f} → {g_ref:.2f} (true A′: {g_truth:.2f}); refinement "
          f"{result.timings['refinement']:.2f}s")
    assert p_ref > p_raw + 3.0
    # the refinement removes most of what is left of the raw A′'s gradient mismatch with A
    assert g_ref > 0.95 and 1 - g_ref < 0.25 * (1 - g_raw)
    # B is refined too, with B′ as its structure
    assert result.b.shape == b_prime.shape and not np.array_equal(result.b, result.b_raw)
    assert "refinement" in result.timings


def test_without_photo_mode_nothing_is_refined(graded_pair):
    a, b_prime, _ = graded_pair
    result = analogy.analogy(a, b_prime, size=48, **PREVIEW)
    assert result.a_prime_raw is result.a_prime and result.b_raw is result.b
    assert "refinement" not in result.timings


def test_flat_images_and_identity_are_unchanged(skyline):
    flat_a = np.full((40, 50, 3), (30, 120, 200), np.uint8)
    flat_result = np.full((40, 50, 3), (210, 40, 90), np.uint8)
    assert np.array_equal(refine_photo(flat_result, flat_a), flat_result)
    assert np.array_equal(refine_photo(flat_a, flat_a), flat_a)
    crop = skyline[100:220, 150:300]
    assert np.array_equal(refine_photo(crop, crop), crop)


def test_output_stays_in_range_without_wrapping(skyline):
    """Extreme case: a black-and-white structure and its colour negative as the result."""
    lum = skyline[150:280, 100:260].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    structure = np.repeat(np.where(lum > lum.mean(), 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    result = 255 - skyline[150:280, 100:260]
    refined = refine_photo(result, structure)
    unclipped = structure + fast_wls_smooth(result.astype(np.float64) - structure, structure)
    assert refined.dtype == np.uint8
    assert unclipped.min() < -1 or unclipped.max() > 256  # the case does leave the range
    assert np.abs(refined.astype(np.float64) - np.clip(unclipped, 0, 255)).max() <= 0.5 + 1e-6


def test_fast_smoother_is_close_to_the_exact_solve(starry, skyline):
    """The fast global smoother (rows, then columns, three times) against the exact sparse solve of
    the same WLS system: within a few grey levels of a signal that spans the whole range."""
    guide = starry[100:300, 200:460]
    values = skyline[:200, :260].astype(np.float64) - guide
    exact = WLSSolver(guide).smooth(values)
    fast = fast_wls_smooth(values, guide)
    assert fast.shape == values.shape and fast.dtype == np.float32
    assert np.abs(fast - exact).mean() < 2.5 < np.abs(values - exact).mean()
    assert np.allclose(fast_wls_smooth(np.full(guide.shape[:2], 7.0), guide), 7.0, atol=1e-3)


def test_wls_solution_matches_a_plain_sparse_solve(starry):
    guide = starry[200:290, 300:410]
    values = starry[100:190, 50:160].astype(np.float64)
    smooth = WLSSolver(guide).smooth(values)
    matrix = wls_matrix(*wls_weights(guide))
    exact = scipy.sparse.linalg.spsolve(matrix, values.reshape(-1, 3)).reshape(values.shape)
    assert np.abs(smooth - exact).max() < 1e-3
    # the data term keeps every channel's sum; a constant is a fixed point
    assert np.allclose(smooth.sum(axis=(0, 1)), values.sum(axis=(0, 1)), rtol=1e-6)
    assert np.allclose(WLSSolver(guide).smooth(np.full(guide.shape[:2], 7.0)), 7.0)
    # edge-aware: across the guide's edges less is smoothed away than with a flat guide
    flat = np.full_like(guide, 128)
    assert (_gradient_correlation(wls_smooth(guide, guide), guide)
            > _gradient_correlation(wls_smooth(guide, flat), guide))


def test_config_validates_photo_parameters():
    assert AnalogyConfig().photo is False
    for bad in (dict(wls_lambda=0), dict(wls_alpha=-1), dict(wls_eps=0), dict(confidence_sigma=0)):
        with pytest.raises(ConfigError):
            AnalogyConfig(**bad)


def test_confidence_of_identity_nnfs_is_exactly_one():
    nnf = identity_nnf((37, 53), (37, 53))
    conf = consistency_confidence(nnf, nnf)
    assert conf.dtype == torch.float32 and conf.shape == (37, 53)
    assert bool((conf == 1).all())
    # a round trip that misses by d pixels gets exp(−d²/2s²), s = sigma × long side
    moved = nnf.clone()
    moved[..., 1] = (moved[..., 1] + 2).clamp(max=52)
    conf = consistency_confidence(moved, nnf, sigma=0.1)
    assert float(conf[0, 0]) == pytest.approx(np.exp(-4 / (2 * 5.3**2)), rel=1e-5)


def test_confidence_of_an_image_with_itself(skyline):
    result = analogy.analogy(skyline, skyline, size=64, **PREVIEW)
    for side in ("ab", "ba"):
        conf = result.confidence(side)
        assert conf.shape == skyline.shape[:2] and conf.dtype == np.float32
        assert (conf == 1).mean() >= 0.95


def test_confidence_is_low_where_a_has_no_counterpart(skyline, astronaut):
    """A = the skyline with a face pasted into the sky; B′ = the skyline. The face has no
    counterpart in B′, while what it covers (sky) still has one elsewhere in A."""
    y0, x0, side = 10, 200, 120
    face = np.asarray(Image.fromarray(astronaut[60:300, 140:380])
                      .resize((side, side), Image.Resampling.LANCZOS))
    a = skyline.copy()
    a[y0 : y0 + side, x0 : x0 + side] = face
    inside = np.zeros(a.shape[:2], bool)
    inside[y0 : y0 + side, x0 : x0 + side] = True
    conf = analogy.analogy(a, skyline, size=96, **PREVIEW).confidence()
    print(f"mean confidence: pasted face {conf[inside].mean():.2f}, elsewhere "
          f"{conf[~inside].mean():.2f}")
    assert conf[inside].mean() < 0.5
    assert conf[~inside].mean() > 0.8


def test_cli_photo_and_confidence_files(tmp_path, skyline, astronaut):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(skyline[:150, :200]).save(a)
    Image.fromarray(_grade(skyline[10:160, 20:220])).save(b)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [str(a), str(b), "-o", str(out), "--size", "64",
                                    "--preview", "--photo", "--save-confidence"])
    assert res.exit_code == 0, res.output
    for name in ("A_prime.png", "B.png", "confidence_ab.png", "confidence_ba.png"):
        assert (out / name).exists(), name
    conf = Image.open(out / "confidence_ab.png")
    assert conf.mode == "L" and conf.size == (200, 150)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

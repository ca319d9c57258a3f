"""AnalogyConfig: every field validated with a one-line message, `replace`, and the level table."""
import numpy as np
import pytest

from analogy import LEVEL_NAMES, AnalogyConfig, ConfigError


@pytest.mark.parametrize("field,value,words", [
    ("deconv_history", 0, "deconv_history must be a whole number ≥ 1"),
    ("kappa", -1.0, "kappa must be a number > 0"),
    ("tau", 1.5, "tau must be a number in [0, 1)"),
    ("min_long_side", 800, "min_long_side must be at most max_long_side (700)"),
    ("max_area", 0, "max_area must be a whole number ≥ 1"),
    ("ratio", float("nan"), "ratio must be a number in (0, 4]"),
    ("ratio", None, "ratio must be a number in (0, 4], not None"),
    ("size", 10, "at least 48"),
    ("size", 200.5, "size must be a whole number"),
    ("patch_sizes", (3, 3, 4, 5, 5), "patch sizes must be odd"),
    ("iterations", (10, 10), "iterations needs one value per level"),
    ("iterations", -1, "iterations must be whole numbers ≥ 0"),
    ("radii", (None, 0, 6, 4, 4), "radii must be whole numbers ≥ 1 or None"),
    ("band_height", 0, "band_height must be a whole number ≥ 1"),
    ("blend_level", 4, "blend_level must be 1, 2 or 3"),
    ("deconv_iterations", -3, "deconv_iterations must be a whole number ≥ 0"),
    ("deconv_iterations", (50, 50), "one per deconvolution (4, relu5_1 → relu4_1 first)"),
    ("deconv_iterations", (50, 50, 50, -1), "deconv_iterations must be a whole number ≥ 0"),
    ("deconv_layers_down", 3, "deconv_layers_down must be 1 or 2"),
    ("deconv_layers_down", (1, 3, 2, 2), "deconv_layers_down must be 1 or 2, or one per"),
    ("deconv_layers_down", (1, 2), "one per deconvolution (4, relu5_1 → relu4_1 first)"),
    ("deconv_tolerance", -0.1, "deconv_tolerance must be a number ≥ 0"),
    ("deconv_gradient_tolerance", float("inf"), "deconv_gradient_tolerance must be a number ≥ 0"),
    ("deconv_start", "image", "deconv_start must be voted or structure"),
    ("final_patch_size", 2, "patch sizes must be odd"),
    ("photo", "yes", "photo must be True or False"),
    ("wls_lambda", 0, "wls_lambda must be a number > 0"),
    ("confidence_sigma", -1, "confidence_sigma must be a number > 0"),
    ("seed", -1, "seed must be a whole number from 0 to 2**62 − 1"),
    ("seed", 2**64, "seed must be a whole number from 0"),
    ("seed", 1.5, "seed must be a whole number"),
    ("weights", "", "weights must be caffe, torchvision or the path of a state dict"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N"),
    ("device", "cuda:x", "device must be auto, cpu, cuda or cuda:N"),
])
def test_every_field_is_validated_in_one_line(field, value, words):
    with pytest.raises(ConfigError) as info:
        AnalogyConfig(**{field: value})
    message = str(info.value)
    assert words in message and "\n" not in message, message
    with pytest.raises(ConfigError):
        AnalogyConfig().replace(**{field: value})


def test_valid_values_are_kept():
    config = AnalogyConfig(device="cuda:1", seed=2**62 - 1, iterations=3, tau=0.0, size=48)
    assert config.device == "cuda:1" and config.seed == 2**62 - 1
    assert config.iterations == (3,) * len(LEVEL_NAMES)


def test_deconvolution_iterations_per_level():
    """One count for every deconvolution, or one each (a list is taken as a tuple); the finest
    level deconvolves nothing."""
    assert [level.deconv_iterations for level in AnalogyConfig().levels()] == [10, 10, 50, 50, 0]
    assert [level.deconv_iterations for level in AnalogyConfig(deconv_iterations=25).levels()
            ] == [25, 25, 25, 25, 0]
    config = AnalogyConfig(deconv_iterations=[0, 10, 20, 30])
    assert config.deconv_iterations == (0, 10, 20, 30)
    assert [level.deconv_iterations for level in config.levels()] == [0, 10, 20, 30, 0]


def test_deconvolution_depth_per_level_reaches_the_run(astronaut):
    """deconv_layers_down takes one value per deconvolution too, and a run follows it: the
    relu5_1 deconvolution one level down evaluates a smaller sub-network than two down, so its
    loss starts elsewhere, and the identity analogy still gives the image back."""
    import analogy

    config = AnalogyConfig(deconv_layers_down=[1, 1, 2, 2])
    assert [level.deconv_layers_down for level in config.levels()][:4] == [1, 1, 2, 2]
    image = astronaut[::8, ::8]
    one, two = (analogy.analogy(image, image[:, ::-1], size=48, deconv_iterations=2,
                                deconv_layers_down=down) for down in ([1, 1, 2, 2], 2))
    assert one.levels[0]["deconv_ab_loss"][0] != two.levels[0]["deconv_ab_loss"][0]
    same = analogy.analogy(image, image, size=48, deconv_iterations=2,
                           deconv_layers_down=[1, 1, 2, 2])
    assert np.array_equal(same.a_prime, image)


def test_replace_can_clear_a_field_and_refuses_unknown_ones():
    config = AnalogyConfig(size=256)
    assert config.replace(size=None).size is None
    assert config.replace(seed=4).size == 256
    with pytest.raises(ConfigError, match="unknown option 'sise'"):
        config.replace(sise=128)
    with pytest.raises(ConfigError, match="unknown option 'alphas'"):
        config.replace(alphas=(0.1, 0.1, 0.1, 0.1))  # derived from blend_level


def test_level_table_follows_the_config():
    config = AnalogyConfig(blend_level=3, patch_sizes=(3, 3, 5, 5, 7), radii=(None, 8, 6, 4, 2),
                           iterations=(1, 2, 3, 4, 5), seed=7)
    levels = config.levels()
    assert [lv.name for lv in levels] == list(LEVEL_NAMES)
    assert [lv.layer for lv in levels] == [5, 4, 3, 2, 1]
    assert [lv.patch_size for lv in levels] == [3, 3, 5, 5, 7]
    assert [lv.radius for lv in levels] == [None, 8, 6, 4, 2]
    assert [lv.iterations for lv in levels] == [1, 2, 3, 4, 5]
    assert [lv.alpha for lv in levels] == [None, 0.9, 0.8, 0.7, 0.2]
    assert len({lv.seed for lv in levels}) == 5 and all(lv.seed >= 7 for lv in levels)


def test_defaults_are_the_original_s_deconvolution_and_preview_is_the_fast_one():
    """The original's deconvolution (two levels down, its gradient test, the voted start), with
    10 L-BFGS iterations at the two coarsest levels and 50 below where it runs 100 at every level:
    the same scores on the development pairs."""
    config = AnalogyConfig()
    assert (config.deconv_layers_down, config.deconv_iterations,
            config.deconv_gradient_tolerance) == (2, (10, 10, 50, 50), 1e-4)
    assert config.deconv_start == "voted" and config.deconv_history == 4
    preview = config.replace(seed=3, blend_level=3).as_preview()
    assert (preview.deconv_layers_down, preview.deconv_iterations,
            preview.deconv_start) == (1, 10, "structure")
    assert (preview.seed, preview.blend_level) == (3, 3)  # the rest is kept

"""The `analogy` command end to end, and its handling of bad input."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from analogy import AnalogyConfig, load_image
from cli import main

from .conftest import assert_one_line_error, no_outputs

ROOT = Path(__file__).resolve().parents[1]


def _save(path, array, mode=None, **kw):
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path, **kw)
    return path


@pytest.fixture
def pair(tmp_path, skyline, starry):
    a = _save(tmp_path / "a.png", skyline[:150, :200])
    b = _save(tmp_path / "b.jpg", starry[:170, :130])
    return a, b


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_end_to_end_writes_both_images_at_input_sizes(pair, tmp_path):
    a, b = pair
    out = tmp_path / "out"
    res = _run(a, b, "-o", out, "--size", "64", "--preview", "--save-nnf", "--save-flow")
    assert res.exit_code == 0, res.output
    assert Image.open(out / "A_prime.png").size == (200, 150)
    assert Image.open(out / "B.png").size == (130, 170)
    assert np.load(out / "nnf_ab.npy").shape == (150, 200, 2)
    assert np.load(out / "nnf_ba.npy").shape == (170, 130, 2)
    assert Image.open(out / "flow_ab.png").size == (200, 150)
    assert "total" in res.output
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_installed_command_quiet(pair, tmp_path):
    a, b = pair
    out = tmp_path / "quiet"
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), str(a), str(b), "-o", str(out),
                           "--size", "48", "--preview", "-q"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert (out / "A_prime.png").exists() and (out / "B.png").exists()




def test_missing_file(pair, tmp_path):
    _, b = pair
    out = tmp_path / "o"
    res = _run(tmp_path / "nope.png", b, "-o", out, "--size", "64", "--preview")
    assert_one_line_error(res, "nope.png", "no such file")
    assert no_outputs(out)


def test_text_file_named_png(pair, tmp_path):
    _, b = pair
    fake = tmp_path / "fake.png"
    fake.write_text("this is not an image\n")
    out = tmp_path / "o"
    res = _run(fake, b, "-o", out, "--size", "64", "--preview")
    assert_one_line_error(res, "fake.png", "not an image")
    assert no_outputs(out)


def test_truncated_png(pair, tmp_path):
    a, b = pair
    data = Path(a).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    res = _run(cut, b, "-o", out, "--size", "64", "--preview")
    assert_one_line_error(res, "cut.png", "truncated")
    assert no_outputs(out)


def test_output_folder_that_cannot_be_created(pair, tmp_path):
    a, b = pair
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _run(a, b, "-o", blocker / "sub", "--size", "64", "--preview")
    assert_one_line_error(res, str(blocker), "is a file, not a folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_read_only_output_folder(pair, tmp_path):
    a, b = pair
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        res = _run(a, b, "-o", out, "--size", "64", "--preview")
        assert_one_line_error(res, "cannot write")
        assert not any(out.iterdir())
    finally:
        out.chmod(0o755)


def test_too_small_image_names_the_minimum(pair, tmp_path, skyline):
    _, b = pair
    tiny = _save(tmp_path / "tiny.png", skyline[:20, :20])
    out = tmp_path / "o"
    res = _run(tiny, b, "-o", out)
    assert_one_line_error(res, "too small", "32")
    assert no_outputs(out)


def test_cuda_without_gpu_is_a_clear_error(pair, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    a, b = pair
    res = _run(a, b, "-o", tmp_path / "o", "--device", "cuda", "--size", "64", "--preview")
    assert_one_line_error(res, "no cuda device")


def test_other_image_kinds_are_converted(tmp_path, skyline, starry):
    grey = tmp_path / "grey.png"
    Image.fromarray(skyline[:100, :120]).convert("L").save(grey)
    rgba = tmp_path / "rgba.png"
    arr = np.dstack([starry[:90, :110], np.full((90, 110), 128, np.uint8)])
    Image.fromarray(arr).save(rgba)
    pal = tmp_path / "pal.png"
    Image.fromarray(skyline[:80, :80]).convert("P", palette=Image.Palette.ADAPTIVE).save(pal)
    deep = tmp_path / "deep.png"
    Image.fromarray(skyline[:70, :90, 0].astype(np.uint16) * 257).save(deep)
    for path, shape in ((grey, (100, 120)), (rgba, (90, 110)), (pal, (80, 80)), (deep, (70, 90))):
        img = load_image(path)
        assert img.shape == shape + (3,) and img.dtype == np.uint8
    assert np.array_equal(load_image(deep)[..., 0], skyline[:70, :90, 0])
    # RGBA at half opacity is flattened onto white, so it gets lighter
    assert load_image(rgba).mean() > starry[:90, :110].mean()
    res = _run(grey, rgba, "-o", tmp_path / "o", "--size", "48", "--preview", "-q")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "o" / "A_prime.png").size == (120, 100)


def test_bad_option_values(pair, tmp_path):
    a, b = pair
    res = _run(a, b, "-o", tmp_path / "o", "--size", "10")
    assert_one_line_error(res, "at least 48")
    res = _run(a, b, "-o", tmp_path / "o", "--weights", "/no/such/weights.pth", "--size", "64",
               "--preview")
    assert_one_line_error(res, "weights")


def test_mistyped_subcommand_names_the_commands(pair, tmp_path):
    """`analogy bacth …` is not taken for an image path: it says there is no such command."""
    res = CliRunner().invoke(main, ["bacth", "--content", "x", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "No such command 'bacth'" in res.output and "Did you mean 'batch'" in res.output
    assert "run, batch" in res.output
    assert not (tmp_path / "o").exists()


def test_device_takes_a_gpu_index(pair, tmp_path):
    """--device cuda:N is accepted as the API accepts it (without a GPU, it fails as cuda does);
    anything else is refused by the option itself."""
    a, b = pair
    res = _run(a, b, "-o", tmp_path / "o", "--device", "cuda:x")
    assert res.exit_code == 2 and "cuda:N" in res.output
    res = _run(a, b, "-o", tmp_path / "o", "--device", "cuda:1", "--size", "64", "--preview")
    if torch_cuda_available():
        assert res.exit_code == 0 or "cuda" in res.output.lower()
    else:
        assert_one_line_error(res, "no CUDA device")
    assert "invalid value" not in res.output.lower()


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_installed_package_is_complete(tmp_path):
    """Outside the clone, the installed package has every module (a subpackage missing from the
    build configuration would only show here, or on a user's machine)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import analogy, analogy.kernels.cpu, analogy.kernels.cuda, "
                               "analogy.runner, cli; print(analogy.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_preview_option_gives_the_preview_deconvolution_and_explicit_options_still_count():
    from cli import _config

    given = dict(size=None, ratio=None, blend_level=None, iterations=None, deconv_iterations=None,
                 output_size=None, seed=None, weights=None, device="auto", photo=False)
    assert _config(preview=False, **given) == AnalogyConfig()
    assert _config(preview=True, **given) == AnalogyConfig().as_preview()
    assert _config(preview=True, **{**given, "deconv_iterations": 30}).deconv_iterations == 30

"""A′ and B at the output size: the synthesis above the working size (analogy/synthesis.py), the
--output-size choice, the resolution metrics, photo mode at full size and its out-of-memory line."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import analogy
from analogy import AnalogyConfig, ConfigError
from analogy.batch import ManifestError, pairs_from_manifest
from analogy.kernels.cpu import CpuKernels
from analogy.metrics import block_seams, fine_detail
from analogy.pipeline import plan
from analogy.reconstruction import reconstruct
from analogy.synthesis import scales
from cli import main

from .conftest import assert_one_line_error, image_path, no_outputs

#: The fast deconvolution, where what is checked is above the working size.
FAST = AnalogyConfig().as_preview()


@pytest.fixture(scope="module")
def carcassonne() -> np.ndarray:
    return analogy.load_image(image_path("carcassonne.jpg"))


def test_scales_double_up_to_the_output_size():
    # A 12-MP photo from a 336-px working size: ×2 three times, then the exact size; B′ doubles
    # with it (the ratio of their pixels stays the working sizes') and stays at its own size
    steps = scales((256, 336), (3072, 4096), (272, 336), (1200, 1504))
    assert [s.shape_a for s in steps] == [(504, 672), (1008, 1344), (2016, 2688), (3072, 4096)]
    assert [s.shape_b for s in steps] == [(536, 672), (1200, 1504), (1200, 1504), (1200, 1504)]
    assert scales((192, 224), (376, 448), (208, 256), (409, 512)) == [((376, 448), (409, 512))]
    assert scales((192, 224), (192, 224), (208, 256), (208, 256)) == []


def test_output_size_choices(skyline, starry):
    shape_a, shape_b = skyline.shape[:2], starry.shape[:2]
    sizes = plan(shape_a, shape_b, FAST.replace(size=64))
    cases = {"input": (shape_a, shape_b), "working": (sizes.working_a, sizes.working_b),
             200: ((168, 200), (160, 200)), 100000: (shape_a, shape_b)}
    for output_size, (out_a, out_b) in cases.items():
        result = analogy.analogy(skyline, starry, FAST, size=64, output_size=output_size)
        assert result.a_prime.shape[:2] == out_a and result.b.shape[:2] == out_b, output_size
        assert result.nnf_ab.shape[:2] == out_a and result.nnf_ba.shape[:2] == out_b
        assert result.working_size_a == sizes.working_a
        assert ("synthesis" in result.timings) == (output_size != "working")
    for bad in ("big", 8, 2.5, -1):
        with pytest.raises(ConfigError, match="output_size"):
            AnalogyConfig(output_size=bad)


def test_block_seams_sees_a_mosaic_and_fine_detail_a_blur(carcassonne):
    from PIL import ImageFilter

    working = (48, 64)
    small = np.asarray(Image.fromarray(carcassonne).resize(working[::-1]))
    mosaic = np.asarray(Image.fromarray(small).resize(carcassonne.shape[1::-1], Image.NEAREST))
    assert block_seams(carcassonne, working) < 1.05 < 1.5 < block_seams(mosaic, working)
    blurred = np.asarray(Image.fromarray(carcassonne).filter(ImageFilter.GaussianBlur(1.5)))
    assert fine_detail(blurred) < 0.5 * fine_detail(carcassonne)


def test_full_size_results_are_crisp_and_seamless(carcassonne, starry):
    """The Carcassonne photo (512×384) with The Starry Night (512×409), about three times their
    working sizes as the 1024-px photo at the default ratio: neither A′ nor B shows the working
    grid, and each has at least 0.85 of the fine detail of the image its pixels come from. The
    working result magnified (what --output-size input was before the synthesis) loses B's."""
    config = FAST.replace(size=160)
    result = analogy.analogy(carcassonne, starry, config)
    seams = (block_seams(result.a_prime, result.working_size_a),
             block_seams(result.b, result.working_size_b))
    detail = (fine_detail(result.a_prime) / fine_detail(starry),
              fine_detail(result.b) / fine_detail(carcassonne))
    kernels = CpuKernels()
    magnified = reconstruct(kernels, carcassonne, kernels.resample_nnf(
        torch.from_numpy(result.working_nnf_ba), result.working_size_a, starry.shape[:2],
        carcassonne.shape[:2]))
    before = fine_detail(magnified) / fine_detail(carcassonne)
    print(f"block seams A′ {seams[0]:.3f}, B {seams[1]:.3f}; detail A′ {detail[0]:.2f}, "
          f"B {detail[1]:.2f} (magnified: {before:.2f})")
    assert max(seams) <= 1.10
    assert min(detail) >= 0.85
    assert before < 0.85


def _fraction_within_one(nnf: np.ndarray, dy: int, dx: int, border: int = 16) -> float:
    h, w = nnf.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    err = np.maximum(np.abs(nnf[..., 0] - (ys - dy)), np.abs(nnf[..., 1] - (xs - dx)))
    return float((err[border:-border, border:-border] <= 1).mean())


def test_known_shift_is_recovered_at_the_output_size_from_half_the_resolution(starry):
    """B′ = a textured crop of A moved by (5, 7) px, analysed at half its size (ratio 0.5), where
    one working pixel is two output pixels: the synthesis finds the shift at the output size."""
    dy, dx, y0, x0, side = 5, 7, 60, 100, 160
    a = np.ascontiguousarray(starry[y0:y0 + side, x0:x0 + side])
    b = np.ascontiguousarray(starry[y0 + dy:y0 + dy + side, x0 + dx:x0 + dx + side])
    result = analogy.analogy(a, b, size=side // 2)
    ab = _fraction_within_one(result.nnf_ab, dy, dx)
    ba = _fraction_within_one(result.nnf_ba, -dy, -dx)
    print(f"within 1 px at the output size: A→B′ {ab:.1%}, B′→A {ba:.1%}")
    assert ab >= 0.95 and ba >= 0.95


def test_identity_stays_exact_above_the_working_size(astronaut):
    image = astronaut[::2, ::2]
    result = analogy.analogy(image, image, size=64)
    assert "synthesis" in result.timings
    assert np.array_equal(result.a_prime, image) and np.array_equal(result.b, image)


def test_command_line_output_size_and_summary(tmp_path, images):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [str(images / "a.png"), str(images / "b.png"), "-o", str(out),
                                    "--size", "48", "--preview", "--output-size", "64"])
    assert res.exit_code == 0, res.output
    assert Image.open(out / "A_prime.png").size == (64, 48)  # a.png is 128×96
    assert Image.open(out / "B.png").size == (64, 55)  # b.png is 112×96
    summary = [line for line in res.output.splitlines() if line.startswith("working sizes")]
    assert len(summary) == 1 and "synthesis" in summary[0] and "A 48×" in summary[0]


def test_manifest_output_size_column(tmp_path, images):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"A,B′,output,output_size\n{images / 'a.png'},{images / 'b.png'},one,"
                        f"working\n{images / 'a.png'},{images / 'b.png'},two,\n", encoding="utf-8")
    first, second = pairs_from_manifest(manifest)
    assert first.options == (("output_size", "working"),) and second.options == ()
    outcomes = list(analogy.batch([first, second], FAST.replace(size=48, output_size=64)))
    assert [o.status for o in outcomes] == ["done", "done"]
    assert Image.open(tmp_path / "one" / "A_prime.png").size == (48, 48)  # the working size
    assert Image.open(tmp_path / "two" / "A_prime.png").size == (64, 48)  # the batch's 64
    assert '"output_size": "working"' in (tmp_path / "one" / "analogy.json").read_text()
    manifest.write_text(f"A,B′,output,output_size\n{images / 'a.png'},{images / 'b.png'},one,"
                        "tiny\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="line 2, column output_size"):
        pairs_from_manifest(manifest)


def test_photo_mode_out_of_memory_at_the_output_size_names_a_size_that_fits(
        tmp_path, images, monkeypatch):
    """Running out of memory in the full-size refinement (NumPy's MemoryError, as a 12-MP photo
    on a small machine gives) is one line naming an --output-size, and nothing is written."""
    import analogy.refinement

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.2 GiB for an array")

    monkeypatch.setattr(analogy.refinement, "fast_wls_smooth", out_of_memory)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [str(images / "a.png"), str(images / "b.png"), "-o", str(out),
                                    "--size", "48", "--preview", "--photo", "-q"])
    assert_one_line_error(res, "out of memory making A′ and B at their output sizes 128×96",
                          "photo mode", "--output-size")
    assert no_outputs(out)


_LIMITED = r"""
import re, resource, sys
from click.testing import CliRunner
from cli import main

def run(out, *options):
    return CliRunner().invoke(main, [sys.argv[1], sys.argv[2], "-o", out, "--size", "48",
                                     "--preview", "--photo", "-q", *options])

run(sys.argv[3] + "/warm", "--output-size", "64")  # kernels compiled, threads started
in_use = int(next(line for line in open("/proc/self/status")
                  if line.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (in_use + 400 * 2**20, resource.RLIM_INFINITY))
first = run(sys.argv[3] + "/full")
print(first.exit_code, first.output.strip())
size = re.search(r"--output-size (\d+)", first.output)
if size:
    second = run(sys.argv[3] + "/fits", "--output-size", size.group(1))
    print(second.exit_code, second.output.strip())
"""


@pytest.mark.slow
def test_a_real_out_of_memory_in_photo_mode_names_an_output_size_that_fits(tmp_path, skyline,
                                                                            starry):
    """An 8-MP photo in photo mode, in a process held to 400 MB more address space than a small
    run needs (ulimit -v): the full-size work fails with torch's or NumPy's own out-of-memory
    error, the command says so in one line with an --output-size, writes nothing, and that
    size then fits."""
    import subprocess
    import sys

    big = tmp_path / "big.png"
    Image.fromarray(skyline).resize((3136, 2632), Image.Resampling.LANCZOS).save(big)
    Image.fromarray(starry).save(tmp_path / "style.png")
    script = tmp_path / "limited.py"
    script.write_text(_LIMITED)
    done = subprocess.run([sys.executable, str(script), str(big), str(tmp_path / "style.png"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    failed, fitted = lines
    assert failed.startswith("1 Error: out of memory making A′ and B at their output sizes "
                             "3136×2632"), failed
    assert no_outputs(tmp_path / "full")
    assert fitted.strip() == "0", fitted
    side = int(failed.split("--output-size ")[1].split()[0])
    assert 1000 <= side < 3136
    assert max(Image.open(tmp_path / "fits" / "A_prime.png").size) == side

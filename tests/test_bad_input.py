"""The bad-input battery: every kind of input a user may hand the command, made here on the fly at
small sizes. Each bad one gives a non-zero status, one line that says what to do and no output;
each odd but usable one gives outputs at the size the user sees."""
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main

from .conftest import assert_one_line_error, no_outputs

SIZE = ["--size", "48", "--preview", "-q"]


def _lines(res):
    return [line for line in res.output.splitlines() if line.strip()]


@pytest.fixture
def good(tmp_path, skyline):
    path = tmp_path / "good.png"
    Image.fromarray(skyline[:64, :80]).save(path)
    return path


def _run(a, b, out, *extra):
    return CliRunner().invoke(main, [str(a), str(b), "-o", str(out), *SIZE, *extra])


def _png_bytes(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _bad_crc(rgb) -> bytes:
    data = bytearray(_png_bytes(rgb))
    i = data.index(b"IDAT")
    data[i + 8] ^= 0xFF  # a byte of the compressed data: the chunk's CRC no longer matches
    return bytes(data)


def _truncated_jpeg(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


BAD_FILES = {
    "missing": (None, ["no such file"]),
    "directory": ("dir", ["is a folder"]),
    "empty": (b"", ["not an image"]),
    "text named .png": (b"hello, this is not a picture\n", ["not an image"]),
    "truncated PNG": ("truncated-png", ["truncated or corrupt"]),
    "truncated JPEG": ("truncated-jpeg", ["truncated or corrupt"]),
    "bad CRC": ("bad-crc", ["truncated or corrupt"]),
    "1×1": ("tiny", ["too small", "at least 32"]),
    "31×500": ("thin", ["too small", "at least 32"]),
}


def bad_file_content(kind, rgb) -> bytes:
    """The bytes of a bad file of BAD_FILES (all but the missing file and the folder)."""
    if kind == "truncated-png":
        return _png_bytes(rgb)[:200]
    if kind == "truncated-jpeg":
        return _truncated_jpeg(rgb)
    if kind == "bad-crc":
        return _bad_crc(rgb)
    if kind == "tiny":
        return _png_bytes(rgb[:1, :1])
    if kind == "thin":
        return _png_bytes(np.ascontiguousarray(np.resize(rgb, (500, 31, 3))))
    return kind


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_one_line_and_writes_nothing(tmp_path, good, skyline, case):
    kind, words = BAD_FILES[case]
    path = tmp_path / ("bad.jpg" if case == "truncated JPEG" else "bad.png")
    rgb = skyline[:64, :80]
    if kind == "dir":
        path.mkdir()
    elif kind is not None:
        path.write_bytes(bad_file_content(kind, rgb))
    out = tmp_path / "out"
    for a, b in ((path, good), (good, path)):
        res = _run(a, b, out)
        assert_one_line_error(res, *words)
        assert no_outputs(out)


def test_decompression_bomb_names_the_pixel_count(tmp_path, good, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (400, 300)).save(path)  # 120,000 pixels, over the limit set below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    res = _run(path, good, tmp_path / "out")
    assert_one_line_error(res, "120,000 pixels", "50,000")
    assert no_outputs(tmp_path / "out")


def _image(mode: str, rgb: np.ndarray) -> Image.Image:
    img = Image.fromarray(rgb)
    if mode == "P+transparency":
        img = img.convert("P")
        img.info["transparency"] = 0
        return img
    if mode == "I;16":
        img = Image.fromarray(np.ascontiguousarray(rgb[..., 0].astype(np.uint16) * 257))
        assert img.mode.startswith("I;16")
        return img
    if mode == "F":
        return Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0, "F")
    return img.convert(mode)


@pytest.mark.parametrize("mode,fmt", [("L", "png"), ("LA", "png"), ("RGBA", "png"),
                                      ("P+transparency", "png"), ("I;16", "png"), ("F", "tiff"),
                                      ("CMYK", "jpeg"), ("1", "png")])
def test_every_image_mode_is_converted(tmp_path, good, skyline, mode, fmt):
    path = tmp_path / f"img.{fmt}"
    _image(mode, skyline[:70, :90]).save(path, format=fmt.upper())
    out = tmp_path / "out"
    res = _run(path, good, out)
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(out / "A_prime.png")).shape == (70, 90, 3)


def test_lying_extension_is_read_by_content(tmp_path, good, skyline):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(_png_bytes(skyline[:64, :80]))
    res = _run(path, good, tmp_path / "out")
    assert res.exit_code == 0, res.output


def test_exif_rotated_jpeg_follows_the_displayed_orientation(tmp_path, good, skyline):
    """Stored 80×64 with orientation 6 (rotate 90°): shown, and analysed, as 64×80."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(skyline[:64, :80]).save(path, exif=exif.tobytes())
    out = tmp_path / "out"
    res = _run(path, good, out)
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(out / "A_prime.png")).shape == (80, 64, 3)


@pytest.mark.parametrize("fmt", ["gif", "tiff"])
def test_many_frames_use_the_first_and_say_so(tmp_path, good, skyline, fmt):
    path = tmp_path / f"frames.{fmt}"
    frames = [Image.fromarray(skyline[i * 10 : i * 10 + 64, :80]) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    res = CliRunner().invoke(main,
                             [str(path), str(good), "-o", str(out), "--size", "48", "--preview"])
    assert res.exit_code == 0, res.output
    assert any("3 frames" in line and "first" in line for line in _lines(res)), res.output
    assert np.asarray(Image.open(out / "A_prime.png")).shape == (64, 80, 3)


def test_paths_with_spaces_and_non_ascii(tmp_path, good, skyline):
    folder = tmp_path / "mes images été"
    folder.mkdir()
    path = folder / "ciel étoilé 1.png"
    Image.fromarray(skyline[:64, :80]).save(path)
    out = tmp_path / "sortie à côté"
    res = _run(path, good, out)
    assert res.exit_code == 0, res.output
    assert (out / "A_prime.png").exists()


def test_same_file_as_a_and_b_prime_gives_it_back(tmp_path, good):
    out = tmp_path / "out"
    res = _run(good, good, out)
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(out / "A_prime.png")), np.asarray(Image.open(good)))


@pytest.mark.parametrize("option,value,words", [
    ("--size", "10", ["at least 48"]), ("--ratio", "0", ["ratio"]), ("--ratio", "abc", ["ratio"]),
    ("--iterations", "-1", ["iterations"]), ("--deconv-iterations", "-2", ["deconv_iterations"]),
    ("--blend-level", "4", ["blend-level"]), ("--seed", "-1", ["seed"]),
    ("--device", "gpu", ["device"]), ("--output-size", "huge", ["output-size", "working"]),
    ("--output-size", "16", ["output-size", "at least 32"]),
])
def test_invalid_option_values(tmp_path, good, option, value, words):
    res = CliRunner().invoke(main,
                             [str(good), str(good), "-o", str(tmp_path / "out"), option, value])
    assert res.exit_code != 0
    assert all(w.lower() in res.output.lower() for w in words), res.output
    assert [line for line in _lines(res) if line.startswith("Error")], res.output
    assert no_outputs(tmp_path / "out")


@pytest.fixture
def two(tmp_path, skyline, starry):
    Image.fromarray(skyline[:64, :80]).save(tmp_path / "a, with comma.png")
    Image.fromarray(starry[:64, :80]).save(tmp_path / "b.png")
    return tmp_path


MANIFESTS = {
    "missing column": ("A,output\na.png,x\n", 1, ["column", "B"]),
    "extra column": ("A,B',output,notes\n\"a, with comma.png\",b.png,x,hello\n", 0, []),
    "BOM and CRLF": ("\ufeffA,B',output\r\n\"a, with comma.png\",b.png,x\r\n", 0, []),
    "quoted comma": ("A,B',output\n\"a, with comma.png\",b.png,\"out, 1\"\n", 0, []),
    "escaping output": ("A,B',output\nb.png,b.png,../../x\n", 1, ["outside the output folder"]),
    "duplicate outputs": ("A,B',output\nb.png,b.png,x\n\"a, with comma.png\",b.png,./x\n", 1,
                          ["same output folder"]),
    "missing field": ("A,B',output\nb.png,b.png\n", 1, ["expected 3 fields"]),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_manifest_cases(two, case):
    text, code, words = MANIFESTS[case]
    manifest = two / "pairs.csv"
    manifest.write_bytes(text.encode("utf-8"))
    out = two / "out"
    res = CliRunner().invoke(main, ["batch", str(manifest), "-o", str(out), *SIZE])
    assert res.exit_code == code, res.output
    if code:
        assert_one_line_error(res, *words)
        assert no_outputs(out)
    else:
        assert len(list(out.rglob("A_prime.png"))) == 1

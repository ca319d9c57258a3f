"""The last unclear messages (issue 24, items 2–5 and 7–9): each case gives one line that says what
is wrong and what to do, a non-zero exit status, and nothing written; each is refused before any
work. Each test is named after its item."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import analogy
from analogy import AnalogyConfig, working_size
from analogy.features import VGG19Features
from cli import main

from .conftest import assert_one_line_error, no_outputs

ROOT = Path(__file__).resolve().parents[1]
SIZE = ["--size", "48", "--preview", "-q"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _can_mount_read_only() -> bool:
    """Whether this system lets an unprivileged user namespace bind-mount a folder read-only."""
    if not shutil.which("unshare") or not Path("/proc/self/ns/user").exists():
        return False
    probe = 'mount --bind -o ro "$0" "$0" && ! touch "$0/x" 2>/dev/null'
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run(["unshare", "-rm", "sh", "-c", probe, folder],
                              capture_output=True).returncode == 0


def _on_read_only_folder(folder: Path, *args):
    """`analogy ARGS` with `folder` on a read-only file system: a read-only bind mount of it, seen
    only by the command (its own user and mount namespaces), so nothing needs privileges."""
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, str(folder), sys.executable,
                           str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _one_line(proc, *words):
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]


# 2 ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not _can_mount_read_only(),
                    reason="needs unshare and user namespaces to mount read-only")
def test_2_read_only_file_system_says_so(tmp_path, images):
    """It said "permission denied"; the errno's own words are "Read-only file system"."""
    folder = tmp_path / "ro"
    folder.mkdir()
    proc = _on_read_only_folder(folder, images / "a.png", images / "b.png", "-o", folder / "out",
                                "--size", "48")
    _one_line(proc, f"{folder}: cannot write there (Read-only file system)",
              "choose another output folder")
    assert no_outputs(folder)


# 3 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a link to nowhere", "/proc"])
def test_3_batch_output_root_that_cannot_be_made_is_refused_before_any_work(
        tmp_path, images, where):
    """It printed "1 pairs" and then failed each pair alike; now one line before any pair."""
    if where == "/proc":
        if not Path("/proc/self").exists():
            pytest.skip("no /proc here")
        root, first = Path("/proc/analogy-test/out"), "/proc/analogy-test"
    else:
        (tmp_path / "link").symlink_to(tmp_path / "nowhere" / "at-all")
        root, first = tmp_path / "link" / "out", str(tmp_path / "link")
    res = _invoke("batch", "--content", images / "a.png", "--content", images / "b.png",
                  "--style", images / "b.png", "-o", root, "--size", "48")
    assert_one_line_error(res, f"{first}: cannot create it (", "choose another output folder")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(not _can_mount_read_only(),
                    reason="needs unshare and user namespaces to mount read-only")
def test_3_manifest_in_a_read_only_folder_is_refused_before_any_work(tmp_path, images):
    """Without -o the outputs go beside the manifest: a read-only folder is one line up front."""
    (images / "pairs.csv").write_text("A,B',output\na.png,b.png,x\nb.png,a.png,y\n",
                                      encoding="utf-8")
    proc = _on_read_only_folder(images, "batch", images / "pairs.csv", "--size", "48")
    _one_line(proc, f"{images}: cannot write there (Read-only file system)")
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "b.png", "pairs.csv"]


# 4 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["-", "{b}", "-o", "{out}"],
    ["{a}", "-", "-o", "{out}"],
    ["run", "-", "{b}", "-o", "{out}"],
    ["batch", "--content", "-", "--style", "{b}", "-o", "{out}"],
], ids=["A", "B′", "run A", "batch --content"])
def test_4_standard_input_is_one_line(tmp_path, images, args):
    """`analogy - b.jpg -o out` gave click's usage lines and "No such command '-'"."""
    out = tmp_path / "out"
    res = _invoke(*[a.format(a=images / "a.png", b=images / "b.png", out=out) for a in args], *SIZE)
    assert_one_line_error(res, "reading an image from standard input ('-') is not supported",
                          "save it to a file")
    assert no_outputs(out)


def test_4_manifest_from_standard_input_is_one_line(tmp_path):
    res = _invoke("batch", "-", "-o", tmp_path / "out", *SIZE)
    assert_one_line_error(res, "reading a manifest from standard input ('-') is not supported")


# 5 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,shown", [
    (b"missing\xff.png", "$'missing\\377.png'"),
    (b"two\nlines.png", "$'two\\nlines.png'"),
], ids=["not UTF-8", "a newline"])
def test_5_odd_bytes_in_a_missing_name_are_quoted_as_the_shell_does(tmp_path, images, raw, shown):
    """A name that is not UTF-8 was shown as missing\\udcff.png (Python's inner escape); one with a
    newline split the message in two lines. Both are shown as bash quotes them ($'…'), which a
    shell turns back into the same bytes."""
    missing = os.fsencode(str(tmp_path)) + b"/" + raw
    shown = f"$'{tmp_path}/{shown[2:]}"  # the whole path is quoted
    res = _invoke(os.fsdecode(missing), images / "b.png", "-o", tmp_path / "out", *SIZE)
    assert_one_line_error(res, f"Error: {shown}: no such file")
    assert "\\udc" not in res.output
    assert subprocess.run(["bash", "-c", f"printf %s {shown}"],
                          capture_output=True).stdout == missing


# 7 ------------------------------------------------------------------------------------------------
def _vgg_state():
    return VGG19Features().state_dict()


def test_7_weights_with_other_keys_name_the_first_missing_and_unexpected(tmp_path, images):
    path = tmp_path / "prefixed.pt"
    # as saved from DataParallel
    torch.save({"module." + k: v for k, v in _vgg_state().items()}, path)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--weights", path)
    assert_one_line_error(res, "does not fit VGG19", "first features.0.weight",
                          "first unexpected key module.features.0.weight")
    assert no_outputs(tmp_path / "out")


def test_7_weights_of_another_shape_name_the_first_that_differs(tmp_path, images):
    state = _vgg_state()
    state["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--weights", path)
    assert_one_line_error(res, "does not fit VGG19",
                          "features.2.weight is 64×32×3×3 where VGG19 has 64×64×3×3")
    assert no_outputs(tmp_path / "out")


class _RunsCode:
    """A pickle that, loaded without torch's guard, would make a folder (its "code")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_7_a_pickle_that_would_run_code_is_refused_in_our_words(tmp_path, images):
    """It was refused after torch's 370-character message advising weights_only=False."""
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    torch.save({"features.0.weight": _RunsCode(marker)}, path)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--weights", path)
    assert_one_line_error(res, "evil.pt: refused", "could run code",
                          "torch.save(model.state_dict(), path)")
    assert "weights_only" not in res.output
    assert not marker.exists() and no_outputs(tmp_path / "out")


# 8 ------------------------------------------------------------------------------------------------
def _out_of_memory(*args, **kwargs):
    """torch's CPU allocator failing (what a working size of 100000 px does, without trying it)."""
    raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                       "2400000000000 bytes.")


def _total_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_8_out_of_memory_suggests_a_size_that_fits_this_machine(tmp_path, images, monkeypatch):
    """--size 100000 suggested --size 70000, which cannot fit either. The size suggested now must
    at least hold A's and B′'s relu1_1 maps (64 float32 channels a pixel) in this machine's
    memory."""
    monkeypatch.setattr(analogy.pipeline, "_features", _out_of_memory)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", "--size", "100000",
                  "-q")
    assert_one_line_error(res, "out of memory at working sizes 100000×75008")
    suggested = int(re.search(r"--size (\d+)", res.output).group(1))
    config = AnalogyConfig(size=suggested)
    pixels = sum(h * w
                 for h, w in (working_size((96, 128), config), working_size((96, 112), config)))
    assert 64 * 4 * pixels <= _total_memory(), res.output
    assert "GB free here" in res.output
    assert no_outputs(tmp_path / "out")


def test_8_out_of_memory_with_no_size_that_fits_suggests_none(tmp_path, images, monkeypatch):
    monkeypatch.setattr(analogy.pipeline, "_features", _out_of_memory)
    monkeypatch.setattr(analogy.pipeline, "free_memory", lambda device: 10**6)  # 1 MB free
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", "--size", "1000",
                  "-q")
    assert_one_line_error(res, "out of memory", "too little even for the smallest working size")
    assert re.search(r"--size \d", res.output) is None, res.output
    assert no_outputs(tmp_path / "out")


# 9 ------------------------------------------------------------------------------------------------
def test_9_empty_image_file_in_a_manifest_is_caught_before_any_work(tmp_path, images):
    """It passed the up-front check and failed at run time, as "not an image file"."""
    (images / "empty.png").write_bytes(b"")
    manifest = images / "pairs.csv"
    manifest.write_text("A,B',output\na.png,b.png,x\nempty.png,b.png,y\n", encoding="utf-8")
    res = _invoke("batch", manifest, "-o", tmp_path / "out", "--size", "48")
    assert_one_line_error(res, "pairs.csv line 3, column A: 'empty.png' is an empty file (0 bytes)")
    assert no_outputs(tmp_path / "out")


def test_9_empty_image_file_named_in_a_batch_is_caught_before_any_work(tmp_path, images):
    (images / "empty.png").write_bytes(b"")
    res = _invoke("batch", "--content", images / "a.png", "--content", images / "empty.png",
                  "--style", images / "b.png", "-o", tmp_path / "out", "--size", "48")
    assert_one_line_error(res, "empty.png: an empty file (0 bytes)")
    assert no_outputs(tmp_path / "out")

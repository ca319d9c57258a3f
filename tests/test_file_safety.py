"""Never lose a user's file (issue 16): what batch and single runs may delete, overwrite or leave
behind, how resume knows which inputs made a folder, dead and orphaned worker processes, and the
one-line errors for the remaining odd inputs. Each test is named after the case it checks."""
import errno
import os
import re
import select
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import analogy
from analogy import image_io
from analogy.batch import pairs_from_lists
from analogy.image_io import LOCK_NAME
from cli import main

from .conftest import assert_one_line_error, no_outputs

SIZE = ["--size", "48", "--preview", "-q"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _files(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# 1 ------------------------------------------------------------------------------------------------
def test_1_batch_leaves_part_files_it_did_not_make(tmp_path, images):
    """A user's hidden `.thesis.docx.part` in a pair's folder survives a run, a failing pair and a
    --resume skip; only the tool's own stale temporaries (its name pattern) are cleared."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / ".thesis.docx.part").write_text("my thesis")
    (victim / ".A_prime.png.x.part").write_text("someone else's")
    ours = victim / image_io.temporary_name("A_prime.png", "stale1")
    ours.write_bytes(b"left by a killed run")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    manifest = images / "pairs.csv"
    for a in ("broken.png", "a.png"):
        manifest.write_text(f"A,B',output\n{a},b.png,{victim}\n")
        res = _invoke("batch", manifest, "-o", tmp_path, *SIZE)
        assert res.exit_code == (1 if a == "broken.png" else 0), res.output
        assert (victim / ".thesis.docx.part").read_text() == "my thesis"
        assert (victim / ".A_prime.png.x.part").read_text() == "someone else's"
    assert not ours.exists()
    ours.write_bytes(b"left by another killed run")
    res = _invoke("batch", manifest, "-o", tmp_path, *SIZE, "--resume")
    assert res.exit_code == 0, res.output
    assert (victim / ".thesis.docx.part").read_text() == "my thesis"
    assert not ours.exists()


# 2 ------------------------------------------------------------------------------------------------
def test_2_output_names_do_not_depend_on_listing_order(tmp_path, images):
    c = tmp_path / "c"
    c.mkdir()
    Image.open(images / "a.png").save(c / "a.png")
    Image.open(images / "a.png").save(c / "a.jpg")
    style = images / "b.png"
    forward = {p.a.name: p.out.name
               for p in pairs_from_lists([c / "a.png", c / "a.jpg"], [style], tmp_path)}
    backward = {p.a.name: p.out.name
                for p in pairs_from_lists([c / "a.jpg", c / "a.png"], [style], tmp_path)}
    assert forward == backward and len(set(forward.values())) == 2, forward


def test_2_resume_redoes_a_pair_whose_inputs_or_options_changed(tmp_path, images, skyline):
    c = tmp_path / "c"
    c.mkdir()
    Image.fromarray(skyline[:64, :80]).save(c / "a.png")
    out = tmp_path / "out"
    base = ["batch", "--content", c, "--style", images / "b.png", "-o", out, "--size", "48",
            "--preview"]
    assert _invoke(*base, "-q").exit_code == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    first = (folder / "A_prime.png").read_bytes()

    res = _invoke(*base, "--resume")
    assert res.exit_code == 0 and "1 skipped" in res.output, res.output

    Image.fromarray(skyline[-64:, -80:]).save(c / "a.png")  # same name, other pixels
    res = _invoke(*base, "--resume")
    assert res.exit_code == 0 and "1 done" in res.output, res.output
    second = (folder / "A_prime.png").read_bytes()
    assert second != first

    res = _invoke(*base, "--resume", "--seed", "3")  # other options: not the same result
    assert res.exit_code == 0 and "1 done" in res.output, res.output

    Image.fromarray(skyline[:64, :80]).save(c / "a.jpg")  # a second image with the same stem
    res = _invoke(*base, "--resume")
    assert res.exit_code == 0 and "2 done" in res.output, res.output
    made = {p.name for p in out.iterdir() if p.is_dir()}
    assert len(made - {folder.name}) == 2, made


# 3 ------------------------------------------------------------------------------------------------
def test_3_an_output_may_not_replace_an_input(tmp_path, images):
    d = tmp_path / "d"
    d.mkdir()
    Image.open(images / "a.png").save(d / "A_prime.png")
    Image.open(images / "b.png").save(d / "style.png")
    before = (d / "A_prime.png").read_bytes()
    res = _invoke(d / "A_prime.png", d / "style.png", "-o", d, *SIZE)
    assert_one_line_error(res, "A_prime.png", "input")
    assert (d / "A_prime.png").read_bytes() == before and not (d / "B.png").exists()

    manifest = d / "pairs.csv"
    manifest.write_text("A,B',output\nstyle.png,A_prime.png,.\n")
    res = _invoke("batch", manifest, *SIZE)
    assert_one_line_error(res, "A_prime.png", "input")
    assert (d / "A_prime.png").read_bytes() == before and not (d / "B.png").exists()


# 4 ------------------------------------------------------------------------------------------------
def test_4_outputs_are_replaced_all_or_nothing(tmp_path, images):
    out = tmp_path / "out"
    out.mkdir()
    (out / "A_prime.png").write_bytes(b"previous result")
    (out / "B.png").mkdir()
    res = _invoke(images / "a.png", images / "b.png", "-o", out, *SIZE)
    assert_one_line_error(res, "B.png")
    assert (out / "A_prime.png").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["A_prime.png", "B.png"]


def test_4_a_failed_run_leaves_no_folder_it_created(tmp_path, images):
    (images / "broken.png").write_bytes(b"not an image")
    res = _invoke(images / "broken.png", images / "b.png", "-o", tmp_path / "new" / "deeper", *SIZE)
    assert_one_line_error(res, "broken.png")
    assert not (tmp_path / "new").exists()
    res = _invoke("batch", "--content", images / "broken.png", "--style", images / "b.png",
                  "-o", tmp_path / "batch", *SIZE)
    assert res.exit_code == 1 and no_outputs(tmp_path / "batch"), _files(tmp_path / "batch")


# 5, 6 ---------------------------------------------------------------------------------------------
def _children(pid: int):
    """The batch's worker processes (spawned by multiprocessing), not its resource tracker."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_batch(command, images, out, *extra):
    content = images / "content"
    content.mkdir(exist_ok=True)
    with Image.open(images / "a.png") as a:
        for i in range(4):
            a.rotate(90 * i, expand=True).save(content / f"c{i}.png")
    return command(["batch", "--content", content, "--style", images / "b.png", "-o", out,
                    "--size", "160", "--preview", "-j", "2", *extra])


def _working(batch):
    """The worker pids once both are in the middle of a pair: both started one at once, and one of
    them reports relu4_1."""
    batch.wait_for("relu4_1: PatchMatch")
    return _children(batch.proc.pid)


def _wait_until_ended(pid: int, guard: float = 300) -> None:
    """Until process `pid` (not a child of this one) has ended; an assertion error after `guard`
    seconds (a hang, not a slow machine)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], guard)[0], f"process {pid} still running after {guard} s"
    finally:
        os.close(fd)


@pytest.mark.slow
@pytest.mark.parametrize("retries", [0, 1])
def test_5_a_dead_worker_loses_one_attempt_not_the_batch(tmp_path, images, command, retries):
    """SIGKILL one of two workers in the middle of a pair: the worker is replaced and the batch
    goes on; the pair is retried (or, with --retries 0, reported with the reason)."""
    out = tmp_path / "out"
    batch = _start_batch(command, images, out, "--retries", retries)
    workers = _working(batch)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    code, lines = batch.finish()
    output = "\n".join(lines)
    assert "Traceback" not in output, output
    assert "worker process died" in output, output
    done = sorted(p.parent.name for p in out.glob("*/B.png"))
    if retries:
        assert code == 0, output
        assert len(done) == 4 and "4 done" in output, output
    else:
        assert code == 1, output
        assert len(done) == 3 and "3 done" in output and "1 failed" in output, output
    assert not [p for p in out.rglob("*") if p.name.endswith(".part") or p.name == LOCK_NAME]


@pytest.mark.slow
def test_6_workers_exit_when_the_batch_is_killed(tmp_path, images, command):
    out = tmp_path / "out"
    batch = _start_batch(command, images, out)
    workers = _working(batch)
    assert workers
    batch.send(signal.SIGKILL)
    batch.proc.wait()
    try:
        for worker in workers:
            _wait_until_ended(worker)
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


# 7 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_7_option_errors_are_found_once_before_the_workers_start(tmp_path, images, jobs):
    out = tmp_path / "out"
    res = _invoke("batch", "--content", images / "a.png", "--content", images / "b.png",
                  "--style", images / "b.png", "-o", out, "-j", jobs,
                  "--weights", tmp_path / "nonexistent", *SIZE)
    assert_one_line_error(res, "nonexistent")
    assert no_outputs(out)


# 8 ------------------------------------------------------------------------------------------------
def test_8_a_single_run_clears_its_own_stale_temporaries_only(tmp_path, images):
    """What a killed (SIGKILL) run left: removed by the next run on the folder; others' files
    kept."""
    out = tmp_path / "out"
    out.mkdir()
    stale = out / image_io.temporary_name("B.png", "killed")
    stale.write_bytes(b"half a png")
    (out / ".notes.part").write_text("mine")
    res = _invoke(images / "a.png", images / "b.png", "-o", out, *SIZE)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [".notes.part", "A_prime.png", "B.png"]


#: The command, with each output file's writing followed by a line "wrote a temporary" and a wait
#: for a line on stdin: the test's signal comes while the outputs are being written.
WRITING = """
import sys
import analogy.image_io as io
write = io._write_file

def write_and_wait(path, data):
    write(path, data)
    print("wrote a temporary", flush=True)
    sys.stdin.readline()

io._write_file = write_and_wait
sys.argv[0] = "analogy"
import cli
cli.entry()
"""


def test_8_sigterm_while_writing_leaves_no_temporary(tmp_path, images, command):
    """SIGTERM that arrives while the outputs are being written."""
    out = tmp_path / "out"
    run = command([images / "a.png", images / "b.png", "-o", out, *SIZE], code=WRITING, stdin=True)
    run.wait_for("wrote a temporary")
    run.send(signal.SIGTERM)
    run.reply()
    code, lines = run.finish()
    assert code == 143, lines
    assert not out.exists() or _files(out) == [], _files(out)


# 9 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_9_float_tiff_with_nan_or_inf_is_refused(tmp_path, images, value):
    pixels = np.full((64, 64), 0.5, dtype=np.float32)
    pixels[10:20, 10:20] = value
    path = tmp_path / "float.tif"
    Image.fromarray(pixels, mode="F").save(path)
    res = _invoke(path, images / "b.png", "-o", tmp_path / "out", *SIZE)
    assert_one_line_error(res, "float.tif", "NaN or infinite")
    assert no_outputs(tmp_path / "out")


# 10 -----------------------------------------------------------------------------------------------
def test_10_seed_beyond_64_bits(tmp_path, images):
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--seed", str(2**70))
    assert_one_line_error(res, "seed must be a whole number from 0 to 2**62")
    assert no_outputs(tmp_path / "out")


def test_10_weights_file_holding_a_tensor(tmp_path, images):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--weights", tmp_path / "tensor.pt")
    assert_one_line_error(res, "tensor.pt", "state dict")
    assert no_outputs(tmp_path / "out")


def test_10_weights_file_whose_name_holds_a_newline(tmp_path, images):
    path = tmp_path / "two\nlines.pt"
    torch.save(torch.zeros(3), path)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", *SIZE,
                  "--weights", path)
    # quoted as the shell would take it back, so that the message stays one line
    assert_one_line_error(res, "$'", "two\\nlines.pt", "state dict")
    assert no_outputs(tmp_path / "out")


def test_10_nul_byte_in_a_manifest_row(tmp_path, images):
    manifest = images / "pairs.csv"
    manifest.write_bytes(b"A,B',output\na.png\0,b.png,x\n")
    res = _invoke("batch", manifest, "-o", tmp_path / "out", *SIZE)
    # (the test's folder holds "nul_byte")
    assert_one_line_error(res, "pairs.csv line 2, column A", "a NUL byte")
    assert no_outputs(tmp_path / "out")


def test_10_cannot_allocate_memory_suggests_a_smaller_size(tmp_path, images, monkeypatch):
    """torch's CPU allocator failing (a RuntimeError, not MemoryError) mid-analogy."""
    try:
        torch.empty(2**62, dtype=torch.uint8)
        pytest.fail("the allocation was expected to fail")
    except RuntimeError as exc:
        failure = exc

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(analogy.pipeline, "deconvolve", fail)
    res = _invoke(images / "a.png", images / "b.png", "-o", tmp_path / "out", "--size", "160",
                  "--preview", "-q")
    assert_one_line_error(res, "out of memory", "--size")
    suggested = int(re.search(r"--size (\d+)", res.output).group(1))
    assert suggested < 160, res.output
    assert no_outputs(tmp_path / "out")


# 11 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "batch"])
def test_11_output_path_that_is_a_file(tmp_path, images, command):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    if command == "run":
        res = _invoke(images / "a.png", images / "b.png", "-o", taken, *SIZE)
    else:
        res = _invoke("batch", "--content", images / "a.png", "--style", images / "b.png",
                      "-o", taken, *SIZE)
    assert_one_line_error(res, "taken", "not a folder")
    assert taken.read_text() == "mine"


def test_11_disk_full_names_the_output_not_a_temporary(tmp_path, images, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "A_prime.png").write_bytes(b"previous result")
    real = analogy.image_io._write_file

    def full(path, data):  # the disk fills up half-way through the first file
        real(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(analogy.image_io, "_write_file", full)
    res = _invoke(images / "a.png", images / "b.png", "-o", out, *SIZE)
    assert_one_line_error(res, str(out / "A_prime.png"), "no space left on device")
    assert ".part" not in res.output
    assert sorted(p.name for p in out.iterdir()) == ["A_prime.png"]
    assert (out / "A_prime.png").read_bytes() == b"previous result"

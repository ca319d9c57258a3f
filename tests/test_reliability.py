"""Where outputs may go and how they are written: a manifest cannot write outside its output root,
outputs get a new file's usual permissions, and interruptions give one line and the conventional
exit status (130 for Ctrl-C, 143 for SIGTERM) with no partial output."""
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analogy import AnalogyConfig, load_image
from analogy.batch import ManifestError, pairs_from_manifest
from analogy.executors import _worker_main
from analogy.pairs import Pair, is_complete
from analogy.results import output_names
from cli import main

from .conftest import without_progress

ROOT = Path(__file__).resolve().parents[1]


def _manifest(tmp_path, images, output):
    path = images / "pairs.csv"
    path.write_text(f"A,B',output\na.png,b.png,{output}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("output",
                         ["../../escaped", "sub/../../escaped", "/tmp/analogy-escaped-abs",
                          "link/x"])
def test_manifest_outputs_must_stay_inside_the_output_root(tmp_path, images, output):
    """`..`, absolute paths and symbolic links out of the root are refused, naming the row, before
    any work; nothing is written anywhere."""
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    manifest = _manifest(tmp_path, images, output)
    with pytest.raises(ManifestError,
                       match=r"line 2, column output: .* is outside the output folder"):
        pairs_from_manifest(manifest, out)
    res = CliRunner().invoke(main, ["batch", str(manifest), "-o", str(out), "--size", "48",
                                    "--preview", "-q"])
    assert res.exit_code != 0 and "is outside the output folder" in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/analogy-escaped-abs").exists()
    assert not any((tmp_path / "elsewhere").iterdir())


def test_manifest_outputs_inside_the_root_are_accepted(tmp_path, images):
    out = tmp_path / "out"
    pairs = pairs_from_manifest(_manifest(tmp_path, images, "x/../y/z"), out)
    assert pairs[0].out.resolve() == (out / "y" / "z").resolve()


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_a_new_files_usual_mode(tmp_path, images, umask):
    """Not the temporary file's 0600: 0666 minus the umask, like any file the user creates."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", f"import os, sys; os.umask({umask}); sys.argv = ['analogy'] + "
                               "sys.argv[1:]; import cli; cli.main()",
         str(images / "a.png"), str(images / "b.png"), "-o", str(out), "--size", "48",
         "--preview", "-q", "--save-nnf"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("A_prime.png", "B.png", "nnf_ab.npy"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o666 & ~umask, name


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_while_starting_is_one_line(tmp_path, images, command, sig, status):
    """While torch is being imported (python -X importtime prints each module as it is imported):
    no traceback, one line, 128 + the signal."""
    run = command([images / "a.png", images / "b.png", "-o", tmp_path / "out", "--size", "48"],
                  python=["-X", "importtime"])
    run.wait_for("torch._utils")  # one of the first of torch's thousand modules
    run.send(sig)
    code, lines = run.finish()
    lines = [line for line in lines if not line.startswith("import time:")]
    assert code == status and len(lines) == 1 and "interrupted while starting" in lines[0], lines
    assert not (tmp_path / "out").exists()


def _interrupted_with_nothing_written(code, lines, status, out):
    """One line besides the progress, 128 + the signal, no file (output or temporary) under
    `out`."""
    said = without_progress(lines)
    assert code == status and len(said) == 1 and "interrupted" in said[0], lines
    left = [p.name for p in out.rglob("*") if p.is_file()]
    assert left == [], left


@pytest.mark.slow
@pytest.mark.parametrize("command_name", ["run", "batch"])
@pytest.mark.parametrize("sig,status,group", [(signal.SIGINT, 130, True),
                                              (signal.SIGINT, 130, False),
                                              (signal.SIGTERM, 143, False)],
                         ids=["ctrl-c to the group", "SIGINT to the command",
                              "SIGTERM to the command"])
def test_interrupt_while_working_leaves_nothing_partial(tmp_path, images, command, command_name,
                                                        sig, status, group):
    """In the middle of the work (single pair, or a batch with two worker processes), as the
    progress names relu4_1: one line, 128 + the signal, and no output or temporary file anywhere
    under the output folder."""
    out = tmp_path / "out"
    if command_name == "run":
        args = [images / "a.png", images / "b.png", "-o", out, "--size", "128"]
    else:
        args = ["batch", "--content", images / "a.png", "--content", images / "b.png",
                "--style", images / "b.png", "-o", out, "--size", "128", "-j", "2"]
    run = command(args)
    run.wait_for("relu4_1: PatchMatch")
    run.send(sig, group=group)
    _interrupted_with_nothing_written(*run.finish(), status, out)


#: A command whose callbacks from LLVM (Numba loading or compiling its kernels: C code calling
#: Python) print "kernel callback N"; the one numbered by the first argument then waits for a
#: line on stdin, so that the test's signal arrives inside it.
KERNEL_CALLBACKS = """
import sys
from llvmlite.binding import executionengine
wait_in, calls = int(sys.argv.pop(1)), 0
find = executionengine.ExecutionEngine._find_module_ptr

def find_and_report(self, ptr):  # called by both callbacks, the object cache's getbuffer and notify
    global calls
    calls += 1
    print(f"kernel callback {calls}", flush=True)
    if calls == wait_in:
        sys.stdin.readline()
    return find(self, ptr)

executionengine.ExecutionEngine._find_module_ptr = find_and_report
sys.argv[0] = "analogy"
import cli
cli.entry()
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment,wait_in,sig", [
    ("relu5_1: PatchMatch", 0, signal.SIGTERM),  # the stage in which the kernels load has begun
    ("kernel callback 1", 1, signal.SIGINT),  # inside the first callback
    ("kernel callback 2", 2, signal.SIGTERM),  # inside the second
    ("kernel callback 1", 0, signal.SIGINT),  # as the first returns
    ("relu4_1: PatchMatch", 0, signal.SIGTERM),  # once they are loaded
], ids=["relu5_1 begins", "in callback 1", "in callback 2", "after callback 1", "relu4_1 begins"])
def test_a_signal_while_the_kernels_load_is_not_lost(tmp_path, images, command, moment, wait_in,
                                                     sig):
    """Issue 24: a signal handled inside a callback from C code was printed with a traceback and
    dropped, and the run went on to write its outputs. Now, at every moment around the kernels'
    loading: one line, 128 + the signal, nothing written."""
    out = tmp_path / "out"
    run = command([wait_in, images / "a.png", images / "b.png", "-o", out, "--size", "64"],
                  code=KERNEL_CALLBACKS, stdin=True)
    run.wait_for(moment)
    run.send(sig)
    run.reply()  # a callback waiting on stdin goes on (if the signal has not ended it)
    code, lines = run.finish()
    lines = [line for line in lines if not line.startswith("kernel callback")]
    _interrupted_with_nothing_written(code, lines, 128 + sig, out)


#: A command that prints "exiting" while the interpreter exits (an atexit callback) and waits
#: there for a line on stdin.
AT_EXIT = """
import atexit, sys

def last_words():
    print("exiting", flush=True)
    sys.stdin.readline()

atexit.register(last_words)
sys.argv[0] = "analogy"
import cli
cli.entry()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_exiting_is_one_line(tmp_path, images, command, sig):
    """Issue 24: after the work, while the interpreter exits: no traceback ("Exception ignored in
    atexit callback … KeyboardInterrupt"), one line, 128 + the signal; the outputs are complete."""
    out = tmp_path / "out"
    run = command([images / "a.png", images / "b.png", "-o", out, "--size", "48",
                   "--preview", "-q"], code=AT_EXIT, stdin=True)
    run.wait_for("exiting")
    run.send(sig)
    run.reply()
    code, lines = run.finish()
    assert code == 128 + sig, lines
    assert lines == ["exiting", "Error: interrupted while exiting; every output was written"], lines
    assert load_image(out / "A_prime.png").shape == load_image(images / "a.png").shape
    assert load_image(out / "B.png").shape == load_image(images / "b.png").shape


def test_a_worker_whose_batch_is_gone_ends_quietly(tmp_path, images, capfd):
    """Issue 24: a batch worker that finishes its pair after the batch was killed (its end of the
    pipe closed) printed a BrokenPipeError traceback. Now it ends quietly; the pair's outputs,
    written before, are complete."""
    context = multiprocessing.get_context("spawn")
    batch_end, worker_end = context.Pipe()
    config = AnalogyConfig(size=48)
    worker = context.Process(target=_worker_main, daemon=True,
                             args=(worker_end, config, {}, 1, None, os.getpid()))
    worker.start()
    worker_end.close()
    pair = Pair(images / "a.png", images / "b.png", tmp_path / "out")
    batch_end.send(pair)
    batch_end.close()  # the batch is gone before the worker has finished
    worker.join(timeout=300)
    assert worker.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
    assert is_complete(pair, config, output_names())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command_name", ["run", "batch"])
def test_a_full_stderr_does_not_stop_the_work(tmp_path, images, command_name):
    """Issue 24: with stderr on a full device (2>/dev/full), the command exited 1 and wrote
    nothing. Progress and summary that cannot be written are dropped; the work is done."""
    out = tmp_path / "out"
    if command_name == "run":
        args, folder = [images / "a.png", images / "b.png", "-o", out], out
    else:
        args, folder = (["batch", "--content", images / "a.png", "--style", images / "b.png",
                         "-o", out], out / "a__b")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args),
                               "--size", "48", "--preview"],
                              stdout=subprocess.PIPE, stderr=full, cwd=ROOT, timeout=300)
    assert proc.returncode == 0
    assert load_image(folder / "A_prime.png").shape == load_image(images / "a.png").shape
    assert load_image(folder / "B.png").shape == load_image(images / "b.png").shape


def test_a_run_on_a_folder_another_run_is_writing_is_refused(tmp_path, images):
    """Two runs on one output folder never mix their files: the second gets one line and exit 1,
    and writes nothing; once the first is done, the folder is free (and the lock file gone)."""
    from analogy.image_io import LOCK_NAME, output_lock

    out = tmp_path / "out"
    args = ["run", str(images / "a.png"), str(images / "b.png"), "-o", str(out), "--size", "48",
            "--preview", "-q"]
    with output_lock(out):  # as another process would hold it (flock: per open file, so per run)
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1
        assert "another analogy run is writing there" in res.output
        assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert not (out / LOCK_NAME).exists()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["A_prime.png", "B.png"]


def test_a_batch_skips_a_pair_another_run_is_writing(tmp_path, images):
    """The pair whose folder is busy is reported failed with the reason, its other-run temporary
    file is left alone, and the other pairs are done; a later --resume finishes it."""
    from analogy.image_io import output_lock, temporary_name

    out = tmp_path / "out"
    busy = out / "a__b"
    busy.mkdir(parents=True)
    other = busy / temporary_name("A_prime.png", "x")
    other.write_bytes(b"being written by the other run")
    args = ["batch", "--content", str(images / "a.png"), "--content", str(images / "b.png"),
            "--style", str(images / "b.png"), "-o", str(out), "--size", "48", "--preview", "-q"]
    with output_lock(busy):
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "another analogy run is writing there" in res.output, res.output
    assert other.exists() and not (busy / "A_prime.png").exists()
    assert (out / "b__b" / "A_prime.png").exists()
    res = CliRunner().invoke(main, args + ["--resume"])
    assert res.exit_code == 0, res.output
    # stale once the other run is gone
    assert (busy / "A_prime.png").exists() and not other.exists()

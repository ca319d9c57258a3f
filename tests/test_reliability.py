"""Where outputs may go and how they are written: a manifest cannot write outside its output root,
outputs get a new file's usual permissions, and interruptions give one line and the conventional
exit status (130 for Ctrl-C, 143 for SIGTERM) with no partial output."""
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from analogy import load_image
from analogy.batch import ManifestError, pairs_from_manifest
from cli import main

ROOT = Path(__file__).resolve().parents[1]


def _manifest(tmp_path, images, output):
    path = images / "pairs.csv"
    path.write_text(f"A,B',output\na.png,b.png,{output}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("output", ["../../escaped", "sub/../../escaped", "/tmp/analogy-escaped-abs", "link/x"])
def test_manifest_outputs_must_stay_inside_the_output_root(tmp_path, images, output):
    """`..`, absolute paths and symbolic links out of the root are refused, naming the row, before
    any work; nothing is written anywhere."""
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    manifest = _manifest(tmp_path, images, output)
    with pytest.raises(ManifestError, match=r"line 2, column output: .* is outside the output folder"):
        pairs_from_manifest(manifest, out)
    res = CliRunner().invoke(main, ["batch", str(manifest), "-o", str(out), "--size", "48", "-q"])
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
        [sys.executable, "-c", f"import os, sys; os.umask({umask}); sys.argv = ['analogy'] + sys.argv[1:]; "
                               "import cli; cli.main()",
         str(images / "a.png"), str(images / "b.png"), "-o", str(out), "--size", "48", "-q", "--save-nnf"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("A_prime.png", "B.png", "nnf_ab.npy"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o666 & ~umask, name


def _start(args, tmp_path):
    # its own process group, as a command started from a terminal: Ctrl-C reaches the whole group
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    return proc.returncode, [line for line in (out + err).splitlines() if line.strip()]


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_while_starting_is_one_line(tmp_path, images, sig, status):
    """While torch is still being imported: no traceback, one line, 128 + the signal."""
    proc = _start([images / "a.png", images / "b.png", "-o", tmp_path / "out", "--size", "48"], tmp_path)
    time.sleep(0.3)
    proc.send_signal(sig)
    code, lines = _finish(proc)
    assert code == status and len(lines) == 1 and "interrupted" in lines[0], lines
    assert not (tmp_path / "out").exists()


def _wait_for(path: Path, proc, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None and time.time() - t0 < timeout, "the command ended or never started"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "batch"])
@pytest.mark.parametrize("sig,status,group", [(signal.SIGINT, 130, True), (signal.SIGINT, 130, False),
                                              (signal.SIGTERM, 143, False)],
                         ids=["ctrl-c to the group", "SIGINT to the command", "SIGTERM to the command"])
def test_interrupt_while_working_leaves_nothing_partial(tmp_path, images, command, sig, status, group):
    """In the middle of the work (single pair, or a batch with two worker processes): one line,
    128 + the signal, and no output or temporary file anywhere under the output folder."""
    out = tmp_path / "out"
    if command == "run":
        args = [images / "a.png", images / "b.png", "-o", out, "--size", "256", "-q"]
    else:
        args = ["batch", "--content", images / "a.png", "--content", images / "b.png", "--style", images / "b.png",
                "-o", out, "--size", "256", "-q", "-j", "2"]
    proc = _start(args, tmp_path)
    _wait_for(out, proc)
    time.sleep(2.0)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    code, lines = _finish(proc)
    assert code == status, lines
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    left = [p.name for p in out.rglob("*") if p.is_file()]
    assert left == [], left


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command_name", ["run", "batch"])
def test_a_full_stderr_does_not_stop_the_work(tmp_path, images, command_name):
    """Issue 24: with stderr on a full device (2>/dev/full), the command exited 1 and wrote
    nothing. Progress and summary that cannot be written are dropped; the work is done."""
    out = tmp_path / "out"
    if command_name == "run":
        args, folder = [images / "a.png", images / "b.png", "-o", out], out
    else:
        args, folder = ["batch", "--content", images / "a.png", "--style", images / "b.png", "-o", out], out / "a__b"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args), "--size", "48"],
                              stdout=subprocess.PIPE, stderr=full, cwd=ROOT, timeout=300)
    assert proc.returncode == 0
    assert load_image(folder / "A_prime.png").shape == load_image(images / "a.png").shape
    assert load_image(folder / "B.png").shape == load_image(images / "b.png").shape


def test_a_run_on_a_folder_another_run_is_writing_is_refused(tmp_path, images):
    """Two runs on one output folder never mix their files: the second gets one line and exit 1,
    and writes nothing; once the first is done, the folder is free (and the lock file gone)."""
    from analogy.image_io import LOCK_NAME, output_lock

    out = tmp_path / "out"
    args = ["run", str(images / "a.png"), str(images / "b.png"), "-o", str(out), "--size", "48", "-q"]
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
            "--style", str(images / "b.png"), "-o", str(out), "--size", "48", "-q"]
    with output_lock(busy):
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "another analogy run is writing there" in res.output, res.output
    assert other.exists() and not (busy / "A_prime.png").exists()
    assert (out / "b__b" / "A_prime.png").exists()
    res = CliRunner().invoke(main, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert (busy / "A_prime.png").exists() and not other.exists()  # stale once the other run is gone

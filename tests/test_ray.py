"""`analogy batch --executor ray`: the same bytes as a local batch, failures reported per pair, a
killed Ray worker's pair tried again, Ctrl-C leaving nothing partial and --resume doing the rest.
Ray comes with the `ray` extra, which the README's test command installs."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
from click.testing import CliRunner
from PIL import Image

import analogy
from analogy.executor_base import set_threads
from analogy.image_io import LOCK_NAME
from cli import main

from .conftest import assert_one_line_error, no_outputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def content(tmp_path, skyline, astronaut, starry):
    """Three content images (one of them corrupt) and one style image."""
    folder = tmp_path / "content"
    folder.mkdir()
    Image.fromarray(skyline[:96, :128]).save(folder / "sky.png")
    Image.fromarray(astronaut[::4, ::4]).save(folder / "face.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    style = tmp_path / "starry.png"
    Image.fromarray(starry[:112, :128]).save(style)
    return folder, style


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance started by the test: 2 CPUs, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_batch_gives_the_local_bytes_and_names_the_bad_pair(tmp_path, content, local_ray):
    folder, style = content
    config = analogy.AnalogyConfig(size=64).as_preview()
    outcomes = {}
    # two Ray workers on 2 CPUs compute with one thread each; so does the local batch (torch's CPU
    # convolutions round differently with another thread count)
    threads = torch.get_num_threads()
    try:
        for executor, jobs in (("ray", 2), ("local", 1)):
            if executor == "local":
                set_threads(1)
            pairs = analogy.pairs_from_lists([folder], [style], tmp_path / executor)
            outcomes[executor] = {o.pair.name: o for o in
                                  analogy.batch(pairs, config, executor=executor, jobs=jobs)}
    finally:
        set_threads(threads)
    ray_outcomes = outcomes["ray"]
    assert ray_outcomes["broken__starry"].status == "failed"
    assert "broken.png" in ray_outcomes["broken__starry"].error
    # the same message
    assert ray_outcomes["broken__starry"].error == outcomes["local"]["broken__starry"].error
    assert ({n: o.status for n, o in ray_outcomes.items()}
            == {n: o.status for n, o in outcomes["local"].items()})
    for name in ("sky__starry", "face__starry"):
        assert ray_outcomes[name].status == "done"
        for file in ("A_prime.png", "B.png", "analogy.json"):
            assert ((tmp_path / "ray" / name / file).read_bytes()
                    == (tmp_path / "local" / name / file).read_bytes())
    assert no_outputs(tmp_path / "ray" / "broken__starry")
    assert ray.is_initialized()  # the caller's Ray is left running


def test_fail_fast_on_ray_stops_at_the_first_failure(tmp_path, content, local_ray):
    folder, style = content
    pairs = analogy.pairs_from_lists([folder / "broken.png", folder / "sky.png",
                                      folder / "face.jpg"], [style], tmp_path)
    outcomes = list(analogy.batch(pairs, analogy.AnalogyConfig(size=64).as_preview(),
                                  executor="ray", jobs=1, fail_fast=True))
    assert [(o.pair.name, o.status) for o in outcomes] == [("broken__starry", "failed")]
    assert not list(tmp_path.glob("*/B.png"))


def test_without_ray_the_executor_is_a_one_line_error(tmp_path, content, monkeypatch):
    folder, style = content
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    res = CliRunner().invoke(main, ["batch", "--content", str(folder / "sky.png"),
                                    "--style", str(style), "-o", str(tmp_path / "out"),
                                    "--executor", "ray", "--size", "48", "--preview", "-q"])
    assert_one_line_error(res, "pip install 'analogy[ray]'")
    assert no_outputs(tmp_path / "out")


def _start(args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _ray_workers_running_a_pair():
    """Process ids of Ray workers in the middle of a pair (Ray names them after the method)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::PairWorker.run"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def _leftovers(out: Path):
    return [p for p in out.rglob("*") if p.name.endswith(".part") or p.name == LOCK_NAME]


@pytest.mark.slow
def test_a_killed_ray_worker_has_its_pair_retried(tmp_path, content):
    folder, style = content
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    proc = _start(["batch", "--content", folder, "--style", style, "-o", out, "--size", "192",
                   "--preview", "--executor", "ray", "-j", "2"])
    t0 = time.time()
    while not (busy := _ray_workers_running_a_pair()):
        assert proc.poll() is None and time.time() - t0 < 120, proc.communicate()
        time.sleep(0.05)
    os.kill(busy[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Ray worker died" in err and "trying again" in err and "2 done" in err, err
    assert sorted(p.parent.name for p in out.glob("*/B.png")) == ["face__starry", "sky__starry"]
    assert not _leftovers(out)


@pytest.mark.slow
def test_resume_after_an_interrupted_ray_batch_redoes_exactly_the_rest(tmp_path, content, command):
    folder, style = content
    (folder / "broken.png").unlink()
    for i in range(3):
        Image.open(folder / "sky.png").rotate(90 * (i + 1), expand=True).save(
            folder / f"sky{i}.png")
    out = tmp_path / "out"
    args = ["batch", "--content", folder, "--style", style, "-o", out, "--size", "128",
            "--preview", "--executor", "ray"]
    batch = command(args)
    batch.wait_for("batch 1/5: done")  # as soon as the first pair is written
    batch.send(signal.SIGINT, group=True)  # Ctrl-C in the terminal
    code, lines = batch.finish()
    assert code == 130 and any("interrupted" in line for line in lines), lines
    assert not _leftovers(out)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/analogy.json")}
    assert 1 <= len(finished) < 5
    proc = _start([*args, "--resume"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"{5 - len(finished)} done, {len(finished)} skipped" in err, err
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/analogy.json")
            if p.parent.name in finished} == finished
    assert len(list(out.glob("*/B.png"))) == 5

"""`analogy batch`: folders and manifests, failures that do not stop the batch, kill and resume,
and --jobs giving the same bytes."""
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import analogy
from analogy.executor_base import set_threads, usable_cpus
from cli import main

SIZE = "48"


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def folders(tmp_path, skyline, starry, astronaut):
    """content/ with three real crops, style/ with one painting crop."""
    content = tmp_path / "content"
    _save(content / "sky.png", skyline[:120, :160])
    _save(content / "city.png", skyline[-120:, -150:])
    _save(content / "face.jpg", astronaut[::4, ::4])
    style = _save(tmp_path / "style" / "starry.png", starry[:140, :150])
    return content, style


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _images_load(folder: Path) -> int:
    """Every image file under `folder` loads completely; returns how many there are."""
    n = 0
    for path in folder.rglob("*.png"):
        with Image.open(path) as img:
            img.load()
        n += 1
    return n


def test_folder_batch_reports_the_corrupt_file_and_writes_the_rest(folders, tmp_path):
    content, style = folders
    (content / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # truncated PNG
    (content / "city.png").unlink()
    out = tmp_path / "out"
    res = _invoke("batch", "--content", content, "--style", style, "-o", out, "--size", SIZE,
                  "--preview")
    assert res.exit_code == 1, res.output
    for name, source in (("sky__starry", "sky.png"), ("face__starry", "face.jpg")):
        assert Image.open(out / name / "A_prime.png").size == Image.open(content / source).size
        assert Image.open(out / name / "B.png").size == Image.open(style).size
    assert not (out / "broken__starry").exists() or not any((out / "broken__starry").iterdir())
    summary = [line for line in res.output.splitlines() if line.startswith("batch:")]
    assert summary and "2 done" in summary[0] and "1 failed" in summary[0], res.output
    assert any("broken__starry" in line and "broken.png" in line
               and ("corrupt" in line or "not an image" in line)
               for line in res.output.splitlines()), res.output
    # a batch pair is the same analogy as a single run (the cached style features change nothing)
    single = tmp_path / "single"
    assert _invoke(content / "face.jpg", style, "-o", single, "--size", SIZE,
                   "--preview", "-q").exit_code == 0
    assert ((single / "A_prime.png").read_bytes()
            == (out / "face__starry" / "A_prime.png").read_bytes())
    assert (single / "B.png").read_bytes() == (out / "face__starry" / "B.png").read_bytes()


@pytest.mark.slow
def test_killed_batch_leaves_no_partial_image_and_resume_finishes_it(folders, tmp_path, skyline,
                                                                     command):
    """SIGKILL as soon as the first of four pairs is reported done (the second then under way)."""
    content, style = folders
    _save(content / "dusk.png", skyline[100:250, 100:300])
    out = tmp_path / "out"
    run = command(["batch", "--content", content, "--style", style, "-o", out, "--size", "64",
                   "--preview"])
    run.wait_for("batch 1/4: done")
    run.send(signal.SIGKILL)
    run.finish()
    finished = {d.name for d in out.iterdir() if (d / "A_prime.png").exists()
                and (d / "B.png").exists()}
    assert 1 <= len(finished) < 4
    assert _images_load(out) >= 2 * len(finished)  # every file named like an image is complete
    stamps = {p: p.stat().st_mtime_ns for name in finished for p in (out / name).glob("*.png")}

    res = _invoke("batch", "--content", content, "--style", style, "-o", out, "--size", "64",
                  "--preview", "--resume")
    assert res.exit_code == 0, res.output
    assert f"{4 - len(finished)} done, {len(finished)} skipped, 0 failed" in res.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the finished pairs were not redone
    assert _images_load(out) == 8
    assert not list(out.rglob("*.part"))


@pytest.mark.slow
def test_jobs_two_gives_the_same_bytes_as_one(folders, tmp_path):
    content, style = folders
    one, two = tmp_path / "one", tmp_path / "two"
    # each of two workers computes with half the cores; so does the single job (torch's CPU
    # convolutions round differently with another thread count)
    threads = torch.get_num_threads()
    set_threads(max(1, usable_cpus() // 2))
    try:
        outcomes = list(analogy.batch(analogy.pairs_from_lists([content], [style], one),
                                      analogy.AnalogyConfig(size=int(SIZE)).as_preview(), jobs=1))
    finally:
        set_threads(threads)
    assert [o.status for o in outcomes] == ["done"] * 3
    res = _invoke("batch", "--content", content, "--style", style, "-o", two, "--size", SIZE,
                  "--preview", "--jobs", "2", "-q")
    assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 6 and files == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f


def test_manifest_pairs_relative_to_the_manifest(folders, tmp_path):
    content, style = folders
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("A,B′,output\ncontent/sky.png,style/starry.png,results/first\n",
                        encoding="utf-8")
    res = _invoke("batch", manifest, "--size", SIZE, "--preview", "-q")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "results" / "first" / "A_prime.png").size == (160, 120)
    res = _invoke("batch", manifest, "--size", SIZE, "--preview", "--resume")
    assert "0 done, 1 skipped" in res.output


@pytest.mark.parametrize("text, words", [
    ("A,B',output\ncontent/sky.png,style/nope.png,x\n", ["line 2", "B′", "nope.png"]),
    ("", ["empty"]),
    ("A,B,out\ncontent/sky.png,style/starry.png,x\n", ["header", "B′"]),
    ("A,B',output\n", ["no pairs"]),
])
def test_bad_manifests_give_one_line_errors(folders, tmp_path, text, words):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(text, encoding="utf-8")
    res = _invoke("batch", manifest, "--size", SIZE, "--preview")
    assert res.exit_code != 0
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    assert not (tmp_path / "x").exists()


def test_single_pair_command_still_works_beside_batch(folders, tmp_path):
    content, style = folders
    res = _invoke("run", content / "sky.png", style, "-o", tmp_path / "r", "--size", SIZE,
                  "--preview", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "A_prime.png").exists()


def test_feature_cache_computes_a_shared_style_once(skyline, starry, vgg):
    from analogy.features import FeatureCache
    from analogy.pipeline import run_analogy

    config = analogy.AnalogyConfig(size=int(SIZE)).as_preview()
    a1, a2, style = skyline[:120, :160], skyline[-120:, -150:], starry[:140, :150]
    cache = FeatureCache()
    cached = [run_analogy(a, style, config, vgg, cache=cache, keys=(name, "style"))
              for a, name in ((a1, "a1"), (a2, "a2"))]
    assert (cache.misses, cache.hits) == (3, 1)
    for a, result in zip((a1, a2), cached):
        plain = run_analogy(a, style, config, vgg)
        assert np.array_equal(result.a_prime, plain.a_prime) and np.array_equal(result.b, plain.b)

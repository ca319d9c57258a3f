"""`analogy serve`'s HTTP API: a whole job with the command line's bytes, the bad-input battery and
the limits before any work, file names that cannot leave a job's folder, unknown ids, a full queue,
cancellation, expiry, a video job (a clip in, its frames followed, the stylised clip out) and its
refusals, and the command itself stopped by SIGTERM or Ctrl-C. Waits are on observable state (a
job's state, a folder, a line), never fixed sleeps."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import httpx2
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

import cli
from analogy import AnalogyConfig
from analogy.video_io import describe
from analogy.web.app import EXAMPLES, STATIC, Limits, create_app
from analogy.web.jobs import ID_PATTERN, MARKER, JobQueue

from .conftest import EXAMPLES as REPO_EXAMPLES, ROOT, assert_one_line_error
from .test_bad_input import BAD_FILES, _image, _png_bytes, bad_file_content

# the preview: quality is not what these check
SMALL = {"size": "64", "preview": "true", "seed": "5"}
OUTPUTS = ["A_prime.png", "B.png", "nnf_ab.npy", "nnf_ba.npy", "flow_ab.png", "flow_ba.png",
           "confidence_ab.png", "confidence_ba.png"]


def wait_for(condition, timeout: float = 600.0, what: str = "the condition"):
    """Poll `condition` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def job_folders(data: Path):
    return sorted(p.name for p in data.iterdir() if p.is_dir())


@pytest.fixture
def inputs(skyline, starry):
    """A and B′ as PNG bytes: crops of the skyline and of the painting."""
    return _png_bytes(skyline[:96, :128]), _png_bytes(starry[:96, :112])


@pytest.fixture
def make_server(tmp_path):
    """A factory of (client, queue) over a data folder in tmp_path; `started` runs the app's
    lifespan (the workers), else jobs stay queued. Everything is closed at the end."""
    opened = []

    def make(started: bool = True, limits: Limits = Limits(), **queue_options):
        queue = JobQueue(tmp_path / f"data{len(opened)}",
                         **{"keep_seconds": 3600.0, **queue_options})
        client = TestClient(create_app(queue, cli.web_job_options(), limits))
        opened.append((client, queue, started))
        if started:
            client.__enter__()
        return client, queue

    yield make
    for client, queue, started in opened:
        if started:
            client.__exit__(None, None, None)
        queue.close()


def post(client, a: bytes, b: bytes, names=("a.png", "b.png"), **fields):
    return client.post("/api/jobs", files={"a": (names[0], a), "bprime": (names[1], b)},
                       data={k: str(v) for k, v in fields.items()})


def finished(client, job_id: str) -> dict:
    def state():
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["state"] in ("done", "failed") else None

    return wait_for(state, what=f"job {job_id} to finish")


def _cancel(client, queue, caplog, job_id):
    """DELETE a running job, wait for its folder to go and its worker to say where it stopped:
    (step, steps, the worker's lines)."""
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    wait_for(lambda: not (queue.data / job_id).exists(), what="the cancelled job's folder to go")
    stopped = wait_for(lambda: [r.getMessage() for r in caplog.records
                                if "cancelled at step" in r.getMessage()],
                       what="the worker to stop")
    step, steps = map(int, re.search(r"step (\d+) of (\d+)", stopped[0]).groups())
    return step, steps, stopped


def test_a_job_gives_the_command_lines_bytes(make_server, inputs, tmp_path, monkeypatch):
    # nothing may be written outside the data folder, temporaries included
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    (tmp_path / "a.png").write_bytes(inputs[0])
    (tmp_path / "b.png").write_bytes(inputs[1])
    res = CliRunner().invoke(cli.main, [str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                        "-o", str(tmp_path / "cli"), "--size", "64",
                                        "--preview", "--seed", "5", "--save-nnf", "--save-flow",
                                        "--save-confidence", "-q"])
    assert res.exit_code == 0, res.output
    client, queue = make_server()
    response = post(client, *inputs, **SMALL)
    assert response.status_code == 202, response.text
    job = response.json()
    assert (ID_PATTERN.fullmatch(job["id"])
            and response.headers["location"] == f"/api/jobs/{job['id']}")
    assert (job["state"] in ("queued", "running")
            and job["options"] == {"size": 64, "preview": True, "seed": 5})
    job = finished(client, job["id"])
    assert job["state"] == "done", job["error"]
    # features, five levels, one scale above the 64-px working size, the final vote
    assert (job["progress"]["step"] == job["progress"]["steps"] == 8
            and job["progress"]["fraction"] == 1.0)
    for name in OUTPUTS:
        served = client.get(f"/api/jobs/{job['id']}/files/{name}")
        assert served.status_code == 200
        assert served.content == (tmp_path / "cli" / name).read_bytes(), name
    # the PNG as analysed: the upload's pixels
    analysed = client.get(f"/api/jobs/{job['id']}/files/A.png").content
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(analysed))),
                          np.asarray(Image.open(io.BytesIO(inputs[0]))))

    archive = client.get(f"/api/jobs/{job['id']}/files/analogy.zip")
    assert archive.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert set(z.namelist()) == {"A.png", "B_prime.png", "analogy.json", *OUTPUTS}
        assert z.read("nnf_ab.npy") == (tmp_path / "cli" / "nnf_ab.npy").read_bytes()
        record = json.loads(z.read("analogy.json"))
    assert record["A"]["name"] == "a.png" and record["B′"]["width"] == 112
    assert record["options"]["size"] == 64 and record["options"]["seed"] == 5
    assert record["command"] == ("analogy A.png B_prime.png -o OUT --size 64 --preview --seed 5 "
                                 "--save-nnf --save-flow --save-confidence --weights caffe "
                                 "--device auto")
    assert not list(temporary.iterdir()) and not list(queue.data.rglob("*.part"))


@pytest.mark.slow
def test_two_cpu_workers_run_jobs_side_by_side_with_the_same_bytes(make_server, inputs, tmp_path):
    import torch

    # the workers split the cores: put this process's count back after
    threads = torch.get_num_threads()
    try:
        client, queue = make_server(workers=2, device="cpu")
        assert queue.devices == [None, None]
        ids = [post(client, *inputs, **SMALL).json()["id"] for _ in range(2)]
        assert [finished(client, i)["state"] for i in ids] == ["done", "done"]
        first, second = (client.get(f"/api/jobs/{i}/files/A_prime.png").content for i in ids)
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "a.png").write_bytes(inputs[0])
    (tmp_path / "b.png").write_bytes(inputs[1])
    res = CliRunner().invoke(cli.main, [str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                        "-o", str(tmp_path / "cli"), "--size", "64",
                                        "--preview", "--seed", "5", "-q"])
    assert res.exit_code == 0, res.output
    assert first == second == (tmp_path / "cli" / "A_prime.png").read_bytes()


@pytest.mark.parametrize("case",
                         [c for c, (kind, _) in BAD_FILES.items() if kind not in (None, "dir")])
@pytest.mark.parametrize("slot", ["a", "bprime"])
def test_bad_file_gives_the_command_lines_reason_before_any_work(make_server, inputs, tmp_path,
                                                                 skyline, case, slot):
    kind, words = BAD_FILES[case]
    bad = bad_file_content(kind, skyline[:64, :80])
    name = "bad.jpg" if case == "truncated JPEG" else "bad.png"
    (tmp_path / name).write_bytes(bad)
    (tmp_path / "good.png").write_bytes(inputs[0])
    args = ([tmp_path / name, tmp_path / "good.png"] if slot == "a"
            else [tmp_path / "good.png", tmp_path / name])
    res = CliRunner().invoke(cli.main,
                             [*map(str, args), "-o", str(tmp_path / "out"), "--size", "64"])
    assert_one_line_error(res, *words)
    cli_reason = res.output.strip().split(": ", 2)[2]

    client, queue = make_server(started=False)
    pair = (bad, inputs[1]) if slot == "a" else (inputs[0], bad)
    response = post(client, *pair, names=("bad.png" if slot == "a" else "a.png",
                                          name if slot == "bprime" else "b.png"))
    assert response.status_code == 422
    detail = response.json()["detail"]
    label = "A" if slot == "a" else "B′"
    assert detail.startswith(f"{label} (") and "\n" not in detail
    assert detail.split(": ", 1)[1] == cli_reason
    assert job_folders(queue.data) == []


def test_decompression_bomb_and_missing_image(make_server, inputs, monkeypatch):
    client, queue = make_server(started=False)
    bomb = io.BytesIO()
    Image.new("L", (400, 300)).save(bomb, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    response = post(client, bomb.getvalue(), inputs[1])
    assert response.status_code == 422
    assert "120,000 pixels" in response.json()["detail"] and "50,000" in response.json()["detail"]
    response = client.post("/api/jobs", files={"a": ("a.png", inputs[0])})
    assert response.status_code == 422 and response.json()["detail"].startswith("no B′ image")
    response = client.post("/api/jobs", data={"size": "64"})
    assert response.status_code == 422 and "multipart" in response.json()["detail"]
    assert job_folders(queue.data) == []


@pytest.mark.parametrize("option,value", [
    ("size", "10"), ("ratio", "0"), ("ratio", "abc"), ("iterations", "-1"),
    ("deconv_iterations", "-2"), ("blend_level", "4"), ("seed", "-1"), ("seed", "1.5"),
    ("photo", "maybe"),
])
def test_bad_option_gives_the_command_lines_reason(make_server, inputs, tmp_path, option, value):
    client, queue = make_server(started=False)
    response = post(client, *inputs, **{option: value})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "\n" not in detail and option in detail
    if option != "photo":  # a flag on the command line takes no value
        (tmp_path / "a.png").write_bytes(inputs[0])
        res = CliRunner().invoke(cli.main, [str(tmp_path / "a.png"), str(tmp_path / "a.png"),
                                            "-o", str(tmp_path / "o"),
                                            "--" + option.replace("_", "-"), value])
        reason = detail.split(": ", 1)[1] if detail.startswith(f"{option}: ") else detail
        assert res.exit_code != 0 and reason in res.output, (detail, res.output)
    assert job_folders(queue.data) == []


def test_unknown_fields_are_refused(make_server, inputs):
    client, _ = make_server(started=False)
    response = post(client, *inputs, device="cuda")  # the server's, not a job's
    assert (response.status_code == 422
            and response.json()["detail"].startswith("unknown option 'device'"))
    response = client.post("/api/jobs", files={"a": ("a.png", inputs[0]),
                                               "bprime": ("b.png", inputs[1]),
                                               "c": ("c.png", inputs[1])})
    assert response.status_code == 422 and "unknown file field 'c'" in response.json()["detail"]
    # the command line's spelling
    assert post(client, *inputs, **{"blend-level": "3"}).status_code == 202
    response = post(client, *inputs, **{f"x{i}": "1" for i in range(40)})
    assert response.status_code == 422 and "more than 32 parts" in response.json()["detail"]


def test_size_limits_refuse_before_any_work(make_server, tmp_path):
    rng = np.random.default_rng(0)
    noise = _png_bytes(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))  # about 37 KB
    small = _png_bytes(np.zeros((64, 64, 3), np.uint8))
    client, queue = make_server(started=False, limits=Limits(upload_bytes=20_000, pixels=5_000))
    response = post(client, noise, small)
    assert (response.status_code == 413
            and "over this server's limit of 0.02 MB" in response.json()["detail"])

    boundary = "x" * 16  # a body sent in chunks, with no Content-Length: counted as it comes
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"a\"; "
            "filename=\"a.png\"\r\n\r\n").encode() \
        + noise + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/api/jobs",
                           content=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text

    response = post(client, _png_bytes(np.zeros((96, 128, 3), np.uint8)), small)
    assert response.status_code == 413
    assert response.json()["detail"] == ("A (a.png): 128×96 is 12,288 pixels, over this server's "
                                         "limit of 5,000; downscale it first")
    client, queue = make_server(started=False, limits=Limits(working_pixels=100_000))
    response = post(client, small, small, size=1024)
    assert (response.status_code == 422
            and "working size would be 1024×1024" in response.json()["detail"])
    assert job_folders(queue.data) == []


def test_file_names_cannot_leave_the_job_folder(make_server, inputs):
    client, queue = make_server(started=False)
    (queue.data / "secret.txt").write_text("not for you")
    job_id = post(client, *inputs).json()["id"]
    base = f"/api/jobs/{job_id}/files/"
    assert client.get(base + "A.png").status_code == 200
    for name in ["..%2Fsecret.txt", "..%2F..%2Fsecret.txt", "%2e%2e%2fsecret.txt", "%2e%2e", MARKER,
                 "..%5Csecret.txt", "%2Fetc%2Fpasswd", "A.png%00", "A.png%2F..%2F..%2Fsecret.txt",
                 "analogy.json"]:
        response = client.get(base + name)
        assert response.status_code == 404, name
        assert b"not for you" not in response.content
    for path in ["/static/..%2F..%2Fjobs.py", "/static/%2e%2e/app.py", f"/api/jobs/..%2F{job_id}"]:
        response = client.get(path)
        assert response.status_code == 404, path


def test_unknown_ids_and_unguessable_ones(make_server, inputs):
    client, _ = make_server(started=False)
    for method, path in [("GET", "/api/jobs/nope"), ("DELETE", "/api/jobs/nope"),
                         ("GET", "/api/jobs/nope/files/A.png"), ("GET", "/api/jobs/" + "A" * 24)]:
        response = client.request(method, path)
        assert response.status_code == 404 and "no such job" in response.json()["detail"], path
    ids = {post(client, *inputs).json()["id"] for _ in range(3)}
    assert len(ids) == 3 and all(ID_PATTERN.fullmatch(i) for i in ids)


def test_full_queue_answers_503_with_retry_after(make_server, inputs):
    client, queue = make_server(started=False, capacity=2)  # no workers: jobs wait
    first, second = (post(client, *inputs).json()["id"] for _ in range(2))
    assert client.get(f"/api/jobs/{second}").json()["queue_position"] == 1
    response = post(client, *inputs)
    assert response.status_code == 503
    assert (int(response.headers["retry-after"]) >= 1
            and "queue is full" in response.json()["detail"])
    assert job_folders(queue.data) == sorted([first, second])
    assert client.delete(f"/api/jobs/{first}").status_code == 204  # a place frees
    assert client.get(f"/api/jobs/{second}").json()["queue_position"] == 0
    assert post(client, *inputs).status_code == 202


def test_cancelling_a_waiting_job_removes_it(make_server, inputs):
    client, queue = make_server(started=False)
    job_id = post(client, *inputs).json()["id"]
    assert (queue.data / job_id / "A.png").is_file()
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert job_folders(queue.data) == []


def test_cancelling_a_running_job_stops_it_and_leaves_no_file(make_server, inputs, caplog):
    caplog.set_level(logging.INFO, logger="analogy.web")
    client, queue = make_server()
    job_id = post(client, *inputs, size=96).json()["id"]
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["progress"]["step"] >= 2,
             what="the job's second step")
    step, steps, stopped = _cancel(client, queue, caplog, job_id)
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert step < steps, stopped  # stopped at a step boundary, before the end
    assert not list(queue.data.rglob("A_prime.png"))
    after = post(client, *inputs, **SMALL).json()["id"]  # the worker goes on with the next job
    assert finished(client, after)["state"] == "done"


def test_finished_jobs_expire(make_server, inputs):
    client, queue = make_server(keep_seconds=0.5)
    job_id = post(client, *inputs, **SMALL).json()["id"]
    assert finished(client, job_id)["state"] == "done"
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").status_code == 404, what="the job to expire")
    wait_for(lambda: job_folders(queue.data) == [], what="its folder to go")


def test_warnings_and_odd_images_are_taken(make_server, skyline, starry):
    client, _ = make_server(started=False)
    frames = io.BytesIO()
    images = [Image.fromarray(skyline[i * 10: i * 10 + 64, :80]) for i in range(3)]
    images[0].save(frames, format="GIF", save_all=True, append_images=images[1:])
    job = post(client, frames.getvalue(), _png_bytes(starry[:64, :80]),
               names=("frames.gif", "b.png")).json()
    assert [job["inputs"]["a"][k] for k in ("name", "width", "height")] == ["frames.gif", 80, 64]
    assert any("3 frames" in w and "first" in w for w in job["warnings"]), job["warnings"]
    for mode, fmt in [("RGBA", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG"),
                      ("P+transparency", "PNG")]:
        buffer = io.BytesIO()
        _image(mode, skyline[:70, :90]).save(buffer, format=fmt)
        response = post(client, buffer.getvalue(), _png_bytes(starry[:64, :80]))
        assert response.status_code == 202, (mode, response.text)
        assert (response.json()["inputs"]["a"]["width"],
                response.json()["inputs"]["a"]["height"]) == (90, 70)


def test_form_and_openapi_follow_the_command_line(make_server):
    client, _ = make_server(started=False)
    form = client.get("/api/form").json()
    fields = {f["name"]: f for f in form["fields"]}
    assert list(fields) == ["size", "ratio", "blend_level", "iterations", "deconv_iterations",
                            "preview", "output_size", "seed", "photo"]
    assert fields["output_size"]["default"] == "input"
    assert fields["blend_level"]["choices"] == ["1", "2", "3"] and fields["photo"]["kind"] == "flag"
    assert fields["ratio"]["default"] == AnalogyConfig().ratio and fields["size"]["default"] is None
    # per level: one number where the levels agree, else one each (the page shows them)
    assert fields["iterations"]["default"] == 10
    assert fields["deconv_iterations"]["default"] == list(AnalogyConfig().deconv_iterations)
    for example in form["examples"]:
        for key in ("a", "bprime"):
            served = client.get(example[key])
            assert served.status_code == 200
            # the package's copy
            assert served.content == (REPO_EXAMPLES / Path(example[key]).name).read_bytes()
    schema = client.get("/openapi.json").json()
    body = (schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
            ["schema"])
    # A as an image (a) or a clip (video)
    assert (body["required"] == ["bprime"] and {"a", "video"} <= set(body["properties"])
            and body["properties"]["blend_level"]["enum"] == ["1", "2", "3"])
    assert form["limits"]["frames"] == Limits().frames and form["video"] is True
    assert {"get", "delete"} <= set(schema["paths"]["/api/jobs/{job_id}"])
    assert "/api/jobs/{job_id}/files/{name}" in schema["paths"]


def test_page_is_served_at_every_job_address_and_loads_nothing_from_elsewhere(make_server):
    client, _ = make_server(started=False)
    for path in ["/", "/jobs/" + "A" * 24]:
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
    for static in STATIC.glob("*.*"):
        text = static.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text) and "import(" not in text, static
        assert client.get(f"/static/{static.name}").status_code == 200
    assert {e["a"] for e in EXAMPLES} <= {p.name for p in (STATIC / "examples").iterdir()}


def test_missing_web_extra_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn"
                        else real(name, *a))
    res = CliRunner().invoke(cli.main, ["serve"])
    assert_one_line_error(res, "uvicorn missing", "pip install 'analogy[web]'")


def start_server(data: Path, *args: str) -> tuple:
    """`analogy serve` in its own process on a free port; (process, base URL) once it says where."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", "0",
                             "--data", str(data), *args],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r"open (http://\S+) in a browser", line)
    if not found:
        proc.kill()
        raise AssertionError(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, found.group(1)


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 0), (signal.SIGINT, 0)])
def test_serve_stops_cleanly_on_sigterm_and_ctrl_c(tmp_path, inputs, sig, status):
    data = tmp_path / "data"
    (data / "keep.txt").parent.mkdir()
    (data / "keep.txt").write_text("mine")
    stale = data / ("S" * 24)  # what a killed server left
    stale.mkdir()
    (stale / MARKER).touch()
    proc, url = start_server(data)
    try:
        assert not stale.exists() and (data / "keep.txt").read_text() == "mine"
        with httpx2.Client(base_url=url, timeout=300) as client:
            job_id = client.post("/api/jobs",
                                 files={"a": ("a.png", inputs[0]), "bprime": ("b.png", inputs[1])},
                                 data={"size": "96"}).json()["id"]
            wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["state"] == "running",
                     what="the job to run")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)  # the running job stops at its next step first
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert "analogy serve: stopped" in err and "Traceback" not in err, err
    # the job's folder and the lock are gone
    assert sorted(p.name for p in data.iterdir()) == ["keep.txt"]


#: The clip of the video tests: a moving gradient, small and quick.
CLIP_FRAMES, CLIP_W, CLIP_H, CLIP_RATE = 5, 96, 64, 12


def gradient_clip(path: Path, frames: int = CLIP_FRAMES, w: int = CLIP_W, h: int = CLIP_H,
                  rate: int = CLIP_RATE) -> Path:
    """An H.264 (yuv420p) .mp4 of a colour gradient moving 3 px a frame to the right."""
    import av

    y, x = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            shifted = (x - 3 * t) % w
            rgb = np.stack([shifted * 255 // (w - 1), y * 255 // (h - 1),
                            255 - (shifted + y) * 255 // (w + h - 2)], -1).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return gradient_clip(tmp_path_factory.mktemp("clip") / "clip.mp4").read_bytes()


def post_video(client, clip: bytes, b: bytes, name: str = "clip.mp4", **fields):
    return client.post("/api/jobs", files={"video": (name, clip), "bprime": ("b.png", b)},
                       data={k: str(v) for k, v in fields.items()})


def test_a_video_job_follows_its_frames_and_gives_the_stylised_clip(make_server, inputs,
                                                                   clip_bytes, tmp_path):
    client, queue = make_server()
    assert client.get("/api/form").json()["video"] is True
    response = post_video(client, clip_bytes, inputs[1], size=48, seed=5)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "video" and job["options"] == {"size": 48, "seed": 5}
    assert {k: job["inputs"]["a"][k] for k in ("name", "width", "height", "frames", "rate")} == {
        "name": "clip.mp4", "width": CLIP_W, "height": CLIP_H, "frames": CLIP_FRAMES,
        "rate": CLIP_RATE}
    seen = []

    def state():
        job = client.get(f"/api/jobs/{response.json()['id']}").json()
        seen.append(job["progress"])
        return job if job["state"] in ("done", "failed") else None

    job = wait_for(state, what="the video job to finish")
    assert job["state"] == "done", job["error"]
    # the frames done, as they came: never back, and all of them at the end
    done = [p["frames_done"] for p in seen]
    assert done == sorted(done) and done[-1] == CLIP_FRAMES
    assert all(p["frames"] == CLIP_FRAMES and p["steps"] == CLIP_FRAMES + 1 for p in seen)
    assert job["progress"]["fraction"] == 1.0 and len(job["frame_seconds"]) == CLIP_FRAMES
    assert job["files"] == ["A_video.mp4", "A.png", "B_prime.png", "A_prime.mp4", "analogy.json"]

    served = client.get(f"/api/jobs/{job['id']}/files/A_prime.mp4")
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(served.content)
    made = describe(tmp_path / "out.mp4")
    assert (made.count, made.shape, made.rate) == (CLIP_FRAMES, (CLIP_H, CLIP_W),
                                                   Fraction(CLIP_RATE))
    first = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/A.png").content))
    assert first.size == (CLIP_W, CLIP_H)
    record = client.get(f"/api/jobs/{job['id']}/files/analogy.json").json()
    assert record["kind"] == "video" and record["A"]["frames"] == CLIP_FRAMES
    assert record["command"] == ("analogy video A_video.mp4 B_prime.png -o A_prime.mp4 --size 48 "
                                 "--seed 5 --weights caffe --device auto")
    # nothing left of the frames' work folder; image jobs go on as before
    assert sorted(p.name for p in (queue.data / job["id"]).iterdir()) == sorted(
        [MARKER, *job["files"]])
    assert post(client, *inputs).json()["kind"] == "image"


def test_cancelling_a_running_video_job_stops_it_at_the_next_frame(make_server, inputs,
                                                                  clip_bytes, caplog):
    caplog.set_level(logging.INFO, logger="analogy.web")
    client, queue = make_server()
    job_id = post_video(client, clip_bytes, inputs[1], size=48).json()["id"]
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["progress"]["frames_done"] >= 1,
             what="the first frame")
    step, steps, stopped = _cancel(client, queue, caplog, job_id)
    assert step < steps == CLIP_FRAMES + 1, stopped  # stopped between frames, before the encode
    assert not list(queue.data.rglob("A_prime.mp4"))


def test_bad_clips_are_refused_with_one_line_before_any_work(make_server, inputs, clip_bytes):
    client, queue = make_server(started=False)

    def refused(response, status: int, detail: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["detail"] == detail and "\n" not in detail

    refused(post_video(client, b"this is not a video\n", inputs[1], name="notes.txt"), 422,
            "A (notes.txt): not a video file that can be read (MP4, MKV, WebM, MOV, …)")
    refused(post_video(client, inputs[0], inputs[1], name="photo.png"), 422,
            "A (photo.png): an image, not a video; A must be a video file")
    refused(client.post("/api/jobs", files={"a": ("a.png", inputs[0]),
                                            "video": ("clip.mp4", clip_bytes),
                                            "bprime": ("b.png", inputs[1])}), 422,
            "send A as an image (file field 'a') or as a clip (file field 'video'), not both")
    refused(post_video(client, clip_bytes, b"no picture"), 422,
            "B′ (b.png): not an image file that can be read (PNG, JPEG, …)")
    assert job_folders(queue.data) == []
    # a clip is served back by its extension's type: never one that a browser shows as a page
    job = post_video(client, clip_bytes, inputs[1], name="clip.html").json()
    assert job["inputs"]["a"]["name"] == "clip.html" and job["files"][0] == "A_video.video"
    served = client.get(f"/api/jobs/{job['id']}/files/A_video.video")
    assert served.content == clip_bytes and "html" not in served.headers["content-type"]
    client, queue = make_server(started=False, limits=Limits(frames=4))
    refused(post_video(client, clip_bytes, inputs[1]), 413,
            f"A (clip.mp4): {CLIP_FRAMES} frames, over this server's limit of 4; send a shorter "
            "clip")
    assert job_folders(queue.data) == []
    client, queue = make_server(started=False, limits=Limits(pixels=5_000))
    refused(post_video(client, clip_bytes, _png_bytes(np.zeros((64, 64, 3), np.uint8))), 413,
            "A (clip.mp4): its frames are 96×64, 6,144 pixels, over this server's limit of 5,000; "
            "downscale it first")
    assert job_folders(queue.data) == []


def test_a_server_without_the_video_extra_says_so(make_server, inputs, clip_bytes, monkeypatch):
    import analogy.web.app as web_app

    monkeypatch.setattr(web_app, "_video_unavailable",
                        lambda: "video needs PyAV and OpenCV: pip install 'analogy[video]'")
    client, queue = make_server(started=False)
    assert client.get("/api/form").json()["video"] is False
    response = post_video(client, clip_bytes, inputs[1])
    assert response.status_code == 501
    assert response.json()["detail"] == ("this server cannot take clips: video needs PyAV and "
                                         "OpenCV: pip install 'analogy[video]'")
    assert job_folders(queue.data) == [] and post(client, *inputs).status_code == 202

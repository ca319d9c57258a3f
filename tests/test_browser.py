"""The page of `analogy serve` in a real browser: Debian's Chromium, driven by Playwright, against a
server this test starts on a free port. A bad file shows its reason; two images uploaded and run
give A′ and B on the page, and the A′ downloaded from it has the command line's bytes; a second job,
queued behind the first, is cancelled from its own page; a clip dropped as A comes back as a video
that plays on the page. Chromium missing is a failure, not a skip: `apt-get install chromium`
(.ci/run does it).

With ANALOGY_WEB_SCREENSHOT=path, the finished page's screenshot is also saved there (the README's
examples/web_page.jpg is made so)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import expect, sync_playwright

import cli

from .conftest import image_path
from .test_serve import CLIP_FRAMES, CLIP_H, CLIP_W, gradient_clip, start_server

CHROMIUM = Path("/usr/bin/chromium")
OPTIONS = {"size": "96", "seed": "7"}
# a safety net only: a loaded two-core machine can take minutes over a small job
TIMEOUT_MS = 600_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def server(tmp_path):
    proc, url = start_server(tmp_path / "data")
    yield url
    proc.send_signal(signal.SIGTERM)  # a job still running stops at its next step
    try:
        proc.communicate(timeout=TIMEOUT_MS / 1000)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
def test_page_runs_a_job_end_to_end(server, tmp_path):
    assert CHROMIUM.is_file(), (f"{CHROMIUM} is missing: the browser test needs Debian's Chromium "
                                "(apt-get install chromium)")
    a, b = image_path("skyline.jpg"), image_path("starry_night.jpg")
    res = CliRunner().invoke(cli.main, [str(a), str(b), "-o", str(tmp_path / "cli"), "-q",
                                        *[arg for k, v in OPTIONS.items()
                                          for arg in (f"--{k}", v)]])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a picture\n")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            elsewhere, errors = [], []
            page.on("request", lambda r: None if r.url.startswith((server, "blob:", "data:"))
                    else elsewhere.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)

            def run(a_file: Path, b_file: Path) -> None:
                page.set_input_files("input[name=a]", str(a_file))
                page.set_input_files("input[name=bprime]", str(b_file))
                for name, value in OPTIONS.items():
                    page.fill(f"#opt-{name}", value)
                page.click("#run")

            run(bad, b)  # a bad file: its one-line reason on the page, no job
            expect(page.locator("#form-error")).to_have_text(
                "A (notes.png): not an image file that can be read (PNG, JPEG, …)")
            expect(page).to_have_url(server)

            run(a, b)
            expect(page).to_have_url(re.compile(r"/jobs/[A-Za-z0-9_-]{24}$"))
            first = page.url
            page.click("text=New job")
            run(a, b)  # a second job, queued behind the first, at its own address
            expect(page).to_have_url(re.compile(r"/jobs/[A-Za-z0-9_-]{24}$"))
            second = page.url
            assert second != first
            expect(page.locator("#job-state")).to_have_text(re.compile("queued|running"))
            page.click("#cancel")
            expect(page).to_have_url(server)
            assert page.request.get(second.replace("/jobs/", "/api/jobs/")).status == 404

            page.click(f"#history a[href='{first[len(server) - 1:]}']")
            expect(page.locator("#job-state")).to_have_text("done")
            for name in ("A_prime.png", "B.png"):
                image = page.locator(f"figure[data-file='{name}'] img")
                expect(image).to_be_visible()
                expect(image).to_have_js_property("complete", True)
                assert image.evaluate("img => img.naturalWidth") > 0
            with page.expect_download() as download:
                page.click("figure[data-file='A_prime.png'] a[download]")
            assert (Path(download.value.path()).read_bytes()
                    == (tmp_path / "cli" / "A_prime.png").read_bytes())
            expect(page.locator("#progress-stage")).to_have_text(re.compile(r"^Done in \d"))

            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            target = os.environ.get("ANALOGY_WEB_SCREENSHOT")
            if target:
                page.screenshot(path=target, full_page=True, type="jpeg", quality=82)

            # a clip as A: it plays in the drop zone, and its stylised frames play as a video
            page.click("text=New job")
            page.set_input_files("input[name=a]", str(gradient_clip(tmp_path / "clip.mp4")))
            expect(page.locator(".drop[data-slot=a] video")).to_be_visible()
            page.set_input_files("input[name=bprime]", str(b))
            page.fill("#opt-size", "48")
            page.click("#run")
            expect(page).to_have_url(re.compile(r"/jobs/[A-Za-z0-9_-]{24}$"))
            expect(page.locator("#job-meta")).to_contain_text(f"video of {CLIP_FRAMES} frames")
            expect(page.locator("#job-state")).to_have_text("done")
            result = page.locator("figure[data-file='A_prime.mp4'] video")
            expect(result).to_be_visible()
            # it plays: Chromium decodes the H.264, and its time goes on
            assert result.evaluate("v => v.play().then(() => null, (e) => String(e))") is None
            page.wait_for_function("v => v.currentTime > 0 || v.error", arg=result.element_handle())
            assert result.evaluate("v => [v.error && v.error.code, v.videoWidth, v.videoHeight]") \
                == [None, CLIP_W, CLIP_H]
            expect(page.locator("#download-zip")).to_have_attribute(
                "href", re.compile(r"/files/A_prime\.mp4$"))
            expect(page.locator("#progress-stage")).to_have_text(re.compile(r"^Done in \d"))
            page.screenshot(path=str(tmp_path / "video_page.png"), full_page=True)
            assert not elsewhere, f"the page loaded from elsewhere: {elsewhere}"
            assert not errors, errors
        finally:
            browser.close()

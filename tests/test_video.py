"""`analogy video` and the temporal coherence behind it: on camera pans made in the test from a
real photo (examples/skyline.jpg), the flow and the carried NNFs are checked against the known
motion, the video's frames against frames made one by one, and the command for its interface,
its resume after a kill or Ctrl-C, and its one-line errors on bad input."""
from __future__ import annotations

import json
import signal
from fractions import Fraction
from pathlib import Path
from typing import List

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import cli
from analogy import AnalogyConfig
from analogy.motion import estimate_motion, warp_nnf_from, warp_nnf_into
from analogy.pipeline import run_analogy
from analogy.video import JOB_NAME, WORK_SUFFIX, VideoAnalogy
from analogy.video_io import describe

from .conftest import assert_one_line_error, image_path

#: The pans: frames of H×W moving STEP px a frame to the right across the photo.
H, W, STEP, RATE = 64, 96, 2, 12


def pan_frames(count: int, h: int = H, w: int = W, step: int = STEP) -> List[np.ndarray]:
    """`count` frames of a camera pan across the skyline photo: frame t is the h×w crop at x =
    step·t, so frame t shows at (y, x) what frame t − 1 showed at (y, x + step)."""
    photo = Image.open(image_path("skyline.jpg")).convert("RGB")
    scale = h / photo.height * 1.5
    photo = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                    Image.Resampling.LANCZOS))
    top = (photo.shape[0] - h) // 2
    return [np.ascontiguousarray(photo[top:top + h, step * t:step * t + w]) for t in range(count)]


def write_clip(path: Path, frames: List[np.ndarray], audio: bool = True) -> Path:
    """An H.264 .mp4 of `frames` at RATE fps, with a second of 440 Hz AAC sound if `audio`."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10"}
        sound = out.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
            t = np.arange(44100) / 44100
            samples = av.AudioFrame.from_ndarray(
                (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp",
                layout="mono")
            samples.sample_rate = 44100
            for packet in [*sound.encode(samples), *sound.encode(None)]:
                out.mux(packet)
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode(None))
    return path


def temporal_error(outputs: List[np.ndarray], step: int) -> float:
    """Mean |O_t − O_{t−1} moved by the pan| over the overlap of consecutive frames."""
    return float(np.mean([np.abs(b[:, :-step].astype(float) - a[:, step:].astype(float)).mean()
                          for a, b in zip(outputs, outputs[1:])]))


@pytest.fixture(scope="module")
def style(tmp_path_factory) -> Path:
    """A small style image (a crop of The Starry Night), as a file."""
    path = tmp_path_factory.mktemp("style") / "style.png"
    starry = Image.open(image_path("starry_night.jpg")).convert("RGB")
    starry.crop((0, 0, 160, 128)).save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame pan as an .mp4 with sound."""
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", pan_frames(6))


#: Small and quick: 48-px working size, the output at the frames' own size.
FAST = ["--size", "48"]


def test_the_flow_recovers_a_pan_and_distrusts_the_edge_it_brings_in():
    first, second = pan_frames(2, 96, 128, 3)
    motion = estimate_motion(first, second)
    inner = (slice(8, -8), slice(8, -16))
    assert np.abs(motion.backward[inner][..., 0] - 3).mean() < 0.3  # second(p) = first(p + 3)
    assert np.abs(motion.backward[inner][..., 1]).mean() < 0.3
    assert np.abs(motion.forward[inner][..., 0] + 3).mean() < 0.3
    # what the pan brings in at the right edge has no counterpart in the first frame
    assert motion.reliable[:, -2:].mean() < 0.2
    assert motion.reliable[inner].mean() > 0.9


def test_carried_nnfs_follow_the_motion():
    """A match into a still image moves with its pixel (φ_t(p) = φ_{t−1}(p + 3)); matches into the
    frame are moved by the pan (q → q − 3); the edge brought in is not carried."""
    first, second = pan_frames(2, 96, 128, 3)
    motion = estimate_motion(first, second)
    h, w = 96, 128
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    nnf = torch.stack([ys, xs], -1).int()  # frame t−1 → a still image: its own coordinates
    carried, ok = warp_nnf_from(nnf, motion)
    assert ok[:, -3:].sum() == 0
    inner = ok[10:-10, 10:-10]
    assert inner.float().mean() > 0.9
    shift = (carried[..., 1] - xs)[10:-10, 10:-10][inner]
    assert (shift == 3).float().mean() > 0.9
    moved, ok = warp_nnf_into(nnf, (h, w), motion)
    inner = ok[10:-10, 10:-10]
    assert ((moved[..., 1] - xs)[10:-10, 10:-10][inner] == -3).float().mean() > 0.9


@pytest.mark.slow
def test_video_frames_flicker_far_less_than_frames_made_one_by_one(vgg, style):
    """Six frames of a pan: the video's consecutive frames agree (after the pan's shift) several
    times better than the same frames made one by one with the same seed, and its frames after the
    first use the fewer iterations of a warm start."""
    frames = pan_frames(6)
    config = AnalogyConfig(size=64)
    stylise = VideoAnalogy(style, config, vgg)
    video = [stylise(frame) for frame in frames]
    single = [run_analogy(frame, stylise.style, config, vgg).a_prime for frame in frames]
    assert np.array_equal(video[0], single[0])  # the first frame is a single image's analogy
    ratio = temporal_error(video, STEP) / temporal_error(single, STEP)
    print(f"temporal error, video / one by one: {ratio:.3f}")
    assert ratio < 0.5
    # the last frame started warm: the few iterations of video_deconv_iterations
    levels = stylise.result.levels
    assert levels[2]["deconv_ab_evaluations"] <= config.video_deconv_iterations[2] * 4 + 1
    assert stylise.continuity.warm and stylise.continuity.carried[("relu1_1", "ab")] > 0.5


@pytest.mark.slow
def test_mp4_in_gives_mp4_out_with_the_same_frames_rate_size_and_sound(tmp_path, clip, style):
    out = tmp_path / "out.mp4"
    res = CliRunner().invoke(cli.main, ["video", str(clip), str(style), "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    made, source = describe(out), describe(clip)
    assert (made.count, made.rate, made.shape, made.audio) == (6, Fraction(RATE), (H, W), True)
    assert (made.count, made.rate, made.shape) == (source.count, source.rate, source.shape)
    assert "video 6/6" in res.output and f"wrote {out}" in res.output
    assert not (tmp_path / f"out.mp4{WORK_SUFFIX}").exists()  # the work folder went


@pytest.mark.slow
def test_folder_in_and_out_keeps_the_frames_names_and_a_second_run_has_nothing_to_do(tmp_path,
                                                                                     style):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(pan_frames(3)):
        Image.fromarray(frame).save(frames / f"shot{index + 8}.jpg")  # shot8, shot9, shot10
    out = tmp_path / "out"
    res = CliRunner().invoke(cli.main, ["video", str(frames), str(style), "-o", str(out), "-q",
                                        *FAST])
    assert res.exit_code == 0 and res.output == "", res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["shot10.png", "shot8.png", "shot9.png"]
    assert json.loads((out / JOB_NAME).read_text())["frames"] == ["shot8.png", "shot9.png",
                                                                  "shot10.png"]
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    res = CliRunner().invoke(cli.main, ["video", str(frames), str(style), "-o", str(out), *FAST])
    assert res.exit_code == 0 and "0 made in this run" in res.output, res.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGKILL, -signal.SIGKILL),
                                        (signal.SIGINT, 130)], ids=["kill", "ctrl-c"])
def test_a_stopped_video_resumes_at_the_first_missing_frame_with_the_same_bytes(tmp_path, clip,
                                                                                style, command,
                                                                                sig, status):
    """Stopped as frame 2 of 6 is reported: frames 1 and 2 stay, nothing partial; the same command
    again resumes at frame 3 from the saved state, and every frame is byte for byte what an
    uninterrupted run makes."""
    whole = tmp_path / "whole"
    assert CliRunner().invoke(cli.main, ["video", str(clip), str(style), "-o", str(whole), "-q",
                                         *FAST]).exit_code == 0
    out = tmp_path / "out"
    run = command(["video", clip, style, "-o", out, *FAST])
    run.wait_for("video 2/6")
    run.send(sig)
    code, lines = run.finish()
    assert code == status, lines
    kept = {p.name for p in out.iterdir() if not p.name.startswith(".")} - {JOB_NAME}
    # (frame 3 may have been finished between the line and the signal)
    assert kept in ({"frame_000001.png", "frame_000002.png"},
                    {"frame_000001.png", "frame_000002.png", "frame_000003.png"}), kept
    assert not [p for p in out.iterdir() if p.name.startswith(".analogy-tmp")]
    again = command(["video", clip, style, "-o", out, *FAST])
    again.wait_for(f"resuming at frame {len(kept) + 1} of 6 (from the saved state")
    code, lines = again.finish()
    assert code == 0, lines
    for frame in whole.glob("*.png"):
        assert (out / frame.name).read_bytes() == frame.read_bytes(), frame.name


def test_bad_inputs_and_outputs_are_one_line_errors(tmp_path, clip, style):
    runner = CliRunner()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert_one_line_error(runner.invoke(cli.main, ["video", str(text), str(style), "-o",
                                                   str(tmp_path / "a.mp4")]), "not a video")
    assert_one_line_error(runner.invoke(cli.main, ["video", str(tmp_path / "none.mp4"),
                                                   str(style), "-o", str(tmp_path / "a.mp4")]),
                          "no such file")
    sound_only = tmp_path / "sound.m4a"
    with av.open(str(sound_only), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp",
                                             layout="mono")
        samples.sample_rate = 44100
        for packet in [*stream.encode(samples), *stream.encode(None)]:
            out.mux(packet)
    assert_one_line_error(runner.invoke(cli.main, ["video", str(sound_only), str(style), "-o",
                                                   str(tmp_path / "a.mp4")]), "video stream")
    assert_one_line_error(runner.invoke(cli.main, ["video", str(clip), str(text), "-o",
                                                   str(tmp_path / "a.mp4")]), "not an image file")
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "a.mp4.frames").exists()
    # an output video that exists is never replaced
    existing = tmp_path / "mine.mp4"
    existing.write_bytes(b"my own video")
    assert_one_line_error(runner.invoke(cli.main, ["video", str(clip), str(style), "-o",
                                                   str(existing)]), "exists")
    assert existing.read_bytes() == b"my own video"
    # nor a frame of someone else's in an output folder
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "frame_000001.png").write_bytes(b"my own picture")
    assert_one_line_error(runner.invoke(cli.main, ["video", str(clip), str(style), "-o",
                                                   str(folder)]), "exists")
    assert (folder / "frame_000001.png").read_bytes() == b"my own picture"


@pytest.mark.slow
def test_a_folder_of_another_jobs_frames_is_not_resumed_with_other_options(tmp_path, clip, style):
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(cli.main, ["video", str(clip), str(style), "-o", str(out), "-q",
                                    *FAST]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert_one_line_error(runner.invoke(cli.main, ["video", str(clip), str(style), "-o",
                                                   str(out), "--size", "64"]),
                          "other inputs or options")
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


@pytest.mark.slow
def test_a_cut_starts_afresh(vgg, style):
    """After a cut to another picture, the frame is what it would be as the first frame."""
    config = AnalogyConfig(size=48)
    pan = pan_frames(2)
    other = np.asarray(Image.open(image_path("carcassonne.jpg")).convert("RGB").resize((W, H)))
    stylise = VideoAnalogy(style, config, vgg)
    stylise(pan[0])
    stylise(pan[1])
    assert stylise.continuity.warm
    after_cut = stylise(other)
    assert not stylise.continuity.warm
    assert np.array_equal(after_cut, VideoAnalogy(style, config, vgg)(other))

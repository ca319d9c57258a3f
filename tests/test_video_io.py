"""The video input and output of `analogy video` (analogy.video_io): clips are made in tmp_path
with PyAV, a few small frames each, so that every test takes a fraction of a second."""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple

import av
import numpy as np
import pytest
from PIL import Image

from analogy.errors import ConfigError, InputImageError, OutputError
from analogy.image_io import TEMP_PREFIX, png_bytes
from analogy.video_io import (
    VIDEO_EXTENSIONS,
    Clip,
    describe,
    encode,
    encoded_shape,
    frame_rate,
    is_video_path,
    open_clip,
    read_frames,
    require_video,
)

W, H, COUNT, FPS = 64, 48, 10, 12


def gradient(index: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame `index` of a test clip: a smooth gradient that moves by 3 px a frame."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = 40 + 3 * ((x + 3 * index) % w)
    rgb[..., 1] = 40 + 3 * y
    rgb[..., 2] = 120
    return rgb


def make_video(path: Path, count: int = COUNT, w: int = W, h: int = H, fps: int = FPS,
               audio: Optional[str] = None, video: bool = True) -> Path:
    """A test clip: `count` gradient frames of w×h at `fps`, with a 1 kHz tone in codec `audio`
    (aac, libopus) lasting as long as the frames, or None for no sound; with `video` False, the
    sound alone."""
    with av.open(str(path), "w") as container:
        if video:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if audio:
            sound = container.add_stream(audio, rate=48_000)
            sound.layout = "mono"
        for index in range(count if video else 0):
            frame = av.VideoFrame.from_ndarray(gradient(index, w, h), format="rgb24")
            container.mux(stream.encode(frame))
        if video:
            container.mux(stream.encode())
        if audio:
            samples = 48_000 * (count or COUNT) // fps  # (sound even for a clip of no frames)
            tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(samples) / 48_000)
            tone = tone.astype(np.float32)
            for start in range(0, samples, 960):
                frame = av.AudioFrame.from_ndarray(tone[None, start:start + 960], format="flt",
                                                   layout="mono")
                frame.sample_rate, frame.pts = 48_000, start
                frame.time_base = Fraction(1, 48_000)
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def write_frames(folder: Path, frames: List[np.ndarray], names: List[str]) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rgb, name in zip(frames, names):
        (folder / name).write_bytes(png_bytes(rgb))
        paths.append(folder / name)
    return paths


def sound(path: Path) -> Tuple[float, float]:
    """The seconds a file's sound lasts, and its strongest frequency in Hz."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    rate = frames[0].sample_rate
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])  # (mono)
    spectrum = np.abs(np.fft.rfft(samples))
    return len(samples) / rate, float(np.argmax(spectrum) * rate / len(samples))


def streams(path: Path) -> List[str]:
    """The codecs of a file's streams, e.g. ["h264", "aac"]."""
    with av.open(str(path)) as container:
        return [stream.codec_context.name for stream in container.streams]


def one_line_error(excinfo, *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The test clips, made once: with AAC sound (in MP4; in MPEG-TS, whose streams start later
    than 0, and not together), with Opus sound in MKV, without sound."""
    folder = tmp_path_factory.mktemp("clips")
    return {"aac": make_video(folder / "tone.mp4", audio="aac"),
            "ts": make_video(folder / "tone.ts", audio="aac"),
            "opus": make_video(folder / "tone.mkv", audio="libopus"),
            "silent": make_video(folder / "silent.mp4")}


@pytest.fixture(scope="module")
def frames(clips, tmp_path_factory) -> List[Path]:
    """The frames of the AAC clip as PNG files (as the method writes its results)."""
    clip = open_clip(clips["aac"])
    return write_frames(tmp_path_factory.mktemp("frames"), list(read_frames(clip)), clip.names)


def mean_error(a: List[np.ndarray], b: List[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]))


# ---- reading ----------------------------------------------------------------------------------

def test_open_clip_of_a_video(clips):
    clip = open_clip(clips["aac"])
    assert clip.kind == "video" and clip.path == clips["aac"]
    assert clip.count == COUNT and clip.shape == (H, W)
    assert clip.rate == Fraction(FPS) and isinstance(clip.rate, Fraction)
    assert clip.audio is True
    assert clip.names == tuple(f"frame_{i:06d}.png" for i in range(1, COUNT + 1))
    assert open_clip(clips["silent"]).audio is False
    assert describe(clips["opus"]).audio is True


def test_read_frames_of_a_video(clips):
    clip = open_clip(clips["silent"])
    frames = list(read_frames(clip))
    assert len(frames) == COUNT
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert mean_error(frames, [gradient(i) for i in range(COUNT)]) < 4
    tail = list(read_frames(clip, start=7))
    assert len(tail) == 3
    assert all(np.array_equal(a, b) for a, b in zip(tail, frames[7:]))
    assert list(read_frames(clip, start=COUNT)) == []
    with pytest.raises(ValueError):
        next(read_frames(clip, start=COUNT + 1))


def test_open_clip_of_a_folder_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    order = ["frame1.jpg", "frame2.png", "frame10.png", "Frame11.tif"]
    frames = [gradient(i) for i in range(len(order))]
    folder.mkdir()
    for rgb, name in zip(frames, order):
        Image.fromarray(rgb).save(folder / name, quality=95)
    (folder / ".hidden.png").write_bytes(png_bytes(gradient(0, 40, 40)))
    (folder / "notes.txt").write_text("not a frame")
    (folder / "sub.png").mkdir()
    clip = open_clip(folder)
    assert clip.kind == "folder" and clip.rate is None and clip.audio is False
    assert clip.count == 4 and clip.shape == (H, W)
    assert clip.names == ("frame1.png", "frame2.png", "frame10.png", "Frame11.png")
    assert clip.files == tuple(order)
    read = list(read_frames(clip))
    assert np.array_equal(read[1], frames[1]) and np.array_equal(read[3], frames[3])
    assert mean_error(read[:1], frames[:1]) < 3  # (a JPEG)
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(clip, start=2), read[2:]))


# ---- bad inputs ------------------------------------------------------------------------------

def test_missing_input(tmp_path):
    with pytest.raises(InputImageError) as excinfo:
        open_clip(tmp_path / "nothing.mp4")
    one_line_error(excinfo, "nothing.mp4", "no such file or folder")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("hello\nthis is not a video\n")
    with pytest.raises(InputImageError) as excinfo:
        open_clip(path)
    one_line_error(excinfo, "notes.mp4", "not a video file that can be read")


def test_image_given_as_input(tmp_path):
    image = tmp_path / "still.png"
    image.write_bytes(png_bytes(gradient(0)))
    with pytest.raises(InputImageError) as excinfo:
        open_clip(image)
    one_line_error(excinfo, "still.png", "a video file or a folder of frames")
    disguised = tmp_path / "still.mp4"  # a PNG by its content, which FFmpeg reads as one frame
    disguised.write_bytes(image.read_bytes())
    with pytest.raises(InputImageError) as excinfo:
        open_clip(disguised)
    one_line_error(excinfo, "still.mp4", "a still image", "a folder of frames")


def test_sound_without_video(tmp_path):
    path = make_video(tmp_path / "sound.mp4", audio="aac", video=False)
    with pytest.raises(InputImageError) as excinfo:
        open_clip(path)
    one_line_error(excinfo, "sound.mp4", "no video stream")


def test_video_stream_without_frames(tmp_path):
    path = make_video(tmp_path / "empty.mkv", count=0, audio="aac")
    with av.open(str(path)) as container:  # (the file has a video stream)
        assert len(container.streams.video) == 1
    with pytest.raises(InputImageError) as excinfo:
        open_clip(path)
    one_line_error(excinfo, "empty.mkv", "no frames")


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".hidden.png").write_bytes(png_bytes(gradient(0)))
    with pytest.raises(InputImageError) as excinfo:
        open_clip(tmp_path)
    one_line_error(excinfo, str(tmp_path), "no images")


def test_folder_of_mixed_sizes(tmp_path):
    write_frames(tmp_path, [gradient(0), gradient(1), gradient(2, 66, 48), gradient(3, 70, 50)],
                 ["f1.png", "f2.png", "f3.png", "f4.png"])
    with pytest.raises(InputImageError) as excinfo:
        open_clip(tmp_path)
    message = one_line_error(excinfo, "f3.png", "66×48", "64×48", "same size")
    assert "f4.png" not in message


def test_folder_names_that_would_clash(tmp_path):
    write_frames(tmp_path, [gradient(0), gradient(1)], ["a.png", "a.jpg"])
    with pytest.raises(InputImageError) as excinfo:
        open_clip(tmp_path)
    one_line_error(excinfo, "a.png", "rename")


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_frames_too_small(tmp_path, kind):
    if kind == "video":
        path = make_video(tmp_path / "tiny.mp4", count=2, w=64, h=16)
    else:
        path = tmp_path / "tiny"
        write_frames(path, [gradient(0, 64, 16)], ["f1.png"])
    with pytest.raises(InputImageError) as excinfo:
        open_clip(path)
    one_line_error(excinfo, "tiny", "64×16 px is too small")


def test_a_truncated_video(tmp_path):
    path = make_video(tmp_path / "cut.mkv")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 9 // 10])
    clip = open_clip(path)  # (what is left of it is read as a shorter video)
    assert 0 < clip.count < COUNT
    assert len(list(read_frames(clip))) == clip.count


def test_require_video(monkeypatch, clips):
    require_video()
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ConfigError) as excinfo:
        require_video()
    one_line_error(excinfo, "pip install 'analogy[video]'")
    with pytest.raises(ConfigError):
        open_clip(clips["silent"])


def test_is_video_path():
    assert all(is_video_path(f"out{ext}") for ext in VIDEO_EXTENSIONS)
    assert is_video_path("OUT.MP4") and is_video_path(Path("a/b.WebM"))
    assert not is_video_path("out.png") and not is_video_path("out") and not is_video_path("mp4")


# ---- writing ---------------------------------------------------------------------------------

def test_encode_mp4_round_trip(clips, frames, tmp_path):
    clip = open_clip(clips["aac"])
    output = tmp_path / "result.mp4"
    encode(frames, clip, output)
    written = describe(output)
    assert (written.count, written.rate, written.shape, written.audio) == (COUNT, FPS, (H, W), True)
    assert streams(output) == ["h264", "aac"]
    originals = [np.asarray(Image.open(p).convert("RGB")) for p in frames]
    assert mean_error(list(read_frames(written)), originals) < 3
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        stamps = [p.pts for p in container.demux(stream) if p.pts is not None]
        assert sorted(stamps) == [round(i / FPS / stream.time_base) for i in range(COUNT)]
        sound = container.streams.audio[0]
        assert abs(float(sound.duration * sound.time_base) - COUNT / FPS) < 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]


def test_encode_without_sound(clips, frames, tmp_path):
    encode(frames, open_clip(clips["silent"]), tmp_path / "result.mp4")
    written = describe(tmp_path / "result.mp4")
    assert (written.count, written.rate, written.audio) == (COUNT, FPS, False)
    assert streams(tmp_path / "result.mp4") == ["h264"]


@pytest.mark.parametrize("source, suffix, codecs", [
    ("aac", ".webm", ["vp9", "opus"]),  # AAC is not WebM's: encoded again as Opus
    ("aac", ".mkv", ["h264", "aac"]),  # copied
    ("aac", ".mov", ["h264", "aac"]),
    ("opus", ".mkv", ["h264", "opus"]),  # copied
    ("opus", ".webm", ["vp9", "opus"]),
    ("opus", ".mp4", ["h264", "aac"]),  # encoded again as AAC
    ("ts", ".mp4", ["h264", "aac"]),  # copied from the video's first frame on
])
def test_encode_containers_and_sound(clips, frames, tmp_path, source, suffix, codecs):
    output = tmp_path / f"result{suffix.upper() if suffix == '.mov' else suffix}"
    encode(frames, open_clip(clips[source]), output)
    written = describe(output)
    assert (written.count, written.rate, written.shape, written.audio) == (COUNT, FPS, (H, W), True)
    assert streams(output) == codecs
    seconds, pitch = sound(output)
    assert abs(seconds - COUNT / FPS) < 0.06 and abs(pitch - 1000) < 10


def test_encode_a_folder_at_a_given_rate(tmp_path, frames):
    folder = tmp_path / "in"
    write_frames(folder, [gradient(i) for i in range(4)], [f"f{i}.png" for i in range(4)])
    clip = open_clip(folder)
    assert frame_rate(clip) == 25
    encode([folder / f for f in clip.files], clip, tmp_path / "default.mp4")
    assert describe(tmp_path / "default.mp4").rate == 25
    encode([folder / f for f in clip.files], clip, tmp_path / "ntsc.mkv", rate=30000 / 1001)
    written = describe(tmp_path / "ntsc.mkv")
    assert written.rate == Fraction(30000, 1001) and written.count == 4
    for bad in (0, -1, float("nan"), "25", True):
        with pytest.raises(ConfigError):
            frame_rate(clip, bad)
    for bad in (-1, 52, 2.5):
        with pytest.raises(ConfigError):
            encode([folder / f for f in clip.files], clip, tmp_path / "bad.mp4", quality=bad)
    assert not (tmp_path / "bad.mp4").exists()


def test_encode_odd_sizes(tmp_path):
    folder = tmp_path / "odd"
    frames = write_frames(folder, [gradient(i, 63, 47) for i in range(3)],
                          ["a.png", "b.png", "c.png"])
    clip = open_clip(folder)
    encode(frames, clip, tmp_path / "odd.mp4")  # H.264 4:2:0: one more row and column
    assert encoded_shape(clip.shape, "odd.mp4") == (48, 64)
    written = describe(tmp_path / "odd.mp4")
    assert written.shape == (48, 64) and written.count == 3
    first = next(read_frames(written))
    assert np.abs(first[:, 63].astype(int) - first[:, 62]).mean() < 3  # the last column again
    encode(frames, clip, tmp_path / "odd.webm")  # VP9 keeps the size
    assert encoded_shape(clip.shape, "odd.webm") == (47, 63)
    assert describe(tmp_path / "odd.webm").shape == (47, 63)
    assert encoded_shape((48, 64), "even.mp4") == (48, 64)


# ---- safe writing ----------------------------------------------------------------------------

def test_existing_output_is_kept(clips, frames, tmp_path):
    output = tmp_path / "result.mp4"
    output.write_bytes(b"the user's own file")
    with pytest.raises(OutputError) as excinfo:
        encode(frames, open_clip(clips["aac"]), output)
    one_line_error(excinfo, "result.mp4", "exists", "choose another output name")
    assert output.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]


def test_output_that_is_not_a_video(clips, frames, tmp_path):
    with pytest.raises(OutputError) as excinfo:
        encode(frames, open_clip(clips["aac"]), tmp_path / "result.avi")
    one_line_error(excinfo, "result.avi", ".mp4")
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_nothing(clips, frames, tmp_path):
    output = tmp_path / "new" / "result.mp4"
    broken = list(frames)
    broken[5] = tmp_path / "missing.png"
    with pytest.raises(InputImageError) as excinfo:
        encode(broken, open_clip(clips["aac"]), output)
    one_line_error(excinfo, "missing.png", "no such file")
    assert list(tmp_path.iterdir()) == []  # neither the temporary nor the folder made for it


def test_frame_of_another_size(clips, tmp_path):
    wrong = write_frames(tmp_path / "wrong", [gradient(0, 80, 60)], ["f.png"])
    with pytest.raises(OutputError) as excinfo:
        encode(wrong, open_clip(clips["silent"]), tmp_path / "result.mkv")
    one_line_error(excinfo, "f.png", "80×60", "64×48")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong"]


def test_interrupted_encode_leaves_nothing(clips, frames, tmp_path, monkeypatch):
    from analogy import video_io

    calls = []

    def interrupted(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    real = video_io.load_image
    monkeypatch.setattr(video_io, "load_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode(frames, open_clip(clips["aac"]), tmp_path / "result.webm")
    assert len(calls) == 4
    assert list(tmp_path.iterdir()) == []


def test_temporary_name_is_recognised(clips, frames, tmp_path, monkeypatch):
    """The file being written is named as this tool's temporaries are (see output_folder)."""
    from analogy import video_io

    seen = []
    real = video_io._write_video

    def watched(target, *args, **kwargs):
        seen.append(target)
        real(target, *args, **kwargs)

    monkeypatch.setattr(video_io, "_write_video", watched)
    encode(frames, open_clip(clips["silent"]), tmp_path / "result.mp4")
    assert seen[0].parent == tmp_path and seen[0].name.startswith(TEMP_PREFIX + "result.mp4.")
    assert seen[0].name.endswith(".part") and not seen[0].exists()


def test_clip_is_frozen(clips):
    clip = open_clip(clips["silent"])
    with pytest.raises(AttributeError):
        clip.count = 3  # type: ignore[misc]
    assert isinstance(clip, Clip)

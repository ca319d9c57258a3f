"""The README's video strip: a real clip made one frame at a time and as a video.

  python benchmarks/video_strip.py                  # writes examples/video_strip.jpg

The clip is a slow zoom into the Cité de Carcassonne (examples/carcassonne.jpg), 24 frames of
320×240 at 12 fps, 2 % closer a frame, written as an .mp4 and styled as The Starry Night
(examples/starry_night.jpg) twice with the same seed: frame by frame with `analogy`, and with
`analogy video` (the command, into an .mp4). The strip shows frames 1, 9, 17 and 24 of the input,
of each result, and the difference between consecutive frames (frame t against frame t−1, no
motion compensation, so a still region that flickers shows bright), with the figures printed.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analogy import AnalogyConfig, load_vgg  # noqa: E402
from analogy.pipeline import run_analogy  # noqa: E402
from analogy.video_io import open_clip, read_frames  # noqa: E402

COUNT, SIZE, RATE, ZOOM = 24, (240, 320), 12, 1.02
SHOWN = (0, 8, 16, 23)


def zoom_frames() -> list:
    photo = Image.open(ROOT / "examples" / "carcassonne.jpg").convert("RGB")
    h, w = SIZE
    frames = []
    for t in range(COUNT):
        scale = ZOOM ** t
        cw, ch = photo.width / scale, photo.height / scale
        box = ((photo.width - cw) / 2, (photo.height - ch) / 2,
               (photo.width + cw) / 2, (photo.height + ch) / 2)
        frames.append(np.asarray(photo.resize((w, h), Image.Resampling.LANCZOS, box=box)))
    return frames


def write_mp4(path: Path, frames: list) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


def flicker(frames: list) -> float:
    """Mean |O_t − O_{t−1}| (no motion compensation): the zoom is slow, so most of it is flicker."""
    return float(np.mean([np.abs(b.astype(float) - a.astype(float)).mean()
                          for a, b in zip(frames, frames[1:])]))


def main() -> None:
    style = ROOT / "examples" / "starry_night.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "zoom.mp4"
        write_mp4(clip, zoom_frames())
        frames = list(read_frames(open_clip(clip)))
        vgg = load_vgg("caffe", "cpu")
        config = AnalogyConfig()
        style_rgb = np.asarray(Image.open(style).convert("RGB"))
        t0 = time.perf_counter()
        single = [run_analogy(frame, style_rgb, config, vgg).a_prime for frame in frames]
        single_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = Path(tmp) / "zoom_starry.mp4"
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "video", str(clip), str(style),
                        "-o", str(out), "-q"], check=True)
        video_s = time.perf_counter() - t0
        video = list(read_frames(open_clip(out)))
    print(f"one by one: {single_s:.0f} s, flicker {flicker(single):.1f}; analogy video: "
          f"{video_s:.0f} s (with its start-up and the encode), flicker {flicker(video):.1f}")
    rows = [("input", frames), ("one by one", single), ("analogy video", video)]
    diffs = [("|difference| one by one", single), ("|difference| video", video)]
    h, w = SIZE
    label = 18
    sheet = Image.new("RGB", (len(SHOWN) * w, (len(rows) + len(diffs)) * (h + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows):
        for c, t in enumerate(SHOWN):
            sheet.paste(Image.fromarray(images[t]), (c * w, r * (h + label) + label))
            draw.text((c * w + 4, r * (h + label) + 3), f"{name}, frame {t + 1}", fill="black")
    for k, (name, images) in enumerate(diffs):
        r = len(rows) + k
        for c, t in enumerate(SHOWN[1:], 1):
            d = np.abs(images[t].astype(int) - images[t - 1].astype(int)).mean(-1)
            picture = np.clip(d * 3, 0, 255).astype(np.uint8)
            sheet.paste(Image.fromarray(picture).convert("RGB"), (c * w, r * (h + label) + label))
            draw.text((c * w + 4, r * (h + label) + 3), f"{name}, frames {t} and {t + 1}",
                      fill="black")
        draw.text((4, r * (h + label) + label + 4), f"{name}:\nmean over the clip\n"
                  f"{flicker(images):.1f} (shown x3)", fill="black")
    sheet.save(ROOT / "examples" / "video_strip.jpg", quality=88)


if __name__ == "__main__":
    main()

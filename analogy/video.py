"""Video: every frame of a clip in one style image's look, coherent from frame to frame.

`VideoAnalogy` makes A′ for one frame after another: the first as a single image, each next one
warm from the one before (analogy/temporal.py, along the optical flow of analogy/motion.py).
`video` runs it over a video file or a folder of frames into a video file or a folder of PNGs,
one finished frame at a time, so that an interruption loses nothing finished and the same call
again resumes at the first missing frame (from the saved state of the frame before it, giving the
same bytes as a run that was never stopped).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Union

import numpy as np
import torch

from .config import AnalogyConfig
from .errors import OutputError, raise_if_interrupted
from .features import FeatureCache, VGG19Features, load_vgg
from .image_io import (
    ImageLike,
    load_image,
    output_lock,
    png_bytes,
    shown,
    write_files_atomically,
)
from .kernels import resolve_device
from .motion import estimate_motion
from .pipeline import AnalogyResult, run_analogy
from .temporal import Continuity, Memory
from .video_io import Clip, encode, is_video_path, open_clip, read_frames, require_video

PathLike = Union[str, os.PathLike]
#: In a video's output folder (or the work folder beside an output video file): what the frames
#: were made from, and the state the next frame starts from.
JOB_NAME = "analogy-video.json"
STATE_NAME = ".analogy-video-state.pt"
#: A frame of which less than this fraction is trusted to show the frame before (see
#: analogy.motion.reliability) follows a cut, and starts afresh: between unrelated pictures it is
#: 1–6 %, along a pan or a zoom about 90 %.
CUT = 0.3
#: The work folder of an output video file: beside it, its name and this.
WORK_SUFFIX = ".frames"


class VideoAnalogy:
    """A′ for the frames of one clip, in order, in the look of one style image B′.

    >>> stylise = VideoAnalogy("starry_night.jpg")
    >>> outputs = [stylise(frame) for frame in frames]  # H×W×3 uint8 arrays

    The first frame (and any after `reset` or a cut) is a single image's analogy; each next one
    starts from the previous frame's NNFs and deconvolutions carried along the optical flow, with
    the fewer iterations of `video_iterations` and `video_deconv_iterations`.
    """

    def __init__(self, b_prime: ImageLike, config: Optional[AnalogyConfig] = None,
                 vgg: Optional[VGG19Features] = None, **options) -> None:
        self.config = (config or AnalogyConfig()).replace(**options)
        self.style = load_image(b_prime, "B′")
        self.device = resolve_device(self.config.device)
        self.vgg = vgg if vgg is not None else load_vgg(self.config.weights, str(self.device))
        self.cache = FeatureCache()  # B′'s maps, computed once
        self.memory: Optional[Memory] = None
        self.previous: Optional[np.ndarray] = None
        #: the last frame's result and its continuity (what it carried, for the benchmark)
        self.result: Optional[AnalogyResult] = None
        self.continuity: Optional[Continuity] = None

    def reset(self) -> None:
        """Forget the previous frame: the next starts cold (a cut in the clip)."""
        self.memory, self.previous = None, None

    def __call__(self, frame: ImageLike, progress: Optional[Callable[[str], None]] = None
                 ) -> np.ndarray:
        """A′ of the next frame (H×W×3 uint8)."""
        image = load_image(frame, "frame")
        motion = (estimate_motion(self.previous, image)
                  if self.previous is not None and self.previous.shape == image.shape else None)
        if motion is not None and float(motion.reliable.mean()) < CUT:
            motion = None  # a cut: nothing of the frame before is on this one
        continuity = Continuity() if motion is None else Continuity(self.memory, motion)
        self.result = run_analogy(image, self.style, self.config, self.vgg, progress,
                                  cache=self.cache, keys=(None, ("style",)),
                                  continuity=continuity)
        self.memory, self.previous, self.continuity = continuity.memory, image, continuity
        return self.result.a_prime

    def state(self) -> dict:
        """What the next frame starts from, to save (torch.save) and give back to `restore`."""
        memory = None if self.memory is None else self.memory.to(torch.device("cpu"))
        return {"memory": memory, "previous": self.previous}

    def restore(self, state: dict) -> None:
        """Start the next frame from a saved `state`, as if the frames before had just run."""
        memory = state.get("memory")
        self.memory = None if memory is None else Memory(memory.nnfs, memory.variables).to(
            self.device)
        self.previous = state.get("previous")


@dataclass
class VideoResult:
    """What `video` did: where the result is, how many frames the clip has, at which frame this
    run began (0, or where it resumed) and the seconds each frame it made took."""

    output: Path
    frames: int
    started_at: int
    seconds: List[float] = field(default_factory=list)
    resumed_warm: bool = False


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _job(clip: Clip, b_prime: PathLike, config: AnalogyConfig, video_rate) -> dict:
    """What identifies a video job: its frames (names, size; a video file's digest), the style
    image's digest and every option. A folder that holds another job's frames is not resumed."""
    source = clip.path
    identity = (_digest(source) if clip.kind == "video"
                else [(n, (source / n).stat().st_size) for n in clip.files])
    options = {k: v for k, v in vars(config).items() if k not in ("device", "alphas")}
    job = {"input": str(source.resolve()), "frames": clip.names, "shape": clip.shape,
           "input_identity": identity, "style": _digest(Path(b_prime)), "options": options,
           "rate": None if video_rate is None else str(video_rate)}
    return json.loads(json.dumps(job, default=str))  # as it reads back from its file


def _work_folder(output: Path) -> Path:
    """Where the frames go: the output folder itself, or for a video file the folder beside it
    (out.mp4 → out.mp4.frames) that holds them until the encode."""
    return output.with_name(output.name + WORK_SUFFIX) if is_video_path(output) else output


def _claim(work: Path, job: dict, clip: Clip) -> None:
    """Check that `work` is this job's folder, or new, or holds none of its frames; OutputError
    otherwise (never overwrite what a user has)."""
    record = work / JOB_NAME
    if record.is_file():
        try:
            existing = json.loads(record.read_text())
        except (OSError, ValueError):
            existing = None
        if existing != job:
            raise OutputError(f"{shown(work)}: holds frames made from other inputs or options "
                              f"(see {JOB_NAME}); choose another output or remove it")
        return
    clash = [name for name in clip.names if (work / name).exists()]
    if clash:
        raise OutputError(f"{shown(work / clash[0])}: exists and was not made by this video "
                          "job; choose another output or remove it")


def _first_missing(work: Path, clip: Clip) -> int:
    for index, name in enumerate(clip.names):
        if not (work / name).is_file():
            return index
    return clip.count


def _save_state(work: Path, index: int, stylise: VideoAnalogy) -> None:
    """The state after frame `index` (replacing the previous one in one rename)."""
    path = work / STATE_NAME
    temporary = path.with_name(path.name + ".part")
    torch.save({"frame": index, **stylise.state()}, temporary)
    os.replace(temporary, path)


def _load_state(work: Path, index: int) -> Optional[dict]:
    """The saved state after frame `index`, if that is the one there."""
    path = work / STATE_NAME
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except (OSError, EOFError, RuntimeError, ValueError, AttributeError, ImportError):
        return None
    return state if state.get("frame") == index else None


def video(input: PathLike, b_prime: PathLike, output: PathLike,
          config: Optional[AnalogyConfig] = None, progress: Optional[Callable[[str], None]] = None,
          rate=None, quality: Optional[int] = None, vgg: Optional[VGG19Features] = None,
          **options) -> VideoResult:
    """A′ of every frame of `input` (a video file, or a folder of numbered images) in the look of
    the image `b_prime`, into `output`: a video file (.mp4, .mkv, .webm, .mov: the input's frame
    rate, or `rate` for a folder of frames, its size, its number of frames and its sound) or a
    folder (one PNG per frame, named after the input's frames).

    Frames are written one by one as they are finished; for a video file, into a work folder
    beside it (out.mp4.frames), encoded and removed at the end. Calling again with the same
    arguments resumes at the first missing frame. An output video that exists is not replaced,
    and a folder holding another job's frames is not written into (OutputError). `progress`, if
    given, gets a line per frame with the time left; `quality` is the encoder's CRF
    (`analogy.video_io.encode`). Options are AnalogyConfig fields.
    """
    require_video()
    config = (config or AnalogyConfig()).replace(**options)
    clip = open_clip(input)
    load_image(b_prime, "B′")  # a bad style image fails before any work
    output = Path(output)
    if is_video_path(output) and (output.exists() or output.is_symlink()):
        raise OutputError(f"{shown(output)}: exists; choose another output name or remove it")
    work = _work_folder(output)
    if work.exists() and not work.is_dir():
        raise OutputError(f"{shown(work)}: is a file, not a folder; choose another output")
    job = _job(clip, Path(b_prime), config, rate)
    _claim(work, job, clip)
    say = progress or (lambda _: None)
    with output_lock(work):
        start = _first_missing(work, clip)
        record = work / JOB_NAME
        if not record.exists():
            write_files_atomically({record: json.dumps(job, indent=1).encode()})
        result = VideoResult(output, clip.count, start)
        if start < clip.count:
            stylise = VideoAnalogy(b_prime, config, vgg)
            if start > 0:
                state = _load_state(work, start - 1)
                if state is not None:
                    stylise.restore(state)
                    result.resumed_warm = True
                say(f"resuming at frame {start + 1} of {clip.count} ("
                    + ("from the saved state of the frame before" if state is not None
                       else "no saved state of the frame before: this frame starts afresh")
                    + ")")
            _run_frames(clip, work, start, stylise, result, say)
        if is_video_path(output):
            say(f"encoding {clip.count} frames into {shown(output)}")
            encode([work / name for name in clip.names], clip, output, quality, rate)
    if is_video_path(output):
        shutil.rmtree(work, ignore_errors=True)
    else:
        (work / STATE_NAME).unlink(missing_ok=True)
    return result


def _run_frames(clip: Clip, work: Path, start: int, stylise: VideoAnalogy, result: VideoResult,
                say: Callable[[str], None]) -> None:
    for index, frame in enumerate(read_frames(clip, start), start):
        began = time.perf_counter()
        a_prime = stylise(frame)
        raise_if_interrupted()
        write_files_atomically({work / clip.names[index]: png_bytes(a_prime)})
        _save_state(work, index, stylise)
        result.seconds.append(time.perf_counter() - began)
        left = clip.count - index - 1
        # the warm frames' pace: the first is a single image's analogy
        pace = result.seconds[1:] or result.seconds
        eta = left * sum(pace) / len(pace)
        say(f"frame {index + 1}/{clip.count} {clip.names[index]}: {result.seconds[-1]:.1f}s"
            + (f", about {_duration(eta)} left" if left else ""))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


"""Video input and output of `analogy video`: a clip's frames as RGB uint8 arrays, read from a video
file or a folder of numbered images, and the result's frames encoded back into a video with the
input's frame rate and sound.

PyAV (and OpenCV, which the optical flow needs) are an optional extra, `analogy[video]`: they are
imported only where they are used, and their absence is a ConfigError that says how to install
them.
"""
from __future__ import annotations

import contextlib
import errno
import heapq
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .config import MIN_INPUT_SIDE
from .errors import AnalogyError, ConfigError, InputImageError, OutputError, raise_if_interrupted
from .image_io import check_output_folder, load_image, shown, temporary_name

PathLike = Union[str, os.PathLike]

#: The video containers an output can be, chosen by its extension.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov")
#: The files of a folder of frames that are frames; also the still images refused as a video.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Frames per second of a video made from a folder of frames, unless given.
DEFAULT_RATE = Fraction(25)

_INSTALL = "video needs PyAV and OpenCV: pip install 'analogy[video]'"
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
#: CRF: the default, and the highest the encoder takes (lower is better and larger). 18 is about
#: visually lossless for H.264; VP9's scale differs, and 24 looks about the same.
_CRF = {"libx264": (18, 51), "libvpx-vp9": (24, 63)}
_CODEC_OPTIONS = {
    "libx264": {"preset": "medium"},
    # constant quality (b=0), and libvpx's "good" speed with threads over rows
    "libvpx-vp9": {"b": "0", "deadline": "good", "cpu-used": "2", "row-mt": "1"},
}
#: The audio codecs each container takes as they are (their packets are copied); other sound is
#: encoded again with _AUDIO_CODECS.
_AUDIO_COPIED = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac"},
    ".mkv": {"aac", "opus", "vorbis", "mp3", "flac", "ac3", "eac3"},
    ".webm": {"opus", "vorbis"},
}
_AUDIO_CODECS = {".mp4": "aac", ".mov": "aac", ".mkv": "aac", ".webm": "libopus"}
#: swscale's BT.709 matrix (SWS_CS_ITU709) and FFmpeg's limited ("MPEG") range: how frames are
#: converted to YUV, and what the stream's colour tags then say.
_SWS_BT709 = 1
_RANGE_LIMITED = 1
#: The errors of FFmpeg's writing that are the file system's, not the encoder's.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EFBIG}
#: Bits per second and channel of encoded sound.
_AUDIO_RATE = {"aac": 128_000, "libopus": 64_000}


def _import_av():
    try:
        import av
    except ImportError:
        raise ConfigError(_INSTALL) from None
    return av


def require_video() -> None:
    """Check that the optional video extra (PyAV, OpenCV) is installed: a ConfigError saying how
    to install it if not, before any work is done."""
    _import_av()
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise ConfigError(_INSTALL) from None


def is_video_path(path: PathLike) -> bool:
    """Whether `path` names a video file this module writes (by its extension, in any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Clip:
    """What open_clip found in a video file or folder of frames."""

    path: Path
    kind: str  # "video" or "folder"
    count: int  # number of frames
    shape: Tuple[int, int]  # (H, W) of the frames
    rate: Optional[Fraction]  # frames per second; None for a folder
    audio: bool  # whether the video has a sound stream
    names: Tuple[str, ...]  # the output PNG name of each frame
    files: Tuple[str, ...] = ()  # a folder's image files, in order (empty for a video)


def _reason(exc: BaseException) -> str:
    """An exception's words on one line, without PyAV's errno and file name."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _too_small(name: str, h: int, w: int) -> None:
    if min(h, w) < MIN_INPUT_SIDE:
        raise InputImageError(
            f"{name}: {w}×{h} px is too small; both sides must be at least {MIN_INPUT_SIDE} px"
        )


def _natural_key(name: str) -> tuple:
    """Sorts frame2 before frame10: runs of digits compare as numbers."""
    parts = re.split(r"([0-9]+)", name)
    return ([int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)], name)


def _image_size(path: Path) -> Tuple[int, int]:
    """(H, W) of an image file as load_image gives it (EXIF orientation applied), from its header
    where it can; a file PIL cannot open is loaded, so that load_image says what is wrong."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # turned by a quarter
                w, h = h, w
            return h, w
    except Exception:  # noqa: BLE001 (load_image has the words for every failure)
        return load_image(path).shape[:2]


def _folder_images(folder: Path) -> List[Path]:
    """A folder's image files in natural order, without hidden files."""
    try:
        entries = list(folder.iterdir())
    except PermissionError:
        raise InputImageError(f"{shown(folder)}: permission denied; make the folder readable"
                              ) from None
    return sorted((p for p in entries if not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                  key=lambda p: _natural_key(p.name))


def _open_folder(folder: Path) -> Clip:
    name = shown(folder)
    files = _folder_images(folder)
    if not files:
        raise InputImageError(f"{name}: no images in the folder (PNG, JPEG, BMP, TIFF, WebP); "
                              "put the frames there or give a video file")
    names: List[str] = []
    seen = {}
    for path in files:
        out = path.stem + ".png"
        if out.casefold() in seen:
            raise InputImageError(f"{shown(path)}: would be written as {out}, as "
                                  f"{seen[out.casefold()].name} is; rename one of them")
        seen[out.casefold()] = path
        names.append(out)
    shape = _image_size(files[0])
    _too_small(shown(files[0]), *shape)
    for path in files[1:]:
        h, w = _image_size(path)
        if (h, w) != shape:
            raise InputImageError(f"{shown(path)}: {w}×{h} px, but the frames before it are "
                                  f"{shape[1]}×{shape[0]} px; all frames must be the same size")
    return Clip(path=folder, kind="folder", count=len(files), shape=shape, rate=None, audio=False,
                names=tuple(names), files=tuple(p.name for p in files))


@contextlib.contextmanager
def _input_container(path: Path):
    """The video file at `path` opened with PyAV; InputImageError if it cannot be."""
    av = _import_av()
    name = shown(path)
    try:
        container = av.open(os.fspath(path), "r")
    except PermissionError:
        raise InputImageError(f"{name}: permission denied; make the file readable") from None
    except (av.FFmpegError, OSError, ValueError):
        raise InputImageError(f"{name}: not a video file that can be read (MP4, MKV, WebM, MOV, "
                              "…)") from None
    try:
        format_name = container.format.name
        if format_name == "image2" or format_name.endswith("_pipe"):
            raise InputImageError(f"{name}: a still image, not a video; INPUT must be a video file "
                                  "or a folder of frames")
        yield container
    finally:
        container.close()


def _video_stream(container, name: str):
    """The container's first video stream that is not a cover picture."""
    _import_av()
    try:
        from av.stream import Disposition
        cover = Disposition.attached_pic
    except (ImportError, AttributeError):  # PyAV < 13
        cover = 0
    for stream in container.streams.video:
        if int(stream.disposition) & int(cover):
            continue
        stream.thread_type = "AUTO"
        return stream
    raise InputImageError(f"{name}: has no video stream; give a video file or a folder of frames")


def _decoded(container, stream, name: str) -> Iterator:
    """Every frame of `stream`, with decoding errors as InputImageError naming the frame
    (1-based)."""
    av = _import_av()
    count = 0
    try:
        for packet in container.demux(stream):
            raise_if_interrupted()
            for frame in stream.decode(packet):  # (the last, empty packet flushes the decoder)
                count += 1
                yield frame
    except (av.FFmpegError, OSError) as exc:
        raise InputImageError(f"{name}: frame {count + 1} cannot be decoded ({_reason(exc)}); the "
                              "file may be truncated or corrupt") from None


def _stream_rate(stream, count: int) -> Fraction:
    """Frames per second of a video stream: its average, else FFmpeg's guess, else its frames
    over its duration, else DEFAULT_RATE; as a fraction with a denominator of at most 1001."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return Fraction(rate).limit_denominator(1001)
    if stream.duration and stream.time_base:
        return Fraction(count / float(stream.duration * stream.time_base)).limit_denominator(1001)
    return DEFAULT_RATE


def _open_video(path: Path) -> Clip:
    name = shown(path)
    with _input_container(path) as container:
        stream = _video_stream(container, name)
        count, shape = 0, None
        for frame in _decoded(container, stream, name):
            if shape is None:
                shape = (frame.height, frame.width)
                _too_small(name, *shape)
            count += 1
        if not count:
            raise InputImageError(f"{name}: the video holds no frames; give another video")
        rate = _stream_rate(stream, count)
        audio = bool(container.streams.audio)
    names = tuple(f"frame_{i:06d}.png" for i in range(1, count + 1))
    return Clip(path=path, kind="video", count=count, shape=shape, rate=rate, audio=audio,
                names=names)


def open_clip(path: PathLike) -> Clip:
    """What a video file or a folder of frames holds, checked to be usable: a video that PyAV
    decodes (every frame is decoded once to count them, as the count a file states can be wrong),
    or a folder of same-sized images (PNG, JPEG, BMP, TIFF, WebP) in natural order, frame2 before
    frame10 (hidden and other files are ignored).

    Raises InputImageError with a one-line message for anything missing, unreadable, empty, too
    small, of mixed sizes, or a still image given as a video.
    """
    path = Path(path)
    name = shown(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise InputImageError(f"{name}: no such file or folder")
    if not path.is_file():
        raise InputImageError(f"{name}: not a regular file or folder; give a video file or a "
                              "folder of frames")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise InputImageError(f"{name}: an image, not a video; INPUT must be a video file or a "
                              "folder of frames")
    return _open_video(path)


def describe(path: PathLike) -> Clip:
    """What a video file holds (as open_clip), e.g. to check a written output."""
    return open_clip(path)


def _rgb(frame, shape: Tuple[int, int]) -> np.ndarray:
    """A decoded frame as an H×W×3 RGB uint8 array of the clip's size, converted with the frame's
    own colour matrix and range (a frame of another size, mid-stream, is scaled to it)."""
    h, w = shape
    rgb = frame.to_ndarray(format="rgb24", width=w, height=h,
                           src_color_range=getattr(frame, "color_range", 0))
    return np.ascontiguousarray(rgb)


def read_frames(clip: Clip, start: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames start, start + 1, … as H×W×3 RGB uint8 arrays; exactly the frames
    open_clip counted. A frame that cannot be read raises InputImageError naming it (1-based)."""
    if not 0 <= start <= clip.count:
        raise ValueError(f"start must be from 0 to {clip.count}, not {start}")
    name = shown(clip.path)
    if clip.kind == "folder":
        files = clip.files or tuple(p.name for p in _folder_images(clip.path))
        if len(files) != clip.count:
            raise InputImageError(f"{name}: holds {len(files)} images, not the {clip.count} found "
                                  "when it was opened; was it changed?")
        for index in range(start, clip.count):
            path = clip.path / files[index]
            rgb = load_image(path)
            if rgb.shape[:2] != clip.shape:
                raise InputImageError(f"{shown(path)}: frame {index + 1} is {rgb.shape[1]}×"
                                      f"{rgb.shape[0]} px, not {clip.shape[1]}×{clip.shape[0]} px "
                                      "as when the folder was opened; was it changed?")
            yield rgb
        return
    index = 0
    with _input_container(clip.path) as container:
        stream = _video_stream(container, name)
        for frame in _decoded(container, stream, name):
            if index >= clip.count:
                break
            if index >= start:  # (the frames before are decoded, as the later ones need them)
                try:
                    rgb = _rgb(frame, clip.shape)
                except Exception as exc:  # noqa: BLE001 (PyAV's errors, numpy's)
                    raise InputImageError(f"{name}: frame {index + 1} cannot be converted to RGB "
                                          f"({_reason(exc)})") from None
                yield rgb
            index += 1
    if index < clip.count:
        raise InputImageError(f"{name}: ends after {index} frames, not the {clip.count} counted "
                              "when it was opened; was it changed?")


def frame_rate(clip: Clip, rate: Union[Fraction, float, int, None] = None) -> Fraction:
    """The frame rate of a video made of `clip`'s frames: `rate` when given, else the clip's own,
    else (a folder) DEFAULT_RATE. ConfigError for a rate that is not a positive number."""
    if rate is None:
        return clip.rate if clip.rate is not None else DEFAULT_RATE
    if isinstance(rate, bool) or not isinstance(rate, (int, float, Fraction)) or not (
            math.isfinite(rate) and 0 < rate <= 1000):
        raise ConfigError(f"the frame rate must be a number of frames per second above 0 and at "
                          f"most 1000, not {rate!r}")
    return Fraction(rate).limit_denominator(1001)


def encoded_shape(shape: Tuple[int, int], output: PathLike) -> Tuple[int, int]:
    """(H, W) of the video that encode writes at `output` for frames of `shape`: the same, but for
    H.264 (.mp4, .mov, .mkv) an odd side is made even by one more row or column (see encode)."""
    h, w = shape
    if _VIDEO_CODECS.get(Path(output).suffix.lower()) == "libx264":
        return h + h % 2, w + w % 2
    return h, w


def _packet_time(packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return stamp * packet.time_base if stamp is not None else Fraction(-(10**9))


def _add_video(out, codec: str, shape: Tuple[int, int], rate: Fraction, crf: int):
    stream = out.add_stream(codec, rate=rate)
    stream.height, stream.width = shape
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    stream.codec_context.options = {**_CODEC_OPTIONS[codec], "crf": str(crf)}
    stream.codec_context.thread_count = 0  # as many as the encoder likes (FFmpeg's default is 1)
    # frames are converted with BT.709's matrix to limited range, and the stream says so
    for attribute in ("colorspace", "color_primaries", "color_trc"):
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            setattr(stream.codec_context, attribute, 1)  # AVCOL_SPC_BT709, AVCOL_PRI_…, AVCOL_TRC_…
    with contextlib.suppress(AttributeError, ValueError, TypeError):
        stream.codec_context.color_range = _RANGE_LIMITED
    return stream


def _video_packets(stream, frames: Sequence[Path], clip: Clip, shape: Tuple[int, int],
                   rate: Fraction) -> Iterator:
    av = _import_av()
    h, w = clip.shape
    for index, path in enumerate(frames):
        raise_if_interrupted()
        rgb = load_image(path)
        if rgb.shape[:2] != clip.shape:
            raise OutputError(f"{shown(path)}: {rgb.shape[1]}×{rgb.shape[0]} px, not the video's "
                              f"{w}×{h} px; every frame must have the input's size")
        if shape != clip.shape:  # repeat the last row or column (see encoded_shape)
            rgb = np.pad(rgb, ((0, shape[0] - h), (0, shape[1] - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=_SWS_BT709, dst_color_range=_RANGE_LIMITED)
        frame.pts = index
        frame.time_base = 1 / rate
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _source_audio(container, stream, name: str, decode: bool) -> Iterator:
    """The input's sound packets (or decoded frames), with errors as InputImageError."""
    av = _import_av()
    try:
        for packet in container.demux(stream):
            if not decode:
                if packet.dts is not None:  # (not the empty packet at the end)
                    yield packet
                continue
            yield from stream.decode(packet)
    except (av.FFmpegError, OSError) as exc:
        raise InputImageError(f"{name}: its sound cannot be read ({_reason(exc)}); the file may be "
                              "truncated or corrupt") from None


def _audio_packets(out, container, suffix: str, start: Fraction, end: Fraction,
                   name: str) -> Iterator:
    """Adds the input's first sound stream to `out` and returns its packets for `out`, from the
    video's first frame (at `start` seconds in the input) for `end` seconds: copied when the
    container takes the codec, else decoded and encoded again."""
    source = container.streams.audio[0]
    base = source.time_base
    shift = round(start / base)
    if source.codec_context.name in _AUDIO_COPIED[suffix]:
        if hasattr(out, "add_stream_from_template"):
            stream = out.add_stream_from_template(source)
        else:  # PyAV < 14
            stream = out.add_stream(template=source)

        def copied() -> Iterator:
            for packet in _source_audio(container, source, name, decode=False):
                if (packet.dts - shift) * base >= end:
                    break
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts -= shift
                packet.stream = stream
                yield packet
        return copied()

    av = _import_av()
    codec = _AUDIO_CODECS[suffix]
    layout = source.codec_context.layout
    channels = getattr(layout, "nb_channels", None) or source.codec_context.channels or 2
    rates = av.Codec(codec, "w").audio_rates or ()
    sample_rate = source.codec_context.sample_rate
    stream = out.add_stream(codec, rate=sample_rate if sample_rate in rates else 48_000)
    stream.layout = {1: "mono", 2: "stereo"}.get(channels, getattr(layout, "name", "stereo"))
    stream.bit_rate = min(_AUDIO_RATE[codec] * channels, 512_000)

    def encoded() -> Iterator:
        for frame in _source_audio(container, source, name, decode=True):
            if frame.pts is not None and frame.time_base:
                frame.pts -= round(start / frame.time_base)
                if frame.pts * frame.time_base >= end:
                    break
            yield from stream.encode(frame)
        yield from stream.encode(None)
    return encoded()


def _write_video(target: Path, suffix: str, frames: Sequence[Path], clip: Clip,
                 shape: Tuple[int, int], rate: Fraction, crf: int) -> None:
    av = _import_av()
    options = {"movflags": "+faststart"} if suffix in (".mp4", ".mov") else {}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(av.open(os.fspath(target), "w", format=_FORMATS[suffix],
                                          options=options))
        video = _add_video(out, _VIDEO_CODECS[suffix], shape, rate, crf)
        packets = [_video_packets(video, frames, clip, shape, rate)]
        if clip.kind == "video" and clip.audio:
            source = stack.enter_context(_input_container(clip.path))
            start_time = 0
            with contextlib.suppress(InputImageError):
                first = _video_stream(source, shown(clip.path))
                if first.start_time is not None:
                    start_time = first.start_time * first.time_base
            packets.append(_audio_packets(out, source, suffix, Fraction(start_time),
                                          len(frames) / rate, shown(clip.path)))
        # in time order, as the muxer interleaves them
        for packet in heapq.merge(*packets, key=_packet_time):
            out.mux(packet)


def encode(frames: Sequence[PathLike], clip: Clip, output: PathLike,
           quality: Optional[int] = None,
           rate: Union[Fraction, float, int, None] = None) -> None:
    """Encode `frames` (image files of the clip's size, in order) into a new video file at
    `output`, one video frame each with timestamps 0, 1, 2, … at frame_rate(clip, rate), and
    `clip`'s sound when it is a video with sound.

    The container is chosen by the extension: .mp4, .mov and .mkv get H.264 (libx264), .webm
    VP9, both 4:2:0 and tagged BT.709. `quality` is the encoder's CRF (lower is better and
    larger; default 18 for H.264, 24 for VP9). 4:2:0 H.264 needs even sides, and 4:4:4 plays in
    few browsers and players, so frames with an odd side are given one more row or column
    repeating the last (encoded_shape says the size written); VP9 keeps any size. The sound is
    copied unchanged where the container takes its codec (AAC in MP4, MOV, MKV; Opus or Vorbis in
    WebM, MKV, …), else encoded again (AAC; Opus for WebM); it is cut at the end of the last
    frame.

    The file is written under a temporary name beside `output` and renamed into place when
    complete; on any error or interruption the temporary is removed. An existing `output` is never
    replaced: OutputError, as for an encoding failure, each with a one-line message.
    """
    output = Path(output)
    name = shown(output)
    suffix = output.suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise OutputError(f"{name}: not a video name; end it with "
                          f"{', '.join(VIDEO_EXTENSIONS)}")
    if os.path.lexists(output):
        raise OutputError(f"{name}: exists; choose another output name or remove it")
    if not frames:
        raise OutputError(f"{name}: no frames to encode")
    codec = _VIDEO_CODECS[suffix]
    default_crf, highest = _CRF[codec]
    crf = default_crf if quality is None else quality
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= highest:
        raise ConfigError(f"the quality (CRF) of {suffix} video must be a whole number from 0 to "
                          f"{highest}, not {quality!r}")
    rate = frame_rate(clip, rate)
    av = _import_av()
    folder = output.parent
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    check_output_folder(folder, create=True)
    temporary = folder / temporary_name(output.name, os.urandom(6).hex())
    succeeded = False
    try:
        # claimed with the usual mode of a new file (0666 less the umask)
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        _write_video(temporary, suffix, [Path(f) for f in frames], clip,
                     encoded_shape(clip.shape, output), rate, crf)
        raise_if_interrupted()  # the last moment to leave nothing written
        _place(temporary, output)
        succeeded = True
    except AnalogyError:
        raise
    except OSError as exc:
        if isinstance(exc, av.FFmpegError) and exc.errno not in _WRITE_ERRORS:
            raise OutputError(f"{name}: cannot encode the video ({_reason(exc)})") from None
        raise OutputError(f"{name}: cannot write ({_reason(exc)})") from None
    except (av.FFmpegError, ValueError) as exc:  # (PyAV's checks of streams raise ValueError)
        raise OutputError(f"{name}: cannot encode the video ({_reason(exc)})") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if not succeeded:
            for path in created:
                try:
                    path.rmdir()
                except OSError:  # not empty: keep it
                    break


def _place(temporary: Path, output: Path) -> None:
    """Give the finished temporary its name, unless a file of that name appeared meanwhile: a
    hard link fails rather than replace it; where there are none, a rename after a last check."""
    try:
        os.link(temporary, output)
    except FileExistsError:
        raise OutputError(f"{shown(output)}: exists; choose another output name or remove "
                          "it") from None
    except OSError:
        if os.path.lexists(output):
            raise OutputError(f"{shown(output)}: exists; choose another output name or remove "
                              "it") from None
        os.replace(temporary, output)

"""The FastAPI application of `analogy serve`: the page, the API behind it, the checks an upload
passes before any work, and the server that runs it all until Ctrl-C or SIGTERM.

    POST   /api/jobs                    multipart: files a and bprime, option fields → 202, the job;
                                        a clip as the file video instead of a: a video job
    GET    /api/jobs/{id}               state (queued, running, done, failed), progress (a video's
                                        frames done), error, files
    GET    /api/jobs/{id}/files/{name}  one of the job's files (A_prime.png, B.png, analogy.zip, …;
                                        a video job's A_prime.mp4)
    DELETE /api/jobs/{id}               cancel a job, or delete a finished one, with its files
    GET    /api/form                    the option fields, the limits and the bundled examples
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import python_multipart.multipart as multipart
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.exceptions import FormParserError
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import AnalogyError, ConfigError
from ..image_io import shown
from ..pipeline import working_size
from .jobs import (
    ARCHIVE,
    VIDEO_STEM,
    InputImage,
    InputVideo,
    JobOptions,
    JobQueue,
    QueueFull,
    decode,
    image_size,
)

STATIC = Path(__file__).resolve().parent / "static"
#: The bundled example pairs (static/examples, copies of the repository's examples/).
EXAMPLES = [
    {"title": "Skyline → The Starry Night", "a": "skyline.jpg", "bprime": "starry_night.jpg"},
    {"title": "Astronaut → Grace Hopper", "a": "astronaut.jpg", "bprime": "grace_hopper.jpg"},
]
#: The two image fields of a job, with the names messages give them.
IMAGE_FIELDS = {"a": "A", "bprime": "B′"}
#: The file field of a video job's clip, in place of a (messages call it A too).
VIDEO_FIELD = "video"
#: Parts a job's form may have: two images and the options, with room to spare.
MAX_PARTS = 32
#: The page loads nothing from elsewhere: no CDN, no inline script. (blob: shows the files chosen.)
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
               "style-src 'self'; object-src 'none'; base-uri 'none'")


@dataclass(frozen=True)
class Limits:
    """What one request may ask: bytes per image or clip, pixels per image or frame, pixels of a
    working size (the analysis's cost grows with it), frames per clip, bytes per option field."""

    upload_bytes: int = 25_000_000
    pixels: int = 25_000_000
    working_pixels: int = 4_000_000
    field_bytes: int = 1_000
    frames: int = 300


@dataclass
class _Part:
    name: str = ""
    filename: Optional[str] = None  # None for a plain field
    data: bytearray = field(default_factory=bytearray)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


async def _read_form(request: Request,
                     limits: Limits) -> Tuple[Dict[str, Tuple[str, bytes]], Dict[str, str]]:
    """The files (field → (file name, bytes)) and fields of a multipart form, read in memory as
    they come, and refused (413) as soon as a part is over its limit: nothing is spooled to disk."""
    kind, params = multipart.parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(422, "send a multipart form: the images as files a and bprime, options "
                                 "as fields (curl -F a=@A.png -F bprime=@B.png)")
    declared = request.headers.get("content-length", "")
    total_limit = 2 * limits.upload_bytes + 64 * limits.field_bytes + 64_000
    if declared.isdigit() and int(declared) > total_limit:
        raise HTTPException(413, f"the request is {_megabytes(int(declared))}, over this server's "
                                 f"limit of {_megabytes(limits.upload_bytes)} per image; send "
                                 "smaller images")
    parts: List[_Part] = []
    header: Dict[str, bytes] = {}
    name_buffer, value_buffer = bytearray(), bytearray()

    def on_part_begin() -> None:
        if len(parts) == MAX_PARTS:
            raise HTTPException(422, f"more than {MAX_PARTS} parts in the form; send the two "
                                     "images and the options")
        parts.append(_Part())
        header.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name_buffer.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value_buffer.extend(data[start:end])

    def on_header_end() -> None:
        header[bytes(name_buffer).lower().decode("latin-1")] = bytes(value_buffer)
        name_buffer.clear()
        value_buffer.clear()

    def on_headers_finished() -> None:
        _, options = multipart.parse_options_header(header.get("content-disposition", b""))
        part = parts[-1]
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part.data.extend(data[start:end])
        limit = limits.upload_bytes if part.filename is not None else limits.field_bytes
        if len(part.data) > limit:
            what = (_named(_LABELS.get(part.name, part.name), part.filename)
                    if part.filename is not None else f"field {part.name!r}")
            advice = ("" if part.filename is None else "; send a shorter or smaller clip"
                      if part.name == VIDEO_FIELD else "; send a smaller image")
            raise HTTPException(413, f"{what}: over this server's limit of {_megabytes(limit)}"
                                     + advice)

    parser = multipart.MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > total_limit:
                raise HTTPException(413, f"the request is over this server's limit of "
                                         f"{_megabytes(limits.upload_bytes)} per image; send "
                                         "smaller images")
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise HTTPException(422, "the multipart form cannot be read; send it again") from None
    # A file input left empty sends a part with no name and no bytes: no file.
    files = {p.name: (p.filename, bytes(p.data)) for p in parts if p.filename is not None
             and (p.filename or p.data)}
    fields = {p.name: bytes(p.data).decode("utf-8", "replace") for p in parts if p.filename is None}
    return files, fields


def _file_name(filename: Optional[str]) -> str:
    """An uploaded file's name as the page and messages show it: its last path component,
    printable, short ("" when it came without one)."""
    name = Path((filename or "").replace("\\", "/")).name
    return "".join(c if c.isprintable() else "?" for c in name)[:80]


def _named(label: str, filename: Optional[str]) -> str:
    """How a message names an image: "B′ (painting.png)", or "B′"."""
    name = _file_name(filename)
    return f"{label} ({name})" if name else label


_LABELS = {**IMAGE_FIELDS, VIDEO_FIELD: "A"}


def _check_job(files: Dict[str, Tuple[str, bytes]], fields: Dict[str, str], options: JobOptions,
               limits: Limits, new_folder: Callable[[], Path]):
    """The job's images (or clip and image) and options checked as the command line checks them,
    plus this server's limits; an HTTPException (413 too large, 422 unusable) with a one-line
    reason otherwise. A clip is checked in a folder from `new_folder`, which stays for the job
    (InputVideo.path) and is removed when the clip is refused."""
    video = VIDEO_FIELD in files
    if video and "a" in files:
        raise HTTPException(422, "send A as an image (file field 'a') or as a clip (file field "
                                 "'video'), not both")
    for key, label in IMAGE_FIELDS.items():
        if key not in files and not (video and key == "a"):
            raise HTTPException(422, f"no {label} image: send it as the file field {key!r} "
                                     f"(curl -F {key}=@image.png)"
                                     + (", or a clip as the file field 'video'" if key == "a"
                                        else ""))
    extra = sorted(set(files) - set(IMAGE_FIELDS) - {VIDEO_FIELD})
    if extra:
        raise HTTPException(422, f"unknown file field {extra[0]!r}; the files are the fields a "
                                 "(or video) and bprime")
    try:
        values, config = options.parse(fields)
    except AnalogyError as exc:
        raise HTTPException(422, str(exc).splitlines()[0]) from None
    images, notes = [], []
    for key, label in IMAGE_FIELDS.items():
        if key not in files:
            continue
        filename, data = files[key]
        name = _named(label, filename)
        width, height = image_size(data)
        if width * height > limits.pixels:
            raise HTTPException(413, f"{name}: {width}×{height} is {width * height:,} pixels, over "
                                     f"this server's limit of {limits.pixels:,}; "
                                     "downscale it first")
        try:
            rgb, image_notes = decode(name, data, label)
        except AnalogyError as exc:
            raise HTTPException(422, str(exc).splitlines()[0]) from None
        h, w = working_size(rgb.shape[:2], config)
        if h * w > limits.working_pixels:
            raise HTTPException(422, f"{name}: its working size would be {w}×{h}, over this "
                                     f"server's limit of {limits.working_pixels:,} pixels; use a "
                                     "smaller size or ratio")
        images.append(InputImage(_file_name(filename) or label, hashlib.sha256(data).hexdigest(),
                                 rgb))
        notes += image_notes
    if video:
        images.insert(0, _check_clip(*files[VIDEO_FIELD], config, limits, new_folder))
    return images, values, config, notes


#: Other video files' extensions that an uploaded clip keeps (PyAV reads them).
_MORE_VIDEO_EXTENSIONS = (".m4v", ".avi", ".mpg", ".mpeg", ".ogv", ".3gp", ".gif")


def _declared(path: Path) -> Tuple[int, int, int]:
    """The frames, width and height a video file's first video stream states (0 where it states
    none), read without decoding: a clip far over the limits is refused before open_clip decodes
    every frame to count them."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.frames or 0, stream.codec_context.width, stream.codec_context.height
    except Exception:  # noqa: BLE001 (open_clip says what is wrong with it)
        return 0, 0, 0


def _check_clip(filename: Optional[str], data: bytes, config, limits: Limits,
                new_folder: Callable[[], Path]) -> InputVideo:
    """An uploaded clip, written into a new job folder and opened as `analogy video` opens its
    input, within this server's limits of frames and pixels; the folder goes if it is refused."""
    from ..video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, open_clip, read_frames

    name = _named("A", filename)
    suffix = Path(_file_name(filename)).suffix.lower()
    # The upload's extension where it is a video's or an image's (a still image is then refused as
    # one), else a plain one: the clip is served back by its extension's type, never as a page.
    known = (*VIDEO_EXTENSIONS, *_MORE_VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS)
    suffix = suffix if suffix in known else ".video"
    folder = new_folder()
    path = folder / (VIDEO_STEM + suffix)
    try:
        path.write_bytes(data)
        frames, width, height = _declared(path)
        _check_clip_size(name, frames, width, height, limits)
        try:
            clip = open_clip(path)
            first = next(read_frames(clip))
        except AnalogyError as exc:
            raise HTTPException(422, _clip_reason(exc, path, name)) from None
        height, width = clip.shape
        _check_clip_size(name, clip.count, width, height, limits)
        h, w = working_size(clip.shape, config)
        if h * w > limits.working_pixels:
            raise HTTPException(422, f"{name}: its working size would be {w}×{h}, over this "
                                     f"server's limit of {limits.working_pixels:,} pixels; use a "
                                     "smaller size or ratio")
        return InputVideo(_file_name(filename) or "A", hashlib.sha256(data).hexdigest(), path,
                          clip.count, clip.shape, clip.rate, clip.audio, first)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _check_clip_size(name: str, frames: int, width: int, height: int, limits: Limits) -> None:
    if frames > limits.frames:
        raise HTTPException(413, f"{name}: {frames:,} frames, over this server's limit of "
                                 f"{limits.frames:,}; send a shorter clip")
    if width * height > limits.pixels:
        raise HTTPException(413, f"{name}: its frames are {width}×{height}, {width * height:,} "
                                 f"pixels, over this server's limit of {limits.pixels:,}; "
                                 "downscale it first")


def _clip_reason(exc: AnalogyError, path: Path, name: str) -> str:
    """open_clip's one-line reason, naming the upload instead of the file in the job's folder,
    and asking for what the page takes (a video file, not a folder of frames)."""
    line = str(exc).splitlines()[0]
    prefix = f"{shown(path)}: "
    reason = line[len(prefix):] if line.startswith(prefix) else line.replace(str(path), "A")
    reason = reason.replace("INPUT must be", "A must be").replace(" or a folder of frames", "")
    return f"{name}: {reason}"


def _video_unavailable() -> Optional[str]:
    """Why this server cannot take clips (the video extra missing), or None."""
    from ..video_io import require_video

    try:
        require_video()
    except ConfigError as exc:
        return str(exc)
    return None


def create_app(queue: JobQueue, options: JobOptions, limits: Limits = Limits()) -> FastAPI:
    """The application over `queue`: its lifespan starts the queue's workers and closes the
    queue."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(queue.close)

    app = FastAPI(title="analogy", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Deep Image Analogy: A′ (A's layout in B′'s look) and B (B′'s layout "
                              "in A's look). Post two images, follow the job, fetch its files.")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    page = (STATIC / "index.html").read_bytes()
    no_video = _video_unavailable()
    page_headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    @app.get("/jobs/{job_id}", include_in_schema=False)
    def index(job_id: Optional[str] = None) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=page_headers)

    @app.get("/api/form", summary="The option fields, the limits and the example pairs")
    def form() -> dict:
        return {"fields": options.describe(), "version": __version__,
                "limits": {"upload_bytes": limits.upload_bytes, "pixels": limits.pixels,
                           "working_pixels": limits.working_pixels, "frames": limits.frames},
                "video": no_video is None,
                "keep_seconds": queue.keep_seconds,
                "examples": [{"title": e["title"], "a": f"/static/examples/{e['a']}",
                              "bprime": f"/static/examples/{e['bprime']}"} for e in EXAMPLES]}

    @app.post("/api/jobs", status_code=202, summary="Start a job", responses={
        413: {"description": "An image or clip over the size, pixel or frame limit"},
        422: {"description": "An unusable image, clip or option, with the reason"},
        501: {"description": "A clip sent to a server without the video extra"},
        503: {"description": "The queue is full; Retry-After says when to try again"}},
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["bprime"], "properties": {
                "a": {"type": "string", "format": "binary",
                      "description": "A, the structure image (required, unless video is sent)"},
                "video": {"type": "string", "format": "binary",
                          "description": "Instead of a: a short clip (MP4, MKV, WebM, MOV, …) "
                                         "within the limits of GET /api/form. Each frame gets "
                                         "B′'s look, coherent from frame to frame, as `analogy "
                                         "video` does: the job's file A_prime.mp4 (H.264, the "
                                         "clip's frame rate, size and sound); its progress counts "
                                         "the frames done."},
                "bprime": {"type": "string", "format": "binary",
                           "description": "B′, the appearance image"},
                **{f["name"]: {"type": {"int": "integer", "float": "number",
                                        "flag": "boolean"}.get(f["kind"], "string"),
                               **({"enum": f["choices"]} if f["choices"] else {}),
                               "description": f["help"]}
                   for f in options.describe()}}}}}}})
    async def post_job(request: Request, response: Response) -> dict:
        """Queue an analogy of A (file field `a`) and B′ (`bprime`) with the options given as fields
        named like the command line's (`size`, `ratio`, `blend_level`, `seed`, `photo`, …); or, with
        a clip as the file field `video` instead of `a`, every frame of it in B′'s look."""
        # read first: a browser shows an answer sent mid-upload as a reset
        files, fields = await _read_form(request, limits)
        if queue.full():
            raise _queue_full(queue.retry_after())
        if VIDEO_FIELD in files and no_video:
            raise HTTPException(501, f"this server cannot take clips: {no_video}")
        images, values, config, notes = await run_in_threadpool(_check_job, files, fields, options,
                                                                limits, queue.new_folder)
        try:
            job = await run_in_threadpool(queue.submit, images[0], images[1], values,
                                          options.command_line(values), config, notes)
        except QueueFull as exc:
            raise _queue_full(exc.retry_after) from None
        response.headers["Location"] = f"/api/jobs/{job.id}"
        found = queue.get(job.id)
        return found[0].view(found[1]) if found else job.view()

    @app.get("/api/jobs/{job_id}", summary="A job's state, progress, error and files",
             responses={404: {"description": "No such job (never made, cancelled, or expired)"}})
    def get_job(job_id: str) -> dict:
        job, position = _job(queue, job_id)
        return job.view(position)

    @app.get("/api/jobs/{job_id}/files/{name}", summary="One of a job's files",
             responses={404: {"description": "No such job or file"}})
    def get_file(job_id: str, name: str) -> FileResponse:
        job, _ = _job(queue, job_id)
        path = job.folder / name
        # A name from the job's own list, never a path from the request; gone if the job just went.
        if name not in job.files or not path.is_file():
            raise HTTPException(404, f"no file {name!r} in this job; its files are "
                                     f"{', '.join(job.files)}")
        attachment = f"analogy-{job.id[:8]}.zip" if name == ARCHIVE else None
        return FileResponse(path, filename=attachment, content_disposition_type="attachment",
                            headers={"X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

    @app.delete("/api/jobs/{job_id}", status_code=204,
                summary="Cancel a job or delete a finished one",
                responses={404: {"description": "No such job"}})
    def delete_job(job_id: str) -> Response:
        if not queue.remove(job_id):
            raise HTTPException(404, "no such job (cancelled, expired, or never made)")
        return Response(status_code=204)

    return app


def _queue_full(retry_after: int) -> HTTPException:
    return HTTPException(503, f"the queue is full; try again in {retry_after} s",
                         headers={"Retry-After": str(retry_after)})


def _job(queue: JobQueue, job_id: str):
    found = queue.get(job_id)
    if found is None:
        raise HTTPException(404, "no such job (cancelled, expired, or never made)")
    return found


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(queue: JobQueue, options: JobOptions, limits: Limits, host: str, port: int,
          announce: Callable[[str], None]) -> None:
    """Listen on host:port (0: any free port), call `announce` with the page's address, and serve
    until Ctrl-C or SIGTERM; then the running job stops at its next step and every job's files
    go."""
    import uvicorn

    try:
        sock = _listen(host, port)
    except OSError as exc:
        queue.close()
        raise ConfigError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); choose "
                          "another --port or --host") from None
    server = uvicorn.Server(uvicorn.Config(create_app(queue, options, limits), log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    shown = (socket.gethostname() if host in ("0.0.0.0", "::")
             else f"[{host}]" if ":" in host else host)
    try:
        announce(f"http://{shown}:{sock.getsockname()[1]}/")
        server.run(sockets=[sock])
    finally:
        queue.close()
        sock.close()

"""Reading images of any common kind as RGB uint8, and writing outputs atomically."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import MIN_INPUT_SIDE
from .errors import InputImageError, InputImageWarning, OutputError, raise_if_interrupted

_SHELL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "'": "\\'", "\\": "\\\\"}


def shown(path: Union[str, os.PathLike]) -> str:
    """A path as messages show it: as it is, unless it holds bytes that are not UTF-8 or control
    characters (a newline would split the message's one line); then quoted as bash's printf %q
    does, $'missing\\377.png', which a shell takes back as the same bytes."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isprintable():
        return text
    quoted = []
    for char in text:
        if char in _SHELL_ESCAPES:
            quoted.append(_SHELL_ESCAPES[char])
        elif "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8 (Python's surrogateescape)
            quoted.append(f"\\{ord(char) - 0xDC00:03o}")
        elif char.isprintable() or unicodedata.category(char) == "Zs":
            quoted.append(char)
        else:
            quoted.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass"))
    return "$'" + "".join(quoted) + "'"


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes and the name to give it in messages (its path where it was read):
    how a batch sends inputs to workers that do not see the driver's files."""

    name: str
    data: bytes


ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, EncodedImage]


def _to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """Grayscale, 16-bit, palette, RGBA, CMYK … → RGB; transparency is flattened onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InputImageError(f"{name}: the image holds NaN or infinite values; replace them "
                                  "and save it again")
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0
        elif img.mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputImageError(f"{name}: expected an H×W, H×W×3 or H×W×4 array, got shape "
                              f"{arr.shape}")
    if arr.dtype == np.uint16:
        arr = np.rint(arr / 257.0)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputImageError(f"{name}: the array holds NaN or infinite values")
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
    elif arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.integer):
        raise InputImageError(f"{name}: unsupported array dtype {arr.dtype}")
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        return np.asarray(_to_rgb(Image.fromarray(arr, "RGBA")))
    return np.ascontiguousarray(arr)


def load_image(src: ImageLike, name: str = "image") -> np.ndarray:
    """Load a path, an EncodedImage, a PIL image or an array as an H×W×3 uint8 RGB array,
    checking it is usable.

    Raises InputImageError with a one-line message for a missing, unreadable, truncated,
    too small or too large image.
    """
    if isinstance(src, np.ndarray):
        rgb = _array_to_rgb(src, name)
    elif isinstance(src, Image.Image):
        rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(src)))
    else:
        if isinstance(src, EncodedImage):
            name, source = src.name, io.BytesIO(src.data)
        else:
            source = Path(src)
            name = shown(source)
            if not source.exists():
                raise InputImageError(f"{name}: no such file")
            if source.is_dir():
                raise InputImageError(f"{name}: is a folder, not an image file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(source) as img:
                    img.load()
                    rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(img), name))
                    frames = getattr(img, "n_frames", 1)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
            raise InputImageError(
                f"{name}: {size}, over the limit of {Image.MAX_IMAGE_PIXELS:,} that guards against "
                f"decompression bombs; downscale it first"
            ) from None
        except UnidentifiedImageError:
            raise InputImageError(f"{name}: not an image file that can be read (PNG, JPEG, …)"
                                  ) from None
        except PermissionError:
            raise InputImageError(f"{name}: permission denied; make the file readable") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputImageError(f"{name}: truncated or corrupt image ({exc})") from None
        if frames > 1:
            warnings.warn(f"{name} has {frames} frames (pages); using the first", InputImageWarning,
                          stacklevel=2)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_INPUT_SIDE:
        raise InputImageError(
            f"{name}: {w}×{h} px is too small; both sides must be at least {MIN_INPUT_SIDE} px"
        )
    return rgb


def file_key(src: ImageLike) -> Optional[tuple]:
    """An identity for an image given as a file path (resolved path, size, modification time) or
    as an EncodedImage (its bytes' digest), for caching what was computed from it; None for arrays
    and PIL images."""
    if isinstance(src, EncodedImage):
        return ("sha256", hashlib.sha256(src.data).hexdigest())
    if isinstance(src, (np.ndarray, Image.Image)):
        return None
    path = Path(src)
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


#: The lock file that marks an output folder as being written (see output_lock).
LOCK_NAME = ".analogy.lock"
#: Outputs are written first to TEMP_PREFIX + their name + a random part + ".part": a pattern of
#: this tool's own, so that clearing stale temporaries never touches anyone else's file.
TEMP_PREFIX = ".analogy-tmp."
_OWN_TEMPORARY = re.compile(re.escape(TEMP_PREFIX) + r".+\.[A-Za-z0-9_]+\.part")


def temporary_name(target: str, token: str) -> str:
    """The name under which output `target` is written before it is renamed into place."""
    return f"{TEMP_PREFIX}{target}.{token}.part"


def _not_writable(folder: Path) -> str:
    """Why this process cannot write in `folder`, in the errno's own words."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        read_only = False
    return os.strerror(errno.EROFS if read_only else errno.EACCES)


def _make_folder(folder: Path, parents: bool = False) -> None:
    """mkdir, or an OutputError that says why not and what to do."""
    try:
        folder.mkdir(parents=parents, exist_ok=parents)
    except OSError as exc:
        raise OutputError(f"{shown(folder)}: cannot create it ({exc.strerror or exc}); "
                          "choose another output folder") from None


def check_output_folder(folder: Union[str, os.PathLike], create: bool = False,
                        probe: bool = False) -> Path:
    """Check that `folder` is, or can be made, a folder this process writes in (OutputError with
    what to do if not), creating it and its missing parents when `create`. With `probe`, a folder
    that does not exist yet is checked by making its first missing parent and removing it again
    (a name the file system refuses, a link to nowhere, /proc are only found that way)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{shown(existing)}: is a file, not a folder; choose a folder for the "
                          "outputs")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{shown(existing)}: cannot write there ({_not_writable(existing)}); "
                          f"choose another output folder")
    if create:
        _make_folder(folder, parents=True)
    elif probe and not folder.exists():
        first = next(p for p in (folder, *folder.parents) if p.parent == existing)
        _make_folder(first)
        with contextlib.suppress(OSError):  # (unless another run has begun to use it)
            first.rmdir()
    return folder


def _new_file_mode() -> int:
    """0666 minus the process's umask: the mode `open()` gives a new file. The umask is read from
    /proc where there is one (setting it to read it back would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def output_lock(folder: Union[str, os.PathLike]) -> Iterator[None]:
    """Hold `folder` as this run's output folder: another analogy run (process) that wants to
    write there meanwhile gets an OutputError instead, so two runs never mix their files. An
    advisory lock (flock) on `folder/.analogy.lock`, which is removed again on release; the
    operating system drops the lock of a killed process. A no-op where there is no flock."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    folder = check_output_folder(folder, create=True)
    path = folder / LOCK_NAME
    busy = OutputError(f"{shown(folder)}: another analogy run is writing there; wait for it to "
                       "finish or choose another output folder")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{shown(folder)}: cannot write there ({exc.strerror or exc}); "
                          f"choose another output folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:  # its holder removed it as we opened it
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        raise busy from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def output_folder(folder: Union[str, os.PathLike]) -> Iterator[Path]:
    """The folder a run writes its outputs in, held for the run: created if needed, locked against
    other analogy runs (output_lock), cleared of the temporaries a killed run of this tool left
    there (stale, since no other run holds the lock), and, if the run fails, removed again with
    the parents it created as long as they are empty. Nothing else in it is touched."""
    folder = check_output_folder(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    succeeded = False
    try:
        with output_lock(folder):
            for path in folder.iterdir():
                if _OWN_TEMPORARY.fullmatch(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
            yield folder
        succeeded = True
    finally:
        if not succeeded:
            for path in created:
                try:
                    path.rmdir()
                except OSError:  # not empty (another pair's folder, a user's file): keep it
                    break


def clear_stale_temporaries(folder: Union[str, os.PathLike]) -> bool:
    """Remove what a killed run of this tool left in `folder` (its temporaries, its lock file),
    as output_folder does on entry; False, touching nothing, if another run is writing there."""
    try:
        with output_folder(folder):
            pass
    except OutputError:
        return False
    return True


def input_replaced_by(outputs: Iterable[Path],
                      inputs: Iterable[Path]) -> Optional[Tuple[Path, Path]]:
    """(output, input) for the first output path that is the same file as an input, by whatever
    path (links included); None when writing the outputs replaces no input."""
    files = {}
    for path in inputs:
        try:
            st = os.stat(path)
        except OSError:
            continue
        files[(st.st_dev, st.st_ino)] = Path(path)
    for path in outputs:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in files:
            return Path(path), files[(st.st_dev, st.st_ino)]
    return None


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def write_files_atomically(files: Dict[Path, bytes]) -> None:
    """Write each file's bytes to a temporary name beside it, then rename them all into place.

    All or nothing: on an error or interruption, the temporaries are removed and every target is
    as it was (a replaced one gets its previous content back, a new one is removed). Errors are
    OutputError naming the target, never a temporary.
    """
    staged: Dict[Path, Path] = {}
    # targets being renamed → a hard link to their old content
    previous: Dict[Path, Optional[Path]] = {}
    created = set()  # targets that did not exist before
    current = next(iter(files), Path("output"))
    succeeded = False
    try:
        for current in files:
            if current.is_dir():
                raise OutputError(f"{shown(current)}: is a folder; move it away or choose another "
                                  "output folder")
        for current, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=current.parent, prefix=f"{TEMP_PREFIX}{current.name}.",
                                       suffix=".part")
            os.close(fd)
            staged[current] = Path(tmp)
            _write_file(Path(tmp), data)
            # mkstemp makes 0600; outputs get a new file's usual mode
            os.chmod(tmp, _new_file_mode())
        raise_if_interrupted()  # the last moment to leave nothing written
        for current, tmp in staged.items():
            if not current.exists():
                created.add(current)
            previous[current] = _keep_previous(current)
            os.replace(tmp, current)
        succeeded = True
    except OSError as exc:
        raise OutputError(f"{shown(current)}: cannot write ({exc.strerror or exc})") from None
    finally:
        if not succeeded:
            for target, old in previous.items():
                if old is not None:
                    os.replace(old, target)
                elif target in created and not staged[target].exists():  # renamed into place
                    target.unlink()
        for path in (*staged.values(), *previous.values()):
            if path is not None and path.exists():
                path.unlink()


def _keep_previous(target: Path) -> Optional[Path]:
    """A hard link to `target`'s current content, to put back if a later rename fails; None when
    there is no such file (or the file system has no hard links)."""
    if not target.is_file():
        return None
    link = target.with_name(temporary_name(target.name, "previous_" + os.urandom(4).hex()))
    try:
        os.link(target, link)
    except OSError:
        return None
    return link


#: zlib level of the PNGs written: the fastest, as OpenCV's default; on a 12-MP result, about a
#: quarter of the default level's time (6), for files about an eighth larger.
PNG_COMPRESS_LEVEL = 1


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB (or grey) uint8 array as a PNG file's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as a .npy file's bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()

"""Reading images of any common kind as RGB uint8, and writing outputs atomically."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import MIN_INPUT_SIDE
from .errors import InputImageError, InputImageWarning, OutputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, 16-bit, palette, RGBA, CMYK … → RGB; transparency is flattened onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
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
        raise InputImageError(f"{name}: expected an H×W, H×W×3 or H×W×4 array, got shape {arr.shape}")
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
    """Load a path, PIL image or array as an H×W×3 uint8 RGB array, checking it is usable.

    Raises InputImageError with a one-line message for a missing, unreadable, truncated,
    too small or too large image.
    """
    if isinstance(src, np.ndarray):
        rgb = _array_to_rgb(src, name)
    elif isinstance(src, Image.Image):
        rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(src)))
    else:
        path = Path(src)
        name = str(path)
        if not path.exists():
            raise InputImageError(f"{name}: no such file")
        if path.is_dir():
            raise InputImageError(f"{name}: is a folder, not an image file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.load()
                    rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(img)))
                    frames = getattr(img, "n_frames", 1)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
            raise InputImageError(
                f"{name}: {size}, over the limit of {Image.MAX_IMAGE_PIXELS:,} that guards against "
                f"decompression bombs; downscale it first"
            ) from None
        except UnidentifiedImageError:
            raise InputImageError(f"{name}: not an image file that can be read (PNG, JPEG, …)") from None
        except PermissionError:
            raise InputImageError(f"{name}: permission denied; make the file readable") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputImageError(f"{name}: truncated or corrupt image ({exc})") from None
        if frames > 1:
            warnings.warn(f"{name} has {frames} frames (pages); using the first", InputImageWarning, stacklevel=2)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_INPUT_SIDE:
        raise InputImageError(
            f"{name}: {w}×{h} px is too small; both sides must be at least {MIN_INPUT_SIDE} px"
        )
    return rgb


def file_key(src: ImageLike) -> Optional[tuple]:
    """An identity for an image given as a file path (resolved path, size, modification time),
    for caching what was computed from it; None for arrays and PIL images."""
    if isinstance(src, (np.ndarray, Image.Image)):
        return None
    path = Path(src)
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def check_writable_dir(folder: Union[str, os.PathLike]) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".analogy-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"{folder}: cannot write there ({exc.strerror or exc}); choose another output folder"
        ) from None
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


#: The lock file that marks an output folder as being written (see output_lock).
LOCK_NAME = ".analogy.lock"


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    busy = OutputError(f"{folder}: another analogy run is writing there; wait for it to finish or choose another "
                       f"output folder")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
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


def write_files_atomically(writers: Dict[Path, Callable[[Path], None]]) -> None:
    """Write each file to a temporary name beside it, then rename them all into place.

    Either every file appears complete, or (on error or interruption before the renames) none
    does and the temporary files are removed.
    """
    staged = []
    try:
        for target, write in writers.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            os.close(fd)
            staged.append((Path(tmp), target))
            write(Path(tmp))
            os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600; outputs get a new file's usual mode
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{exc.filename or 'output'}: cannot write ({exc.strerror or exc})") from None
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


def png_writer(rgb: np.ndarray) -> Callable[[Path], None]:
    """A writer for write_files_atomically that saves an RGB uint8 array as PNG."""
    return lambda path: Image.fromarray(rgb).save(path, format="PNG")


def npy_writer(array: np.ndarray) -> Callable[[Path], None]:
    """A writer for write_files_atomically that saves an array in .npy format."""

    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, array)

    return write

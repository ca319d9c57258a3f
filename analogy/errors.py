"""Errors with messages meant for the user: one line that says what is wrong and what to do; and
interruptions (Ctrl-C, SIGTERM), which end the work wherever it is."""
from __future__ import annotations

import signal
import sys
from typing import Optional


class AnalogyError(Exception):
    """Base class of every error `analogy` reports to its user."""


class ConfigError(AnalogyError, ValueError):
    """An option has a value the method cannot use."""


class InputImageError(AnalogyError):
    """An input image is missing, unreadable, or of a size the method cannot handle."""


class OutputError(AnalogyError):
    """An output cannot be written."""


class WeightsError(AnalogyError):
    """The VGG19 weights cannot be loaded."""


class DeviceError(AnalogyError):
    """The requested device is not available."""


class OutOfMemoryError(AnalogyError, MemoryError):
    """The work does not fit in memory at this working size."""


class Terminated(KeyboardInterrupt):
    """Raised for SIGTERM by the command line and by batch workers (see interrupt_on_signal):
    handled like Ctrl-C (clean-up, no partial file), then exit status 143."""


#: The signal that interrupt_on_signal turned into an exception, while that is on its way.
_received: Optional[int] = None


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception that stands for signal `signum`: Terminated for SIGTERM, else
    KeyboardInterrupt."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def interrupt_on_signal(signum: int, frame) -> None:
    """A handler for SIGINT and SIGTERM: raise KeyboardInterrupt or Terminated where the main
    thread is, and note the signal. Python drops an exception raised in a callback from C code
    (Numba calls such callbacks while it compiles or loads its kernels) with a traceback and goes
    on; raise_if_interrupted, called between the stages of the work, raises it again there, and
    quiet_lost_interruptions keeps the traceback from being printed. A further signal while the
    first is handled (its clean-up under way) is ignored."""
    global _received
    if _received is None:
        _received = signum
        raise interruption(signum)


def raise_if_interrupted() -> None:
    """Raise again the interruption of a signal that interrupt_on_signal took, if it was lost
    (see there); nothing when there was none."""
    if _received is not None:
        raise interruption(_received)


def interruption_handled() -> None:
    """Forget the signal interrupt_on_signal took: the command has handled its interruption as its
    normal end (the server stops on Ctrl-C or SIGTERM), so raise_if_interrupted raises nothing."""
    global _received
    _received = None


def _unraisable(unraisable) -> None:
    if _received is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
        return  # an interruption lost in a callback: raised again at the next stage
    sys.__unraisablehook__(unraisable)


def quiet_lost_interruptions() -> None:
    """Where Python would print an interruption it had to drop ("Exception ignored on calling
    ctypes callback function"), print nothing: raise_if_interrupted raises it again."""
    sys.unraisablehook = _unraisable


class InputImageWarning(UserWarning):
    """An input image was usable but not quite as given (e.g. only its first frame is used)."""

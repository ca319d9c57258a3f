"""Errors with messages meant for the user: one line that says what is wrong and what to do."""


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
    """Raised by the SIGTERM handlers of the command line and of batch workers: handled like
    Ctrl-C (clean-up, no partial file), then exit status 143."""

    @staticmethod
    def raise_on_signal(signum, frame) -> None:
        """A signal handler: raise Terminated where the main thread is."""
        raise Terminated()


class InputImageWarning(UserWarning):
    """An input image was usable but not quite as given (e.g. only its first frame is used)."""

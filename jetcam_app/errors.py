"""How runs end: the error types users see (each carries one line saying what failed and one fix), and the stop
signals that end a run cleanly (Ctrl-C, kill, a closed terminal or SSH session); and the one masking of secrets
(URL passwords, the web page's token) in whatever is shown or written."""

import contextlib
import re
import signal
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows
MASK = "***"
# scheme://user:PASSWORD@host: the password runs to the netloc's last '@' (an unencoded '@' in it must not leak
# its tail), never past a '/' or a space (URLs inside pipeline strings and repr()s).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"']*:)[^/\s]*@")
_TOKEN_PARAM = re.compile(r"([?&#;]token=)[^&#\s\"']*", re.IGNORECASE)  # the page's ?token=... in request lines


def mask_secrets(text: str) -> str:
    """text with every URL password and token= value replaced by ***: rtsp://admin:***@cam/x, /?token=***.
    Only connections (the GStreamer pipeline that runs, the token check) get the real text."""
    text = _URL_PASSWORD.sub(r"\g<1>" + MASK + "@", str(text))
    return _TOKEN_PARAM.sub(r"\g<1>" + MASK, text)


def mask_secrets_in(data: Any) -> Any:
    """mask_secrets over every string in nested dicts, lists and tuples (a config echo, a status document)."""
    if isinstance(data, str):
        return mask_secrets(data)
    if isinstance(data, dict):
        return {key: mask_secrets_in(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_secrets_in(value) for value in data] if isinstance(data, list) else tuple(
            mask_secrets_in(value) for value in data)
    return data


def first_line(error: BaseException) -> str:
    """The error's first line for a one-line message; its type's name when it says nothing."""
    return (str(error).splitlines() or [type(error).__name__])[0]


class JetcamError(Exception):
    """A user-facing failure: the CLI prints it in one line and exits with code 2."""

    exit_code = 2


class ConfigError(JetcamError):
    """A bad option: unknown key, bad value, impossible combination."""


class SourceError(JetcamError):
    """A source that cannot be opened or read (missing file, camera absent, not a video)."""


class CaptureTimeout(SourceError):
    """No frame arrived within the timeout; the caller may retry (it re-checks its stop event)."""


class WeightsError(JetcamError):
    """Model weights that cannot be found or loaded."""


class BackendUnavailable(JetcamError):
    """An inference backend that is not installed or cannot run on this machine."""

    def __init__(self, backend: str, reason: str, hint: str = "", available: Optional[Sequence[str]] = None):
        self.backend = backend
        self.reason = reason
        self.hint = hint
        self.available = list(available or [])
        parts = ["backend '%s' is unavailable: %s" % (backend, reason)]
        if hint:
            parts.append("fix: %s" % hint)
        if available is not None:
            parts.append("available here: %s" % (", ".join(self.available) or "none"))
        super().__init__("; ".join(parts))


class EngineBuildError(JetcamError):
    """An engine build (ONNX export, TensorRT parse/build, torch2trt) that failed or returned nothing."""


class EngineConnectionError(JetcamError):
    """A remote inference server (Triton) that cannot be reached, lacks the model, or serves another shape."""


class OutputError(JetcamError):
    """An output folder or recording that cannot be written."""


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]) -> Iterator[None]:
    """handler(signal name) for each stop signal (Ctrl-C, kill, a closed terminal or SSH session) while inside; the
    previous handlers come back on exit."""
    previous = {}  # type: Dict[int, object]
    try:
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signum = getattr(signal, name)
                previous[signum] = signal.signal(signum, lambda *_, n=name: handler(n))
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def raise_keyboard_interrupt(name: str) -> None:
    """For code that already cleans up on Ctrl-C (the benchmark): every stop signal takes that path."""
    raise KeyboardInterrupt(name)

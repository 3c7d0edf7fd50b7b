"""The one exception tree of aiowget, and the one place lower-level errors are mapped into it.

    AiowgetError                     exit 1   anything not classified below
    ├── UsageError                   exit 2   options or input that cannot work
    │   └── InvalidURLError                   unusable URL, unsupported scheme
    ├── LocalIOError                 exit 3   the target directory or a local file
    │   └── OutputClosedError                 the reader of -O - or --json went away
    ├── NetworkError                 exit 4   DNS, connect, reset, timeout
    │   ├── DownloadTimeoutError              no byte within the read or connect timeout
    │   └── ContentTooShortError              the body ended before its Content-Length
    ├── TLSError                     exit 5   certificate or handshake failure
    ├── ProtocolError                exit 7   malformed response, redirect loop
    ├── HTTPStatusError              exit 8   the server answered 400 or more
    │   └── AuthenticationError      exit 6   401 and 407
    ├── ChecksumError                exit 1   the body is not what --checksum promised
    └── FileTooLargeError            exit 1   the body is larger than --max-filesize

Exit statuses follow wget's (DESIGN.md). `map_errors()` is the only place where aiohttp and OS
exceptions become these (with `output_error()` for a failed write to an output stream);
aiohttp is imported lazily there so that importing this module stays cheap and free of I/O
libraries.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from enum import IntEnum

from .text import redact_url, redact_urls

__all__ = [
    "AiowgetError",
    "AuthenticationError",
    "ChecksumError",
    "ContentTooShortError",
    "DownloadTimeoutError",
    "ExitStatus",
    "FileTooLargeError",
    "HTTPStatusError",
    "InvalidURLError",
    "LocalIOError",
    "NetworkError",
    "OutputClosedError",
    "ProtocolError",
    "TLSError",
    "UsageError",
    "combine_exit_statuses",
    "map_errors",
    "output_error",
]


class ExitStatus(IntEnum):
    OK = 0
    GENERIC = 1
    USAGE = 2
    LOCAL_IO = 3
    NETWORK = 4
    TLS = 5
    AUTHENTICATION = 6
    PROTOCOL = 7
    SERVER_ERROR = 8
    INTERRUPTED = 130


class AiowgetError(Exception):
    """Base of every error aiowget raises or reports; `str()` is the one-line reason."""

    exit_status = ExitStatus.GENERIC


class UsageError(AiowgetError):
    exit_status = ExitStatus.USAGE


class InvalidURLError(UsageError):
    pass


class LocalIOError(AiowgetError):
    exit_status = ExitStatus.LOCAL_IO


class OutputClosedError(LocalIOError):
    """The reader of the output stream (`-O -`, `--json`) went away: `| head`, `| true`."""

    def __init__(self) -> None:
        super().__init__("the output stream was closed by its reader")


class NetworkError(AiowgetError):
    exit_status = ExitStatus.NETWORK


class DownloadTimeoutError(NetworkError):
    pass


class ContentTooShortError(NetworkError):
    """The connection ended before the announced length arrived (the original's name)."""

    def __init__(self, received: int | None = None, expected: int | None = None) -> None:
        if expected is None:
            super().__init__("connection closed before the body was complete")
        elif received is None:
            super().__init__(f"connection closed before the {expected} bytes announced came")
        else:
            super().__init__(f"body ended after {received} of {expected} bytes")
        self.received = received
        self.expected = expected


class TLSError(AiowgetError):
    exit_status = ExitStatus.TLS


class ProtocolError(AiowgetError):
    exit_status = ExitStatus.PROTOCOL


class HTTPStatusError(AiowgetError):
    exit_status = ExitStatus.SERVER_ERROR

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}".rstrip())
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(HTTPStatusError):
    exit_status = ExitStatus.AUTHENTICATION


class ChecksumError(AiowgetError):
    """Generic exit status: wget has no code for it, and it is neither network nor protocol."""


class FileTooLargeError(AiowgetError):
    """Refused by the caller's own limit: generic exit status, as wget's quota."""


def combine_exit_statuses(statuses: Iterable[int]) -> ExitStatus:
    """wget's rule: success is 0; with failures the lowest of 2-8 wins, else generic 1."""
    worst = ExitStatus.OK
    for status in statuses:
        if status == ExitStatus.OK:
            continue
        if worst == ExitStatus.OK or _rank(status) < _rank(worst):
            worst = ExitStatus(status)
    return worst


def _rank(status: int) -> int:
    # 2..8 are specific and ordered; anything else (1) only counts when nothing specific does.
    return status if ExitStatus.USAGE <= status <= ExitStatus.SERVER_ERROR else 100


class map_errors:
    """Translate aiohttp, asyncio and OS exceptions raised inside into the aiowget tree.
    (A class: entered a few times for every file, and cheaper than a generator.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, AiowgetError):
            raise translate(exc) from exc


def translate(exc: Exception) -> AiowgetError:
    import asyncio  # lazily, as aiohttp: see the module docstring

    import aiohttp

    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return TLSError(_reason(exc))
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ProtocolError(f"too many redirects (more than {len(exc.history) - 1})")
    if isinstance(exc, aiohttp.RedirectClientError):
        # Only http and https are followed: a redirect to file:, ftp: or junk is refused.
        target = str(exc.args[0]) if exc.args else "?"
        return ProtocolError(f"redirect to an unusable URL {redact_url(target)!r}")
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidURLError(f"invalid URL {redact_url(str(exc.url))!r}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ContentTooShortError()
    if isinstance(exc, asyncio.TimeoutError):
        return DownloadTimeoutError("timed out waiting for the server")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NetworkError(f"cannot connect to {exc.host}:{exc.port}: {_reason(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return NetworkError("server disconnected")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProtocolError(f"bad response: {exc.message}")
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return NetworkError(_reason(exc))
    if isinstance(exc, OSError):
        return LocalIOError(_os_reason(exc))
    if isinstance(exc, RuntimeError) and str(exc) == "Session is closed":
        return UsageError("the session given to the Downloader was closed while in use")
    return AiowgetError(_reason(exc))


def output_error(exc: OSError, name: str = "standard output") -> LocalIOError:
    """A failed write to an output stream (`-O -`, `--json`): its reader gone (`| head`)
    is `OutputClosedError`; anything else (a full disk) a `LocalIOError` naming it."""
    if isinstance(exc, BrokenPipeError):
        return OutputClosedError()
    return LocalIOError(f"cannot write to {name}: {exc.strerror or exc}")


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _reason(exc: BaseException) -> str:
    # Lower-level messages may quote a URL: never with its password.
    text = redact_urls(str(exc).strip())
    return text or type(exc).__name__

"""Frozen values that cross module boundaries: options, jobs, results and events. Pure."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import overload
from urllib.parse import urlsplit

from ._version import __version__
from .errors import AiowgetError, ExitStatus, UsageError, combine_exit_statuses
from .text import masked_header, printable, redact_url, redact_urls, shown_url

__all__ = [
    "Checksum",
    "Event",
    "Exchange",
    "Finished",
    "HttpHead",
    "IfExists",
    "Job",
    "Naming",
    "Note",
    "Notice",
    "Options",
    "Outcome",
    "PartState",
    "Progress",
    "Result",
    "Results",
    "Retrying",
    "Stamp",
    "Started",
    "Tally",
]

DEFAULT_USER_AGENT = f"aiowget/{__version__}"
STDIN = "-"  # as an input file (`-i -`) or an output (`-O -`): standard input or output


class Naming(str, Enum):
    FLAT = "flat"
    BASENAME = "basename"
    TREE = "tree"


class IfExists(str, Enum):
    SKIP = "skip"
    OVERWRITE = "overwrite"
    RENAME = "rename"
    UPDATE = "update"  # a conditional GET; replaced only when the server has a newer version


class Outcome(str, Enum):
    SAVED = "saved"
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"  # `--if-exists update`: the server said 304, the file is left alone
    FAILED = "failed"


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run. Validated on creation; raises `UsageError`."""

    directory: Path = Path()
    jobs: int = 8
    # "auto" (adapted per origin, up to `jobs`), "auto:MAX", or a fixed number; None: no limit
    # (the default while `auto` learns to tell random failures from overload: issue #16).
    per_host: int | str | None = "auto"
    naming: Naming = Naming.FLAT
    content_disposition: bool = False
    if_exists: IfExists = IfExists.SKIP
    timeout: float | None = 60.0
    connect_timeout: float | None = 30.0
    retries: int = 5
    retry_wait: float = 1.0
    retry_wait_max: float = 60.0
    retry_after_max: float = 300.0
    continue_partial: bool = True
    max_redirects: int = 20
    headers: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = DEFAULT_USER_AGENT
    auth: tuple[str, str] | None = None
    proxy: str | None = None
    verify_tls: bool = True
    ca_certificate: Path | None = None
    limit_rate: float | None = None
    lowest_speed: float | None = None
    max_filesize: int | None = None
    split: int = 1
    compute_sha256: bool = False
    raise_errors: bool = False
    fsync: bool = False
    # A Netscape cookies.txt to send from (`--load-cookies`); aiowget's own session only.
    cookies: Path | None = None
    # A saved file takes the server's Last-Modified as its mtime (wget's default, curl -R).
    server_timestamps: bool = True
    # `Exchange` and `Note` events for `on_event` (`-v`); off, they cost nothing at all.
    verbose: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "directory", path_option(self.directory, "directory"))
        set_(self, "naming", _choice(Naming, self.naming, "naming"))
        set_(self, "if_exists", _choice(IfExists, self.if_exists, "if_exists"))
        set_(self, "headers", _headers(self.headers))
        _at_least(1, jobs=self.jobs, split=self.split)
        _at_least(0, max_redirects=self.max_redirects, retries=self.retries)
        if self.per_host is not None:
            set_(self, "per_host", _per_host(self.per_host))
        if self.max_filesize is not None:
            _at_least(0, max_filesize=self.max_filesize)
        for name in ("content_disposition", "continue_partial", "verify_tls"):
            _flag(name, getattr(self, name))
        _flag("compute_sha256", self.compute_sha256)
        _flag("raise_errors", self.raise_errors)
        _flag("fsync", self.fsync)
        _flag("server_timestamps", self.server_timestamps)
        _flag("verbose", self.verbose)
        for name in ("timeout", "connect_timeout", "limit_rate", "lowest_speed"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not value > 0):
                unit = "bytes/s" if name in ("limit_rate", "lowest_speed") else "seconds"
                raise UsageError(f"{name} must be a positive number of {unit}, got {value!r}")
            if value == math.inf:
                set_(self, name, None)  # `inf` is "no limit", which aiohttp spells None
        for name in ("retry_wait", "retry_wait_max", "retry_after_max"):
            value = getattr(self, name)
            # Finite: no server, and no typo, can make a transfer wait forever.
            if not _is_number(value) or not 0 <= value < math.inf:
                raise UsageError(f"{name} must be a finite number of seconds, got {value!r}")
        set_(self, "user_agent", _header_value("user_agent", self.user_agent))
        set_(self, "auth", _auth(self.auth))
        if self.proxy is not None:
            set_(self, "proxy", _proxy(self.proxy))
        if self.ca_certificate is not None:
            set_(self, "ca_certificate", path_option(self.ca_certificate, "ca_certificate"))
        if self.cookies is not None:
            set_(self, "cookies", path_option(self.cookies, "cookies"))


# The checks of Options: each names the option, and none needs the network or the disk.


def _per_host(value: object) -> int | str | None:
    """A number of connections (a digit string too: the command line's), "auto" or
    "auto:MAX", or "none" (no limit per origin: None)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "none":
            return None
        if text.isascii() and text.isdigit():
            value = int(text)
        elif text == "auto" or (
            text.startswith("auto:")
            and text.isascii()
            and text[5:].isdigit()
            and int(text[5:]) >= 1
        ):
            return text
        else:
            raise UsageError(
                f"per_host must be a number, 'auto', 'auto:MAX' or 'none', got {value!r}"
            )
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"per_host must be a number, 'auto', 'auto:MAX' or 'none', got {value!r}")
    return value


def _choice(kind: type[Naming] | type[IfExists], value: object, name: str) -> Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise UsageError(f"{name} must be one of {allowed}, got {value!r}") from None


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UsageError(f"{name} must be a whole number of at least {minimum}, got {value!r}")


_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but tab (RFC 9110 5.5)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 token


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, got {value!r}")


def path_option(value: object, name: str) -> Path:
    if not isinstance(value, str | os.PathLike) or isinstance(value, bytes):
        raise UsageError(f"{name} must be a path, got {value!r}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise UsageError(f"{name} must be a text path, got {value!r}")
    return Path(path)


def _header_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a string, got {value!r}")
    if _CONTROLS.search(value):
        raise UsageError(f"{name} has a control character (a line break, NUL, ...) in it")
    return value


def _headers(headers: object) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise UsageError(f"headers must be a mapping of names to values, got {headers!r}")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise UsageError(f"headers: {name!r} is not a header name")
        if name.lower() == "proxy-authorization":
            # It would go to the origin (inside an https tunnel), not to the proxy.
            raise UsageError(
                "Proxy-Authorization is not a header for the server: "
                "put the proxy's credentials in its URL (http://user:password@proxy:port)"
            )
        checked[name] = _header_value(f"headers[{name!r}]", value)
    return checked


def _auth(auth: object) -> tuple[str, str] | None:
    if auth is None:
        return None
    if not isinstance(auth, tuple | list) or len(auth) != 2:
        raise UsageError("auth must be a (user, password) pair")
    user, password = auth
    if not isinstance(user, str) or not isinstance(password, str):
        raise UsageError("auth must be a (user, password) pair of strings")
    if ":" in user:
        raise UsageError("a user name for Basic auth cannot contain ':'")
    if any(c in user + password for c in "\r\n\0"):
        raise UsageError("auth has a line break or NUL in it")
    return user, password


def _proxy(proxy: object, name: str = "proxy") -> str:
    """An http(s) proxy URL (`host:port` alone means `http://host:port`, as for curl)."""
    if not isinstance(proxy, str):
        raise UsageError(f"{name} must be a URL, got {type(proxy).__name__}")
    proxy = proxy.strip()
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        parts = urlsplit(proxy)
        host, _ = parts.hostname, parts.port
    except ValueError:
        host = None
    else:
        if parts.scheme.lower() not in ("http", "https"):
            host = None
    if not host or any(c.isspace() for c in proxy):
        raise UsageError(f"{name} {redact_url(proxy)!r} is not an http:// or https:// URL")
    return proxy


def checked_proxy(proxy: str, name: str) -> str:
    """`proxy` (from the environment, `name`) as `Options.proxy` is checked: `UsageError`."""
    return _proxy(proxy, name)


CHECKSUM_ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class Checksum:
    """`ALGO:HEX` as given to `--checksum` or `checksum=`; `parse` raises `UsageError`."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        algorithm, _, hexdigest = text.partition(":")
        algorithm, hexdigest = algorithm.lower(), hexdigest.lower()
        length = CHECKSUM_ALGORITHMS.get(algorithm)
        if length is None:
            allowed = ", ".join(CHECKSUM_ALGORITHMS)
            raise UsageError(f"checksum {text!r}: algorithm must be one of {allowed}")
        if len(hexdigest) != length or not all(c in "0123456789abcdef" for c in hexdigest):
            raise UsageError(f"checksum {text!r}: expected {length} hex digits for {algorithm}")
        return cls(algorithm, hexdigest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class Job:
    """One URL to fetch. `name` is a file name inside the directory (an input file's `out=`);
    `path` is an exact path that bypasses naming (`-O`); `checksum` is verified before the
    file gets its final name. `problem` marks an input line that could not be used: the job
    fails with it instead of being fetched."""

    url: str
    name: str | None = None
    path: Path | None = None
    checksum: Checksum | None = None
    problem: UsageError | None = None


@dataclass(frozen=True)
class PartState:
    """What a `.part` file's sidecar remembers of the remote file, to resume it safely."""

    url: str
    validator: str | None
    total: int | None
    # For a split download: (start, end inclusive, bytes done) of every segment.
    segments: tuple[tuple[int, int, int], ...] | None = None


@dataclass(frozen=True)
class Stamp:
    """A version of a remote file as a saved file keeps it: its mtime (seconds since the
    epoch) and its ETag (in an extended attribute). Either may be missing."""

    mtime: float | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Result:
    url: str
    path: Path | None
    outcome: Outcome
    error: AiowgetError | None = None
    size: int = 0
    status: int | None = None
    elapsed: float = 0.0
    note: str = ""
    attempts: int = 0
    sha256: str | None = None
    # The server's Last-Modified of the version saved (or found unchanged), when it sent one.
    last_modified: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.FAILED

    @property
    def exit_status(self) -> ExitStatus:
        return self.error.exit_status if self.error else ExitStatus.OK


class Results(Sequence[Result]):
    """The results of a run in input order, with the failures one attribute away."""

    def __init__(self, results: Iterable[Result] = ()) -> None:
        self._results = tuple(results)

    @overload
    def __getitem__(self, index: int) -> Result: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Result]: ...
    def __getitem__(self, index: int | slice) -> Result | Sequence[Result]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __repr__(self) -> str:
        counts = ", ".join(f"{o.value}={len(self.with_outcome(o))}" for o in Outcome)
        return f"<Results {counts}>"

    def with_outcome(self, outcome: Outcome) -> tuple[Result, ...]:
        return tuple(r for r in self._results if r.outcome is outcome)

    @property
    def failed(self) -> tuple[Result, ...]:
        return self.with_outcome(Outcome.FAILED)

    @property
    def exit_status(self) -> ExitStatus:
        return combine_exit_statuses(r.exit_status for r in self._results)


@dataclass
class Tally:
    """Running counts of a run, for the summary line and the exit status, in O(1) memory."""

    saved: int = 0
    skipped: int = 0
    failed: int = 0
    unchanged: int = 0
    size: int = 0
    exit_status: ExitStatus = ExitStatus.OK

    def add(self, result: Result) -> None:
        if result.outcome is Outcome.SAVED:
            self.size += result.size  # bytes saved: a failure's partial bytes are not
            self.saved += 1
        elif result.outcome is Outcome.SKIPPED:
            self.skipped += 1
        elif result.outcome is Outcome.UNCHANGED:
            self.unchanged += 1
        else:
            self.failed += 1
        self.exit_status = combine_exit_statuses((self.exit_status, result.exit_status))


@dataclass(frozen=True)
class Started:
    """A response was accepted and its body is about to be written to `path`."""

    url: str
    path: Path | None
    total: int | None


@dataclass(frozen=True)
class Progress:
    """`received` bytes of `url` so far (sent a few times a second while a body streams)."""

    url: str
    received: int
    total: int | None


@dataclass(frozen=True)
class Retrying:
    """Attempt `attempt` (counting from 1) failed with `error`; the next comes after `delay`."""

    url: str
    attempt: int
    retries: int
    delay: float
    error: AiowgetError


@dataclass(frozen=True)
class Notice:
    """Something worth saying once about `url` that is not a failure: waiting for another
    transfer of the same file, or fetching from the first byte what could not be resumed."""

    url: str
    message: str


@dataclass(frozen=True)
class Finished:
    result: Result


@dataclass(frozen=True)
class HttpHead:
    """The head of one HTTP message: its first line (request or status line) and headers, in
    the order and spelling they had on the wire."""

    line: str
    headers: tuple[tuple[str, str], ...]

    def lines(self, mark: str) -> list[str]:
        """`mark` + each line, credentials masked (`text.masked_header`) and control
        characters escaped: a server's headers must not drive the terminal."""
        shown = [f"{mark} {redact_urls(self.line)}"]
        shown += [f"{mark} {name}: {masked_header(name, value)}" for name, value in self.headers]
        return [printable(line) for line in shown]


@dataclass(frozen=True)
class Exchange:
    """With `verbose`: one request made for `url`, as it went on the wire, and the head of
    its answer (None when none came: a reset, a timeout; the `Retrying` or `Finished` event
    that follows says why). `attempt` counts the requests of `url` from 1: a redirect chain
    is one Exchange per hop (`target` is the hop's URL), and a retry starts a new attempt.
    Values are as sent and received, secrets included: show them with `lines()`."""

    url: str
    target: str
    attempt: int
    request: HttpHead
    response: HttpHead | None

    def lines(self) -> list[str]:
        """As `-v` prints them, curl's way: `>` sent, `<` received; credentials masked."""
        head = [f"* {shown_url(self.target)} (attempt {self.attempt})", *self.request.lines(">")]
        return head + (self.response.lines("<") if self.response else ["< (no response)"])


@dataclass(frozen=True)
class Note:
    """A line for `-v` only, from any part of the engine (a per-host window that changed,
    say): sent only when `Options.verbose` is on, so it costs nothing otherwise. `message`
    is shown with control characters escaped and URL passwords masked."""

    message: str


Event = Started | Progress | Retrying | Notice | Finished | Exchange | Note

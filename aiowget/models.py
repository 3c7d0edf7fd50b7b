"""Frozen values that cross module boundaries: options, jobs, results and events. Pure."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import overload

from ._version import __version__
from .errors import AiowgetError, ExitStatus, UsageError, combine_exit_statuses

__all__ = [
    "Checksum",
    "Event",
    "Finished",
    "IfExists",
    "Job",
    "Naming",
    "Notice",
    "Options",
    "Outcome",
    "PartState",
    "Progress",
    "Result",
    "Results",
    "Retrying",
    "Started",
    "Tally",
]

DEFAULT_USER_AGENT = f"aiowget/{__version__}"


class Naming(str, Enum):
    FLAT = "flat"
    BASENAME = "basename"


class IfExists(str, Enum):
    SKIP = "skip"
    OVERWRITE = "overwrite"
    RENAME = "rename"


class Outcome(str, Enum):
    SAVED = "saved"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run. Validated on creation; raises `UsageError`."""

    directory: Path = Path()
    jobs: int = 8
    per_host: int | None = None
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
    max_filesize: int | None = None
    split: int = 1
    compute_sha256: bool = False
    raise_errors: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "directory", Path(os.fspath(self.directory)))
        set_(self, "naming", _choice(Naming, self.naming, "naming"))
        set_(self, "if_exists", _choice(IfExists, self.if_exists, "if_exists"))
        set_(self, "headers", dict(self.headers))
        _at_least(1, jobs=self.jobs, split=self.split)
        _at_least(0, max_redirects=self.max_redirects, retries=self.retries)
        if self.per_host is not None:
            _at_least(1, per_host=self.per_host)
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be a positive number of seconds, got {value}")
            if value == math.inf:
                set_(self, name, None)  # `inf` is "no limit", which aiohttp spells None
        if self.auth is not None and ":" in self.auth[0]:
            raise UsageError("a user name for Basic auth cannot contain ':'")
        if self.limit_rate is not None and not self.limit_rate > 0:
            raise UsageError(
                f"limit_rate must be a positive number of bytes/s, got {self.limit_rate}"
            )
        if self.max_filesize is not None:
            _at_least(0, max_filesize=self.max_filesize)
        for name in ("retry_wait", "retry_wait_max", "retry_after_max"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} must be a number of seconds, got {getattr(self, name)}")


def _choice(kind: type[Naming] | type[IfExists], value: object, name: str) -> Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise UsageError(f"{name} must be one of {allowed}, got {value!r}") from None


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < minimum:
            raise UsageError(f"{name} must be a whole number of at least {minimum}, got {value}")


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
    size: int = 0
    exit_status: ExitStatus = ExitStatus.OK

    def add(self, result: Result) -> None:
        self.size += result.size
        if result.outcome is Outcome.SAVED:
            self.saved += 1
        elif result.outcome is Outcome.SKIPPED:
            self.skipped += 1
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


Event = Started | Progress | Retrying | Notice | Finished

"""Decisions about URLs and responses, as functions of their inputs. Pure."""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import math
import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from urllib.parse import unquote, urljoin, urlsplit

from .errors import (
    AiowgetError,
    AuthenticationError,
    ContentTooShortError,
    HTTPStatusError,
    InvalidURLError,
    NetworkError,
    ProtocolError,
    UsageError,
)
from .models import HEADER_NAME, PartState, Stamp
from .text import printable, redact_url, scrub, shorten

__all__ = [
    "Action",
    "ContentRange",
    "DiskPace",
    "HostWindow",
    "TokenBucket",
    "Trouble",
    "backoff",
    "basic_authorization",
    "can_resume",
    "check_complete",
    "check_status",
    "check_url",
    "conditional_headers",
    "etag_to_keep",
    "expected_length",
    "file_mtime",
    "host_window",
    "is_overload",
    "is_retryable",
    "is_unchanged",
    "judge",
    "judge_segment",
    "origin",
    "parse_content_range",
    "parse_header",
    "parse_http_date",
    "parse_rate",
    "parse_retry_after",
    "parse_size",
    "part_matches",
    "plan_segments",
    "resume_headers",
    "retry_delay",
    "same_validator",
    "splittable",
    "validator_of",
]

SUPPORTED_SCHEMES = frozenset({"http", "https"})
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_AUTHENTICATION_STATUSES = frozenset({401, 407})
# Controls are refused anywhere; a space only in the host part (a pasted `http://h/a b` is
# fetched as /a%20b: aiohttp percent-encodes spaces and non-ASCII as UTF-8).
_UNSAFE_IN_URL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def check_url(url: str) -> str:
    """`url` if it can be fetched, else `InvalidURLError` naming what is wrong with it."""
    if not url or _UNSAFE_IN_URL.search(url):
        raise _invalid(url, "empty, or contains control characters")
    if url != url.strip():
        raise _invalid(url, "a space before or after it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(url, shorten(scrub(str(exc), url))) from None
    if parts.scheme.lower() not in SUPPORTED_SCHEMES:
        scheme = printable(parts.scheme) or "none"
        shown = shorten(redact_url(url))
        raise InvalidURLError(f"unsupported scheme {scheme!r} in {shown!r} (http and https only)")
    if not parts.hostname:
        raise _invalid(url, "no host")
    if any(c.isspace() for c in parts.netloc):
        raise _invalid(url, "a space in the host")
    if port == 0:
        raise _invalid(url, "port 0")
    return url


# Redirects, followed hop by hop (transfer._get) ------------------------------------------

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers that carry credentials: sent to the first origin only.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Hop:
    """One request of a chain of redirects. `trusted`: still at the origin first asked, so
    its credentials may go; `credentials`: the first URL's own user and password, kept for
    the redirects that stay at its origin."""

    url: str
    origin: str
    trusted: bool = True
    credentials: tuple[str, str] | None = None


def is_redirect(status: int) -> bool:
    return status in _REDIRECTS


def first_hop(url: str) -> Hop:
    return Hop(url, origin(url))


def next_hop(hop: Hop, location: str) -> Hop:
    """Where `Location` leads from `hop`; `ProtocolError` unless it is a usable http(s) URL.
    Leaving the first origin drops its credentials for the rest of the chain."""
    target = location.strip()
    try:
        target = urljoin(hop.url, target)
        check_url(target)
    except (InvalidURLError, ValueError):
        shown = shorten(redact_url(target))
        raise ProtocolError(f"redirect to an unusable URL {shown!r}") from None
    credentials = hop.credentials
    if hop.trusted and credentials is None:
        parts = urlsplit(hop.url)
        if parts.username is not None:
            credentials = (unquote(parts.username), unquote(parts.password or ""))
    there = origin(target)
    trusted = hop.trusted and there == hop.origin
    return Hop(target, hop.origin, trusted, credentials if trusted else None)


def without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


def proxy_url(proxy: str) -> str:
    """A proxy as curl reads it: with no scheme, `http://`."""
    proxy = proxy.strip()
    return proxy if "://" in proxy else f"http://{proxy}"


def bypasses_proxy(url: str, no_proxy: str) -> bool:
    """Whether `no_proxy` (curl's syntax: `*`, host names matching their subdomains, a
    leading dot optional, `host:port`, IP addresses, CIDR blocks, `[v6]:port`) exempts `url`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    for entry in re.split(r"[,\s]+", no_proxy.strip().lower()):
        if entry and _exempts(entry, host, port):
            return True
    return False


def _exempts(entry: str, host: str, port: int) -> bool:
    if entry == "*":
        return True
    if "/" in entry:  # a CIDR block: IP hosts only
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    name, wanted_port = entry, None
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", entry)
    if bracketed:
        name, wanted_port = bracketed.group(1), bracketed.group(2)
    elif entry.count(":") == 1:
        name, _, wanted_port = entry.partition(":")
    if wanted_port is not None and wanted_port != str(port):
        return False
    name = name.lstrip(".").rstrip(".")
    return bool(name) and (host == name or host.endswith("." + name))


def _invalid(url: str, reason: str) -> InvalidURLError:
    return InvalidURLError(f"invalid URL {shorten(redact_url(url))!r}: {reason}")


def origin(url: str) -> str:
    """`scheme://host:port` of a checked URL: the key that per-host limits count against."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{_host_key(parts.hostname or '')}:{port}"


def _host_key(host: str) -> str:
    """The host as the request names it: full-width or upper-case letters folded and IDN in
    punycode (as the idna codec does), no trailing dot: one spelling, one origin."""
    with suppress(UnicodeError):  # a name the codec refuses (IPv6, a bad label): as written
        host = host.encode("idna").decode("ascii")
    return host.lower().rstrip(".")


def check_status(status: int, reason: str, retry_after: float | None = None) -> None:
    """Accept a final response of a plain GET: 2xx only; nothing is saved for the rest.

    `retry_after` (seconds, from the header) is kept on the error of a 429 or 503."""
    if 200 <= status < 300:
        return
    if status in _AUTHENTICATION_STATUSES:
        raise AuthenticationError(status, printable(reason))
    if status >= 400:
        honoured = retry_after if status in RETRY_AFTER_STATUSES else None
        raise HTTPStatusError(status, printable(reason), honoured)
    raise ProtocolError(f"unexpected status {status} {printable(reason)}".rstrip())


def expected_length(headers: Mapping[str, str]) -> int | None:
    """The body length the response announces, None when it does not say."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not value.isascii() or not value.strip().isdigit():
        raise ProtocolError(f"invalid Content-Length {printable(value)!r}")
    return int(value)


def check_complete(received: int, expected: int | None) -> None:
    """A body is whole when it has exactly the announced length (or no length was given)."""
    if expected is not None and received < expected:
        raise ContentTooShortError(received, expected)
    if expected is not None and received > expected:
        raise ProtocolError(f"body longer than its Content-Length ({received} > {expected})")


# Retries ---------------------------------------------------------------------------------


def is_retryable(error: AiowgetError) -> bool:
    """Transient failures: the network (resets, timeouts, cut bodies) and 408/429/5xx-ish."""
    if isinstance(error, HTTPStatusError):
        return error.status in RETRYABLE_STATUSES
    return isinstance(error, NetworkError)


def backoff(attempt: int, base: float, cap: float, draw: float) -> float:
    """Exponential backoff with full jitter: `draw` (uniform in [0, 1)) of the capped window.
    The exponent is capped first: `-t 100000` must not overflow a float."""
    return draw * min(cap, base * 2.0 ** min(attempt, 64))


def retry_delay(
    error: AiowgetError, attempt: int, *, base: float, cap: float, after_cap: float, draw: float
) -> float:
    """Seconds to wait before retry number `attempt` (from 0); Retry-After wins when sent."""
    if isinstance(error, HTTPStatusError) and error.retry_after is not None:
        return min(error.retry_after, after_cap)
    return backoff(attempt, base, cap, draw)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from `now` (a number of seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


# Resuming --------------------------------------------------------------------------------


class Action(Enum):
    """What to do with a response to a (possibly ranged) GET."""

    FROM_ZERO = "write the body from the first byte, dropping what the .part held"
    APPEND = "append the body to the .part"
    COMPLETE = "the .part already holds the whole file"
    RESTART = "drop the .part and ask again without Range"
    UNCHANGED = "the file there is current: a 304 to a conditional GET"


@dataclass(frozen=True)
class ContentRange:
    start: int | None
    end: int | None
    total: int | None


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\Z", re.ASCII)


def parse_content_range(value: str | None) -> ContentRange | None:
    """`bytes 0-99/200`, `bytes */200` or `bytes 0-99/*`, or None when malformed."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    start, end, total = (None if g in (None, "*") else int(g) for g in match.groups())
    if start is not None and end is not None and end < start:
        return None
    return ContentRange(start, end, total)


def validator_of(headers: Mapping[str, str]) -> str | None:
    """The strong validator to resume with (`If-Range`, RFC 9110 13.1.5), or None.

    A strong ETag; else a Last-Modified that RFC 9110 8.8.2.2 lets a client treat as strong: at
    least 60 seconds older than the response's Date. A weak ETag, or a date with no Date to
    compare it with, cannot tell two versions apart, so a `.part` made with it is never resumed.
    """
    etag = headers.get("ETag", "").strip()
    if etag.startswith('"'):
        return etag
    modified = headers.get("Last-Modified")
    older = _seconds_between(modified, headers.get("Date"))
    if modified is None or older is None or older < STRONG_DATE_MARGIN:
        return None
    return modified.strip()


STRONG_DATE_MARGIN = 60.0


def _seconds_between(earlier: str | None, later: str | None) -> float | None:
    if earlier is None or later is None:
        return None
    try:
        first, second = (email.utils.parsedate_to_datetime(v) for v in (earlier, later))
    except (TypeError, ValueError, IndexError):
        return None
    if first.tzinfo is None or second.tzinfo is None:
        return None
    return (second - first).total_seconds()


def can_resume(offset: int, state: PartState | None) -> bool:
    """A .part is resumed only when it holds bytes and a strong validator names its version:
    without one, a 206 could append another version's bytes (it is fetched again instead)."""
    return offset > 0 and state is not None and state.validator is not None


def part_matches(size: int, state: PartState) -> bool:
    """Whether a `.part` of `size` bytes is what its sidecar describes: nothing else is resumed.

    One stream: at most the total. Split: exactly the total, with segments that tile it."""
    if state.segments is None:
        return state.total is None or size <= state.total
    return state.total is not None and size == state.total and _tiles(state.segments, state.total)


def _tiles(segments: tuple[tuple[int, int, int], ...], total: int) -> bool:
    expected = 0
    for start, end, done in segments:
        if start != expected or end < start or not 0 <= done <= end - start + 1:
            return False
        expected = end + 1
    return bool(segments) and expected == total


def resume_headers(offset: int, state: PartState | None) -> dict[str, str]:
    """Range and If-Range for continuing at `offset`; empty when starting from zero."""
    if not can_resume(offset, state):
        return {}
    assert state is not None
    assert state.validator is not None
    return {"Range": f"bytes={offset}-", "If-Range": state.validator}


def judge(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    offset: int,
    state: PartState | None,
    now: datetime,
) -> Action:
    """Decide what a response means for a transfer that asked from `offset` (0: no Range).

    A 206 is accepted only when its Content-Range starts at `offset` and its total and
    validator match what the .part was made from; anything else starts over, never appends
    bytes of another version. Error statuses raise."""
    if status == 416 and offset > 0:
        return Action.COMPLETE if _already_whole(headers, offset, state) else Action.RESTART
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    check_status(status, reason, retry_after)
    if status != 206:
        return Action.FROM_ZERO
    if offset == 0 or state is None:
        raise ProtocolError("206 Partial Content to a request without Range")
    return Action.APPEND if _same_file(headers, offset, state) else Action.RESTART


def _already_whole(headers: Mapping[str, str], offset: int, state: PartState | None) -> bool:
    """A 416 to `Range: bytes=offset-` finishes the file only when the .part is known whole:
    the sidecar's total is `offset`; or the 416 says the total is `offset` and names the very
    validator the .part was made from (a 416 of another version says nothing about ours)."""
    if state is None:
        return False
    if state.total is not None:
        return state.total == offset
    announced = parse_content_range(headers.get("Content-Range"))
    return (
        announced is not None
        and announced.total == offset
        and _names_validator(headers, state.validator)
    )


def _same_file(headers: Mapping[str, str], offset: int, state: PartState) -> bool:
    answered = parse_content_range(headers.get("Content-Range"))
    if answered is None or answered.start != offset:
        return False
    if None not in (state.total, answered.total) and state.total != answered.total:
        return False
    return same_validator(headers, state.validator)


def same_validator(headers: Mapping[str, str], validator: str | None) -> bool:
    """A 206 is of the version asked for: it names exactly our validator. A weak or different
    ETag, another date, or none at all (RFC 9110 15.3.7 requires it on a 206 whenever a 200
    would carry it) is not proof of the same version, and appending would mix two."""
    return validator is None or _names_validator(headers, validator)


def _names_validator(headers: Mapping[str, str], validator: str | None) -> bool:
    if validator is None:
        return False
    field = "ETag" if validator.startswith('"') else "Last-Modified"
    answered = headers.get(field)
    return answered is not None and answered.strip() == validator


# Server timestamps, kept ETags and `--if-exists update` -----------------------------------

# How far ahead of our clock a server's date may be (its clock, or ours, a little off).
CLOCK_SKEW = 60.0
# Longest ETag kept in an extended attribute (ext4 gives all of a file's attributes 4 KiB).
ETAG_LIMIT = 1024
# RFC 9110 8.8.3: `"..."` or `W/"..."`, printable ASCII inside (obs-text is not kept).
_ETAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e]*"\Z')
_CONDITIONS = ("If-None-Match", "If-Modified-Since")


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (`Last-Modified`) as an aware UTC datetime; None when absent or
    unparseable (a date without a zone is taken as GMT, as HTTP dates are)."""
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
        written = _FOUR_DIGIT_YEAR.search(value)
        if written is not None and int(written.group()) != when.year:
            return None  # `0001` read as 2001: the email parser's two-digit rule, wrong here
        when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
        return when.astimezone(timezone.utc)  # may overflow: year 9999 at -0100
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_FOUR_DIGIT_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")


def file_mtime(when: datetime | None, now: datetime) -> float | None:
    """The mtime a saved file takes from the server's date, or None (it keeps the time it was
    written): a date before 1970, or later than `now` by more than `CLOCK_SKEW`, is a wrong
    clock, and a file from the future would make every later comparison lie."""
    if when is None or when > now + timedelta(seconds=CLOCK_SKEW):
        return None
    stamp = when.timestamp()
    return stamp if stamp >= 0 else None


def etag_to_keep(value: str | None) -> str | None:
    """An ETag worth keeping (and sending back in `If-None-Match`): strong or weak, exactly as
    sent, printable and at most `ETAG_LIMIT` long; None for anything else."""
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= ETAG_LIMIT and _ETAG.match(value) else None


def conditional_headers(current: Stamp, now: datetime) -> dict[str, str]:
    """The conditional GET of `--if-exists update` for a file holding version `current`:
    `If-None-Match` with its kept ETag, `If-Modified-Since` with its mtime (as wget -N and
    curl -z use it); empty when it has neither (an mtime in the future is no date to ask by)."""
    headers = {}
    etag = etag_to_keep(current.etag)
    if etag is not None:
        headers["If-None-Match"] = etag
    mtime = current.mtime
    if mtime is not None and 0 <= mtime <= now.timestamp() + CLOCK_SKEW:
        headers["If-Modified-Since"] = email.utils.formatdate(mtime, usegmt=True)
    return headers


def is_unchanged(status: int, sent: Mapping[str, str]) -> bool:
    """A 304 to a conditional GET: the file is as the server has it. A 304 nobody asked for
    stays a protocol error (`check_status`)."""
    return status == 304 and any(name in sent for name in _CONDITIONS)


# Request options and the rate limit ------------------------------------------------------

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)\Z")
_RATE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` (curl's and wget's `-H`) as a pair; `UsageError` when malformed."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not HEADER_NAME.match(name):
        # Not the text itself: `-H "Authorization Bearer TOKEN"` must not print the token.
        first = printable(text.split(None, 1)[0] if text.strip() else text)
        raise UsageError(f"header {shorten(first, 40)!r}...: expected 'Name: value'")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"header {name!r} has a line break or NUL in its value")
    return name, value


def basic_authorization(user: str, password: str) -> str:
    """The Authorization value for HTTP Basic auth (RFC 7617, UTF-8)."""
    if ":" in user:
        raise UsageError("a user name for Basic auth cannot contain ':'")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def parse_rate(text: str) -> float:
    """`500k`, `2M`, `1.5m` or plain bytes, per second (k = 1024, as wget and curl)."""
    return _parse_amount(text, "rate")


def format_rate(rate: float) -> str:
    """Bytes/s as `--limit-rate` and `--lowest-speed` take them: `50k/s`, `1.5M/s`."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("k", 1024)):
        if rate >= size:
            return f"{rate / size:g}{unit}/s"
    return f"{rate:g} bytes/s"


def parse_size(text: str) -> int:
    """`10M`, `1.5G` or plain bytes (k = 1024)."""
    return int(_parse_amount(text, "size"))


def _parse_amount(text: str, what: str) -> float:
    match = _RATE.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"{what} {printable(text)!r} is not a positive amount like 500k or 2M")
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]


@dataclass
class SpeedFloor:
    """`--lowest-speed`: too slow when the bytes of the last `window` seconds, averaged, stay
    below `rate` (bytes/s). Judged once a whole window has passed since the first mark (the
    start, with the bytes already there); the clock is passed in: the arithmetic stays pure.
    Marks are kept about `window / 16` apart, so a fast transfer keeps a few dozen of them."""

    rate: float
    window: float
    marks: list[tuple[float, int]]  # (time, bytes so far), oldest first; marks[0] the start

    @classmethod
    def starting(cls, rate: float, window: float, now: float, received: int) -> SpeedFloor:
        return cls(rate, window, [(now, received)])

    def too_slow(self, received: int, now: float) -> bool:
        marks = self.marks
        if now - marks[-1][0] >= self.window / 16:
            marks.append((now, received))
        while len(marks) > 1 and marks[1][0] <= now - self.window:
            del marks[0]  # marks[0] stays the last one at or before the window's start
        since, then = marks[0]
        if now - since < self.window:
            return False
        return (received - then) / (now - since) < self.rate


@dataclass
class TokenBucket:
    """One budget of bytes per second shared by every transfer, with a short burst.

    `take` charges the bytes just received and says how long to pause: the balance may go
    negative, and whoever takes next waits for the debt too, so the total rate holds however
    many transfers draw on it. The clock is passed in: the arithmetic stays pure."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float | None = None

    def take(self, amount: int, now: float) -> float:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class DiskPace:
    """Whether a small piece of disk work (claiming a `.part`; writing a small body whole and
    renaming it) runs right in the event loop, or in a worker thread.

    On a local disk that work takes a few microseconds and a hop to a thread costs far more
    (the README's per-file budget): it runs inline while the filesystem answers fast. Slow is
    `strikes` inline operations in a row over `slow` seconds (one alone may be the process
    being descheduled on a busy machine), or one over `very_slow`: then all of it goes to
    threads for `backoff` seconds, and is tried inline again after. On NFS or a disk under
    load, the loop is held up by a few slow operations per `backoff`. The clock is passed in."""

    slow: float = 0.002
    very_slow: float = 0.02
    strikes: int = 3
    backoff: float = 30.0
    threads_until: float = float("-inf")
    slow_in_a_row: int = 0

    def inline(self, now: float) -> bool:
        return now >= self.threads_until

    def took(self, seconds: float, now: float) -> None:
        """An inline operation ended at `now`, after `seconds`."""
        self.slow_in_a_row = self.slow_in_a_row + 1 if seconds > self.slow else 0
        if self.slow_in_a_row >= self.strikes or seconds > self.very_slow:
            self.threads_until = now + self.backoff
            self.slow_in_a_row = 0


# Connections per origin (`--per-host auto`) -------------------------------------------------

# Throughput is judged over samples of this many seconds (and at least a few completions).
SAMPLE = 0.08
_SAMPLE_MIN_DONE = 4
# A doubling of the connections must bring this much more throughput to count as worth it.
_WORTH_IT = 1.1
# Before there is evidence (`_Evidence`), 503s cut when over this share of a sample of at
# least `_SHARE_MIN` requests; resets and timeouts, which flaky networks give, of twice that.
_TROUBLE_SHARE = 0.25
_SHARE_MIN = 8
# Transfers allowed to wait on others beyond the knee the timings show (Vegas's beta); the
# brake acts only past a quarter of the window too, as a sample's median varies that much.
_QUEUED_MAX = 2
_QUEUE_NOISE = 0.25
# Timings this spread out (upper quartile over lower) are not compared (mixed sizes).
_SPREAD = 2.0
# Samples in a row that must show a queue before the brake acts (one may be a fluke of the
# sizes in it).
_QUEUED_SAMPLES = 2
# After a cut: no growth for this long, and no second cut for the same burst of trouble.
CALM = 1.0
# Trouble is weighed against what smaller windows met (`_Evidence`) once they carried this
# many requests; until then any 429 or 503 cuts.
_EVIDENCE_MIN = 20
# Counts by window are halved past this many requests, so old evidence fades.
_EVIDENCE_KEPT = 2000
# Below the window where a 429 was met, for this long; then probe above it. A knee (no more
# throughput, or a queue) is probed again sooner: a step past it costs a queue, not refusals.
PROBE_AFTER = 30.0
KNEE_PROBE_AFTER = 5.0
START_WINDOW = 2


class Trouble(Enum):
    """What a transfer met (`HostWindow.troubled`)."""

    TOO_MANY = "429"
    UNAVAILABLE = "503"
    BROKEN = "broken"  # a reset or refused connection, a timeout, a body cut short


@dataclass
class HostWindow:
    """How many transfers one origin gets at once (`--per-host auto`), found as TCP finds its
    window: a pure object fed what happened and when (the clock is passed in).

    - Slow start: from 2, doubles every other sample (0.08 s each: the first after a change
      only lets the new connections settle) while the window is used and a doubling brings a
      tenth more throughput (files or bytes per second); a doubling that brings nothing goes
      back (the knee).
    - Vegas brake: per-request times give the least median time of a sample (the base);
      window x base / this sample's median is what the server serves unqueued. Two queued
      samples in a row (over two, and over a quarter of the window, waiting) set the window
      to that plus two (`_knee`). Without usable timings (sizes spread them) growth past slow
      start is one connection per sample.
    - A 429 halves it (never below 1), once per burst (`CALM`), with a ceiling just below for
      `PROBE_AFTER`. A 503, reset, timeout or cut body cuts only when `_Evidence` says it is
      clearly likelier at this window than at smaller ones (a cut made before there was
      evidence is taken back if it proves to be noise). A `Retry-After` pauses the origin.
    - A knee is probed again after `KNEE_PROBE_AFTER`; never more than `cap` (`auto:MAX`,
      default `--jobs`)."""

    cap: int
    window: float = START_WINDOW
    adaptive: bool = True  # False: a fixed `--per-host N` (a Retry-After still pauses)
    in_flight: int = 0
    peak: int = 0
    slow_start: bool = True
    ceiling: float = math.inf  # no growth past it before `probe_at`
    probe_at: float = -math.inf
    calm_until: float = -math.inf
    paused_until: float = -math.inf
    # The sample under way, and the one before it.
    sample_start: float | None = None
    sample_done: int = 0
    sample_bytes: int = 0
    sample_trouble: int = 0
    sample_full: bool = False  # the window was all in use at some point of the sample
    # How long the sample's transfers took (seconds), and the least median a sample had:
    # the time a transfer takes when it waits for no other (TCP Vegas's base RTT).
    sample_took: list[float] = field(default_factory=list)
    base_took: float = math.inf
    queued_samples: int = 0
    settling: bool = False  # the sample under way follows a change: not judged
    last_rate: tuple[float, float] | None = None  # (files/s, bytes/s) at a smaller window
    last_window: int = 0
    # What ended at each size of window: trouble that is no likelier at a bigger window than at
    # a smaller one is the server's noise (random 503s), not a sign of too many connections.
    evidence: _Evidence = field(default_factory=lambda: _Evidence())
    # Why the window last changed, for `-v`.
    why: str = ""
    # The window before a cut that a 503 or resets made without evidence: restored once the
    # evidence shows that trouble as likely at smaller windows.
    undo: float | None = None
    # Counters for the summary.
    requests: int = 0
    refused: int = 0  # 429 and 503 answers
    broken: int = 0  # resets, refused connections, timeouts, cut bodies

    @property
    def limit(self) -> int:
        return max(1, min(self.cap, int(self.window)))

    def room(self, now: float) -> bool:
        return self.in_flight < self.limit and now >= self.paused_until

    def started(self, now: float) -> None:
        self.in_flight += 1
        self.requests += 1
        self.peak = max(self.peak, self.in_flight)
        if self.sample_start is None:  # a sample begins with the first transfer it sees
            self.sample_start = now
            self.sample_done = self.sample_bytes = self.sample_trouble = 0
            self.sample_took.clear()
        if self.in_flight >= self.limit:
            self.sample_full = True

    def arrived(self, size: int) -> None:
        if self.sample_start is not None:
            self.sample_bytes += size

    def released(self) -> None:
        """A transfer ended in a way that says nothing of the server (cancelled, a local
        error, a 404, a checksum)."""
        self.in_flight -= 1

    def unused(self) -> None:
        """A transfer given room ended before asking anything (its file was there)."""
        self.in_flight -= 1
        self.requests -= 1

    def finished(self, now: float, took: float | None = None, at: int | None = None) -> None:
        """A transfer ended well, after `took` seconds, sent when the window was `at`
        (None: not known)."""
        self.in_flight -= 1
        if self.sample_start is not None:
            self.sample_done += 1
            if took is not None and self.adaptive:
                self.sample_took.append(took)
        if self.adaptive:
            self.evidence.ended(at or self.limit, trouble=False)
        self._judge(now)

    def troubled(
        self,
        now: float,
        retry_after: float | None = None,
        kind: Trouble = Trouble.TOO_MANY,
        at: int | None = None,
    ) -> None:
        """A transfer met an overloaded or refusing server. A 429 says there were too many
        requests: it cuts, and growth stays below that window for `PROBE_AFTER`. A 503 may
        be a busy server or a flaky one, and resets, refused connections, timeouts and cut
        bodies come from flaky networks too: they cut only when they are clearly likelier at
        this window than at smaller ones (`_Evidence`); resets and the like only when they are
        also a good share of the sample (two or more, over `_TROUBLE_SHARE`)."""
        self.in_flight -= 1
        if kind is Trouble.BROKEN:
            self.broken += 1
        else:
            self.refused += 1
        self.sample_trouble += 1
        if retry_after is not None and now + retry_after > self.paused_until:
            self.paused_until = now + retry_after
            if retry_after >= SAMPLE:
                # A pause is not the window's doing: the sample begins again once it is over.
                self.sample_start = None
        if not self.adaptive:
            return
        sent_at = at or self.limit  # the window it was sent under is the one it speaks of
        self.evidence.ended(sent_at, trouble=True)
        if now < self.calm_until or self.limit <= 1 or not self._load(kind, sent_at):
            return  # the same burst (already cut), nothing to cut, or the server's noise
        if kind is Trouble.TOO_MANY or (
            kind is Trouble.UNAVAILABLE and self.evidence.known(sent_at)
        ):
            self.ceiling = max(1.0, self.window - 1)  # just below where trouble began
            self.probe_at = now + PROBE_AFTER
            self.undo = None
        else:
            self.undo = self.window  # taken back if the evidence says noise
        self.window = max(1.0, self.window / 2)
        self.why = (
            f"halved after a {kind.value}"
            if kind is not Trouble.BROKEN
            else ("halved after resets or timeouts")
        )
        self.slow_start = False
        self.calm_until = now + CALM
        self._restart_sample(now)
        self.last_rate = None
        self.settling = True

    def _load(self, kind: Trouble, window: int) -> bool:
        """Whether this trouble says `window` is too large."""
        if kind is Trouble.TOO_MANY:
            return True
        if not self.evidence.known(window):
            ended = self.sample_done + self.sample_trouble
            least = _SHARE_MIN if kind is Trouble.UNAVAILABLE else 2 * _SHARE_MIN
            if ended < least or self.sample_trouble <= _TROUBLE_SHARE * ended:
                return False  # no evidence yet: only a good share of a sample cuts
        return self.evidence.load(window)

    def summary(self) -> dict[str, int]:
        """What `--json`'s summary says of the origin."""
        return {
            "requests": self.requests,
            "refused": self.refused,
            "broken": self.broken,
            "connections": self.limit,
            "peak": self.peak,
        }

    def _judge(self, now: float) -> None:
        start = self.sample_start
        if start is None or now - start < SAMPLE or self.sample_done < _SAMPLE_MIN_DONE:
            return
        if not self.adaptive:
            return
        rate = (self.sample_done / (now - start), self.sample_bytes / (now - start))
        window, full, settling = self.limit, self.sample_full, self.settling
        knee = self._knee(window)
        self._restart_sample(now)
        self.settling = False
        if now >= self.calm_until and self._undone(now):
            return
        if not full or settling or now < self.calm_until or start < self.paused_until:
            return  # not limited by the window (too little work), just changed, calming, paused
        queued = knee is not None and window - knee > max(_QUEUED_MAX, window * _QUEUE_NOISE)
        self.queued_samples = self.queued_samples + 1 if queued else 0
        if knee is not None and self.queued_samples >= _QUEUED_SAMPLES:
            # Transfers wait on each other (two samples in a row: one may be a fluke of
            # sizes): the server (or the link) serves `knee` at once at full speed, and more
            # only queue. Keep a couple over it, as Vegas does.
            self.queued_samples = 0
            self.window = self.ceiling = float(knee + _QUEUED_MAX)
            self.why = f"{window} at once wait on each other: the server serves about {knee}"
            self.probe_at = now + KNEE_PROBE_AFTER
            self.slow_start = False
            self.settling = True
            return
        if queued:
            return  # one sample shows a queue: hold, and see the next
        if knee is not None:
            # The timings show no queue: more at once will be served as fast. (Comparing one
            # sample's throughput with the last one's is noisier: only without timings.)
            self._grow(now, window)
            return
        if self.slow_start and self.last_rate is not None and window > self.last_window:
            # Only a doubling is judged by throughput: a smaller step's gain is lost in a
            # sample's noise (stalls, sizes), and a wrong "no gain" would hold the window.
            files, size = self.last_rate
            if rate[0] < files * _WORTH_IT and rate[1] < size * _WORTH_IT:
                # The step brought nothing: the knee. Back to the smaller window, which
                # carried as much; probe above it again later.
                self.window = self.ceiling = float(self.last_window)
                self.why = f"back: {window} carried no more than {self.last_window}"
                self.probe_at = now + KNEE_PROBE_AFTER
                self.slow_start = False
                self.settling = True
                return
        self.last_rate, self.last_window = rate, window
        self._grow(now, window)

    def _grow(self, now: float, window: int) -> None:
        if now >= self.probe_at:
            self.ceiling = math.inf
        grown = window * 2 if self.slow_start else window + 1
        self.window = float(min(self.cap, max(window, min(grown, self.ceiling))))
        self.why = "doubled: more throughput" if self.slow_start else "one more: probing"
        self.settling = self.limit != window  # the next sample is a transition: not judged

    def _undone(self, now: float) -> bool:
        """Whether a cut made without evidence was taken back: the trouble that made it turned
        out as likely at the smaller window (flaky, not crowded)."""
        undo, self.undo = self.undo, None
        if undo is None:
            return False
        before = max(1, min(self.cap, int(undo)))
        if not self.evidence.known(before) or self.evidence.load(before):
            return False
        self.window = float(before)
        self.why = "back: the trouble was as likely with fewer at once"
        self.settling = True
        self.slow_start = True  # the cut was a mistake: grow as before it
        return True

    def _knee(self, window: int) -> int | None:
        """How many at once the server serves without making them wait, by Little's law:
        `window` x base time / this sample's median time (None: too few timings)."""
        took = self.sample_took
        if len(took) < _SAMPLE_MIN_DONE:
            return None
        took.sort()
        median = took[len(took) // 2]  # a stall or two must not look like a queue
        if took[len(took) * 3 // 4] > _SPREAD * took[len(took) // 4]:
            return None  # files of all sizes: their times say more of sizes than of queues
        self.base_took = min(self.base_took, median)
        if median <= 0:
            return None
        return max(1, math.floor(window * self.base_took / median + 0.5))

    def _restart_sample(self, now: float) -> None:
        self.sample_start = now if self.in_flight else None
        self.sample_done = self.sample_bytes = self.sample_trouble = 0
        self.sample_full = self.in_flight >= self.limit
        self.sample_took.clear()


class _Evidence:
    """Requests ended, and of them troubled (429, 503, resets...), by size of window (powers
    of two). Trouble at a window is load when so much of it would be unlikely (under 1%) even
    at twice the share seen at smaller windows (Poisson): load doubles trouble and more (a
    server refusing beyond N refuses none below it), while every trouble is a new test, so a
    loose test would take noise for load sooner or later."""

    __slots__ = ("_ended", "_trouble")

    def __init__(self) -> None:
        self._ended = [0] * 24
        self._trouble = [0] * 24

    def ended(self, window: int, *, trouble: bool) -> None:
        size = min(window.bit_length(), 23)
        self._ended[size] += 1
        self._trouble[size] += trouble
        if self._ended[size] > _EVIDENCE_KEPT:
            self._ended[size] //= 2
            self._trouble[size] //= 2

    def known(self, window: int) -> bool:
        """Whether smaller windows carried enough requests to compare with."""
        return sum(self._ended[: min(window.bit_length(), 23)]) >= _EVIDENCE_MIN

    def load(self, window: int) -> bool:
        """Whether the trouble met at `window` says it is too large: yes unless smaller
        windows carried enough requests to tell, and met as much trouble."""
        if not self.known(window):
            return True
        size = min(window.bit_length(), 23)
        smaller = sum(self._ended[:size])
        # The share at smaller windows, with one trouble granted (Laplace): none in 40
        # requests says little about a share of 2%.
        share = (sum(self._trouble[:size]) + 1) / (smaller + 2)
        expected = 2 * self._ended[size] * share
        return _unlikely(self._trouble[size], expected)


def _unlikely(count: int, expected: float) -> bool:
    """Whether P(X >= count) < 1% for X ~ Poisson(expected)."""
    if expected > 50:  # the normal approximation (and no underflow of exp)
        return count > expected + 2.33 * math.sqrt(expected) + 0.5
    term, below = math.exp(-expected), 0.0
    for seen in range(count):
        below += term
        term *= expected / (seen + 1)
    return 1.0 - below < 0.01


def host_window(per_host: int | str | None, jobs: int, split: int = 1) -> HostWindow | None:
    """The window a new origin starts with: adapted (`auto`, `auto:MAX`), fixed (a number),
    or None when there is no per-origin limit (the library's `per_host=None`). An adapted
    one starts at 2, or at `split` when more segments at once were asked for (`-s 8` is a
    request for 8 connections, as aria2c's `-x8`)."""
    if per_host is None:
        return None
    if isinstance(per_host, int):
        return HostWindow(cap=per_host, window=per_host, adaptive=False)
    cap = int(per_host[5:]) if per_host.startswith("auto:") else jobs
    return HostWindow(cap=cap, window=min(max(START_WINDOW, split), cap))


def is_overload(error: AiowgetError) -> bool:
    """What says an origin has more than it can take: a 429 or 503, a reset or refused
    connection, a timeout, a body cut short."""
    if isinstance(error, HTTPStatusError):
        return error.status in RETRY_AFTER_STATUSES
    return isinstance(error, NetworkError)


# Split downloads ---------------------------------------------------------------------------

MIN_SEGMENT = 1 << 20


def splittable(split: int, headers: Mapping[str, str], total: int | None) -> bool:
    """Worth fetching in `split` ranged segments: ranges accepted, size and validator known."""
    return (
        split > 1
        and total is not None
        and total >= 2 * MIN_SEGMENT
        and headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        and validator_of(headers) is not None
    )


def plan_segments(
    total: int, split: int, minimum: int = MIN_SEGMENT
) -> tuple[tuple[int, int, int], ...]:
    """`split` segments (fewer when they would be smaller than `minimum`) covering `total`
    bytes: (start, end inclusive, done=0)."""
    count = max(1, min(split, total // minimum))
    size = -(-total // count)
    return tuple((start, min(start + size, total) - 1, 0) for start in range(0, total, size))


def judge_segment(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    asked: tuple[int, int],
    state: PartState,
    now: datetime,
) -> Action:
    """APPEND when a 206 answers exactly the range `asked` of the same file; RESTART when the
    file changed or the range was not honoured (a 416: the file is shorter than planned).
    Other error statuses raise."""
    if status == 416:
        return Action.RESTART
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    check_status(status, reason, retry_after)
    answered = parse_content_range(headers.get("Content-Range"))
    if status != 206 or answered != ContentRange(asked[0], asked[1], state.total):
        return Action.RESTART
    return Action.APPEND if same_validator(headers, state.validator) else Action.RESTART

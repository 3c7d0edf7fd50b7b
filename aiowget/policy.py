"""Decisions about URLs and responses, as functions of their inputs. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import (
    AuthenticationError,
    ContentTooShortError,
    HTTPStatusError,
    InvalidURLError,
    ProtocolError,
)
from .text import printable, redact_url

__all__ = ["check_complete", "check_status", "check_url", "expected_length", "origin"]

SUPPORTED_SCHEMES = frozenset({"http", "https"})
_AUTHENTICATION_STATUSES = frozenset({401, 407})


def check_url(url: str) -> str:
    """`url` if it can be fetched, else `InvalidURLError` naming what is wrong with it."""
    shown = redact_url(url)
    if not url or url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidURLError(f"invalid URL {shown!r}: empty, or contains spaces or controls")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"invalid URL {shown!r}: {exc}") from None
    if parts.scheme.lower() not in SUPPORTED_SCHEMES:
        scheme = printable(parts.scheme) or "none"
        raise InvalidURLError(f"unsupported scheme {scheme!r} in {shown!r} (http and https only)")
    if not parts.hostname:
        raise InvalidURLError(f"invalid URL {shown!r}: no host")
    if port == 0:
        raise InvalidURLError(f"invalid URL {shown!r}: port 0")
    return url


def origin(url: str) -> str:
    """`scheme://host:port` of a checked URL: the key that per-host limits count against."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{parts.hostname}:{port}"


def check_status(status: int, reason: str) -> None:
    """Accept a final response of a plain GET: 2xx only; nothing is saved for the rest."""
    if 200 <= status < 300:
        return
    if status in _AUTHENTICATION_STATUSES:
        raise AuthenticationError(status, printable(reason))
    if status >= 400:
        raise HTTPStatusError(status, printable(reason))
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

"""Netscape cookies.txt (`--load-cookies`), as wget, curl (`-b`) and aria2c read it. Pure.

One cookie a line, seven fields separated by tabs:

    domain  include-subdomains  path  secure  expires  name  value
    .example.com  TRUE  /  FALSE  1767225600  sid  abc

`expires` is seconds since the epoch, 0 for a session cookie. Blank lines and `#` comments
are skipped, except `#HttpOnly_` which prefixes the domain of an HttpOnly cookie (curl and
browsers' exporters write it). The I/O (reading the file, filling aiohttp's cookie jar) is
the downloader's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

__all__ = ["FileCookie", "parse_cookies"]

_HTTP_ONLY = "#HttpOnly_"
_FLAGS = {"TRUE": True, "FALSE": False}
_FIELDS = 7
# The last second of year 9999, as far as dates go: a later expiry is "never", kept as that.
_LAST_EXPIRY = 253402300799


@dataclass(frozen=True)
class FileCookie:
    """One line of a cookies.txt. `domain` without its leading dot; `subdomains` False means
    host-only: sent to exactly that host. `expires` None: for the session."""

    domain: str
    subdomains: bool
    path: str
    secure: bool
    expires: int | None
    name: str
    value: str


def parse_cookies(text: str, now: float, source: str = "cookie file") -> list[FileCookie]:
    """The cookies of `text` still valid at `now` (expired ones dropped); `UsageError`
    naming `source` and the line of the first one that is not a cookie."""
    cookies = []
    # Lines end at LF (CRLF from Windows); not at the other breaks `splitlines` knows, which
    # a value may hold. A BOM (Windows exporters) is not part of the first domain.
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r").removeprefix(_HTTP_ONLY)
        if not line.strip() or line.startswith("#"):
            continue
        try:
            cookie = _cookie(line)
        except ValueError as error:
            raise UsageError(f"{source}, line {number}: {error}") from None
        if cookie.expires is None or cookie.expires > now:
            cookies.append(cookie)
    return cookies


def _cookie(line: str) -> FileCookie:
    fields = line.split("\t")
    if len(fields) != _FIELDS:
        raise ValueError(f"expected {_FIELDS} tab-separated fields, found {len(fields)}")
    domain, subdomains, path, secure, expires, name, value = fields
    if not path.startswith("/"):
        raise ValueError(f"the path {path!r} does not start with '/'")
    pair = name + value
    if not name or any(c in name for c in "=; ") or ";" in value or not _plain_ascii(pair):
        raise ValueError("a cookie's name or value holds a character a Cookie header cannot")
    seconds = expires.strip()
    if not seconds.isascii() or not seconds.isdigit():
        raise ValueError(f"the expiry {expires!r} is not a number of seconds")
    return FileCookie(
        domain=_host(domain),
        subdomains=_flag(subdomains),
        path=path,
        secure=_flag(secure),
        expires=min(int(seconds), _LAST_EXPIRY) or None,
        name=name,
        value=value,
    )


def _host(domain: str) -> str:
    """The host a request names: lower case, no leading or trailing dot, IDN in punycode."""
    host = domain.strip().lower().removeprefix(".").removesuffix(".")
    if not host or any(c.isspace() or c in "/;," or _controls(c) for c in host):
        raise ValueError(f"{domain!r} is not a host name")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{domain!r} is not a host name") from None


def _controls(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def _plain_ascii(text: str) -> bool:
    """What a Cookie header carries (RFC 6265): printable ASCII, spaces and tabs allowed."""
    return all(c == "\t" or " " <= c <= "~" for c in text)


def _flag(text: str) -> bool:
    flag = _FLAGS.get(text.strip().upper())
    if flag is None:
        raise ValueError(f"expected TRUE or FALSE, found {text!r}")
    return flag

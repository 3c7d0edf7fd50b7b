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
    for number, line in enumerate(text.splitlines(), 1):
        line = line.removeprefix(_HTTP_ONLY)
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
    domain = domain.strip().lower().removeprefix(".")
    if not domain or any(c.isspace() or c in "/;," for c in domain):
        raise ValueError(f"{domain!r} is not a host name")
    if not path.startswith("/"):
        raise ValueError(f"the path {path!r} does not start with '/'")
    if not name or any(c in name for c in "=; \r\n\0") or any(c in value for c in ";\r\n\0"):
        raise ValueError("a cookie's name or value holds a character a Cookie header cannot")
    seconds = expires.strip()
    if not seconds.isascii() or not seconds.isdigit():
        raise ValueError(f"the expiry {expires!r} is not a number of seconds")
    return FileCookie(
        domain=domain,
        subdomains=_flag(subdomains),
        path=path,
        secure=_flag(secure),
        expires=int(seconds) or None,
        name=name,
        value=value,
    )


def _flag(text: str) -> bool:
    flag = _FLAGS.get(text.strip().upper())
    if flag is None:
        raise ValueError(f"expected TRUE or FALSE, found {text!r}")
    return flag

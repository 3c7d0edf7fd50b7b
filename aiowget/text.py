"""Pure helpers that make untrusted text safe to show: escaped controls, masked passwords."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

__all__ = [
    "is_unsafe_char",
    "iso_time",
    "masked_header",
    "printable",
    "redact_url",
    "redact_urls",
    "scrub",
    "shorten",
    "shown_url",
]


def iso_time(when: datetime | None) -> str | None:
    """ISO 8601 in UTC with `Z`, to the second (what an HTTP date holds), as records show it."""
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


# Longer text is cut in messages: a 10 MB URL must not make a 10 MB line.
SHOWN_LENGTH = 300

# Categories that can move the cursor, reorder text or hide characters on a terminal.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def is_unsafe_char(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def printable(text: str) -> str:
    """`text` with every control, format or separator character escaped as `\\x..`/`\\u....`."""
    if text.isprintable():
        return text
    return "".join(_escape(char) if is_unsafe_char(char) else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shorten(text: str, limit: int = SHOWN_LENGTH) -> str:
    """`text`, cut to about `limit` characters (the middle goes: both ends are telling)."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]}[...]{text[-keep:]}"


def redact_url(url: str) -> str:
    """`url` with its credentials masked, for messages and reports; printable.

    Found without parsing the URL (a URL that no parser accepts is shown too): whatever sits
    between the scheme (`http://`, but also `http:/`, `//`, a full-width colon, or none) and
    the last `@` before the path is user information, quotes, spaces and all. `user:pw`
    becomes `user:***`; a lone user name, often a token (`https://TOKEN@host/`), becomes `***`.
    """
    return printable(_USERINFO.sub(_masked, redact_urls(url), count=1))


def shown_url(url: str) -> str:
    """`url` as a console line shows it: password masked, printable, cut when huge."""
    return shorten(redact_url(url))


# In a string known to be a URL: an optional scheme, then up to the last `@` before a `/`.
_USERINFO = re.compile(r"\A((?:[^/@:\uff1a]*[:\uff1a])?/{0,2})([^/]*)@(?=[^/@]*(?:/|\Z))")

# In free text (a library's error message): scheme://, then up to the last `@` before the
# path or a space.
_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s]*)@")


# A password holding a raw `/` (`user:pa/ss@host`): a colon not followed by a port.
_SLASHED_PASSWORD = re.compile(
    r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s'\"@:]*:(?!\d*(?:[/?#\s'\"]|$))[^\s'\"@]*)@"
)


# A `user:password@host` that a malformed Location (`http:\\u:pw@h/`, `http:u:pw@h/`) left in
# a path, where a client follows it as a relative reference.
_PATH_USERINFO = re.compile(r"((?:[/\\]|%5[cC])[^/\\\s@:%]+:)([^/\\\s@]+)@")


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it masked (see `redact_url`)."""
    masked = _SLASHED_PASSWORD.sub(_masked, _CREDENTIALS.sub(_masked, text))
    return _PATH_USERINFO.sub(_masked_in_path, masked)


def _masked_in_path(match: re.Match[str]) -> str:
    return match.group(0) if match.group(2) == "***" else f"{match.group(1)}***@"


def scrub(text: str, url: str) -> str:
    """`text` (a parser's complaint about `url`) with `url`'s secrets masked wherever they
    appear, quoted alone or inside a netloc."""
    for pattern in (_USERINFO, _CREDENTIALS, _SLASHED_PASSWORD):
        for match in pattern.finditer(url):
            user, colon, password = match.group(2).partition(":")
            secret = password if colon else user
            # A parser stops a password at `?`, `#` or `/`: its complaint quotes that part.
            for part in (secret, re.split(r"[?#/]", secret)[0]):
                if part and part != "***":
                    text = text.replace(part, "***")
    return redact_urls(text)


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    if user == "***" or (colon and _ == "***"):
        return match.group(0)  # masked already
    return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"


# Headers whose values are credentials. Authorization-like values keep their scheme (`Basic`,
# `Bearer`: worth seeing when debugging), cookies keep their names and attributes.
_AUTHORIZATION = frozenset({"authorization", "proxy-authorization"})
# Names that, by custom, carry a secret of their own (`X-Api-Key`, `X_API_KEY`,
# `X-Auth-Token`, `X-Authorization`); the challenges a server sends are not secrets.
_SECRET_NAME = re.compile(
    r"token|secret|api[-_]?key|passw|session|auth|credential|signature", re.IGNORECASE
)
_CHALLENGES = frozenset({"www-authenticate", "proxy-authenticate"})
# Headers whose value is one URL, maybe relative or scheme-relative (`//user:pw@host/`).
_URL_VALUED = frozenset({"location", "content-location", "referer"})


def masked_header(name: str, value: str) -> str:
    """`value` of header `name` as a log may show it: credentials masked, and passwords in
    any URL it holds (`Location`, `Referer`) too."""
    lower = name.lower()
    if lower in _AUTHORIZATION:
        scheme, space, _ = value.partition(" ")
        return f"{scheme} ***" if space else "***"
    if lower == "cookie":
        return "; ".join(_masked_pair(pair) for pair in value.split(";"))
    if lower == "set-cookie":
        pair, semicolon, attributes = value.partition(";")
        return f"{_masked_pair(pair)}{semicolon}{redact_urls(attributes)}"
    if lower in _URL_VALUED:
        return _USERINFO.sub(_masked, redact_urls(value), count=1)
    if lower not in _CHALLENGES and _SECRET_NAME.search(name):
        return "***"
    return redact_urls(value)


def _masked_pair(pair: str) -> str:
    """`name=value` as `name=***` (a bare value, with no name, is all secret)."""
    name, equals, _ = pair.strip().partition("=")
    return f"{name}=***" if equals else "***"

"""Pure helpers that make untrusted text safe to show: escaped controls, masked passwords."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

__all__ = ["is_unsafe_char", "printable", "redact_url", "redact_urls", "shorten", "shown_url"]

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
    """`url` with its password replaced by `***`, for messages and reports; printable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return printable(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return printable(url)
    user = userinfo.split(":", 1)[0]
    return printable(urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}")))


def shown_url(url: str) -> str:
    """`url` as a console line shows it: password masked, printable, cut when huge."""
    return shorten(redact_url(url))


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")


def redact_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _CREDENTIALS.sub(r"\1***@", text)

"""URL or Content-Disposition -> a safe file name inside the target directory. Pure.

Every name made here is a single path component (no `/`, `\\`, NUL or other control character),
never empty, `.` or `..`, never `WORK_DIR` (the folder of working files beside the final ones),
and at most `NAME_LIMIT` bytes of UTF-8, which leaves room under the 255-byte limit of common
file systems for the `.part` and `.meta` suffixes of its working files. The same URL always
gives the same name; `NameRegistry` keeps names unique within a run.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from urllib.parse import SplitResult, unquote, urlsplit

from .text import is_unsafe_char

__all__ = [
    "NAME_LIMIT",
    "WORK_DIR",
    "NameRegistry",
    "basename_name",
    "disposition_name",
    "fit_length",
    "flat_name",
    "numbered_names",
    "safe_name",
]

MAX_NAME_BYTES = 255
# ".part" and a sidecar suffix must still fit after the final name.
NAME_LIMIT = MAX_NAME_BYTES - 16
# Working files (`NAME.part`, `NAME.meta`) live in this folder beside the final files: a
# namespace of their own, so that no final name can ever meet another download's working file.
WORK_DIR = ".aiowget"
DEFAULT_BASENAME = "index.html"
_HASH_CHARS = 8
_MAX_EXTENSION_BYTES = 16


def flat_name(url: str) -> str:
    """The original scheme: host (with port) then the path, `/` replaced by `__`.

    `http://example.com/a/b.txt` -> `example.com__a__b.txt`; scheme, user info, query and
    fragment do not appear.
    """
    parts = urlsplit(url)
    segments = [_segment(segment) for segment in parts.path.split("/")]
    # An absolute path splits into a leading "" that turns into the first "__".
    name = _host_port(parts) + "__".join(segments)
    return fit_length(name)


def basename_name(url: str) -> str:
    """wget's default: the last path segment, or `index.html` for a directory."""
    last = _segment(urlsplit(url).path.rsplit("/", 1)[-1])
    if last in ("", ".", ".."):
        return DEFAULT_BASENAME
    return fit_length(_unreserved(last))


def disposition_name(header: str) -> str | None:
    """The sanitized file name a Content-Disposition header suggests, or None.

    `filename*` (RFC 5987) wins over `filename` (RFC 6266); only the last path component is
    kept, and leading dots are dropped so that a server cannot plant a hidden file.
    """
    params: dict[str, str] = {}
    for key, value in _DISPOSITION_PARAM.findall(header):
        params.setdefault(key.lower(), _unquote_param(value.strip()))
    raw = _decode_extended(params.get("filename*", "")) or params.get("filename")
    if not raw:
        return None
    return safe_name(raw.replace("\\", "/").rsplit("/", 1)[-1], from_server=True)


_DISPOSITION_PARAM = re.compile(r';\s*([!#$&+.^`|~\w-]+\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _unquote_param(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _decode_extended(value: str) -> str | None:
    """RFC 5987 `charset'language'percent-encoded`, or None when it is not that."""
    charset, _, rest = value.partition("'")
    _language, quote, encoded = rest.partition("'")
    if not quote:
        return None
    try:
        return unquote(encoded, encoding=charset, errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def safe_name(raw: str, *, from_server: bool = False) -> str | None:
    """`raw` as one safe path component, or None when nothing usable is left."""
    name = _escape(raw.replace("/", "%2F").replace("\\", "%5C")).strip()
    if from_server:
        name = name.lstrip(".")
    if name in ("", ".", ".."):
        return None
    return fit_length(_unreserved(name))


def fit_length(name: str, limit: int = NAME_LIMIT) -> str:
    """`name` cut to `limit` bytes, keeping its extension, with a short hash of the whole
    name so that two long names sharing a prefix stay apart."""
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > _MAX_EXTENSION_BYTES:
        stem, suffix = name, ""
    tag = "~" + hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
    room = limit - len(tag.encode()) - len(suffix.encode())
    cut = stem.encode()[:room].decode(errors="ignore")
    return cut + tag + suffix


def disambiguate(name: str, key: str) -> str:
    """`name` with a short hash of `key` (the URL) before its extension: stable across runs."""
    tag = "~" + hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]
    return _insert_before_extension(name, tag)


def numbered_names(name: str) -> Iterator[str]:
    """`name.1`, `name.2`, ... as wget numbers a file that is already there."""
    for number in itertools.count(1):
        yield fit_length(f"{name}.{number}")


class NameRegistry:
    """The names claimed in one run, so that two URLs never write the same file.

    The first URL to claim a name gets it as is; a different URL mapping to the same name gets
    the name with a hash of its URL, so the outcome does not depend on timing and a rerun of
    the same list finds its files again.
    """

    def __init__(self) -> None:
        # Hashes, not strings: a run of millions of URLs keeps ~100 bytes per URL here. Python's
        # 64-bit string hash is fixed within a run, which is all this needs; a collision could
        # only give a URL a hashed name it did not need.
        self._owners: dict[int, int] = {}
        # Whether the last `claim` gave out a name never claimed before in this run (so no
        # file of this run can be under it yet).
        self.last_new = False

    def claim(self, name: str, key: str, batch: int = 0) -> tuple[str, bool]:
        """A name for `key` based on `name`, and whether `key` already held it in the same
        `batch` (one list of URLs; 0 is a call on its own, never a repeat): the same URL twice
        in one list is a duplicate, to be fetched once."""
        candidates = itertools.chain(
            (name, disambiguate(name, key)),
            (disambiguate(name, f"{key}#{n}") for n in itertools.count(1)),
        )
        owner_key = hash(key)
        entry = (owner_key << _BATCH_BITS) | (batch & _BATCH_MASK)
        for candidate in candidates:
            owner = self._owners.get(hash(candidate))
            if owner is None:
                self._owners[hash(candidate)] = entry
                self.last_new = True
                return candidate, False
            if owner >> _BATCH_BITS == owner_key:
                self.last_new = False
                if batch:  # a call on its own leaves the list it belongs to undisturbed
                    self._owners[hash(candidate)] = entry
                return candidate, batch != 0 and owner == entry
        raise AssertionError("unreachable")  # pragma: no cover

    def is_taken(self, name: str) -> bool:
        return hash(name) in self._owners


# A registry entry is the owner URL's hash with the batch (list) it was last claimed in.
_BATCH_BITS = 32
_BATCH_MASK = (1 << _BATCH_BITS) - 1


def _unreserved(name: str) -> str:
    """The working folder's name is never a final name: its dot is escaped, as in a URL."""
    return "%2E" + name[1:] if name == WORK_DIR else name


def _host_port(parts: SplitResult) -> str:
    hostport = parts.netloc.rpartition("@")[2]
    return _segment(hostport.lower())


def _segment(raw: str) -> str:
    """One URL path segment, percent-decoded for readability, with separators and controls
    re-escaped so it stays one harmless component."""
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        decoded = raw
    return _escape(decoded.replace("/", "%2F").replace("\\", "%5C"))


def _escape(text: str) -> str:
    if text.isprintable():  # every unsafe category is unprintable: the usual, fast case
        return text
    return "".join(
        "".join(f"%{byte:02X}" for byte in char.encode(errors="surrogatepass"))
        if is_unsafe_char(char)
        else char
        for char in text
    )


def _insert_before_extension(name: str, tag: str) -> str:
    stem, _, extension = name.rpartition(".")
    if stem and len(extension.encode()) <= _MAX_EXTENSION_BYTES:
        return fit_length(f"{stem}{tag}.{extension}", NAME_LIMIT)
    return fit_length(name + tag, NAME_LIMIT)

"""URL or Content-Disposition -> a safe file name inside the target directory. Pure.

Every name made here is a single path component (no `/`, `\\`, NUL or other control character),
never empty, `.` or `..`, never `WORK_DIR` (the folder of working files beside the final ones),
and at most `NAME_LIMIT` bytes of UTF-8, which leaves room under the 255-byte limit of common
file systems for the `.part` and `.meta` suffixes of its working files. The same URL always
gives the same name; `NameRegistry` keeps names unique within a run.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
import sys
from array import array
from collections.abc import Callable, Iterator
from urllib.parse import SplitResult, unquote, urlsplit

from .text import is_unsafe_char

__all__ = [
    "NAME_LIMIT",
    "WORK_DIR",
    "NameRegistry",
    "basename_name",
    "claim_tree",
    "disposition_name",
    "fit_length",
    "flat_name",
    "numbered_names",
    "safe_name",
    "tree_parts",
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


def tree_parts(url: str) -> tuple[str, ...]:
    """wget -x: `(host[:port], folder, ..., file)`; a directory URL's file is `index.html`.

    Dot segments are resolved as RFC 3986 (and yarl, which sends the request) resolves them,
    percent-encoded ones (`%2e%2e`) too, so the path on disk is the one asked for and nothing
    climbs above the host's folder. Empty segments (`a//b`) are dropped. Each part is one
    component as `flat_name` makes them, at most `NAME_LIMIT` bytes.
    """
    parts = urlsplit(url)
    folders: list[str] = []
    segments = parts.path.split("/")[1:] if parts.path else [""]
    for raw in segments[:-1]:
        _step(folders, _segment(raw))
    last = _segment(segments[-1])
    if last in (".", ".."):
        _step(folders, last)
        last = ""
    host = _tree_component(_host_port(parts) or "%00")
    return (host, *folders, _tree_component(last or DEFAULT_BASENAME))


def _step(folders: list[str], segment: str) -> None:
    """One folder segment: `..` climbs (never above the host), `.` and empty stay put."""
    if segment == "..":
        if folders:
            folders.pop()
    elif segment not in ("", "."):
        folders.append(_tree_component(segment))


def _tree_component(segment: str) -> str:
    """One folder or file name of a tree; never `.` or `..`, whatever it came from (a host
    too: `http://../x` would climb out of the target)."""
    component = fit_length(_unreserved(segment))
    return component.replace(".", "%2E") if component in (".", "..") else component


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


_MASK = (1 << 64) - 1
# Odd, so a URL's hash times it keeps all its bits; and a URL spelled like a name does not
# cancel that name's hash out of the owner word.
_OWNER_MIX = 0x9E3779B97F4A7C15
# A name's 64-bit hash: bits 63..56 only ever pick its region; 55..24 are its head and 23..8
# its tail, both stored. A split of the regions takes the next bit of the heads as well.
_BASE_DEPTH = 8
_HEAD_SHIFT, _HEAD_MASK = 24, (1 << 32) - 1
_TAIL_SHIFT, _TAIL_MASK = 8, (1 << 16) - 1
_REGION_LIMIT = 256  # entries per region on average before all split in two: short shifts
_REACH = 16  # regions a full one looks through, each way, for free slots to take
_MIN_ROOM = 4  # free slots each region gets at least when they are shared out
_ROOM_SHARE = 64  # the arrays grow when under 1/64 would be free (and round up 1/16 more)
_GROWTH_STEP = 1 << 16  # bytes: the arrays grow a step at a time, never by one big copy


class NameRegistry:
    """The names claimed in one run, so that two URLs never write the same file.

    The first URL to claim a name gets it as is; a different URL mapping to the same name gets
    the name with a hash of its URL, so the outcome does not depend on timing and a rerun of
    the same list finds its files again.

    A run may claim tens of millions of names, so no name or URL is kept: 14 bytes of hashes
    per name, about 15 with the free slots (benchmarks/bench_registry.py).

    - A name is known by 56 bits of its 64-bit `hash()`: the top 8 pick its region and 48 are
      stored. Two names alike in those 56 bits count as one, and the later one gets a hashed
      name it did not need: odds of about n**2 / 2**57 in a run of n names (7e-4 for
      10,000,000); never two URLs in one file.
    - Its owner is a 64-bit word, `hash(name) ^ (hash(URL) * odd) ^ batch`: which URL holds the
      name, and in which list it last claimed it. Another URL passes for the owner only if
      that word, read back with its own hashes, gives a batch seen: odds of (batches seen) /
      2**64 each time it meets a name held. That mistake would skip a URL as a repeat or let
      two URLs write one file: hence all 64 bits for the owner.

    `hash()` (SipHash, keyed per process) rather than a digest such as blake2b: it runs in C,
    is cached on the URL's string, and only has to hold within the run; the names given out
    come from sha256 (`disambiguate`) and are stable across runs. `hasher` and `region_limit`
    are for tests.

    Layout: three arrays in step (heads, tails, owner words), cut into regions by the top bits
    of the hash; in a region the entries are sorted by head and followed by free slots. A few
    big arrays rather than arrays per region: many small growing buffers leave the allocator
    holes worth 15-20% more (a peak RSS of 17 bytes per name instead of 15 at 10,000,000).
    """

    def __init__(
        self, *, hasher: Callable[[str], int] = hash, region_limit: int = _REGION_LIMIT
    ) -> None:
        self._hash = hasher
        regions = 1 << _BASE_DEPTH
        self._shift = 64 - _BASE_DEPTH  # a name's region is its hash shifted right this far
        self._heads = array("I", bytes(4 * regions * _MIN_ROOM))
        self._tails = array("H", bytes(2 * regions * _MIN_ROOM))
        self._words = array("Q", bytes(8 * regions * _MIN_ROOM))
        # Region r holds `_counts[r]` entries from `_starts[r]`, and room up to `_starts[r + 1]`.
        self._starts = array("Q", range(0, (regions + 1) * _MIN_ROOM, _MIN_ROOM))
        self._counts = array("I", bytes(4 * regions))
        self._count = 0
        self._split_at = region_limit << _BASE_DEPTH  # entries
        self._batches: set[int] = set()  # every batch seen, to tell an owner in another list
        # Whether the last `claim` gave out a name never claimed before in this run (so no
        # file of this run can be under it yet).
        self.last_new = False

    def claim(self, name: str, key: str, batch: int = 0, folder: str = "") -> tuple[str, bool]:
        """A name for `key` based on `name`, and whether `key` already held it in the same
        `batch` (one list of URLs; 0 is a call on its own, never a repeat): the same URL twice
        in one list is a duplicate, to be fetched once. `folder` (`--naming tree`: a relative
        path ending in `/`) is where the name is: names are held with it, and only the name
        itself changes when it is taken."""
        batch &= _MASK
        self._batches.add(batch)
        owner = (self._hash(key) * _OWNER_MIX) & _MASK
        held = self._hold(folder + name, owner, batch)
        if held is not None:  # the usual case: no other URL had the name
            return name, held
        for candidate in _alternatives(name, key):
            held = self._hold(folder + candidate, owner, batch)
            if held is not None:
                return candidate, held
        raise AssertionError("unreachable")  # pragma: no cover

    def is_taken(self, name: str) -> bool:
        return self._find(self._hash(name) & _MASK)[2]

    def __sizeof__(self) -> int:
        parts = (self._heads, self._tails, self._words, self._starts, self._counts)
        held = (*parts, self._batches, vars(self))
        return object.__sizeof__(self) + sum(map(sys.getsizeof, held))

    def _hold(self, name: str, owner: int, batch: int) -> bool | None:
        """Claim `name` for `owner`: None when another URL holds it, else whether `owner`
        held it already in this `batch` (> 0)."""
        code = self._hash(name) & _MASK
        region, index, found = self._find(code)
        if found:
            return self._hold_again(index, code ^ owner, batch)
        end = self._starts[region] + self._counts[region]
        if end == self._starts[region + 1]:
            self._make_room(region)
            return self._hold(name, owner, batch)  # entries moved: look again
        heads, tails, words = self._heads, self._tails, self._words
        heads[index + 1 : end + 1] = heads[index:end]
        heads[index] = (code >> _HEAD_SHIFT) & _HEAD_MASK
        tails[index + 1 : end + 1] = tails[index:end]
        tails[index] = (code >> _TAIL_SHIFT) & _TAIL_MASK
        words[index + 1 : end + 1] = words[index:end]
        words[index] = code ^ owner ^ batch
        self._counts[region] += 1
        self._count += 1
        if self._count > self._split_at and self._shift > _HEAD_SHIFT:
            self._split()
        self.last_new = True
        return False

    def _hold_again(self, index: int, pair: int, batch: int) -> bool | None:
        """`_hold` for a name with an entry at `index`, `pair` being its hash ^ the owner's."""
        held_in = self._words[index] ^ pair
        if held_in not in self._batches:  # another URL: a random word, not a batch
            return None
        self.last_new = False
        if batch:  # a call on its own leaves the list it belongs to undisturbed
            self._words[index] = pair ^ batch
        return batch != 0 and held_in == batch

    def _find(self, code: int) -> tuple[int, int, bool]:
        """The region of the name hashed to `code`, the index of its entry (or where it
        goes), and whether it is there."""
        region = code >> self._shift
        start = self._starts[region]
        end = start + self._counts[region]
        heads, head = self._heads, (code >> _HEAD_SHIFT) & _HEAD_MASK
        index = bisect.bisect_left(heads, head, start, end)
        while index < end and heads[index] == head:  # two heads alike: rare
            if self._tails[index] == (code >> _TAIL_SHIFT) & _TAIL_MASK:
                return region, index, True
            index += 1
        return region, index, False

    def _split(self) -> None:
        """Every region in two, by the next bit of the hash (the first bit of the heads that
        the region does not fix yet). No entry moves to split; then, as the lower halves have
        no free slots, all get a new share."""
        starts, counts = array("Q"), array("I")
        self._shift -= 1
        self._split_at *= 2
        for region, count in enumerate(self._counts):
            start = self._starts[region]
            first_upper = (((2 * region + 1) << self._shift) >> _HEAD_SHIFT) & _HEAD_MASK
            cut = bisect.bisect_left(self._heads, first_upper, start, start + count) - start
            starts.extend((start, start + cut))
            counts.extend((cut, count - cut))
        starts.append(self._starts[-1])
        self._starts, self._counts = starts, counts
        self._spread()

    def _make_room(self, region: int) -> None:
        """Free slots for a full region: half those of the nearest region within `_REACH`
        after it (the entries between move right) or before it (they move left), or else a
        new share for every region."""
        starts, counts = self._starts, self._counts
        for lender in range(region + 1, min(region + _REACH, len(counts) - 1) + 1):
            room = starts[lender + 1] - starts[lender] - counts[lender]
            if room >= 2:
                first, end = starts[region + 1], starts[lender] + counts[lender]
                self._move(first, first + room // 2, end - first)
                for moved in range(region + 1, lender + 1):
                    starts[moved] += room // 2
                return
        for lender in range(region - 1, max(region - _REACH, 0) - 1, -1):
            room = starts[lender + 1] - starts[lender] - counts[lender]
            if room >= 2:
                first, end = starts[lender + 1], starts[region] + counts[region]
                self._move(first, first - room // 2, end - first)
                for moved in range(lender + 1, region + 1):
                    starts[moved] -= room // 2
                return
        self._spread()

    def _spread(self) -> None:
        """The free slots shared out again, in proportion to the regions' entries, over at
        least `_MIN_ROOM` each; first the arrays grow if under 1/`_ROOM_SHARE` would be free.
        Entries move left from the first region on, then right from the last one on, so
        none is written over before it has moved."""
        counts, regions = self._counts, len(self._counts)
        wanted = self._count + self._count // _ROOM_SHARE + _MIN_ROOM * regions
        if len(self._heads) < wanted:
            self._grow(wanted)
        room = len(self._heads) - self._count - _MIN_ROOM * regions
        entries = max(self._count, 1)
        sizes = [count + _MIN_ROOM + room * count // entries for count in counts]
        sizes[-1] += len(self._heads) - sum(sizes)
        old, new = self._starts, array("Q", itertools.accumulate(sizes, initial=0))
        self._starts = new
        for region in range(regions):
            if new[region] < old[region]:
                self._move(old[region], new[region], counts[region])
        for region in reversed(range(regions)):
            if new[region] > old[region]:
                self._move(old[region], new[region], counts[region])

    def _move(self, source: int, target: int, count: int) -> None:
        if count:
            for field in (self._heads, self._tails, self._words):
                field[target : target + count] = field[source : source + count]

    def _grow(self, length: int) -> None:
        """The arrays made at least `length` long, then as long as the memory they got: the
        arrays round a growth up (by 1/16 in CPython), and that becomes free slots too."""
        fields = (self._heads, self._tails, self._words)
        for field in fields:
            _extend(field, length)
        allocated = min(
            (sys.getsizeof(field) - _EMPTY_SIZE[field.typecode]) // field.itemsize
            for field in fields
        )
        for field in fields:
            _extend(field, allocated)


def claim_tree(
    registry: NameRegistry, parts: tuple[str, ...], key: str, batch: int = 0
) -> tuple[str, bool]:
    """`claim` for `tree_parts`: the relative path (`/`-separated) and whether a duplicate.

    Every folder on the way is claimed too, by the folder itself (a key no URL can be: it has
    a NUL), so a file and a folder never share a path: whichever comes second in the run
    gets the usual `~HASH`, a file for its URL, a folder for its own path (every URL below it
    agrees on that). `registry.last_new` then tells about the file."""
    folder = ""
    for part in parts[:-1]:
        name, _ = registry.claim(part, _FOLDER_KEY + folder + part, 0, folder)
        folder += name + "/"
    name, duplicate = registry.claim(parts[-1], key, batch, folder)
    return folder + name, duplicate


_FOLDER_KEY = "\0folder:"


def _extend(field: array[int], length: int) -> None:
    """`field` grown to `length` with zeros, a step at a time: no copy of the whole growth."""
    while len(field) < length:
        field.frombytes(bytes(min(_GROWTH_STEP, (length - len(field)) * field.itemsize)))


_EMPTY_SIZE = {code: sys.getsizeof(array(code)) for code in "IHQ"}


def _alternatives(name: str, key: str) -> Iterator[str]:
    """The names a URL tries after `name`, held by another URL: stable across runs."""
    yield disambiguate(name, key)
    for number in itertools.count(1):
        yield disambiguate(name, f"{key}#{number}")


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

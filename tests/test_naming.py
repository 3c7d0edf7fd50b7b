"""naming.py is pure: plain tables, no event loop, no file system."""

from __future__ import annotations

import hashlib
import itertools
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiowget.naming import (
    NAME_LIMIT,
    NameRegistry,
    basename_name,
    disambiguate,
    disposition_name,
    fit_length,
    flat_name,
    numbered_names,
    safe_name,
)
from aiowget.text import is_unsafe_char


@pytest.mark.parametrize(
    ("url", "name"),
    [
        # The original program's scheme.
        ("http://smherwig.org", "smherwig.org"),
        ("http://example.com/a/b.txt", "example.com__a__b.txt"),
        ("http://example.com/dir/", "example.com__dir__"),
        ("http://example.com/", "example.com__"),
        # Port kept; scheme, user info, query and fragment dropped; host lower-cased.
        ("https://example.com:8443/x", "example.com:8443__x"),
        ("http://user:secret@Example.COM/f?q=1#top", "example.com__f"),
        ("http://[::1]:8080/f", "[::1]:8080__f"),
        # Percent-decoded for readability, but separators and controls stay escaped.
        ("http://e.com/hello%20world.txt", "e.com__hello world.txt"),
        ("http://e.com/a%2Fb", "e.com__a%2Fb"),
        ("http://e.com/a%5Cb", "e.com__a%5Cb"),
        ("http://e.com/..%2F..%2Fetc%2Fpasswd", "e.com__..%2F..%2Fetc%2Fpasswd"),
        ("http://e.com/nul%00byte", "e.com__nul%00byte"),
        ("http://e.com/esc%1B[31mred", "e.com__esc%1B[31mred"),
        ("http://e.com/rtl%E2%80%AEtxt.exe", "e.com__rtl%E2%80%AEtxt.exe"),
        ("http://e.com/bad%FFutf8", "e.com__bad%FFutf8"),
        ("http://e.com/%C3%A9t%C3%A9", "e.com__été"),
        # Dot segments cannot climb: the result is one flat component.
        ("http://e.com/../../etc/passwd", "e.com__..__..__etc__passwd"),
        ("http://e.com//double", "e.com____double"),
    ],
)
def test_flat_name(url: str, name: str) -> None:
    assert flat_name(url) == name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://e.com/a/b.txt", "b.txt"),
        ("http://e.com/a/b.txt?x=1", "b.txt"),
        ("http://e.com/dir/", "index.html"),
        ("http://e.com", "index.html"),
        ("http://e.com/a/..", "index.html"),
        ("http://e.com/a/.", "index.html"),
        ("http://e.com/%2E%2E", "index.html"),
        ("http://e.com/a%2F..%2Fb", "a%2F..%2Fb"),
        ("http://e.com/.hidden", ".hidden"),
    ],
)
def test_basename_name(url: str, name: str) -> None:
    assert basename_name(url) == name


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("attachment; filename=\"fallback.txt\"; filename*=UTF-8''real.txt", "real.txt"),
        ('attachment; filename="/etc/passwd"', "passwd"),
        ('attachment; filename="..\\\\..\\\\win.ini"', "win.ini"),
        ("attachment; filename*=UTF-8''..%2F..%2Fescape", "escape"),
        ("attachment; filename*=UTF-8''a%00b", "a%00b"),
        ('attachment; filename=".profile"', "profile"),
        ('attachment; filename="...x"', "x"),
        ('attachment; filename=".."', None),
        ('attachment; filename="dir/"', None),
        ('attachment; filename=""', None),
        ("attachment", None),
        ("attachment; filename*=bogus''%FF", None),
    ],
)
def test_disposition_name(header: str, name: str | None) -> None:
    assert disposition_name(header) == name


@pytest.mark.parametrize(
    ("raw", "from_server", "name"),
    [
        ("ok.txt", False, "ok.txt"),
        ("a/b", False, "a%2Fb"),
        ("a\\b", True, "a%5Cb"),
        ("line\nbreak", False, "line%0Abreak"),
        (" padded ", False, "padded"),
        (".dotfile", False, ".dotfile"),
        (".dotfile", True, "dotfile"),
        (".", False, None),
        ("..", False, None),
        ("", False, None),
    ],
)
def test_safe_name(raw: str, from_server: bool, name: str | None) -> None:
    assert safe_name(raw, from_server=from_server) == name


@pytest.mark.parametrize(
    "name",
    ["a" * 1000 + ".tar.gz", "é" * 300 + ".txt", "x" * 500, "a" * 300 + "." + "b" * 40],
)
def test_long_names_are_cut_keeping_the_extension(name: str) -> None:
    cut = fit_length(name)

    assert len(cut.encode()) <= NAME_LIMIT
    assert fit_length(name) == cut  # deterministic
    assert fit_length(name + "y") != cut  # a hash keeps long names apart
    if len(name.rpartition(".")[2]) < 16:
        assert cut.endswith("." + name.rpartition(".")[2])


def test_flat_names_of_long_urls_fit_and_stay_apart() -> None:
    base = "http://e.com/" + "d/" * 300
    one, two = flat_name(base + "one.bin"), flat_name(base + "two.bin")

    assert one != two
    assert max(len(one.encode()), len(two.encode())) <= NAME_LIMIT
    assert one.endswith(".bin")


HOSTILE_URLS = [
    "http://e.com/%00%01%02%7F",
    "http://e.com/%E2%80%A8%E2%80%A9",
    "http://e.com/" + "%F0%9F%98%80" * 200,
    "http://e.com/\u202egnp.exe",
    "http://e.com/a\\..\\..\\b",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
@pytest.mark.parametrize("make", [flat_name, basename_name])
def test_every_name_is_one_safe_component(url: str, make: object) -> None:
    assert callable(make)
    name = make(url)

    assert isinstance(name, str)
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert not any(is_unsafe_char(c) for c in name)
    assert len(name.encode()) <= NAME_LIMIT


def test_numbered_names_follow_wget() -> None:
    names = numbered_names("f.txt")

    assert [next(names) for _ in range(3)] == ["f.txt.1", "f.txt.2", "f.txt.3"]


def test_registry_keeps_names_unique_and_stable() -> None:
    registry = NameRegistry()

    first = registry.claim("f.txt", "http://a/f.txt?1")
    second = registry.claim("f.txt", "http://a/f.txt?2")
    third = registry.claim("f.txt", "http://a/f.txt?3")

    assert first == ("f.txt", False)
    assert second[0] != "f.txt"
    assert second[0].endswith(".txt")
    assert not second[1]
    assert len({first[0], second[0], third[0]}) == 3
    # A second registry (a rerun) gives the same URL the same name.
    again = NameRegistry()
    again.claim("f.txt", "http://a/f.txt?1")
    assert again.claim("f.txt", "http://a/f.txt?2") == second


def test_registry_reports_a_duplicate_url_within_one_list() -> None:
    registry = NameRegistry()
    registry.claim("f", "http://a/f?1", batch=1)
    registry.claim("f", "http://a/f?2", batch=1)

    assert registry.claim("f", "http://a/f?1", batch=1) == ("f", True)
    assert registry.claim("f", "http://a/f?2", batch=1)[1] is True
    assert registry.is_taken("f")
    assert not registry.is_taken("g")
    # Another list, or a call on its own (batch 0), asks again: the same name, no duplicate.
    assert registry.claim("f", "http://a/f?1", batch=2) == ("f", False)
    assert registry.claim("f", "http://a/f?1", batch=2) == ("f", True)
    assert registry.claim("f", "http://a/f?1") == ("f", False)
    assert registry.claim("f", "http://a/f?1") == ("f", False)


def test_registry_survives_a_hash_collision() -> None:
    registry = NameRegistry()
    taken = registry.claim("f", "u1")[0]
    # Someone else already holds the name the hash would give "u2".
    registry.claim(disambiguate("f", "u2"), "other")

    name, duplicate = registry.claim("f", "u2")
    assert not duplicate
    assert name not in (taken, disambiguate("f", "u2"))


# The registry's layout, forced: `code` builds a name's 64-bit hash from its parts (bits 63..56
# pick its region at first, 55..24 are its head, 23..8 its tail; 7..0 are not kept).
def code(region: int, head: int, tail: int, low: int = 0) -> int:
    return region << 56 | head << 24 | tail << 8 | low


def forced_hashes(codes: dict[str, int]) -> Callable[[str], int]:
    return lambda text: codes.get(text, hash(text))


def stable_hash(text: str) -> int:
    """A hash that is the same in every run, so that a property test fails the same way."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def given_name(spec: str) -> str:
    """`f~u2`: `f` with the hash of the URL `u2`, as a second URL gets it."""
    name, _, key = spec.partition("~")
    return disambiguate(name, key) if key else name


@pytest.mark.parametrize("region_limit", [1, 2, 3, 1024])
def test_registry_keeps_every_claim_as_it_grows(region_limit: int) -> None:
    registry = NameRegistry(region_limit=region_limit)
    names = [f"f{number}.bin" for number in range(3000)]
    for number, name in enumerate(names):
        assert registry.claim(name, f"http://a/{number}", 1) == (name, False)
        assert registry.last_new

    for number, name in enumerate(names):
        assert registry.is_taken(name)
        assert registry.claim(name, f"http://a/{number}", 1) == (name, True)
        assert not registry.last_new
    assert not registry.is_taken("f3000.bin")
    assert registry.claim(names[7], "http://b/", 2) == (given_name(f"{names[7]}~http://b/"), False)


@pytest.mark.parametrize(
    ("first", "second", "apart"),
    [
        (code(5, 7, 1), code(5, 7, 2), True),  # one head, two tails
        (code(5, 7, 1), code(5, 8, 1), True),  # one region, two heads
        (code(5, 7, 1), code(6, 7, 1), True),  # two regions, one head
        (code(0, 0, 0), code(255, 2**32 - 1, 2**16 - 1), True),  # the first and last entries
        # Alike in all 56 bits kept: one name for the registry. The second URL gets a hashed
        # name it did not need; never the first URL's file.
        (code(5, 7, 1, low=1), code(5, 7, 1, low=2), False),
    ],
)
@pytest.mark.parametrize("region_limit", [1, 1024])
def test_registry_tells_names_apart_by_56_bits_of_hash(
    first: int, second: int, apart: bool, region_limit: int
) -> None:
    registry = NameRegistry(
        hasher=forced_hashes({"a": first, "b": second}), region_limit=region_limit
    )

    assert registry.claim("a", "u1", 1) == ("a", False)
    assert registry.claim("b", "u2", 1) == ("b" if apart else given_name("b~u2"), False)
    assert registry.claim("a", "u1", 1) == ("a", True)
    assert registry.claim("b", "u2", 1)[1] is True


def test_registry_crowded_into_one_region_borrows_and_spreads() -> None:
    # Every name in region 0 or 1, many with one head: the regions fill, take room from their
    # neighbours, then from all (and split), with the heads alike kept apart by their tails.
    codes = {f"n{number}": code(number % 2, number % 3, number) for number in range(2000)}
    registry = NameRegistry(hasher=forced_hashes(codes), region_limit=2)
    for name in codes:
        assert registry.claim(name, f"u{name}", 1) == (name, False)

    for name in codes:
        assert registry.claim(name, f"u{name}", 1) == (name, True)
    assert registry.claim("n5", "other", 1) == (given_name("n5~other"), False)


def test_registry_moves_its_free_slots_to_where_the_names_go() -> None:
    # First every name in region 0, then every one in region 100: some of the free slots
    # region 0 was given go to region 100 (the regions between move left), and the arrays need
    # not grow for it.
    codes = {f"a{number}": code(0, number, 1) for number in range(3000)}
    codes |= {f"b{number}": code(100, number, 1) for number in range(200)}
    registry = NameRegistry(hasher=forced_hashes(codes))
    for name in codes:
        assert registry.claim(name, f"u{name}", 1) == (name, False)

    for name in codes:
        assert registry.claim(name, f"u{name}", 1) == (name, True)


@pytest.mark.parametrize(
    "steps",
    [
        # (name, URL, batch) -> (name given, duplicate, new name)
        pytest.param(
            [
                ("f", "u1", 1, "f", False, True),
                ("f", "u2", 1, "f~u2", False, True),
                ("f", "u1", 1, "f", True, False),
                ("f", "u2", 1, "f~u2", True, False),
                ("f", "u3", 1, "f~u3", False, True),
            ],
            id="first-keeps-the-name-others-hashed-repeats-are-duplicates",
        ),
        pytest.param(
            [
                ("f", "u1", 1, "f", False, True),
                ("f", "u1", 0, "f", False, False),
                ("f", "u1", 0, "f", False, False),
                ("f", "u1", 1, "f", True, False),
            ],
            id="a-call-on-its-own-is-never-a-duplicate-and-leaves-the-list-be",
        ),
        pytest.param(
            [
                ("f", "u1", 1, "f", False, True),
                ("f", "u1", 2, "f", False, False),
                ("f", "u1", 2, "f", True, False),
                ("f", "u1", 1, "f", False, False),
            ],
            id="a-later-list-takes-the-name-over",
        ),
        pytest.param(
            [
                ("f", "u1", 0, "f", False, True),
                ("f", "u1", 1, "f", False, False),
                ("f", "u1", 1, "f", True, False),
            ],
            id="claimed-on-its-own-then-in-a-list",
        ),
        pytest.param(
            [
                ("f", "u1", 1, "f", False, True),
                ("f~u2", "x", 1, "f~u2", False, True),
                ("f", "u2", 1, "f~u2#1", False, True),
                ("f", "u2", 1, "f~u2#1", True, False),
            ],
            id="the-hashed-name-taken-too",
        ),
        pytest.param(
            [
                ("f", "u1", 2**40, "f", False, True),
                ("f", "u1", 2**40, "f", True, False),
                ("f", "u1", 2**40 + 1, "f", False, False),
            ],
            id="large-batch-numbers",
        ),
    ],
)
def test_registry_batches_and_duplicates(
    steps: list[tuple[str, str, int, str, bool, bool]],
) -> None:
    registry = NameRegistry(region_limit=1)
    for name, key, batch, expected, duplicate, new in steps:
        assert registry.claim(given_name(name), key, batch) == (given_name(expected), duplicate)
        assert registry.last_new is new
        assert registry.is_taken(given_name(expected))
    assert not registry.is_taken("g")


class ReferenceRegistry:
    """What NameRegistry answers, with the names and URLs kept whole: a dict of strings."""

    def __init__(self) -> None:
        self.owners: dict[str, tuple[str, int]] = {}  # name -> (URL, batch)
        self.last_new = False

    def claim(self, name: str, key: str, batch: int) -> tuple[str, bool]:
        numbered = (disambiguate(name, f"{key}#{n}") for n in itertools.count(1))
        for candidate in itertools.chain([name, disambiguate(name, key)], numbered):
            owner = self.owners.get(candidate)
            if owner is None or owner[0] == key:
                self.last_new = owner is None
                if owner is None or batch:
                    self.owners[candidate] = (key, batch)
                return candidate, owner is not None and batch != 0 and owner[1] == batch
        raise AssertionError("unreachable")


# Stable hashes, and two ways of crowding them: 16 heads only (entries share heads, their tails
# tell them apart), or 4 regions of the first 256 (regions fill and take room from others).
HASHERS = {
    "stable": stable_hash,
    "few-heads": lambda text: stable_hash(text) & ~((2**32 - 2**4) << 24),
    "few-regions": lambda text: stable_hash(text) & ~((2**8 - 2**2) << 56),
}


@settings(max_examples=150, deadline=None)
@given(
    claims=st.lists(
        st.tuples(
            st.integers(0, 300).map(lambda number: f"n{number}"),
            st.sampled_from(["u1", "u2", "u3", "u4"]),
            st.sampled_from([0, 1, 2, 3, 2**40]),
        ),
        max_size=400,
    ),
    hasher=st.sampled_from(sorted(HASHERS)),
    region_limit=st.sampled_from([1, 2, 1024]),
)
def test_registry_answers_as_a_dict_of_names_would(
    claims: list[tuple[str, str, int]], hasher: str, region_limit: int
) -> None:
    registry = NameRegistry(hasher=HASHERS[hasher], region_limit=region_limit)
    reference = ReferenceRegistry()
    for name, key, batch in claims:
        assert registry.claim(name, key, batch) == reference.claim(name, key, batch)
        assert registry.last_new is reference.last_new
    for name in [*reference.owners, "n301", "n302"]:
        assert registry.is_taken(name) is (name in reference.owners)


def test_registry_holds_under_16_bytes_per_name() -> None:
    registry = NameRegistry()
    names = 300_000
    for number in range(names):
        registry.claim(f"example.com__data__{number}.bin", f"https://example.com/{number}", 1)

    assert sys.getsizeof(registry) / names < 16

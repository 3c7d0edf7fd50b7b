"""naming.py is pure: plain tables, no event loop, no file system."""

from __future__ import annotations

import pytest

from aiowget.naming import (
    NAME_LIMIT,
    NameRegistry,
    basename_name,
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
    from aiowget.naming import disambiguate

    registry.claim(disambiguate("f", "u2"), "other")

    name, duplicate = registry.claim("f", "u2")
    assert not duplicate
    assert name not in (taken, disambiguate("f", "u2"))

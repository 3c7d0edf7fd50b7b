"""`--naming tree` (naming.tree_parts, naming.claim_tree): pure tables, no event loop."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiowget.naming import NAME_LIMIT, WORK_DIR, NameRegistry, claim_tree, tree_parts
from aiowget.text import is_unsafe_char


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://example.com/a/b.txt", ("example.com", "a", "b.txt")),
        ("http://example.com", ("example.com", "index.html")),
        ("http://example.com/", ("example.com", "index.html")),
        ("http://example.com/dir/", ("example.com", "dir", "index.html")),
        ("https://user:pw@Example.COM:8443/f?q=1#x", ("example.com:8443", "f")),
        ("http://[::1]:8080/f", ("[::1]:8080", "f")),
        ("http://e.com/hello%20world", ("e.com", "hello world")),
        # Dot segments resolved as the request resolves them, never above the host.
        ("http://e.com/a/../../b", ("e.com", "b")),
        ("http://e.com/a/%2e%2E/b", ("e.com", "b")),
        ("http://e.com/a/.%2e/.%2E/b", ("e.com", "b")),
        ("http://e.com/a/./b", ("e.com", "a", "b")),
        ("http://e.com/a/..", ("e.com", "index.html")),
        ("http://e.com/a/%2e", ("e.com", "a", "index.html")),
        # A decoded separator stays inside its component.
        ("http://e.com/a%2F..%2F..%2Fetc", ("e.com", "a%2F..%2F..%2Fetc")),
        ("http://e.com/%2e%2e%2f%2e%2e%2fx", ("e.com", "..%2F..%2Fx")),
        ("http://e.com/..%5C..%5Cwin.ini", ("e.com", "..%5C..%5Cwin.ini")),
        ("http://e.com/nul%00/x%0A", ("e.com", "nul%00", "x%0A")),
        # Empty segments dropped; the working folder's name escaped.
        ("http://e.com/a//b", ("e.com", "a", "b")),
        # A host is a component too: `..` as a host must not climb out of the target.
        ("http://../x/y", ("%2E%2E", "x", "y")),
        ("http://%2e%2e/escaped.txt", ("%2E%2E", "escaped.txt")),
        ("http://./f", ("%2E", "f")),
        (f"http://e.com/{WORK_DIR}/x", ("e.com", "%2Eaiowget", "x")),
        (f"http://e.com/d/{WORK_DIR}", ("e.com", "d", "%2Eaiowget")),
    ],
)
def test_tree_parts(url: str, parts: tuple[str, ...]) -> None:
    assert tree_parts(url) == parts


def test_long_components_are_cut_each_with_a_hash() -> None:
    long = "x" * 300
    parts = tree_parts(f"http://e.com/{long}/{long}.bin")
    other = tree_parts(f"http://e.com/{long}y/{long}.bin")

    assert all(len(part.encode()) <= NAME_LIMIT for part in parts)
    assert parts[2].endswith(".bin")
    assert parts[1] != other[1]


def assert_safe(parts: tuple[str, ...]) -> None:
    assert len(parts) >= 2
    for part in parts:
        assert part not in ("", ".", "..", WORK_DIR)
        assert "/" not in part
        assert "\\" not in part
        assert not any(is_unsafe_char(c) for c in part)
        assert len(part.encode()) <= NAME_LIMIT
    joined = posixpath.join(*parts)
    assert posixpath.normpath(joined) == joined  # nothing for a resolver to climb


SEGMENTS = st.sampled_from(
    ["..", ".", "", "%2e%2e", "%2E.", ".%2e", "%2f", "%5c", "%00", "a", "\u202e", "%ff", "é"]
)


@given(
    st.lists(st.one_of(SEGMENTS, st.text(max_size=300)), max_size=8),
    st.booleans(),
)
def test_every_tree_path_stays_inside_and_each_part_is_safe(
    segments: list[str], slash: bool
) -> None:
    url = "http://e.com/" + "/".join(segments) + ("/" if slash else "")
    parts = tree_parts(url)

    assert_safe(parts)
    assert parts[0] == "e.com"
    assert tree_parts(url) == parts  # stable


def claimed(registry: NameRegistry, url: str) -> str:
    return claim_tree(registry, tree_parts(url), url, 1)[0]


@pytest.mark.parametrize(
    ("urls", "paths"),
    [
        # A file, then a folder of the same path: the folder gets the hash (of itself).
        (
            ["http://h/a", "http://h/a/b", "http://h/a/c"],
            ["h/a", "h/a~{folder}/b", "h/a~{folder}/c"],
        ),
        # A folder, then a file of the same path: the file gets the hash (of its URL).
        (["http://h/a/b", "http://h/a"], ["h/a/b", "h/a~{file}"]),
        # A directory URL and its index: one folder.
        (["http://h/a/", "http://h/a/x"], ["h/a/index.html", "h/a/x"]),
        # Two hosts or ports: two folders.
        (["http://h/f", "http://h:81/f"], ["h/f", "h:81/f"]),
    ],
)
def test_a_file_and_a_folder_never_share_a_path(urls: list[str], paths: list[str]) -> None:
    registry = NameRegistry()
    got = [claimed(registry, url) for url in urls]

    folder = got[1].split("/")[1].partition("~")[2]
    file = got[-1].rpartition("~")[2]
    assert got == [path.format(folder=folder, file=file) for path in paths]
    assert len(set(got)) == len(got)
    assert claimed(NameRegistry(), urls[0]) == got[0]


def test_tree_claims_are_stable_across_runs_and_report_duplicates() -> None:
    urls = ["http://h/a", "http://h/a/b", "http://h/a/b", "http://h/a/"]
    first, second = NameRegistry(), NameRegistry()
    one = [claim_tree(first, tree_parts(url), url, 1) for url in urls]
    two = [claim_tree(second, tree_parts(url), url, 1) for url in urls]

    assert one == two
    assert [duplicate for _, duplicate in one] == [False, False, True, False]


@given(st.lists(st.sampled_from(["a", "b", "a/b", "a/b/c", "b/a", "a/", "a/b/"]), max_size=12))
def test_no_two_urls_get_one_path_nor_a_file_a_folder_path(paths: list[str]) -> None:
    registry = NameRegistry()
    files: dict[str, str] = {}
    for path in paths:
        url = f"http://h/{path}"
        files.setdefault(url, claimed(registry, url))
    folders = {f.rpartition("/")[0] for f in files.values()}
    folders |= {posixpath.dirname(f) for f in folders}
    assert len(set(files.values())) == len(files)
    assert not folders & set(files.values())

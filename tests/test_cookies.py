"""`--load-cookies`: a Netscape cookies.txt, sent only where domain, path, secure flag and
expiry allow, against real servers on 127.0.0.1 and 127.0.0.2 (two hosts)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
import yarl
from aiohttp import web

import aiowget
from aiowget.cookiefile import FileCookie, parse_cookies

from .conftest import ServeFactory, Server, run_cli

FUTURE = int(time.time()) + 86_400


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"ok")


def cookies_seen(server: Server, path: str) -> list[list[str]]:
    """The cookies each request for `path` carried (their order is the client's)."""
    return [
        sorted(filter(None, s.headers.get("Cookie", "").split("; "))) for s in server.gets(path)
    ]


def cookie_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n" + "".join(f"{line}\n" for line in lines))
    return path


def line(domain: str, name: str, *, sub: bool = False, path: str = "/", secure: bool = False,
         expires: int = 0) -> str:  # fmt: skip
    flag = {True: "TRUE", False: "FALSE"}
    return "\t".join([domain, flag[sub], path, flag[secure], str(expires), name, f"v-{name}"])


async def test_cookies_go_to_their_own_host_path_and_scheme_only(
    serve: ServeFactory, tmp_path: Path
) -> None:
    one = await serve({"/{tail:.*}": ok})
    two = await serve({"/{tail:.*}": ok}, host="127.0.0.2")
    cookies = cookie_file(
        tmp_path,
        line("127.0.0.1", "mine", expires=FUTURE),
        "#HttpOnly_" + line("127.0.0.1", "hidden"),
        line("127.0.0.2", "theirs"),
        line("127.0.0.1", "deep", path="/p"),
        line("127.0.0.1", "safe", secure=True),
        line("127.0.0.1", "stale", expires=1_000_000),
        line("other.example", "elsewhere", sub=True),
    )
    urls = [one.url("/f"), one.url("/p/g"), one.url("/q/g"), two.url("/f")]

    result = await run_cli("--load-cookies", cookies, "-P", tmp_path / "out", *urls)

    assert result.exit_code == 0, result.stderr
    assert cookies_seen(one, "/f") == [["hidden=v-hidden", "mine=v-mine"]]
    assert cookies_seen(one, "/p/g") == [["deep=v-deep", "hidden=v-hidden", "mine=v-mine"]]
    assert cookies_seen(one, "/q/g") == [["hidden=v-hidden", "mine=v-mine"]]
    assert cookies_seen(two, "/f") == [["theirs=v-theirs"]]


async def test_a_cookie_stays_behind_when_a_redirect_leaves_its_host(
    serve: ServeFactory, tmp_path: Path
) -> None:
    two = await serve({"/f": ok}, host="127.0.0.2")

    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(two.url("/f"))

    one = await serve({"/r": away})
    cookies = cookie_file(tmp_path, line("127.0.0.1", "first"), line("127.0.0.2", "second"))

    result = await run_cli("--load-cookies", cookies, "-P", tmp_path / "out", one.url("/r"))

    assert result.exit_code == 0, result.stderr
    assert cookies_seen(one, "/r") == [["first=v-first"]]
    assert cookies_seen(two, "/f") == [["second=v-second"]]


async def test_without_a_cookie_file_nothing_is_sent(serve: ServeFactory, tmp_path: Path) -> None:
    one = await serve({"/f": ok})

    result = await run_cli("-P", tmp_path, one.url("/f"))

    assert result.exit_code == 0
    assert cookies_seen(one, "/f") == [[]]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("127.0.0.1\tFALSE\t/\n", "line 1: expected 7 tab-separated fields, found 3"),
        ("# c\n127.0.0.1\tMAYBE\t/\tFALSE\t0\ta\tb\n", "line 2: expected TRUE or FALSE"),
        ("h\tFALSE\t/\tFALSE\tsoon\ta\tb\n", "line 1: the expiry 'soon' is not a number"),
        ("h\tFALSE\tp\tFALSE\t0\ta\tb\n", "line 1: the path 'p' does not start with '/'"),
        (b"\xff\xfe".decode("latin-1"), "not UTF-8 text"),
    ],
)
async def test_a_bad_cookie_file_is_one_line_and_exit_2(
    tmp_path: Path, content: str, reason: str
) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_bytes(content.encode("latin-1"))

    result = await run_cli("--load-cookies", cookies, "-P", tmp_path, "http://127.0.0.1:9/")

    assert result.exit_code == 2
    [said] = result.stderr.splitlines()
    assert said.startswith("aiowget: ")
    assert str(cookies) in said
    assert reason in said


async def test_a_missing_cookie_file_is_exit_2(tmp_path: Path) -> None:
    result = await run_cli("--load-cookies", tmp_path / "no", "http://127.0.0.1:9/")

    assert result.exit_code == 2
    assert "cannot read cookie file" in result.stderr
    assert "Traceback" not in result.stderr


async def test_cookies_with_a_callers_session_are_refused(tmp_path: Path) -> None:
    cookies = cookie_file(tmp_path, line("h", "a"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiowget.UsageError, match="cookie_jar"):
            aiowget.Downloader(session=session, cookies=cookies)


@pytest.mark.parametrize(
    ("text", "cookies"),
    [
        ("", []),
        ("# comment\n\n", []),
        (
            ".Example.com\tTRUE\t/\tTRUE\t2000000000\tsid\tx y\r\n",
            [FileCookie("example.com", True, "/", True, 2_000_000_000, "sid", "x y")],
        ),
        (
            "#HttpOnly_h\tFALSE\t/a\tFALSE\t0\tn\t\n",
            [FileCookie("h", False, "/a", False, None, "n", "")],
        ),
        ("h\tFALSE\t/\tFALSE\t1500\told\tv\n", []),  # expired at `now`
        (
            "h\tfalse\t/\tfalse\t1501\tnew\tv\n",
            [FileCookie("h", False, "/", False, 1501, "new", "v")],
        ),
        (  # a BOM from a Windows exporter; an expiry past year 9999 is "never", kept
            "\ufeffh\tFALSE\t/\tFALSE\t99999999999999999999\tn\tv\r\n",
            [FileCookie("h", False, "/", False, 253402300799, "n", "v")],
        ),
        (  # only LF ends a line; an IDN domain in punycode; a trailing dot dropped
            "b\u00fccher.de.\tTRUE\t/\tFALSE\t0\tn\tv\n",
            [FileCookie("xn--bcher-kva.de", True, "/", False, None, "n", "v")],
        ),
    ],
)
def test_parse_cookies(text: str, cookies: list[FileCookie]) -> None:
    assert parse_cookies(text, now=1500) == cookies


@pytest.mark.parametrize(
    "text",
    [
        "h\tFALSE\t/\tFALSE\t0\ta\n",
        "\tFALSE\t/\tFALSE\t0\ta\tb\n",
        "h/x\tFALSE\t/\tFALSE\t0\ta\tb\n",
        "h\tFALSE\t/\tFALSE\t-1\ta\tb\n",
        "h\tFALSE\t/\tFALSE\t0\ta=b\tc\n",
        "h\tFALSE\t/\tFALSE\t0\ta\tb;c\n",
        "h\tFALSE\t/\tFALSE\t0\ta\tb\x01c\n",  # aiohttp would drop it without a word
        "h\tFALSE\t/\tFALSE\t0\ta\tb\u2028c\n",  # not a line break, and not ASCII
    ],
)
def test_parse_cookies_refuses_what_is_not_a_cookie(text: str) -> None:
    with pytest.raises(aiowget.UsageError, match="line 1"):
        parse_cookies(text, now=0)


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://host.example/", ["only", "wide"]),
        ("http://sub.host.example/", ["wide"]),  # include-subdomains FALSE: host-only
        ("http://example/", []),
        ("http://nothost.example/", []),
    ],
)
async def test_include_subdomains_false_is_host_only(
    tmp_path: Path, url: str, sent: list[str]
) -> None:
    from aiowget.downloader import _cookie_jar

    cookies = cookie_file(
        tmp_path, line("host.example", "only"), line(".host.example", "wide", sub=True)
    )
    jar = await _cookie_jar(cookies)

    assert jar is not None
    assert sorted(jar.filter_cookies(yarl.URL(url))) == sent

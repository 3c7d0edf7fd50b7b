"""Servers that try to hold a download hostage, and input as people write it (issue #14): a
header deadline, a lowest speed, exactly the requests `-t` allows, BOM and CRLF input files,
spaces and non-ASCII in URLs, IDN hosts. Real servers only: raw sockets where aiohttp's own
server would not misbehave enough."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

import aiowget
from aiowget.naming import flat_name
from aiowget.policy import backoff

from .conftest import Proxy, ServeFactory, body, files_in, run_cli, run_process, static

LIMIT = 30  # seconds: a process still running then has been held hostage

Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Talk], Awaitable[tuple[str, list[int]]]]]:
    """A socket server running `talk` for each connection; returns its URL and a list that
    counts the requests it read."""
    servers: list[asyncio.Server] = []

    async def start(talk: Talk) -> tuple[str, list[int]]:
        requests: list[int] = []

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    requests.append(1)
                    await talk(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f", requests

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def trickle_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A status line, then a header one byte every 0.2 s, forever: no silence ever lasts."""
    writer.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
    while True:
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"a")


async def test_a_server_trickling_its_headers_times_out_at_the_deadline(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    url, requests = await raw(trickle_headers)

    result = await run_process("-T", "1", "-t", "1", "--retry-wait", "0", "-P", tmp_path, url,
                               limit=LIMIT)  # fmt: skip

    assert result.exit_code == 4
    assert "no response headers within 1 s" in result.stderr
    assert len(requests) == 2  # the first try and one retry
    assert files_in(tmp_path) == []


async def test_the_deadline_holds_with_a_callers_session_too(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    import aiohttp

    url, _ = await raw(trickle_headers)
    async with aiohttp.ClientSession() as session:
        (result,) = await asyncio.wait_for(
            aiowget.download([url], tmp_path, session=session, timeout=1, connect_timeout=1,
                             retries=0),
            LIMIT,
        )  # fmt: skip

    assert isinstance(result.error, aiowget.DownloadTimeoutError)


async def test_t_0_is_one_request_even_when_the_server_hangs_up(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        raise ConnectionError  # read the request, said nothing, closed

    url, requests = await raw(hang_up)

    none = await run_process("--json", "-t", "0", "-P", tmp_path, url, limit=LIMIT)
    count_after_none = len(requests)
    two = await run_process("--json", "-t", "2", "--retry-wait", "0", "-P", tmp_path, url,
                            limit=LIMIT)  # fmt: skip

    assert (none.exit_code, two.exit_code) == (4, 4)
    assert count_after_none == 1
    assert len(requests) == 1 + 3
    assert json.loads(two.stdout.splitlines()[0])["attempts"] == 3


def test_backoff_does_not_overflow_however_many_retries() -> None:
    assert backoff(5000, base=1.0, cap=60.0, draw=0.5) == 30.0


# A body tarpit and --lowest-speed -------------------------------------------------------------


async def test_a_tarpit_fails_below_the_lowest_speed_and_the_retry_resumes(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(3 << 20)
    asked: list[str | None] = []

    async def tarpit(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Range"))
        start = int(request.headers["Range"][6:-1]) if "Range" in request.headers else 0
        headers = {"ETag": '"v1"', "Content-Length": str(len(content) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        response = web.StreamResponse(status=206 if start else 200, headers=headers)
        await response.prepare(request)
        if start:  # the retry: served at full speed
            await response.write(content[start:])
            return response
        await response.write(content[: 1 << 16])
        for offset in range(1 << 16, len(content)):  # then a byte every 0.1 s
            await asyncio.sleep(0.1)
            await response.write(content[offset : offset + 1])
        return response

    server = await serve({"/f": tarpit})
    url = server.url("/f")

    result = await run_process(
        "--lowest-speed", "1k", "-T", "1", "-t", "1", "--retry-wait", "0", "-P", tmp_path, url,
        limit=LIMIT,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "slower than the lowest speed (1k/s) for 1 s" in result.stderr
    assert asked[0] is None
    assert asked[1] is not None
    assert int(asked[1][6:-1]) >= 1 << 16  # resumed, not fetched again
    assert (tmp_path / flat_name(url)).read_bytes() == content


async def test_a_small_tarpit_is_caught_too_and_steady_bodies_are_not(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def tarpit(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000000"})
        await response.prepare(request)
        while True:
            await response.write(b"t")
            await asyncio.sleep(0.1)

    server = await serve({"/tarpit": tarpit, "/fine": static(body(200_000))})

    results = await asyncio.wait_for(
        aiowget.download([server.url("/tarpit"), server.url("/fine")], tmp_path,
                         lowest_speed=1024, timeout=1, retries=0),
        LIMIT,
    )  # fmt: skip

    assert isinstance(results[0].error, aiowget.DownloadTimeoutError)
    assert results[1].ok


# Input as people write it ----------------------------------------------------------------------


async def test_an_input_file_with_a_bom_and_crlf(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/{n}": static(b"ok")})
    urls = [server.url("/a"), server.url("/b")]
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + b"".join(u.encode() + b"\r\n" for u in urls))

    result = await run_cli("-P", tmp_path / "d", "-i", listing)

    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "d") == sorted(flat_name(u) for u in urls)


async def test_spaces_and_non_ascii_in_urls_are_percent_encoded_as_utf8(
    serve: ServeFactory, tmp_path: Path
) -> None:
    raw_paths: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        raw_paths.append(request.raw_path)
        return web.Response(body=b"ok")

    server = await serve({"/{tail:.*}": record})
    spaced, accented = server.url("/") + "a b.txt", server.url("/") + "caf\u00e9?q=\u00e9 t"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{spaced} out=from-file.txt\n")

    given = await run_cli("-P", tmp_path / "d", spaced, accented)
    from_file = await run_cli("-P", tmp_path / "d", "-i", listing)

    assert (given.exit_code, from_file.exit_code) == (0, 0), given.stderr + from_file.stderr
    assert sorted(raw_paths[:2]) == ["/a%20b.txt", "/caf%C3%A9?q=%C3%A9%20t"]  # fetched at once
    assert raw_paths[2:] == ["/a%20b.txt"]
    host = flat_name(server.url("/")).rstrip("_")
    assert files_in(tmp_path / "d") == sorted(
        [f"{host}__a b.txt", f"{host}__caf\u00e9", "from-file.txt"]
    )


async def test_an_idn_host_is_asked_for_in_punycode(
    proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url())

    result = await run_cli("-P", tmp_path, "http://b\u00fccher.example/f")

    assert result.exit_code == 0, result.stderr
    assert proxy.asked == ["http://xn--bcher-kva.example/f"]
    assert files_in(tmp_path) == ["b\u00fccher.example__f"]


# --fsync -----------------------------------------------------------------------------------

COUNT_FSYNC = """
import os, sys
calls = []
fsync = os.fsync
def counted(fd):
    calls.append(os.path.isdir(f"/proc/self/fd/{fd}"))
    fsync(fd)
os.fsync = counted
exit_now = os._exit
def report(status):
    print(f"fsync files={calls.count(False)} folders={calls.count(True)}", file=sys.stderr)
    exit_now(status)
os._exit = report
sys.argv = ["aiowget", *sys.argv[1:]]
from aiowget.cli import main
main()
"""


@pytest.mark.parametrize(("flag", "expected"), [([], "files=0 folders=0"),
                                                (["--fsync"], "files=2 folders=2")])  # fmt: skip
async def test_fsync_flushes_each_file_before_its_rename_and_the_folder_after(
    serve: ServeFactory, tmp_path: Path, flag: list[str], expected: str
) -> None:
    server = await serve({"/small": static(b"s" * 100), "/large": static(body(3 << 20))})
    urls = [server.url("/small"), server.url("/large")]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", COUNT_FSYNC, *flag, "-P", str(tmp_path), *urls,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)

    assert process.returncode == 0, stderr.decode()
    assert f"fsync {expected}" in stderr.decode()
    assert files_in(tmp_path) == sorted(flat_name(u) for u in urls)


# Found by breaking the above (a fresh tester, with only the README's promises) ---------------


async def test_a_proxy_that_never_answers_connect_is_a_timeout(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # read the CONNECT, never answer it

    proxy, asked = await raw(silent)
    proxy = proxy.removesuffix("/f")

    result = await run_process("-T", "1", "--connect-timeout", "1", "-t", "0", "--proxy", proxy,
                               "-P", tmp_path, "https://127.0.0.2:9/x", limit=LIMIT)  # fmt: skip

    assert result.exit_code == 4, result.stderr
    assert len(asked) == 1


async def test_after_a_connect_slower_than_t_the_deadline_is_t_after_sending() -> None:
    """A dropped SYN, a slow TLS handshake or CONNECT: the request goes out after -T has
    passed, within the connect allowance; its headers get -T from then, not connect + -T
    (the lazy timer once slept on to the connect allowance: 30 s for a trickling server)."""
    from aiowget.transfer import HeaderDeadline

    async def connect_slowly_then_wait_for_headers() -> None:
        async with HeaderDeadline(0.3, 20.0) as deadline:
            await asyncio.sleep(0.5)  # still connecting when -T alone has passed
            deadline.sent()
            await asyncio.sleep(LIMIT)

    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(aiowget.DownloadTimeoutError, match=r"within 0\.3 s"):
        await connect_slowly_then_wait_for_headers()
    assert loop.time() - start < 5  # about 0.8 s; connect + -T would be 20.3 s


async def test_lowest_speed_catches_a_body_that_sends_no_byte(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    async def chunk_header_trickle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=")
        while True:  # a chunk extension, a byte at a time: never a byte of body
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"a")

    url, requests = await raw(chunk_header_trickle)

    result = await run_process("--lowest-speed", "1k", "-T", "1", "-t", "0", "-P", tmp_path, url,
                               limit=LIMIT)  # fmt: skip

    assert result.exit_code == 4, result.stderr
    assert "slower than the lowest speed" in result.stderr
    assert len(requests) == 1


async def test_one_header_deadline_for_a_whole_redirect_chain(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    async def slow_redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 302 Found\r\nLocation: /f\r\nContent-Length: 0\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.6 / 60)  # each redirect takes about 0.6 s: under -T alone

    url, requests = await raw(slow_redirect)

    result = await run_process("-T", "1", "-t", "0", "-P", tmp_path, url, limit=LIMIT)

    assert result.exit_code == 4, result.stderr
    assert len(requests) <= 3  # not 21 redirects of 0.6 s each


async def test_a_redirect_chain_on_a_server_that_closes_each_connection_quietly(
    raw: Callable[[Talk], Awaitable[tuple[str, list[int]]]], tmp_path: Path
) -> None:
    hops = iter([b"/r1", b"/r2"])

    async def close_after_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = next(hops, None)
        if target is None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n"
            )
        await writer.drain()
        raise ConnectionError  # closed, though it said nothing of closing

    url, requests = await raw(close_after_each)

    result = await run_process("-t", "0", "-O", tmp_path / "f", url, limit=LIMIT)

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "f").read_bytes() == b"ok"
    assert len(requests) == 3


async def test_our_own_limit_rate_is_not_a_slow_server(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(16_384)
    server = await serve({"/f": static(content)})

    result = await run_process("--limit-rate", "4k", "--lowest-speed", "64k", "-T", "1", "-t", "0",
                               "-O", tmp_path / "f", server.url("/f"), limit=LIMIT)  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "f").read_bytes() == content

"""`-v`: every request and response head, as on the wire, with credentials masked (#17)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from rich.console import Console

import aiowget
from aiowget.console import ConsoleReporter, ProgressMode
from aiowget.models import Exchange, HttpHead, Note
from aiowget.text import masked_header, redact_urls

from .conftest import Proxy, RawFactory, ServeFactory, run_cli

SECRET = "s3cr3t-value"


def heads(stderr: str) -> list[str]:
    """The lines of the log that say which request, and its first lines: the story of a run."""
    return [line for line in stderr.splitlines() if line.startswith(("* ", "> GET", "< HTTP"))]


async def test_verbose_shows_what_was_sent_and_received(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"data", headers={"X-Answer": "42"})

    server = await serve({"/f": answer})
    url = server.url("/f")
    host = url.split("/")[2]

    result = await run_cli("-v", "-H", "X-Asked: yes", "-P", tmp_path, url)

    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    request = lines[lines.index(f"* {url} (attempt 1)") :]
    assert request[1] == "> GET /f HTTP/1.1"
    # What aiohttp adds (Host, Accept) is shown too: the headers really sent.
    for sent in (f"> Host: {host}", "> X-Asked: yes", "> Accept-Encoding: identity"):
        assert sent in request
    assert "> Accept: */*" in request
    status = request.index("< HTTP/1.1 200 OK")
    assert all(line.startswith("> ") for line in request[1:status])
    assert "< X-Answer: 42" in request[status:]
    assert "< Content-Length: 4" in request[status:]


async def test_without_verbose_no_heads_are_printed(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/f": ok})

    result = await run_cli("-P", tmp_path, server.url("/f"))

    assert result.exit_code == 0
    assert heads(result.stderr) == []


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"data")


def _secret_answer(request: web.Request) -> web.StreamResponse:
    response = web.Response(body=b"data")
    response.set_cookie("sid", SECRET, path="/")
    return response


@pytest.mark.parametrize(
    ("how", "shown"),
    [
        (["--user", "u", "--password", SECRET], "> Authorization: Basic ***"),
        (["-H", f"Authorization: Bearer {SECRET}"], "> Authorization: Bearer ***"),
        (["-H", f"Cookie: sid={SECRET}; theme=dark"], "> Cookie: sid=***; theme=***"),
        (["-H", f"X-Api-Key: {SECRET}"], "> X-Api-Key: ***"),
        ([], "< Set-Cookie: sid=***; Path=/"),
        (["URL"], "> Authorization: Basic ***"),
    ],
    ids=["user", "bearer", "cookie", "api-key", "set-cookie", "url"],
)
async def test_verbose_never_shows_a_secret(
    serve: ServeFactory, tmp_path: Path, how: list[str], shown: str
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return _secret_answer(request)

    server = await serve({"/f": answer})
    url = server.url("/f")
    if how == ["URL"]:  # the password in the URL: aiohttp sends it as Authorization
        how, url = [], url.replace("http://", f"http://u:{SECRET}@")

    result = await run_cli("-v", "--json", *how, "-P", tmp_path, url)

    assert result.exit_code == 0
    assert shown in result.stderr.splitlines()
    encoded = base64.b64encode(f"u:{SECRET}".encode()).decode()
    for output in (result.stderr, result.stdout.decode()):
        assert SECRET not in output
        assert encoded not in output


async def test_verbose_shows_a_proxys_request_line_and_masks_its_credentials(
    proxy: Proxy, tmp_path: Path
) -> None:
    through = proxy.url().replace("http://", f"http://pu:{SECRET}@")

    result = await run_cli("-v", "--proxy", through, "-P", tmp_path, "http://origin.invalid/f")

    assert result.exit_code == 0
    assert proxy.credentials == ["Basic " + base64.b64encode(f"pu:{SECRET}".encode()).decode()]
    lines = result.stderr.splitlines()
    assert "> GET http://origin.invalid/f HTTP/1.1" in lines  # a proxy gets the absolute form
    assert "> Proxy-Authorization: Basic ***" in lines
    assert SECRET not in result.stderr
    assert proxy.credentials[0].split()[1] not in result.stderr


async def test_verbose_shows_a_redirect_chain_hop_by_hop(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def first(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/second")

    async def second(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/last")

    server = await serve({"/first": first, "/second": second, "/last": ok})

    result = await run_cli("-v", "-P", tmp_path, server.url("/first"))

    assert result.exit_code == 0
    assert heads(result.stderr) == [
        f"* {server.url('/first')} (attempt 1)",
        "> GET /first HTTP/1.1",
        "< HTTP/1.1 302 Found",
        f"* {server.url('/second')} (attempt 1)",
        "> GET /second HTTP/1.1",
        "< HTTP/1.1 301 Moved Permanently",
        f"* {server.url('/last')} (attempt 1)",
        "> GET /last HTTP/1.1",
        "< HTTP/1.1 200 OK",
    ]
    assert "< Location: /second" in result.stderr.splitlines()


async def test_verbose_shows_each_retry_as_a_new_attempt(
    serve: ServeFactory, tmp_path: Path
) -> None:
    answers = iter([web.HTTPServiceUnavailable(), None])

    async def flaky(request: web.Request) -> web.StreamResponse:
        error = next(answers)
        if error is not None:
            raise error
        return await ok(request)

    server = await serve({"/f": flaky})
    url = server.url("/f")

    result = await run_cli("-v", "-t", "1", "--retry-wait", "0", "-P", tmp_path, url)

    assert result.exit_code == 0
    assert heads(result.stderr) == [
        f"* {url} (attempt 1)",
        "> GET /f HTTP/1.1",
        "< HTTP/1.1 503 Service Unavailable",
        f"* {url} (attempt 2)",
        "> GET /f HTTP/1.1",
        "< HTTP/1.1 200 OK",
    ]
    lines = result.stderr.splitlines()
    retry = next(n for n, line in enumerate(lines) if "retry 1/1" in line)
    assert lines.index(f"* {url} (attempt 2)") > retry


async def test_verbose_says_when_no_answer_came(raw_server: RawFactory, tmp_path: Path) -> None:
    base = await raw_server(b"")  # reads the request, closes without a word

    result = await run_cli("-v", "-t", "0", "-P", tmp_path, f"{base}/f")

    assert result.exit_code == 4
    assert heads(result.stderr) == [f"* {base}/f (attempt 1)", "> GET /f HTTP/1.1"]
    assert "< (no response)" in result.stderr.splitlines()


async def test_verbose_says_when_the_headers_timed_out(serve: ServeFactory, tmp_path: Path) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return await ok(request)

    server = await serve({"/slow": stall})

    result = await run_cli("-v", "-t", "0", "-T", "0.3", "-P", tmp_path, server.url("/slow"))

    assert result.exit_code == 4
    assert "> GET /slow HTTP/1.1" in result.stderr.splitlines()
    assert "< (no response)" in result.stderr.splitlines()
    assert "no response headers within 0.3 s" in result.stderr


async def test_verbose_with_json_keeps_stdout_json(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/a": ok, "/b": ok})

    result = await run_cli("-v", "--json", "-P", tmp_path, server.url("/a"), server.url("/b"))

    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r.get("outcome") for r in records] == ["saved", "saved", None]
    assert records[-1]["summary"] is True
    assert len([line for line in heads(result.stderr) if line.startswith("> GET")]) == 2


# The library: events, and a caller's session -------------------------------------------------


@pytest.mark.parametrize("verbose", [True, False])
async def test_library_gets_exchanges_only_when_verbose(
    serve: ServeFactory, tmp_path: Path, verbose: bool
) -> None:
    server = await serve({"/f": ok})
    events: list[aiowget.Event] = []
    async with aiowget.Downloader(
        directory=tmp_path, verbose=verbose, on_event=events.append
    ) as dl:
        await dl.download_one(server.url("/f"))

    exchanges = [e for e in events if isinstance(e, Exchange)]
    assert [(e.url, e.attempt, e.request.line) for e in exchanges] == (
        [(server.url("/f"), 1, "GET /f HTTP/1.1")] if verbose else []
    )


async def test_a_callers_session_is_logged_from_what_aiohttp_kept(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": ok})
    events: list[aiowget.Event] = []
    async with (
        aiohttp.ClientSession() as session,
        aiowget.Downloader(
            session=session,
            directory=tmp_path,
            verbose=True,
            auth=("u", SECRET),
            on_event=events.append,
        ) as dl,
    ):
        await dl.download_one(server.url("/f"))

    [exchange] = [e for e in events if isinstance(e, Exchange)]
    sent = dict(exchange.request.headers)
    assert exchange.request.line == "GET /f HTTP/1.1"
    assert sent["Host"] == server.url("/f").split("/")[2]
    # The event holds what was sent; its lines mask it.
    assert sent["Authorization"] == "Basic " + base64.b64encode(f"u:{SECRET}".encode()).decode()
    assert "> Authorization: Basic ***" in exchange.lines()
    assert exchange.response is not None
    assert exchange.response.line == "HTTP/1.1 200 OK"


# The console: the verbose channel, plain and under bars ----------------------------------------


EXCHANGE = Exchange(
    "http://u:pw@e.com/a",
    "http://u:pw@e.com/a",
    1,
    HttpHead("GET /a HTTP/1.1", (("Host", "e.com"), ("Cookie", "k=v"))),
    HttpHead("HTTP/1.1 200 OK", (("Set-Cookie", "k=v2; Path=/"),)),
)


@pytest.mark.parametrize("verbose", [True, False])
async def test_console_prints_exchanges_and_notes_only_when_verbose(verbose: bool) -> None:
    stream = io.StringIO()
    reporter = ConsoleReporter(stream=stream, verbose=verbose)

    await reporter(EXCHANGE)
    await reporter(Note("window of http://u:pw@e.com/ now 4\x1b[2J"))

    expected = [
        "* http://u:***@e.com/a (attempt 1)",
        "> GET /a HTTP/1.1",
        "> Host: e.com",
        "> Cookie: k=***",
        "< HTTP/1.1 200 OK",
        "< Set-Cookie: k=***; Path=/",
        "* window of http://u:***@e.com/ now 4\\x1b[2J",
    ]
    assert stream.getvalue().splitlines() == (expected if verbose else [])


async def test_console_prints_verbose_lines_above_the_bars() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, verbose=True, total=1)
    reporter.start()

    await reporter(EXCHANGE)
    reporter.refresh()
    reporter.stop()

    drawn = screen.getvalue()
    assert "> Cookie: k=***" in drawn
    assert drawn.index("* http://u:***@e.com/a (attempt 1)") < drawn.index("< HTTP/1.1 200 OK")
    assert "pw" not in drawn


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Authorization", "Basic dTpw", "Basic ***"),
        ("proxy-authorization", "token", "***"),
        ("Cookie", "a=1; b=2", "a=***; b=***"),
        ("Set-Cookie", "a=1; Domain=e.com; HttpOnly", "a=***; Domain=e.com; HttpOnly"),
        ("X-Auth-Token", "abc", "***"),
        ("Location", "http://u:pw@e.com/x", "http://u:***@e.com/x"),
        ("X-Api_Key", "k3y", "***"),
        ("X-Authorization", "Bearer t0k", "***"),
        ("Location", "//eve:pw@e.com/b", "//eve:***@e.com/b"),
        ("Location", "http:\\\\eve:pw@e.com/", "http:\\\\eve:***@e.com/"),
        ("Location", "http:eve:pw@e.com/", "http:eve:***@e.com/"),
        ("Referer", "https://t0k@e.com/", "https://***@e.com/"),
        ("WWW-Authenticate", 'Basic realm="x"', 'Basic realm="x"'),
        ("Content-Type", "text/plain", "text/plain"),
    ],
)
def test_masked_header(name: str, value: str, shown: str) -> None:
    assert masked_header(name, value) == shown


def test_exchange_lines_escape_what_the_server_sent() -> None:
    hostile = HttpHead("HTTP/1.1 200 OK\x1b[2J", (("X-Evil", "a\x1b]0;title\x07b"),))
    exchange = Exchange("http://e.com/", "http://e.com/", 1, EXCHANGE.request, hostile)

    assert exchange.lines()[-2:] == ["< HTTP/1.1 200 OK\\x1b[2J", "< X-Evil: a\\x1b]0;title\\x07b"]


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # A malformed Location followed as a relative reference leaves `u:pw@` in the path.
        ("GET /%5C%5Ceve:pw@127.0.0.2:1/b HTTP/1.1", "GET /%5C%5Ceve:***@127.0.0.2:1/b HTTP/1.1"),
        ("GET /eve:pw@127.0.0.2:1/b HTTP/1.1", "GET /eve:***@127.0.0.2:1/b HTTP/1.1"),
        ("http://h:1/\\\\eve:pw@h2/b", "http://h:1/\\\\eve:***@h2/b"),
        ("GET /a:b/c HTTP/1.1", "GET /a:b/c HTTP/1.1"),
        ("http://u:pw@e.com/x", "http://u:***@e.com/x"),
    ],
)
def test_credentials_left_in_a_path_are_masked(line: str, shown: str) -> None:
    assert redact_urls(line) == shown

"""Real servers on 127.0.0.1 and the helpers every test shares.

A server here is an aiohttp application whose requests are recorded (`server.seen`), so tests can
assert on what the server saw, not only on what the client did.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from aiowget.cli import app
from aiowget.storage import META_SUFFIX, part_path, url_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body(size: int, seed: str = "") -> bytes:
    """`size` deterministic, incompressible-looking bytes."""
    block = hashlib.sha512(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass
class Server:
    """A running test server and the requests it received, in order."""

    server: TestServer
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def gets(self, path: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and path in (None, s.path)]


class ServeFactory(Protocol):
    def __call__(
        self, routes: Mapping[str, Handler], host: str = "127.0.0.1"
    ) -> Awaitable[Server]: ...


@pytest.fixture
def serve(aiohttp_server: AiohttpServer) -> ServeFactory:
    """Start a server with the given `{path: handler}` routes and record every request."""

    async def start(routes: Mapping[str, Handler], host: str = "127.0.0.1") -> Server:
        seen: list[Seen] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            seen.append(Seen(request.method, request.path, dict(request.headers)))
            return await handler(request)

        application = web.Application(middlewares=[record])
        for path, handler in routes.items():
            application.router.add_get(path, handler)
        return Server(await aiohttp_server(application, host=host), seen)

    return start


def static(content: bytes, **headers: str) -> Handler:
    """A well-behaved handler that serves `content`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content, headers=headers)

    return handler


FILES = {f"/files/f{i}.bin": body(1000 * i + 7, f"f{i}") for i in range(1, 6)}


@pytest.fixture
async def files_server(serve: ServeFactory) -> Server:
    """A well-behaved server with a few files of different sizes under /files/."""
    return await serve({path: static(content) for path, content in FILES.items()})


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: bytes
    stderr: str


async def run_cli(*args: str | Path, stdin: bytes | None = None) -> CliResult:
    """The CLI in a worker thread (it runs its own event loop) while the test loop serves."""
    runner = CliRunner()
    argv = [str(arg) for arg in args]
    result = await asyncio.to_thread(runner.invoke, app, argv, input=stdin, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout_bytes, result.stderr)


async def run_process(
    *args: str | Path, stdin: bytes = b"", limit: float | None = None
) -> CliResult:
    """aiowget as a real process (`python -m aiowget`), with real pipes; killed, and the test
    failed, if it outlives `limit` seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiowget",
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), limit)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"aiowget {' '.join(map(str, args))} still running after {limit} s")
    assert process.returncode is not None
    return CliResult(process.returncode, stdout, stderr.decode())


RawFactory = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def raw_server() -> AsyncIterator[RawFactory]:
    """A socket server that answers every request with the exact bytes given, then closes:
    for responses that aiohttp's own server refuses to send."""
    servers: list[asyncio.Server] = []

    async def start(response: bytes) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@dataclass
class Proxy:
    """An HTTP proxy that answers every request itself ("via proxy"), recording the absolute
    URL it was asked for and the Proxy-Authorization it got."""

    server: Server
    asked: list[str] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)

    def url(self) -> str:
        return self.server.url("/")


@pytest.fixture
async def proxy(serve: ServeFactory) -> Proxy:
    asked: list[str] = []
    credentials: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        asked.append(str(request.url))  # a proxy is asked for the absolute URL
        credentials.append(request.headers.get("Proxy-Authorization", ""))
        return web.Response(body=b"via proxy")

    return Proxy(await serve({"/{tail:.*}": forward}), asked, credentials)


# Working files, as the README's "Files on disk" describes them ------------------------------


def meta_path(final: Path) -> Path:
    """The sidecar of the `.part` of `final`."""
    return part_path(final).with_name(final.name + META_SUFFIX)


def leave_part(final: Path, url: str, content: bytes, **fields: object) -> Path:
    """What an interrupted earlier run leaves for `url`: `.part` and sidecar (validator "v1")."""
    part = part_path(final)
    part.parent.mkdir(exist_ok=True)
    part.write_bytes(content)
    record = {"key": url_key(url), "validator": '"v1"', "total": None, "segments": None}
    meta_path(final).write_text(json.dumps({**record, **fields}))
    return part


def read_meta(final: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(meta_path(final).read_text())
    return loaded


def files_in(directory: Path) -> list[str]:
    """Every file and folder below `directory`, relative, sorted: what a run left behind."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))

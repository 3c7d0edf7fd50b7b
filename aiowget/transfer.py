"""One URL: request it, stream the body to `NAME.part` through aiofiles, verify, rename.

A file under its final name is always whole: the body goes to `NAME.part` (created fresh, never
through a symlink) and is renamed only after its length checked out. On any failure, or when the
task is cancelled, the `.part` is removed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import aiofiles
import aiofiles.os
import aiohttp
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from . import naming
from .errors import AiowgetError, ContentTooShortError, LocalIOError, map_errors
from .models import Event, Finished, IfExists, Job, Naming, Options, Outcome, Result, Started
from .policy import check_complete, check_status, check_url, expected_length, origin

__all__ = ["Context", "ensure_directory", "transfer"]

# Network chunks are gathered into writes of about this size: every aiofiles call is a hop to
# a worker thread, and small writes cost more in hops than in bytes (NOTES-aiohttp.md).
WRITE_SIZE = 1 << 20
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Context:
    """What every transfer of one `Downloader` shares."""

    session: aiohttp.ClientSession
    options: Options
    names: naming.NameRegistry
    host_slot: Callable[[str], AbstractAsyncContextManager[None]]
    directory_ready: Callable[[], Awaitable[None]]
    emit: Callable[[Event], Awaitable[None]]


class Sink(Protocol):
    async def write(self, data: bytes | bytearray) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


async def transfer(job: Job, ctx: Context, stream: IO[bytes] | None = None) -> Result:
    """Fetch one job and report it; never raises for the URL's own failures."""
    attempt = _Transfer(job, ctx)
    started = time.monotonic()
    try:
        with map_errors():
            outcome = await attempt.run(stream)
        result = attempt.result(outcome, started)
    except AiowgetError as error:
        result = attempt.result(Outcome.FAILED, started, error)
    await ctx.emit(Finished(result))
    return result


class _Transfer:
    def __init__(self, job: Job, ctx: Context) -> None:
        self.job = job
        self.ctx = ctx
        self.path: Path | None = job.path
        self.status: int | None = None
        self.size = 0
        self.note = ""

    def result(self, outcome: Outcome, started: float, error: AiowgetError | None = None) -> Result:
        return Result(
            url=self.job.url,
            path=self.path,
            outcome=outcome,
            error=error,
            size=self.size,
            status=self.status,
            elapsed=time.monotonic() - started,
            note=self.note,
        )

    async def run(self, stream: IO[bytes] | None) -> Outcome:
        if self.job.problem is not None:
            raise self.job.problem
        url = check_url(self.job.url)
        named_by_server = stream is None and self._named_by_server()
        if stream is None and not named_by_server and not await self._choose_path(self._name()):
            return Outcome.SKIPPED
        async with self.ctx.host_slot(origin(url)), self._get(url) as response:
            self.status = response.status
            check_status(response.status, response.reason or "")
            expected = expected_length(response.headers)
            if named_by_server and not await self._choose_path(self._server_name(response)):
                return Outcome.SKIPPED
            sink = StreamSink(stream) if stream is not None else await FileSink.create(self.path)
            await self.ctx.emit(Started(url, self.path, expected))
            await self._save(response, sink, expected)
        return Outcome.SAVED

    def _named_by_server(self) -> bool:
        return (
            self.job.path is None and self.job.name is None and self.ctx.options.content_disposition
        )

    def _name(self) -> str:
        if self.job.name is not None:
            return self.job.name
        if self.ctx.options.naming is Naming.BASENAME:
            return naming.basename_name(self.job.url)
        return naming.flat_name(self.job.url)

    def _server_name(self, response: aiohttp.ClientResponse) -> str:
        header = response.headers.get("Content-Disposition")
        suggested = naming.disposition_name(header) if header else None
        return suggested or self._name()

    async def _choose_path(self, name: str) -> bool:
        """Set `self.path` for `name`; False when the job is to be skipped."""
        if self.job.path is not None:
            return await self._may_write(self.job.path)
        await self.ctx.directory_ready()
        claimed, duplicate = self.ctx.names.claim(name, self.job.url)
        self.path = self.ctx.options.directory / claimed
        if duplicate:
            self.note = "duplicate URL, fetched once"
            return False
        if self.ctx.options.if_exists is IfExists.RENAME and await _exists(self.path):
            self.path = await self._numbered_path(claimed)
        return await self._may_write(self.path)

    async def _may_write(self, path: Path) -> bool:
        if self.ctx.options.if_exists is IfExists.SKIP and await _exists(path):
            self.note = "already there"
            return False
        return True

    async def _numbered_path(self, name: str) -> Path:
        for candidate in naming.numbered_names(name):
            claimed, _ = self.ctx.names.claim(candidate, self.job.url)
            path = self.ctx.options.directory / claimed
            if claimed == candidate and not await _exists(path):
                return path
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, url: str) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        options = self.ctx.options
        headers = {"User-Agent": options.user_agent, **options.headers}
        # Bodies are stored exactly as served: no transparent decompression (NOTES-aiohttp.md).
        headers["Accept-Encoding"] = "identity"
        return self.ctx.session.get(
            url,
            headers=headers,
            allow_redirects=options.max_redirects > 0,
            # aiohttp gives up when the count of redirects *reaches* its limit.
            max_redirects=options.max_redirects + 1,
            auto_decompress=False,
            # No total timeout: a long but steady transfer must never be cut (aiohttp #2249).
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=options.connect_timeout, sock_read=options.timeout
            ),
        )

    async def _save(
        self, response: aiohttp.ClientResponse, sink: Sink, expected: int | None
    ) -> None:
        try:
            await self._copy(response.content, sink, expected)
            check_complete(self.size, expected)
            await sink.commit()
        except BaseException:
            await sink.abort()
            raise

    async def _copy(self, body: aiohttp.StreamReader, sink: Sink, expected: int | None) -> None:
        buffer = bytearray()
        try:
            async for chunk in body.iter_any():
                buffer += chunk
                if len(buffer) >= WRITE_SIZE:
                    await self._flush(sink, buffer)
                    buffer = bytearray()
        except aiohttp.ClientPayloadError:
            raise ContentTooShortError(self.size + len(buffer), expected) from None
        if buffer:
            await self._flush(sink, buffer)

    async def _flush(self, sink: Sink, data: bytearray) -> None:
        await sink.write(data)
        self.size += len(data)


class FileSink:
    """Writes to `NAME.part` and renames it to `NAME` on commit."""

    def __init__(self, path: Path, file: AsyncBufferedIOBase) -> None:
        self.path = path
        self.part = _part_path(path)
        self._file = file

    @classmethod
    async def create(cls, path: Path | None) -> FileSink:
        assert path is not None
        part = _part_path(path)
        # The open goes on in its thread even if this task is cancelled meanwhile: wait for it
        # then, and undo it, so that no file is left open and no .part behind.
        opening = asyncio.ensure_future(aiofiles.open(part, "wb", opener=_create_fresh))
        try:
            return cls(path, await asyncio.shield(opening))
        except asyncio.CancelledError:
            await asyncio.wait({opening})
            if not opening.cancelled() and opening.exception() is None:
                await cls(path, opening.result()).abort()
            raise

    async def write(self, data: bytes | bytearray) -> None:
        await self._file.write(data)

    async def commit(self) -> None:
        await self._file.close()
        # Replaces whatever is at the final name, a planted symlink included: never follows it.
        await aiofiles.os.replace(self.part, self.path)

    async def abort(self) -> None:
        # Shielded so that a second cancellation cannot leave a half-written .part behind.
        await asyncio.shield(self._discard())

    async def _discard(self) -> None:
        await self._file.close()
        with suppress(FileNotFoundError):
            await aiofiles.os.remove(self.part)


class StreamSink:
    """Writes to an open binary stream, such as stdout for `-O -`, off the event loop."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    async def write(self, data: bytes | bytearray) -> None:
        await asyncio.to_thread(self._stream.write, data)

    async def commit(self) -> None:
        await asyncio.to_thread(self._stream.flush)

    async def abort(self) -> None:
        await asyncio.to_thread(self._stream.flush)


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def _create_fresh(path: str, flags: int) -> int:
    """Open a new `.part` for writing without following a symlink planted at its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        os.unlink(path)  # a .part of an earlier attempt (or a symlink): start afresh
        return os.open(path, flags, 0o666)


async def _exists(path: Path) -> bool:
    # lexists: a dangling symlink at the final name counts as there, and is never followed.
    return await asyncio.to_thread(os.path.lexists, path)


async def ensure_directory(directory: Path) -> None:
    """Create `directory` when missing; `LocalIOError` naming it when it cannot be used."""
    try:
        await aiofiles.os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(f"cannot use directory {directory}: {exc.strerror or exc}") from None
    if not await aiofiles.os.access(directory, os.W_OK | os.X_OK):
        raise LocalIOError(f"cannot write to directory {directory}: Permission denied")

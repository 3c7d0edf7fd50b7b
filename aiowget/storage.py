"""Where a body lands: `NAME.part` with its sidecar, renamed to `NAME` once whole; or a stream.

The sidecar `NAME.part.meta` (JSON, written atomically before the first byte) remembers the
URL, the validator (ETag or Last-Modified) and the total length of the file the `.part` holds,
so that a later attempt or run can ask for the rest with `Range` and `If-Range`. Files here are
opened without following symlinks; every file operation runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeVar

import aiofiles.os
import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from .errors import LocalIOError, ProtocolError
from .models import PartState

__all__ = [
    "META_SUFFIX",
    "PART_SUFFIX",
    "PartFile",
    "Sink",
    "StreamSink",
    "ensure_directory",
    "exists",
]

T = TypeVar("T")

PART_SUFFIX = ".part"
META_SUFFIX = ".part.meta"
_READ_SIZE = 1 << 20
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Hasher(Protocol):
    def update_now(self, data: bytes, /) -> None: ...


class Sink(Protocol):
    """What a transfer writes to. `offset` is how many bytes it holds already."""

    offset: int
    state: PartState | None

    async def begin(self, state: PartState, from_zero: bool) -> None: ...
    async def write(self, data: bytes | bytearray) -> None: ...
    async def hash_into(self, hasher: Hasher, start: int) -> None: ...
    async def restart(self) -> None: ...
    async def commit(self) -> None: ...
    async def release(self, keep: bool) -> None: ...


class PartFile:
    """The `.part` (and sidecar) of one final path."""

    def __init__(self, path: Path, offset: int = 0, state: PartState | None = None) -> None:
        self.path = path
        self.part = path.with_name(path.name + PART_SUFFIX)
        self.meta = path.with_name(path.name + META_SUFFIX)
        self.offset = offset
        self.state = state
        self._file: AsyncBufferedIOBase | None = None
        self._fd: int | None = None  # for positional writes of a split download
        self._committed = False
        self._touched = True  # unless probed: there may be a .part or sidecar to remove

    @classmethod
    async def probe(cls, path: Path, url: str, resume: bool) -> tuple[bool, PartFile]:
        """In one hop: whether the final file is there, and the `.part` an earlier run left
        for `url` (when `resume`), or an empty one."""
        sink = cls(path)
        there, sink.offset, sink.state = await asyncio.to_thread(_probe, sink, url, resume)
        sink._touched = sink.state is not None
        return there, sink

    async def begin(self, state: PartState, from_zero: bool) -> None:
        """Open for writing, from the first byte or appending at `offset`."""
        await self._close()
        self._touched = True
        if from_zero:
            self.offset = 0
        if from_zero or state != self.state:
            await asyncio.to_thread(_write_meta, self.meta, state)
        self.state = state
        self._file = await _open_shielded(self.part, None if from_zero else self.offset)

    async def write(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        await self._file.write(data)
        self.offset += len(data)

    async def write_whole(self, data: bytes | bytearray) -> None:
        """A small body, complete and verified: .part, write, rename, in one thread hop.

        Small files dominate many-file jobs, and every hop costs more than the bytes do
        (NOTES-aiohttp.md); such a body is fetched again rather than resumed."""
        await self._close()
        _, cancelled = await _to_completion(
            asyncio.to_thread(_write_whole, self.part, self.path, self.meta, data)
        )
        self.offset, self._committed = len(data), True
        if cancelled:
            raise asyncio.CancelledError

    async def begin_split(self, state: PartState, fresh: bool) -> None:
        """Open for writes at any offset: a new .part of the total size, or the one to resume."""
        assert state.total is not None
        await self._close()
        self._touched = True
        await self.save(state)
        fd, cancelled = await _to_completion(
            asyncio.to_thread(_open_sized, self.part, state.total if fresh else None)
        )
        self._fd = fd
        self.offset = state.total  # the file spans it all; the sidecar says what is filled
        if cancelled:
            raise asyncio.CancelledError

    async def write_at(self, offset: int, data: bytes | bytearray) -> None:
        assert self._fd is not None
        # Never left running when cancelled: the descriptor is closed afterwards, and its
        # number could be handed to another file while a write still held it.
        _, cancelled = await _to_completion(
            asyncio.to_thread(_write_all_at, self._fd, data, offset)
        )
        if cancelled:
            raise asyncio.CancelledError

    async def save(self, state: PartState) -> None:
        """Record `state` in the sidecar (atomically)."""
        await asyncio.to_thread(_write_meta, self.meta, state)
        self.state = state

    async def hash_into(self, hasher: Hasher, start: int) -> None:
        """Feed bytes `start`..`offset` of the .part to `hasher` (to resume a checksum)."""
        await asyncio.to_thread(_hash_range, self.part, hasher, start, self.offset)

    async def restart(self) -> None:
        """Forget what the .part holds: the next request starts from the first byte."""
        await self._release(keep=False)
        self.offset, self.state = 0, None

    async def commit(self) -> None:
        if self._committed:
            return
        await self._close()
        # Replaces whatever is at the final name, a planted symlink included: never follows it.
        await aiofiles.os.replace(self.part, self.path)
        await _remove(self.meta)

    async def release(self, keep: bool) -> None:
        """Close; keep the .part and sidecar for a later resume, or remove both."""
        # Run to its end even when cancelled again: no file left open or half removed.
        _, cancelled = await _to_completion(self._release(keep))
        if cancelled:
            raise asyncio.CancelledError

    async def _release(self, keep: bool) -> None:
        await self._close()
        if not keep and self._touched:  # nothing was written: nothing to remove
            await _remove(self.part)
            await _remove(self.meta)

    async def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _, cancelled = await _to_completion(asyncio.to_thread(os.close, fd))
            if cancelled:
                raise asyncio.CancelledError
        if self._file is not None:
            file, self._file = self._file, None
            # A cancelled hop that has not reached its thread never runs: the close must.
            _, cancelled = await _to_completion(file.close())
            if cancelled:
                raise asyncio.CancelledError


class StreamSink:
    """An open binary stream, such as stdout for `-O -`, written off the event loop."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.offset = 0
        self.state: PartState | None = None

    async def begin(self, state: PartState, from_zero: bool) -> None:
        if from_zero and self.offset:
            raise ProtocolError("the server sent the file again from its start")
        self.state = state

    async def write(self, data: bytes | bytearray) -> None:
        await asyncio.to_thread(self._stream.write, data)
        self.offset += len(data)

    async def hash_into(self, hasher: Hasher, start: int) -> None:
        # Everything written to a stream was hashed on the way: nothing to catch up.
        assert start == self.offset

    async def restart(self) -> None:
        if self.offset:
            raise ProtocolError("the server cannot resume, and standard output cannot rewind")

    async def commit(self) -> None:
        await asyncio.to_thread(self._stream.flush)

    async def release(self, keep: bool) -> None:
        await asyncio.to_thread(self._stream.flush)


async def ensure_directory(directory: Path) -> None:
    """Create `directory` when missing; `LocalIOError` naming it when it cannot be used."""
    try:
        await aiofiles.os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(f"cannot use directory {directory}: {exc.strerror or exc}") from None
    if not await aiofiles.os.access(directory, os.W_OK | os.X_OK):
        raise LocalIOError(f"cannot write to directory {directory}: Permission denied")


async def exists(path: Path) -> bool:
    # lexists: a dangling symlink at the final name counts as there, and is never followed.
    return await asyncio.to_thread(os.path.lexists, path)


async def _open_shielded(part: Path, append_at: int | None) -> AsyncBufferedIOBase:
    # An open under way in its thread finishes even if this task is cancelled meanwhile; then
    # the file is closed at once, so that none is ever left open.
    raw, cancelled = await _to_completion(asyncio.to_thread(_open_part, part, append_at))
    if cancelled:
        raw.close()
        raise asyncio.CancelledError
    wrapped: AsyncBufferedIOBase = aiofiles.threadpool.wrap(raw)
    return wrapped


async def _to_completion(work: Awaitable[T]) -> tuple[T, bool]:
    """Run `work` to its end through any number of cancellations; say if one came."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return task.result(), cancelled


def _open_part(part: Path, append_at: int | None) -> BinaryIO:
    def opener(path: str, flags: int) -> int:
        return _open_fresh(path) if append_at is None else _open_at(path, append_at)

    return open(part, "ab", opener=opener)


def _open_fresh(path: str) -> int:
    """A new, empty .part; an old one (or a symlink planted there) is replaced, not followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o666)


def _open_at(path: str, offset: int) -> int:
    """The existing .part, cut to `offset` bytes; append mode then writes from there."""
    fd = os.open(path, os.O_WRONLY | _NOFOLLOW)
    try:
        os.ftruncate(fd, offset)
    except OSError:
        os.close(fd)
        raise
    return fd


def _open_sized(part: Path, total: int | None) -> int:
    """The .part for positional writes: new and `total` bytes long, or the existing one."""
    if total is None:
        return os.open(part, os.O_WRONLY | _NOFOLLOW)
    fd = _open_fresh(str(part))
    os.ftruncate(fd, total)
    return fd


def _write_whole(part: Path, final: Path, meta: Path, data: bytes | bytearray) -> None:
    fd = _open_fresh(str(part))
    try:
        _write_all_at(fd, data, 0)
    finally:
        os.close(fd)
    os.replace(part, final)
    with suppress(FileNotFoundError):
        os.unlink(meta)  # left by an earlier run that was cut short


def _write_all_at(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _probe(sink: PartFile, url: str, resume: bool) -> tuple[bool, int, PartState | None]:
    # lexists: a dangling symlink at the final name counts as there, and is never followed.
    there = os.path.lexists(sink.path)
    offset, state = _read_existing(sink, url) if resume else (0, None)
    return there, offset, state


def _read_existing(sink: PartFile, url: str) -> tuple[int, PartState | None]:
    try:
        info = os.lstat(sink.part)
        with open(sink.meta, "rb", opener=lambda p, f: os.open(p, os.O_RDONLY | _NOFOLLOW)) as f:
            fields: dict[str, Any] = json.loads(f.read(1 << 20))
        segments = fields.get("segments")
        state = PartState(
            url=fields["url"],
            validator=fields["validator"],
            total=fields["total"],
            segments=None if segments is None else tuple(map(_segment, segments)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return 0, None
    if not stat.S_ISREG(info.st_mode) or state.url != url:
        return 0, None
    return info.st_size, state


def _segment(fields: list[int]) -> tuple[int, int, int]:
    start, end, done = (int(f) for f in fields)
    if not 0 <= done <= end - start + 1:
        raise ValueError("segment progress out of range")
    return start, end, done


def _write_meta(meta: Path, state: PartState) -> None:
    """Written to a fresh temporary file, then renamed: a reader sees all of it or none."""
    temporary = meta.with_name(meta.name + ".tmp")
    with open(temporary, "wb", opener=lambda p, f: _open_fresh(p)) as file:
        file.write(json.dumps(asdict(state)).encode())
    os.replace(temporary, meta)


def _hash_range(part: Path, hasher: Hasher, start: int, end: int) -> None:
    with open(part, "rb", opener=lambda p, f: os.open(p, os.O_RDONLY | _NOFOLLOW)) as file:
        file.seek(start)
        left = end - start
        while left > 0 and (block := file.read(min(_READ_SIZE, left))):
            hasher.update_now(block)
            left -= len(block)


async def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        await aiofiles.os.remove(path)

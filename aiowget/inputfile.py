"""Input files (`-i FILE`, `-i -`): parsed line by line (pure) and read as a stream (aiofiles).

A line holds a URL, optionally followed by `out=NAME` and `checksum=ALGO:HEX`; blank lines
and lines starting with `#` are skipped. A line that cannot be used becomes a job that fails
with the reason, so the rest of the list is still fetched.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import IO

import aiofiles
import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncBufferedIOBase, AsyncBufferedReader, AsyncFileIO

from .errors import LocalIOError, UsageError
from .models import STDIN, Checksum, Job
from .naming import safe_name
from .text import printable

__all__ = ["STDIN", "InputFile", "parse_line"]

AsyncBinaryReader = AsyncBufferedReader | AsyncBufferedIOBase | AsyncFileIO

_READ_SIZE = 1 << 16


# A line: the URL (spaces inside it kept: `http://h/a b` is fetched as /a%20b), then options.
_LINE_ENDS = re.compile(r"\r\n|\r|\n")
# Trailing `key=value` fields with no `@` (a password with a space may look like `k=v@host`).
_LINE = re.compile(r"(?P<url>.*?)(?P<options>(?:\s+[A-Za-z][A-Za-z0-9_-]*=[^\s@]*)*)\s*")


def parse_line(line: str, lineno: int) -> Job | None:
    """The job a line of an input file asks for, or None for blank lines and comments.

    Trailing `key=value` fields are options (`out=`, `checksum=`; another key is an error);
    the rest of the line, with its inner spaces, is the URL."""
    text = line.strip().lstrip("\ufeff")  # a BOM mid-file too: `cat a.txt b.txt`
    if not text or text.startswith("#"):
        return None
    match = _LINE.fullmatch(text)
    assert match is not None  # the pattern matches any text
    url, extras = match.group("url"), match.group("options").split()
    name: str | None = None
    checksum: Checksum | None = None
    try:
        for extra in extras:
            key, _, value = extra.partition("=")
            if key == "out":
                name = safe_name(value)
                if name is None:
                    raise UsageError(f"unusable out= name {printable(value)!r}")
            elif key == "checksum":
                checksum = Checksum.parse(value)
            else:
                raise UsageError(f"unknown option {printable(extra)!r}")
    except UsageError as error:
        return Job(url=url, problem=UsageError(f"line {lineno}: {error}"))
    return Job(url=url, name=name, checksum=checksum)


class InputFile:
    """An input file (or stdin for `-`), read in large blocks off the event loop.

    Opened before the run starts, so a missing or unreadable file is one clear error up front.
    A pipe, socket or terminal (on stdin, or named: a FIFO, `-i <(tail -f list)`) is read by
    the event loop itself, as lines arrive: a line typed or piped in starts at once, and Ctrl-C
    is not held up by a read that waits in a thread for input that may never come.
    """

    def __init__(self, source: str | Path, stream: AsyncBinaryReader | _Pipe) -> None:
        self.source = source
        self._stream = stream

    @classmethod
    async def open(cls, source: str | Path) -> InputFile:
        if source == STDIN:
            stdin = sys.stdin.buffer
            if _is_pipe(stdin):
                # A duplicate: closing the transport must not close the process's stdin.
                duplicate = os.fdopen(os.dup(stdin.fileno()), "rb", buffering=0)
                return cls(source, await _Pipe.open(duplicate, shares=stdin.fileno()))
            return cls(source, aiofiles.threadpool.wrap(stdin))  # `< file`: never waits
        try:
            # Opening a FIFO waits for its writer: in a thread, as every read of a file.
            file = await asyncio.to_thread(open, source, "rb", buffering=0)
        except OSError as exc:
            raise LocalIOError(f"cannot read input file {source}: {exc.strerror or exc}") from None
        if _is_pipe(file):
            return cls(source, await _Pipe.open(file))
        return cls(source, aiofiles.threadpool.wrap(file))  # reads of _READ_SIZE, in a thread

    async def jobs(self) -> AsyncIterator[Job]:
        """The jobs of the file, in order; closes it when done."""
        try:
            lineno = 0
            async for line in self._lines():
                lineno += 1
                job = parse_line(line, lineno)
                if job is not None:
                    yield job
        finally:
            await self.close()

    async def close(self) -> None:
        if isinstance(self._stream, _Pipe):
            self._stream.close()
        elif self.source != STDIN:
            await self._stream.close()

    async def _lines(self) -> AsyncIterator[str]:
        # utf-8-sig: a byte order mark (an editor on Windows) is not part of the first URL.
        # Lines end with LF, CRLF or a lone CR (old Mac); a CRLF cut between two blocks only
        # makes an empty line, which is skipped.
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        pending = ""
        while block := await self._read():
            lines = _LINE_ENDS.split(pending + decoder.decode(block))
            pending = lines.pop()
            for line in lines:
                yield line
        if tail := pending + decoder.decode(b"", final=True):
            yield tail

    async def _read(self) -> bytes:
        try:
            return await self._stream.read(_READ_SIZE)
        except OSError as exc:
            raise LocalIOError(f"cannot read input file {self.source}: {exc.strerror}") from None


def _is_pipe(stream: IO[bytes]) -> bool:
    """A pipe, socket or terminal: what the event loop can wait on. Not a regular file, an
    in-memory stream or another device (`< /dev/null`: epoll refuses it, uvloop aborts)."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


class _Pipe:
    """A pipe or terminal read by the event loop: `read` returns what has arrived."""

    def __init__(
        self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport, shares: int | None
    ) -> None:
        self._reader = reader
        self._transport = transport
        self._shares = shares

    @classmethod
    async def open(cls, pipe: IO[bytes], shares: int | None = None) -> _Pipe:
        """Reads `pipe` (closed with the transport); `shares`: the descriptor it duplicates,
        made blocking again at the end."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_SIZE)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        return cls(reader, transport, shares)

    async def read(self, size: int) -> bytes:
        return await self._reader.read(size)

    def close(self) -> None:
        self._transport.close()
        # The loop made the pipe non-blocking, and the shell that gave it to us shares it.
        if self._shares is not None:
            with suppress(OSError):
                os.set_blocking(self._shares, True)

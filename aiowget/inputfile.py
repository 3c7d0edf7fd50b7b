"""Input files (`-i FILE`, `-i -`): parsed line by line (pure) and read as a stream (aiofiles).

A line holds a URL, optionally followed by `out=NAME` and `checksum=ALGO:HEX`; blank lines
and lines starting with `#` are skipped. A line that cannot be used becomes a job that fails
with the reason, so the rest of the list is still fetched.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncBufferedIOBase, AsyncBufferedReader

from .errors import LocalIOError, UsageError
from .models import Checksum, Job
from .naming import safe_name
from .text import printable

__all__ = ["STDIN", "InputFile", "parse_line"]

AsyncBinaryReader = AsyncBufferedReader | AsyncBufferedIOBase

STDIN = "-"
_READ_SIZE = 1 << 16


def parse_line(line: str, lineno: int) -> Job | None:
    """The job a line of an input file asks for, or None for blank lines and comments."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    url, extras = fields[0], fields[1:]
    name: str | None = None
    checksum: Checksum | None = None
    try:
        for extra in extras:
            key, eq, value = extra.partition("=")
            if key == "out" and eq:
                name = safe_name(value)
                if name is None:
                    raise UsageError(f"unusable out= name {printable(value)!r}")
            elif key == "checksum" and eq:
                checksum = Checksum.parse(value)
            else:
                raise UsageError(f"unknown option {printable(extra)!r}")
    except UsageError as error:
        return Job(url=url, problem=UsageError(f"line {lineno}: {error}"))
    return Job(url=url, name=name, checksum=checksum)


class InputFile:
    """An input file (or stdin for `-`), read in large blocks off the event loop.

    Opened before the run starts, so a missing or unreadable file is one clear error up front.
    """

    def __init__(self, source: str | Path, stream: AsyncBinaryReader) -> None:
        self.source = source
        self._stream = stream

    @classmethod
    async def open(cls, source: str | Path) -> InputFile:
        if source == STDIN:
            return cls(source, aiofiles.threadpool.wrap(sys.stdin.buffer))
        try:
            return cls(source, await aiofiles.open(source, "rb"))
        except OSError as exc:
            raise LocalIOError(f"cannot read input file {source}: {exc.strerror or exc}") from None

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
        if self.source != STDIN:
            await self._stream.close()

    async def _lines(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while block := await self._read():
            lines = (pending + decoder.decode(block)).split("\n")
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

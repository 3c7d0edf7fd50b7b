"""A split download (`--split N`): ranged segments of one file, written at their offsets.

Every segment is asked for with `Range: bytes=START-END` and `If-Range`, and its answer is
appended only when it is a 206 for exactly that range of the same file (`policy.judge_segment`).
Segments go to their place in the one `.part` (no merge step); the sidecar records each
segment's progress, so a retry or a later run asks only for what is missing. Each request takes
a per-host slot like any other, and no slot is held while waiting for another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol

import aiohttp

from .errors import AiowgetError, ContentTooShortError, ProtocolError, map_errors
from .models import PartState
from .policy import Action, judge_segment
from .storage import PartFile

__all__ = ["FileChanged", "SegmentOwner", "fetch_segments"]

WRITE_SIZE = 1 << 20
# Bytes between two updates of the sidecar: what a kill -9 can lose, beside the writes in flight.
SAVE_EVERY = 1 << 20


class FileChanged(ProtocolError):
    """The server's file is not the one the segments were planned for: start over."""


class SegmentOwner(Protocol):
    """What a segment needs from the transfer it belongs to."""

    async def retry_or_raise(self, error: AiowgetError) -> None: ...
    def request(
        self, url: str, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]: ...
    async def report(self, received: int, total: int | None) -> None: ...
    async def pace(self, arrived: int) -> None: ...
    def speed_watch(self) -> AbstractAsyncContextManager[None]: ...
    def note_version(self, headers: Mapping[str, str]) -> None: ...


async def fetch_segments(
    owner: SegmentOwner, url: str, sink: PartFile, state: PartState, workers: int
) -> None:
    """Fill every segment of `state` in `sink`, with up to `workers` connections."""
    split = _Split(owner, url, sink, state)
    tasks = [asyncio.ensure_future(split.work()) for _ in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        with suppress(Exception):
            await split.save()  # what was written stays known, for the next attempt or run


class _Split:
    def __init__(self, owner: SegmentOwner, url: str, sink: PartFile, state: PartState) -> None:
        assert state.segments is not None
        self.owner, self.url, self.sink, self.state = owner, url, sink, state
        self.done = [segment[2] for segment in state.segments]
        self.pending = deque(i for i, s in enumerate(state.segments) if s[2] <= s[1] - s[0])
        self.unsaved = 0
        self.saving = asyncio.Lock()

    async def work(self) -> None:
        while self.pending:
            await self.fetch(self.pending.popleft())

    async def fetch(self, index: int) -> None:
        while True:
            try:
                with map_errors():
                    await self.attempt(index)
                return
            except FileChanged:
                raise  # the whole file starts over: not this segment's retry
            except AiowgetError as error:
                await self.owner.retry_or_raise(error)  # the transfer's one budget

    async def attempt(self, index: int) -> None:
        assert self.state.segments is not None
        start, end, _ = self.state.segments[index]
        asked = (start + self.done[index], end)
        headers = {"Range": f"bytes={asked[0]}-{asked[1]}"}
        if self.state.validator:
            headers["If-Range"] = self.state.validator
        async with self.owner.request(self.url, headers) as response:
            now = datetime.now(timezone.utc)
            reason = response.reason or ""
            action = judge_segment(
                response.status, reason, response.headers, asked, self.state, now
            )
            if action is Action.RESTART:
                raise FileChanged(f"segment {start}-{end}: not the same file any more")
            # A resumed split download has no whole response: its segments name the version.
            self.owner.note_version(response.headers)
            async with self.owner.speed_watch():
                await self.copy(index, response.content, asked)

    async def copy(self, index: int, body: aiohttp.StreamReader, asked: tuple[int, int]) -> None:
        position, end = asked
        async for data in _coalesced(body, self.owner.pace):
            if position + len(data) > end + 1:
                raise ProtocolError(f"segment ending at {end} got more bytes than it asked for")
            await self.sink.write_at(position, data)
            position += len(data)
            self.done[index] += len(data)
            await self.progress(len(data))
        if position != end + 1:  # cut short, however cleanly: retried for the rest
            raise ContentTooShortError(position - asked[0], end + 1 - asked[0])

    async def progress(self, written: int) -> None:
        await self.owner.report(sum(self.done), self.state.total)
        self.unsaved += written
        if self.unsaved >= SAVE_EVERY:  # never skipped: a save under way may predate this write
            await self.save()

    async def save(self) -> None:
        assert self.state.segments is not None
        async with self.saving:
            self.unsaved = 0
            segments = tuple(
                (start, end, done)
                for (start, end, _), done in zip(self.state.segments, self.done, strict=True)
            )
            await self.sink.save(replace(self.state, segments=segments))


async def _coalesced(
    body: aiohttp.StreamReader, pace: Callable[[int], Awaitable[None]]
) -> AsyncIterator[bytearray]:
    """The body in pieces of about `WRITE_SIZE` (fewer, larger writes), paced by the caller."""
    buffer = bytearray()
    async for chunk in body.iter_any():
        buffer += chunk
        await pace(len(chunk))
        if len(buffer) >= WRITE_SIZE:
            yield buffer
            buffer = bytearray()
    if buffer:
        yield buffer

"""A file served by a server that really misbehaves, one scripted fault per request.

`FaultyFile(content, script=[Fault(cut_after=...), Fault(ignore_range=True)])` answers its
first request with the first fault, its second with the second, and every later one like a
well-behaved server (Range, If-Range, 416). Each request is recorded with its arrival time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Fault:
    status: int = 200  # answer this status, with no body, instead of the file
    headers: dict[str, str] = field(default_factory=dict)  # added to the response
    cut_after: int | None = None  # send this many body bytes, then drop the connection
    stall_after: int | None = None  # send this many body bytes, then go silent
    trickle: tuple[int, float] | None = None  # (bytes, seconds): slow but steady
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    shift: int = 0  # answer 206 from this many bytes past the asked offset
    etag: str | None = None  # the file's ETag for this request (None: the default)
    ignore_if_range: bool = False  # serve the range even when If-Range no longer matches
    chunked: bool = False  # no Content-Length: chunked transfer encoding
    short: int = 0  # end the body cleanly this many bytes before what the headers promise
    peers: int = 0  # hold the answer until this many requests are being answered at once


@dataclass(frozen=True)
class Request:
    at: float
    range: str | None
    if_range: str | None


class FaultyFile:
    def __init__(
        self, content: bytes, script: list[Fault] | None = None, etag: str | None = '"v1"'
    ) -> None:
        self.content = content
        self.script = list(script or [])
        self.etag = etag
        self.requests: list[Request] = []
        self.release = asyncio.Event()  # ends every stall
        self.active = 0
        self.peak = 0  # the most requests answered at once

    def ranges(self) -> list[str | None]:
        return [r.range for r in self.requests]

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        fault = self.script.pop(0) if self.script else Fault()
        asked = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        self.requests.append(Request(time.monotonic(), asked, if_range))
        if fault.status != 200:
            return web.Response(status=fault.status, headers=fault.headers)
        etag = fault.etag if fault.etag is not None else self.etag
        span = self._span(asked, if_range, etag, fault)
        total = len(self.content)
        if span is not None and span[0] >= total:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        return await self._send(request, fault, etag, span)

    def _span(
        self, asked: str | None, if_range: str | None, etag: str | None, fault: Fault
    ) -> tuple[int, int] | None:
        """The (start, end) to answer with 206, or None for the whole file with 200."""
        if asked is None or fault.ignore_range or not asked.startswith("bytes="):
            return None
        if if_range is not None and if_range != etag and not fault.ignore_if_range:
            return None  # the file changed: the whole new version, as RFC 9110 says
        first, _, last = asked[len("bytes=") :].partition("-")
        end = min(int(last), len(self.content) - 1) if last else len(self.content) - 1
        return int(first) + fault.shift, end

    async def _send(
        self, request: web.Request, fault: Fault, etag: str | None, span: tuple[int, int] | None
    ) -> web.StreamResponse:
        total = len(self.content)
        body = self.content if span is None else self.content[span[0] : span[1] + 1]
        headers = {"Accept-Ranges": "bytes", **fault.headers}
        if etag is not None:
            headers["ETag"] = etag
        if not fault.chunked:
            headers["Content-Length"] = str(len(body))
        if span is not None:
            headers["Content-Range"] = f"bytes {span[0]}-{span[0] + len(body) - 1}/{total}"
        response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
        if fault.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if fault.peers:
            await self._gather_peers(fault.peers)
        await self._write(request, response, body, fault)
        return response

    async def _gather_peers(self, peers: int) -> None:
        deadline = time.monotonic() + 10
        while self.peak < peers:
            assert time.monotonic() < deadline, f"never {peers} requests at once"
            await asyncio.sleep(0.005)

    async def _write(
        self, request: web.Request, response: web.StreamResponse, body: bytes, fault: Fault
    ) -> None:
        if fault.trickle is not None:
            size, pause = fault.trickle
            for offset in range(0, len(body), size):
                await response.write(body[offset : offset + size])
                await asyncio.sleep(pause)
        elif fault.cut_after is not None:
            await response.write(body[: fault.cut_after])
            assert request.transport is not None
            request.transport.close()
        elif fault.stall_after is not None:
            await response.write(body[: fault.stall_after])
            await self.release.wait()
        else:
            await response.write(body[: len(body) - fault.short])
        await response.write_eof()

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

    def ranges(self) -> list[str | None]:
        return [r.range for r in self.requests]

    async def handler(self, request: web.Request) -> web.StreamResponse:
        fault = self.script.pop(0) if self.script else Fault()
        asked = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        self.requests.append(Request(time.monotonic(), asked, if_range))
        if fault.status != 200:
            return web.Response(status=fault.status, headers=fault.headers)
        etag = fault.etag if fault.etag is not None else self.etag
        start = self._start(asked, if_range, etag, fault)
        total = len(self.content)
        if start is not None and start >= total:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        return await self._send(request, fault, etag, start)

    def _start(
        self, asked: str | None, if_range: str | None, etag: str | None, fault: Fault
    ) -> int | None:
        if asked is None or fault.ignore_range or not asked.startswith("bytes="):
            return None
        if if_range is not None and if_range != etag and not fault.ignore_if_range:
            return None  # the file changed: the whole new version, as RFC 9110 says
        return int(asked[len("bytes=") :].split("-")[0]) + fault.shift

    async def _send(
        self, request: web.Request, fault: Fault, etag: str | None, start: int | None
    ) -> web.StreamResponse:
        total = len(self.content)
        body = self.content[start or 0 :]
        headers = {"Accept-Ranges": "bytes", **fault.headers}
        if etag is not None:
            headers["ETag"] = etag
        if not fault.chunked:
            headers["Content-Length"] = str(len(body))
        if start is not None:
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        response = web.StreamResponse(status=206 if start is not None else 200, headers=headers)
        if fault.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await self._write(request, response, body, fault)
        return response

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
            await response.write(body)
        await response.write_eof()

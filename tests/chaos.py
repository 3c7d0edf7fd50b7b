"""A seeded chaos server: many files, and about one request in five broken (issue #14).

`ChaosServer(files=2000, seed=7).application()` serves `/chaos/0.bin` ... `/chaos/1999.bin`,
sizes mixed (empty and tiny, a few KiB, up to 1 MiB, and one in `big_every` just over 1 MiB,
which aiowget streams and resumes). A request that is not broken is answered as a
well-behaved server would: a strong ETag, Range honoured (206), If-Range honoured (a changed
file is sent whole with 200), 416 past the end. A broken one gets one fault (`KINDS`):

- `cut`: the connection is closed after a random number of bytes, short of the whole body
  (maybe before the headers);
- `stall`: a random number of bytes, then silence until the client hangs up (its `-T`);
- `busy`: 503 with `Retry-After: 0` or `1`;
- `ignore_range`: the whole file with 200 to a Range request (only to Range requests);
- `new_version`: the file changes for good: a new ETag, new content and a new length, and
  this request is answered from the new version (a Range with the old ETag in If-Range gets it
  whole, as RFC 9110 says).

So "byte-identical" means: each final file equals the version the server serves at the end
(`current`), which is the version of the last response it gave for that path.

Every decision about the n-th request for a path comes from `random.Random(f"{seed}:{path}:{n}")`,
and sizes from the seed and the path: the faults a file meets do not depend on how requests
interleave, so a seed replays a failure (only timing, such as a request that times out on a
loaded machine, can differ). The server counts requests, faults by kind and statuses.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

KINDS = ("cut", "stall", "busy", "ignore_range", "new_version")
FAILING = frozenset({"cut", "stall", "busy"})  # the kinds that fail the request they hit
RATE = 0.2  # the share of requests broken
MIB = 1 << 20
BIG_EVERY = 10  # one file in ten is over 1 MiB
STALL_LIMIT = 120.0  # seconds a stall waits for the client to hang up before closing itself


def base_size(seed: int, index: int, big_every: int) -> int:
    """The size of version 0 of file `index`: one in `big_every` over 1 MiB (streamed and
    resumed by aiowget), the rest at most 1 MiB (read whole): tiny, a few KiB, or up to 1 MiB."""
    draw = random.Random(f"{seed}:size:{index}")
    if index % big_every == big_every // 2:
        return draw.randint(MIB + 1, MIB + MIB // 4)
    tier = draw.choices(("tiny", "kib", "large"), weights=(45, 47, 8))[0]
    if tier == "tiny":
        return draw.randint(0, 256)
    if tier == "kib":
        return draw.randint(1024, 16 * 1024)
    return int(16 * 1024 * 64 ** draw.random())  # 16 KiB to 1 MiB, log-uniform


@functools.lru_cache(maxsize=64)
def content(seed: int, path: str, version: int, size: int) -> bytes:
    """Bytes that differ at every offset and between versions, so a byte written at the wrong
    place or from another version shows."""
    return hashlib.shake_256(f"{seed}:{path}:{version}".encode()).digest(size)


def request_bound(files: int, rate: float = RATE) -> int:
    """The most requests a run over `files` files may take. At most `rate` of requests fail
    (only three of the five kinds of fault do), and each failure costs its file exactly one
    more request, so a file takes a geometric number of requests: mean 1 / (1 - rate),
    variance rate / (1 - rate)^2. The bound is the sum's mean plus six standard deviations.
    With the real failing share (0.12 to 0.15) the expected count is well below it (2,353
    against 2,650 at 2,000 files): room for requests that time out only because the machine
    is loaded."""
    mean = files / (1 - rate)
    deviation = math.sqrt(files * rate) / (1 - rate)
    return math.ceil(mean + 6 * deviation)


@dataclass(frozen=True)
class Plan:
    """What a request gets: a status, the body to send, and the headers."""

    status: int
    body: bytes
    headers: dict[str, str]


class ChaosServer:
    def __init__(
        self, files: int, seed: int, rate: float = RATE, big_every: int = BIG_EVERY
    ) -> None:
        self.seed = seed
        self.rate = rate
        self.paths = [f"/chaos/{index}.bin" for index in range(files)]
        self._sizes = {path: base_size(seed, i, big_every) for i, path in enumerate(self.paths)}
        self.versions: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()  # requests per path
        self.faults: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    @property
    def requests(self) -> int:
        return self.by_path.total()

    @property
    def failing_faults(self) -> int:
        return sum(self.faults[kind] for kind in FAILING)

    def current(self, path: str) -> bytes:
        """The version of `path` served now: what a final file must equal."""
        version = self.versions[path]
        return content(self.seed, path, version, self._sizes[path] + 17 * version)

    def etag(self, path: str) -> str:
        return f'"{self.seed}-{path.rsplit("/", 1)[-1]}-v{self.versions[path]}"'

    def application(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/chaos/{name}", self.handler)
        return application

    async def handler(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path not in self._sizes:
            raise web.HTTPNotFound()
        draw = random.Random(f"{self.seed}:{path}:{self.by_path[path]}")
        self.by_path[path] += 1
        ranged = "Range" in request.headers
        fault = self._fault(draw, ranged)
        if fault is not None:
            self.faults[fault] += 1
        if fault == "busy":
            return self._answer(Plan(503, b"", {"Retry-After": str(draw.randint(0, 1))}))
        if fault == "new_version":
            self.versions[path] += 1
        plan = self._plan(path, request, honour_range=fault != "ignore_range")
        if fault in ("cut", "stall"):
            return await self._break(request, plan, fault, draw.randrange(-1, len(plan.body)))
        return self._answer(plan)

    def _fault(self, draw: random.Random, ranged: bool) -> str | None:
        if draw.random() >= self.rate:
            return None
        # Ignoring a Range that was not asked for would change nothing: not offered.
        return draw.choice([kind for kind in KINDS if ranged or kind != "ignore_range"])

    def _plan(self, path: str, request: web.Request, honour_range: bool) -> Plan:
        data, etag = self.current(path), self.etag(path)
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        asked = request.headers.get("Range", "") if honour_range else ""
        if_range = request.headers.get("If-Range")
        span = parse_range(asked, len(data)) if if_range in (None, etag) else None
        if span is None:
            return Plan(200, data, headers)
        start, end = span
        if start >= len(data):
            return Plan(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Plan(206, data[start : end + 1], headers)

    def _answer(self, plan: Plan) -> web.Response:
        self.statuses[plan.status] += 1
        return web.Response(status=plan.status, body=plan.body, headers=plan.headers)

    async def _break(
        self, request: web.Request, plan: Plan, fault: str, after: int
    ) -> web.StreamResponse:
        """Send the headers and `after` bytes of the body (nothing at all when `after` is -1;
        always short of the whole body), then hang up (`cut`) or go silent until the client
        does (`stall`). An empty body is always broken before its headers."""
        response = web.StreamResponse(status=plan.status, headers=plan.headers)
        response.content_length = len(plan.body)
        if after >= 0:
            self.statuses[plan.status] += 1
            await response.prepare(request)
            await response.write(plan.body[:after])
        if fault == "stall":
            await until_hung_up(request, STALL_LIMIT)
        if request.transport is not None:
            request.transport.close()
        return response  # aiohttp finds the connection closed and lets it go


def parse_range(asked: str, total: int) -> tuple[int, int] | None:
    """`bytes=A-` or `bytes=A-B` as (first, last); None for no Range or one not understood
    (answered with the whole file, as servers do)."""
    if not asked.startswith("bytes="):
        return None
    first, dash, last = asked[len("bytes=") :].partition("-")
    if not dash or not first.isdigit() or not (last.isdigit() or last == ""):
        return None
    end = min(int(last), total - 1) if last else total - 1
    return int(first), end


async def until_hung_up(request: web.Request, limit: float) -> None:
    """Wait until the client closes the connection, at most `limit` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


# Checking a run ---------------------------------------------------------------------------------


def records_of(stdout: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `--json` stream: the per-URL records and the summary."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [line for line in lines if not line.get("summary")], lines[-1] if lines else {}


@dataclass
class Check:
    """What a finished run left: how many files are exactly the server's current version, and
    everything wrong (URLs not saved, files not current, anything left beside the files)."""

    exact: int = 0
    problems: list[str] = field(default_factory=list)


def check_run(
    chaos: ChaosServer, directory: Path, urls: Iterable[str], records: Iterable[Mapping[str, Any]]
) -> Check:
    check = Check()
    saved: dict[str, Path] = {}
    for record in records:
        if record["outcome"] != "saved":
            check.problems.append(f"{record['url']}: {record['outcome']}, {record['error']}")
        else:
            saved[record["url"]] = Path(record["path"])
    for url in urls:
        path = saved.get(url)
        if path is None:
            check.problems.append(f"{url}: no saved record")
        elif path.is_file() and path.read_bytes() == chaos.current(urlsplit(url).path):
            check.exact += 1
        else:
            check.problems.append(f"{url}: {path.name} is not the server's current version")
    expected = {path.resolve() for path in saved.values()}
    for left in sorted(directory.rglob("*")):
        if left.is_file() and left.resolve() not in expected:
            check.problems.append(f"left behind: {left.relative_to(directory)}")
    work = directory / ".aiowget"
    if work.exists() and any(work.iterdir()):
        check.problems.append(f"{work} is not empty")
    return check

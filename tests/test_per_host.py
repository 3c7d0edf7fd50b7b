"""`--per-host auto` (issue #16) against real servers that push back: 429s
beyond a number of requests at once, resets, a Retry-After that pauses the whole origin."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

import aiowget

from .conftest import CliResult, ServeFactory, Server, body, run_process

LIMIT = 60  # seconds: a run still going then has been held


Refusal = Callable[[web.Request], web.StreamResponse]


async def fetch_list(urls: list[str], directory: Path, *flags: str) -> CliResult:
    """The command line over `urls` given on standard input (the default `--per-host auto`
    unless `flags` say otherwise)."""
    listing = "".join(f"{url}\n" for url in urls).encode()
    return await run_process(*flags, "-i", "-", "-P", directory, stdin=listing, limit=LIMIT)


def too_many(request: web.Request) -> web.StreamResponse:
    return web.Response(status=429, headers={"Retry-After": "1"})


def unavailable(request: web.Request) -> web.StreamResponse:
    return web.Response(status=503)


def reset(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()  # no answer at all
    raise ConnectionResetError


class Crowd:
    """A server's handler that answers each request after `delay` seconds with `size` bytes,
    refuses any request beyond `beyond` in flight (with `refuse`), and counts what it saw."""

    def __init__(
        self, *, delay: float = 0.05, beyond: int | None = None, refuse: Refusal = too_many
    ) -> None:
        self.delay, self.beyond, self.refuse = delay, beyond, refuse
        self.now = 0
        self.peak = 0
        self.refused = 0
        self.answered = 0
        self.arrivals: list[float] = []
        self.crowded: dict[int, float] = {}  # when each number at once was first reached

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.crowded.setdefault(self.now, time.monotonic())
        try:
            if self.beyond is not None and self.now > self.beyond:
                self.refused += 1
                return self.refuse(request)
            await asyncio.sleep(self.delay)
            self.answered += 1
            return web.Response(body=body(1000, seed=request.match_info["n"]))
        finally:
            self.now -= 1


async def test_a_server_refusing_beyond_three_at_once_is_met_politely(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Issue #16 test 1: 429 (Retry-After: 1) whenever more than 3 are in flight. `auto`
    finishes all, with at most 5% of its requests refused, not much slower than the oracle."""
    crowd = Crowd(beyond=3, refuse=too_many)

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(300)]

    started = time.monotonic()
    auto = await asyncio.wait_for(
        aiowget.download(urls, tmp_path / "auto", jobs=16, per_host="auto"), LIMIT
    )
    auto_time = time.monotonic() - started
    requests, refused = crowd.refused + crowd.answered, crowd.refused
    started = time.monotonic()
    fixed = await asyncio.wait_for(
        aiowget.download(urls, tmp_path / "three", jobs=16, per_host=3), LIMIT
    )
    oracle_time = time.monotonic() - started

    assert not auto.failed
    assert not fixed.failed
    assert refused <= 0.05 * requests, (refused, requests)
    # The bound is 1.3 (checked in `make bench`); a shared machine gets some slack.
    assert auto_time <= 1.6 * oracle_time, (auto_time, oracle_time)


async def test_a_retry_after_pauses_the_whole_origin(serve: ServeFactory, tmp_path: Path) -> None:
    """Issue #16 test 5: a `Retry-After: 2` on one 503: no request to that origin for 2 s,
    not only no retry of the URL that got it."""
    arrivals: list[float] = []
    told: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        if request.match_info["n"] == "0" and not told:
            told.append(time.monotonic())
            return web.Response(status=503, headers={"Retry-After": "2"})
        await asyncio.sleep(0.01)
        return web.Response(body=b"x")

    server = await serve({"/{n}": handler})
    urls = [server.url(f"/{n}") for n in range(20)]

    results = await asyncio.wait_for(
        aiowget.download(urls, tmp_path, jobs=4, per_host="auto"), LIMIT
    )

    assert not results.failed
    (refused_at,) = told
    # Requests already sent may still arrive just after the 503; none is sent for 2 s after.
    late = [t - refused_at for t in arrivals if 0.2 < t - refused_at < 1.9]
    assert late == []
    assert max(arrivals) - refused_at >= 1.9


async def test_a_server_resetting_beyond_four_at_once_converges_every_file_whole(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Issue #16 test 3: connections beyond 4 at once are reset; every file is saved whole."""
    crowd = Crowd(delay=0.02, beyond=4, refuse=reset)

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(150)]

    results = await asyncio.wait_for(
        aiowget.download(urls, tmp_path, jobs=16, retry_wait=0.05, per_host="auto"), LIMIT
    )

    assert not results.failed
    for result in results:
        assert result.path is not None
        assert result.path.read_bytes() == body(1000, seed=result.url.rsplit("/", 1)[1])
    assert crowd.refused <= 15  # cut back after the first resets, not hammering on


async def test_a_fixed_per_host_is_kept_and_none_is_unlimited(
    serve: ServeFactory, tmp_path: Path
) -> None:
    crowd = Crowd()

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(24)]

    await aiowget.download(urls, tmp_path / "a", jobs=12, per_host=3)
    fixed_peak, crowd.peak = crowd.peak, 0
    await aiowget.download(urls, tmp_path / "b", jobs=12, per_host=None)
    none_peak, crowd.peak = crowd.peak, 0
    result = await fetch_list(urls, tmp_path / "c", "-q", "-j", "12", "--per-host", "none")

    assert fixed_peak == 3
    assert none_peak == 12
    assert result.exit_code == 0, result.stderr
    assert crowd.peak == 12  # `--per-host none`: as many as -j


async def test_the_json_summary_says_what_each_origin_window_did(
    serve: ServeFactory, tmp_path: Path
) -> None:
    crowd = Crowd(delay=0.02, beyond=2, refuse=unavailable)

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(60)]

    result = await fetch_list(urls, tmp_path, "--json", "-q", "-j", "8", "--retry-wait", "0")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    (origin,) = summary["origins"].items()
    key, seen = origin
    assert key == f"http://127.0.0.1:{server.server.port}"
    assert seen["requests"] == crowd.answered + crowd.refused
    assert seen["refused"] == crowd.refused
    assert seen["broken"] == 0
    assert 1 <= seen["connections"] <= 8
    assert crowd.peak <= seen["peak"] <= 8  # the server sees no more than were in flight


async def test_a_healthy_server_with_latency_gets_full_concurrency_quickly(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Issue #16 test 6: where more connections do bring more files per second (each answer
    takes 50 ms), slow start reaches `-j` (64) within about a second, not a crawl from 2."""
    crowd = Crowd()

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(2000)]

    results = await asyncio.wait_for(
        aiowget.download(urls, tmp_path, jobs=64, per_host="auto"), LIMIT
    )

    assert not results.failed
    assert crowd.peak == 64
    assert crowd.crowded[60] - crowd.arrivals[0] < 2.0  # the simulation says under 1 s


async def test_a_throttled_origin_listed_first_does_not_hold_up_a_fast_one(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Issue #16 test 4: the slow origin's URLs all come first (429 beyond 2 at once, a
    Retry-After pausing it); the fast origin's start at once, not behind the slow one's."""
    slow = Crowd(delay=0.2, beyond=2, refuse=too_many)
    fast = Crowd(delay=0.0)
    slow_server = await serve({"/{n}": slow.handler}, host="127.0.0.1")
    fast_server = await serve({"/{n}": fast.handler}, host="127.0.0.2")
    urls = [slow_server.url(f"/{n}") for n in range(40)]
    urls += [fast_server.url(f"/{n}") for n in range(10)]

    results = await asyncio.wait_for(
        aiowget.download(urls, tmp_path, jobs=16, per_host="auto", retry_wait=0), LIMIT
    )

    assert not results.failed
    assert fast.answered == 10
    # Before the slow origin has answered three of its forty, the fast one is done.
    assert max(fast.arrivals) < sorted(slow.arrivals)[4], (fast.arrivals, slow.arrivals)


async def test_origins_listed_one_after_another_are_fetched_side_by_side(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """The issue's case: `--per-host 2 -j 16` over three origins listed grouped ran one
    origin at a time; a free worker now takes the next job whose origin has room."""
    busy: dict[int, int] = {0: 0, 1: 0, 2: 0}
    together: list[int] = []

    def handler_for(server: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            busy[server] += 1
            together.append(sum(1 for n in busy.values() if n))
            await asyncio.sleep(0.05)
            busy[server] -= 1
            return web.Response(body=body(100, seed=request.path))

        return handler

    servers = [await serve({"/{n}": handler_for(s)}) for s in range(3)]
    urls = [server.url(f"/{n}") for server in servers for n in range(20)]

    results = await asyncio.wait_for(aiowget.download(urls, tmp_path, jobs=16, per_host=2), LIMIT)

    assert not results.failed
    assert max(together) == 3  # all three origins in flight at once
    assert together[:6].count(3) >= 1  # from the start, not once the first is done


async def test_names_follow_the_input_order_when_origins_take_turns(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """With one connection per origin, B's `same.bin` runs before A's (A is busy), yet A's,
    listed first, gets the plain name: names are claimed as the list is read."""

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.Response(body=b"A" + request.path.encode())

    async def quick(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"B" + request.path.encode())

    a = await serve({"/{name}": slow}, host="127.0.0.1")
    b = await serve({"/{name}": quick}, host="127.0.0.2")
    urls = [a.url("/first.bin"), a.url("/same.bin"), b.url("/same.bin")]

    results = await aiowget.download(urls, tmp_path, jobs=4, per_host=1, naming="basename")

    assert not results.failed
    assert results[1].path == tmp_path / "same.bin"
    assert (tmp_path / "same.bin").read_bytes() == b"A/same.bin"
    assert results[2].path is not None
    assert results[2].path.read_bytes() == b"B/same.bin"
    assert results[2].path.name.startswith("same~")


async def test_verbose_logs_each_change_of_a_window_and_why(
    serve: ServeFactory, tmp_path: Path
) -> None:
    crowd = Crowd(delay=0.02, beyond=3, refuse=too_many)

    server = await serve({"/{n}": crowd.handler})
    urls = [server.url(f"/{n}") for n in range(60)]

    result = await fetch_list(urls, tmp_path, "-v", "--progress", "plain", "-j", "8",
                              "--retry-wait", "0")  # fmt: skip

    assert result.exit_code == 0, result.stderr
    origin = f"http://127.0.0.1:{server.server.port}"
    assert f"* {origin}: 2 -> 4 at once (doubled: more throughput)" in result.stderr
    assert f"* {origin}: 4 -> 2 at once (halved after a 429)" in result.stderr


class SharedLink:
    """A server whose bandwidth is shared: `total` bytes a second across its connections,
    and at most `each` per connection (so `total / each` at once fill it: the knee)."""

    CHUNK = 16 * 1024

    def __init__(self, *, total: float, each: float, size: int) -> None:
        self.total, self.each, self.size = total, each, size
        self.free_at = 0.0  # when the shared link can send its next chunk
        self.now = 0
        self.peak = 0
        self.first: float | None = None
        self.last = 0.0
        self.sent = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            response = web.StreamResponse(headers={"Content-Length": str(self.size)})
            await response.prepare(request)
            loop = asyncio.get_running_loop()
            mine = 0.0  # when this connection may send again
            for _ in range(self.size // self.CHUNK):
                at = max(loop.time(), mine, self.free_at)
                self.free_at = at + self.CHUNK / self.total
                mine = at + self.CHUNK / self.each
                await asyncio.sleep(at - loop.time())
                await response.write(b"x" * self.CHUNK)
                self.first = self.first if self.first is not None else loop.time()
                self.last, self.sent = loop.time(), self.sent + self.CHUNK
            return response
        finally:
            self.now -= 1


async def test_a_shared_link_is_filled_with_no_more_than_the_knee_plus_two(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Issue #16 test 2: 5 MiB/s shared, 1 MiB/s per connection (the knee: 5 at once).
    `auto` settles at no more than 7 and keeps the link at 90% or more of its rate. (Judged
    by throughput alone, 8 brings 25% more than 4 and 16 nothing more: it would keep 8.)"""
    link = SharedLink(total=5 * MIB, each=1 * MIB, size=256 * 1024)

    server = await serve({"/{n}": link.handler})
    urls = [server.url(f"/{n}") for n in range(120)]

    async with aiowget.Downloader(directory=tmp_path, jobs=32, per_host="auto") as downloader:
        results = [r async for r in downloader.iter_download(urls)]
        (window,) = downloader.connections().values()

    assert all(r.ok for r in results)
    assert 5 <= window["connections"] <= 7, window
    assert link.first is not None
    rate = link.sent / (link.last - link.first)
    assert rate >= 0.9 * link.total, (rate / link.total, window)


MIB = 1 << 20


# What a fresh tester found: waits that held an origin's room, and a pause made longer.


async def test_a_url_listed_twice_does_not_wait_holding_the_room_its_twin_needs(
    serve: ServeFactory, tmp_path: Path
) -> None:
    asked: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        if len(asked) == 1:
            return web.Response(status=503)  # the first asks again: it needs the room
        return web.Response(body=b"whole")

    server = await serve({"/f": handler})
    url = server.url("/f")

    results = await asyncio.wait_for(
        aiowget.download([url, url], tmp_path, jobs=4, per_host=1, retry_wait=0), LIMIT
    )

    assert [r.ok for r in results] == [True, True]
    assert asked == ["/f", "/f"]  # fetched once, retried once; the repeat waited for it


async def test_a_pause_made_longer_is_waited_out_to_its_new_end(
    serve: ServeFactory, tmp_path: Path
) -> None:
    arrivals: dict[str, float] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["n"]
        arrivals[name] = time.monotonic()
        if name == "a":
            return web.Response(status=429, headers={"Retry-After": "1"})
        if name == "b":
            await asyncio.sleep(0.3)  # answered while the first pause runs, and longer
            return web.Response(status=429, headers={"Retry-After": "2"})
        return web.Response(body=name.encode())

    server = await serve({"/{n}": handler})
    urls = [server.url(f"/{n}") for n in "abcde"]

    results = await asyncio.wait_for(
        aiowget.download(urls, tmp_path, jobs=4, per_host=2, retries=0), LIMIT
    )

    assert [r.ok for r in results] == [False, False, True, True, True]
    assert min(arrivals[n] for n in "cde") - arrivals["b"] >= 2.0  # after the longer pause


async def test_single_calls_and_a_list_share_an_origin_without_a_deadlock(
    serve: ServeFactory, tmp_path: Path
) -> None:
    crowd = Crowd(delay=0.02)
    server = await serve({"/{n}": crowd.handler})

    async with aiowget.Downloader(directory=tmp_path, jobs=1, per_host=1) as downloader:

        async def listed() -> list[bool]:
            urls = [server.url(f"/list{n}") for n in range(3)]
            return [result.ok async for result in downloader.iter_download(urls)]

        one = downloader.download_one(server.url("/one"))
        single, many = await asyncio.wait_for(asyncio.gather(one, listed()), LIMIT)

    assert single.ok
    assert many == [True, True, True]
    assert crowd.peak == 1


async def test_a_redirect_to_another_origin_takes_that_origins_room(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Four origins redirect to B; with one connection per origin, B never has two at once
    (each hop is asked within its own origin's slot, the body within the last's)."""
    crowd = Crowd(delay=0.1)
    target = await serve({"/{n}": crowd.handler}, host="127.0.0.2")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target.url(f"/{request.match_info['n']}"))

    origins = [await serve({"/{n}": redirect}) for _ in range(4)]
    urls = [origins[n % 4].url(f"/{n}") for n in range(8)]

    results = await asyncio.wait_for(aiowget.download(urls, tmp_path, jobs=8, per_host=1), LIMIT)

    assert all(r.ok for r in results)
    assert crowd.answered == 8
    assert crowd.peak == 1


async def test_jobs_redirected_to_a_paused_origin_do_not_hold_up_others(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """A's URLs redirect to B, which pauses everyone (429, Retry-After: 3); C's files, listed
    after, are all done while B's pause runs: A's next jobs wait for B's room in the feed, not
    in workers."""
    paused: list[float] = []

    async def target(request: web.Request) -> web.StreamResponse:
        if not paused:
            paused.append(time.monotonic())
            return web.Response(status=429, headers={"Retry-After": "3"})
        return web.Response(body=b"b")

    b = await serve({"/{n}": target}, host="127.0.0.2")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(b.url(f"/{request.match_info['n']}"))

    crowd = Crowd(delay=0.0)
    a = await serve({"/{n}": redirect})
    c = await serve({"/{n}": crowd.handler})
    urls = [a.url(f"/{n}") for n in range(20)] + [c.url(f"/{n}") for n in range(60)]
    finished: dict[str, float] = {}

    async with aiowget.Downloader(directory=tmp_path, jobs=8, retry_wait=0) as downloader:
        async for result in downloader.iter_download(urls):
            assert result.ok, result.error
            finished[result.url] = time.monotonic()

    (began,) = paused
    assert max(finished[url] for url in urls[20:]) - began < 2.5  # C never waited on B


async def test_a_chain_of_slow_hops_across_origins_still_meets_the_deadline(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """-T is one deadline for the heads of a whole chain, even when it changes origin at
    every hop: twelve hops of 0.4 s between two origins fail at about 1 s (exit 4)."""
    servers: list[Server] = []

    async def bounce(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        await asyncio.sleep(0.4)
        if n == 12:
            return web.Response(body=b"end")
        raise web.HTTPFound(servers[(n + 1) % 2].url(f"/{n + 1}"))

    servers += [await serve({"/{n}": bounce}), await serve({"/{n}": bounce}, host="127.0.0.2")]

    started = time.monotonic()
    result = await run_process("-q", "-T", "1", "-t", "0", "-P", tmp_path, servers[0].url("/0"),
                               limit=LIMIT)  # fmt: skip

    assert result.exit_code == 4, result.stderr
    assert time.monotonic() - started < 4.0

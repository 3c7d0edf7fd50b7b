"""The per-origin window (`--per-host auto`, issue #16) against simulated servers: a fake
clock and a table of server behaviours, no event loop, no network."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from aiowget.policy import CALM, PROBE_AFTER, HostWindow, Trouble, host_window


@dataclass
class Run:
    done: int = 0
    refused: int = 0  # answered 429 (or reset)
    requests: int = 0
    peak: int = 0
    ended: float = 0.0
    full_at: float | None = None  # when the window first reached its cap


def simulate(
    window: HostWindow,
    *,
    seconds: float,
    latency: Callable[[int], float],
    limit: int | None = None,
    retry_after: float | None = None,
    files: int = 10**9,
    noise: float = 0.0,
    kind: Trouble = Trouble.TOO_MANY,
) -> Run:
    """`files` requests to a server that takes `latency(in flight)` seconds to answer and
    refuses (in 5 ms, with `retry_after`) any request beyond `limit` at once, and a share
    `noise` of the others at random (a flaky server, not a busy one); the window
    decides how many are sent at once. Stops after `seconds` or once every file is done."""
    run, now, order, started = Run(), 0.0, 0, 0
    draw = random.Random(7)
    events: list[tuple[float, int, bool, float]] = []  # (when, order, refused, sent)
    while True:
        while started < files and window.room(now):
            window.started(now)
            started += 1
            order += 1
            run.requests += 1
            refused = (limit is not None and window.in_flight > limit) or draw.random() < noise
            heapq.heappush(events, (now + (0.005 if refused else latency(window.in_flight)),
                                    order, refused, now))  # fmt: skip
            run.peak = max(run.peak, window.in_flight)
        if window.limit == window.cap and run.full_at is None:
            run.full_at = now
        if not events:
            if started >= files:
                break
            now = window.paused_until  # paused, nothing in flight: wait it out
            continue
        when, _, refused, sent = heapq.heappop(events)
        if when > seconds:
            break
        now = when
        if refused:
            run.refused += 1
            started -= 1  # asked again
            window.troubled(now, retry_after, kind)
        else:
            run.done += 1
            window.arrived(1000)
            window.finished(now, now - sent)
    run.ended = now
    return run


def test_slow_start_reaches_the_cap_within_a_second_on_a_healthy_server() -> None:
    window = HostWindow(cap=64)
    run = simulate(window, seconds=3.0, latency=lambda n: 0.05)
    assert run.full_at is not None
    assert run.full_at < 1.0
    assert run.refused == 0


@pytest.mark.parametrize("knee", [3, 6, 12])
def test_growth_stops_at_the_knee_plus_two_at_most(knee: int) -> None:
    # Beyond `knee` at once the server only queues: each answer takes longer, no more per second.
    window = HostWindow(cap=64)
    run = simulate(window, seconds=10.0, latency=lambda n: 0.05 * max(1.0, n / knee))
    assert knee <= window.limit <= knee + 2  # the timings show the queue (Vegas)
    assert run.done / run.ended >= 0.95 * knee / 0.05  # and the knee is kept busy


def test_a_server_refusing_beyond_three_converges_with_few_refusals() -> None:
    # Issue #16, test 1, simulated: 429 (Retry-After: 1) beyond 3 in flight, 300 files.
    window = HostWindow(cap=64)
    run = simulate(window, seconds=600, latency=lambda n: 0.05, limit=3, retry_after=1.0,
                   files=300)  # fmt: skip
    oracle = 300 / 3 * 0.05  # `--per-host 3`
    assert run.done == 300  # every refused request was asked again
    assert run.refused <= 0.05 * run.requests
    assert run.ended <= 1.3 * oracle
    assert window.limit == 3


def test_trouble_halves_once_per_burst_never_below_one() -> None:
    window = HostWindow(cap=64, window=16)
    for _ in range(16):
        window.started(0.0)
    for _ in range(10):  # ten answers of one burst: one cut
        window.troubled(1.0)
    assert window.limit == 8
    window.started(1.0 + CALM)
    window.troubled(1.0 + CALM)  # a new burst, after the calm
    assert window.limit == 4
    small = HostWindow(cap=64, window=1)
    small.started(0.0)
    small.troubled(0.0)
    assert small.limit == 1


def test_retry_after_pauses_the_origin_and_the_pause_ends() -> None:
    window = HostWindow(cap=8)
    window.started(10.0)
    window.troubled(10.0, retry_after=2.0)
    assert not window.room(10.0)
    assert not window.room(11.99)
    assert window.room(12.0)


def test_no_growth_past_the_trouble_point_until_the_probe() -> None:
    window = HostWindow(cap=64, window=8)
    for _ in range(8):
        window.started(0.0)
    window.troubled(0.0)
    assert window.ceiling == 7
    assert window.probe_at == PROBE_AFTER


@pytest.mark.parametrize(
    ("per_host", "jobs", "split", "limit", "adaptive"),
    [
        ("auto", 64, 1, 2, True),
        ("auto:4", 64, 1, 2, True),
        ("auto", 64, 8, 8, True),  # `-s 8` asks for 8 at once
        ("auto:4", 64, 8, 4, True),
        ("auto", 1, 1, 1, True),
        (5, 64, 1, 5, False),
    ],
)
def test_a_new_origin_starts_at(
    per_host: int | str, jobs: int, split: int, limit: int, adaptive: bool
) -> None:
    window = host_window(per_host, jobs, split)
    assert window is not None
    assert (window.limit, window.adaptive) == (limit, adaptive)


def test_a_fixed_window_never_moves_but_still_pauses() -> None:
    window = host_window(3, 64)
    assert window is not None
    run = simulate(window, seconds=5.0, latency=lambda n: 0.01)
    assert run.peak == 3
    assert window.limit == 3
    window.started(10.0)
    window.troubled(10.0, retry_after=1.0)
    assert window.limit == 3
    assert not window.room(10.5)
    assert host_window(None, 64) is None
    assert math.isinf(HostWindow(cap=1).ceiling)


@pytest.mark.parametrize("kind", [Trouble.UNAVAILABLE, Trouble.BROKEN])
@pytest.mark.parametrize("noise", [0.02, 0.05, 0.15])
def test_random_trouble_at_any_window_does_not_shrink_it(noise: float, kind: Trouble) -> None:
    # A flaky server answers a share of requests 503 (or resets them) however many are in
    # flight: cutting does not help, so after a first cut or two (no evidence yet) the
    # window grows back, or the cut is taken back, and it stays large.
    window = HostWindow(cap=32)
    run = simulate(window, seconds=20.0, latency=lambda n: 0.02, noise=noise, kind=kind)
    assert run.refused > 0
    # Throughput near 32 at once (32 / 0.02 s = 1,600 files a second), not a crawl at 1 or 2.
    assert run.done / run.ended > 0.6 * 1600, (run.done / run.ended, window.limit)

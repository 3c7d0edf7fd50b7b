"""Split downloads: the plan (pure), then ranged segments against real servers."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import aiowget
from aiowget.models import PartState
from aiowget.naming import flat_name
from aiowget.policy import MIN_SEGMENT, Action, judge_segment, plan_segments, splittable

from .conftest import ServeFactory, Server, body, leave_part, read_meta, run_cli
from .faults import Fault, FaultyFile

MiB = 1 << 20
CONTENT = body(8 * MiB + 5, "split")
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("total", "split", "plan"),
    [
        (10 * MiB, 1, [(0, 10 * MiB - 1, 0)]),
        (4 * MiB, 2, [(0, 2 * MiB - 1, 0), (2 * MiB, 4 * MiB - 1, 0)]),
        (3 * MiB, 8, [(0, MiB - 1, 0), (MiB, 2 * MiB - 1, 0), (2 * MiB, 3 * MiB - 1, 0)]),
        (5, 4, [(0, 1, 0), (2, 3, 0), (4, 4, 0)]),
        (10, 3, [(0, 3, 0), (4, 7, 0), (8, 9, 0)]),
    ],
)
def test_plan_segments(total: int, split: int, plan: list[tuple[int, int, int]]) -> None:
    minimum = MIN_SEGMENT if total > 10 else 1
    segments = plan_segments(total, split, minimum)

    assert list(segments) == plan
    assert segments[0][0] == 0
    assert segments[-1][1] == total - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(segments))


RANGES = {"Accept-Ranges": "bytes", "ETag": '"v1"'}
DAY1, DAY2 = "Mon, 01 Jan 2024 10:00:00 GMT", "Tue, 02 Jan 2024 10:00:00 GMT"


@pytest.mark.parametrize(
    ("split", "headers", "total", "ok"),
    [
        (4, RANGES, 8 * MiB, True),
        (2, RANGES, 2 * MiB, True),  # the least that is split: two segments of 1 MiB
        (1, RANGES, 8 * MiB, False),
        (4, RANGES, MiB, False),  # too small to be worth it
        (4, RANGES, None, False),
        (4, {"ETag": '"v1"'}, 8 * MiB, False),  # no Accept-Ranges
        (4, {"Accept-Ranges": "none", "ETag": '"v1"'}, 8 * MiB, False),
        (4, {"Accept-Ranges": "bytes"}, 8 * MiB, False),  # nothing to check the file with
        (4, {"Accept-Ranges": "bytes", "Last-Modified": DAY1, "Date": DAY2}, 8 * MiB, True),
        (4, {"Accept-Ranges": "bytes", "Last-Modified": DAY2, "Date": DAY2}, 8 * MiB, False),
        (4, {"Accept-Ranges": "bytes", "ETag": 'W/"v1"'}, 8 * MiB, False),  # weak
    ],
)
def test_splittable(split: int, headers: dict[str, str], total: int | None, ok: bool) -> None:
    assert splittable(split, headers, total) is ok


STATE = PartState("u", '"v1"', 1000, ((0, 499, 0), (500, 999, 0)))


@pytest.mark.parametrize(
    ("status", "headers", "action"),
    [
        (206, {"Content-Range": "bytes 500-999/1000", "ETag": '"v1"'}, Action.APPEND),
        (206, {"Content-Range": "bytes 500-999/1000"}, Action.RESTART),  # names no version
        (206, {"Content-Range": "bytes 500-998/1000"}, Action.RESTART),
        (206, {"Content-Range": "bytes 500-999/2000"}, Action.RESTART),
        (206, {"Content-Range": "bytes 500-999/1000", "ETag": '"v2"'}, Action.RESTART),
        (200, {}, Action.RESTART),
        (200, {"Content-Range": "bytes 500-999/1000", "ETag": '"v1"'}, Action.RESTART),
        (416, {"Content-Range": "bytes */400"}, Action.RESTART),  # the file shrank
    ],
)
def test_judge_segment(status: int, headers: dict[str, str], action: Action) -> None:
    assert judge_segment(status, "", headers, (500, 999), STATE, NOW) is action


def test_judge_segment_raises_for_error_statuses() -> None:
    with pytest.raises(aiowget.HTTPStatusError) as caught:
        judge_segment(503, "", {"Retry-After": "5"}, (500, 999), STATE, NOW)
    assert caught.value.retry_after == 5.0


async def serve_file(serve: ServeFactory, faulty: FaultyFile) -> Server:
    return await serve({"/f": faulty.handler})


async def fetch(server: Server, directory: Path, **options: Any) -> aiowget.Result:
    merged = {"retry_wait": 0, "split": 4, **options}
    (result,) = await aiowget.download([server.url("/f")], directory, **merged)
    return result


def spans(faulty: FaultyFile) -> list[tuple[int, int]]:
    asked = [r.range for r in faulty.requests if r.range is not None]
    return sorted(tuple(int(x) for x in a[len("bytes=") :].split("-")) for a in asked)  # type: ignore[misc]


async def test_split_download_uses_parallel_ranges(serve: ServeFactory, tmp_path: Path) -> None:
    # Each segment is held back until all four are being answered at once.
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(peers=4)] * 4)
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    quarter = -(-len(CONTENT) // 4)
    assert spans(faulty) == [
        (start, min(start + quarter, len(CONTENT)) - 1) for start in range(0, len(CONTENT), quarter)
    ]
    assert all(r.if_range == '"v1"' for r in faulty.requests[1:])
    assert faulty.peak == 4  # segments overlapped
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.path.name]


async def test_split_counts_against_per_host(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(trickle=(256 * 1024, 0.01))] * 4)
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path, per_host=2)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.peak <= 2


async def test_small_file_is_not_split(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT[:MiB])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT[:MiB]
    assert faulty.ranges() == [None]


async def test_cut_segment_resumes_where_it_stopped(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault(), Fault(cut_after=2 * MiB - 1)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert len(faulty.requests) == 6  # the first GET, four segments, one retry
    starts = [start for start, _ in spans(faulty)]
    quarter = -(-len(CONTENT) // 4)
    inside = [s for s in starts if s % quarter]
    assert len(inside) == 1  # the retry asked from inside its segment, not from its start


async def test_server_ignoring_ranges_falls_back_to_one_stream(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # Says it accepts ranges, then answers every range with the whole file.
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(ignore_range=True)] * 10)
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.requests[-1].range is None  # the last request: the whole file, unsplit


async def test_split_resumes_in_a_later_run(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(cut_after=2 * MiB - 1)] * 4)
    server = await serve_file(serve, faulty)

    failed = await fetch(server, tmp_path, retries=0)

    assert isinstance(failed.error, aiowget.NetworkError)
    name = flat_name(server.url("/f"))
    meta = read_meta(tmp_path / name)
    kept = sum(done for _, _, done in meta["segments"])
    assert 0 < kept < len(CONTENT)
    before = len(faulty.requests)

    again = await fetch(server, tmp_path, split=2)

    assert again.path is not None
    assert again.path.read_bytes() == CONTENT
    resumed = [r.range for r in faulty.requests[before:]]
    assert all(r is not None for r in resumed)  # no plain GET: straight to what is missing
    fetched = sum(
        int(r[len("bytes=") :].split("-")[1]) - int(r[len("bytes=") :].split("-")[0]) + 1
        for r in resumed
        if r is not None
    )
    assert fetched == len(CONTENT) - kept


async def test_checksum_of_a_split_download(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    digest = hashlib.sha256(CONTENT).hexdigest()

    good = await run_cli(
        "-s", "4", "-P", tmp_path, "--checksum", f"sha256:{digest}", server.url("/f")
    )
    assert good.exit_code == 0

    bad = await run_cli(
        "-s", "4", "-P", tmp_path / "b", "--checksum", f"sha256:{'0' * 64}", server.url("/f")
    )
    assert bad.exit_code == 1
    assert list((tmp_path / "b").iterdir()) == []


# Segments that fail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(chunked=True, short=1000), Fault(cut_after=1000), Fault(stall_after=1000)],
    ids=["ends-cleanly-short", "connection-dropped", "stalls"],
)
async def test_a_short_segment_is_retried_for_the_rest(
    serve: ServeFactory, tmp_path: Path, fault: Fault
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(), fault])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path, timeout=0.5)
    faulty.release.set()

    assert result.error is None
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert len(faulty.requests) == 1 + 4 + 1  # the probe, four segments, one retry
    assert result.attempts == len(faulty.requests)


async def test_a_416_to_a_segment_starts_over_in_one_stream(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # An earlier run filled the first half; the file has since shrunk below that, and the
    # server kept its ETag and ignores If-Range: every missing segment is answered 416.
    smaller = body(3 * MiB, "smaller")
    faulty = FaultyFile(smaller)
    server = await serve_file(serve, faulty)
    url = server.url("/f")
    half, total = 4 * MiB, len(CONTENT)
    segments = [(0, half - 1, half), (half, total - 1, 0)]
    leave_part(tmp_path / flat_name(url), url, CONTENT, total=total, segments=segments)

    result = await fetch(server, tmp_path)

    assert result.error is None
    assert result.path is not None
    assert result.path.read_bytes() == smaller
    assert faulty.ranges() == [f"bytes={half}-{total - 1}", None]


async def test_segments_share_the_transfers_one_retry_budget(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(status=503)] * 100)
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path, retries=2)

    assert result.exit_status == 8
    # The third failure ends the transfer; at most the three other segments were in flight.
    assert len(faulty.requests) <= 1 + 3 + 3
    assert result.attempts == len(faulty.requests)
    assert not result.path or not result.path.exists()


async def test_kill_9_mid_split_loses_at_most_a_mib_per_segment(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # Each segment sends 1.5 MiB, then stalls: one 1 MiB write each, the rest in its buffer.
    faulty = FaultyFile(CONTENT, [Fault()] + [Fault(stall_after=3 * MiB // 2)] * 4)
    server = await serve_file(serve, faulty)
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", "-s", "4", "-P", tmp_path, url
    )

    def saved() -> int:
        try:
            return sum(done for _, _, done in read_meta(final)["segments"])
        except (OSError, ValueError, TypeError):
            return 0

    deadline = time.monotonic() + 20
    try:
        while saved() < 3 * MiB:  # the file system has no event to wait on
            assert process.returncode is None
            assert time.monotonic() < deadline, f"the sidecar never recorded 3 MiB ({saved()})"
            await asyncio.sleep(0.02)
    finally:
        process.kill()
        await process.wait()
    faulty.release.set()
    before = len(faulty.requests)

    rerun = await run_cli("-P", tmp_path, "-s", "4", url)

    assert rerun.exit_code == 0
    assert final.read_bytes() == CONTENT
    asked = sum(b - a + 1 for a, b in spans_since(faulty, before))
    assert asked <= len(CONTENT) - 3 * MiB


def spans_since(faulty: FaultyFile, first: int) -> list[tuple[int, int]]:
    asked = [r.range for r in faulty.requests[first:] if r.range is not None]
    return [(int(a), int(b)) for a, _, b in (r[len("bytes=") :].partition("-") for r in asked)]


HALF = 4 * MiB


@pytest.mark.parametrize(
    ("part", "segments"),
    [
        (CONTENT[: 2 * MiB], [(0, HALF - 1, HALF), (HALF, len(CONTENT) - 1, 0)]),  # truncated
        (CONTENT + b"junk", [(0, HALF - 1, HALF), (HALF, len(CONTENT) - 1, 0)]),  # too long
        (CONTENT, []),
        (CONTENT, [(0, HALF - 1, HALF)]),  # the second segment missing from the list
        (CONTENT, [(0, HALF - 1, HALF + 1), (HALF, len(CONTENT) - 1, 0)]),  # more than it holds
    ],
    ids=["truncated", "too-long", "no-segments", "segment-missing", "overfull"],
)
async def test_a_part_that_disagrees_with_its_sidecar_starts_over(
    serve: ServeFactory, tmp_path: Path, part: bytes, segments: list[tuple[int, int, int]]
) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    url = server.url("/f")
    planted = bytearray(part)
    planted[: 2 * MiB] = bytes(2 * MiB)  # zeros where the sidecar says bytes are done
    leave_part(
        tmp_path / flat_name(url), url, bytes(planted), total=len(CONTENT), segments=segments
    )

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.requests[0].range is None  # nothing of the .part was trusted


async def test_a_split_download_that_changes_midway_reports_the_new_hash(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # Planned on version 1; the segments find version 2 (If-Range fails: 200): one stream.
    new = body(len(CONTENT), "version 2")
    first, then = FaultyFile(CONTENT), FaultyFile(new, etag='"v2"')
    count = iter(range(1_000_000))

    async def changing(request: web.Request) -> web.StreamResponse:
        return await (first if next(count) == 0 else then).handler(request)

    server = await serve({"/f": changing})

    result = await fetch(server, tmp_path, compute_sha256=True)

    assert result.path is not None
    assert result.path.read_bytes() == new
    assert result.sha256 == hashlib.sha256(new).hexdigest()

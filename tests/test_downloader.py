"""The library against real servers on 127.0.0.1: concurrency, limits, failures, names, reruns."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import aiowget
from aiowget import Downloader, Outcome, Started
from aiowget.downloader import look_ahead
from aiowget.naming import flat_name

from .conftest import FILES, ServeFactory, Server, body, static


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_download_saves_every_file_under_its_flat_name(
    files_server: Server, tmp_path: Path
) -> None:
    urls = [files_server.url(path) for path in FILES]

    results = await aiowget.download(urls, tmp_path)

    assert [r.outcome for r in results] == [Outcome.SAVED] * len(FILES)
    assert [r.url for r in results] == urls  # input order, whatever the completion order
    expected = dict(zip(urls, FILES.values(), strict=True))
    assert files_in(tmp_path) == {flat_name(url): content for url, content in expected.items()}
    assert [(r.size, r.status) for r in results] == [(len(c), 200) for c in expected.values()]
    assert results.exit_status == 0
    assert not results.failed


async def test_downloads_overlap_up_to_jobs(serve: ServeFactory, tmp_path: Path) -> None:
    jobs, count = 4, 12
    in_flight, peak = 0, 0
    first_wave = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == jobs:
            first_wave.set()
        # Every request waits until `jobs` of them are in flight at once: proof of overlap.
        await asyncio.wait_for(first_wave.wait(), timeout=10)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return web.Response(body=request.path.encode())

    server = await serve({"/{name}": handler})
    urls = [server.url(f"/{n}") for n in range(count)]

    results = await aiowget.download(urls, tmp_path, jobs=jobs, per_host=jobs)

    assert not results.failed
    assert peak == jobs
    assert len(server.gets()) == count


async def test_per_host_limit_counts_each_origin_apart(serve: ServeFactory, tmp_path: Path) -> None:
    peaks: dict[str, int] = {}
    active: dict[str, int] = {}
    both_full = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        host = request.host
        active[host] = active.get(host, 0) + 1
        peaks[host] = max(peaks.get(host, 0), active[host])
        if sum(active.values()) == 4:
            both_full.set()
        await asyncio.wait_for(both_full.wait(), timeout=10)
        await asyncio.sleep(0.01)
        active[host] -= 1
        return web.Response(body=b"x")

    one, two = await serve({"/{n}": handler}), await serve({"/{n}": handler})
    urls = [server.url(f"/{n}") for server in (one, two) for n in range(5)]

    results = await aiowget.download(urls, tmp_path, jobs=8, per_host=2)

    assert not results.failed
    assert sorted(peaks.values()) == [2, 2]


@pytest.mark.parametrize(
    ("status", "exit_status", "requests"), [(404, 8, 1), (500, 8, 3), (401, 6, 1), (403, 8, 1)]
)
async def test_error_status_saves_nothing(
    serve: ServeFactory, tmp_path: Path, status: int, exit_status: int, requests: int
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=b"an error page, not the file")

    server = await serve({"/f": handler})

    results = await aiowget.download([server.url("/f")], tmp_path, retries=2, retry_wait=0)

    (result,) = results
    assert result.outcome is Outcome.FAILED
    assert result.status == status
    assert isinstance(result.error, aiowget.HTTPStatusError)
    assert result.exit_status == exit_status == results.exit_status
    assert list(tmp_path.iterdir()) == []
    assert len(server.gets()) == requests == result.attempts  # only 5xx-ish is retried


async def lying_length(request: web.Request) -> web.StreamResponse:
    """Announces 10,000 bytes, sends 1,000, then closes the connection."""
    response = web.StreamResponse(headers={"Content-Length": "10000"})
    await response.prepare(request)
    await response.write(b"x" * 1000)
    assert request.transport is not None
    request.transport.close()
    return response


async def test_body_shorter_than_content_length_keeps_no_final_file(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/short": lying_length, "/good": static(b"good")})
    urls = [server.url("/short"), server.url("/good")]

    results = await aiowget.download(urls, tmp_path, retries=0)

    short, good = results
    assert isinstance(short.error, aiowget.ContentTooShortError)
    assert "10000 bytes" in str(short.error)
    assert short.exit_status == 4
    assert good.outcome is Outcome.SAVED
    # No final file for the short one, and no .part: without a validator it cannot be resumed.
    assert list(files_in(tmp_path)) == [flat_name(urls[1])]


async def echo_query(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.query_string.encode())


async def test_colliding_names_both_survive(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/a/b.txt": echo_query})
    # The query is not part of the name: both URLs map to one flat name.
    urls = [server.url("/a/b.txt?one"), server.url("/a/b.txt?two")]

    results = await aiowget.download(urls, tmp_path)

    assert [r.outcome for r in results] == [Outcome.SAVED, Outcome.SAVED]
    first, second = (r.path for r in results)
    assert first is not None
    assert second is not None
    assert first != second
    assert first.name == flat_name(urls[0])
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")


async def test_same_url_twice_is_fetched_once(files_server: Server, tmp_path: Path) -> None:
    url = files_server.url("/files/f1.bin")

    results = await aiowget.download([url, url], tmp_path)

    assert sorted(r.outcome for r in results) == [Outcome.SAVED, Outcome.SKIPPED]
    assert len(files_server.gets()) == 1
    assert len(list(tmp_path.iterdir())) == 1


async def test_rerun_sends_no_request_for_files_already_there(
    files_server: Server, tmp_path: Path
) -> None:
    urls = [files_server.url(path) for path in FILES]
    await aiowget.download(urls[:3], tmp_path)
    before = len(files_server.gets())

    results = await aiowget.download(urls, tmp_path)

    assert [r.outcome for r in results] == [Outcome.SKIPPED] * 3 + [Outcome.SAVED] * 2
    assert len(files_server.gets()) - before == 2
    assert all(r.note == "already there" for r in results[:3])


async def test_if_exists_overwrite_and_rename(files_server: Server, tmp_path: Path) -> None:
    url = files_server.url("/files/f2.bin")
    target = tmp_path / flat_name(url)
    target.write_bytes(b"old")

    (renamed,) = await aiowget.download([url], tmp_path, if_exists="rename")
    assert renamed.path == tmp_path / (target.name + ".1")
    assert target.read_bytes() == b"old"

    (overwritten,) = await aiowget.download([url], tmp_path, if_exists="overwrite")
    assert overwritten.path == target
    assert target.read_bytes() == FILES["/files/f2.bin"]


async def test_basename_naming(files_server: Server, tmp_path: Path) -> None:
    results = await aiowget.download(
        [files_server.url("/files/f3.bin")], tmp_path, naming="basename"
    )

    assert files_in(tmp_path) == {"f3.bin": FILES["/files/f3.bin"]}
    assert results[0].path == tmp_path / "f3.bin"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt", "été.txt"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fescape.sh", "escape.sh"),
        ('attachment; filename=".bashrc"', "bashrc"),
        ('attachment; filename=".."', None),
        ("inline", None),
    ],
)
async def test_content_disposition_name_is_sanitized(
    serve: ServeFactory, tmp_path: Path, header: str, expected: str | None
) -> None:
    server = await serve({"/dl": static(b"payload", **{"Content-Disposition": header})})
    url = server.url("/dl")

    (result,) = await aiowget.download([url], tmp_path, content_disposition=True)

    name = expected or flat_name(url)
    assert result.path == tmp_path / name
    assert files_in(tmp_path) == {name: b"payload"}


async def test_directory_is_created(files_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"

    results = await aiowget.download([files_server.url("/files/f1.bin")], target)

    assert not results.failed
    assert len(files_in(target)) == 1


async def test_directory_that_is_a_file_fails_every_url_with_local_io(
    files_server: Server, tmp_path: Path
) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"")

    results = await aiowget.download([files_server.url(p) for p in FILES], target)

    assert len(results.failed) == len(FILES)
    assert results.exit_status == 3
    assert all(str(target) in str(r.error) for r in results)
    assert files_server.gets() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "unsupported scheme 'ftp'"),
        ("example.com/x", "unsupported scheme 'none'"),
        ("http://", "no host"),
        ("http://[::1/x", "Invalid IPv6 URL"),
        ("http://user:secret@/x", "no host"),
        ("", "empty"),
    ],
)
async def test_unusable_urls_fail_alone(
    files_server: Server, tmp_path: Path, url: str, message: str
) -> None:
    good = files_server.url("/files/f1.bin")

    bad, ok = await aiowget.download([url, good], tmp_path)

    assert isinstance(bad.error, aiowget.InvalidURLError)
    assert message in str(bad.error)
    assert "secret" not in str(bad.error)
    assert bad.exit_status == 2
    assert ok.outcome is Outcome.SAVED


async def test_connection_refused_is_a_network_error(tmp_path: Path) -> None:
    (result,) = await aiowget.download(["http://127.0.0.1:9/x"], tmp_path, retries=0)

    assert isinstance(result.error, aiowget.NetworkError)
    assert result.exit_status == 4
    assert "127.0.0.1:9" in str(result.error)


async def test_stalled_server_times_out(serve: ServeFactory, tmp_path: Path) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        await release.wait()
        return response

    server = await serve({"/stall": stall})

    url = server.url("/stall")
    (result,) = await aiowget.download([url], tmp_path, timeout=0.3, retries=0)
    release.set()

    assert isinstance(result.error, aiowget.DownloadTimeoutError)
    assert result.exit_status == 4
    # No final file; and a body this small is fetched again rather than resumed.
    assert list(tmp_path.iterdir()) == []


async def test_redirects_are_followed_and_bounded(serve: ServeFactory, tmp_path: Path) -> None:
    async def hop(request: web.Request) -> web.StreamResponse:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{left - 1}" if left else "/target")

    server = await serve({"/hop/{n}": hop, "/target": static(b"arrived")})

    ok, too_many = await aiowget.download(
        [server.url("/hop/2"), server.url("/hop/5")], tmp_path, max_redirects=3
    )

    assert ok.outcome is Outcome.SAVED
    assert ok.path is not None
    assert ok.path.name == flat_name(server.url("/hop/2"))
    assert ok.path.read_bytes() == b"arrived"
    assert isinstance(too_many.error, aiowget.ProtocolError)
    assert too_many.exit_status == 7
    assert "more than 3" in str(too_many.error)


async def test_body_is_stored_as_served_without_decompression(
    serve: ServeFactory, tmp_path: Path
) -> None:
    import gzip

    compressed = gzip.compress(b"A" * 100_000)
    server = await serve({"/a.gz": static(compressed, **{"Content-Encoding": "gzip"})})

    (result,) = await aiowget.download([server.url("/a.gz")], tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == compressed
    assert server.gets()[0].headers["Accept-Encoding"] == "identity"


async def test_large_body_arrives_whole(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(5 * 1024 * 1024 + 3, "large")
    server = await serve({"/large": static(content)})

    (result,) = await aiowget.download([server.url("/large")], tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == content


async def test_chunked_body_without_length(serve: ServeFactory, tmp_path: Path) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(5):
            await response.write(body(3000, str(n)))
        return response

    server = await serve({"/c": chunked, "/empty": static(b"")})

    streamed, empty = await aiowget.download([server.url("/c"), server.url("/empty")], tmp_path)

    assert streamed.path is not None
    assert streamed.path.read_bytes() == b"".join(body(3000, str(n)) for n in range(5))
    assert empty.path is not None
    assert empty.path.read_bytes() == b""


# The library inside a running loop -------------------------------------------------------


@contextmanager
def serving_elsewhere(directory: Path) -> Iterator[str]:
    """Files served by another process (`python -m http.server`): a server in a thread of
    this process would take the GIL from the loop under test and blur what is measured."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = re.search(r" port (\d+) ", process.stdout.readline())
        assert port is not None, "http.server did not say its port"
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_event_loop_is_never_blocked(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    names = [f"f{n}" for n in range(8)]
    for name in names:
        (served / name).write_bytes(body(8 * 1024 * 1024, name))
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with serving_elsewhere(served) as base:
        beating = asyncio.create_task(heartbeat())
        urls = [f"{base}/{name}" for name in names]
        results = await aiowget.download(urls, tmp_path / "out", jobs=8)
        done.set()
        await beating

    assert not results.failed
    assert all(
        r.path is not None and r.path.read_bytes() == body(8 << 20, n)
        for r, n in zip(results, names, strict=True)
    )
    assert gaps, "the heartbeat never ran during the download"
    assert max(gaps) < 0.05


async def test_callers_session_is_used_and_left_open(files_server: Server, tmp_path: Path) -> None:
    async with aiohttp.ClientSession(headers={"X-Caller": "yes"}) as session:
        results = await aiowget.download(
            [files_server.url("/files/f1.bin")], tmp_path, session=session
        )
        assert not session.closed

    assert not results.failed
    assert files_server.gets()[0].headers["X-Caller"] == "yes"


async def test_iter_download_pulls_input_lazily(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/{n}": static(b"x")})
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield server.url(f"/{pulled}")

    async with Downloader(directory=tmp_path, jobs=3) as dl:
        results = dl.iter_download(endless())
        taken = [await anext(results) for _ in range(5)]
        await results.aclose()

    assert all(r.outcome is Outcome.SAVED for r in taken)
    # Only what the workers, the small result queue and the look-ahead (jobs of other origins
    # may wait behind a full one's: `--per-host auto`) hold was read ahead.
    assert pulled <= 5 + 3 + 3 + 1 + look_ahead(3)


async def test_iter_download_accepts_an_async_iterable(
    files_server: Server, tmp_path: Path
) -> None:
    async def urls() -> AsyncIterator[str]:
        for path in FILES:
            yield files_server.url(path)

    async with Downloader(directory=tmp_path) as dl:
        outcomes = [r.outcome async for r in dl.iter_download(urls())]

    assert outcomes == [Outcome.SAVED] * len(FILES)


async def test_input_error_is_raised_after_jobs_in_flight(
    files_server: Server, tmp_path: Path
) -> None:
    def broken() -> Iterator[str]:
        yield files_server.url("/files/f1.bin")
        raise OSError("input went away")

    seen: list[aiowget.Result] = []

    async def consume() -> None:
        async with Downloader(directory=tmp_path) as dl:
            async for result in dl.iter_download(broken()):
                seen.append(result)

    with pytest.raises(OSError, match="input went away"):
        await consume()

    assert [r.outcome for r in seen] == [Outcome.SAVED]


async def test_cancelled_caller_leaves_no_task_and_no_part(
    serve: ServeFactory, tmp_path: Path
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "2000"})
        await response.prepare(request)
        await response.write(b"x" * 1000)
        started.set()
        await release.wait()
        return response

    server = await serve({"/{n}": slow})
    before = asyncio.all_tasks()
    job = asyncio.create_task(aiowget.download([server.url(f"/{n}") for n in range(4)], tmp_path))
    await asyncio.wait_for(started.wait(), timeout=10)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    release.set()

    assert asyncio.all_tasks() - before == set()
    assert list(tmp_path.rglob("*")) == []


async def test_download_one_to_an_exact_path(files_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "exact.bin"

    async with Downloader() as dl:
        result = await dl.download_one(files_server.url("/files/f4.bin"), target)

    assert result.path == target
    assert target.read_bytes() == FILES["/files/f4.bin"]


async def test_raise_errors_raises_the_failure(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({})

    async with Downloader(directory=tmp_path, raise_errors=True) as dl:
        with pytest.raises(aiowget.HTTPStatusError, match="404"):
            await dl.download_one(server.url("/missing"))


async def test_events_reach_an_async_or_plain_handler(files_server: Server, tmp_path: Path) -> None:
    events: list[aiowget.Event] = []

    async def on_event(event: aiowget.Event) -> None:
        events.append(event)

    url = files_server.url("/files/f1.bin")
    await aiowget.download([url], tmp_path / "a", on_event=on_event)
    await aiowget.download([url], tmp_path / "b", on_event=events.append)

    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Started", "Finished"] * 2
    first = events[0]
    assert isinstance(first, Started)
    assert first.total == len(FILES["/files/f1.bin"])


async def test_progress_events_while_a_large_body_streams(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(3 * 1024 * 1024, "progress")
    server = await serve({"/big": static(content)})
    events: list[aiowget.Event] = []

    await aiowget.download([server.url("/big")], tmp_path, on_event=events.append)

    progress = [e for e in events if isinstance(e, aiowget.Progress)]
    assert progress
    assert all(e.total == len(content) for e in progress)
    assert [e.received for e in progress] == sorted(e.received for e in progress)


async def test_downloader_must_be_entered(tmp_path: Path) -> None:
    with pytest.raises(aiowget.UsageError, match="async with"):
        await Downloader().download_one("http://127.0.0.1/x")


# The same URL asked for more than once --------------------------------------------------


async def not_found(request: web.Request) -> web.StreamResponse:
    return web.Response(status=404)


async def test_a_call_for_a_url_under_way_awaits_it_and_shares_its_failure(
    serve: ServeFactory, tmp_path: Path
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()
    asked = 0

    async def failing(request: web.Request) -> web.StreamResponse:
        nonlocal asked
        asked += 1
        arrived.set()
        await release.wait()
        return web.Response(status=404)

    server = await serve({"/f": failing})
    async with Downloader(directory=tmp_path, raise_errors=False) as dl:
        first = asyncio.ensure_future(dl.download_one(server.url("/f")))
        await arrived.wait()
        second = asyncio.ensure_future(dl.download_one(server.url("/f")))
        await asyncio.sleep(0)  # one step: the second call finds the first under way
        release.set()
        results = await asyncio.gather(first, second)

    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert [r.exit_status for r in results] == [8, 8]
    assert results[1].note == "duplicate URL, fetched once"
    assert asked == 1


async def test_a_call_under_way_that_succeeds_is_shared_and_raise_errors_still_raises(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(body(3 << 20, "f"))})
    async with Downloader(directory=tmp_path) as dl:
        a, b = await asyncio.gather(*(dl.download_one(server.url("/f")) for _ in range(2)))
    assert {a.outcome, b.outcome} == {Outcome.SAVED, Outcome.SKIPPED}
    assert a.path == b.path
    assert a.path is not None
    assert a.path.read_bytes() == body(3 << 20, "f")
    assert len(server.gets("/f")) == 1

    other = await serve({"/g": not_found})
    async with Downloader(directory=tmp_path, raise_errors=True) as dl:
        calls = [dl.download_one(other.url("/g")) for _ in range(2)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, aiowget.HTTPStatusError) for o in outcomes)


async def test_a_url_asked_again_after_it_failed_is_fetched_again(
    serve: ServeFactory, tmp_path: Path
) -> None:
    answers = iter([503, 200, 200])
    content = body(5000, "again")

    async def flaky(request: web.Request) -> web.StreamResponse:
        status = next(answers)
        return web.Response(status=status, body=content if status == 200 else b"")

    server = await serve({"/f": flaky})
    url = server.url("/f")
    async with Downloader(directory=tmp_path, retries=0) as dl:
        failed = await dl.download_one(url)
        again = await dl.download_one(url)
        listed = [r async for r in dl.iter_download([url])]

    assert failed.outcome is Outcome.FAILED
    assert again.outcome is Outcome.SAVED
    assert again.path is not None
    assert again.path.read_bytes() == content
    assert [r.outcome for r in listed] == [Outcome.SKIPPED]  # there now: not fetched again
    assert listed[0].note == "already there"
    assert len(server.gets("/f")) == 2


async def test_overwrite_fetches_a_url_asked_again(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/f": static(b"fresh")})
    async with Downloader(directory=tmp_path, if_exists="overwrite") as dl:
        for _ in range(2):
            assert (await dl.download_one(server.url("/f"))).outcome is Outcome.SAVED
        listed = [r.outcome async for r in dl.iter_download([server.url("/f")] * 2)]

    assert sorted(listed) == sorted([Outcome.SAVED, Outcome.SKIPPED])  # once per list
    assert len(server.gets("/f")) == 3


async def test_a_failed_url_repeated_in_one_list_fails_again_without_asking(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": not_found})

    results = await aiowget.download([server.url("/f")] * 2, tmp_path, jobs=1, retries=0)

    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert all(isinstance(r.error, aiowget.HTTPStatusError) for r in results)
    assert results[1].note == "duplicate URL, fetched once"
    assert len(server.gets("/f")) == 1


async def test_a_repeat_in_a_renaming_list_names_the_file_really_saved(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/r": static(b"new")})
    url = server.url("/r")
    (tmp_path / flat_name(url)).write_bytes(b"old")

    first, repeat = await aiowget.download([url] * 2, tmp_path, jobs=1, if_exists="rename")

    assert first.path == repeat.path == tmp_path / (flat_name(url) + ".1")
    assert repeat.path is not None
    assert repeat.path.read_bytes() == b"new"
    assert first.note.startswith("saved under a new name:")


async def test_a_single_call_between_a_lists_repeats_does_not_make_it_fetch_twice(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/a": static(b"a")})
    url = server.url("/a")
    async with Downloader(directory=tmp_path, if_exists="overwrite", jobs=1) as dl:

        async def listing() -> AsyncIterator[str]:
            yield url
            assert (await dl.download_one(url)).outcome is Outcome.SAVED
            yield url

        outcomes = [r.outcome async for r in dl.iter_download(listing())]

    assert outcomes == [Outcome.SAVED, Outcome.SKIPPED]
    assert len(server.gets("/a")) == 2  # the list once, the single call once


async def test_what_a_list_remembers_for_its_repeats_goes_with_the_list(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": not_found})
    async with Downloader(directory=tmp_path, retries=0) as dl:
        for _ in range(3):
            results = [r async for r in dl.iter_download([server.url("/f")] * 2)]
            assert [r.outcome for r in results] == [Outcome.FAILED] * 2
        assert dl._ctx().remembered == {}  # nothing kept once each list is done
    assert len(server.gets("/f")) == 3  # once per list

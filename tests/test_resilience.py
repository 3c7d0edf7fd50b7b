"""Retries, resume and verification against servers that really misbehave.

Every test checks the bytes of the final file against the source and what the server saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import aiowget
from aiowget import Outcome
from aiowget.naming import flat_name
from aiowget.storage import part_path, url_key

from . import conftest
from .conftest import ServeFactory, Server, body, files_in, run_cli
from .faults import Fault, FaultyFile

MiB = 1 << 20
CONTENT = body(4 * MiB + 123, "resilience")
FAST: dict[str, Any] = {"retry_wait": 0}


async def serve_file(serve: ServeFactory, faulty: FaultyFile) -> Server:
    return await serve({"/f": faulty.handler})


async def fetch(server: Server, directory: Path, **options: Any) -> aiowget.Result:
    (result,) = await aiowget.download([server.url("/f")], directory, **{**FAST, **options})
    return result


def resumed_at(range_header: str | None) -> int:
    assert range_header is not None
    assert range_header.startswith("bytes=")
    return int(range_header[len("bytes=") :].rstrip("-"))


async def test_retry_resumes_from_where_the_connection_dropped(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.outcome is Outcome.SAVED
    assert result.attempts == 2
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    first, second = faulty.requests
    assert first.range is None
    assert 0 < resumed_at(second.range) <= 2 * MiB
    assert second.if_range == '"v1"'
    assert files_in(tmp_path) == [result.path.name]


async def test_connection_that_always_drops_keeps_the_part_for_the_next_run(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # Each attempt gets at most 1.5 MiB of the 4 MiB: two attempts cannot finish.
    faulty = FaultyFile(CONTENT, [Fault(cut_after=3 * MiB // 2)] * 2)
    server = await serve_file(serve, faulty)

    failed = await fetch(server, tmp_path, retries=1)

    assert isinstance(failed.error, aiowget.ContentTooShortError)
    assert failed.exit_status == 4
    assert failed.attempts == 2
    assert len(faulty.requests) == 2
    part = part_path(tmp_path / flat_name(server.url("/f")))
    assert not (tmp_path / flat_name(server.url("/f"))).exists()
    assert 0 < part.stat().st_size <= len(CONTENT)
    assert CONTENT.startswith(part.read_bytes())
    kept = part.stat().st_size

    # The next run (the server now behaves) asks only for the rest.
    again = await fetch(server, tmp_path)

    assert again.outcome is Outcome.SAVED
    assert again.path is not None
    assert again.path.read_bytes() == CONTENT
    assert resumed_at(faulty.requests[-1].range) == kept
    assert files_in(tmp_path) == [again.path.name]


async def test_stall_times_out_then_resumes(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault(stall_after=2 * MiB)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path, timeout=0.5)
    faulty.release.set()

    assert result.outcome is Outcome.SAVED
    assert result.attempts == 2
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert resumed_at(faulty.ranges()[1]) > 0


async def test_slow_but_steady_transfer_is_never_cut(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(40_000, "slow")
    faulty = FaultyFile(content, [Fault(trickle=(2_000, 0.05))])  # about 1 s in all
    server = await serve_file(serve, faulty)
    started = time.monotonic()

    result = await fetch(server, tmp_path, timeout=0.5, retries=0)

    assert time.monotonic() - started > 0.5  # longer than the timeout, yet not cut
    assert result.outcome is Outcome.SAVED
    assert result.attempts == 1
    assert result.path is not None
    assert result.path.read_bytes() == content


async def test_server_ignoring_range_restarts_from_zero(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB), Fault(ignore_range=True)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert resumed_at(faulty.ranges()[1]) > 0  # it was asked for a range, answered 200


async def test_partial_content_from_the_wrong_offset_is_not_appended(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB), Fault(shift=100)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    ranges = faulty.ranges()
    assert len(ranges) == 3
    assert resumed_at(ranges[1]) > 0
    assert ranges[2] is None  # started over without Range


async def test_changed_file_is_fetched_whole_when_if_range_fails(
    serve: ServeFactory, tmp_path: Path
) -> None:
    new = body(3 * MiB, "version two")
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)])
    server = await serve_file(serve, faulty)
    await fetch(server, tmp_path, retries=0)
    faulty.content, faulty.etag = new, '"v2"'

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == new
    assert faulty.requests[-1].if_range == '"v1"'


async def test_changed_etag_on_a_206_restarts(serve: ServeFactory, tmp_path: Path) -> None:
    # A server that serves the range even though If-Range no longer matches.
    faulty = FaultyFile(
        CONTENT, [Fault(cut_after=2 * MiB), Fault(etag='"v2"', ignore_if_range=True)]
    )
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges()[2] is None


@pytest.mark.parametrize("status", [503, 500, 502, 504, 408])
async def test_transient_status_then_success(
    serve: ServeFactory, tmp_path: Path, status: int
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(status=status)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.outcome is Outcome.SAVED
    assert result.attempts == 2
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT


@pytest.mark.parametrize("retry_after", ["1", "HTTP-DATE"])
async def test_retry_after_is_honoured(
    serve: ServeFactory, tmp_path: Path, retry_after: str
) -> None:
    if retry_after == "HTTP-DATE":
        from email.utils import formatdate

        retry_after = formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s away
    faulty = FaultyFile(CONTENT, [Fault(status=429, headers={"Retry-After": retry_after})])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.outcome is Outcome.SAVED
    first, second = faulty.requests
    assert second.at - first.at >= 0.9


async def test_retry_after_is_capped(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault(status=503, headers={"Retry-After": "86400"})])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path, retry_after_max=0.1)

    assert result.outcome is Outcome.SAVED
    assert faulty.requests[1].at - faulty.requests[0].at < 5


async def test_client_errors_are_not_retried(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault(status=404), Fault(status=404)])
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.exit_status == 8
    assert len(faulty.requests) == 1


async def test_chunked_body_without_validator_restarts_after_a_cut(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(chunked=True, cut_after=2 * MiB)], etag=None)
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges() == [None, None]  # nothing identifies the file: no Range


async def test_empty_body(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(b"")
    server = await serve_file(serve, faulty)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == b""


async def test_redirect_loop_is_a_protocol_error_without_retries(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    server = await serve({"/loop": loop})

    (result,) = await aiowget.download([server.url("/loop")], tmp_path, max_redirects=4)

    assert isinstance(result.error, aiowget.ProtocolError)
    assert result.exit_status == 7
    assert len(server.gets("/loop")) == 5  # the first request and four redirects, once


def leave_part(directory: Path, for_url: str, content: bytes, **fields: Any) -> Path:
    """What an interrupted earlier run leaves for the file of `for_url`."""
    final = directory / flat_name(for_url)
    return conftest.leave_part(final, for_url, content, **{"total": len(CONTENT), **fields})


async def test_complete_part_answered_416_is_finished(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    leave_part(tmp_path, server.url("/f"), CONTENT)

    result = await fetch(server, tmp_path)

    assert result.outcome is Outcome.SAVED
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges() == [f"bytes={len(CONTENT)}-"]  # answered 416: nothing to add


async def test_416_for_a_part_of_another_length_restarts(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    leave_part(tmp_path, server.url("/f"), CONTENT + b"junk", total=None)

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges() == [f"bytes={len(CONTENT) + 4}-", None]


async def test_no_continue_ignores_an_earlier_part(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    leave_part(tmp_path, server.url("/f"), b"stale bytes")

    result = await fetch(server, tmp_path, continue_partial=False)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges() == [None]


async def test_part_of_another_url_is_not_resumed(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    leave_part(tmp_path, server.url("/f"), b"other", key=url_key("http://elsewhere/f"))

    result = await fetch(server, tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == CONTENT
    assert faulty.ranges() == [None]


SHA256 = hashlib.sha256(CONTENT).hexdigest()


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
async def test_checksum_verified_while_streaming(
    serve: ServeFactory, tmp_path: Path, algorithm: str
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)])
    server = await serve_file(serve, faulty)
    checksum = aiowget.Checksum(algorithm, hashlib.new(algorithm, CONTENT).hexdigest())

    async with aiowget.Downloader(directory=tmp_path, **FAST) as dl:
        job = aiowget.Job(server.url("/f"), checksum=checksum)
        result = await dl.download_one(job)

    assert result.outcome is Outcome.SAVED
    assert result.attempts == 2
    assert result.path is not None
    assert result.path.read_bytes() == CONTENT


async def test_checksum_of_a_part_from_an_earlier_run(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    leave_part(tmp_path, server.url("/f"), CONTENT[: 3 * MiB])

    result = await run_cli("-P", tmp_path, "--checksum", f"sha256:{SHA256}", server.url("/f"))

    assert result.exit_code == 0
    assert (tmp_path / flat_name(server.url("/f"))).read_bytes() == CONTENT
    assert faulty.ranges() == [f"bytes={3 * MiB}-"]


async def test_checksum_mismatch_keeps_nothing(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT)
    server = await serve_file(serve, faulty)
    wrong = "0" * 64

    result = await run_cli("-P", tmp_path, "--checksum", f"sha256:{wrong}", server.url("/f"))

    assert result.exit_code == 1
    assert f"sha256 mismatch: expected {wrong}, got {SHA256}" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert len(faulty.requests) == 1  # a mismatch is not retried


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("sha256:abc", "expected 64 hex digits"),
        ("crc32:0000", "algorithm must be one of"),
    ],
)
async def test_bad_checksum_is_a_usage_error(flag: str, message: str) -> None:
    result = await run_cli("--checksum", flag, "http://127.0.0.1/f")

    assert result.exit_code == 2
    assert message in result.stderr


async def test_checksum_in_an_input_file(serve: ServeFactory, tmp_path: Path) -> None:
    good, bad = FaultyFile(CONTENT), FaultyFile(CONTENT)
    server = await serve({"/good": good.handler, "/bad": bad.handler})
    listing = tmp_path / "urls.txt"
    listing.write_text(
        f"{server.url('/good')} checksum=sha256:{SHA256}\n"
        f"{server.url('/bad')} checksum=md5:{'0' * 32}\n"
    )
    out = tmp_path / "out"

    result = await run_cli("-i", listing, "-P", out)

    assert result.exit_code == 1
    assert [p.name for p in out.iterdir()] == [flat_name(server.url("/good"))]


# Interruption: a real process, a real signal ---------------------------------------------


async def wait_for_bytes(path: Path, least: int, process: asyncio.subprocess.Process) -> None:
    """Poll until `path` holds `least` bytes (the transfer is under way), or fail."""
    deadline = time.monotonic() + 20
    while not (path.exists() and path.stat().st_size >= least):
        assert process.returncode is None, "aiowget ended before the transfer was under way"
        assert time.monotonic() < deadline, f"{path} never reached {least} bytes"
        await asyncio.sleep(0.02)


async def start_process(*args: str | Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", *map(str, args), stderr=asyncio.subprocess.PIPE
    )


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
async def test_signal_stops_cleanly_and_keeps_the_part(
    serve: ServeFactory, tmp_path: Path, number: signal.Signals
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(stall_after=2 * MiB)])
    server = await serve_file(serve, faulty)
    url = server.url("/f")
    part = part_path(tmp_path / flat_name(url))
    process = await start_process("-P", tmp_path, url)
    await wait_for_bytes(part, MiB, process)

    process.send_signal(number)
    _, stderr = await process.communicate()
    faulty.release.set()

    assert process.returncode == 130
    message = stderr.decode()
    assert f"[!] unfinished {url} (kept {part})" in message
    assert "interrupted; 1 unfinished" in message
    assert "Traceback" not in message
    kept = part.stat().st_size
    assert kept >= MiB
    assert CONTENT.startswith(part.read_bytes())

    rerun = await run_cli("-P", tmp_path, url)

    assert rerun.exit_code == 0
    assert (tmp_path / flat_name(url)).read_bytes() == CONTENT
    assert resumed_at(faulty.ranges()[-1]) == kept


async def test_kill_9_loses_only_the_bytes_in_flight(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(CONTENT, [Fault(stall_after=2 * MiB)])
    server = await serve_file(serve, faulty)
    url = server.url("/f")
    part = part_path(tmp_path / flat_name(url))
    process = await start_process("-P", tmp_path, url)
    await wait_for_bytes(part, MiB, process)

    process.kill()
    await process.wait()
    faulty.release.set()
    kept = part.stat().st_size

    rerun = await run_cli("-P", tmp_path, url)

    assert rerun.exit_code == 0
    assert (tmp_path / flat_name(url)).read_bytes() == CONTENT
    assert resumed_at(faulty.ranges()[-1]) == kept >= MiB
    assert files_in(tmp_path) == [flat_name(url)]


async def test_a_name_asked_of_the_server_is_retried_like_any_request(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """`--content-disposition`: the first request, which learns the name, was made outside the
    retries: one 503 failed the URL."""
    asked: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(1)
        if len(asked) == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        disposition = {"Content-Disposition": 'attachment; filename="named.txt"'}
        return web.Response(body=b"named", headers=disposition)

    server = await serve({"/f": handler})

    (result,) = await aiowget.download(
        [server.url("/f")], tmp_path, content_disposition=True, **FAST
    )

    assert result.ok, result.error
    assert (tmp_path / "named.txt").read_bytes() == b"named"
    assert result.attempts == len(asked) >= 2

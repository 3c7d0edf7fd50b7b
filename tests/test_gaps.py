"""Promises of the README that no other test held to, each against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from aiowget.naming import flat_name
from aiowget.storage import part_path

from .conftest import (
    CliResult,
    RawFactory,
    ServeFactory,
    Server,
    body,
    files_in,
    leave_part,
    run_cli,
    run_process,
    static,
)
from .faults import Fault, FaultyFile

MiB = 1 << 20
CONTENT = body(3 * MiB + 17, "gaps")
FAST = ("--retry-wait", "0")


async def serve_file(serve: ServeFactory, faulty: FaultyFile) -> tuple[Server, str]:
    server = await serve({"/f": faulty.handler})
    return server, server.url("/f")


def range_start(header: str | None) -> int:
    assert header is not None
    assert header.startswith("bytes=")
    return int(header[len("bytes=") :].partition("-")[0])


# Timeouts ----------------------------------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose accept queue is full: a new connect waits for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
    except TimeoutError:
        pass  # the kernel drops the SYN (Linux, tcp_abort_on_overflow=0): the connect stalls
    except OSError as error:
        pytest.skip(f"a full accept queue does not stall a connect here: {error}")
    else:
        pytest.skip("a full accept queue does not stall a connect here")
    finally:
        probe.close()
    yield port
    for sock in [*fillers, listener]:
        sock.close()


async def run_within(limit: float, *args: str | Path) -> CliResult:
    return await run_process(*args, limit=limit)


async def test_connect_that_never_completes_times_out_with_exit_4(
    unanswered_port: int, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{unanswered_port}/f"

    # 0.5 s to connect, plus the start of a process: far below the default of 30 s.
    result = await run_within(10, "-t", "0", "--connect-timeout", "0.5", "-P", tmp_path, url)

    assert result.exit_code == 4, result.stderr
    assert "timed out" in result.stderr
    assert files_in(tmp_path) == []


async def test_no_total_timeout_a_slow_steady_body_longer_than_T_is_saved(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(30_000, "steady")
    faulty = FaultyFile(content, [Fault(trickle=(1_000, 0.1))])  # 3 s in all, never 1 s silent
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-T", "1", "-t", "0", "-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / flat_name(url)).read_bytes() == content
    assert len(faulty.requests) == 1


# Resume and working files ------------------------------------------------------------------


async def test_no_continue_still_resumes_within_the_run(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)])
    _, url = await serve_file(serve, faulty)

    result = await run_cli("--no-continue", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / flat_name(url)).read_bytes() == CONTENT
    first, second = faulty.requests
    assert first.range is None
    assert 0 < range_start(second.range) <= 2 * MiB
    assert second.if_range == '"v1"'


async def test_part_without_validator_is_removed_on_failure(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)], etag=None)
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-t", "0", "-P", tmp_path, url)

    assert result.exit_code == 4
    assert files_in(tmp_path) == []  # neither .part nor sidecar nor the .aiowget folder


async def test_part_with_strong_etag_is_kept_on_failure(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(CONTENT, [Fault(cut_after=2 * MiB)])
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-t", "0", "-P", tmp_path, url)

    assert result.exit_code == 4
    part = part_path(tmp_path / flat_name(url))
    assert 0 < part.stat().st_size <= 2 * MiB
    assert CONTENT.startswith(part.read_bytes())
    assert not (tmp_path / flat_name(url)).exists()


async def test_206_with_another_total_is_not_appended(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(200_000, "new version")
    faulty = FaultyFile(content)
    _, url = await serve_file(serve, faulty)
    final = tmp_path / flat_name(url)
    # An earlier version of another length, same ETag: its bytes must not be kept.
    leave_part(final, url, body(50_000, "old version"), total=250_000)

    result = await run_cli(*FAST, "-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == content
    assert faulty.ranges() == ["bytes=50000-", None]
    assert files_in(tmp_path) == [final.name]


async def test_split_segment_answered_with_another_range_falls_back_to_one_stream(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(8 * MiB + 5, "split gaps")
    faulty = FaultyFile(content, [Fault(), Fault(shift=1000)])  # one segment: another range
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-s", "4", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / flat_name(url)).read_bytes() == content
    ranges = faulty.ranges()
    assert ranges[0] is None
    segments = ranges[1:-1]
    assert segments
    assert all(r is not None and not r.endswith("-") for r in segments)  # bytes=A-B
    assert ranges[-1] is None  # the last request: the whole file, in one stream


# -O PATH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--if-exists", "skip")])
async def test_output_path_that_exists_is_skipped_unasked(
    serve: ServeFactory, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    server = await serve({"/f": static(b"new")})
    target = tmp_path / "exact.bin"
    target.write_bytes(b"mine")

    result = await run_cli("-O", target, *flags, server.url("/f"))

    assert result.exit_code == 0
    assert target.read_bytes() == b"mine"
    assert server.gets() == []
    assert files_in(tmp_path) == ["exact.bin"]


async def test_output_path_is_replaced_with_if_exists_overwrite(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(b"new")})
    target = tmp_path / "exact.bin"
    target.write_bytes(b"mine, and longer than the new body")

    result = await run_cli("-O", target, "--if-exists", "overwrite", server.url("/f"))

    assert result.exit_code == 0
    assert target.read_bytes() == b"new"
    assert len(server.gets()) == 1
    assert files_in(tmp_path) == ["exact.bin"]


# Exit statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nhi",
    ],
)
async def test_bad_response_exits_7_without_retry(
    raw_server: RawFactory, tmp_path: Path, response: bytes
) -> None:
    url = await raw_server(response) + "/f"

    result = await run_cli("-t", "3", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 7, result.stderr
    assert "[!]" not in result.stderr  # protocol errors are not retried
    assert files_in(tmp_path) == []


async def test_407_exits_6_without_retry(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(b"secret", [Fault(status=407)])
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-t", "3", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 6
    assert len(faulty.requests) == 1
    assert f"[-] {url}: 407 Proxy Authentication Required" in result.stderr
    assert files_in(tmp_path) == []


async def test_status_of_the_last_attempt_a_404_after_a_503(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(b"gone", [Fault(status=503), Fault(status=404)])
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-t", "3", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 8
    assert len(faulty.requests) == 2  # the 404 is not retried
    failures = [line for line in result.stderr.splitlines() if line.startswith("[-]")]
    assert failures == [f"[-] {url}: 404 Not Found"]


async def test_status_of_the_last_attempt_a_cut_body_after_a_503(
    serve: ServeFactory, tmp_path: Path
) -> None:
    cut = Fault(cut_after=MiB)  # 1 MiB an attempt: two attempts leave the file short
    faulty = FaultyFile(CONTENT, [Fault(status=503), cut, cut])
    _, url = await serve_file(serve, faulty)

    result = await run_cli("-t", "2", *FAST, "-P", tmp_path, url)

    assert result.exit_code == 4, result.stderr
    assert len(faulty.requests) == 3
    failures = [line for line in result.stderr.splitlines() if line.startswith("[-]")]
    assert len(failures) == 1
    assert "503" not in failures[0]


async def test_password_is_masked_in_retry_lines(serve: ServeFactory, tmp_path: Path) -> None:
    faulty = FaultyFile(b"payload", [Fault(status=503)])
    _, url = await serve_file(serve, faulty)
    secret_url = url.replace("http://", "http://alice:S3CR3T@")

    result = await run_cli("-t", "1", *FAST, "-P", tmp_path, secret_url)

    assert result.exit_code == 0, result.stderr
    retries = [line for line in result.stderr.splitlines() if line.startswith("[!]")]
    assert len(retries) == 1
    assert "alice:***@" in retries[0]
    assert "retry 1/1" in retries[0]
    assert "S3CR3T" not in result.stderr
    assert len(faulty.requests) == 2


# TLS ---------------------------------------------------------------------------------------


async def test_untrusted_certificate_exits_5_after_one_handshake(tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    connections = 0

    def accepted() -> asyncio.Protocol:  # asyncio calls it for each TCP connection, before TLS
        nonlocal connections
        connections += 1
        return asyncio.Protocol()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(accepted, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_cli("-t", "3", *FAST, "-P", tmp_path, f"https://127.0.0.1:{port}/f")
    finally:
        server.close()
        await server.wait_closed()

    assert result.exit_code == 5, result.stderr
    assert connections == 1
    assert "[!]" not in result.stderr
    assert files_in(tmp_path) == []


async def test_infinite_timeouts_mean_no_limit(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/f": static(b"body")})
    url = server.url("/f")

    result = await run_cli("--connect-timeout", "inf", "-T", "inf", "-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / flat_name(url)).read_bytes() == b"body"


async def test_an_empty_output_name_is_a_usage_error() -> None:
    result = await run_cli("-O", "", "http://127.0.0.1:1/f")

    assert result.exit_code == 2
    assert "-O/--output needs a file name" in result.stderr

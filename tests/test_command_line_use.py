"""The command line as terminal users run it (issue #12): pipes closed early, input that
arrives a line at a time, Ctrl-C once and twice, closed standard descriptors, `-O` at a
directory, and a `--json` stream that always ends with its summary. Real processes only."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from aiowget.naming import flat_name

from .conftest import ServeFactory, Server, body, files_in, run_process, static

LIMIT = 30  # seconds any one of these processes may take before the test fails


@asynccontextmanager
async def aiowget_process(
    *args: str | Path, preexec: Callable[[], Any] | None = None, **pipes: Any
) -> AsyncIterator[asyncio.subprocess.Process]:
    """aiowget running as a real process; killed (and waited for) if still alive at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", *map(str, args), preexec_fn=preexec, **pipes
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def read_until(stream: asyncio.StreamReader, text: str) -> str:
    """What `stream` says up to and including the first line holding `text`."""
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(stream.readline(), LIMIT)
        assert line, f"ended before {text!r}: {seen}"
        seen += line.decode()
    return seen


def held_handler(arrived: asyncio.Event) -> Callable[[web.Request], Any]:
    """A body that starts and then never goes on: only an interruption ends its transfer."""

    async def held(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "5000000", "ETag": '"v1"'})
        await response.prepare(request)
        await response.write(b"h" * 100_000)
        arrived.set()
        await response.write(b"h" * 1_900_000)  # held here too if the client stops reading
        await asyncio.Event().wait()
        return response

    return held


# A reader that goes away ---------------------------------------------------------------------


async def o_dash_into_head(url: str, take: int) -> tuple[bytes, int | None, str]:
    """`aiowget -O - URL | head -c TAKE`: what the reader got, the exit status, stderr."""
    reader, writer = os.pipe()
    async with aiowget_process(
        "-O", "-", url, stdout=writer, stderr=asyncio.subprocess.PIPE
    ) as process:
        os.close(writer)
        got = await asyncio.to_thread(os.read, reader, take)
        os.close(reader)
        _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)
    return got, process.returncode, stderr.decode()


async def test_a_closed_stdout_ends_o_dash_at_once_quietly(serve: ServeFactory) -> None:
    server = await serve({"/big": static(body(20_000_000))})

    got, status, stderr = await o_dash_into_head(server.url("/big"), 65536)

    assert got
    assert status == 3
    assert "retry" not in stderr
    assert "Traceback" not in stderr
    assert "Broken pipe" not in stderr
    assert len(server.gets("/big")) == 1


async def test_json_into_head_ends_the_run_at_once_quietly(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/{n}": static(b"x")})
    urls = "\n".join(server.url(f"/{n}") for n in range(2000)).encode()
    reader, writer = os.pipe()
    async with aiowget_process(
        "--json", "-j", "1", "-P", tmp_path, "-i", "-",
        stdin=asyncio.subprocess.PIPE, stdout=writer, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        os.close(writer)
        assert process.stdin is not None
        process.stdin.write(urls)
        process.stdin.close()
        first = await asyncio.to_thread(os.read, reader, 100)
        os.close(reader)  # `| head -c 100`
        _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)

    assert first.startswith(b'{"url"')
    assert process.returncode == 3
    assert "Traceback" not in stderr.decode()
    assert len(server.gets()) < 2000  # stopped, not run to the end


async def test_a_closed_stderr_silences_messages_not_downloads(
    files_server: Server, tmp_path: Path
) -> None:
    url = files_server.url("/files/f1.bin")
    async with aiowget_process(
        "-P", tmp_path, url, preexec=lambda: os.close(2), stdout=asyncio.subprocess.PIPE
    ) as process:
        await asyncio.wait_for(process.wait(), LIMIT)

    assert process.returncode == 0
    assert files_in(tmp_path) == [flat_name(url)]


async def test_closed_stdin_or_stdout_needed_by_the_run_are_usage_errors(
    files_server: Server, tmp_path: Path
) -> None:
    url = files_server.url("/files/f1.bin")
    statuses = {}
    for name, args, fd in [
        ("stdin", ["-i", "-"], 0),
        ("json", ["--json", url], 1),
        ("o-dash", ["-O", "-", url], 1),
    ]:
        async with aiowget_process(
            "-P",
            tmp_path,
            *args,
            preexec=functools.partial(os.close, fd),
            stderr=asyncio.subprocess.PIPE,
        ) as process:
            _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)
        statuses[name] = (
            process.returncode,
            stderr.decode().count("\n"),
            "closed" in stderr.decode(),
        )

    assert statuses == dict.fromkeys(("stdin", "json", "o-dash"), (2, 1, True))
    assert files_server.seen == []


# Input that arrives a line at a time, and Ctrl-C while waiting for more -----------------------


async def test_input_lines_are_used_as_they_arrive_and_ctrl_c_ends_the_wait(
    serve: ServeFactory, tmp_path: Path
) -> None:
    first_seen = asyncio.Event()

    async def first(request: web.Request) -> web.StreamResponse:
        first_seen.set()
        return web.Response(body=b"first")

    server = await serve({"/first": first, "/second": static(b"second")})
    async with aiowget_process(
        "-P", tmp_path, "-i", "-", "--progress", "plain",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        assert process.stdin is not None
        assert process.stderr is not None
        process.stdin.write(server.url("/first").encode() + b"\n")
        await process.stdin.drain()
        # Fetched while the input is still open, with no more than one short line in it.
        await asyncio.wait_for(first_seen.wait(), LIMIT)
        await read_until(process.stderr, "[+] saved")
        process.send_signal(signal.SIGINT)  # stdin still open: nothing more will come
        rest = (await asyncio.wait_for(process.stderr.read(), LIMIT)).decode()
        await asyncio.wait_for(process.wait(), LIMIT)

    assert process.returncode == 130
    assert "Traceback" not in rest
    assert "interrupted; 0 unfinished, 1 saved" in rest
    assert files_in(tmp_path) == [flat_name(server.url("/first"))]


async def test_a_second_ctrl_c_stops_a_cleanup_that_waits(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """`-O -` into a reader that stopped reading: the first Ctrl-C cancels the transfer, but a
    write stuck on the full pipe holds the exit; the second one ends the process."""
    arrived = asyncio.Event()
    server = await serve({"/held": held_handler(arrived)})
    reader, writer = os.pipe()
    try:
        async with aiowget_process(
            "-O", "-", server.url("/held"), stdout=writer, stderr=asyncio.subprocess.PIPE
        ) as process:
            os.close(writer)
            assert process.stderr is not None
            await asyncio.wait_for(arrived.wait(), LIMIT)
            process.send_signal(signal.SIGINT)
            await read_until(process.stderr, "interrupted")
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), LIMIT)
    finally:
        os.close(reader)

    assert process.returncode in (130, -signal.SIGINT)


async def test_ctrl_c_during_a_retry_wait_counts_that_url_unfinished(
    serve: ServeFactory, tmp_path: Path
) -> None:
    asked = asyncio.Event()

    async def busy(request: web.Request) -> web.StreamResponse:
        asked.set()
        return web.Response(status=503, headers={"Retry-After": "60"})

    server = await serve({"/busy": busy})
    async with aiowget_process(
        "-P", tmp_path, server.url("/busy"), "--progress", "plain", stderr=asyncio.subprocess.PIPE
    ) as process:
        assert process.stderr is not None
        await read_until(process.stderr, "retry 1/5")
        process.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(process.stderr.read(), LIMIT)).decode()

    assert asked.is_set()
    assert "[!] unfinished http://" in rest
    assert "interrupted; 1 unfinished, 0 saved" in rest


# --json always ends with a summary -------------------------------------------------------------


async def test_json_under_ctrl_c_reports_the_unfinished_and_ends_with_a_summary(
    serve: ServeFactory, tmp_path: Path
) -> None:
    arrived = asyncio.Event()
    server = await serve({"/held": held_handler(arrived), "/fast": static(b"fast")})
    async with aiowget_process(
        "--json", "-P", tmp_path, server.url("/fast"), server.url("/held"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        await read_until(process.stdout, '"outcome": "saved"')
        await read_until(process.stderr, f"saving {server.url('/held')}")
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), LIMIT)

    records = [json.loads(line) for line in rest.decode().splitlines()]
    assert [(r["url"], r["outcome"], r["exit_code"]) for r in records[:-1]] == [
        (server.url("/held"), "failed", 130)
    ]
    assert records[-1]["summary"] is True
    assert (records[-1]["saved"], records[-1]["unfinished"], records[-1]["exit_code"]) == (
        1,
        1,
        130,
    )
    assert process.returncode == 130


async def test_json_after_an_early_error_is_a_summary_with_its_status(tmp_path: Path) -> None:
    result = await run_process("--json", "-i", tmp_path / "missing.txt", limit=LIMIT)

    (record,) = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert (record["summary"], record["exit_code"], result.exit_code) == (True, 3, 3)
    assert "missing.txt" in record["error"]


async def test_json_after_a_usage_error_is_a_summary_with_its_status() -> None:
    result = await run_process("--json", "-O", "", "http://127.0.0.1:9/", limit=LIMIT)

    (record,) = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert (record["exit_code"], result.exit_code) == (2, 2)


async def test_a_failed_records_path_is_null_and_its_bytes_are_not_counted_as_saved(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "4000000"})
        await response.prepare(request)
        await response.write(b"c" * 2_000_000)
        assert request.transport is not None
        request.transport.close()
        return response

    server = await serve({"/cut": cut})
    result = await run_process(
        "--json", "--retries", "0", "-P", tmp_path, server.url("/cut"), limit=LIMIT
    )

    failed, summary = (json.loads(line) for line in result.stdout.decode().splitlines())
    assert (failed["outcome"], failed["path"]) == ("failed", None)
    assert (summary["bytes"], summary["failed"]) == (0, 1)
    assert "0 saved (0 bytes)" in result.stderr


# Smaller things ------------------------------------------------------------------------------


async def test_o_at_a_directory_is_a_local_error_naming_it(
    files_server: Server, tmp_path: Path
) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    for extra in ([], ["--if-exists", "overwrite"]):
        result = await run_process(
            "-O", target, *extra, files_server.url("/files/f1.bin"), limit=LIMIT
        )
        assert result.exit_code == 3
        assert f"cannot save {target}: it is a directory" in result.stderr
    assert files_in(tmp_path) == ["dir"]


async def test_a_parse_error_is_one_line() -> None:
    result = await run_process("-j", "abc", "http://127.0.0.1:9/", limit=LIMIT)

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("aiowget: Invalid value for '-j'")


async def test_a_huge_url_gives_a_short_error_line(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/" + "x" * 1_000_000  # nothing listens on port 9
    result = await run_process(
        "-t", "0", "-P", tmp_path, "-i", "-", stdin=url.encode(), limit=LIMIT
    )

    assert result.exit_code == 4
    assert max(len(line) for line in result.stderr.splitlines()) < 1000


async def test_a_million_jobs_for_one_url(files_server: Server, tmp_path: Path) -> None:
    url = files_server.url("/files/f1.bin")
    result = await run_process("-j", "1000000", "-P", tmp_path, url, limit=LIMIT)

    assert result.exit_code == 0
    assert files_in(tmp_path) == [flat_name(url)]


# Found by breaking the above (a fresh tester, with only the README's promises) ---------------


async def test_json_into_a_full_disk_is_one_line_and_exit_3(
    files_server: Server, tmp_path: Path
) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    async with aiowget_process(
        "--json", "-P", tmp_path, files_server.url("/files/f1.bin"),
        stdout=full, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        os.close(full)
        _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)

    assert process.returncode == 3
    assert "Traceback" not in stderr.decode()
    assert stderr.decode().count("aiowget: cannot write to standard output") == 1


async def test_json_reader_gone_before_the_summary_exits_3_quietly(
    files_server: Server, tmp_path: Path
) -> None:
    reader, writer = os.pipe()
    async with aiowget_process(
        "--json", "-P", tmp_path, "-i", "-",
        stdin=asyncio.subprocess.PIPE, stdout=writer, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        os.close(writer)
        assert process.stdin is not None
        process.stdin.write(files_server.url("/files/f1.bin").encode() + b"\n")
        await process.stdin.drain()
        first = await asyncio.to_thread(os.read, reader, 65536)  # the record, not the summary
        os.close(reader)  # `| head -1`
        process.stdin.close()  # the input ends: the summary is written to nobody
        _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)

    assert b'"outcome": "saved"' in first
    assert process.returncode == 3
    assert "Traceback" not in stderr.decode()


async def test_ctrl_c_lists_a_url_still_waiting_for_its_response(
    serve: ServeFactory, tmp_path: Path
) -> None:
    asked = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        asked.set()
        await asyncio.Event().wait()  # no status line, ever
        raise AssertionError("unreachable")

    server = await serve({"/silent": silent})
    async with aiowget_process(
        "--json", "-P", tmp_path, server.url("/silent"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        await asyncio.wait_for(asked.wait(), LIMIT)
        process.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(process.communicate(), LIMIT)

    unfinished, summary = (json.loads(line) for line in stdout.decode().splitlines())
    assert (unfinished["url"], unfinished["error"]) == (server.url("/silent"), "interrupted")
    assert (summary["unfinished"], summary["exit_code"], process.returncode) == (1, 130, 130)


async def test_o_dash_into_a_reader_that_takes_one_byte_is_not_saved(
    serve: ServeFactory,
) -> None:
    server = await serve({"/f": static(body(1_048_577))})

    got, status, stderr = await o_dash_into_head(server.url("/f"), 1)

    assert len(got) == 1
    assert status == 3
    assert "saved" not in stderr


async def test_a_departed_stderr_changes_no_exit_status_and_no_summary(tmp_path: Path) -> None:
    outcomes = []
    for args in (["-j", "abc", "http://127.0.0.1:9/"], ["--json", "--checksum", "md5:zz", "x"]):
        reader, writer = os.pipe()
        os.close(reader)  # a reader of stderr that is gone
        async with aiowget_process(*args, stdout=asyncio.subprocess.PIPE, stderr=writer) as p:
            os.close(writer)
            stdout, _ = await asyncio.wait_for(p.communicate(), LIMIT)
        outcomes.append((p.returncode, stdout.count(b'"summary": true')))

    assert outcomes == [(2, 0), (2, 1)]


async def test_ctrl_c_after_the_summary_keeps_the_status_the_summary_gave(
    files_server: Server, tmp_path: Path
) -> None:
    async with aiowget_process(
        "--json", "-P", tmp_path, files_server.url("/files/f1.bin"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        summary = json.loads((await read_until(process.stdout, '"summary"')).splitlines()[-1])
        process.send_signal(signal.SIGINT)  # the run is ending: too late to interrupt it
        _, stderr = await asyncio.wait_for(process.communicate(), LIMIT)

    assert process.returncode == summary["exit_code"] == 0
    assert "Traceback" not in stderr.decode()


async def test_o_at_a_symlink_to_a_directory_with_a_slash_is_that_directory(
    files_server: Server, tmp_path: Path
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")

    result = await run_process("-O", f"{tmp_path / 'link'}/", files_server.url("/files/f1.bin"))

    assert result.exit_code == 3
    assert "it is a directory" in result.stderr
    assert (tmp_path / "link").is_symlink()
    assert files_in(tmp_path) == ["dir", "link"]


async def test_o_at_dev_null_or_a_fifo_writes_to_it_and_never_replaces_it(
    files_server: Server, tmp_path: Path
) -> None:
    result = await run_process("-O", "/dev/null", files_server.url("/files/f1.bin"), limit=LIMIT)

    assert result.exit_code == 0, result.stderr
    assert "saving" in result.stderr
    assert "to /dev/null" in result.stderr
    assert Path("/dev/null").is_char_device()


async def test_ctrl_c_before_the_run_starts_is_one_line_and_130(tmp_path: Path) -> None:
    """typer turns a KeyboardInterrupt in the command into a silent 130: it must say so. The
    command is held before its run by a password file that is a FIFO no one writes to."""
    fifo = tmp_path / "password"
    os.mkfifo(fifo)
    async with aiowget_process(
        "--user", "u", "--password-file", fifo, "-P", tmp_path / "out", "http://127.0.0.1:9/x",
        stderr=asyncio.subprocess.PIPE,
    ) as process:  # fmt: skip
        wchan = Path(f"/proc/{process.pid}/wchan")
        for _ in range(int(LIMIT / 0.02)):  # until it waits in open() for a FIFO's writer
            if wchan.read_text() == "wait_for_partner":
                break
            await asyncio.sleep(0.02)
        blocked = wchan.read_text()
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        said = (await asyncio.wait_for(process.stderr.read(), LIMIT)).decode()
        await asyncio.wait_for(process.wait(), LIMIT)

    assert blocked == "wait_for_partner"
    assert process.returncode == 130
    assert said == "aiowget: interrupted\n"

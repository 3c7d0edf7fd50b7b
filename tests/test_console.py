"""The reporter: plain lines, live bars rendered to a rich Console, and the output modes."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import struct
import sys
import termios
from pathlib import Path

import pytest
from aiohttp import web
from rich.cells import cell_len
from rich.console import Console

from aiowget.bars import MAX_BARS
from aiowget.console import (
    ConsoleReporter,
    ProgressMode,
    format_size,
    shard_line,
    shards_start_line,
)
from aiowget.errors import HTTPStatusError
from aiowget.models import Finished, Outcome, Progress, Result, Retrying, Started

from .conftest import ServeFactory, body

MiB = 1 << 20


def url(n: int) -> str:
    return f"http://e.com/file{n}.bin"


def saved(n: int, size: int = MiB) -> Finished:
    return Finished(Result(url(n), Path(f"file{n}.bin"), Outcome.SAVED, size=size))


def failed(n: int) -> Finished:
    return Finished(Result(url(n), None, Outcome.FAILED, error=HTTPStatusError(404, "Not Found")))


def terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=120, color_system=None), screen


async def test_bars_draw_overall_and_per_file_progress() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, total=3)
    reporter.start()

    await reporter(Started(url(1), Path("file1.bin"), 4 * MiB))
    await reporter(Progress(url(1), 2 * MiB, 4 * MiB))
    reporter.refresh()  # draw now, not on the timer
    drawn = screen.getvalue()

    assert "[0/3 files]" in drawn
    assert "file1.bin" in drawn
    assert "2.0 MiB/4.0 MiB" in drawn
    assert "━" in drawn  # a bar

    await reporter(saved(1, 4 * MiB))
    await reporter(failed(2))
    await reporter.summarize()
    final = screen.getvalue()

    # Finished lines are printed above the bars, and survive them.
    assert "[+] saved file1.bin (4194304 bytes)" in final
    assert "[-] http://e.com/file2.bin: 404 Not Found" in final
    assert "[=] 1 saved (4.0 MiB), 0 skipped, 1 failed" in final.splitlines()[-1]


async def test_at_most_ten_bars_and_one_line_for_the_rest() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console)
    reporter.start()
    for n in range(MAX_BARS + 5):
        await reporter(Started(url(n), Path(f"file{n}.bin"), MiB))
    reporter.refresh()

    drawn = screen.getvalue()
    last_frame = drawn[drawn.rfind("[0 files]") :]
    assert "… 5 more" in last_frame
    assert sum(f"file{n}.bin " in last_frame for n in range(MAX_BARS + 5)) == MAX_BARS

    # A finished download hands its bar to one that was waiting.
    await reporter(saved(0))
    reporter.refresh()
    drawn = screen.getvalue()
    last_frame = drawn[drawn.rfind("[1 files]") :]
    assert "… 4 more" in last_frame
    assert "file10.bin" in last_frame
    reporter.stop()


@pytest.mark.parametrize(
    ("mode", "quiet", "expected"),
    [
        (
            ProgressMode.PLAIN,
            False,
            [
                "[*] saving http://e.com/file1.bin to file1.bin",
                "[!] http://e.com/file1.bin: 503 Busy; retry 1/5 in 0.5 s",
                "[+] saved file1.bin (1048576 bytes)",
                "[-] http://e.com/file2.bin: 404 Not Found",
            ],
        ),
        (
            ProgressMode.NONE,
            False,
            [
                "[!] http://e.com/file1.bin: 503 Busy; retry 1/5 in 0.5 s",
                "[-] http://e.com/file2.bin: 404 Not Found",
            ],
        ),
        (ProgressMode.PLAIN, True, ["[-] http://e.com/file2.bin: 404 Not Found"]),
    ],
)
async def test_plain_modes(mode: ProgressMode, quiet: bool, expected: list[str]) -> None:
    stream = io.StringIO()
    reporter = ConsoleReporter(mode=mode, quiet=quiet, stream=stream)

    await reporter(Started(url(1), Path("file1.bin"), MiB))
    await reporter(Retrying(url(1), 1, 5, 0.5, HTTPStatusError(503, "Busy")))
    await reporter(Progress(url(1), 10, MiB))
    await reporter(saved(1))
    await reporter(failed(2))

    assert stream.getvalue().splitlines() == expected
    assert reporter.tally.saved == 1
    assert reporter.tally.failed == 1


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (5 * MiB // 2, "2.5 MiB"),
        (3 << 40, "3072.0 GiB"),
    ],
)
def test_format_size(size: int, shown: str) -> None:
    assert format_size(size) == shown


async def run_on_terminal(
    *args: str, columns: int, rows: int, cwd: Path, limit: float = 60
) -> tuple[int, str]:
    """aiowget as a real process whose stdin, stdout and stderr are a pseudo-terminal of the
    given size; returns its exit status and everything it sent to the terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "aiowget", *args),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        cwd=cwd,
    )
    os.close(slave)
    sent = bytearray()
    closed = asyncio.get_running_loop().create_future()

    def readable() -> None:
        try:
            block = os.read(master, 1 << 16)
        except OSError:  # EIO: the process and its terminal are gone
            block = b""
        sent.extend(block)
        if not block and not closed.done():
            closed.set_result(None)

    asyncio.get_running_loop().add_reader(master, readable)
    try:
        await asyncio.wait_for(asyncio.gather(closed, process.wait()), limit)
    finally:
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)
    assert process.returncode is not None
    return process.returncode, sent.decode(errors="replace")


ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def screen_lines(sent: str) -> list[str]:
    """Each line as the terminal shows it: escapes left out, a carriage return starts anew."""
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in ESCAPES.sub("", sent).split("\n")]


async def test_bars_fit_an_80_column_terminal_one_row_a_line(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        content = body(2 * MiB, request.path)
        response = web.StreamResponse(headers={"Content-Length": str(len(content))})
        await response.prepare(request)
        await response.write(content[: 3 * MiB // 2])
        await asyncio.sleep(1.0)  # long enough for a few draws of the bars
        await response.write(content[3 * MiB // 2 :])
        return response

    server = await serve({"/{name}": slow})
    names = [
        f"a-file-with-a-name-far-too-long-for-one-bar-on-narrow-screens-{n}.bin" for n in range(4)
    ]
    urls = [server.url(f"/{name}") for name in names]

    status, sent = await run_on_terminal(*urls, "-P", "d", columns=80, rows=24, cwd=tmp_path)

    assert status == 0, sent
    lines = screen_lines(sent)
    rows = [line for line in lines if "━" in line]
    assert rows, sent  # the bars were drawn
    printed = re.compile(r"\[[-+=!*]\] ")  # lines above the bars: the terminal may wrap those
    assert all(cell_len(line) <= 80 for line in lines if not printed.match(line))
    for row in rows:  # a row is one line: the name, its bar and its amounts together
        assert row.startswith(("[", "127.0.0.1:")), row
        assert "bytes" in row or "iB" in row, row
    assert any(re.match(r"127\.0\.0\.1:\S*…\S*-\d\.bin ", row) for row in rows)  # cut names
    assert sorted(p.name.split("__")[-1] for p in (tmp_path / "d").iterdir()) == names


def test_dask_lines_say_shards_and_files_so_far() -> None:
    from aiowget.distributed import Report

    report = Report(shards=4, urls=35, shards_done=2, saved=18, skipped=1, failed=1)
    report.fail(3, "KilledWorker")

    assert shards_start_line(Report(shards=4, urls=35, shards_done=1), 10) == (
        "[*] 4 shards of up to 10 URLs (35 URLs), 1 done already"
    )
    assert shard_line(1, report) == (
        "[+] shard 1 done; shards 2/4 done, 1 failed; files 20/35: 18 saved, 1 skipped, 1 failed"
    )
    assert shard_line(3, report).startswith("[-] shard 3 failed: KilledWorker; shards 2/4 done")
    report.urls = None  # planned by an older aiowget: the total is not known
    assert "; files 20: 18 saved" in shard_line(1, report)

"""The reporter: plain lines, live bars rendered to a rich Console, and the output modes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from aiowget.bars import MAX_BARS
from aiowget.console import ConsoleReporter, ProgressMode, format_size
from aiowget.errors import HTTPStatusError
from aiowget.models import Finished, Outcome, Progress, Result, Retrying, Started

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

"""The live bars: counters per event, drawing per tick, rows that fit, speeds that fall."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from aiowget.bars import MAX_BARS, Board, LiveBars, columns, frame, shorten
from aiowget.console import ConsoleReporter, ProgressMode
from aiowget.models import Finished, Outcome, Progress, Result, Started, Tally

MiB = 1 << 20


def url(n: int) -> str:
    return f"http://e.com/file{n}.bin"


def terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=width, color_system=None), screen


def drawn_bars(reporter: ConsoleReporter) -> LiveBars:
    assert isinstance(reporter._bars, LiveBars)
    return reporter._bars


async def test_events_are_counted_and_drawn_only_at_a_refresh() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, total=3000)
    bars = drawn_bars(reporter)
    reporter.start()
    for n in range(3000):  # 9,000 events, with no pause in which the timer could fire
        await reporter(Started(url(n), Path(f"file{n}.bin"), 2 * MiB))
        await reporter(Progress(url(n), MiB, 2 * MiB))
        result = Result(url(n), Path(f"file{n}.bin"), Outcome.SAVED, size=2 * MiB)
        await reporter(Finished(result))

    assert bars.draws == 0
    assert screen.getvalue().count("[+] saved") == 0  # held for the next draw
    assert not bars.board.active

    reporter.refresh()
    assert bars.draws == 1
    drawn = screen.getvalue()
    assert drawn.count("[+] saved") == 3000  # all at once, above the bars
    assert "[3000/3000 files]" in drawn
    await reporter.summarize()
    assert "[=] 3000 saved (5.9 GiB), 0 skipped, 0 failed" in screen.getvalue().splitlines()[-1]


async def test_the_timer_draws_what_came_since_the_last_tick() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, total=2)
    bars = drawn_bars(reporter)
    reporter.start()
    await reporter(Started(url(1), Path("file1.bin"), 4 * MiB))
    await reporter(Finished(Result(url(2), Path("file2.bin"), Outcome.SAVED, size=5)))

    await asyncio.sleep(0.6)  # the first tick is due after a quarter of a second

    assert bars.draws >= 1
    drawn = screen.getvalue()
    assert "[+] saved file2.bin (5 bytes)" in drawn
    assert "file1.bin" in drawn
    reporter.stop()
    drawn_then = bars.draws
    await asyncio.sleep(0.3)
    assert bars.draws == drawn_then  # stopped means no more ticks


async def test_a_terminal_that_goes_away_stops_the_bars_not_the_run() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, total=2)
    bars = drawn_bars(reporter)
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    reporter.start()
    await reporter(Started(url(1), Path("file1.bin"), 4 * MiB))
    screen.close()  # writing to it now raises ValueError, as a closed stderr would

    await asyncio.sleep(0.6)
    await reporter(Finished(Result(url(1), Path("file1.bin"), Outcome.SAVED, size=4 * MiB)))
    reporter.stop()

    assert errors == []
    assert bars.draws == 1  # the first tick found the terminal gone, and no tick came after
    assert reporter.tally.saved == 1


def board_with(*events: Started | Progress | Finished, total: int | None = None) -> Board:
    board = Board(Tally(), total)
    for event in events:
        board.track(event)
    return board


@pytest.mark.parametrize(
    ("now", "shown"),
    [
        (1.0, "2.0 MiB/s"),  # 2 MiB in the first second
        (2.0, "1.0 MiB/s"),  # nothing since: the speed falls...
        (3.0, "682.7 KiB/s"),
        (4.0, "stalled"),  # ...and, three seconds on, says so
        (60.0, "stalled"),
    ],
)
def test_a_stalled_transfer_shows_its_speed_falling_then_stalled(now: float, shown: str) -> None:
    board = board_with(Started(url(1), Path("big.iso"), 100 * MiB))
    board.sample(0.0)
    board.track(Progress(url(1), 2 * MiB, 100 * MiB))
    tick = 1.0
    while tick <= now:  # a refresh every second; no byte comes after the first
        board.sample(tick)
        tick += 1.0

    row = frame(board, now, 120).plain.splitlines()[1]

    assert "big.iso" in row
    assert "2.0 MiB/100.0 MiB" in row
    assert shown in row
    if shown == "stalled":
        assert row.endswith("-:--:--")  # no time left is promised for a transfer that waits


def test_a_transfer_that_moves_again_is_no_longer_stalled() -> None:
    board = board_with(Started(url(1), Path("big.iso"), 100 * MiB))
    for tick in range(6):
        board.sample(float(tick))
    assert "stalled" in frame(board, 5.0, 120).plain
    board.track(Progress(url(1), 3 * MiB, 100 * MiB))
    board.sample(6.0)
    assert "stalled" not in frame(board, 6.0, 120).plain
    assert "1.0 MiB/s" in frame(board, 6.0, 120).plain  # 3 MiB over the last 3 seconds


def test_a_small_body_read_whole_is_not_called_stalled() -> None:
    """Bodies of at most 1 MiB come with no Progress: silence there says nothing."""
    board = board_with(Started(url(1), Path("small.txt"), 1000))
    for tick in range(10):
        board.sample(float(tick))
    row = frame(board, 9.0, 120).plain.splitlines()[1]
    assert "small.txt" in row
    assert "stalled" not in row
    assert "/s" not in row


def many_long_rows(count: int = MAX_BARS + 3) -> Board:
    events: list[Started | Progress | Finished] = []
    for n in range(count):
        name = f"{'数据' * 5}-a-rather-long-file-name-{n:03}.tar.gz"  # wide characters too
        events.append(Started(url(n), Path(name), 1023 * MiB + n))
        events.append(Progress(url(n), 1000 * MiB, 1023 * MiB + n))
    failed = Result(url(999), None, Outcome.FAILED)
    board = board_with(*events, Finished(failed), total=100_000)
    board.tally.add(failed)
    board.sample(0.0)
    board.sample(1.0)
    return board


@pytest.mark.parametrize("width", [40, 50, 60, 69, 70, 80, 100, 120, 200])
def test_every_row_fits_the_terminal_on_one_line(width: int) -> None:
    board = many_long_rows()
    lines = frame(board, 1.0, width).plain.splitlines()

    assert len(lines) == 1 + MAX_BARS + 1  # overall, the bars, "… 3 more": one line each
    assert all(cell_len(line) <= width for line in lines)
    assert lines[0].startswith("[1/100000 files, 1 failed]")
    assert lines[-1] == "… 3 more"
    for n, line in enumerate(lines[1:-1]):
        assert f"-{n:03}.tar.gz" in line  # a cut name keeps its end
        assert ("━" in line) is (width >= 70)  # narrower, the bar goes before the numbers


@pytest.mark.parametrize(
    ("width", "name", "bar", "eta"),
    [
        (200, 40, 30, True),  # room for everything
        (120, 40, 30, True),
        (80, 34, 10, True),  # the bar shrinks to its least before the name does
        (66, 20, 10, True),
        (58, 12, 10, True),  # then the name, to its least
        (56, 18, 10, False),  # then the ETA goes, and the name has its room
        (50, 12, 10, False),
        (48, 21, 0, False),  # then the bar
        (40, 13, 0, False),
    ],
)
def test_columns_give_way_in_order(width: int, name: int, bar: int, eta: bool) -> None:
    cols = columns(width, name=60, amounts=26)
    assert (cols.name, cols.bar, cols.eta) == (name, bar, eta)


@pytest.mark.parametrize(
    ("name", "width", "shown"),
    [
        ("short.bin", 12, "short.bin   "),
        ("exactly-twelve", 14, "exactly-twelve"),
        ("a-very-long-name-of-a-file-0001.bin", 20, "a-very-lon…-0001.bin"),
        ("a-very-long-name", 12, "a-very…-name"),
        ("数据数据数据数据数据.bin", 12, "数据数 ….bin"),  # a wide character is not split
    ],
)
def test_shorten_cuts_in_the_middle_to_the_exact_width(name: str, width: int, shown: str) -> None:
    assert shorten(name, width) == shown
    assert cell_len(shorten(name, width)) == width


def test_without_an_event_loop_the_bars_draw_only_when_asked() -> None:
    console, screen = terminal()
    reporter = ConsoleReporter(mode=ProgressMode.BAR, console=console, total=1)
    bars = drawn_bars(reporter)
    reporter.start()
    bars.print("[+] saved file1.bin (5 bytes)")
    assert bars.draws == 0
    reporter.refresh()
    assert bars.draws == 1
    reporter.stop()
    bars.print("after the bars")  # stopped: straight out
    assert screen.getvalue().endswith("after the bars\n")
    assert screen.getvalue().count("[+] saved file1.bin (5 bytes)") == 1


def test_the_busiest_origins_are_shown_with_their_windows() -> None:
    board = board_with(Started(url(1), Path("a.bin"), None))
    board.hosts = lambda count: [("http://a.example:80", 6, 8), ("https://b.example:443", 2, 2)][
        :count
    ]
    board.sample(0.0)

    lines = frame(board, 1.0, 120).plain.splitlines()

    assert lines[1] == "at once: a.example:80 6/8, b.example:443 2/2"
    assert "a.bin" in lines[2]

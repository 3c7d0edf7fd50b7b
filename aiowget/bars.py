"""Live bars for the console reporter: one overall, one per active download, a line for the rest.

Events and drawing are kept apart. An event only updates plain counters in a `Board` (O(1),
no rich); a timer on the event loop draws `REFRESH_PER_SECOND` times a second, from a snapshot
of those counters (`frame`, a pure function of the board, the time and the width). The lines of
finished files are kept until that tick too, and go out with it in one write: a run of 5,000
small files draws a few times a second, not 10,000 times.

Imported only when bars are drawn: rich adds to the start-up time of every other run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.text import Text

from .console import format_size
from .models import Event, Finished, Progress, Started, Tally
from .text import printable

__all__ = [
    "MAX_BARS",
    "REFRESH_PER_SECOND",
    "Board",
    "LiveBars",
    "Meter",
    "columns",
    "frame",
    "shorten",
]

MAX_BARS = 10
MAX_HOSTS = 3  # origins named in the "at once" line of the bars (`--per-host`)
REFRESH_PER_SECOND = 4
RATE_WINDOW = 3.0  # seconds of samples a speed is measured over: it falls to 0 when bytes stop
STALLED_AFTER = 3.0  # seconds without a byte before a bar says so instead of showing a speed
BAR_WIDTH = (10, 30)  # narrowest and widest bar; narrower than that, the bar is left out
NAME_WIDTH = (12, 40)  # a name is cut (in the middle, keeping its end) to fit between these
ETA_WIDTH = 7  # "0:00:00"
QUIET_BODY = 1 << 20  # a body this size or smaller may come with no Progress event at all
UNKNOWN_ETA = "-:--:--"


class Meter:
    """The recent rate of a count that grows, from samples taken at each refresh."""

    def __init__(self, now: float, value: int) -> None:
        self._samples: deque[tuple[float, int]] = deque([(now, value)])
        self.changed_at = now

    def sample(self, now: float, value: int) -> None:
        if value != self._samples[-1][1]:
            self.changed_at = now
        self._samples.append((now, value))
        while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW:
            self._samples.popleft()

    def rate(self, now: float) -> float | None:
        """Per second over the last `RATE_WINDOW` seconds; None until there is a span to judge."""
        since, first = self._samples[0]
        span = now - since
        return (self._samples[-1][1] - first) / span if span > 0 else None

    def stalled(self, now: float) -> bool:
        return now - self.changed_at >= STALLED_AFTER


@dataclass
class Transfer:
    path: Path | None
    total: int | None
    received: int = 0
    meter: Meter | None = None  # from the first refresh that shows it
    # Whether Progress events are to come: not for a body of at most 1 MiB read whole (see
    # `on_event` in the README), whose bar could not tell a stall from a slow trickle.
    reported: bool = True

    @classmethod
    def of(cls, event: Started) -> Transfer:
        whole = event.total is not None and event.total <= QUIET_BODY
        return cls(event.path, event.total, reported=not whole)


@dataclass
class Board:
    """What the bars show, as plain counters: each event costs O(1) and draws nothing.

    The reporter's `tally` counts the finished files. `active` is in the order downloads
    started; the first `MAX_BARS` have a bar, so a freed bar goes to the oldest waiting one."""

    tally: Tally
    total: int | None
    active: dict[str, Transfer] = field(default_factory=dict)
    received: int = 0  # bytes of the whole run: finished files and those under way
    overall: Meter | None = None  # of `received`
    files: Meter | None = None  # of finished files, for the run's ETA
    # The busiest origins, asked at each draw: (origin, under way, window); see `hosts_line`.
    hosts: Callable[[int], list[tuple[str, int, int]]] | None = None

    def track(self, event: Event) -> None:
        if isinstance(event, Started):
            self.active[event.url] = Transfer.of(event)
        elif isinstance(event, Progress):
            self._count(event.url, event.received, event.total)
        elif isinstance(event, Finished):
            result = event.result
            self._count(result.url, result.size, None)
            self.active.pop(result.url, None)

    def _count(self, url: str, received: int, total: int | None) -> None:
        transfer = self.active.get(url)
        before = 0 if transfer is None else transfer.received
        self.received += received - before
        if transfer is not None:
            transfer.received = received
            transfer.reported = True
            transfer.total = total if total is not None else transfer.total

    def shown(self) -> Iterator[Transfer]:
        return islice(self.active.values(), MAX_BARS)

    def done(self) -> int:
        tally = self.tally
        return tally.saved + tally.skipped + tally.unchanged + tally.failed

    def sample(self, now: float) -> None:
        """Feed the speed meters; once a refresh, for the bars that are shown."""
        self.overall = _sampled(self.overall, now, self.received)
        self.files = _sampled(self.files, now, self.done())
        for transfer in self.shown():
            transfer.meter = _sampled(transfer.meter, now, transfer.received)


def _sampled(meter: Meter | None, now: float, value: int) -> Meter:
    if meter is None:
        return Meter(now, value)
    meter.sample(now, value)
    return meter


@dataclass(frozen=True)
class Row:
    name: str
    fraction: float | None  # of the bar that is full; None: the total is not known
    amounts: str = ""
    eta: str = ""
    bar: bool = True  # False: a line of text alone ("… 3 more")


def frame(board: Board, now: float, width: int) -> Text:
    """The bars as they stand at `now`, every line at most `width` cells wide."""
    rows = [_overall_row(board, now)]
    rows += [_transfer_row(transfer, now) for transfer in board.shown()]
    waiting = len(board.active) - MAX_BARS
    if waiting > 0:
        rows.append(Row(f"… {waiting} more", None, bar=False))
    lines = _lay_out(rows, width)
    busiest = board.hosts(MAX_HOSTS) if board.hosts is not None else []
    if busiest:  # below the overall row, out of the columns: it is as wide as it needs
        hosts = Text(hosts_line(busiest))
        hosts.truncate(width, overflow="ellipsis")
        lines.insert(1, hosts)
    return Text("\n").join(lines)


def hosts_line(busiest: list[tuple[str, int, int]]) -> str:
    """`--per-host`: how many at once each of the busiest origins has, of its window now."""
    shown = (f"{printable(key.partition('://')[2])} {now}/{window}" for key, now, window in busiest)
    return "at once: " + ", ".join(shown)


def _overall_row(board: Board, now: float) -> Row:
    done, total, failed = board.done(), board.total, board.tally.failed
    files = f"{done}/{total}" if total is not None else f"{done}"
    name = f"[{files} files{f', {failed} failed' if failed else ''}]"
    rate = board.files.rate(now) if board.files else None
    eta = _eta(total - done, rate) if total is not None else UNKNOWN_ETA
    fraction = done / total if total else None
    speed = _speed(board.overall, now, can_stall=False)  # small files trickle unseen
    return Row(name, fraction, format_size(board.received) + speed, eta)


def _transfer_row(transfer: Transfer, now: float) -> Row:
    path, total, received = transfer.path, transfer.total, transfer.received
    name = printable(path.name) if path is not None else "standard output"
    amounts = format_size(received) + (f"/{format_size(total)}" if total else "")
    rate = transfer.meter.rate(now) if transfer.meter else None
    eta = _eta(total - received, rate) if total else UNKNOWN_ETA
    fraction = min(received / total, 1.0) if total else None
    speed = _speed(transfer.meter, now, can_stall=True) if transfer.reported else ""
    return Row(name, fraction, amounts + speed, eta)


def _speed(meter: Meter | None, now: float, *, can_stall: bool) -> str:
    if meter is None:
        return ""
    if can_stall and meter.stalled(now):
        return "  stalled"
    rate = meter.rate(now)
    return "" if rate is None else f"  {format_size(int(rate))}/s"


def _eta(remaining: int, rate: float | None) -> str:
    if not rate or rate <= 0:
        return UNKNOWN_ETA
    minutes, seconds = divmod(round(max(remaining, 0) / rate), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours < 10 else UNKNOWN_ETA


@dataclass(frozen=True)
class Columns:
    name: int
    bar: int  # 0: no bar
    amounts: int
    eta: bool


def columns(width: int, name: int, amounts: int, least: int = NAME_WIDTH[0]) -> Columns:
    """How wide each column is, so that a row fits in `width` cells: the bar shrinks first,
    then the names (to `least`, which the overall row's label needs whole), then the ETA goes
    (its room back to the names), then the bar."""
    least = max(least, NAME_WIDTH[0])
    for eta in (True, False):
        room = width - amounts - (ETA_WIDTH + 1 if eta else 0) - 2  # two gaps around the bar
        fitted = max(least, min(name, NAME_WIDTH[1], room - BAR_WIDTH[0]))
        bar = min(BAR_WIDTH[1], room - fitted)
        if bar >= BAR_WIDTH[0]:
            return Columns(fitted, bar, amounts, eta)
    fitted = max(least, min(name, NAME_WIDTH[1], width - amounts - 1))
    return Columns(fitted, 0, amounts, False)


def _lay_out(rows: list[Row], width: int) -> list[Text]:
    """Rows in aligned columns; `rows[0]` is the overall row, whose label is never cut."""
    widest_name = max(cell_len(row.name) for row in rows)
    amounts = max(len(row.amounts) for row in rows)
    cols = columns(width, widest_name, amounts, least=cell_len(rows[0].name))
    lines = []
    for row in rows:
        line = Text(shorten(row.name, cols.name))
        if row.bar:
            if cols.bar:
                line.append(" ").append_text(_bar(row.fraction, cols.bar))
            line.append(" ").append(row.amounts.ljust(cols.amounts))
            if cols.eta:
                line.append(" ").append(row.eta, "progress.remaining")
        line.rstrip()
        line.truncate(width, overflow="ellipsis")  # the last guard: never wider than the screen
        lines.append(line)
    return lines


def _bar(fraction: float | None, width: int) -> Text:
    full = round(width * fraction) if fraction is not None else 0
    bar = Text("━" * full, "bar.complete")
    return bar.append("━" * (width - full), "bar.back")


def shorten(name: str, width: int) -> str:
    """`name` in exactly `width` cells: padded, or cut in the middle keeping its end (the
    extension and the number that tell files apart)."""
    if cell_len(name) <= width:
        return set_cell_size(name, width)
    end = _last_cells(name, min(12, (width - 1) // 2))
    return set_cell_size(name, width - 1 - cell_len(end)) + "…" + end


def _last_cells(text: str, width: int) -> str:
    taken = 0
    for start in range(len(text) - 1, -1, -1):
        taken += cell_len(text[start])
        if taken > width:
            return text[start + 1 :]
    return text


class _Holder:
    """What rich's Live redraws: the latest frame, whichever way the draw is asked for."""

    def __init__(self) -> None:
        self.frame = Text()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.frame


class _Lines:
    """Lines to print above the bars, as they are: already escaped, and wrapped (when long) by
    the terminal. Segments straight away, as a `Text` of thousands of lines would cost."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield Segment(line)
            yield Segment.line()


class LiveBars:
    """Draws a `Board` with rich, `REFRESH_PER_SECOND` times a second, and the lines above it.

    `draws` counts the times the screen was written (a test bounds it). A terminal that goes
    away (closed, hung up) ends the drawing and the printing, not the run."""

    def __init__(self, console: Console | None, total: int | None, tally: Tally) -> None:
        self.console = console or Console(stderr=True)
        self.board = Board(tally, total)
        self.draws = 0
        self._holder = _Holder()
        self._live = Live(
            self._holder,
            console=self.console,
            auto_refresh=False,  # our own timer, on the event loop, draws
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._lines: list[str] = []  # printed at the next draw, above the bars
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._gone = False  # the terminal refused a write

    def start(self) -> None:
        self._write(self._live.start)
        self._running = True
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._running = False
        self._write(self._live.stop)  # transient: the bars go, the lines above them stay
        self._write(self._print_lines)

    def track(self, event: Event) -> None:
        self.board.track(event)

    def print(self, line: str) -> None:
        if not self._gone:
            self._lines.append(line)
        if not self._running:
            self._write(self._print_lines)

    def refresh(self) -> None:
        """Draw now: the lines kept since the last draw, then the bars, in one write."""
        now = time.monotonic()
        self.board.sample(now)
        self._holder.frame = frame(self.board, now, self.console.width)
        self.draws += 1
        # Through the Live, lines are printed with the bars redrawn below them.
        self._write(self._print_lines if self._lines else self._live.refresh)

    def _write(self, write: Callable[[], object]) -> None:
        if self._gone:
            return
        try:
            write()
        except (OSError, ValueError):  # ValueError: a closed file
            self._gone = True
            self._lines.clear()

    def _print_lines(self) -> None:
        if self._lines:
            lines, self._lines = _Lines(self._lines), []
            self.console.print(lines, soft_wrap=True)

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: drawn only when asked (`refresh`)
            return
        self._timer = loop.call_later(1 / REFRESH_PER_SECOND, self._tick)

    def _tick(self) -> None:
        self.refresh()
        if not self._gone:
            self._schedule()

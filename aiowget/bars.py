"""Live rich bars for the console reporter: one overall, one per active download.

Imported only when bars are drawn: rich adds to the start-up time of every other run.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bars
from rich.text import Text

from .console import format_size
from .models import Event, Finished, Progress, Started, Tally
from .text import printable

__all__ = ["MAX_BARS", "LiveBars"]

MAX_BARS = 10


class LiveBars:
    """rich bars: one overall, one per active download (at most `MAX_BARS`), one for the rest."""

    def __init__(self, console: Console | None, total: int | None) -> None:
        self._bars = Bars(
            TextColumn("{task.description}", table_column=None),
            BarColumn(bar_width=30),
            _Amounts(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
            refresh_per_second=4,
        )
        self._total = total
        self._received = 0
        self._overall = self._bars.add_task("", total=total, overall=True, bytes=0)
        self._more = self._bars.add_task("", total=None, visible=False, overall=False)
        self._visible: dict[str, Any] = {}  # url -> task id
        self._waiting: dict[str, Started] = {}  # active downloads without a bar of their own
        self._progress: dict[str, int] = {}

    def start(self) -> None:
        self._bars.start()

    def stop(self) -> None:
        self._bars.stop()

    def refresh(self) -> None:
        self._bars.refresh()

    def print(self, line: str) -> None:
        self._bars.console.print(Text(line), soft_wrap=True)

    def track(self, event: Event, tally: Tally) -> None:
        if isinstance(event, Started):
            self._open(event)
        elif isinstance(event, Finished):
            self._count(event.result.url, event.result.size)
            self._close(event.result.url)
            done = tally.saved + tally.skipped + tally.failed
            self._bars.update(self._overall, completed=done)
        self._describe_overall(tally)

    def progress(self, event: Progress) -> None:
        self._count(event.url, event.received)
        task = self._visible.get(event.url)
        if task is not None:
            self._bars.update(task, completed=event.received, total=event.total)

    def _count(self, url: str, received: int) -> None:
        self._received += received - self._progress.get(url, 0)
        self._progress[url] = received
        self._bars.update(self._overall, bytes=self._received)

    def _open(self, event: Started) -> None:
        if len(self._visible) >= MAX_BARS:
            self._waiting[event.url] = event
        else:
            name = event.path.name if event.path is not None else "standard output"
            self._visible[event.url] = self._bars.add_task(
                _shorten(printable(name)), total=event.total, overall=False
            )
        self._bars.update(
            self._more, visible=bool(self._waiting), description=f"… {len(self._waiting)} more"
        )

    def _close(self, url: str) -> None:
        self._progress.pop(url, None)
        self._waiting.pop(url, None)
        task = self._visible.pop(url, None)
        if task is not None:
            self._bars.remove_task(task)
            if self._waiting:  # give the oldest waiting download the freed bar
                self._open(self._waiting.pop(next(iter(self._waiting))))
        self._bars.update(
            self._more, visible=bool(self._waiting), description=f"… {len(self._waiting)} more"
        )

    def _describe_overall(self, tally: Tally) -> None:
        done = tally.saved + tally.skipped + tally.failed
        files = f"{done}/{self._total}" if self._total is not None else f"{done}"
        failed = f", {tally.failed} failed" if tally.failed else ""
        self._bars.update(self._overall, description=f"[{files} files{failed}]")


class _Amounts(ProgressColumn):
    """Bytes and speed: the whole run's on the overall bar, the file's on its own."""

    def render(self, task: Task) -> Text:
        if task.fields.get("overall"):
            return Text(f"{format_size(int(_overall_bytes(task)))}  {_rate(task)}")
        if task.total is None and not task.completed:
            return Text("")
        total = f"/{format_size(int(task.total))}" if task.total else ""
        speed = f"  {format_size(int(task.speed))}/s" if task.speed else ""
        return Text(f"{format_size(int(task.completed))}{total}{speed}")


def _overall_bytes(task: Task) -> float:
    return float(task.fields.get("bytes", 0))


def _rate(task: Task) -> str:
    elapsed = task.elapsed or 0.0
    return f"{format_size(int(_overall_bytes(task) / elapsed))}/s" if elapsed > 0.5 else ""


def _shorten(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 11] + "…" + name[-10:]

"""The console reporter: every line, bar and JSON record, one writer at a time.

`ConsoleReporter` is the one `on_event` handler of the command line, and the only thing that
writes to the terminal: human output to stderr (plain lines, or live rich bars with the
finished-file lines printed above them), JSON records to stdout. An asyncio.Lock, the heir of
the original's mutex around stdout, keeps each line whole. Whatever the server controls
(names, reasons) is escaped, and passwords in URLs are masked, before it is shown.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bars
from rich.text import Text

from .models import Event, Finished, Outcome, Progress, Result, Retrying, Started, Tally
from .text import printable, redact_url

__all__ = ["ConsoleReporter", "ProgressMode", "format_size", "result_record"]

MAX_BARS = 10


class ProgressMode(str, Enum):
    AUTO = "auto"  # bars when stderr is a terminal, else plain lines
    BAR = "bar"
    PLAIN = "plain"
    NONE = "none"  # neither bars nor per-file lines: failures and the summary only


class ConsoleReporter:
    """Prints the original's plain lines (or live bars), keeps a `Tally`, writes `--json`.

    `quiet` keeps only the lines of failures. `json_stream` receives one JSON object per
    finished URL and a summary object."""

    def __init__(
        self,
        *,
        mode: ProgressMode = ProgressMode.PLAIN,
        quiet: bool = False,
        stream: TextIO | None = None,
        json_stream: TextIO | None = None,
        console: Console | None = None,
        total: int | None = None,
    ) -> None:
        self._stream = stream
        self._json = json_stream
        self._quiet = quiet
        self._mode = mode
        self._lock = asyncio.Lock()
        self._started = time.monotonic()
        self._in_flight: dict[str, Path | None] = {}
        self.tally = Tally()
        self._bars = _LiveBars(console, total) if mode is ProgressMode.BAR and not quiet else None

    def start(self) -> None:
        if self._bars is not None:
            self._bars.start()

    def stop(self) -> None:
        if self._bars is not None:
            self._bars.stop()

    def refresh(self) -> None:
        """Draw the bars now rather than at the next tick of rich's timer."""
        if self._bars is not None:
            self._bars.refresh()

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self._bars is not None:
                self._bars.progress(event)
            return
        self._track(event)
        line = self._line(event)
        if line is not None:
            await self.write(line)
        if isinstance(event, Finished) and self._json is not None:
            await self._write_json(result_record(event.result))

    async def write(self, line: str) -> None:
        async with self._lock:
            if self._bars is not None:
                self._bars.print(printable(line))
            else:
                stream = self._stream or sys.stderr
                stream.write(printable(line) + "\n")
                stream.flush()

    async def summarize(self) -> None:
        self.stop()
        elapsed = time.monotonic() - self._started
        if not self._quiet:
            await self.write(summary_line(self.tally, elapsed))
        if self._json is not None:
            await self._write_json(summary_record(self.tally, elapsed))

    async def interrupted(self) -> None:
        """Say what was left unfinished; resumable .part files stay for the next run."""
        self.stop()
        for url, path in self._in_flight.items():
            kept = f" (kept {path}.part)" if path is not None and _exists(f"{path}.part") else ""
            await self.write(f"[!] unfinished {redact_url(url)}{kept}")
        await self.write(
            f"aiowget: interrupted; {len(self._in_flight)} unfinished, "
            f"{self.tally.saved} saved; run the same command again to finish"
        )

    def _track(self, event: Event) -> None:
        if isinstance(event, Started):
            self._in_flight[event.url] = event.path
        elif isinstance(event, Finished):
            self._in_flight.pop(event.result.url, None)
            self.tally.add(event.result)
        if self._bars is not None:
            self._bars.track(event, self.tally)

    def _line(self, event: Event) -> str | None:
        if isinstance(event, Finished):
            failed = event.result.outcome is Outcome.FAILED
            return result_line(event.result) if failed or self._per_file_lines() else None
        if isinstance(event, Retrying):
            return None if self._quiet else retry_line(event)
        if isinstance(event, Started) and self._per_file_lines() and self._bars is None:
            target = "standard output" if event.path is None else str(event.path)
            return f"[*] saving {redact_url(event.url)} to {target}"
        return None

    def _per_file_lines(self) -> bool:
        return not self._quiet and self._mode is not ProgressMode.NONE

    async def _write_json(self, record: dict[str, Any]) -> None:
        assert self._json is not None
        async with self._lock:
            self._json.write(json.dumps(record) + "\n")
            self._json.flush()


class _LiveBars:
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


def result_line(result: Result) -> str:
    url = redact_url(result.url)
    if result.outcome is Outcome.SAVED:
        target = "standard output" if result.path is None else str(result.path)
        return f"[+] saved {target} ({result.size} bytes)"
    if result.outcome is Outcome.SKIPPED:
        return f"[=] skipped {url}: {result.path} {result.note}".rstrip()
    return f"[-] {url}: {result.error}"


def retry_line(event: Retrying) -> str:
    return (
        f"[!] {redact_url(event.url)}: {event.error}; "
        f"retry {event.attempt}/{event.retries} in {event.delay:.1f} s"
    )


def summary_line(tally: Tally, elapsed: float) -> str:
    return (
        f"[=] {tally.saved} saved ({format_size(tally.size)}), {tally.skipped} skipped, "
        f"{tally.failed} failed in {elapsed:.1f} s"
    )


def result_record(result: Result) -> dict[str, Any]:
    """One finished URL as `--json` writes it (the schema is in the README)."""
    return {
        "url": redact_url(result.url),
        "path": None if result.path is None else str(result.path),
        "outcome": result.outcome.value,
        "bytes": result.size,
        "sha256": result.sha256,
        "elapsed": round(result.elapsed, 6),
        "attempts": result.attempts,
        "error": None if result.error is None else str(result.error),
        "exit_code": int(result.exit_status),
    }


def summary_record(tally: Tally, elapsed: float) -> dict[str, Any]:
    return {
        "summary": True,
        "saved": tally.saved,
        "skipped": tally.skipped,
        "failed": tally.failed,
        "bytes": tally.size,
        "elapsed": round(elapsed, 6),
        "exit_code": int(tally.exit_status),
    }


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _exists(path: str) -> bool:
    # Only at interruption, once per unfinished file: a blocking stat is harmless here.
    return os.path.exists(path)

"""The console reporter: every line, bar and JSON record, one writer at a time.

`ConsoleReporter` is the one `on_event` handler of the command line, and the only thing that
writes to the terminal: human output to stderr (plain lines, or live rich bars with the
finished-file lines printed above them, both drawn a few times a second), JSON records to
stdout. An asyncio.Lock, the heir of the original's mutex around stdout, keeps each line
whole. Whatever the server controls (names, reasons) is escaped, and passwords in URLs are
masked, before it is shown.

With `verbose` (`-v`) it also prints two kinds of events that the engine sends only when its
own `verbose` option is on: each `Exchange` (a request and the head of its answer, curl's way:
`*` the URL and attempt, `>` sent, `<` received, credentials masked), and each `Note`, the
verbose line channel any part of the engine may use (`transfer.note(ctx, message)`): one line,
`* message`, under the same lock as every other line, so it never tears the bars.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import AiowgetError, ExitStatus, OutputClosedError, output_error
from .models import (
    Event,
    Exchange,
    Finished,
    Note,
    Notice,
    Outcome,
    Progress,
    Result,
    Retrying,
    Started,
    Tally,
)
from .text import iso_time, printable, redact_url, redact_urls, shown_url

if TYPE_CHECKING:
    from rich.console import Console

    from .bars import LiveBars
    from .distributed import Report

__all__ = ["ConsoleReporter", "ProgressMode", "format_size", "result_record"]


class ProgressMode(str, Enum):
    AUTO = "auto"  # bars when stderr is a terminal, else plain lines
    BAR = "bar"
    PLAIN = "plain"
    NONE = "none"  # neither bars nor per-file lines: failures and the summary only


class ConsoleReporter:
    """Prints the original's plain lines (or live bars), keeps a `Tally`, writes `--json`.

    `quiet` keeps only the lines of failures; `verbose` adds the `Exchange` and `Note`
    events (see the module). `json_stream` receives one JSON object per finished URL and a
    summary object."""

    def __init__(
        self,
        *,
        mode: ProgressMode = ProgressMode.PLAIN,
        quiet: bool = False,
        stream: TextIO | None = None,
        json_stream: TextIO | None = None,
        console: Console | None = None,
        total: int | None = None,
        verbose: bool = False,
    ) -> None:
        self._stream = stream
        self._verbose = verbose
        self._json = json_stream
        self._quiet = quiet
        self._mode = mode
        self._lock = asyncio.Lock()
        self._started = time.monotonic()
        self._in_flight: dict[str, Path | None] = {}
        self.tally = Tally()
        # Set when writing --json failed (its reader gone, a full disk): the run's status.
        self.output_failed: AiowgetError | None = None
        self._bars: LiveBars | None = None
        if mode is ProgressMode.BAR and not quiet:
            from .bars import LiveBars  # rich costs import time: only when bars are drawn

            self._bars = LiveBars(console, total, self.tally)

    def start(self) -> None:
        if self._bars is not None:
            self._bars.start()

    def stop(self) -> None:
        if self._bars is not None:
            self._bars.stop()

    def watch_hosts(self, busiest: Callable[[int], list[tuple[str, int, int]]]) -> None:
        """The bars show the connections of the busiest origins (`Downloader.busiest`)."""
        if self._bars is not None:
            self._bars.board.hosts = busiest

    def refresh(self) -> None:
        """Draw the bars now rather than at their next tick (a few times a second)."""
        if self._bars is not None:
            self._bars.refresh()

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self._bars is not None:
                self._bars.track(event)  # a counter: drawn at the bars' next tick
            return
        if isinstance(event, Exchange | Note):
            if self._verbose:
                await self.write(*_verbose_lines(event))
            return
        self._track(event)
        line = self._line(event)
        if line is not None:
            await self.write(line)
        if isinstance(event, Finished) and self._json is not None:
            await self._write_json(result_record(event.result))

    async def write(self, *lines: str) -> None:
        """`lines` together, escaped: another writer's line never comes between them."""
        async with self._lock:
            # A closed stderr (`2>&-`, a reader gone) silences messages, not the downloads.
            with suppress(OSError, ValueError):
                if self._bars is not None:
                    for line in lines:
                        self._bars.print(printable(line))
                else:
                    stream = self._stream or sys.stderr
                    stream.write("".join(printable(line) + "\n" for line in lines))
                    stream.flush()

    async def summarize(self, origins: dict[str, dict[str, int]] | None = None) -> None:
        """The last line and record; `origins`: what each origin's window did (`--per-host`)."""
        self.stop()
        elapsed = time.monotonic() - self._started
        if not self._quiet:
            await self.write(summary_line(self.tally, elapsed))
        record = summary_record(self.tally, elapsed)
        if origins:
            record["origins"] = {redact_url(key): value for key, value in origins.items()}
        await self._write_json_last(record)

    async def failed(self, error: AiowgetError) -> None:
        """The run could not start or go on (a bad directory, a missing input file): said on
        one line, and `--json` still ends with a summary carrying the exit status."""
        self.stop()
        if error is not self.output_failed:  # that one is the caller's to tell, once
            await self.write(f"aiowget: {error}")
        record = summary_record(self.tally, time.monotonic() - self._started)
        record.update(error=str(error), exit_code=int(error.exit_status))
        await self._write_json_last(record)

    async def interrupted(self) -> None:
        """Say what was left unfinished; resumable .part files stay for the next run. With
        `--json`, each unfinished URL gets a failed record, and the summary says 130."""
        self.stop()
        for url, path in self._in_flight.items():
            from .storage import part_path  # once, at the end: not at every start-up

            part = None if path is None else part_path(path)
            kept = f" (kept {part})" if part is not None and _exists(part) else ""
            await self.write(f"[!] unfinished {shown_url(url)}{kept}")
            await self._write_json_last(unfinished_record(url))
        await self.write(
            f"aiowget: interrupted; {len(self._in_flight)} unfinished, "
            f"{self.tally.saved} saved; run the same command again to finish"
        )
        record = summary_record(self.tally, time.monotonic() - self._started)
        record.update(unfinished=len(self._in_flight), exit_code=ExitStatus.INTERRUPTED)
        await self._write_json_last(record)

    def taken(self, url: str) -> None:
        """`url` is under way (taken from the input): unfinished if interrupted from now on,
        even before any event of its own (while it waits for its response, say)."""
        self._in_flight.setdefault(url, None)

    def _track(self, event: Event) -> None:
        if isinstance(event, Started):
            self._in_flight[event.url] = event.path
        elif isinstance(event, Retrying | Notice):  # under way, even before its body starts
            self._in_flight.setdefault(event.url, None)
        elif isinstance(event, Finished):
            self._in_flight.pop(event.result.url, None)
            self.tally.add(event.result)
        if self._bars is not None:
            self._bars.track(event)

    def _line(self, event: Event) -> str | None:
        if isinstance(event, Finished):
            if isinstance(event.result.error, OutputClosedError):
                return None  # `-O - | head`: the reader left, as readers do; nothing to say
            failed = event.result.outcome is Outcome.FAILED
            return result_line(event.result) if failed or self._per_file_lines() else None
        if isinstance(event, Retrying):
            return None if self._quiet else retry_line(event)
        if isinstance(event, Notice):
            return None if self._quiet else f"[!] {shown_url(event.url)}: {event.message}"
        if isinstance(event, Started) and self._per_file_lines() and self._bars is None:
            target = "standard output" if event.path is None else str(event.path)
            return f"[*] saving {shown_url(event.url)} to {target}"
        return None

    def _per_file_lines(self) -> bool:
        return not self._quiet and self._mode is not ProgressMode.NONE

    async def _write_json(self, record: dict[str, Any]) -> None:
        """One record; the first failure to write stops the run (raised once), later records
        are dropped: nobody can read them."""
        if self._json is None or self.output_failed is not None:
            return
        async with self._lock:
            try:
                self._json.write(json.dumps(record) + "\n")
                self._json.flush()
            except OSError as exc:
                self.output_failed = output_error(exc)
                raise self.output_failed from None

    async def _write_json_last(self, record: dict[str, Any]) -> None:
        """A record at the end of the run, when nothing is left to stop: a failure is kept in
        `output_failed` (for the exit status), not raised."""
        with suppress(AiowgetError):
            await self._write_json(record)


def _verbose_lines(event: Exchange | Note) -> list[str]:
    if isinstance(event, Exchange):
        return event.lines()
    return [f"* {redact_urls(event.message)}"]


def shards_start_line(report: Report, shard_size: int) -> str:
    """`--dask`: the job as planned, before the cluster is reached (which takes seconds)."""
    urls = "" if report.urls is None else f" ({report.urls} URLs)"
    return (
        f"[*] {report.shards} shards of up to {shard_size} URLs{urls}, "
        f"{report.shards_done} done already"
    )


def shard_line(shard: int, report: Report) -> str:
    """`--dask`: a shard ended; the job's shards (done, failed, total) and files so far."""
    failed = report.shards_failed.get(shard)
    head = f"[+] shard {shard} done" if failed is None else f"[-] shard {shard} failed: {failed}"
    done = report.saved + report.unchanged + report.skipped + report.failed
    unchanged = f"{report.unchanged} unchanged, " if report.unchanged else ""
    files = f"{done}/{report.urls}" if report.urls is not None else f"{done}"
    return (
        f"{head}; shards {report.shards_done}/{report.shards} done, "
        f"{len(report.shards_failed)} failed; files {files}: {report.saved} saved, "
        f"{unchanged}{report.skipped} skipped, {report.failed} failed"
    )


def result_line(result: Result) -> str:
    url = shown_url(result.url)
    if result.outcome is Outcome.SAVED:
        target = "standard output" if result.path is None else str(result.path)
        return f"[+] saved {target} ({result.size} bytes)"
    if result.outcome is Outcome.SKIPPED:
        return f"[=] skipped {url}: {result.path} {result.note}".rstrip()
    if result.outcome is Outcome.UNCHANGED:
        return f"[=] unchanged {url}: {result.path} {result.note}".rstrip()
    return f"[-] {url}: {result.error}"


def retry_line(event: Retrying) -> str:
    return (
        f"[!] {shown_url(event.url)}: {event.error}; "
        f"retry {event.attempt}/{event.retries} in {event.delay:.1f} s"
    )


def summary_line(tally: Tally, elapsed: float) -> str:
    # Unchanged files (`--if-exists update`) are counted only in runs that have some.
    unchanged = f"{tally.unchanged} unchanged, " if tally.unchanged else ""
    return (
        f"[=] {tally.saved} saved ({format_size(tally.size)}), {unchanged}"
        f"{tally.skipped} skipped, {tally.failed} failed in {elapsed:.1f} s"
    )


def result_record(result: Result) -> dict[str, Any]:
    """One finished URL as `--json` writes it (the schema is in the README)."""
    kept = result.path is not None and result.outcome is not Outcome.FAILED
    return {
        "url": redact_url(result.url),
        "path": str(result.path) if kept else None,
        "outcome": result.outcome.value,
        "bytes": result.size,
        "sha256": result.sha256,
        "last_modified": iso_time(result.last_modified),
        "elapsed": round(result.elapsed, 6),
        "attempts": result.attempts,
        "error": None if result.error is None else str(result.error),
        "exit_code": int(result.exit_status),
    }


def unfinished_record(url: str) -> dict[str, Any]:
    """A URL cut short by an interruption, as `--json` reports it."""
    return {
        "url": redact_url(url),
        "path": None,
        "outcome": Outcome.FAILED.value,
        "bytes": 0,
        "sha256": None,
        "last_modified": None,
        "elapsed": None,
        "attempts": None,
        "error": "interrupted",
        "exit_code": int(ExitStatus.INTERRUPTED),
    }


def summary_record(tally: Tally, elapsed: float) -> dict[str, Any]:
    return {
        "summary": True,
        "saved": tally.saved,
        "skipped": tally.skipped,
        "unchanged": tally.unchanged,
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


def _exists(path: Path) -> bool:
    # Only at interruption, once per unfinished file: a blocking stat is harmless here.
    return os.path.exists(path)

"""The console reporter: one line per event on stderr, one writer at a time.

Every line goes through `ConsoleReporter` and its asyncio.Lock, the heir of the original's mutex
around stdout. Whatever the server controls (names, reasons) is escaped, and passwords in URLs
are masked, before it reaches the terminal.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from .models import Event, Finished, Outcome, Result, Retrying, Started, Tally
from .text import printable, redact_url

__all__ = ["ConsoleReporter", "format_size"]


class ConsoleReporter:
    """An `on_event` handler that prints the original's plain lines and keeps a `Tally`.

    `quiet` keeps only the lines of failures.
    """

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._lock = asyncio.Lock()
        self._started = time.monotonic()
        self._in_flight: dict[str, Path | None] = {}
        self.tally = Tally()

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self._in_flight[event.url] = event.path
        elif isinstance(event, Finished):
            self._in_flight.pop(event.result.url, None)
            self.tally.add(event.result)
        line = self._line(event)
        if line is not None:
            await self.write(line)

    async def write(self, line: str) -> None:
        async with self._lock:
            stream = self._stream or sys.stderr
            stream.write(printable(line) + "\n")
            stream.flush()

    async def summarize(self) -> None:
        if not self._quiet:
            await self.write(summary_line(self.tally, time.monotonic() - self._started))

    async def interrupted(self) -> None:
        """Say what was left unfinished; resumable .part files stay for the next run."""
        for url, path in self._in_flight.items():
            kept = f" (kept {path}.part)" if path is not None and _exists(f"{path}.part") else ""
            await self.write(f"[!] unfinished {redact_url(url)}{kept}")
        await self.write(
            f"aiowget: interrupted; {len(self._in_flight)} unfinished, "
            f"{self.tally.saved} saved; run the same command again to finish"
        )

    def _line(self, event: Event) -> str | None:
        if isinstance(event, Started):
            target = "standard output" if event.path is None else str(event.path)
            return None if self._quiet else f"[*] saving {redact_url(event.url)} to {target}"
        if isinstance(event, Retrying):
            return None if self._quiet else retry_line(event)
        result = event.result
        if result.outcome is Outcome.FAILED or not self._quiet:
            return result_line(result)
        return None


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

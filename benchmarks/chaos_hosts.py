"""The chaos test's server (tests/chaos.py) under each per-host setting: wall time, files
saved and what the origin's window did. `python benchmarks/chaos_hosts.py none 32 auto`;
`--no-503` leaves out its 503s (so the pauses their Retry-After asks for): resets, stalls
and cut bodies only.

Not part of `make bench`: it measures why `--per-host auto` is not the default yet (the
README's Connections per host)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiowget
from tests import chaos
from tests.chaos import ChaosServer


async def run(per_host: int | str | None, seed: int = 11) -> None:
    chaos = ChaosServer(files=2000, seed=seed, big_every=10)
    runner = web.AppRunner(chaos.application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        urls = [f"http://127.0.0.1:{port}{path}" for path in chaos.paths]
        with tempfile.TemporaryDirectory() as directory:
            started = time.monotonic()
            async with aiowget.Downloader(
                directory=directory, jobs=32, timeout=1, retry_wait=0, retries=20,
                per_host=per_host,
            ) as downloader:  # fmt: skip
                results = [result async for result in downloader.iter_download(urls)]
                wall = time.monotonic() - started
                saved = sum(result.ok for result in results)
                print(f"{per_host!s:>6}: {wall:6.1f} s, {saved} saved, {downloader.connections()}")
    finally:
        await runner.cleanup()


def main() -> None:
    args = sys.argv[1:]
    if "--no-503" in args:
        args.remove("--no-503")
        chaos.KINDS = tuple(kind for kind in chaos.KINDS if kind != "busy")  # type: ignore[assignment]
    for arg in args or ["none", "32", "auto"]:
        per_host = None if arg == "none" else arg if arg.startswith("auto") else int(arg)
        asyncio.run(run(per_host))


if __name__ == "__main__":
    main()

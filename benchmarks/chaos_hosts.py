"""The chaos test's server (tests/chaos.py) under each per-host setting: wall time, files
saved and what the origin's window did. `python benchmarks/chaos_hosts.py none 32 auto`;
`--no-503` leaves out its 503s (so the pauses their Retry-After asks for): resets, stalls
and cut bodies only.

Not part of `make bench`: it measures why `--per-host auto` is not the default yet (the
README's Connections per host)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL, PIPE
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import chaos
from tests.chaos import ChaosServer


async def run(per_host: str, seed: int = 11) -> None:
    """The command line in its own process (as tests/test_chaos.py runs it), the server here."""
    server = ChaosServer(files=2000, seed=seed, big_every=10)
    runner = web.AppRunner(server.application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        urls = "".join(f"http://127.0.0.1:{port}{path}\n" for path in server.paths)
        with tempfile.TemporaryDirectory() as directory:
            argv = [sys.executable, "-m", "aiowget", "-q", "--json", "-j", "32", "-T", "1",
                    "--retry-wait", "0", "-t", "20", "-i", "-", "-P", directory]  # fmt: skip
            if per_host != "none":
                argv += ["--per-host", per_host]
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=PIPE, stdout=PIPE, stderr=DEVNULL
            )
            out, _ = await process.communicate(urls.encode())
            wall = time.monotonic() - started
            summary = json.loads(out.splitlines()[-1])
            origins = list(summary.get("origins", {}).values())
            print(f"{per_host:>6}: {wall:6.1f} s, {summary['saved']} saved, {origins}")
    finally:
        await runner.cleanup()


def main() -> None:
    args = sys.argv[1:]
    if "--no-503" in args:
        args.remove("--no-503")
        chaos.KINDS = tuple(kind for kind in chaos.KINDS if kind != "busy")  # type: ignore[assignment]
    for arg in args or ["none", "32", "auto"]:
        asyncio.run(run(arg))


if __name__ == "__main__":
    main()

"""A server that takes 4 requests at once and answers 429 to any more (issue #16).

    .venv/bin/python benchmarks/bench_polite.py [--files N] [--rounds R]

N files of 1 KiB (default 2,000), each answered after 20 ms, from an aiohttp server in a
process of its own that answers 429 (no Retry-After) to a request beyond 4 in flight. Each
client gets a fresh folder; rows: aiowget with its default (`--per-host auto`), aiowget
`--per-host 4` (the oracle: what knowing the limit gives), `--per-host none` (as many as
`-j`), aria2c `-j 16` and parfive `max_conn=16`. Printed: wall time, requests the server
answered 429, files saved (a tool may give up on some), medians of R interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import bench

SERVER = """
import asyncio, sys
from aiohttp import web
state = {"now": 0, "refused": 0}
async def file(request):
    if state["now"] >= 4:
        state["refused"] += 1
        return web.Response(status=429)
    state["now"] += 1
    try:
        await asyncio.sleep(0.02)
        return web.Response(body=b"x" * 1024)
    finally:
        state["now"] -= 1
async def stats(request):
    refused, state["refused"] = state["refused"], 0
    return web.json_response({"refused": refused})
app = web.Application()
app.add_routes([web.get("/_stats", stats), web.get("/f/{n}", file)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
AIOWGET = [bench.AIOWGET, "-q", "-j", "16", "-i", "{list}", "-P", "{d}"]
PARFIVE = bench.PARFIVE


def clients(listing: Path) -> dict[str, list[str]]:
    aiowget = [arg.replace("{list}", str(listing)) for arg in AIOWGET]
    return {
        "aiowget (default: --per-host auto)": aiowget,
        "aiowget --per-host 4 (oracle)": [*aiowget, "--per-host", "4"],
        "aiowget --per-host none (-j 16 at once)": [*aiowget, "--per-host", "none"],
        "aria2c -j 16": [*bench.ARIA, "-j", "16", "-i", str(listing), "-d", "{d}"],
        "parfive max_conn=16": [sys.executable, "-c", PARFIVE, str(listing), "{d}", "16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="aiowget-polite-", dir="/dev/shm"))
    listing = root / "list.txt"
    base = f"http://127.0.0.1:{port}"
    listing.write_text("".join(f"{base}/f/{i:05}.bin\n" for i in range(args.files)))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    rows: dict[str, list[tuple[float, int, int]]] = {}
    try:
        for _ in range(100):  # until it listens
            try:
                urllib.request.urlopen(f"{base}/_stats").read()
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(args.rounds):
            for name, argv in clients(listing).items():
                dest = root / "dest"
                dest.mkdir()
                start = time.perf_counter()
                argv = [arg.replace("{d}", str(dest)) for arg in argv]
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                with urllib.request.urlopen(f"{base}/_stats") as answer:
                    refused = json.load(answer)["refused"]
                saved = sum(1 for p in dest.iterdir() if p.is_file())
                rows.setdefault(name, []).append((wall, refused, saved))
                shutil.rmtree(dest)
                print(f"  {name}: {wall:.2f} s, {refused} x 429, {saved} saved", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    print(f"| {args.files:,} files, 429 above 4 at once | wall s | answered 429 | files saved |")
    print("|---|---|---|---|")
    for name, samples in rows.items():
        wall = statistics.median(s[0] for s in samples)
        refused = statistics.median(s[1] for s in samples)
        saved = min(s[2] for s in samples)
        print(f"| {name} | {wall:.2f} | {refused:.0f} | {saved:,} of {args.files:,} |")


if __name__ == "__main__":
    main()

"""Many small URLs: one aiowget process against `--dask local:2`, with and without latency.

    .venv/bin/python benchmarks/bench_dask.py [--count 100000] [--latency 0.1]

A Python aiohttp server (its own process) answers every URL with 1 KiB, after `latency`
seconds when asked: latency is what a cluster hides, bandwidth on loopback is not. Peak memory
is that of all the processes of the run together (client, scheduler, nannies, workers),
sampled every 0.1 s with psutil (installed with dask). Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import asyncio, sys
from aiohttp import web
BODY, DELAY = b"x" * 1024, float(sys.argv[2])
async def answer(request):
    if DELAY:
        await asyncio.sleep(DELAY)
    return web.Response(body=BODY)
app = web.Application()
app.router.add_get("/{n}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the server on port {port} did not start")


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def measure(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the whole process tree (bytes), exit status."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    watched, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(watched))
        time.sleep(0.1)
    return time.perf_counter() - started, peak, child.returncode


def run(count: int, latency: float, work: Path) -> list[dict[str, object]]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(latency)])
    try:
        wait_for(port)
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/{n}\n" for n in range(count)))
        rows = []
        for label, extra in (("one process", []), ("--dask local:2", ["--dask", "local:2"])):
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            command = [str(ROOT / ".venv/bin/aiowget"), "-q", "-j", "64", *extra, "-i", str(urls)]
            wall, peak, status = measure([*command, "-P", str(out)])
            files = sum(
                1 for path in out.rglob("*") if path.is_file() and ".aiowget" not in path.parts
            )
            rows.append(
                {
                    "run": label,
                    "latency": latency,
                    "count": count,
                    "wall": round(wall, 2),
                    "urls_per_s": round(count / wall),
                    "peak_rss_mib": round(peak / 2**20, 1),
                    "files": files,
                    "status": status,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        server.terminate()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiowget-dask-", dir="/dev/shm") as folder:
        rows = [
            row for delay in (0.0, args.latency) for row in run(args.count, delay, Path(folder))
        ]
    print("\n| run | latency | URLs | wall s | URLs/s | peak RSS, all processes |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['run']} | {row['latency']} s | {row['count']} | {row['wall']} | "
            f"{row['urls_per_s']} | {row['peak_rss_mib']} MiB |"
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = ROOT / "benchmarks" / "results" / f"dask-{stamp}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps({"date": stamp, "cpus": psutil.cpu_count(), "rows": rows}, indent=1)
    )
    return 0 if all(row["status"] == 0 and row["files"] == row["count"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

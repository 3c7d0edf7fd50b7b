"""The per-file budget of small files: how many microseconds each layer adds (issue #15).

    .venv/bin/python benchmarks/budget.py [--files N] [--rounds R]

Fetches N and then 2N URLs of 1 KiB from a local nginx with each client, 64 at once, into a
fresh folder on /dev/shm, and reports (time for 2N - time for N) / N: the cost of one more
file, with start-up (Python, imports, the first connections) taken out. Wall and CPU time
(user + system, of the client process), medians of R interleaved rounds.

- floor: benchmarks/floor.py, the simplest aiohttp program doing the job;
- library: `aiowget.download(urls, dir, jobs=64)` on uvloop;
- command -q: `aiowget -q -j 64 -i LIST -P DIR`;
- command -q --per-host none: the same without the per-origin window;
- command: the same without -q (a line per file, to a file: stderr is not a terminal).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench

AIOWGET = bench.AIOWGET
LIBRARY = """import sys, aiowget, uvloop
urls = open(sys.argv[1]).read().split()
uvloop.run(aiowget.download(urls, sys.argv[2], jobs=64))
"""


def clients(listing: Path) -> dict[str, list[str]]:
    quiet = [AIOWGET, "-q", "-j", "64", "-i", str(listing), "-P", "{d}"]
    return {
        "floor (bare aiohttp)": [*bench.FLOOR, str(listing), "{d}", "64"],
        "library": [sys.executable, "-c", LIBRARY, str(listing), "{d}"],
        "command -q": quiet,
        # What the per-origin window (`--per-host auto`, the default) costs per file.
        "command -q --per-host none": [*quiet[:1], "--per-host", "none", *quiet[1:]],
        "command": [AIOWGET, "-j", "64", "-i", str(listing), "-P", "{d}"],
    }


def run(argv: list[str], dest: Path, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of one run into a fresh `dest`, checked."""
    dest.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(dest.with_suffix(".log"), "wb") as log:
        argv = [arg.replace("{d}", str(dest)) for arg in argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=log)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    saved = [name for name in os.listdir(dest) if name != ".aiowget"]
    if len(saved) != count:
        raise SystemExit(f"{argv[0]}: {len(saved)} files saved, expected {count}")
    shutil.rmtree(dest)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench.check_tools()
    root = Path(tempfile.mkdtemp(prefix="aiowget-budget-", dir="/dev/shm"))
    root.chmod(0o755)  # nginx workers may run as another user
    counts = (args.files, 2 * args.files)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        bench.make_data(root / "www", 1 << 20, 1)
        nginx, port = bench.start_nginx(root)
        try:
            lists = {}
            for count in counts:
                lists[count] = root / f"list-{count}.txt"
                urls = (f"http://127.0.0.1:{port}/tiny/{i}.bin\n" for i in range(count))
                lists[count].write_text("".join(urls))
            for _ in range(args.rounds):
                for count in counts:
                    for name, argv in clients(lists[count]).items():
                        sample = run(argv, root / "dest", count)
                        samples.setdefault((name, count), []).append(sample)
        finally:
            bench.stop_nginx(nginx)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"| client | wall per file (µs) | CPU per file (µs) | (N = {args.files:,}) |")
    print("|---|---|---|---|")
    for name in clients(Path()):
        low, high = samples[(name, counts[0])], samples[(name, counts[1])]
        wall = statistics.median(s[0] for s in high) - statistics.median(s[0] for s in low)
        cpu = statistics.median(s[1] for s in high) - statistics.median(s[1] for s in low)
        print(f"| {name} | {1e6 * wall / args.files:.0f} | {1e6 * cpu / args.files:.0f} | |")


if __name__ == "__main__":
    main()

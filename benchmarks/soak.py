"""Soak: the real command against the chaos server (tests/chaos.py) at 50,000 URLs.

    .venv/bin/python benchmarks/soak.py [--urls 50000] [--seed S] [--jobs 64] [--keep]

About one request in five is broken (bodies cut, stalls, 503s, Range ignored, files changed
between requests). Prints what the run survived: requests, faults by kind, statuses, retries
(from the `--json` records' attempts, checked against the server's count), files exact, wall
time. Exits 1 if any file is not the server's current version, anything is left behind, or
the command did not exit 0. Not part of `make test` (`make soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.chaos

from tests.chaos import BIG_EVERY, KINDS, ChaosServer, Check, check_run, records_of, request_bound

TIMEOUT = 1.0  # -T: a stall costs its slot this long
RETRIES = 20


async def serve(chaos: ChaosServer) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(chaos.application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def run(args: list[str]) -> tuple[int, bytes, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout, stderr.decode(errors="replace")


async def soak(urls: int, seed: int, jobs: int, work: Path, big_every: int) -> bool:
    chaos = ChaosServer(files=urls, seed=seed, big_every=big_every)
    runner, base = await serve(chaos)
    addresses = [base + path for path in chaos.paths]
    listing = work / "urls.txt"
    listing.write_text("".join(f"{url}\n" for url in addresses))
    # --per-host none, as tests/test_chaos.py: about bytes, not the random 503s' pauses.
    flags = ["-q", "--json", "--per-host", "none", "-j", str(jobs), "-T", str(TIMEOUT),
             "--retry-wait", "0", "-t", str(RETRIES)]  # fmt: skip
    print(f"chaos soak: seed {seed}, {urls:,} URLs, aiowget {' '.join(flags)}", flush=True)
    started = time.monotonic()
    try:
        status, stdout, stderr = await run([*flags, "-i", str(listing), "-P", str(work / "out")])
    finally:
        wall = time.monotonic() - started
        await runner.cleanup()
    records, _ = records_of(stdout)
    check = check_run(chaos, work / "out", addresses, records)
    report(chaos, records, check, status, wall)
    if status != 0:
        print(stderr[-3000:], file=sys.stderr)
    return status == 0 and not check.problems


def report(
    chaos: ChaosServer, records: list[dict[str, object]], check: Check, status: int, wall: float
) -> None:
    files = len(chaos.paths)
    attempts = sum(int(str(record["attempts"])) for record in records)
    retries = attempts - len(records)
    unexplained = chaos.requests - files - chaos.failing_faults
    kinds = ", ".join(f"{kind} {chaos.faults[kind]:,}" for kind in KINDS)
    statuses = ", ".join(f"{code}: {count:,}" for code, count in sorted(chaos.statuses.items()))
    print(f"exit status       {status}")
    print(f"wall time         {wall:.1f} s ({files / wall:,.0f} URLs/s)")
    print(f"requests          {chaos.requests:,} (bound {request_bound(files, chaos.rate):,})")
    print(f"faults injected   {chaos.faults.total():,}: {kinds}")
    print(f"answers           {statuses} (the rest cut or stalled before their headers)")
    same = "=" if attempts == chaos.requests else "!="
    print(f"retries           {retries:,} (--json attempts {attempts:,} {same} requests served)")
    print(f"  not from faults {unexplained:,} (requests that timed out on the loaded machine)")
    print(f"files exact       {check.exact:,} of {files:,}")
    for line in check.problems[:20]:
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--big-every", type=int, default=BIG_EVERY, help="one file in N over 1 MiB")
    parser.add_argument("--keep", action="store_true", help="keep the downloaded files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aiowget-soak-"))
    try:
        ok = asyncio.run(soak(args.urls, args.seed, args.jobs, work, args.big_every))
    finally:
        if args.keep:
            print(f"files kept in {work}")
        else:
            shutil.rmtree(work)
    if not ok:
        print(f"FAILED; replay: make soak SOAK='--urls {args.urls} --seed {args.seed}'")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

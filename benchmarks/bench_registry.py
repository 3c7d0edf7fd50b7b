"""NameRegistry alone: bytes per name and µs per claim (issue #15, target 3).

    python benchmarks/bench_registry.py [--names N]

Claims N distinct names (10,000,000 by default; about a minute) for N URLs of one list, as one
big run does, and prints the bytes per name two ways on one line:

- held: `sys.getsizeof(registry)`, the bytes of its arrays as allocated (what tracemalloc
  would count for them; tracemalloc itself makes each claim ten times slower), at the end and
  at worst over the run from N/10 names on (right after the arrays grow);
- peak RSS growth: VmHWM after minus before, which also counts the allocator's own waste.

Then the µs per claim: 1,000,000 claims into a fresh registry, best of three. Exits with status
1 when the registry takes more than 16 bytes per name by either measure.
"""

from __future__ import annotations

import argparse
import sys
import time

from aiowget.naming import NameRegistry

LIMIT = 16  # bytes per name
TIMED_CLAIMS = 1_000_000
SAMPLE_EVERY = 10_000  # claims between two looks at the held bytes


def name_and_url(number: int) -> tuple[str, str]:
    path = f"data/part-{number:09d}.bin"
    return "example.com__" + path.replace("/", "__"), "https://example.com/" + path


def peak_rss() -> int:
    """VmHWM, the peak resident set size of this process so far, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def bytes_per_name(names: int) -> tuple[float, float, float]:
    """Bytes per name of a registry of `names` names: held at the end, held at worst from
    names / 10 on, and peak RSS growth."""
    rss_before = peak_rss()
    registry = NameRegistry()
    worst = 0.0
    for number in range(names):
        registry.claim(*name_and_url(number), 1)
        if number % SAMPLE_EVERY == 0 and number >= names // 10:
            worst = max(worst, sys.getsizeof(registry) / (number + 1))
    held = sys.getsizeof(registry) / names
    return held, max(worst, held), (peak_rss() - rss_before) / names


def microseconds_per_claim(claims: int) -> float:
    pairs = [name_and_url(number) for number in range(claims)]
    best = float("inf")
    for _ in range(3):
        registry = NameRegistry()
        start = time.perf_counter()
        for name, url in pairs:
            registry.claim(name, url, 1)
        best = min(best, time.perf_counter() - start)
    return best / claims * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=10_000_000)
    names = parser.parse_args().names
    held, worst, rss = bytes_per_name(names)
    print(
        f"bytes per name at {names:,} names: {held:.2f} held (sys.getsizeof; at worst"
        f" {worst:.2f} from {names // 10:,} names on), {rss:.2f} peak RSS growth"
    )
    print(f"µs per claim: {microseconds_per_claim(TIMED_CLAIMS):.2f} ({TIMED_CLAIMS:,} claims)")
    return 0 if max(worst, rss) <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())

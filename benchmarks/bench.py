"""Benchmark aiowget against curl, aria2c and parfive on a local nginx (see benchmarks/README.md).

Run from the repository root:
`.venv/bin/python benchmarks/bench.py [--quick] [--disk] [--only LETTERS]`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from subprocess import DEVNULL
from typing import Any, BinaryIO

from rich.cells import cell_len

HERE = Path(__file__).resolve().parent
AIOWGET = str(Path(sys.executable).with_name("aiowget"))
MIB = 1 << 20
INSTALL = "sudo apt-get install -y nginx curl aria2 time"
TERMINALS = [(120, 30), (80, 24)]  # (columns, rows) of the pseudo-terminals of scenario e
NONE, BARS = "aiowget --progress none", "aiowget (bars)"
AUTO_64, FIXED_64 = "aiowget -j 64 --per-host auto", "aiowget -j 64 --per-host 64"
RUN_TIMEOUT = 1200.0  # seconds; a run that takes longer is killed and reported FAILED
STARTS = {"--version": 10, "--help": 10}  # start-up runs, and how many of each (median)
FIRST_REQUESTS = 5  # runs of one URL, timed from spawn to the arrival of its request
FIRST_REQUEST = "aiowget URL: first request"
START_TIMEOUT = 60.0  # seconds; a start-up run that takes longer fails its case
# The floor: the simplest aiohttp program doing the same job (benchmarks/floor.py). The gap
# between it and aiowget is aiowget's own per-file work.
FLOOR = [sys.executable, str(Path(__file__).resolve().with_name("floor.py"))]
FLOOR_NAME = "floor (bare aiohttp)"

ARIA = ["aria2c", "-q", "--file-allocation=none", "--allow-overwrite=true"]
ARIA += ["--auto-file-renaming=false"]
CURL = ["curl", "-s", "--fail"]
PARFIVE = """import sys, parfive
urls, dest, conn = open(sys.argv[1]).read().split(), sys.argv[2], int(sys.argv[3])
dl = parfive.Downloader(max_conn=conn, max_splits=1, progress=False)
for url in urls:
    dl.enqueue_file(url, path=dest)
sys.exit(1 if dl.download().errors else 0)
"""
NGINX = """daemon off; master_process on; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  server {{
    listen 127.0.0.1:{port}; root {www};
    location /slow/ {{ alias {www}/; limit_rate 25m; }}
    location /tiny/ {{ try_files /one.bin =404; }}
    location /hundred/ {{ try_files /hundred.bin =404; }}
  }}
}}
"""


@dataclass
class Case:
    tool: str
    argv: list[str]  # "{d}" stands for the fresh destination folder; [] = not implemented
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    error: str = ""
    widest: int = 0  # on a pseudo-terminal: its widest row of bars, in terminal cells


@dataclass
class Scenario:
    key: str
    title: str
    count: int  # files expected in the destination
    nbytes: int  # their total size
    sha256: str  # of the single file, or "" for many files
    cases: list[Case]
    rounds: int = 3
    to_disk: bool = False  # destination folders under /tmp instead of /dev/shm
    terminal: tuple[int, int] | None = None  # (columns, rows): run on a pseudo-terminal


def check_tools() -> None:
    missing = [t for t in ("nginx", "curl", "aria2c") if shutil.which(t) is None]
    if not os.access("/usr/bin/time", os.X_OK):  # GNU time measures the peak RSS
        missing.append("/usr/bin/time")
    if missing:
        print(f"missing: {', '.join(missing)}; install with:\n  {INSTALL}", file=sys.stderr)
        sys.exit(2)
    probe = [sys.executable, "-c", "import parfive"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "parfive"], check=True)


def start_nginx(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        d, port = root / "nginx", int(s.getsockname()[1])
    d.mkdir()
    (d / "nginx.conf").write_text(NGINX.format(d=d, port=port, www=root / "www"))
    argv = ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    proc = subprocess.Popen(argv, stdin=DEVNULL, start_new_session=True)
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"nginx exited: {(d / 'error.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    stop_nginx(proc)
    sys.exit("nginx did not start")


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # SIGTERM to the master we own: it stops its workers too
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_data(www: Path, big: int, small: int) -> str:
    """The files nginx serves; returns the sha256 of big.bin."""
    (www / "s").mkdir(mode=0o755, parents=True)
    digest = hashlib.sha256()
    with (www / "big.bin").open("wb") as f:
        for _ in range(big // (16 * MIB)):
            block = os.urandom(16 * MIB)
            digest.update(block)
            f.write(block)
    (www / "hundred.bin").write_bytes(os.urandom(100))
    blob = os.urandom(16384 * small)
    for i in range(small):
        (www / "s" / f"{i:05}.bin").write_bytes(blob[i * 16384 : (i + 1) * 16384])
    (www / "one.bin").write_bytes(os.urandom(1024))
    return digest.hexdigest()


def write_lists(root: Path, url: str, n: dict[str, int]) -> None:
    small, tiny, hundred = n["small"], n["tiny"], n["hundred"]
    names = [f"{i:05}.bin" for i in range(small)]
    (root / "big.txt").write_text(f"{url}/big.bin\n")
    (root / "small.txt").write_text("".join(f"{url}/s/{n}\n" for n in names))
    cfg = "".join(f'url = "{url}/s/{n}"\noutput = "{n}"\n' for n in names)
    (root / "curl.cfg").write_text(cfg)
    (root / "tiny.txt").write_text("".join(f"{url}/tiny/{i}\n" for i in range(tiny)))
    (root / "hundred.txt").write_text("".join(f"{url}/hundred/{i}\n" for i in range(hundred)))


def scenarios(root: Path, url: str, sha: str, n: dict[str, int]) -> list[Scenario]:
    big, small, tiny, r = n["big"], n["small"], n["tiny"], n["rounds"]
    t_d = f"d. {tiny:,} URLs x 1 KiB, -j 64"
    urls = str(root / "tiny.txt")  # every /tiny/N is the same 1 KiB file (nginx try_files)
    aiowget = Case("aiowget -j 64", [AIOWGET, "-q", "-j", "64", "-i", urls, "-P", "{d}"])
    floor = Case(FLOOR_NAME, [*FLOOR, urls, "{d}", "64"])
    t_b, t_c = f"b. {small:,} x 16 KiB, 64 at once", f"c. one {big // MIB} MiB file, 25 MB/s/conn"
    return [
        Scenario("a", f"a. one {big // MIB} MiB file", 1, big, sha, big_cases(root, url), r),
        Scenario("b", t_b, small, small * 16384, "", small_cases(root), r),
        Scenario("c", t_c, 1, big, sha, split_cases(url), r),
        # One round: a run takes minutes, which evens out what three medians would.
        Scenario("d", t_d, tiny, tiny * 1024, "", [aiowget, floor], 1),
        *[bar_scenario(root, n["hundred"], size, r) for size in TERMINALS],
    ]


def bar_scenario(root: Path, count: int, size: tuple[int, int], rounds: int) -> Scenario:
    """What drawing the progress costs: the default (bars, on a terminal) against none."""
    argv = [AIOWGET, "-j", "64", "-i", str(root / "hundred.txt"), "-P", "{d}"]
    cases = [Case(NONE, [*argv, "--progress", "none"])]
    cases.append(Case(BARS, argv))  # the default on a terminal
    title = f"e. {count:,} x 100 B, -j 64, on a {size[0]}x{size[1]} terminal"
    return Scenario(f"e{size[0]}", title, count, count * 100, "", cases, rounds, terminal=size)


def small_cases(root: Path) -> list[Case]:
    urls, pf = str(root / "small.txt"), [sys.executable, "-c", PARFIVE]
    curl = [*CURL, "--parallel", "--parallel-max", "64", "--output-dir", "{d}"]
    return [
        Case("aiowget -j 64", [AIOWGET, "-q", "-j", "64", "-i", urls, "-P", "{d}"]),
        # Issue #16 test 6: the adapted window within 5% of a fixed one on a healthy server.
        Case(AUTO_64, [AIOWGET, "-q", "-j", "64", "--per-host", "auto", "-i", urls, "-P", "{d}"]),
        Case(FIXED_64, [AIOWGET, "-q", "-j", "64", "--per-host", "64", "-i", urls, "-P", "{d}"]),
        Case("curl --parallel", [*curl, "-K", str(root / "curl.cfg")]),
        Case("aria2c -j 64", [*ARIA, "-j", "64", "-i", urls, "-d", "{d}"]),
        Case("parfive", [*pf, urls, "{d}", "64"]),
        Case(FLOOR_NAME, [*FLOOR, urls, "{d}", "64"]),
    ]


def split_cases(url: str) -> list[Case]:
    src = f"{url}/slow/big.bin"
    help_text = subprocess.run([AIOWGET, "--help"], capture_output=True, text=True).stdout
    split = [AIOWGET, "-q", "-s", "8", "-O", "{d}/b", src] if "--split" in help_text else []
    return [
        Case("aria2c -x8", [*ARIA, "-x8", "-s8", "-k1M", "-d", "{d}", "-o", "b", src]),
        Case("curl (1 conn)", [*CURL, "-o", "{d}/b", src]),
        Case("aiowget (1 conn)", [AIOWGET, "-q", "-O", "{d}/b", src]),
        Case("aiowget -s 8", split),  # [] until aiowget has --split: "not implemented"
    ]


def big_cases(root: Path, url: str) -> list[Case]:
    src, pf = f"{url}/big.bin", [sys.executable, "-c", PARFIVE, str(root / "big.txt")]
    return [
        Case("aiowget -O", [AIOWGET, "-q", "-O", "{d}/big.bin", src]),
        Case("aiowget -P", [AIOWGET, "-q", "-P", "{d}", src]),
        Case("curl", [*CURL, "-o", "{d}/big.bin", src]),
        Case("aria2c", [*ARIA, "-x1", "-s1", "-d", "{d}", "-o", "big.bin", src]),
        Case("parfive", [*pf, "{d}", "1"]),
    ]


def run_timed(
    argv: list[str], log: Path, terminal: tuple[int, int] | None = None
) -> tuple[int, float, int]:
    """Exit code, wall seconds and peak RSS in KiB (GNU time's %M, see README: "Peak RSS").

    With `terminal` (columns, rows), the tool's stdin, stdout and stderr are a pseudo-terminal
    of that size, whose output is read as fast as it comes (as a terminal would) into `log`."""
    rss = log.with_suffix(".rss")
    with log.open("wb") as out, Pty(terminal, out) as pty:
        start = time.perf_counter()
        argv = ["/usr/bin/time", "-f", "%M", "-o", str(rss), *argv]
        # time and the tool in a group of their own, which is ended as one if need be
        proc = subprocess.Popen(argv, start_new_session=True, **pty.stdio())
        pty.started()
        timer = threading.Timer(RUN_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        try:
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.returncode is None:  # Ctrl-C
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        wall = time.perf_counter() - start
    peak = int(rss.read_text().split()[-1]) if code == 0 else 0
    rss.unlink(missing_ok=True)
    return code, wall, peak


class Pty:
    """A pseudo-terminal of a given size for one run, or the plain log file when size is None."""

    def __init__(self, size: tuple[int, int] | None, out: BinaryIO) -> None:
        self._size, self._out = size, out
        self._fds: tuple[int, int] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Pty:
        if self._size is not None:
            self._fds = os.openpty()
            columns, rows = self._size
            winsize = struct.pack("HHHH", rows, columns, 0, 0)
            fcntl.ioctl(self._fds[1], termios.TIOCSWINSZ, winsize)
        return self

    def stdio(self) -> dict[str, Any]:
        if self._fds is None:
            return {"stdin": DEVNULL, "stdout": self._out, "stderr": self._out}
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"  # the size comes from the ioctl alone
        slave = self._fds[1]
        return {"stdin": slave, "stdout": slave, "stderr": slave, "env": env}

    def started(self) -> None:
        if self._fds is not None:
            os.close(self._fds[1])  # the child holds it now: EOF when the child is done
            self._reader = threading.Thread(target=self._drain, args=(self._fds[0],))
            self._reader.start()

    def _drain(self, master: int) -> None:
        while True:
            try:
                block = os.read(master, 1 << 16)
            except OSError:  # EIO: every holder of the slave side has exited
                return
            if not block:
                return
            self._out.write(block)

    def __exit__(self, *exc: object) -> None:
        if self._fds is None:
            return
        if self._reader is not None:
            self._reader.join()
        else:
            os.close(self._fds[1])
        os.close(self._fds[0])


CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
LOG_LINE = re.compile(rb"\[[-+=!*]\] |aiowget: ")  # printed above the bars, free to wrap


def widest_row(raw: bytes) -> int:
    """The widest row of the bars in what a terminal was sent, in cells, escapes left out."""
    widest = 0
    for line in CSI.sub(b"", raw).split(b"\n"):  # the terminal sends \r\n for \n
        shown = line.rstrip(b"\r").rsplit(b"\r", 1)[-1]  # a carriage return starts anew
        if not LOG_LINE.match(shown):
            widest = max(widest, cell_len(shown.decode(errors="replace")))
    return widest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def verify(dest: Path, sc: Scenario, deep: bool) -> str:
    count, total, first = 0, 0, None
    for path, size in files_in(dest):
        count, total, first = count + 1, total + size, first or path
    if count != sc.count or total != sc.nbytes:
        return f"{count} files, {total} bytes; expected {sc.count}, {sc.nbytes}"
    if deep and sc.sha256 and first is not None and sha256(first) != sc.sha256:
        return "sha256 differs from the source"
    return ""


def files_in(folder: Path) -> Iterator[tuple[Path, int]]:
    """Every regular file under `folder` and its size, one at a time (scenario d has a million:
    a list of them would weigh more than the run measured)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from files_in(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path), entry.stat(follow_symlinks=False).st_size


def run_case(sc: Scenario, case: Case, rnd: int, base: Path) -> None:
    if not case.argv or case.error:
        return
    dest = base / f"{sc.key}-{rnd}"
    dest.mkdir()
    log = dest.with_suffix(".log")
    try:
        argv = [a.replace("{d}", str(dest)) for a in case.argv]
        code, wall, rss = run_timed(argv, log, sc.terminal)
        if sc.terminal is not None:
            case.widest = max(case.widest, widest_row(log.read_bytes()))
        tail = " ".join(log.read_text(errors="replace").split())[-300:]
        case.error = f"exit {code}: {tail}" if code else verify(dest, sc, not case.walls)
        if not case.error:
            case.walls.append(wall)
            case.rss_kib.append(rss)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        log.unlink(missing_ok=True)
    shown = f"FAILED {case.error}" if case.error else f"{wall:.2f} s, {rss // 1024} MiB"
    if sc.terminal is not None:
        shown += f", widest bar row {case.widest} of {sc.terminal[0]} columns"
    print(f"  [{sc.key} round {rnd + 1}] {case.tool}: {shown}", file=sys.stderr, flush=True)


def startup_scenario() -> Scenario:
    cases = [Case(f"aiowget {flag}", [AIOWGET, flag]) for flag in STARTS]
    cases.append(Case(FIRST_REQUEST, [AIOWGET, "-q", "-P", "{d}", "URL"]))
    return Scenario("s", "s. start-up (spawn to exit; to the request)", 0, 0, "", cases, 0)


def run_startup(sc: Scenario, base: Path) -> None:
    """`aiowget --version` and `--help` (spawn to exit) and one URL's run (spawn to the arrival
    of its request), interleaved, after one untimed run that fills the bytecode cache; a wrong
    output or exit status fails the case."""
    first_request(base / "s-warm-up")
    runs = [*STARTS.values(), FIRST_REQUESTS]
    for rnd in range(max(runs)):
        for case, times in zip(sc.cases, runs, strict=True):
            if rnd >= times or case.error:
                continue
            if case.tool == FIRST_REQUEST:
                wall, case.error = first_request(base / f"s-{rnd}")
            else:
                wall, case.error = spawn_to_exit(case.argv)
            if not case.error:
                case.walls.append(wall)
    for case in sc.cases:
        shown = f"FAILED {case.error}" if case.error else f"{statistics.median(case.walls):.3f} s"
        print(f"  [s] {case.tool}: {shown} (median of {len(case.walls)})", file=sys.stderr)


def spawn_to_exit(argv: list[str]) -> tuple[float, str]:
    """Seconds from spawning `aiowget --version` (or `--help`) to its exit, and an error if
    it did not print what it should."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 0.0, f"still running after {START_TIMEOUT:g} s"
    wall = time.perf_counter() - start
    failed = done.returncode or "aiowget" not in done.stdout
    return wall, f"exit {done.returncode}: {done.stderr[-300:]}" if failed else ""


def first_request(dest: Path) -> tuple[float, str]:
    """Seconds from spawning `aiowget -q -P DEST URL` to its request reaching a server of our
    own on 127.0.0.1 (which answers 1 KiB), and an error if the run did not save it."""
    arrivals: list[float] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(START_TIMEOUT)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/one.bin"
        answering = threading.Thread(target=answer_once, args=(server, arrivals), daemon=True)
        answering.start()
        start = time.perf_counter()
        argv = [AIOWGET, "-q", "-P", str(dest), url]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
            error = f"exit {done.returncode}: {done.stderr[-300:]}" if done.returncode else ""
        except subprocess.TimeoutExpired:
            error = f"still running after {START_TIMEOUT:g} s"
        answering.join(START_TIMEOUT)
    saved = [size for _, size in files_in(dest)] if dest.is_dir() else []
    shutil.rmtree(dest, ignore_errors=True)
    if not error and (saved != [1024] or not arrivals):
        error = f"saved {saved} (one file of 1024 bytes expected)"
    return (arrivals[0] - start if arrivals else 0.0), error


def answer_once(server: socket.socket, arrivals: list[float]) -> None:
    try:
        connection, _ = server.accept()
    except OSError:  # no request in time (the run fails), or the server closed
        return
    with connection:
        head = b""
        while b"\r\n\r\n" not in head and (block := connection.recv(65536)):
            head += block
        arrivals.append(time.perf_counter())
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n"
        connection.sendall(response + os.urandom(1024))


# In place of a denominator tool: the tool's own peak RSS in MiB, or its wall in seconds.
PEAK_RSS, SECONDS = "(peak RSS, MiB)", "(wall, s)"

TARGETS = [  # name, scenario, numerator tool, denominator tool (or PEAK_RSS, SECONDS), op, goal
    ("big: aiowget -O / curl wall", "a", "aiowget -O", "curl", "<=", 1.25),
    # Issue #15's goals for many small files (they were 1.5 and 3 before it).
    ("small: aiowget / aria2c wall", "b", "aiowget -j 64", "aria2c -j 64", "<=", 1.0),
    ("small: parfive / aiowget wall", "b", "parfive", "aiowget -j 64", ">=", 2.5),
    ("small: aiowget / floor wall", "b", "aiowget -j 64", FLOOR_NAME, "<=", 1.15),
    ("small: per-host auto / per-host 64 wall", "b", AUTO_64, FIXED_64, "<=", 1.05),
    ("tiny: aiowget / floor wall", "d", "aiowget -j 64", FLOOR_NAME, "<=", 1.15),
    ("split: aiowget -s 8 / aria2c -x8 wall", "c", "aiowget -s 8", "aria2c -x8", "<=", 1.2),
    ("split: curl 1 conn / aiowget -s 8 wall", "c", "curl (1 conn)", "aiowget -s 8", ">=", 5.0),
    ("tiny: aiowget peak RSS MiB, every file fetched", "d", "aiowget -j 64", PEAK_RSS, "<=", 128.0),
    ("start-up: aiowget --version s", "s", "aiowget --version", SECONDS, "<=", 0.08),
    ("start-up: aiowget --help s", "s", "aiowget --help", SECONDS, "<=", 0.08),
    ("start-up: spawn to first request s", "s", FIRST_REQUEST, SECONDS, "<=", 0.25),
    *[
        (f"bars at {c}x{r}: bars / --progress none wall", f"e{c}", BARS, NONE, "<=", 1.1)
        for c, r in TERMINALS
    ],
]


def find(scs: list[Scenario], key: str, tool: str) -> Case | None:
    found = [c for s in scs if s.key == key for c in s.cases if c.tool == tool]
    return found[0] if found else None


def measured(case: Case | None) -> Case | None:
    return case if case and case.walls and not case.error else None


def targets(scs: list[Scenario]) -> list[dict[str, object]]:
    """Each target's value and whether it is met (a run that failed, a file missing or a wrong
    exit status, misses it); the targets of scenarios left out by --only are left out."""
    out: list[dict[str, object]] = []
    for name, key, num, den, op, goal in TARGETS:
        if not any(sc.key == key for sc in scs):
            continue  # left out by --only
        cases = [find(scs, key, num)]
        cases += [] if den in (PEAK_RSS, SECONDS) else [find(scs, key, den)]
        a, b = measured(cases[0]), measured(cases[-1])
        value: float | None = None
        if a and den == PEAK_RSS:
            value = statistics.median(a.rss_kib) / 1024
        elif a and den == SECONDS:
            value = statistics.median(a.walls)
        elif a and b:
            value = statistics.median(a.walls) / statistics.median(b.walls)
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        if any(c and c.error for c in cases):
            met = False
        out.append({"target": name, "value": value, "goal": f"{op} {goal:g}", "met": met})
    return out


def status(case: Case) -> str:
    if not case.argv:
        return "not implemented"
    return f"FAILED: {case.error[:80]}" if case.error else "ok"


def row(sc: Scenario, c: Case) -> list[str]:
    if not c.walls or c.error:
        return [sc.title, c.tool, "-", "-", "-", str(len(c.walls)), status(c)]
    wall = statistics.median(c.walls)
    rss = f"{statistics.median(c.rss_kib) / 1024:.0f}" if c.rss_kib else "-"
    rate = f"{sc.nbytes / 1e6 / wall:,.0f} MB/s" if sc.sha256 else f"{sc.count / wall:,.0f} files/s"
    shown = f"{wall:.3f}" if wall < 1 else f"{wall:.2f}"  # start-up: milliseconds matter
    return [sc.title, c.tool, shown, rate if sc.count else "-", rss, str(len(c.walls)), "ok"]


def table(scs: list[Scenario], tgts: list[dict[str, object]]) -> str:
    lines = ["| scenario | tool | wall s (median) | throughput | peak RSS MiB | runs | status |"]
    lines.append("|---|---|---|---|---|---|---|")
    lines += ["| " + " | ".join(row(sc, c)) + " |" for sc in scs for c in sc.cases]
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in tgts:
        v = t["value"]
        shown = f"{v:.3g}" if isinstance(v, float) else "FAILED" if t["met"] is False else "n/a"
        met = "yes" if t["met"] is True else "**no**" if t["met"] is False else "not measured"
        lines.append(f"| {t['target']} | {shown} | {t['goal']} | {met} |")
    return "\n".join(lines)


def version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    return ((out.stdout + out.stderr).strip().splitlines() or ["?"])[0]


def modified() -> list[str]:
    argv = ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "aiowget"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return sorted(line[3:] for line in out.splitlines())


def meta(quick: bool) -> dict[str, object]:
    pf = [sys.executable, "-c", "import parfive; print(parfive.__version__)"]
    tools = {"nginx": ["nginx", "-v"], "curl": ["curl", "--version"], "parfive": pf}
    tools |= {"aria2c": ["aria2c", "--version"], "aiowget": [AIOWGET, "--version"]}
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "uname": version(["uname", "-a"]),
        "aiowget_commit": version(["git", "-C", str(HERE.parent), "rev-parse", "HEAD"]),
        # Files of the package changed since that commit (work in progress measured with it).
        "aiowget_modified": modified(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": {name: version(argv) for name, argv in tools.items()},
    }


def save(info: dict[str, object], scs: list[Scenario], tgts: list[dict[str, object]]) -> None:
    tools = [[{**asdict(c), "status": status(c)} for c in s.cases] for s in scs]
    rows = [{**asdict(s), "cases": t} for s, t in zip(scs, tools, strict=True)]
    suffix = ("-quick" if info["quick"] else "") + (f"-only-{info['only']}" if info["only"] else "")
    path = HERE / "results" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}{suffix}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**info, "scenarios": rows, "targets": tgts}, indent=1) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)


def run_all(root: Path, n: dict[str, int], disk: bool, only: str) -> list[Scenario]:
    sha = make_data(root / "www", n["big"], n["small"])
    tmp = Path(tempfile.mkdtemp(prefix="aiowget-bench-", dir="/tmp"))
    nginx: subprocess.Popen[bytes] | None = None
    scs: list[Scenario] = []
    try:
        nginx, port = start_nginx(root)
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/tiny/123") as tiny:  # one file behind every name
            assert len(tiny.read()) == 1024, "nginx /tiny/ location is wrong"
        write_lists(root, url, n)
        scs = [startup_scenario(), *scenarios(root, url, sha, n)]
        if disk:
            title = f"a. one {n['big'] // MIB} MiB file, to disk (/tmp)"
            scs.insert(
                2, Scenario("a-disk", title, 1, n["big"], sha, big_cases(root, url), 1, True)
            )
        scs = [sc for sc in scs if not only or sc.key[0] in only]
        for sc in scs:
            print(sc.title, file=sys.stderr, flush=True)
            if sc.key == "s":
                run_startup(sc, root)
            for rnd in range(sc.rounds):
                for case in sc.cases:  # interleaved: A, B, C, then A, B, C again
                    run_case(sc, case, rnd, tmp if sc.to_disk else root)
    finally:
        if nginx is not None:
            stop_nginx(nginx)
        shutil.rmtree(tmp, ignore_errors=True)
    return scs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes / 8, one round")
    parser.add_argument("--disk", action="store_true", help="also scenario a to /tmp, once")
    parser.add_argument(
        "--only", metavar="LETTERS", default="", help="these scenarios only, e.g. sd (s: start-up)"
    )
    args = parser.parse_args()
    check_tools()
    for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
        del os.environ[name]  # every tool talks to 127.0.0.1 directly
    q = 8 if args.quick else 1
    n = {"big": 512 * MIB // q, "small": 10_000 // q, "tiny": 1_000_000 // q}
    n |= {"hundred": 5_000 // q, "rounds": 1 if args.quick else 3}
    if args.only:  # no data made for scenarios left out
        n["big"] *= bool(set(args.only) & set("ac"))
        n["small"] *= "b" in args.only
        n["tiny"] *= "d" in args.only
    info = meta(args.quick) | {"only": args.only}
    root = Path(tempfile.mkdtemp(prefix="aiowget-bench-", dir="/dev/shm"))
    root.chmod(0o755)  # nginx workers may run as another user (nobody)
    # As installed: Python modules compiled once, then loaded from their cache (into the run's
    # folder, whatever PYTHONDONTWRITEBYTECODE says); start-up would otherwise include compiling.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    try:
        scs = run_all(root, n, args.disk, args.only)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tgts = targets(scs)
    print(table(scs, tgts))
    save(info, scs, tgts)


if __name__ == "__main__":
    main()

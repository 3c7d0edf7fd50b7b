"""Past one machine: one job of many URLs, cut into shards, run on a Dask cluster.

`pip install aiowget[dask]`. The input is cut into shard files under the output directory, as a
stream; each Dask task gets only `(directory, shard)` and runs one aiowget `Downloader` over
that shard in an event loop of its own (`run_shard`, which knows nothing of Dask, so a Ray or
Slurm adapter needs only to call it). The directory must be visible to every worker.

Layout of the output directory OUT:

    OUT/shard-00000/NAME            the files of shard 0 (names are unique within a shard)
    OUT/.aiowget/plan.json          how many shards the input made (written once, last)
    OUT/.aiowget/00000.urls         shard 0's input lines, as given
    OUT/.aiowget/00000.jsonl        its manifest: one JSON object per URL
    OUT/.aiowget/00000.done.json    its summary, written last and atomically

A shard is done exactly when its `.done.json` exists: a rerun submits only the others, and
inside a shard complete files are skipped (and recorded with a checksum read from disk) and
`.part` files resume as usual. With `if_exists="update"` (`-N`) a rerun runs every shard
again: each file is asked about with a conditional GET, and replaced only if it changed.

The shard files hold the input as given, passwords included (the workers fetch them), so
`OUT/.aiowget` is checked as storage checks its working folders (a real folder, ours, not
writable by others), every file in it is created 0600, exclusively and without following a
symlink, and the manifests record URLs masked. `local:N` starts a cluster that only this process
can reach (TLS with a certificate made for the run, no dashboard).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from .downloader import Downloader
from .errors import AiowgetError, ExitStatus, LocalIOError, UsageError, combine_exit_statuses
from .inputfile import InputFile
from .models import IfExists, Outcome, Result
from .storage import work_dir_ready
from .text import iso_time, redact_url, redact_urls
from .transfer import DUPLICATE

__all__ = ["Report", "ShardPaths", "download", "plan_shards", "run_shard"]

STATE = ".aiowget"
_MANIFEST_BATCH = 256  # manifest lines per write


@dataclasses.dataclass(frozen=True)
class ShardPaths:
    """Where shard `shard` of a job in `directory` keeps its input, files and records."""

    directory: Path
    shard: int

    @property
    def files(self) -> Path:
        return self.directory / f"shard-{self.shard:05d}"

    def _state(self, suffix: str) -> Path:
        return self.directory / STATE / f"{self.shard:05d}{suffix}"

    @property
    def urls(self) -> Path:
        return self._state(".urls")

    @property
    def manifest(self) -> Path:
        return self._state(".jsonl")

    @property
    def lock(self) -> Path:
        return self._state(".lock")

    @property
    def status(self) -> Path:
        return self._state(".done.json")


@dataclasses.dataclass
class Report:
    """What a distributed job did: shards and URL outcomes, counted. `urls`: how many the
    input held (None for a job planned by an older aiowget, whose plan did not count them)."""

    shards: int = 0
    urls: int | None = None
    shards_done: int = 0
    shards_failed: dict[int, str] = dataclasses.field(default_factory=dict)
    saved: int = 0
    skipped: int = 0
    failed: int = 0
    unchanged: int = 0
    bytes: int = 0
    exit_status: ExitStatus = ExitStatus.OK

    def add(self, summary: dict[str, Any]) -> None:
        self.shards_done += 1
        for key in ("saved", "skipped", "failed", "unchanged", "bytes"):
            # A shard done before `unchanged` existed has no count of it.
            setattr(self, key, getattr(self, key) + int(summary.get(key, 0)))
        self.exit_status = combine_exit_statuses((self.exit_status, int(summary["exit_status"])))

    def fail(self, shard: int, reason: str) -> None:
        self.shards_failed[shard] = reason
        self.exit_status = combine_exit_statuses((self.exit_status, ExitStatus.GENERIC))


# Cutting the input -----------------------------------------------------------------------------


def plan_shards(source: Iterable[str] | str | os.PathLike[str], directory: Path, size: int) -> int:
    """Cut the input into shard files of `size` lines (streamed); return how many there are.

    Done once per job: a rerun finds `plan.json` and keeps the shards it made, once it has
    checked (reading the input again, as a stream) that the input and `size` are the same;
    `UsageError` when they are not, rather than a job that silently skips the new URLs."""
    plan = directory / STATE / "plan.json"
    if size < 1:
        raise UsageError(f"shard_size must be at least 1, got {size}")
    directory.mkdir(parents=True, exist_ok=True)
    work_dir_ready(directory / STATE)  # before a byte is read from it or written to it
    if plan.exists():
        return _check_plan(_read_state(plan), source, directory, size)
    count, total, digest = 0, 0, hashlib.sha256()
    with _lines(source) as lines:
        for count, batch in enumerate(_batches(_hashed(lines, digest), size), start=1):
            _write_atomically(ShardPaths(directory, count - 1).urls, "".join(batch))
            total += len(batch)
    record = {"shards": count, "shard_size": size, "input_sha256": digest.hexdigest()}
    record["urls"] = total  # for the progress: files done of how many
    _write_atomically(plan, json.dumps(record))
    return count


def _check_plan(
    record: dict[str, Any],
    source: Iterable[str] | str | os.PathLike[str],
    directory: Path,
    size: int,
) -> int:
    digest = hashlib.sha256()
    with _lines(source) as lines:
        for _ in _hashed(lines, digest):
            pass
    if (record.get("shard_size"), record.get("input_sha256")) != (size, digest.hexdigest()):
        raise UsageError(
            f"{directory} holds a job planned from another input or shard size; use a new "
            f"directory, or remove {directory / STATE / 'plan.json'} and its shards to start over"
        )
    return int(record["shards"])


def _hashed(lines: Iterator[str], digest: Any) -> Iterator[str]:
    for line in lines:
        digest.update(line.encode(errors="surrogatepass"))
        yield line


@contextmanager
def _lines(source: Iterable[str] | str | os.PathLike[str]) -> Iterator[Iterator[str]]:
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8", errors="replace") as file:
            yield _useful(file)
    else:
        yield _useful(source)


def _useful(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield text + "\n"


def _batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(lines, size)):
        yield batch


# One shard, anywhere -------------------------------------------------------------------------


def run_shard(
    directory: str | os.PathLike[str],
    shard: int,
    options: Mapping[str, Any] | None = None,
    *,
    on_wait: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Download shard `shard` of the job in `directory` with the `Downloader` options given;
    return its summary. Engine-free: any scheduler (Dask, Ray, Slurm, a shell loop) may call
    it, in any process.

    A shard has one owner at a time: a second runner (a rerun while the job still runs, a
    retry of a worker presumed dead) calls `on_wait`, waits for the first, and then returns
    the summary it wrote, never writing itself. `UsageError` when there is no such shard,
    `LocalIOError` when its state folder is not a real folder of ours, closed to others."""
    paths = ShardPaths(Path(directory), shard)
    if not paths.urls.exists():
        raise UsageError(f"no shard {shard} in {directory}: no {paths.urls}")
    work_dir_ready(paths.directory / STATE)
    with _owning(paths, on_wait):
        if paths.status.exists() and not _updating(options):
            return _read_state(paths.status)
        return asyncio.run(_run_shard(paths, dict(options or {})))


def _updating(options: Mapping[str, Any] | None) -> bool:
    """`--if-exists update` asks again about every file, so a shard done before runs again
    (a conditional GET per file; what did not change stays untouched)."""
    wanted = (options or {}).get("if_exists", IfExists.SKIP)
    return wanted in (IfExists.UPDATE, IfExists.UPDATE.value)


def _read_state(path: Path) -> dict[str, Any]:
    """A JSON state file of ours: never through a symlink, never waiting on a FIFO; one that is
    damaged (cut by a full disk, edited) is `LocalIOError` naming it, not a traceback."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("not a regular file")
            with os.fdopen(os.dup(fd), "rb") as file:
                record = json.loads(file.read(_STATE_LIMIT))
        finally:
            os.close(fd)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LocalIOError(f"{path} is damaged ({reason}): remove it to redo its part") from None
    return record


_STATE_LIMIT = 1 << 20  # bytes: a state file is a few hundred


@contextmanager
def _owning(paths: ShardPaths, on_wait: Callable[[], None] | None) -> Iterator[None]:
    """Hold the shard's lock file (`flock`; never removed, so every runner locks one file)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(paths.lock, flags, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def _run_shard(paths: ShardPaths, options: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"shard": paths.shard, "saved": 0, "skipped": 0, "failed": 0}
    summary["unchanged"] = 0
    summary.update(bytes=0, exit_status=0)
    source = await InputFile.open(paths.urls)
    settings = {**options, "directory": paths.files, "compute_sha256": True}
    temporary = paths.manifest.with_name(paths.manifest.name + ".tmp")
    lines: list[str] = []
    repeats: list[Result] = []  # a URL listed again: its row waits for the first one's file
    async with aiofiles.open(temporary, "w", encoding="utf-8", opener=_fresh) as manifest:
        async with Downloader(**settings) as downloader:
            async for result in downloader.iter_download(source.jobs()):
                _count(summary, result)
                if result.note == DUPLICATE:
                    repeats.append(result)
                    continue
                lines.append(json.dumps(await _record(result)) + "\n")
                if len(lines) >= _MANIFEST_BATCH:
                    await manifest.write("".join(lines))
                    lines.clear()
        lines += [json.dumps(await _record(result)) + "\n" for result in repeats]
        await manifest.write("".join(lines))
    await aiofiles.os.replace(temporary, paths.manifest)
    await asyncio.to_thread(_write_atomically, paths.status, json.dumps(summary))
    return summary


async def _record(result: Result) -> dict[str, Any]:
    """The manifest line; a file skipped as already there (or found unchanged) is measured
    and hashed from disk."""
    size, sha256 = result.size, result.sha256
    if result.outcome in _FOUND_THERE and result.path is not None:
        size, sha256 = await asyncio.to_thread(_measure, result.path)
    return {
        "url": redact_url(result.url),  # the README promises masked records, on disk too
        "path": None if result.path is None else str(result.path),
        "outcome": result.outcome.value,
        "bytes": size,
        "sha256": sha256,
        "last_modified": iso_time(result.last_modified),
        "error": None if result.error is None else redact_urls(str(result.error)),
    }


_FOUND_THERE = (Outcome.SKIPPED, Outcome.UNCHANGED)


def _count(summary: dict[str, Any], result: Result) -> None:
    summary[result.outcome.value] += 1
    summary["bytes"] += result.size
    summary["exit_status"] = int(
        combine_exit_statuses((summary["exit_status"], result.exit_status))
    )


def _measure(path: Path) -> tuple[int, str | None]:
    if not path.is_file():
        return 0, None
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", opener=_fresh) as file:
        file.write(text)
    os.replace(temporary, path)


_CREATE_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _fresh(path: str, flags: int = 0) -> int:
    """An `opener` for state files (`flags` ignored): a new file only we can read, created
    exclusively without following a symlink; what was at its name (a stale temporary, a
    symlink planted there) is removed first, never written through."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, _CREATE_PRIVATE, 0o600)


# The job, on Dask ----------------------------------------------------------------------------


def download(
    urls_or_input_file: Iterable[str] | str | os.PathLike[str],
    directory: str | os.PathLike[str],
    *,
    client: Any = None,
    address: str | None = None,
    shard_size: int = 10_000,
    max_shard_retries: int = 2,
    on_shard: Callable[[int, Report], None] | None = None,
    on_start: Callable[[Report], None] | None = None,
    **downloader_options: Any,
) -> Report:
    """Run the job on a Dask cluster: `client`, or one at `address` (`local:N` starts a
    LocalCluster of N worker processes here). Blocks until every shard is done or failed.

    `on_start(report)` once the input is planned (shards done by an earlier run counted),
    before the cluster is reached; `on_shard(shard, report)` as each shard ends, done or
    failed (`shard in report.shards_failed`)."""
    from distributed import as_completed

    target = Path(directory)
    report, pending = _planned(
        urls_or_input_file, target, shard_size, _updating(downloader_options)
    )
    if on_start is not None:
        on_start(report)
    with _connected(client, address) as dask:
        downloader_options = _shared_rate(downloader_options, dask)
        futures = {
            dask.submit(
                run_shard,
                str(target.resolve()),  # workers may run in another directory
                shard,
                downloader_options,
                key=f"aiowget-{target.resolve()}-{shard}",
                retries=max_shard_retries,
                pure=False,
            ): shard
            for shard in pending
        }
        for future in as_completed(futures):
            shard = futures.pop(future)
            if future.status == "finished":
                report.add(future.result())
            else:
                report.fail(shard, repr(future.exception()))
            future.release()  # a worker that dies later must not make Dask run it again
            if on_shard is not None:
                on_shard(shard, report)
    return report


def _planned(
    source: Iterable[str] | str | os.PathLike[str], target: Path, shard_size: int, updating: bool
) -> tuple[Report, list[int]]:
    """The report of the shards done already, and the shards left to run (all of them when
    `updating`)."""
    report = Report(shards=plan_shards(source, target, shard_size))
    urls = _read_state(target / STATE / "plan.json").get("urls")
    report.urls = urls if isinstance(urls, int) else None
    pending = []
    for shard in range(report.shards):
        status = ShardPaths(target, shard).status
        if status.exists() and not updating:
            report.add(_read_state(status))
        else:
            pending.append(shard)
    return report, pending


def _shared_rate(options: dict[str, Any], dask: Any) -> dict[str, Any]:
    """`limit_rate` is for the whole job: each of the shards that can run at once (one per
    worker thread) gets its share."""
    rate = options.get("limit_rate")
    if rate is None:
        return options
    slots = max(1, sum(dask.nthreads().values()))
    return {**options, "limit_rate": rate / slots}


@contextmanager
def _connected(client: Any, address: str | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    from distributed import Client

    if address is None or address.startswith("local:"):
        workers = int(address.partition(":")[2] or os.cpu_count() or 1) if address else None
        with _private_cluster(workers) as cluster, Client(cluster) as own:
            yield own
    else:
        with Client(address) as own:  # TLS, if any, from Dask's own configuration
            yield own


# Dask's scheduler and workers always start an HTTP server (dashboard, /info, /json, /metrics,
# unauthenticated): on 127.0.0.1:8787 when `dashboard_address` is None, on every interface with
# False or ":0". With no routes it serves nothing. Set while the cluster lives: a nanny starts
# its killed worker again with the configuration it saw.
_NO_HTTP: dict[str, list[str]] = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


@contextmanager
def _private_cluster(workers: int | None) -> Iterator[Any]:
    """A LocalCluster that only this process can reach: its scheduler, nannies and workers
    speak TLS with a certificate made for this run and kept in memory, so a client without it
    (any other local process) is refused before it can run code or read `--password`."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    with (
        dask.config.set(_NO_HTTP),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            security=Security.temporary(),
            dashboard_address="127.0.0.1:0",
        ) as cluster,
    ):
        yield cluster


def main(argv: list[str] | None = None) -> int:
    """`python -m aiowget.distributed run-shard OUT N`: one shard by hand (batch schedulers)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "run-shard" or not args[2].isdigit():
        print("usage: python -m aiowget.distributed run-shard OUT N", file=sys.stderr)
        return int(ExitStatus.USAGE)

    def waiting() -> None:
        print(
            f"aiowget: shard {args[2]} is being run by another process; waiting for it",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = run_shard(args[1], int(args[2]), on_wait=waiting)
    except AiowgetError as error:  # no such shard (2), a state folder refused (3)
        print(f"aiowget: {error}", file=sys.stderr)
        return int(error.exit_status)
    print(json.dumps(summary))
    return int(summary["exit_status"])


if __name__ == "__main__":
    sys.exit(main())

"""One URL: request it, stream the body into a sink, verify, retry and resume, rename.

A file under its final name is always whole: the body goes to `NAME.part` and is renamed only
once its length (and checksum, when one was given) checked out. Transient failures are retried
with backoff, and a retry asks only for the bytes still missing. On a failure that may be
resumed, or on cancellation, the `.part` and its sidecar stay for the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, ClassVar
from urllib.parse import urlsplit

import aiohttp

from . import naming
from .errors import (
    AiowgetError,
    ChecksumError,
    ContentTooShortError,
    DownloadTimeoutError,
    FileTooLargeError,
    ProtocolError,
    UsageError,
    map_errors,
)
from .models import (
    Checksum,
    Event,
    Exchange,
    Finished,
    HttpHead,
    IfExists,
    Job,
    Naming,
    Note,
    Notice,
    Options,
    Outcome,
    PartState,
    Progress,
    Result,
    Retrying,
    Stamp,
    Started,
)
from .policy import (
    Action,
    Hop,
    HostWindow,
    SpeedFloor,
    basic_authorization,
    can_resume,
    check_complete,
    check_url,
    conditional_headers,
    etag_to_keep,
    expected_length,
    file_mtime,
    first_hop,
    format_rate,
    is_redirect,
    is_retryable,
    is_unchanged,
    judge,
    next_hop,
    origin,
    parse_content_range,
    parse_http_date,
    plan_segments,
    resume_headers,
    retry_delay,
    splittable,
    validator_of,
    without_credentials,
)
from .segments import FileChanged, fetch_segments
from .storage import (
    Disk,
    Found,
    PartFile,
    Sink,
    StreamSink,
    exists,
    make_folders,
    uninterrupted,
)

__all__ = [
    "Context",
    "HeaderDeadline",
    "WatchedRequest",
    "note",
    "request_timeouts",
    "transfer",
]

# Network chunks are gathered into writes of about this size: every aiofiles call is a hop to
# a worker thread, and small writes cost more in hops than in bytes (NOTES-aiohttp.md).
WRITE_SIZE = 1 << 20
# Below this, hashing in the event loop is cheaper than a hop to a thread.
_HASH_INLINE = 1 << 16
PROGRESS_INTERVAL = 0.2
# How often a transfer that found its `.part` locked by another looks again.
LOCK_POLL = 0.25
# The outcomes whose result says which version the file holds.
_VERSIONED = (Outcome.SAVED, Outcome.UNCHANGED)
# Result notes that other parts read (the Dask manifest, a list's repeats).
DUPLICATE = "duplicate URL, fetched once"
RENAMED = "saved under a new name:"
_LIMITED_READ = 1 << 16
# aiohttp rounds timeouts of this many seconds or more up to a whole second: never.
_NEVER_ROUNDED = float("inf")
# A timer may ring this much before its time (the loop's clock resolution and rounding).
_EARLY = 0.001
# The window of --lowest-speed when -T is infinite.
_LOWEST_SPEED_WINDOW = 60.0


@dataclass(frozen=True)
class Context:
    """What every transfer of one `Downloader` shares."""

    session: aiohttp.ClientSession
    options: Options
    names: naming.NameRegistry
    # `jobs` transfers at once, whichever way they came in (lists, single calls, streams).
    job_slot: asyncio.Semaphore
    host_slot: Callable[[str], AbstractAsyncContextManager[None]]
    # Makes the target directory (once); True when it held nothing then.
    directory_ready: Callable[[], Awaitable[bool]]
    emit: Callable[[Event], Awaitable[None]]
    # The window of an origin in use (to count the bytes that arrive), or None.
    host_window: Callable[[str], HostWindow | None] = lambda key: None
    # Gives back the origin room a list's job was handed with, before the job waits for
    # something else (its twin, a `jobs` slot): holding it there could deadlock.
    release_room: Callable[[], None] = lambda: None
    # A request to the first origin was redirected to the second: a list's next jobs of the
    # first wait for room in the second too (no worker waits on a paused redirect target).
    redirected: Callable[[str, str], None] = lambda here, there: None
    throttle: Callable[[int], Awaitable[None]] | None = None
    ssl: ssl.SSLContext | bool = True
    proxy_for: Callable[[str], str | None] = lambda url: None
    # The directories whose working folder was used: removed at the end if left empty.
    work_dirs: set[Path] = field(default_factory=set)
    # Those whose working folder was found to be ours (not a symlink, not another user's).
    checked_dirs: set[Path] = field(default_factory=set)
    # The calls under way, by (URL, target): a twin call awaits the first one's result.
    inflight: dict[tuple[str, str], asyncio.Future[Result]] = field(default_factory=dict)
    # aiohttp's timeouts of every request (`request_timeouts`).
    timeouts: aiohttp.ClientTimeout = field(default_factory=aiohttp.ClientTimeout)
    # The working folder of `options.directory` (`DIR/.aiowget`).
    work_dir: Path | None = None
    # Small disk work: inline while the filesystem answers fast.
    disk: Disk = field(default_factory=Disk)
    # Names given by exact paths (`path=`) in the directory: never taken for fresh ones.
    exact_names: set[str] = field(default_factory=set)
    # By (list, URL, target): results a repeat in that list must echo (failures, renames).
    remembered: dict[int, dict[tuple[str, str], Result]] = field(default_factory=dict)


async def transfer(
    job: Job,
    ctx: Context,
    stream: IO[bytes] | None = None,
    *,
    batch: int = 0,
    reserved: Reserved | None = None,
) -> Result:
    """Fetch one job and report it; never raises for the URL's own failures.

    A job whose twin (same URL, same target) is being fetched by another call of this
    Downloader awaits that call and reports its outcome (and error) as a duplicate; once the
    twin is done, a new call fetches again, as asked. Within one list (`batch` > 0), a URL
    met again is fetched once."""
    if stream is not None:
        async with ctx.job_slot:
            return await _transfer(job, ctx, stream, batch, None)
    key = _twin_key(job)
    while (running := ctx.inflight.get(key)) is not None:
        ctx.release_room()  # the twin may need its origin's room: never wait holding it
        await asyncio.wait({running})  # never raises for the twin's own cancellation
        if not running.cancelled():
            return await _duplicate(job, ctx, running.result())
    ctx.inflight[key] = twin = asyncio.get_running_loop().create_future()
    try:
        if ctx.job_slot.locked():  # another call holds it, maybe waiting for this origin
            ctx.release_room()
        async with ctx.job_slot:  # twins wait above, holding no slot
            result = await _transfer(job, ctx, None, batch, reserved)
        twin.set_result(result)
        if batch and (not result.ok or result.note.startswith(RENAMED)):
            # What a repeat later in the list must report, beyond "saved under its name":
            # a failure (and its error), or a file kept under another name. Few, so kept.
            ctx.remembered.setdefault(batch, {})[key] = result
        return result
    finally:
        del ctx.inflight[key]
        if not twin.done():
            twin.cancel()  # the twins waiting run on their own


def request_timeouts(options: Options) -> aiohttp.ClientTimeout:
    """No total timeout: a long but steady transfer must never be cut (aiohttp #2249)."""
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=options.connect_timeout,
        sock_read=options.timeout,
        ceil_threshold=_NEVER_ROUNDED,  # `--connect-timeout 7` means 7, not up to 8
    )


async def note(ctx: Context, message: str) -> None:
    """A line for `-v` (a `Note` event), from any part of the engine; nothing at all when
    `verbose` is off (build an expensive `message` only under `ctx.options.verbose`)."""
    if ctx.options.verbose:
        await ctx.emit(Note(message))


class _AlreadyThere(BaseException):
    """A deferred `.part` found its final file saved by another run: skipped, after all.
    (Not an Exception: it must pass `map_errors` and the retries untouched.)"""


class _Unchanged(BaseException):
    """`--if-exists update`: the server answered 304, the file under its name is current.
    (Not an Exception, for the same reason as `_AlreadyThere`.)"""


def _inside(path: Path, directory: Path) -> bool:
    """Whether `path` is to be saved in `directory` or below, however either is spelled."""
    return Path(os.path.abspath(path)).parent.is_relative_to(os.path.abspath(directory))


def _twin_key(job: Job) -> tuple[str, str]:
    """(URL, target): the same URL to the same place, however the place is spelled."""
    target = os.path.abspath(job.path) if job.path is not None else job.name or ""
    return job.url, target


async def _duplicate(job: Job, ctx: Context, first: Result) -> Result:
    result = Result(
        url=job.url,
        path=first.path,
        outcome=Outcome.SKIPPED if first.ok else Outcome.FAILED,
        error=first.error,
        status=first.status,
        note=DUPLICATE,
        sha256=first.sha256,
    )
    await ctx.emit(Finished(result))
    return result


async def _transfer(
    job: Job, ctx: Context, stream: IO[bytes] | None, batch: int, reserved: Reserved | None
) -> Result:
    attempt = _Transfer(job, ctx, batch, reserved)
    started = time.monotonic()
    try:
        with map_errors():
            outcome = await attempt.run(stream)
        result = attempt.result(outcome, started)
    except AiowgetError as error:
        result = attempt.result(Outcome.FAILED, started, error)
    await ctx.emit(Finished(result))
    return result


Reserved = tuple[str, bool, bool]
"""A name claimed ahead of the transfer: (name, a repeat in the list, new to the run)."""


def reserve_name(job: Job, ctx: Context, batch: int) -> Reserved | None:
    """Claim the name of a list's job as it is read, before it is scheduled: jobs may then
    run out of order (another origin's turn), yet names are claimed in input order. None
    when the name is not known yet (an exact path, the server's name, a bad URL)."""
    if job.path is not None or job.problem is not None or _named_by_server(job, ctx.options):
        return None
    try:
        check_url(job.url)
    except AiowgetError:
        return None
    return _claim_name(ctx, _name_of(job, ctx.options), job.url, batch)


def _named_by_server(job: Job, options: Options) -> bool:
    return job.path is None and job.name is None and options.content_disposition


def _name_of(job: Job, options: Options) -> str | tuple[str, ...]:
    """A name in the directory, or (`--naming tree`) the components of a path below it."""
    if job.name is not None:
        return job.name
    if options.naming is Naming.BASENAME:
        return naming.basename_name(job.url)
    if options.naming is Naming.TREE:
        return naming.tree_parts(job.url)
    return naming.flat_name(job.url)


def _claim_name(ctx: Context, name: str | tuple[str, ...], url: str, batch: int) -> Reserved:
    """The registry's name (a relative path in a tree), whether a duplicate, and whether new."""
    if isinstance(name, str):
        claimed, duplicate = ctx.names.claim(name, url, batch)
    else:
        claimed, duplicate = naming.claim_tree(ctx.names, name, url, batch)
    return claimed, duplicate, ctx.names.last_new


class _Transfer:
    def __init__(
        self, job: Job, ctx: Context, batch: int = 0, reserved: Reserved | None = None
    ) -> None:
        self.job = job
        self.ctx = ctx
        self.batch = batch
        self.reserved = reserved
        self.options = ctx.options
        self.path: Path | None = job.path
        self.folder: Path | None = None  # the path's directory, once chosen
        self.host: HostWindow | None = None  # its origin's window, to count bytes in
        self.status: int | None = None
        self.size = 0
        self.note = ""
        self.attempts = 0  # requests made
        self.failures = 0  # of them, failed: at most `retries` are retried
        self.announced = False
        self.may_split = True
        self.sink: PartFile | None = None  # set with the path, by one look at the disk
        self.tree_folder = ""  # --naming tree: the file's folder, relative, ending in "/"
        wanted = job.checksum is not None or self.options.compute_sha256
        self.digest = _Digest(job.checksum, self.options.compute_sha256) if wanted else None
        self.progress_at = 0.0
        self.said: set[str] = set()  # notices given once per transfer
        self.floor: SpeedFloor | None = None  # --lowest-speed, from the first body of a try
        self.flow = 0  # bytes that arrived, for the floor
        self.held = 0.0  # seconds spent waiting on our own --limit-rate
        self.holding_since: float | None = None
        # The version being saved: its Last-Modified (reported), and the mtime and ETag its
        # file gets at the rename.
        self.last_modified: datetime | None = None
        self.stamp: Stamp | None = None
        # `--if-exists update`: the version the file already there holds, to ask by.
        self.compare: Stamp | None = None

    def result(self, outcome: Outcome, started: float, error: AiowgetError | None = None) -> Result:
        return Result(
            url=self.job.url,
            path=self.path,
            outcome=outcome,
            error=error,
            size=self.size,
            status=self.status,
            elapsed=time.monotonic() - started,
            note=self.note,
            attempts=self.attempts,
            sha256=self.digest.hexdigest("sha256")
            if self.digest and outcome is Outcome.SAVED
            else None,
            last_modified=self.last_modified if outcome in _VERSIONED else None,
        )

    async def run(self, stream: IO[bytes] | None) -> Outcome:
        if self.job.problem is not None:
            raise self.job.problem
        url = check_url(self.job.url)
        if stream is not None:
            await self._fetch(url, StreamSink(stream))
            return Outcome.SAVED
        if _named_by_server(self.job, self.options):
            # The name comes with the response: ask once, then carry on as usual.
            return await self._fetch_named_by_server(url)
        if not await self._choose_path(_name_of(self.job, self.options)):
            return Outcome.SKIPPED
        return await self._fetch_to_file(url)

    # Naming ----------------------------------------------------------------------------

    async def _fetch_named_by_server(self, url: str) -> Outcome:
        while True:  # this first request is retried as any other (a 503, a reset)
            try:
                with map_errors():
                    header = await self._disposition(url)
                break
            except AiowgetError as error:
                await self.retry_or_raise(error)
        # Claimed with no slot or response held: it may wait for another transfer of the file.
        suggested = naming.disposition_name(header) if header else None
        name = _name_of(self.job, self.options)
        if suggested is not None:  # in a tree, the server names the file, not its folder
            name = (*name[:-1], suggested) if isinstance(name, tuple) else suggested
        if not await self._choose_path(name):
            return Outcome.SKIPPED
        # The response is not reused: the .part an earlier run left may be resumed instead.
        return await self._fetch_to_file(url)

    async def _disposition(self, url: str) -> str | None:
        async with self._get(url, {}) as response:
            self._check(response, 0, None, {})
            return response.headers.get("Content-Disposition")

    async def _choose_exact_path(self, path: Path) -> bool:
        if path.name == naming.WORK_DIR:
            raise UsageError(f"{path}: {naming.WORK_DIR} is aiowget's working folder")
        if _inside(path, self.options.directory):
            await self.ctx.directory_ready()  # made on demand, for paths inside it too
            self.ctx.exact_names.add(path.name)
        return await self._claim(path)

    async def _choose_path(self, name: str | tuple[str, ...]) -> bool:
        """Set `self.path` (and claim its `.part`) for `name`; False when skipped."""
        if self.job.path is not None:
            return await self._choose_exact_path(self.job.path)
        # Claimed in input order (as a list is read, `reserve_name`, or here before anything
        # is awaited), so the first URL of the list gets a name plainly, in every run (a
        # rerun finds the same files).
        if self.reserved is None:
            self.reserved = _claim_name(self.ctx, name, self.job.url, self.batch)
        claimed, duplicate, new = self.reserved
        if isinstance(name, tuple):
            self.tree_folder = claimed.rpartition("/")[0] + "/"
        new = new and claimed not in self.ctx.exact_names
        fresh = await self.ctx.directory_ready()
        if duplicate:  # met before in this very list, and done: fetched once
            first = self.ctx.remembered.get(self.batch, {}).get(_twin_key(self.job))
            self.path = self.options.directory / claimed if first is None else first.path
            self.note = DUPLICATE
            if first is not None and first.error is not None:
                raise first.error
            return False
        directory = self.options.directory
        path = directory / claimed
        if isinstance(name, tuple):  # a tree: its folders first, then the usual claim
            await self._run_disk(make_folders, directory, self.tree_folder.split("/")[:-1])
            return await self._claim(path)
        if fresh and new and self.options.if_exists is not IfExists.RENAME:
            # The directory held nothing when the run began, and no call of this run used this
            # name yet (nor an exact path): nothing to skip or resume, so no look at the disk
            # now; the .part is claimed when it is first written.
            self.path, self.folder = path, directory
            self.ctx.work_dirs.add(directory)
            self.sink = PartFile.deferred(
                path,
                skip_if_there=self.options.if_exists is IfExists.SKIP,
                checked=directory in self.ctx.checked_dirs,
                durable=self.options.fsync,
                disk=self.ctx.disk,
                work=self.ctx.work_dir,
            )
            return True
        return await self._claim(path)

    async def _own(self, sink: Sink) -> None:
        """Claim a deferred `.part` before its first write (other than a whole small body,
        which `write_whole` claims itself), waiting while another transfer holds it;
        `_AlreadyThere` when the final file appeared meanwhile (another run saved it)."""
        if not isinstance(sink, PartFile):
            return
        while (found := await sink.claim_now()) is not None:
            await self._stand_aside(found)
        self._checked()

    async def _run_disk(self, function: Callable[..., object], *args: object) -> None:
        """Small disk work, run to its end (inline while the disk is fast: `Disk`)."""
        _, cancelled = await self.ctx.disk.run(function, *args)
        if cancelled:
            raise asyncio.CancelledError

    def _checked(self) -> None:
        """The working folder beside the file was found to be ours: not looked at again."""
        assert self.folder is not None
        self.ctx.checked_dirs.add(self.folder)

    async def _stand_aside(self, found: Found) -> None:
        if found is Found.THERE:
            raise _AlreadyThere
        assert self.path is not None
        await self._say_once(f"{self.path} is being fetched by another transfer; waiting for it")
        await asyncio.sleep(LOCK_POLL)

    async def _claim(self, wanted: Path) -> bool:
        """Lock the `.part` of `wanted` (or of its numbered name, with `--if-exists rename`),
        waiting while another transfer holds it; False when the final file is to be skipped."""
        if_exists = self.options.if_exists
        while True:
            path = wanted
            if if_exists is IfExists.RENAME and await exists(path):
                path = await self._numbered_path(wanted)
                self.note = f"{RENAMED} {wanted.name} was there"
            self.path, self.folder = path, path.parent
            self.ctx.work_dirs.add(self.folder)  # an empty working folder is removed at the end
            found = await PartFile.claim(
                path,
                self.job.url,
                resume=self.options.continue_partial,
                skip_if_there=if_exists is IfExists.SKIP,
                checked=self.folder in self.ctx.checked_dirs,
                durable=self.options.fsync,
                disk=self.ctx.disk,
                compare=if_exists is IfExists.UPDATE,
            )
            if isinstance(found, PartFile):
                self._checked()
                self.compare = found.current
            if found is Found.THERE:
                self.note = "already there"
                return False
            if found is Found.BUSY:
                await self._say_once(f"{path} is being fetched by another transfer; waiting for it")
                await asyncio.sleep(LOCK_POLL)
                continue
            if if_exists is IfExists.RENAME and found.there:  # taken while we looked
                await found.release(keep=False)
                continue
            self.sink = found
            return True

    async def _numbered_path(self, wanted: Path) -> Path:
        for candidate in naming.numbered_names(wanted.name):
            if self.job.path is None:  # names in the directory are unique within the run
                url, batch, folder = self.job.url, self.batch, self.tree_folder
                claimed, _ = self.ctx.names.claim(candidate, url, batch, folder)
                if claimed != candidate:
                    continue
            path = wanted.with_name(candidate)
            if not await exists(path):
                return path
        raise AssertionError("unreachable")  # pragma: no cover

    # Fetching --------------------------------------------------------------------------

    async def _fetch_to_file(self, url: str) -> Outcome:
        # _claim locked this very path's .part, and kept what it found (or deferred it).
        assert self.sink is not None
        assert self.sink.path == self.path
        try:
            await self._fetch(url, self.sink)
        except _AlreadyThere:  # another run saved it while this one asked for it
            self.note, self.size = "already there", 0
            return Outcome.SKIPPED
        except _Unchanged:
            self.note, self.size = "not modified on the server", 0
            return Outcome.UNCHANGED
        return Outcome.SAVED

    async def _fetch(self, url: str, sink: Sink) -> None:
        try:
            await self._attempts(url, sink)
        except BaseException as error:
            unwanted = isinstance(error, ChecksumError | FileTooLargeError)
            resumable = not unwanted and can_resume(sink.offset, sink.state)
            await sink.release(keep=resumable)
            raise
        await sink.commit(self.stamp)

    async def _attempts(self, url: str, sink: Sink) -> None:
        while True:
            try:
                with map_errors():
                    while await self._attempt(url, sink):
                        pass
                return
            except AiowgetError as error:
                await self.retry_or_raise(error)

    async def retry_or_raise(self, error: AiowgetError) -> None:
        """One retry budget per transfer, whole-file requests and segments alike: raise
        `error` when it is not transient or the budget is spent, else wait before the retry."""
        self.failures += 1
        self.floor = None  # a retry's speed is judged on its own bytes
        if self.failures > self.options.retries or not is_retryable(error):
            raise error
        await self._pause(self.failures - 1, error)

    async def _pause(self, attempt: int, error: AiowgetError) -> None:
        options = self.options
        delay = retry_delay(
            error,
            attempt,
            base=options.retry_wait,
            cap=options.retry_wait_max,
            after_cap=options.retry_after_max,
            draw=random.random(),
        )
        await self.ctx.emit(Retrying(self.job.url, attempt + 1, options.retries, delay, error))
        await asyncio.sleep(delay)

    async def _attempt(self, url: str, sink: Sink) -> bool:
        """One request; True when it must be asked again without Range right away."""
        if isinstance(sink, PartFile) and sink.state is not None and sink.state.segments:
            return await self._split(url, sink, sink.state, fresh=False)
        headers = resume_headers(sink.offset, sink.state)
        if sink.offset and not headers:
            await self._say_once(
                "no strong validator (ETag or Last-Modified) to resume with; "
                "fetching from the first byte"
            )
        offset = sink.offset if headers else 0
        if not headers and self.compare is not None:
            # `--if-exists update`, and no .part to resume: ask whether the file changed.
            headers = await self._conditions(self.compare)
        plan: PartState | None = None
        async with self._get(url, headers) as response:
            action = self._check(response, offset, sink.state, headers)
            if action is Action.RESTART:
                await sink.restart()
                return True
            if action is Action.FROM_ZERO and isinstance(sink, PartFile) and self.may_split:
                plan = self._plan_split(response)
            if plan is None and action not in (Action.COMPLETE, Action.UNCHANGED):
                await self._receive(response, sink, action)
        if action is Action.UNCHANGED:  # raised out of the slot: a 304 is a request done well
            raise _Unchanged
        if plan is not None:  # the first response is dropped unread: the segments take over
            assert isinstance(sink, PartFile)
            return await self._split(url, sink, plan, fresh=True)
        await self._verify(sink)
        return False

    async def _conditions(self, current: Stamp) -> dict[str, str]:
        headers = conditional_headers(current, datetime.now(timezone.utc))
        if not headers:
            await self._say_once(
                "no ETag or usable modification time to compare with; fetching it again"
            )
        return headers

    def note_version(self, headers: Mapping[str, str]) -> None:
        """The response accepted is of the version to save: its Last-Modified is reported,
        and its file gets that mtime (unless `--no-server-timestamps`) and its ETag."""
        when = parse_http_date(headers.get("Last-Modified"))
        now = datetime.now(timezone.utc)
        mtime = file_mtime(when, now) if self.options.server_timestamps else None
        self.last_modified = when
        self.stamp = Stamp(mtime, etag_to_keep(headers.get("ETag")))

    async def _say_once(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            await self.ctx.emit(Notice(self.job.url, message))

    def _plan_split(self, response: aiohttp.ClientResponse) -> PartState | None:
        total, split = _total(response), self.options.split
        if total is None or not splittable(split, response.headers, total):
            return None
        segments = plan_segments(total, split)
        return PartState(self.job.url, validator_of(response.headers), total, segments)

    async def _split(self, url: str, sink: PartFile, state: PartState, fresh: bool) -> bool:
        self._check_size(state.total)
        await self._own(sink)
        await sink.begin_split(state, fresh)
        await self._announce(state.total)
        try:
            await fetch_segments(self, url, sink, state, workers=self.options.split)
        except FileChanged:
            # Ranges cannot be trusted here: start over in one piece, and stay in one piece.
            self.may_split = False
            await sink.restart()
            return True
        size = await sink.size()
        if size != state.total:
            raise ProtocolError(f"split download holds {size} bytes, expected {state.total}")
        if self.digest is not None:
            self.digest.restart()  # segments arrive out of order: hash the whole file once
        await self._verify(sink)
        return False

    # What the segments of a split download need (segments.SegmentOwner).

    def request(
        self, url: str, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._get(url, headers)

    def slot(self, url: str) -> AbstractAsyncContextManager[None]:
        key = origin(url)
        slot = self.ctx.host_slot(key)
        self.host = self.ctx.host_window(key)  # made on the first slot of its origin
        return slot

    async def report(self, received: int, total: int | None) -> None:
        """Progress, a few times a second."""
        now = time.monotonic()
        if now - self.progress_at >= PROGRESS_INTERVAL:
            self.progress_at = now
            await self.ctx.emit(Progress(self.job.url, received, total))

    async def pace(self, arrived: int) -> None:
        """Hold to the rate limit; count what arrived for `--lowest-speed`."""
        if self.ctx.throttle is not None:
            self.holding_since = time.monotonic()
            try:
                await self.ctx.throttle(arrived)
            finally:
                self.held += time.monotonic() - self.holding_since
                self.holding_since = None
        self.flow += arrived
        if self.host is not None:
            self.host.arrived(arrived)

    def floor_clock(self) -> float:
        """Seconds that count for `--lowest-speed`: not those spent waiting on our own
        `--limit-rate` (the server is not slow while we hold it back)."""
        now = time.monotonic()
        holding = now - self.holding_since if self.holding_since is not None else 0.0
        return now - self.held - holding

    @asynccontextmanager
    async def speed_watch(self) -> AsyncIterator[None]:
        """While a body is read: below `--lowest-speed` over the last `-T` seconds is a
        timeout. Checked by a timer, not by arriving bytes: a server that sends none at all
        (a chunk header trickled, silence under `-T inf`) is caught too."""
        rate = self.options.lowest_speed
        if rate is None:
            yield
            return
        window = self.options.timeout or _LOWEST_SPEED_WINDOW
        if self.floor is None:
            self.floor = SpeedFloor.starting(rate, window, self.floor_clock(), self.flow)
        floor = self.floor
        reason = f"slower than the lowest speed ({format_rate(rate)}) for {window:g} s"

        def check() -> str | None:
            if not floor.too_slow(self.flow, self.floor_clock()):
                return None
            self.floor = None  # the retry gets a window of its own
            return reason

        async with Watchdog() as watchdog:
            watchdog.every(window / 8, check)
            yield

    def _check(
        self,
        response: aiohttp.ClientResponse,
        offset: int,
        state: PartState | None,
        sent: Mapping[str, str],
    ) -> Action:
        self.status = response.status
        headers = response.headers
        if is_unchanged(response.status, sent):
            self.last_modified = parse_http_date(headers.get("Last-Modified"))
            return Action.UNCHANGED
        now = datetime.now(timezone.utc)
        action = judge(response.status, response.reason or "", headers, offset, state, now)
        if action is not Action.COMPLETE:  # a 416's headers say nothing of the version
            self.note_version(headers)
        return action

    async def _receive(self, response: aiohttp.ClientResponse, sink: Sink, action: Action) -> None:
        from_zero = action is Action.FROM_ZERO
        state = sink.state
        if from_zero or state is None:
            state = PartState(self.job.url, validator_of(response.headers), _total(response))
        elif state.total is None:  # the 206 says how long the file is: hold the body to it
            state = replace(state, total=_total(response))
        self._check_size(state.total)
        small = state.total is not None and state.total <= WRITE_SIZE
        if from_zero and small and isinstance(sink, PartFile) and self.ctx.throttle is None:
            await self._receive_small(response, sink, state.total)
            return
        await self._own(sink)
        await sink.begin(state, from_zero)
        if self.digest is not None:
            await self.digest.catch_up(sink, from_zero)
        await self._announce(state.total)
        async with self.speed_watch():
            await self._copy(response.content, sink, state.total)

    async def _receive_small(
        self, response: aiohttp.ClientResponse, sink: PartFile, total: int | None
    ) -> None:
        """A body of at most one write: read it whole, verify it, then one hop to disk."""
        await self._announce(total)
        try:
            data: bytes | bytearray
            if self.options.lowest_speed is None:
                data = await response.content.read()
            else:  # chunk by chunk, for the speed floor (a tarpit has a small body too)
                data = bytearray()
                async with self.speed_watch():
                    async for chunk in response.content.iter_any():
                        data += chunk
                        await self.pace(len(chunk))
        except aiohttp.ClientPayloadError:
            raise ContentTooShortError(None, total) from None
        check_complete(len(data), total)
        if self.host is not None:
            self.host.arrived(len(data))
        if self.digest is not None:
            self.digest.catch_up_now(data)
            self.digest.verify()
        validator = sink.state.validator if sink.state is not None else None
        state = PartState(self.job.url, validator, len(data))
        while (found := await sink.write_whole(data, state, self.stamp)) is not None:
            await self._stand_aside(found)
        self._checked()
        self.size = len(data)

    async def _announce(self, total: int | None) -> None:
        if not self.announced:
            self.announced = True
            await self.ctx.emit(Started(self.job.url, self.path, total))

    async def _copy(self, body: aiohttp.StreamReader, sink: Sink, total: int | None) -> None:
        buffer = bytearray()
        # Under a rate limit, small reads keep what is consumed close to what was paid for.
        chunks = body.iter_chunked(_LIMITED_READ) if self.ctx.throttle else body.iter_any()
        try:
            async for chunk in chunks:
                buffer += chunk
                self._check_size(sink.offset + len(buffer))
                await self.report(sink.offset + len(buffer), total)
                await self.pace(len(chunk))
                if len(buffer) >= WRITE_SIZE:
                    # Handed over before the write: a write cut short by a cancellation still
                    # completes and is counted, so what is flushed below is only what is left.
                    data, buffer = buffer, bytearray()
                    await self._flush(sink, data)
        except BaseException as error:
            # Keep what arrived, so that the retry (or the next run) asks only for the rest.
            with suppress(Exception):
                await self._flush(sink, buffer)
            if isinstance(error, aiohttp.ClientPayloadError):
                raise ContentTooShortError(sink.offset, total) from None
            raise
        await self._flush(sink, buffer)

    def _check_size(self, size: int | None) -> None:
        """`--max-filesize`, on the announced length and on the bytes that really came."""
        limit = self.options.max_filesize
        if limit is not None and size is not None and size > limit:
            raise FileTooLargeError(f"larger than the limit of {limit} bytes ({size} bytes)")

    async def _flush(self, sink: Sink, data: bytearray) -> None:
        if not data:
            return
        if self.digest is None:
            await sink.write(data)
        else:
            await asyncio.gather(sink.write(data), self.digest.update(data))
        self.size = sink.offset

    async def _verify(self, sink: Sink) -> None:
        self.size = sink.offset
        check_complete(sink.offset, sink.state.total if sink.state is not None else None)
        if self.digest is not None:
            await self.digest.catch_up(sink, from_zero=False)
            self.digest.verify()

    def _headers(self, url: str, extra: dict[str, str], hop: Hop) -> dict[str, str]:
        options = self.options
        given = options.headers if hop.trusted else without_credentials(options.headers)
        headers = {"User-Agent": options.user_agent, **given, **extra}
        # Credentials in the URL win: aiohttp sends them itself, and refuses both at once.
        if hop.trusted and urlsplit(url).username is None:
            if hop.credentials is not None:
                headers["Authorization"] = basic_authorization(*hop.credentials)
            elif options.auth is not None:
                headers["Authorization"] = basic_authorization(*options.auth)
        # Bodies are stored exactly as served: no transparent decompression (NOTES-aiohttp.md).
        headers["Accept-Encoding"] = "identity"
        return headers

    @asynccontextmanager
    async def _get(self, url: str, extra: dict[str, str]) -> AsyncIterator[aiohttp.ClientResponse]:
        """One GET, redirects followed here, hop by hop: each hop chooses its own proxy, and
        credentials (the URL's, `auth`, `-H Authorization/Cookie`) go to the first origin only,
        never again once a redirect has left it. Each origin of the chain is asked within its
        own per-host slot (its window, its pause): a redirect to another origin gives back
        the first one's and waits for room in the next; the body comes within the last's."""
        self.attempts += 1
        hop, left, spent = first_hop(url), self.options.max_redirects + 1, 0.0
        while True:
            async with self.slot(hop.url):
                response, hop, left, spent = await self._follow(hop, extra, left, spent)
                if response is not None:
                    try:
                        yield response
                    finally:
                        response.release()
                    return

    async def _follow(
        self, hop: Hop, extra: dict[str, str], left: int, spent: float
    ) -> tuple[aiohttp.ClientResponse | None, Hop, int, float]:
        """The final response of the redirect chain from `hop`, or None with the first hop to
        another origin; how many requests the chain may still make, and the seconds its
        heads took so far. The status lines and headers of the whole chain must come within
        `-T` (one deadline, carried across origins, less the waits for their slots)."""
        options = self.options
        loop = asyncio.get_running_loop()
        began = loop.time()
        seconds = None if options.timeout is None else max(options.timeout - spent, _EARLY)
        async with HeaderDeadline(seconds, options.connect_timeout) as deadline:
            while left > 0:
                left -= 1
                response = await self._send(hop, extra, deadline)
                redirect = is_redirect(response.status)
                location = response.headers.get("Location") if redirect else None
                if location is None:
                    return response, hop, left, spent
                response.release()
                target = next_hop(hop, location)
                there, here = origin(target.url), origin(hop.url)  # (`Hop.origin`: the first)
                if there != here and left > 0:
                    self.ctx.redirected(here, there)
                    return None, target, left, spent + loop.time() - began
                hop = target
        raise ProtocolError(f"too many redirects (more than {options.max_redirects})")

    async def _send(
        self, hop: Hop, extra: dict[str, str], deadline: HeaderDeadline
    ) -> aiohttp.ClientResponse:
        while True:
            deadline.reused = False
            # Chosen here, so that without `verbose` a request costs one flag test more.
            request = self._logged if self.options.verbose else self._request
            try:
                return await request(hop, extra, deadline)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A keep-alive connection the server had closed meanwhile (it need not say
                # `Connection: close`), or that it closed on reading the request: sent again
                # on another connection, counted in `attempts` but not against -t (aiowget's
                # session makes no hidden retry of its own; a fresh connection that fails is
                # a real failure).
                if not deadline.reused:
                    raise
                self.attempts += 1

    async def _logged(
        self, hop: Hop, extra: dict[str, str], deadline: HeaderDeadline
    ) -> aiohttp.ClientResponse:
        """`_request`, told as an `Exchange`: also when no answer came, so that a retry is
        seen to follow a request (a header timeout cancels us: told before it is raised)."""
        deadline.sent_head = None
        deadline.tracing = True
        try:
            response = await self._request(hop, extra, deadline)
        except BaseException as error:
            # It went out and nothing came back; a cancellation is told only when it is the
            # header deadline's (Ctrl-C, a caller's cancel: nothing more is awaited).
            told = isinstance(error, Exception) or deadline.fired
            if deadline.sent_head is not None and told:
                await self._exchange(hop.url, deadline.sent_head, None)
            raise
        # A caller's session has no `WatchedRequest`: what aiohttp kept of the request.
        sent = deadline.sent_head or _head_of_request(response)
        await self._exchange(hop.url, sent, _head_of_response(response))
        return response

    async def _exchange(self, target: str, sent: HttpHead, got: HttpHead | None) -> None:
        await self.ctx.emit(Exchange(self.job.url, target, self.attempts, sent, got))

    async def _request(
        self, hop: Hop, extra: dict[str, str], deadline: HeaderDeadline
    ) -> aiohttp.ClientResponse:
        sending = _sending.set(deadline)  # told by aiowget's session: sent, connection reused
        try:
            return await self.ctx.session.get(
                # A pasted space is %20 everywhere, as wget and browsers send it (yarl would make
                # it `+` in a query); non-ASCII is percent-encoded as UTF-8 by yarl.
                hop.url.replace(" ", "%20"),
                headers=self._headers(hop.url, extra, hop),
                proxy=self.ctx.proxy_for(hop.url),
                ssl=self.ctx.ssl,
                allow_redirects=False,
                auto_decompress=False,
                raise_for_status=False,  # statuses are aiowget's, whatever the session says
                timeout=self.ctx.timeouts,
            )
        finally:
            _sending.reset(sending)


class Watchdog:
    """Guards the task that enters it: `arm(seconds, reason)` sets a timer that cancels that
    task, and the cancellation leaves as `DownloadTimeoutError(reason)`; a cancellation from
    anywhere else stays one. (Written for Python 3.10 too: no `asyncio.timeout`.)"""

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reason: str | None = None

    async def __aenter__(self) -> Watchdog:
        self._task = asyncio.current_task()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.disarm()
        if self._reason is not None and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is None or uncancel() == 0:  # cancelled by us alone
                raise DownloadTimeoutError(self._reason) from None

    def arm(self, seconds: float, reason: str) -> None:
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.fire, reason)

    def every(self, seconds: float, check: Callable[[], str | None]) -> None:
        """Run `check` every `seconds`, and fire with the reason it returns, if any."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            reason = check()
            if reason is None:
                self._timer = loop.call_later(seconds, tick)
            else:
                self.fire(reason)

        self.disarm()
        self._timer = loop.call_later(seconds, tick)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def fired(self) -> bool:
        return self._reason is not None

    def fire(self, reason: str) -> None:
        if self._task is not None and self._reason is None:
            self._reason = reason
            self._task.cancel()


class HeaderDeadline(Watchdog):
    """The status lines and headers of a request (and its redirects) within `-T` seconds of
    the first request going out: a deadline, not a silence timer, so a server trickling its
    headers cannot hold a transfer. Until a request is sent (connecting, a proxy's CONNECT,
    TLS) it runs for the connect timeout plus `-T`; aiowget's own session says when the
    request went out (`WatchedRequest`), and it restarts then for `-T`."""

    def __init__(self, seconds: float | None, connect: float | None) -> None:
        super().__init__()
        self._seconds = seconds
        self._connect = connect or 0.0
        self._start = 0.0
        self._due: float | None = None  # once the first request went out: `-T` from then
        self.reused = False  # `WatchedRequest` says: this request went on a pooled connection
        # With `verbose`: `WatchedRequest` keeps the head of the request it sent here.
        self.tracing = False
        self.sent_head: HttpHead | None = None

    async def __aenter__(self) -> HeaderDeadline:
        await super().__aenter__()
        if self._seconds is not None:
            loop = asyncio.get_running_loop()
            self._start = loop.time()
            # The earliest it can be due; when it rings, it sleeps on until the real deadline
            # (one timer per chain, usually never rung, rather than one more per request).
            self._timer = loop.call_at(self._start + self._seconds, self._expire)
        return self

    def sent(self) -> None:
        """The first request went out: `-T` from now. The timer is moved only when it would
        ring later than that (connecting took longer than `-T`): usually it rings first."""
        if self._seconds is None or self._due is not None:
            return
        loop = asyncio.get_running_loop()
        self._due = due = loop.time() + self._seconds
        if self._timer is not None and self._timer.when() > due:
            self._timer.cancel()
            self._timer = loop.call_at(due, self._expire)

    def _expire(self) -> None:
        assert self._seconds is not None
        loop = asyncio.get_running_loop()
        due = self._due if self._due is not None else self._start + self._connect + self._seconds
        if loop.time() < due - _EARLY:
            self._timer = loop.call_at(due, self._expire)
        else:
            self.fire(f"no response headers within {self._seconds:g} s")


# The header deadline of the request the current task is sending.
_sending: ContextVar[HeaderDeadline | None] = ContextVar("aiowget_sending", default=None)


class WatchedRequest(aiohttp.ClientRequest):
    """The requests of aiowget's own session: each tells the `HeaderDeadline` of the task
    sending it whether it went on a pooled connection, and when it went out. (A trace config
    did this at about 20 µs a request, for signals and parameters nobody else reads.)"""

    _carried: ClassVar[weakref.WeakSet[object]] = weakref.WeakSet()  # connections that carried one

    async def send(self, conn: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        deadline = _sending.get()
        if deadline is None:
            return await super().send(conn)
        protocol = conn.protocol
        deadline.reused = protocol in self._carried
        if protocol is not None:
            self._carried.add(protocol)
        response = await super().send(conn)  # a GET's headers are written by now
        deadline.sent()
        if deadline.tracing:
            deadline.sent_head = HttpHead(self._request_line(), tuple(self.headers.items()))
        return response

    def _request_line(self) -> str:
        """The line aiohttp's `send` wrote (an absolute URL for a plain-HTTP proxy)."""
        target = str(self.url) if self.proxy and not self.is_ssl() else self.url.raw_path_qs
        return f"{self.method} {target} HTTP/{self.version.major}.{self.version.minor}"


def _head_of_request(response: aiohttp.ClientResponse) -> HttpHead:
    info = response.request_info
    line = f"{info.method} {info.url.raw_path_qs} HTTP/1.1"  # aiohttp's only version
    return HttpHead(line, tuple(info.headers.items()))


def _head_of_response(response: aiohttp.ClientResponse) -> HttpHead:
    version = response.version
    shown = f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP"
    line = f"{shown} {response.status} {response.reason or ''}".rstrip()
    # `raw_headers`: as received, repeated ones (Set-Cookie) apart, undecoded names kept.
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers
    )
    return HttpHead(line, headers)


def _total(response: aiohttp.ClientResponse) -> int | None:
    """The length of the whole file: from Content-Range on a 206, else Content-Length."""
    if response.status == 206:
        answered = parse_content_range(response.headers.get("Content-Range"))
        return answered.total if answered else None
    return expected_length(response.headers)


class _Digest:
    """Hashes computed while streaming (a checksum to verify, sha256 for the report), carried
    across retries and resumes."""

    def __init__(self, checksum: Checksum | None, sha256: bool) -> None:
        self.checksum = checksum
        self.algorithms = {checksum.algorithm} if checksum else set()
        if sha256:
            self.algorithms.add("sha256")
        self.restart()

    def restart(self) -> None:
        """Forget what was hashed: the next `catch_up` reads the file from its first byte."""
        self.hashers = {name: hashlib.new(name) for name in sorted(self.algorithms)}
        self.covered = 0

    def update_now(self, data: bytes | bytearray) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)

    async def catch_up(self, sink: Sink, from_zero: bool) -> None:
        """Make the hashes cover exactly what `sink` holds (reading a resumed .part once)."""
        if from_zero or self.covered > sink.offset:
            self.restart()
        if self.covered < sink.offset:
            await sink.hash_into(self, self.covered)
            self.covered = sink.offset

    def catch_up_now(self, data: bytes | bytearray) -> None:
        """Hash a whole body at once (a small one: in the event loop)."""
        self.restart()
        self.update_now(data)
        self.covered = len(data)

    async def update(self, data: bytearray) -> None:
        # hashlib releases the GIL on large buffers: hash in a thread, beside the write.
        if len(data) < _HASH_INLINE:
            self.update_now(data)
            self.covered += len(data)
            return
        # Run to its end even when cancelled, and counted, like the write beside it.
        _, cancelled = await uninterrupted(asyncio.to_thread(self.update_now, data))
        self.covered += len(data)
        if cancelled:
            raise asyncio.CancelledError

    def hexdigest(self, algorithm: str) -> str | None:
        hasher = self.hashers.get(algorithm)
        return hasher.hexdigest() if hasher is not None else None

    def verify(self) -> None:
        if self.checksum is None:
            return
        expected, actual = self.checksum.hexdigest, self.hexdigest(self.checksum.algorithm)
        if actual != expected:
            algorithm = self.checksum.algorithm
            raise ChecksumError(f"{algorithm} mismatch: expected {expected}, got {actual}")

"""The `Downloader`: one session, the limits, one coroutine per URL, and the join.

Jobs are pulled from the input as slots free up: `jobs` workers each take the next job, run one
transfer coroutine for it and take another; `asyncio.gather` over the workers is the join. So a
list of 100,000 URLs costs about as much memory as a list of 100 (NOTES-aiohttp.md: parking
every URL on a semaphore costs ~1.5 KB each and its wake-ups are quadratic on Python 3.11).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.utils
import heapq
import http.cookies
import inspect
import os
import ssl
import time
import urllib.request
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import (
    AbstractAsyncContextManager,
    aclosing,
    asynccontextmanager,
    contextmanager,
    nullcontext,
    suppress,
)
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import yarl

from .cookiefile import FileCookie, parse_cookies
from .errors import AiowgetError, HTTPStatusError, UsageError, translate
from .models import Event, Job, Note, Options, Result, Results, checked_proxy, path_option
from .naming import WORK_DIR, NameRegistry
from .policy import (
    HostWindow,
    TokenBucket,
    Trouble,
    bypasses_proxy,
    host_window,
    is_overload,
)
from .policy import origin as origin_of
from .storage import ensure_directory, remove_empty_work_dirs
from .text import printable
from .transfer import Context, Reserved, WatchedRequest, request_timeouts, reserve_name, transfer

__all__ = ["Downloader", "JobSource", "download"]

EventHandler = Callable[[Event], Awaitable[None] | None]
JobSource = Iterable[str | Job] | AsyncIterable[str | Job]
T = TypeVar("T")


async def download(
    urls: JobSource,
    directory: str | os.PathLike[str] = ".",
    *,
    session: aiohttp.ClientSession | None = None,
    on_event: EventHandler | None = None,
    **options: Any,
) -> Results:
    """Download every URL into `directory`; per-URL failures are results, in input order."""
    async with Downloader(directory=directory, session=session, on_event=on_event, **options) as dl:
        with _callback_errors():
            indexed = [item async for item in dl._indexed_results(urls)]
    return Results(result for _, result in sorted(indexed, key=lambda item: item[0]))


class Downloader:
    """Downloads through one session with shared limits, names and reporting.

    ```
    async with Downloader(jobs=8, directory="data") as dl:
        result = await dl.download_one(url)
        async for result in dl.iter_download(urls):
            ...
    ```
    Options are those of `Options` (a `UsageError` names a bad one). A `session` given by the
    caller is used and left open; otherwise one is made and closed on exit.
    """

    def __init__(
        self,
        options: Options | None = None,
        /,
        *,
        session: aiohttp.ClientSession | None = None,
        on_event: EventHandler | None = None,
        **changes: Any,
    ) -> None:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Options)})
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}")
        if session is not None and session.auth is not None:
            # aiohttp would send a session's auth to every host a redirect leads to.
            raise UsageError(
                "a session with auth= cannot be used: pass auth= to aiowget, "
                "which sends it only to the URL's own origin"
            )
        self.options = dataclasses.replace(options or Options(), **changes)
        if session is not None and self.options.cookies is not None:
            # Its jar is the caller's: filling it would outlive this Downloader, and a default
            # jar would drop the cookies of IP addresses without a word.
            raise UsageError(
                "cookies= cannot be used with your own session: load them into its "
                "cookie_jar (aiohttp.CookieJar.update_cookies) instead"
            )
        self._given_session = session
        self._on_event = on_event
        self._context: Context | None = None
        self._hosts = _Origins(self.options, self._emit if self.options.verbose else None)
        self._directory: asyncio.Future[bool] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._batches = 0  # lists of URLs started, to tell one list's repeats from a new ask

    async def __aenter__(self) -> Downloader:
        if self._context is not None:
            raise UsageError("this Downloader is already entered: use one 'async with' at a time")
        options = self.options
        if self._given_session is not None and self._given_session.closed:
            raise UsageError("the session given to the Downloader is closed")
        tls = await _tls(options)
        proxy_for = _proxy_chooser(options.proxy)  # may refuse a *_proxy variable: first
        jar = await _cookie_jar(options.cookies)
        session = self._given_session or _new_session(jar)
        self._context = Context(
            session=session,
            options=options,
            names=NameRegistry(),
            job_slot=asyncio.Semaphore(options.jobs),
            host_slot=self._hosts.slot,
            host_window=self._hosts.window,
            release_room=self._hosts.release_held,
            redirected=self._hosts.redirected,
            directory_ready=self._directory_ready,
            emit=self._emit,
            throttle=_RateLimit(options.limit_rate) if options.limit_rate else None,
            ssl=tls,
            proxy_for=proxy_for,
            timeouts=request_timeouts(options),
            work_dir=options.directory / WORK_DIR,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._context is not None:
            await remove_empty_work_dirs(self._context.work_dirs)
            if self._given_session is None:
                await self._context.session.close()
        self._context = None
        self._directory = None  # a Downloader entered again makes (or checks) it again

    async def prepare_directory(self) -> None:
        """Create the target directory now; `LocalIOError` naming it when it cannot be used.

        Transfers do this on their own when they first need it; calling it first turns a bad
        directory into one error instead of one failure per URL."""
        await self._directory_ready()

    def connections(self) -> dict[str, dict[str, int]]:
        """Per origin (`scheme://host:port`) met with a per-host limit (`per_host` not None):
        requests made, 429/503 answers (`refused`), resets and timeouts (`broken`), the
        window now (`connections`) and its `peak`. Empty without a per-host limit."""
        return self._hosts.summary()

    def busiest(self, count: int) -> list[tuple[str, int, int]]:
        """The `count` origins with the most transfers under way: (origin, under way, window
        now). Empty without a per-host limit. (Cheap enough for a display's few times a
        second: one pass over the origins kept.)"""
        return self._hosts.busiest(count)

    async def download_one(
        self, url: str | Job, path: str | os.PathLike[str] | None = None
    ) -> Result:
        """Fetch one URL, to `path` exactly when given, else to a name in the directory."""
        job = _as_job(url)
        if job.problem is not None:
            raise job.problem
        if path is not None:
            job = dataclasses.replace(job, path=path_option(path, "path"))
        with _callback_errors():
            return self._checked(await transfer(job, self._ctx()))

    async def download_to_stream(self, url: str | Job, stream: IO[bytes]) -> Result:
        """Fetch one URL and write its body to an open binary stream (`-O -`).

        Cancelling it does not wait for the stream's reader: a write stuck on a full pipe
        is left to finish in its thread."""
        job = _as_job(url)
        if job.problem is not None:
            raise job.problem
        with _callback_errors():
            return self._checked(await transfer(job, self._ctx(), stream))

    async def iter_download(self, jobs: JobSource) -> AsyncGenerator[Result, None]:
        """Results as they finish; the input is consumed lazily, so it may be unbounded."""
        # aclosing: when the caller stops early, the pool is stopped now, not at GC time.
        with _callback_errors():
            async with aclosing(self._indexed_results(jobs)) as results:
                async for _, result in results:
                    yield self._checked(result)

    async def _indexed_results(self, jobs: JobSource) -> AsyncGenerator[tuple[int, Result], None]:
        ctx = self._ctx()
        results: asyncio.Queue[tuple[int, Result]] = asyncio.Queue(maxsize=self.options.jobs)
        source = _Source(jobs)
        pool = self._track(asyncio.ensure_future(self._pool(ctx, source, results)))
        try:
            while (item := await _next(results, pool)) is not None:
                yield item
        finally:
            pool.cancel()
            await asyncio.wait({pool})

    async def _pool(
        self, ctx: Context, source: _Source, results: asyncio.Queue[tuple[int, Result]]
    ) -> None:
        self._batches += 1
        batch = self._batches  # a URL met again in this list is fetched once
        crew = _Crew(self.options.jobs)
        feed = self._hosts.feed(source, lambda job: reserve_name(job, ctx, batch))

        async def worker() -> None:
            while (item := await crew.idle_while(feed.next())) is not None:
                crew.grow(worker)  # every worker busy: one more, while there is work
                index, job, reserved, ticket = item
                with self._hosts.holding(ticket):
                    result = await transfer(job, ctx, batch=batch, reserved=reserved)
                await results.put((index, result))

        crew.grow(worker)
        try:
            await crew.join()
        finally:
            self._hosts.drop(feed)
            ctx.remembered.pop(batch, None)  # the list is over, and so are its repeats
        source.raise_error()

    def _checked(self, result: Result) -> Result:
        if self.options.raise_errors and result.error is not None:
            raise result.error
        return result

    def _ctx(self) -> Context:
        if self._context is None:
            raise UsageError("use the Downloader inside 'async with'")
        return self._context

    def _track(self, task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            outcome = self._on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as error:
            # The caller's own error: it must not pass for this URL's failure on the way out.
            raise _CallbackFailed(error) from error

    async def _directory_ready(self) -> bool:
        """Made once for the whole run (shielded, so one cancelled job cannot cancel it for
        all); True when it held nothing at that moment (see `ensure_directory`)."""
        if self._directory is None:
            made = self._track(asyncio.ensure_future(ensure_directory(self.options.directory)))
            # Its error is every waiter's; if the one that started it was cancelled, nobody's.
            made.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._directory = made
        elif self._directory.done() and not self._directory.cancelled():
            return self._directory.result()  # the usual case: made long ago
        return await asyncio.shield(self._directory)


class _CallbackFailed(BaseException):
    """`on_event` raised: carried past every handler of the URL's own failures, the run is
    stopped, and the caller gets its own exception back (`_callback_errors`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


@contextmanager
def _callback_errors() -> Iterator[None]:
    try:
        yield
    except _CallbackFailed as failed:
        raise failed.error from None


class _Crew:
    """The workers of one list: hired one at a time while every worker is busy and work is
    left, up to `size` (so `-j 100000` over ten URLs starts about ten), joined with `gather`.
    The first worker to fail stops the others, and its error is raised once they are done."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._workers: list[asyncio.Future[None]] = []
        self._idle = 0
        self._error: BaseException | None = None

    async def idle_while(self, work: Awaitable[T]) -> T:
        self._idle += 1
        try:
            return await work
        finally:
            self._idle -= 1

    def grow(self, work: Callable[[], Awaitable[None]]) -> None:
        if self._idle or len(self._workers) >= self._size or self._error is not None:
            return
        worker = asyncio.ensure_future(work())
        worker.add_done_callback(self._stopped)
        self._workers.append(worker)

    def _stopped(self, worker: asyncio.Future[None]) -> None:
        if worker.cancelled() or worker.exception() is None or self._error is not None:
            return
        self._error = worker.exception()
        for other in self._workers:
            other.cancel()

    async def join(self) -> None:
        try:
            joined = 0
            while joined < len(self._workers):  # workers hired meanwhile join the next round
                joined = len(self._workers)
                # return_exceptions: every worker is waited for, none cut short by another.
                await asyncio.shield(asyncio.gather(*self._workers, return_exceptions=True))
        except asyncio.CancelledError:
            # Cancel each worker once, and let it finish its cleanup (closing and keeping its
            # .part) even if this pool is cancelled again meanwhile.
            for worker in self._workers:
                worker.cancel()
            while not all(worker.done() for worker in self._workers):
                with suppress(asyncio.CancelledError):
                    await asyncio.wait(self._workers)
            raise
        if self._error is not None:
            raise self._error


async def _next(
    results: asyncio.Queue[tuple[int, Result]], pool: asyncio.Future[None]
) -> tuple[int, Result] | None:
    """The next result, or None once the pool is done and drained (its error raised)."""
    if not results.empty():
        return results.get_nowait()
    getter = asyncio.ensure_future(results.get())
    waiters: set[asyncio.Future[Any]] = {getter, pool}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    pool.result()
    return results.get_nowait() if not results.empty() else None


class _Source:
    """Hands out the jobs of a (possibly async, possibly endless) iterable to the workers.

    An async generator cannot be advanced by two tasks at once, hence the lock. An error while
    reading the input stops handing out jobs; it is raised once the jobs in flight are done.
    """

    def __init__(self, jobs: JobSource) -> None:
        if isinstance(jobs, str | bytes):
            raise UsageError("expected an iterable of URLs, got a single string")
        if not isinstance(jobs, Iterable | AsyncIterable):
            raise UsageError(f"expected an iterable of URLs, got {type(jobs).__name__}")
        self._sync = iter(jobs) if isinstance(jobs, Iterable) else None
        self._async = aiter(jobs) if isinstance(jobs, AsyncIterable) else None
        self._lock = asyncio.Lock()
        self._count = 0
        self._done = False
        self._error: BaseException | None = None

    async def next(self) -> tuple[int, Job] | None:
        async with self._lock:
            if self._done:
                return None
            try:
                item = await anext(self._async) if self._async else next(self._sync)  # type: ignore[arg-type]
            except (StopIteration, StopAsyncIteration):
                self._done = True
                return None
            except Exception as exc:
                self._done, self._error = True, exc
                return None
            self._count += 1
            return self._count - 1, _as_job(item)

    @property
    def done(self) -> bool:
        return self._done

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _as_job(item: object) -> Job:
    """A Job for an item of the input; one that is not a URL fails alone, as a bad line of
    an input file does."""
    if isinstance(item, Job):
        return item
    if isinstance(item, str):
        return Job(url=item)
    if isinstance(item, yarl.URL):
        return Job(url=str(item))
    problem = UsageError(f"expected a URL string or a Job, got {type(item).__name__}")
    return Job(url=printable(repr(item))[:200], problem=problem)


class _Origins:
    """The connections of one run, per origin: each origin's `HostWindow` (`policy`) says how
    many transfers it gets now, and the requests waiting for room queue in turn. A window is
    kept while its origin is busy, and after (so what was learnt is not lost between two files)
    for the last `_IDLE_KEPT` idle origins: a list of a million hosts stays flat.

    A list's new transfers are handed out by a `_Feed` only when their origin has room, with
    that room taken for them (a `_Ticket`, used by the transfer's first request): a worker never
    waits on a busy or paused origin while another origin could use it."""

    def __init__(
        self, options: Options, emit: Callable[[Event], Awaitable[None]] | None = None
    ) -> None:
        self._options = options
        self.jobs = options.jobs
        self._origins: dict[str, _Origin] = {}
        self._feeds: set[_Feed] = set()
        self._emit = emit  # with `verbose`: each change of a window, as a `Note`

    def feed(self, source: _Source, reserve: Callable[[Job], Reserved | None]) -> _Feed | _Plain:
        if self._options.per_host is None:
            return _Plain(source)  # no room to wait for: jobs in input order
        feed = _Feed(source, self, reserve)
        self._feeds.add(feed)
        return feed

    def drop(self, feed: _Feed | _Plain) -> None:
        self._feeds.discard(feed)

    def free(self, key: str) -> bool:
        """Whether `key` has room for a new transfer now (no request of its own waiting),
        and so has the origin its requests were last redirected to."""
        if not key:
            return True
        first = self._origin(key)
        if not first.free():
            return False
        return first.via is None or first.via == key or self._origin(first.via).free()

    def redirected(self, here: str, there: str) -> None:
        if self._options.per_host is not None:
            self._origin(here).via = there

    def take(self, key: str) -> _Ticket | None:
        if not key:
            return None  # not a URL that gets as far as a request
        origin = self._origin(key)
        origin.window.started(asyncio.get_running_loop().time())
        return _Ticket(origin)

    @contextmanager
    def holding(self, ticket: _Ticket | None) -> Iterator[None]:
        """The room taken for a job, used by its first request to that origin (`slot`), or
        given back when the job asked nothing (its file was there)."""
        if ticket is None:
            yield
            return
        token = _HELD.set(ticket)
        try:
            yield
        finally:
            _HELD.reset(token)
            if not ticket.used:
                ticket.origin.unused()

    def release_held(self) -> None:
        """The task's job gives back the room it was handed (`holding`), unused."""
        ticket = _HELD.get()
        if ticket is not None and not ticket.used:
            ticket.used = True
            ticket.origin.unused()

    def slot(self, key: str) -> AbstractAsyncContextManager[None]:
        if self._options.per_host is None:
            return _UNLIMITED
        origin = self._origin(key)
        ticket = _HELD.get()
        if ticket is not None and not ticket.used and ticket.origin is origin:
            ticket.used = True
            return self._slot(key, origin, held=True)
        return self._slot(key, origin, held=False)

    def summary(self) -> dict[str, dict[str, int]]:
        return {key: origin.window.summary() for key, origin in self._origins.items()}

    def busiest(self, count: int) -> list[tuple[str, int, int]]:
        busy = [
            (key, origin.window.in_flight, origin.window.limit)
            for key, origin in self._origins.items()
            if origin.window.in_flight
        ]
        return heapq.nlargest(count, busy, key=lambda entry: entry[1])

    def window(self, key: str) -> HostWindow | None:
        origin = self._origins.get(key)
        return origin.window if origin is not None else None

    def _origin(self, key: str) -> _Origin:
        origin = self._origins.get(key)
        if origin is None:
            options = self._options
            window = host_window(options.per_host, options.jobs, options.split)
            assert window is not None
            origin = _Origin(window, options.retry_after_max, self._room_appeared)
            self._origins[key] = origin
        return origin

    async def _told(self, key: str, window: HostWindow, before: int) -> None:
        if self._emit is not None and window.limit != before:
            shown = printable(key)
            await self._emit(Note(f"{shown}: {before} -> {window.limit} at once ({window.why})"))

    def _room_appeared(self) -> None:
        for feed in self._feeds:
            feed.wake()

    @asynccontextmanager
    async def _slot(self, key: str, origin: _Origin, held: bool) -> AsyncIterator[None]:
        if not held:
            await origin.enter()
        entered, at = asyncio.get_running_loop().time(), origin.window.limit
        try:
            yield
        except BaseException as error:
            before = origin.window.limit
            origin.leave(error, at=at)
            if not isinstance(error, asyncio.CancelledError):
                await self._told(key, origin.window, before)
            raise
        else:
            before = origin.window.limit
            origin.leave(None, entered, at)
            await self._told(key, origin.window, before)
        finally:
            if origin.idle() and len(self._origins) > _IDLE_KEPT:
                self._origins.pop(key, None)


_IDLE_KEPT = 10_000
# Jobs of a list read ahead of the workers (16 per worker, 64 to 1,024), so that an origin
# with room finds its jobs behind a busy one's (#16: six URLs of B behind sixty of A).
_LOOK_AHEAD = (64, 16, 1024)


def look_ahead(jobs: int) -> int:
    least, per_worker, most = _LOOK_AHEAD
    return min(most, max(least, per_worker * jobs))


class _Ticket:
    """Room in an origin taken for a job before it runs (`_Origins.take`)."""

    __slots__ = ("origin", "used")

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.used = False


_HELD: ContextVar[_Ticket | None] = ContextVar("aiowget_held_room", default=None)

_Item = tuple[int, Job, "Reserved | None", "_Ticket | None"]


class _Plain:
    """A list's jobs in input order, when no origin has a limit to wait for."""

    def __init__(self, source: _Source) -> None:
        self._source = source

    async def next(self) -> _Item | None:
        read = await self._source.next()
        return None if read is None else (read[0], read[1], None, None)


class _Feed:
    """Hands a list's jobs to the workers so that no origin holds up another: it reads up to
    `look_ahead(jobs)` jobs ahead of them, claiming their names as it reads (in input order, as the
    README promises), queues them by origin, and gives a free worker the earliest job whose
    origin has room for a new transfer now. A worker that finds none waits for room (an origin
    calls `wake`) or for more input."""

    def __init__(
        self, source: _Source, origins: _Origins, reserve: Callable[[Job], Reserved | None]
    ) -> None:
        self._source = source
        self._origins = origins
        self._reserve = reserve
        self._ahead = look_ahead(origins.jobs)
        self._queues: dict[str, collections.deque[tuple[int, Job, Reserved | None]]] = {}
        self._heads: list[tuple[int, str]] = []  # a heap: (index of a queue's first job, key)
        self._buffered = 0
        self._reading = False
        self._waiters: list[asyncio.Future[None]] = []

    async def next(self) -> _Item | None:
        while True:
            item = self._pick()
            if item is not None:
                return item
            if self._source.done and not self._buffered:
                return None
            if self._reading or self._source.done or self._buffered >= self._ahead:
                await self._wait()
            else:
                await self._read()

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _pick(self) -> _Item | None:
        aside: list[tuple[int, str]] = []
        try:
            while self._heads:
                entry = heapq.heappop(self._heads)
                if self._origins.free(entry[1]):
                    return self._take(entry[1])
                aside.append(entry)
            return None
        finally:
            for entry in aside:
                heapq.heappush(self._heads, entry)

    def _take(self, key: str) -> _Item:
        queue = self._queues[key]
        index, job, reserved = queue.popleft()
        if queue:
            heapq.heappush(self._heads, (queue[0][0], key))
        else:
            del self._queues[key]
        self._buffered -= 1
        return index, job, reserved, self._origins.take(key)

    async def _read(self) -> None:
        self._reading = True
        try:
            read = await self._source.next()
        finally:
            self._reading = False
            self.wake()  # a new job, the end of the input, or a reader's turn for another
        if read is None:
            return
        index, job = read
        key = _origin_key(job)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = collections.deque()
            heapq.heappush(self._heads, (index, key))
        queue.append((index, job, self._reserve(job)))
        self._buffered += 1

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()


def _origin_key(job: Job) -> str:
    """The origin a job's first request goes to, or "" for one that will fail before any."""
    if job.problem is not None:
        return ""
    try:
        return origin_of(job.url)
    except ValueError:
        return ""


class _Origin:
    """One origin's window and its queue of requests waiting for room (first come, first
    served); a pause (`Retry-After`) is waited out on a timer. `on_room` is told when room for
    a new transfer appears."""

    def __init__(
        self, window: HostWindow, longest_pause: float, on_room: Callable[[], None]
    ) -> None:
        self.window = window
        self._longest_pause = longest_pause  # Retry-After is capped (`retry_after_max`)
        self._on_room = on_room
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self.via: str | None = None  # where its requests were last redirected (`free`)

    def idle(self) -> bool:
        return not self.window.in_flight and not self._waiters

    def free(self) -> bool:
        if self._waiters:
            return False
        now = asyncio.get_running_loop().time()
        if self.window.room(now):
            return True
        self._remind(now)  # paused: the feed hears of the end of the pause
        return False

    def unused(self) -> None:
        self.window.unused()
        self._wake()

    async def enter(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiters and self.window.room(loop.time()):
            self.window.started(loop.time())
            return
        waiter = loop.create_future()
        self._waiters.append(waiter)
        self._wake()  # a pause may need its timer
        try:
            await waiter  # `_wake` started the transfer on our behalf
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.window.released()  # granted, but no longer wanted: pass it on
            with suppress(ValueError):
                self._waiters.remove(waiter)
            self._wake()
            raise

    def leave(
        self, error: BaseException | None, entered: float | None = None, at: int | None = None
    ) -> None:
        """A request ended (`error` None: well), sent at `entered` under a window of `at`."""
        now = asyncio.get_running_loop().time()
        if error is None:
            self.window.finished(now, None if entered is None else now - entered, at)
        else:
            failure = error if isinstance(error, AiowgetError) else _translated(error)
            if failure is not None and is_overload(failure):
                retry_after = getattr(failure, "retry_after", None)
                if retry_after is not None:
                    retry_after = min(retry_after, self._longest_pause)
                self.window.troubled(now, retry_after, _trouble(failure), at)
            else:
                self.window.released()
        self._wake()

    def _wake(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._waiters and self.window.room(now):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.window.started(now)
                waiter.set_result(None)
        if self.window.room(now):
            if not self._waiters:
                self._on_room()
        else:
            self._remind(now)  # paused (perhaps past the timer that woke us): hear its end

    def _remind(self, now: float) -> None:
        """Wake up when the pause ends, if one is under way."""
        paused = self.window.paused_until
        if now < paused and self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(paused, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._wake()


def _trouble(failure: AiowgetError) -> Trouble:
    if isinstance(failure, HTTPStatusError):
        return Trouble.TOO_MANY if failure.status == 429 else Trouble.UNAVAILABLE
    return Trouble.BROKEN


def _translated(error: BaseException) -> AiowgetError | None:
    """What aiowget makes of an exception out of aiohttp (None: not the server's doing)."""
    if isinstance(error, Exception) and not isinstance(error, asyncio.CancelledError):
        return translate(error)
    return None


_UNLIMITED: AbstractAsyncContextManager[None] = nullcontext()


class _RateLimit:
    """The one token bucket every transfer of a run draws on (`--limit-rate`)."""

    def __init__(self, rate: float) -> None:
        # A burst of a tenth of a second keeps the pace smooth without starving small reads.
        self._bucket = TokenBucket(rate, burst=max(rate / 10, 16 * 1024))

    async def __call__(self, amount: int) -> None:
        delay = self._bucket.take(amount, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)


async def _tls(options: Options) -> ssl.SSLContext | bool:
    """Verification on by default; a CA file adds to what is trusted; or off when asked."""
    if not options.verify_tls:
        return False
    if options.ca_certificate is None:
        return True
    try:
        return await asyncio.to_thread(_trusting, options.ca_certificate)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use CA certificate {options.ca_certificate}: {exc}") from None


def _trusting(ca_file: Path) -> ssl.SSLContext:
    """The system's trust, and the authorities in `ca_file` too (`cafile=` alone would
    replace the system's)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


def _proxy_chooser(explicit: str | None) -> Callable[[str], str | None]:
    """The proxy for a URL (asked again at every redirect): the one given, else the
    `*_proxy` variables and `no_proxy`, the only environment aiowget reads."""
    if explicit:
        return lambda url: explicit
    proxies = urllib.request.getproxies_environment()
    exempt = proxies.pop("no", "")
    # Checked once, up front, like --proxy: a bad one is one error naming its variable
    # (password masked), not a failure per URL quoting it.
    proxies = {scheme: checked_proxy(url, f"{scheme}_proxy") for scheme, url in proxies.items()}

    def choose(url: str) -> str | None:
        if not proxies or bypasses_proxy(url, exempt):
            return None
        return proxies.get(urlsplit(url).scheme.lower())

    return choose


async def _cookie_jar(path: Path | None) -> aiohttp.CookieJar | None:
    """A jar holding the cookies of `path` (None: aiohttp's default jar); `UsageError`
    naming the file when it cannot be read or is not a cookies.txt.

    `unsafe=True`: a cookie file names its hosts, IP addresses included (wget and curl send
    those), and aiohttp's default jar would drop them; a cookie of an IP address still goes
    to that exact address only (and so do those a server at an IP address sets in this run)."""
    if path is None:
        return None
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read cookie file {path}: {reason or exc}") from None
    jar = aiohttp.CookieJar(unsafe=True)
    for cookie in parse_cookies(text, time.time(), f"cookie file {path}"):
        try:
            _add_cookie(jar, cookie)
        except (http.cookies.CookieError, ValueError) as exc:  # a name or host aiohttp refuses
            raise UsageError(f"cookie file {path}: cookie {cookie.name!r}: {exc}") from None
    return jar


def _add_cookie(jar: aiohttp.CookieJar, cookie: FileCookie) -> None:
    """Into the jar as if `cookie.domain` had set it: with a Domain attribute when it goes
    to subdomains too, else host-only (aiohttp's rule for a cookie set without one)."""
    morsel: http.cookies.Morsel[str] = http.cookies.Morsel()
    morsel.set(cookie.name, cookie.value, cookie.value)  # sent as written in the file
    morsel["path"] = cookie.path
    morsel["secure"] = cookie.secure
    if cookie.subdomains:
        morsel["domain"] = cookie.domain
    if cookie.expires is not None:
        morsel["expires"] = email.utils.formatdate(cookie.expires, usegmt=True)
    jar.update_cookies({cookie.name: morsel}, yarl.URL.build(scheme="http", host=cookie.domain))


def _new_session(jar: aiohttp.CookieJar | None = None) -> aiohttp.ClientSession:
    # Concurrency is bounded by the workers and the per-host slots, not by the connector.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, timeout_ceil_threshold=float("inf")),
        request_class=WatchedRequest,  # tells each request's HeaderDeadline when it went out
        cookie_jar=jar,
    )
    # aiohttp sends a GET once more, unasked, after a disconnect: `-t 0` must be one request,
    # and `attempts` what the server saw. (Private; tests/test_hostile.py would notice.)
    session._retry_connection = False
    return session

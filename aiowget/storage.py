"""Where a body lands: a working file, renamed to its final name once whole; or a stream.

Working files live in a folder of their own beside the final files (`DIR/.aiowget/`), so no
final name can ever be another download's working file:

    DIR/NAME                  final: only ever a whole body, put there by one rename
    DIR/.aiowget/NAME.part    the body as it arrives
    DIR/.aiowget/NAME.meta    the sidecar (JSON, 0600): a hash of the URL, the strong validator,
                              the total length and, for a split download, each segment's progress

The `.part` is also the transfer's lock: it is opened (never following a symlink), locked with
`flock` for the whole transfer, and truncated, written and renamed through that one descriptor.
A second run (or a second call in this one) that finds it locked never writes, truncates or
removes it; it waits and looks again. What the sidecar says is never more than the `.part`
holds: the `.part` is emptied before a new sidecar is written, progress is saved only after
the bytes it counts, and a `.part` that does not match its sidecar is never resumed.

Every disk operation runs, once started, to its end: a cancellation that arrives meanwhile is
raised after the bookkeeping has caught up with what was done. The per-file work of small
files (claiming a `.part`, writing a small body whole and renaming it) runs in the event loop
while the filesystem answers fast (`Disk`, `policy.DiskPace`); everything else, and all of it
on a slow filesystem, in worker threads.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeVar

import aiofiles.os
import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from .errors import LocalIOError, ProtocolError, output_error
from .models import PartState, Stamp
from .naming import WORK_DIR
from .policy import DiskPace, part_matches

__all__ = [
    "ETAG_XATTR",
    "META_SUFFIX",
    "PART_SUFFIX",
    "Disk",
    "Found",
    "PartFile",
    "Sink",
    "StreamSink",
    "ensure_directory",
    "exists",
    "make_folders",
    "part_path",
    "remove_empty_work_dirs",
    "uninterrupted",
    "work_dir_ready",
]

T = TypeVar("T")

PART_SUFFIX = ".part"
META_SUFFIX = ".meta"
# Where a saved file keeps its ETag, for `--if-exists update` (where the filesystem has them).
ETAG_XATTR = "user.aiowget.etag"
# A filesystem that will not take a user attribute (tmpfs before Linux 6.6, vfat, some NFS):
# not asked again in this run.
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})
_READ_SIZE = 1 << 20
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def part_path(final: Path) -> Path:
    """Where the body for `final` is written until it is whole."""
    return _working_files(final, None)[0]


def _working_files(final: Path, work: Path | None) -> tuple[Path, Path]:
    """The `.part` and sidecar of `final`, in `work` (its working folder, given when known:
    one `Path` less per file) or in the one beside it."""
    work = final.parent / WORK_DIR if work is None else work
    return work / (final.name + PART_SUFFIX), work / (final.name + META_SUFFIX)


def url_key(url: str) -> str:
    """What a sidecar keeps to recognise its URL: a hash, so no password is ever on disk."""
    return hashlib.sha256(url.encode(errors="surrogatepass")).hexdigest()


class Hasher(Protocol):
    def update_now(self, data: bytes, /) -> None: ...


class Sink(Protocol):
    """What a transfer writes to. `offset` is how many bytes it holds already."""

    offset: int
    state: PartState | None

    async def begin(self, state: PartState, from_zero: bool) -> None: ...
    async def write(self, data: bytes | bytearray) -> None: ...
    async def hash_into(self, hasher: Hasher, start: int) -> None: ...
    async def restart(self) -> None: ...
    async def commit(self, stamp: Stamp | None = None) -> None: ...
    async def release(self, keep: bool) -> None: ...


class Found(Enum):
    """What `PartFile.claim` found instead of a `.part` to write."""

    THERE = "the final file is there (and is to be skipped)"
    BUSY = "another transfer holds the .part"


@dataclass(frozen=True)
class Claim:
    """What one look at the disk found, with the `.part` locked (`fd`)."""

    fd: int
    there: bool
    size: int
    state: PartState | None
    current: Stamp | None = None  # the version the final file holds, when asked and there


class Disk:
    """Runs the small disk work of one run: in the event loop while the filesystem answers
    fast, else in a worker thread, to its end (see `policy.DiskPace`)."""

    def __init__(self, pace: DiskPace | None = None) -> None:
        self.pace = pace if pace is not None else DiskPace()
        self.xattrs = hasattr(os, "setxattr")  # until a filesystem refuses one

    def stamp(self, fd: int, stamp: Stamp | None) -> None:
        """Give the file behind `fd` the mtime and ETag of the version it holds, before its
        rename: the final name appears with them. (Blocking: called with the rename.)"""
        # Niceties, never a failed download: a file system that refuses a time (some network
        # ones) leaves the time of writing; a full attribute block costs this file its ETag;
        # a file system without user attributes, every file's (found once, said never).
        if stamp is None:
            return
        if stamp.mtime is not None:
            with suppress(OSError):
                os.utime(fd, (stamp.mtime, stamp.mtime))  # atime too, as wget and curl -R
        if stamp.etag is not None and self.xattrs:
            try:
                os.setxattr(fd, ETAG_XATTR, stamp.etag.encode("ascii"))
            except OSError as exc:
                if exc.errno in _NO_XATTRS:
                    self.xattrs = False

    async def run(self, function: Callable[..., T], *args: Any) -> tuple[T, bool]:
        """`function(*args)`'s result, and whether a cancellation came meanwhile."""
        pace = self.pace
        start = time.monotonic()
        if not pace.inline(start):
            return await uninterrupted(asyncio.to_thread(function, *args))
        try:
            return function(*args), False
        finally:
            end = time.monotonic()
            pace.took(end - start, end)


class PartFile:
    """The locked `.part` (and sidecar) of one final path, from `claim` to `commit`/`release`."""

    def __init__(
        self,
        path: Path,
        claim: Claim | None,
        disk: Disk,
        durable: bool = False,
        work: Path | None = None,
    ) -> None:
        self.path = path
        self.disk = disk
        self.durable = durable  # --fsync: the bytes, then the rename, on disk before commit ends
        self.part, self.meta = _working_files(path, work)
        self.there = claim.there if claim else False
        self.current = claim.current if claim else None
        self.offset = claim.size if claim and claim.state is not None else 0
        self.state = claim.state if claim else None
        self._fd: int | None = claim.fd if claim else None
        self._file: AsyncBufferedIOBase | None = None  # sequential writes, through aiofiles
        self._committed = False
        # Not claimed yet (see `deferred`): (skip_if_there, checked) for when it is.
        self._deferred: tuple[bool, bool] | None = None

    @classmethod
    def deferred(
        cls,
        path: Path,
        *,
        skip_if_there: bool,
        checked: bool,
        disk: Disk,
        durable: bool = False,
        work: Path | None = None,
    ) -> PartFile:
        """The `.part` of `path` in a directory that held nothing when the run began: nothing
        there to skip or resume, so no look at the disk before the request. It is claimed
        (locked, and the final name looked at) when it is first written: a small body with
        `write_whole`, in that one hop; anything else after `claim_now`."""
        sink = cls(path, None, disk, durable, work)
        sink._deferred = (skip_if_there, checked)
        return sink

    async def claim_now(self) -> Found | None:
        """Claim a deferred `.part` now: None once it is ours (or was already), else what
        stands in the way (another transfer holds it; the final file appeared)."""
        if self._deferred is None:
            return None
        skip_if_there, checked = self._deferred
        look = (_claim, self.part, self.meta, self.path, None, skip_if_there, checked)
        claim, cancelled = await self.disk.run(*look)
        if isinstance(claim, Claim):  # recorded before a cancellation is raised: released
            self._deferred, self._fd, self.there = None, claim.fd, claim.there
        if cancelled:
            raise asyncio.CancelledError
        return claim if isinstance(claim, Found) else None

    @classmethod
    async def claim(
        cls,
        path: Path,
        url: str,
        *,
        resume: bool,
        skip_if_there: bool,
        checked: bool = False,
        disk: Disk,
        durable: bool = False,
        work: Path | None = None,
        compare: bool = False,
    ) -> PartFile | Found:
        """Lock the `.part` of `path` and look at the disk, in one hop.

        `Found.BUSY` while another transfer holds it; `Found.THERE` when `skip_if_there` and
        the final file is there (before or after the lock: then nothing is left behind). The
        sidecar is read when `resume`, and trusted only when it is for `url` and matches the
        `.part`; otherwise the transfer starts from the first byte. `checked`: the working
        folder was already found to be ours in this run (one look less per file); `work`:
        the working folder, when known; `compare`: a final file there is looked at too, for
        the version it holds (`current`)."""
        part, meta = _working_files(path, work)
        resumed = url if resume else None
        look = (_claim, part, meta, path, resumed, skip_if_there, checked, compare)
        claim, cancelled = await disk.run(*look)
        if isinstance(claim, Found):
            if cancelled:
                raise asyncio.CancelledError
            return claim
        sink = cls(path, claim, disk, durable, work)
        if cancelled:  # unlocked at once; an empty .part made just now is not left behind
            await sink.release(keep=claim.state is not None)
            raise asyncio.CancelledError
        return sink

    async def begin(self, state: PartState, from_zero: bool) -> None:
        """Ready to append: from the first byte (the `.part` emptied before the new sidecar is
        written), or at `offset` (anything past it cut)."""
        await self._close_writer()
        at = 0 if from_zero else self.offset
        writer = await self._hop(_begin, self._locked(), self.meta, at, state)
        self.offset, self.state = at, state
        self._file = aiofiles.threadpool.wrap(writer)

    async def write(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        # Run to its end even when cancelled, and counted: the bytes are in the file.
        _, cancelled = await uninterrupted(self._file.write(data))
        self.offset += len(data)
        if cancelled:
            raise asyncio.CancelledError

    async def write_whole(
        self, data: bytes | bytearray, state: PartState, stamp: Stamp | None = None
    ) -> Found | None:
        """A small body, complete and verified: written, renamed and unlocked in one thread
        hop (a deferred `.part` is claimed in that same hop). None when saved; else what stood
        in the way of a deferred one, and nothing was written.

        Small files dominate many-file jobs, and every hop costs more than the bytes do
        (NOTES-aiohttp.md); such a body is fetched again rather than resumed."""
        await self._close_writer()
        if self._deferred is not None:
            skip_if_there, checked = self._deferred
            found = await self._run(
                _claim_write_whole, self.part, self.path, self.meta, data,
                (self.durable, self.disk, stamp), skip_if_there, checked,
            )  # fmt: skip
            if found is None:
                self._deferred = None
                self.offset, self.state, self._committed = len(data), state, True
            return found
        fd, self._fd = self._locked(), None
        self.offset, self.state, self._committed = len(data), state, True
        saving = (self.durable, self.disk, stamp)
        await self._run(_write_whole, fd, self.part, self.path, self.meta, data, saving)
        return None

    async def begin_split(self, state: PartState, fresh: bool) -> None:
        """Ready for writes at any offset: a `.part` of the total size, emptied first when
        `fresh`, or the one being resumed (whose size `claim` checked)."""
        assert state.total is not None
        await self._close_writer()
        await self._hop(_begin_split, self._locked(), self.meta, state, fresh)
        self.state = state
        self.offset = state.total  # the file spans it all; the sidecar says what is filled

    async def write_at(self, offset: int, data: bytes | bytearray) -> None:
        await self._hop(_write_all_at, self._locked(), data, offset)

    async def save(self, state: PartState) -> None:
        """Record `state` in the sidecar (atomically); only after the bytes it counts (on the
        disk too, with `durable`)."""
        if self.durable:
            await self._hop(os.fsync, self._locked())
        await self._hop(_write_meta, self.meta, state)
        self.state = state

    async def size(self) -> int:
        """The `.part`'s real size on disk."""
        return await self._hop(lambda fd: os.fstat(fd).st_size, self._locked())

    async def hash_into(self, hasher: Hasher, start: int) -> None:
        """Feed bytes `start`..`offset` of the .part to `hasher` (to resume a checksum)."""
        if self._file is not None:
            await self._hop_awaitable(self._file.flush())
        await self._hop(_hash_range, self._locked(), hasher, start, self.offset)

    async def restart(self) -> None:
        """Forget what the .part holds (it stays locked): the next request starts from zero."""
        if self._deferred is not None:
            return  # nothing written yet
        await self._close_writer()
        await self._hop(_empty, self._locked(), self.meta)
        self.offset, self.state = 0, None

    async def commit(self, stamp: Stamp | None = None) -> None:
        """Rename the whole `.part` into place, with the mtime and ETag of `stamp`."""
        if self._committed:
            return
        await self._close_writer()
        fd, self._fd = self._locked(), None
        self._committed = True
        # Replaces whatever is at the final name, a planted symlink included: never follows it.
        saving = (self.durable, self.disk, stamp)
        await self._hop(_commit, fd, self.part, self.path, self.meta, saving)

    async def release(self, keep: bool) -> None:
        """Unlock; keep the .part and sidecar for a later resume, or remove both first."""
        await self._close_writer()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await self._hop(_release, fd, self.part, self.meta, keep)

    def _locked(self) -> int:
        assert self._fd is not None, "the .part was committed or released"
        return self._fd

    async def _close_writer(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await self._hop_awaitable(file.close())

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Small work: inline while the disk is fast (`Disk`)."""
        result, cancelled = await self.disk.run(function, *args)
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def _hop(self, function: Callable[..., T], *args: Any) -> T:
        return await self._hop_awaitable(asyncio.to_thread(function, *args))

    @staticmethod
    async def _hop_awaitable(work: Awaitable[T]) -> T:
        result, cancelled = await uninterrupted(work)
        if cancelled:
            raise asyncio.CancelledError
        return result


class StreamSink:
    """An open binary stream, such as stdout for `-O -`, written off the event loop.

    Unlike a file, a stream may never drain (a stalled reader of a pipe): a cancellation does
    not wait for a write in progress, and nothing is flushed after one."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._stuck = False  # a write was left running when cancelled
        self.offset = 0
        self.state: PartState | None = None

    async def begin(self, state: PartState, from_zero: bool) -> None:
        if from_zero and self.offset:
            raise ProtocolError("the server sent the file again from its start")
        self.state = state

    async def write(self, data: bytes | bytearray) -> None:
        if _cancelling():  # what is left is not kept for a stream: it may never drain
            raise asyncio.CancelledError
        await self._off_loop(_write_all, self._stream, data)
        self.offset += len(data)

    async def hash_into(self, hasher: Hasher, start: int) -> None:
        # Everything written to a stream was hashed on the way: nothing to catch up.
        assert start == self.offset

    async def restart(self) -> None:
        if self.offset:
            raise ProtocolError("the server cannot resume, and standard output cannot rewind")

    async def commit(self, stamp: Stamp | None = None) -> None:
        await self._off_loop(self._stream.flush)  # a stream has no mtime to set

    async def release(self, keep: bool) -> None:
        # When cancelled, a flush could wait for the reader: skipped.
        if not self._stuck and not _cancelling():
            await self._off_loop(self._stream.flush)

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        work = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.shield(work)
        except BrokenPipeError as exc:
            self._stuck = True  # nothing more can be flushed to a reader that is gone
            raise output_error(exc) from None
        except asyncio.CancelledError:
            self._stuck = True
            # Left to finish in its thread; its error, if any, has no one left to tell.
            work.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise


def _write_all(stream: IO[bytes], data: bytes | bytearray) -> None:
    """All of `data`: a stream may take part of it (a pipe whose reader is leaving); the
    next write then says why (BrokenPipeError)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:  # None (would block) or 0: nothing more will go
            raise BrokenPipeError(errno.EPIPE, "the output stream took no more bytes")
        view = view[written:]


def _cancelling() -> bool:
    """Whether the current task is being cancelled (known from Python 3.11 on)."""
    return bool(getattr(asyncio.current_task(), "cancelling", lambda: 0)())


async def ensure_directory(directory: Path) -> bool:
    """Create `directory` when missing; `LocalIOError` naming it when it cannot be used.
    True when it holds nothing (or an empty working folder): then no final file can be there
    to skip and no `.part` to resume, but what this run or a concurrent one makes."""
    try:
        await aiofiles.os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(f"cannot use directory {directory}: {exc.strerror or exc}") from None
    if not await aiofiles.os.access(directory, os.W_OK | os.X_OK):
        raise LocalIOError(f"cannot write to directory {directory}: Permission denied")
    return await asyncio.to_thread(_holds_nothing, directory)


def _holds_nothing(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name != WORK_DIR or not entry.is_dir(follow_symlinks=False):
                return False
            with os.scandir(entry.path) as inside:
                if next(inside, None) is not None:
                    return False
    return True


async def exists(path: Path) -> bool:
    """Whether a final name is taken (`_final_there`: a directory there is an error)."""
    return await asyncio.to_thread(_final_there, path)


async def remove_empty_work_dirs(directories: Iterable[Path]) -> None:
    """Remove the working folders of `directories` that hold nothing any more."""

    def remove() -> None:
        for directory in directories:
            with suppress(OSError):  # not empty (kept .part files, another run), or gone
                os.rmdir(directory / WORK_DIR)

    await uninterrupted(asyncio.to_thread(remove))


async def uninterrupted(work: Awaitable[T]) -> tuple[T, bool]:
    """Run `work` to its end through any number of cancellations; say if one came.

    A hop to a worker thread cannot be stopped once it runs: awaiting it to the end keeps the
    caller's account (offsets, open descriptors) true to what really happened on disk."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return task.result(), cancelled


# In worker threads ---------------------------------------------------------------------------


def _claim(
    part: Path,
    meta: Path,
    final: Path,
    url: str | None,
    skip_if_there: bool,
    checked: bool,
    compare: bool = False,
) -> Claim | Found:
    if _final_there(final) and skip_if_there:
        return Found.THERE  # the usual rerun: nothing created, nothing locked
    if not checked:
        work_dir_ready(part.parent)
    fd = _open_locked(part)
    if fd is None:
        return Found.BUSY
    try:
        there = os.path.lexists(final)
        if there and skip_if_there:  # another run finished it meanwhile
            _release(fd, part, meta, keep=False)
            return Found.THERE
        size = os.fstat(fd).st_size
        # An empty .part has nothing to resume: its sidecar, if any, is not worth a read.
        state = _read_meta(meta, url) if url is not None and size else None
        current = _current_stamp(final) if compare and there else None
    except BaseException:
        os.close(fd)
        raise
    if state is not None and not part_matches(size, state):
        state = None
    return Claim(fd, there, size, state, current)


def _current_stamp(final: Path) -> Stamp:
    """The version a final file holds: its mtime and kept ETag. Nothing for anything but a
    regular file (a symlink there is never followed: it is replaced, as with overwrite)."""
    try:
        info = os.lstat(final)
    except FileNotFoundError:  # removed since it was seen: nothing to compare with
        return Stamp()
    if not stat.S_ISREG(info.st_mode):
        return Stamp()
    try:
        etag = os.getxattr(final, ETAG_XATTR, follow_symlinks=False).decode("ascii")
    except (OSError, UnicodeDecodeError, AttributeError):  # none kept, or no xattrs here
        etag = None
    return Stamp(info.st_mtime, etag)


def _final_there(final: Path) -> bool:
    """Whether something is at the final name; a dangling symlink counts, and is never
    followed. A directory there can never be replaced by a file: `LocalIOError`."""
    try:
        info = os.lstat(final)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode):
        raise LocalIOError(f"cannot save {final}: it is a directory")
    return True


def _open_locked(part: Path) -> int | None:
    """The `.part`, opened (created if missing) and locked; None when another holds the lock.

    The lock is on the file, so a holder that renamed or removed it meanwhile leaves us a
    stale descriptor: check that the name still leads to what we locked, else try again."""
    while True:
        fd = _open_part(part)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _still_named(fd, part):
            return fd
        os.close(fd)


def _open_part(part: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | os.O_NONBLOCK
    for _ in range(3):
        try:
            fd = os.open(part, flags, 0o666)
        except FileNotFoundError:
            work_dir_ready(part.parent)  # another run removed it, done with it, just now
            continue
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(part)  # a symlink planted at our name: removed, never followed
            continue
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            os.set_blocking(fd, True)
            return fd
        os.close(fd)  # planted at our name (a FIFO, a device, a hard link to a victim): not ours
        os.unlink(part)
    raise LocalIOError(f"cannot create {part}: something keeps taking its place")


def work_dir_ready(directory: Path) -> None:
    """The working folder, made when missing; a symlink or file there is refused (blocking:
    call it in a thread, or where blocking is fine)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise LocalIOError(f"cannot save in {directory.parent}: no such folder") from None
        info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise LocalIOError(f"{directory} is in the way of aiowget's working files (not a folder)")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        # Another user could swap a .part for bytes of their own before the rename.
        raise LocalIOError(f"{directory} belongs to another user or is writable by others")


def make_folders(directory: Path, folders: Iterable[str]) -> None:
    """`directory/folder/...` (`--naming tree`), made one component at a time relative to
    its parent's descriptor, each opened with `O_NOFOLLOW`: a symlink already there (planted
    to lead the files elsewhere) or a file is `LocalIOError`, and nothing is made through it.
    (Blocking: call it in a thread, or where blocking is fine.)"""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    path = directory
    try:
        for folder in folders:
            path = path / folder
            if folder in ("", ".", "..") or "/" in folder or "\0" in folder:
                raise LocalIOError(f"cannot save in {path}: not a plain folder name")
            with suppress(FileExistsError):
                os.mkdir(folder, 0o777, dir_fd=fd)
            inner = _open_folder(fd, folder, path)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


def _open_folder(parent: int, name: str, path: Path) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a symlink
            raise
        link = stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode)
        what = "a symlink (not followed)" if link else "not a folder"
        raise LocalIOError(f"cannot save in {path}: it is {what}") from None


def _still_named(fd: int, part: Path) -> bool:
    try:
        named = os.lstat(part)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _read_meta(meta: Path, url: str) -> PartState | None:
    try:
        # Non-blocking: a FIFO planted there reads as nothing instead of waiting for ever.
        flags = os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK
        with open(meta, "rb", opener=lambda p, f: os.open(p, flags)) as f:
            fields: dict[str, Any] = json.loads(f.read(1 << 20) or b"null")
        if fields["key"] != url_key(url):
            return None
        segments = fields.get("segments")
        return PartState(
            url=url,
            validator=_optional(fields["validator"], str),
            total=_optional(fields["total"], int),
            segments=None if segments is None else tuple(map(_segment, segments)),
        )
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # anything but a sidecar of ours: start from the first byte


def _optional(value: Any, kind: type[T]) -> T | None:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}")
    return value


def _segment(fields: list[int]) -> tuple[int, int, int]:
    start, end, done = (_optional(f, int) for f in fields)
    if start is None or end is None or done is None:
        raise TypeError("a segment is three numbers")
    return start, end, done


def _write_meta(meta: Path, state: PartState) -> None:
    """Written to a fresh temporary file, then renamed: a reader sees all of it or none."""
    record = {
        "key": url_key(state.url),
        "validator": state.validator,
        "total": state.total,
        "segments": state.segments,
    }
    temporary = meta.with_name(meta.name + ".tmp")
    with suppress(FileNotFoundError):
        os.unlink(temporary)  # a stale one, or a symlink planted there: never written through
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    with open(fd, "wb") as file:
        file.write(json.dumps(record).encode())
    os.replace(temporary, meta)


def _begin(fd: int, meta: Path, at: int, state: PartState) -> BinaryIO:
    """Cut the `.part` to `at`, record `state`, and give a writer that appends from there."""
    os.ftruncate(fd, at)  # first: a new sidecar never describes an old version's bytes
    _write_meta(meta, state)
    os.lseek(fd, at, os.SEEK_SET)
    return open(fd, "wb", closefd=False)


def _begin_split(fd: int, meta: Path, state: PartState, fresh: bool) -> None:
    assert state.total is not None
    if fresh:
        os.ftruncate(fd, 0)
        _write_meta(meta, state)
        os.ftruncate(fd, state.total)
    elif os.fstat(fd).st_size != state.total:
        raise ProtocolError("the .part is not the size its segments describe")


def _write_all_at(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# How a `.part` becomes its final file: (`--fsync`, the run's Disk, the version's Stamp).
Saving = tuple[bool, Disk, Stamp | None]


def _claim_write_whole(
    part: Path,
    final: Path,
    meta: Path,
    data: bytes | bytearray,
    saving: Saving,
    skip_if_there: bool,
    checked: bool,
) -> Found | None:
    claim = _claim(part, meta, final, None, skip_if_there, checked)
    if isinstance(claim, Found):
        return claim
    _write_whole(claim.fd, part, final, meta, data, saving)
    return None


def _write_whole(
    fd: int, part: Path, final: Path, meta: Path, data: bytes | bytearray, saving: Saving
) -> None:
    try:
        os.ftruncate(fd, 0)
        _write_all_at(fd, data, 0)
    except BaseException:
        _release(fd, part, meta, keep=False)
        raise
    _commit(fd, part, final, meta, saving)


def _commit(fd: int, part: Path, final: Path, meta: Path, saving: Saving) -> None:
    """Stamp the whole `.part` (mtime, ETag), rename it into place, then unlock. The sidecar
    goes first: once the name is free, another run may claim a new `.part` and write a
    sidecar of its own. `durable` (`--fsync`): the file's bytes reach the disk before the
    rename, and the folder (the rename itself) after it, so a power cut leaves the old name or
    the whole new file. The rename replaces an older file at once: a reader holding it open
    goes on reading it whole."""
    durable, disk, stamp = saving
    try:
        disk.stamp(fd, stamp)
        if durable:
            os.fsync(fd)
        with suppress(FileNotFoundError):
            os.unlink(meta)
        try:
            os.replace(part, final)
        except IsADirectoryError:
            os.unlink(part)  # whole, but nowhere to go: not kept as if it could be resumed
            raise LocalIOError(f"cannot save {final}: it is a directory") from None
        if durable:
            _fsync_folder(final.parent)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _release(fd: int, part: Path, meta: Path, keep: bool) -> None:
    """Remove the working files unless `keep` (still under the lock), then unlock."""
    try:
        if not keep:
            _remove_named(part, fd)
            with suppress(FileNotFoundError):
                os.unlink(meta)
    finally:
        os.close(fd)


def _remove_named(part: Path, fd: int) -> None:
    # Only the file we hold: after a commit the name may already be another run's new .part.
    if _still_named(fd, part):
        os.unlink(part)


def _empty(fd: int, meta: Path) -> None:
    os.ftruncate(fd, 0)
    with suppress(FileNotFoundError):
        os.unlink(meta)


def _hash_range(fd: int, hasher: Hasher, start: int, end: int) -> None:
    while start < end:
        block = os.pread(fd, min(_READ_SIZE, end - start), start)
        if not block:
            break
        hasher.update_now(block)
        start += len(block)

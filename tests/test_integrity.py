"""Every byte right: a file under its final name is exactly one version the server served.

Each test here reproduces a way an earlier version saved wrong bytes (or failed a correct
file), against real servers on 127.0.0.1 and real processes where signals matter.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import itertools
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import aiowget
from aiowget import Outcome
from aiowget.naming import flat_name
from aiowget.policy import DiskPace
from aiowget.storage import Disk, part_path, url_key

from .conftest import (
    Handler,
    ServeFactory,
    body,
    files_in,
    leave_part,
    meta_path,
    read_meta,
    run_cli,
    static,
)
from .faults import Fault, FaultyFile

MiB = 1 << 20
V1 = body(3 * MiB + 5, "version 1")
V2 = body(3 * MiB + 5, "version 2")
FAST: dict[str, Any] = {"retry_wait": 0}
HOP_SIGNAL = Path(__file__).with_name("hop_signal.py")


def versions(*files: FaultyFile) -> Handler:
    """Request n is answered by `files[n]` (the last one from then on): the file changes."""
    count = itertools.count()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await files[min(next(count), len(files) - 1)].handler(request)

    return handler


def ranges(*files: FaultyFile) -> list[str | None]:
    return [r for f in files for r in f.ranges()]


# Interrupted at every hop to the disk, then run again ------------------------------------


async def interrupt_at_step(
    number: signal.Signals, step: int, mode: str, *args: str | Path
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        HOP_SIGNAL,
        number.name,
        str(step),
        mode,
        "--progress",
        "none",
        *map(str, args),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def assert_part_is_what_its_sidecar_says(final: Path) -> None:
    """What an interrupted run keeps for resuming is a prefix of the version it names."""
    part, meta = part_path(final), meta_path(final)
    if part.exists() and meta.exists():
        named = {'"v1"': V1, '"v2"': V2}[read_meta(final)["validator"]]
        assert named.startswith(part.read_bytes()), "the .part is not what its sidecar says"


@pytest.mark.parametrize(
    ("number", "mode", "earlier"),
    [
        (signal.SIGINT, "hops", None),
        (signal.SIGINT, "hops", V1[: 2 * MiB]),
        (signal.SIGKILL, "steps", V1[: 2 * MiB]),
    ],
    ids=["SIGINT-at-each-hop", "SIGINT-at-each-hop-v1-left", "SIGKILL-at-each-step-v1-left"],
)
async def test_interrupted_at_every_step_the_rerun_saves_the_exact_bytes(
    serve: ServeFactory, tmp_path: Path, number: signal.Signals, mode: str, earlier: bytes | None
) -> None:
    """SIGINT while a write ran used to write its chunk twice (the rerun then resumed after a
    duplicate); SIGKILL between writing a new sidecar and emptying the old `.part` used to
    make the rerun append version 2 to version 1. Here every step is tried in turn."""
    current = FaultyFile(V2, etag='"v2"')
    server = await serve({"/f": current.handler})
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    for step in itertools.count(1):
        assert step < 80, "more steps than any download of one file makes"
        final.unlink(missing_ok=True)
        if earlier is not None:
            leave_part(final, url, earlier, validator='"v1"', total=len(V1))

        status, stderr = await interrupt_at_step(number, step, mode, "-P", tmp_path, url)

        assert "Traceback" not in stderr
        assert "never retrieved" not in stderr  # asyncio's noise after a Ctrl-C
        assert not final.exists() or final.read_bytes() == V2
        if status == 0 and f"steps: {step - 1}\n" in stderr:
            break  # the whole download needed fewer steps: every one has been tried
        assert status in (0, 130) if number is signal.SIGINT else status == -signal.SIGKILL
        assert_part_is_what_its_sidecar_says(final)
        rerun = await run_cli("-P", tmp_path, url)
        assert rerun.exit_code == 0, rerun.stderr
        assert final.read_bytes() == V2, f"wrong bytes after an interrupt at step {step}"
        assert files_in(tmp_path) == [final.name]
    assert step > 5


# Working files never share a name with a final file ---------------------------------------


async def test_a_url_ending_in_part_never_meets_another_downloads_working_file(
    serve: ServeFactory, tmp_path: Path
) -> None:
    x, x_part = body(2 * MiB, "x"), body(2 * MiB, "x.part")
    routes = {"/x": static(x, ETag='"x"'), "/x.part": static(x_part, ETag='"xp"')}
    server = await serve(routes)
    urls = [server.url("/x"), server.url("/x.part")]

    results = await aiowget.download(urls, tmp_path, naming="basename", jobs=2)

    assert [r.outcome for r in results] == [Outcome.SAVED] * 2
    assert (tmp_path / "x").read_bytes() == x
    assert (tmp_path / "x.part").read_bytes() == x_part

    (tmp_path / "x").unlink()
    again = await aiowget.download(urls[:1], tmp_path, naming="basename")

    assert again[0].outcome is Outcome.SAVED
    assert (tmp_path / "x.part").read_bytes() == x_part  # a saved file, never taken for a .part
    assert files_in(tmp_path) == ["x", "x.part"]


async def test_a_sidecar_planted_for_another_url_is_not_resumed(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(V1)
    server = await serve({"/x": faulty.handler})
    final = tmp_path / "x"
    # Another origin served `x.part`, and something forged a sidecar: neither is /x's.
    leave_part(final, "http://127.0.0.2/x", b"planted" * 1000, total=len(V1))

    result = await aiowget.download([server.url("/x")], tmp_path, naming="basename")

    assert result[0].outcome is Outcome.SAVED
    assert final.read_bytes() == V1
    assert faulty.ranges() == [None]  # fetched from the first byte


async def test_a_name_that_would_be_the_working_folder_is_escaped(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/.aiowget": static(b"dotted", ETag='"d"')})

    result = await run_cli("--naming", "basename", "-P", tmp_path, server.url("/.aiowget"))

    assert result.exit_code == 0
    assert (tmp_path / "%2Eaiowget").read_bytes() == b"dotted"
    assert files_in(tmp_path) == ["%2Eaiowget"]


async def test_a_sidecar_holds_no_url_and_only_its_owner_reads_it(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(V1, [Fault(cut_after=2 * MiB)])
    server = await serve({"/f": faulty.handler})
    url = server.url("/f").replace("http://", "http://user:S3CRET@")

    result = await aiowget.download([url], tmp_path, retries=0)

    final = tmp_path / flat_name(url)
    assert result[0].outcome is Outcome.FAILED
    meta = meta_path(final)
    assert b"S3CRET" not in meta.read_bytes()
    assert url_key(url) in meta.read_text()
    assert meta.stat().st_mode & 0o777 == 0o600
    assert part_path(final).parent.stat().st_mode & 0o777 == 0o700


# -O PATH --if-exists rename --------------------------------------------------------------


async def test_output_path_with_if_exists_rename_keeps_the_old_file(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(b"new body")})
    out = tmp_path / "out.bin"
    out.write_bytes(b"OLD")

    result = await run_cli("--if-exists", "rename", "-O", out, server.url("/f"))

    assert result.exit_code == 0
    assert out.read_bytes() == b"OLD"
    assert (tmp_path / "out.bin.1").read_bytes() == b"new body"


# Validators: only a strong one resumes -----------------------------------------------------


async def test_a_weak_etag_never_resumes_so_two_versions_never_mix(
    serve: ServeFactory, tmp_path: Path
) -> None:
    first = FaultyFile(V1, [Fault(cut_after=2 * MiB)], etag='W/"v1"')
    then = FaultyFile(V2, etag='W/"v2"')
    server = await serve({"/f": versions(first, then)})
    notices: list[aiowget.Event] = []

    async with aiowget.Downloader(directory=tmp_path, on_event=notices.append, **FAST) as dl:
        result = await dl.download_one(server.url("/f"))

    assert result.outcome is Outcome.SAVED
    assert result.path is not None
    assert result.path.read_bytes() == V2
    assert ranges(first, then) == [None, None]  # the retry asked for the whole file
    said = [e.message for e in notices if isinstance(e, aiowget.Notice)]
    assert len(said) == 1
    assert "no strong validator" in said[0]


async def test_a_206_naming_another_etag_is_not_appended(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # The server ignores If-Range and answers the range from a new version (weak ETag).
    first = FaultyFile(V1, [Fault(cut_after=2 * MiB)], etag='"v1"')
    then = FaultyFile(V2, [Fault(ignore_if_range=True)], etag='W/"v2"')
    server = await serve({"/f": versions(first, then)})

    (result,) = await aiowget.download([server.url("/f")], tmp_path, **FAST)

    assert result.path is not None
    assert result.path.read_bytes() == V2
    asked = ranges(first, then)
    assert asked[0] is None
    assert asked[1] is not None  # resumed against "v1", answered from W/"v2": dropped
    assert asked[2:] == [None]


async def test_a_206_naming_no_validator_is_not_appended(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # The file changed; the server ignores If-Range and sends the range with no ETag at all.
    first = FaultyFile(V1, [Fault(cut_after=2 * MiB)], etag='"v1"')
    then = FaultyFile(V2, [Fault(ignore_if_range=True)], etag=None)
    server = await serve({"/f": versions(first, then)})

    (result,) = await aiowget.download([server.url("/f")], tmp_path, **FAST)

    assert result.path is not None
    assert result.path.read_bytes() == V2
    assert ranges(first, then)[2:] == [None]  # the 206 was dropped: the whole file again


async def test_a_416_of_another_version_does_not_finish_the_file(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # No length at first; cut at 2 MiB. The file is now 2 MiB long: a 416 to "bytes=2MiB-".
    shorter = V2[: 2 * MiB]
    first = FaultyFile(V1, [Fault(chunked=True, cut_after=2 * MiB)], etag='"v1"')
    then = FaultyFile(shorter, [Fault(ignore_if_range=True)], etag='"v2"')
    server = await serve({"/f": versions(first, then)})

    (result,) = await aiowget.download([server.url("/f")], tmp_path, **FAST)

    assert result.path is not None
    assert result.path.read_bytes() == shorter
    assert ranges(first, then) == [None, f"bytes={2 * MiB}-", None]


async def test_a_206_without_a_total_is_held_to_its_content_range(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # No length in the first response; the 206 promises the rest but ends cleanly 1000 early.
    faulty = FaultyFile(V1, [Fault(chunked=True, cut_after=MiB), Fault(chunked=True, short=1000)])
    server = await serve({"/f": faulty.handler})

    (result,) = await aiowget.download([server.url("/f")], tmp_path, **FAST)

    assert result.outcome is Outcome.SAVED
    assert result.path is not None
    assert result.path.read_bytes() == V1
    assert result.attempts == 3
    assert faulty.ranges()[2] == f"bytes={len(V1) - 1000}-"


# Hashes follow the bytes -------------------------------------------------------------------


async def test_switching_to_split_after_a_cut_hashes_the_new_version(
    serve: ServeFactory, tmp_path: Path
) -> None:
    # Version 1 streams (no ranges), is cut; the retry gets version 2, fetched in segments.
    first = FaultyFile(V1, [Fault(headers={"Accept-Ranges": "none"}, cut_after=MiB)])
    then = FaultyFile(V2, etag='"v2"')
    server = await serve({"/f": versions(first, then)})
    checksum = aiowget.Checksum("sha256", hashlib.sha256(V2).hexdigest())

    async with aiowget.Downloader(directory=tmp_path, split=3, compute_sha256=True, **FAST) as dl:
        result = await dl.download_one(aiowget.Job(server.url("/f"), checksum=checksum))

    assert result.outcome is Outcome.SAVED, result.error
    assert result.path is not None
    assert result.path.read_bytes() == V2
    assert result.sha256 == checksum.hexdigest
    assert len(then.requests) > 2  # really split


async def test_a_resumed_file_that_shrank_to_a_small_body_is_saved(
    serve: ServeFactory, tmp_path: Path
) -> None:
    small = body(500_000, "small version 2")
    faulty = FaultyFile(small, etag='"v2"')
    server = await serve({"/f": faulty.handler})
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    leave_part(final, url, V1[: 2 * MiB], validator='"v1"', total=len(V1))

    result = await run_cli("-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == small
    assert faulty.ranges() == [f"bytes={2 * MiB}-"]  # one request: If-Range found it changed
    assert files_in(tmp_path) == [final.name]


# Two runs, one directory -------------------------------------------------------------------


@pytest.mark.parametrize(("if_exists", "names"), [("skip", [""]), ("rename", ["", ".1"])])
async def test_two_runs_on_one_directory_both_succeed_and_every_final_file_is_whole(
    serve: ServeFactory, tmp_path: Path, if_exists: str, names: list[str]
) -> None:
    # The first run's body pauses at 1 MiB until the second run says it is waiting for it.
    go_on = asyncio.Event()
    requests = 0

    async def paused(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        response = web.StreamResponse(headers={"Content-Length": str(len(V1)), "ETag": '"v1"'})
        await response.prepare(request)
        await response.write(V1[:MiB])
        await go_on.wait()
        await response.write(V1[MiB:])
        return response

    server = await serve({"/file": paused})
    url = server.url("/file")
    args = ["--progress", "none", "--naming", "basename", "--if-exists", if_exists]
    final = tmp_path / "file"

    first = await start(*args, "-P", tmp_path, url)
    await wait_until(lambda: part_path(final).exists() and part_path(final).stat().st_size > 0)
    second = await start(*args, "-P", tmp_path, url)
    assert second.stderr is not None
    waiting = await asyncio.wait_for(second.stderr.readline(), timeout=30)
    go_on.set()
    seen = 0
    while first.returncode is None or second.returncode is None:
        for path in tmp_path.iterdir():
            if path.is_file():  # at every moment, a final name holds the whole file
                assert path.read_bytes() == V1, f"{path.name} is not whole"
                seen += 1
        await asyncio.sleep(0.01)

    assert b"being fetched by another transfer; waiting" in waiting
    assert (first.returncode, second.returncode) == (0, 0)
    assert seen > 0
    assert files_in(tmp_path) == ["file" + n for n in names]
    assert all((tmp_path / ("file" + n)).read_bytes() == V1 for n in names)
    assert requests == len(names)


async def start(*args: str | Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", *map(str, args), stderr=asyncio.subprocess.PIPE
    )
    asyncio.get_running_loop().create_task(process.wait())
    return process


async def wait_until(condition: Any, seconds: float = 20) -> None:
    """Poll the file system (it has no event to wait on) until `condition()` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


# Planted symlinks among the working files ---------------------------------------------------


async def test_symlinks_planted_among_the_working_files_are_never_written_through(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(2 * MiB, "big enough to write a sidecar")
    server = await serve({"/f": static(content, ETag='"v1"')})
    url = server.url("/f")
    directory = tmp_path / "dl"
    final = directory / flat_name(url)
    part = part_path(final)
    part.parent.mkdir(parents=True)
    victims = {}
    for planted in (part, meta_path(final), meta_path(final).with_suffix(".meta.tmp")):
        victim = tmp_path / f"victim-{planted.name}"
        victim.write_bytes(b"precious")
        planted.symlink_to(victim)
        victims[victim] = planted

    result = await run_cli("-P", directory, url)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == content
    assert {v.name: v.read_bytes() for v in victims} == {v.name: b"precious" for v in victims}
    assert files_in(directory) == [final.name]


async def test_a_working_folder_that_is_a_symlink_is_refused(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(body(2 * MiB, "f"), ETag='"v1"')})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    directory = tmp_path / "dl"
    directory.mkdir()
    (directory / ".aiowget").symlink_to(elsewhere)

    result = await run_cli("-P", directory, server.url("/f"))

    assert result.exit_code == 3
    assert ".aiowget" in result.stderr
    assert list(elsewhere.iterdir()) == []


# Sidecars and working files that are not what they should be --------------------------------


@pytest.mark.parametrize(
    "sidecar",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser goes
        b'{"key": "%s", "validator": 7, "total": null, "segments": null}',
        b'{"key": "%s", "validator": "\\"v1\\"", "total": "many", "segments": null}',
        b'{"key": "%s", "validator": "\\"v1\\"", "total": true, "segments": null}',
        b'{"key": "%s", "validator": "\\"v1\\"", "total": 9, "segments": [[0, null, 1]]}',
        b'{"key": "%s", "validator": "\\"v1\\"", "total": 9, "segments": [[0, 8]]}',
        b"null",
        b"",
    ],
    ids=[
        "nested",
        "validator",
        "total-str",
        "total-bool",
        "segment-null",
        "segment-short",
        "null",
        "empty",
    ],
)
async def test_a_sidecar_that_is_not_one_of_ours_starts_over(
    serve: ServeFactory, tmp_path: Path, sidecar: bytes
) -> None:
    faulty = FaultyFile(V1)
    server = await serve({"/f": faulty.handler})
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    leave_part(final, url, V1[:1000])
    meta_path(final).write_bytes(sidecar.replace(b"%s", url_key(url).encode()))

    result = await run_cli("-P", tmp_path, url)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == V1
    assert faulty.ranges() == [None]


async def test_a_fifo_at_the_sidecar_does_not_hang_the_run(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(V1, ETag='"v1"')})
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    part_path(final).parent.mkdir()
    os.mkfifo(meta_path(final))

    result = await asyncio.wait_for(run_cli("-P", tmp_path, url), timeout=30)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == V1


async def test_a_hard_link_planted_at_the_part_is_not_written_through(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(V1, ETag='"v1"')})
    url = server.url("/f")
    final = tmp_path / "dl" / flat_name(url)
    part_path(final).parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.link(victim, part_path(final))

    result = await run_cli("-P", tmp_path / "dl", url)

    assert result.exit_code == 0, result.stderr
    assert final.read_bytes() == V1
    assert victim.read_bytes() == b"precious"


async def test_a_working_folder_others_can_write_to_is_refused(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(V1, ETag='"v1"')})
    (tmp_path / ".aiowget").mkdir()
    (tmp_path / ".aiowget").chmod(0o777)

    result = await run_cli("-P", tmp_path, server.url("/f"))

    assert result.exit_code == 3
    assert "writable by others" in result.stderr
    assert not (tmp_path / flat_name(server.url("/f"))).exists()


async def test_output_at_the_working_folders_name_is_a_usage_error(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(V1, ETag='"v1"')})

    result = await run_cli("-O", tmp_path / ".aiowget", server.url("/f"))

    assert result.exit_code == 2
    assert "working folder" in result.stderr
    assert files_in(tmp_path) == []


async def test_a_final_name_that_is_a_directory_keeps_nothing(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(V1, ETag='"v1"')})
    url = server.url("/f")
    (tmp_path / flat_name(url)).mkdir()

    result = await run_cli("--if-exists", "overwrite", "-P", tmp_path, url)

    assert result.exit_code == 3
    assert f"cannot save {tmp_path / flat_name(url)}: it is a directory" in result.stderr
    assert files_in(tmp_path) == [flat_name(url)]


async def test_a_plain_download_says_nothing_but_its_result(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(V1, [Fault(cut_after=2 * MiB)])
    server = await serve({"/f": faulty.handler})
    events: list[aiowget.Event] = []

    async with aiowget.Downloader(directory=tmp_path, on_event=events.append, **FAST) as dl:
        result = await dl.download_one(server.url("/f"))

    assert result.outcome is Outcome.SAVED
    assert not [e for e in events if isinstance(e, aiowget.Notice)]  # resumed: nothing to say
    umask = os.umask(0o022)
    os.umask(umask)
    assert result.path is not None
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o666 & ~umask  # as any new file


async def test_two_calls_for_one_path_never_mix_their_bodies(
    serve: ServeFactory, tmp_path: Path
) -> None:
    first, second = FaultyFile(V1, [Fault(trickle=(256 * 1024, 0.01))]), FaultyFile(V2)
    server = await serve({"/a": first.handler, "/b": second.handler})
    target = tmp_path / "one.bin"
    events: list[aiowget.Event] = []

    async with aiowget.Downloader(directory=tmp_path, on_event=events.append, **FAST) as dl:
        a = asyncio.ensure_future(dl.download_one(server.url("/a"), target))
        await wait_until(lambda: part_path(target).exists() and part_path(target).stat().st_size)
        b = await dl.download_one(server.url("/b"), target)
        a_result = await a

    assert (a_result.outcome, b.outcome) == (Outcome.SAVED, Outcome.SKIPPED)
    assert b.note == "already there"
    assert target.read_bytes() == V1
    (waited,) = [e for e in events if isinstance(e, aiowget.Notice)]
    assert waited.url == server.url("/b")
    assert second.requests == []  # the second call waited for the file, then found it there


@pytest.mark.parametrize("if_exists", ["skip", "overwrite", "rename"])
async def test_output_at_an_existing_directory_is_a_clear_local_error(
    serve: ServeFactory, tmp_path: Path, if_exists: str
) -> None:
    faulty = FaultyFile(V1)
    server = await serve({"/f": faulty.handler})
    target = tmp_path / "a-directory"
    target.mkdir()

    result = await run_cli("--if-exists", if_exists, "-O", target, server.url("/f"))

    assert result.exit_code == 3
    assert f"cannot save {target}: it is a directory" in result.stderr
    assert files_in(tmp_path) == ["a-directory"]
    assert faulty.requests == []  # refused before asking


# A directory that held nothing when the run began: no look at the disk before the request -----


async def test_in_a_fresh_directory_a_file_saved_meanwhile_by_another_run_is_skipped(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """No probe before the request (nothing can be there), so the .part is claimed when the
    body is written: the other run's file, saved while this one asked, is kept, not replaced."""
    directory = tmp_path / "fresh"

    async def other_run_finishes_first(request: web.Request) -> web.StreamResponse:
        (directory / flat_name(str(request.url))).write_bytes(b"saved by another run")
        return web.Response(body=b"this run's copy")

    server = await serve({"/f": other_run_finishes_first})
    (result,) = await aiowget.download([server.url("/f")], directory)

    assert (result.outcome, result.note) == (Outcome.SKIPPED, "already there")
    assert (directory / flat_name(server.url("/f"))).read_bytes() == b"saved by another run"
    assert files_in(directory) == [flat_name(server.url("/f"))]


async def test_in_a_fresh_directory_a_part_held_by_another_run_is_waited_for(
    serve: ServeFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "fresh"
    held: list[int] = []
    notices: list[str] = []

    async def other_run_holds_the_part(request: web.Request) -> web.StreamResponse:
        final = directory / flat_name(str(request.url))
        part = part_path(final)
        part.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
        return web.Response(body=b"this run's copy")

    def release_once_told(event: aiowget.Event) -> None:
        if isinstance(event, aiowget.Notice):
            notices.append(event.message)
            (directory / flat_name(event.url)).write_bytes(b"saved by another run")
            os.close(held.pop())  # the other run is done: its lock goes with its descriptor

    server = await serve({"/f": other_run_holds_the_part})
    (result,) = await aiowget.download([server.url("/f")], directory, on_event=release_once_told)

    assert result.outcome is Outcome.SKIPPED
    assert len(notices) == 1
    assert "being fetched by another transfer" in notices[0]
    assert (directory / flat_name(server.url("/f"))).read_bytes() == b"saved by another run"


async def test_a_name_saved_by_an_exact_path_is_not_asked_for_again(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f/c.bin": static(b"c" * 4000)})
    url = server.url("/f/c.bin")
    directory = tmp_path / "fresh"
    async with aiowget.Downloader(directory=directory, naming="basename") as dl:
        first = await dl.download_one(url, directory / "c.bin")
        again = await dl.download_one(url)

    assert (first.outcome, again.outcome, again.note) == (
        Outcome.SAVED, Outcome.SKIPPED, "already there",
    )  # fmt: skip
    assert len(server.gets()) == 1


async def test_small_disk_work_runs_in_the_loop_until_the_disk_is_slow() -> None:
    # A slow inline operation (here: every one is) sends the next to a thread.
    disk = Disk(DiskPace(very_slow=0.0, backoff=3600.0))
    first, cancelled = await disk.run(threading.current_thread)
    second, _ = await disk.run(threading.current_thread)
    assert (first, cancelled) == (threading.main_thread(), False)
    assert second is not threading.main_thread()

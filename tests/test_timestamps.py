"""Server timestamps, kept ETags and `--if-exists update` (-N), against real servers (#17)."""

from __future__ import annotations

import email.utils
import errno
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from aiohttp import web

import aiowget
from aiowget import distributed
from aiowget.demo import serving
from aiowget.naming import flat_name
from aiowget.storage import ETAG_XATTR

from .conftest import ServeFactory, Server, body, leave_part, run_cli, static

OLD = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
NEW = datetime(2023, 8, 9, 10, 11, 12, tzinfo=timezone.utc)


@dataclass
class Site:
    """One file whose version (bytes, ETag, date) the test changes between runs; answers a
    conditional GET as RFC 9110 13.2.2 says (If-None-Match first, If-Modified-Since else)."""

    content: bytes = field(default_factory=lambda: body(5000, "v1"))
    etag: str | None = '"v1"'
    modified: datetime | None = OLD

    def change(self, content: bytes, etag: str, modified: datetime) -> None:
        self.content, self.etag, self.modified = content, etag, modified

    async def handler(self, request: web.Request) -> web.StreamResponse:
        headers = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.modified is not None:
            headers["Last-Modified"] = email.utils.format_datetime(self.modified, usegmt=True)
        if self._current(request):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.content, headers=headers)

    def _current(self, request: web.Request) -> bool:
        match = request.headers.get("If-None-Match")
        if match is not None:
            return self.etag is not None and match.removeprefix("W/") == self.etag
        since = request.headers.get("If-Modified-Since")
        if since is None or self.modified is None:
            return False
        return self.modified <= email.utils.parsedate_to_datetime(since)


async def start(serve: ServeFactory, site: Site) -> Server:
    return await serve({"/data/file.bin": site.handler})


def xattrs_work(directory: Path) -> bool:
    """Whether the filesystem of `directory` keeps user extended attributes."""
    probe = directory / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True


def kept_etag(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, ETAG_XATTR)
    except OSError:
        return None


def records(stdout: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


# The first run -----------------------------------------------------------------------------


async def test_a_saved_file_takes_the_servers_date_and_keeps_its_etag(
    serve: ServeFactory, tmp_path: Path
) -> None:
    site = Site()
    server = await start(serve, site)

    results = await aiowget.download([server.url("/data/file.bin")], tmp_path)

    (result,) = results
    assert result.path is not None
    assert result.path.read_bytes() == site.content
    assert result.path.stat().st_mtime == OLD.timestamp()
    assert result.last_modified == OLD
    if xattrs_work(tmp_path):
        assert kept_etag(result.path) == b'"v1"'


async def test_json_reports_last_modified(serve: ServeFactory, tmp_path: Path) -> None:
    server = await start(serve, Site())

    result = await run_cli("--json", "-P", tmp_path, server.url("/data/file.bin"))

    record, summary = records(result.stdout)
    assert result.exit_code == 0
    assert record["last_modified"] == "2021-03-04T05:06:07Z"
    assert summary["unchanged"] == 0


async def test_no_server_timestamps_leaves_the_time_of_saving(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await start(serve, Site())
    before = time.time()

    url = server.url("/data/file.bin")

    result = await run_cli("-q", "--no-server-timestamps", "-P", tmp_path, url)

    path = tmp_path / flat_name(url)
    assert result.exit_code == 0
    assert before - 2 <= path.stat().st_mtime <= time.time() + 2


@pytest.mark.parametrize(
    "modified",
    ["not a date", "Wed, 01 Jan 2098 00:00:00 GMT"],  # unparseable; in the future
)
async def test_a_date_that_cannot_be_true_is_not_used(
    serve: ServeFactory, tmp_path: Path, modified: str
) -> None:
    server = await serve({"/f": static(b"x", **{"Last-Modified": modified})})
    before = time.time()

    (result,) = await aiowget.download([server.url("/f")], tmp_path)

    assert result.path is not None
    assert result.path.read_bytes() == b"x"
    assert before - 2 <= result.path.stat().st_mtime <= time.time() + 2


async def test_a_split_download_takes_the_servers_date(serve: ServeFactory, tmp_path: Path) -> None:
    served = tmp_path / "served.bin"
    served.write_bytes(body(3 << 20, "big"))
    os.utime(served, (OLD.timestamp(), OLD.timestamp()))

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(served)  # Range, If-Range, ETag and Last-Modified, all real

    server = await serve({"/big": handler})
    out = tmp_path / "out"

    (result,) = await aiowget.download([server.url("/big")], out, split=3)

    ranged = [seen for seen in server.gets("/big") if "Range" in seen.headers]
    assert len(ranged) == 3  # really split
    assert result.path is not None
    assert result.path.read_bytes() == served.read_bytes()
    assert result.path.stat().st_mtime == OLD.timestamp()


async def test_a_resumed_download_takes_the_servers_date(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(4000, "resumed")

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": '"v1"', "Last-Modified": email.utils.format_datetime(NEW, True)}
        if request.headers.get("Range") == "bytes=1000-":
            headers["Content-Range"] = f"bytes 1000-3999/{len(content)}"
            return web.Response(status=206, body=content[1000:], headers=headers)
        return web.Response(body=content, headers=headers)

    server = await serve({"/f": handler})
    url = server.url("/f")
    final = tmp_path / flat_name(url)
    leave_part(final, url, content[:1000])

    await aiowget.download([url], tmp_path)

    assert server.gets("/f")[0].headers["Range"] == "bytes=1000-"
    assert final.read_bytes() == content
    assert final.stat().st_mtime == NEW.timestamp()


# --if-exists update (-N) ---------------------------------------------------------------------


async def test_update_asks_conditionally_and_a_304_leaves_the_file_untouched(
    serve: ServeFactory, tmp_path: Path
) -> None:
    site = Site()
    server = await start(serve, site)
    url = server.url("/data/file.bin")
    await run_cli("-q", "-P", tmp_path, url)
    path = tmp_path / flat_name(url)
    before = path.stat()

    result = await run_cli("-N", "--json", "-P", tmp_path, url)

    asked = server.gets()[-1].headers
    assert asked["If-Modified-Since"] == "Thu, 04 Mar 2021 05:06:07 GMT"
    if xattrs_work(tmp_path):
        assert asked["If-None-Match"] == '"v1"'
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == site.content
    record, summary = records(result.stdout)
    assert result.exit_code == 0
    assert record["outcome"] == "unchanged"
    assert record["path"] == str(path)
    assert (summary["unchanged"], summary["saved"], summary["exit_code"]) == (1, 0, 0)
    assert f"[=] unchanged {url}: {path}" in result.stderr
    assert "1 unchanged" in result.stderr
    assert not list((tmp_path / ".aiowget").glob("*"))  # no .part left behind


async def test_the_library_reports_unchanged(serve: ServeFactory, tmp_path: Path) -> None:
    site = Site()
    server = await start(serve, site)
    url = server.url("/data/file.bin")
    await aiowget.download([url], tmp_path)

    results = await aiowget.download([url], tmp_path, if_exists="update")

    (result,) = results
    assert result.outcome is aiowget.Outcome.UNCHANGED
    assert result.ok
    assert results.exit_status == aiowget.ExitStatus.OK
    assert result.status == 304
    assert result.size == 0
    assert result.last_modified == OLD
    assert len(server.gets()) == 2


async def test_update_replaces_a_changed_file_atomically(
    serve: ServeFactory, tmp_path: Path
) -> None:
    site = Site()
    server = await start(serve, site)
    url = server.url("/data/file.bin")
    await run_cli("-q", "-P", tmp_path, url)
    path = tmp_path / flat_name(url)
    old = site.content
    new = body(7000, "v2")
    site.change(new, '"v2"', NEW)

    with open(path, "rb") as reader:  # noqa: ASYNC230 - a reader holding the old file
        result = await run_cli("-q", "-N", "-P", tmp_path, url)
        assert reader.read() == old

    assert result.exit_code == 0
    assert path.read_bytes() == new
    assert path.stat().st_mtime == NEW.timestamp()
    if xattrs_work(tmp_path):
        assert kept_etag(path) == b'"v2"'
    assert "If-Modified-Since" in server.gets()[-1].headers


async def test_update_with_nothing_to_compare_fetches_again_and_says_so(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(b"fresh")})
    url = server.url("/f")
    path = tmp_path / flat_name(url)
    path.write_bytes(b"stale")
    future = time.time() + 86400  # a clock that was wrong: no date to ask by, and no ETag
    os.utime(path, (future, future))

    result = await run_cli("-N", "-P", tmp_path, url)

    assert result.exit_code == 0
    assert path.read_bytes() == b"fresh"
    asked = server.gets("/f")[0].headers
    assert "If-Modified-Since" not in asked
    assert "If-None-Match" not in asked
    assert "no ETag or usable modification time to compare with; fetching it again" in (
        result.stderr
    )


async def test_update_of_a_missing_file_fetches_it_plainly(
    serve: ServeFactory, tmp_path: Path
) -> None:
    site = Site()
    server = await start(serve, site)
    url = server.url("/data/file.bin")

    result = await run_cli("-q", "-N", "-P", tmp_path, url)

    assert result.exit_code == 0
    assert (tmp_path / flat_name(url)).read_bytes() == site.content
    assert "If-Modified-Since" not in server.gets()[0].headers


async def test_update_with_an_exact_output_path(serve: ServeFactory, tmp_path: Path) -> None:
    site = Site()
    server = await start(serve, site)
    url = server.url("/data/file.bin")
    out = tmp_path / "exact.bin"
    await run_cli("-q", "-O", out, url)

    result = await run_cli("-N", "--json", "-O", out, url)

    assert records(result.stdout)[0]["outcome"] == "unchanged"
    assert server.gets()[-1].headers["If-Modified-Since"] == "Thu, 04 Mar 2021 05:06:07 GMT"


async def test_n_with_another_if_exists_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cli("-N", "--if-exists", "rename", "-P", tmp_path, "http://127.0.0.1/x")

    assert result.exit_code == 2
    assert "-N is --if-exists update" in result.stderr


def test_update_on_a_shard_reports_unchanged(tmp_path: Path) -> None:
    site = Site()
    app = web.Application()
    app.router.add_get("/data/file.bin", site.handler)
    out = tmp_path / "out"
    with serving(app) as base:
        url = f"{base}/data/file.bin"
        distributed.plan_shards([url], out, 10)
        first = distributed.run_shard(out, 0)
        second = distributed.run_shard(out, 0, {"if_exists": "update"})  # done, run again

    path = out / "shard-00000" / flat_name(url)
    assert first["saved"] == 1
    assert path.stat().st_mtime == OLD.timestamp()
    assert (second["unchanged"], second["saved"], second["exit_status"]) == (1, 0, 0)
    (row,) = map(json.loads, distributed.ShardPaths(out, 0).manifest.read_text().splitlines())
    assert row["outcome"] == "unchanged"
    assert row["last_modified"] == "2021-03-04T05:06:07Z"
    assert row["sha256"]  # measured from disk, as for a skipped file


def test_update_on_a_local_cluster_asks_again_about_done_shards(tmp_path: Path) -> None:
    site = Site()
    app = web.Application()
    app.router.add_get("/data/file.bin", site.handler)
    out = tmp_path / "out"
    # Dask's scratch space (default /tmp/dask-scratch-space) stays inside the test's folder.
    scratch = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}
    with serving(app) as base:
        url = f"{base}/data/file.bin"
        command = [sys.executable, "-m", "aiowget", "--dask", "local:1", "-P", str(out), url]
        first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=scratch)
        site.change(body(6000, "v2"), '"v2"', NEW)
        second = subprocess.run(
            [*command, "-N"], capture_output=True, text=True, timeout=120, env=scratch
        )
        third = subprocess.run(
            [*command, "-N"], capture_output=True, text=True, timeout=120, env=scratch
        )

    path = out / "shard-00000" / flat_name(url)
    assert first.returncode == second.returncode == third.returncode == 0, third.stderr
    assert "1/1 shards done, 1 saved, 0 skipped" in second.stderr  # changed: replaced
    assert path.read_bytes() == site.content
    assert path.stat().st_mtime == NEW.timestamp()
    assert "1/1 shards done, 0 saved, 1 unchanged, 0 skipped" in third.stderr

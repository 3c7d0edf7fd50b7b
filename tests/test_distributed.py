"""A job in shards on a real Dask LocalCluster (two worker processes) and a local server."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dask
import psutil
import pytest
from aiohttp import web
from distributed import Client, LocalCluster
from distributed.comm.core import connect
from distributed.security import Security

import aiowget
from aiowget import distributed
from aiowget.demo import serving
from aiowget.naming import flat_name

COUNT, SHARD = 1200, 300  # four shards


def content(n: str) -> bytes:
    return f"file {n}\n".encode() * 50


class Site:
    """A server in a thread of its own: the Dask client blocks the test's thread."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.on_request: Any = None

    async def handler(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["n"]
        with self.lock:
            self.requests[name] += 1
        if self.on_request is not None:
            self.on_request(name, request)
        return web.Response(body=content(name))


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    site = Site()
    app = web.Application()
    app.router.add_get("/{n}", site.handler)
    with serving(app) as base:
        yield site, base


@contextmanager
def local_client(tmp_path: Path, **config: Any) -> Iterator[Client]:
    """A LocalCluster of two worker processes (one thread each) and a client of it."""
    with (
        dask.config.set(config),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            local_directory=tmp_path / "dask",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with local_client(tmp_path) as client:
        yield client


def urls(base: str, count: int = COUNT) -> list[str]:
    return [f"{base}/{n}" for n in range(count)]


def run(**kwargs: Any) -> distributed.Report:
    """`distributed.download` in a daemon thread, bounded: a job that hangs fails the test
    after 240 s instead of holding the whole run (a pool's `with` would wait for it)."""
    future: Future[distributed.Report] = Future()

    def work() -> None:
        try:
            future.set_result(distributed.download(**kwargs))
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=work, daemon=True).start()
    return future.result(timeout=240)


def assert_complete(out: Path, base: str, count: int = COUNT, size: int = SHARD) -> None:
    for n, url in enumerate(urls(base, count)):
        shard = n // size
        path = out / f"shard-{shard:05d}" / flat_name(url)
        assert path.read_bytes() == content(str(n))
    assert not list(out.rglob("*.part"))


def test_round_trip(site: tuple[Site, str], client: Client, tmp_path: Path) -> None:
    server, base = site
    out = tmp_path / "out"

    report = run(
        urls_or_input_file=urls(base), directory=out, client=client, shard_size=SHARD, jobs=8
    )

    assert (report.shards, report.shards_done, report.saved) == (4, 4, COUNT)
    assert report.exit_status == 0
    assert not report.shards_failed
    assert_complete(out, base)
    records = [
        json.loads(line)
        for shard in range(4)
        for line in distributed.ShardPaths(out, shard).manifest.read_text().splitlines()
    ]
    assert len(records) == COUNT
    for record in records:
        n = record["url"].rsplit("/", 1)[1]
        assert record["outcome"] == "saved"
        assert record["sha256"] == hashlib.sha256(content(n)).hexdigest()
    assert set(server.requests.values()) == {1}


def test_killed_worker_reruns_only_its_shard(
    site: tuple[Site, str], client: Client, tmp_path: Path
) -> None:
    server, base = site
    victim = next(iter(client.run(os.getpid).values()))
    killed = threading.Event()

    def kill_once(name: str, request: web.Request) -> None:
        if sum(server.requests.values()) >= COUNT // 3 and not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)

    server.on_request = kill_once
    out = tmp_path / "out"

    report = run(urls_or_input_file=urls(base), directory=out, client=client, shard_size=SHARD)

    assert killed.is_set()
    assert report.shards_done == 4
    assert report.exit_status == 0
    assert_complete(out, base)
    again = {int(name) // SHARD for name, times in server.requests.items() if times > 1}
    assert len(again) <= 1  # only the shard that was in flight on the dead worker


def test_rerun_submits_only_unfinished_shards(
    site: tuple[Site, str], client: Client, tmp_path: Path
) -> None:
    server, base = site
    out = tmp_path / "out"
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls(base)) + "\n")
    distributed.plan_shards(listing, out, SHARD)
    done = {"saved": SHARD, "skipped": 0, "failed": 0, "bytes": 0, "exit_status": 0}
    for shard in (0, 1):  # an interrupted earlier run finished these two
        distributed.ShardPaths(out, shard).status.write_text(json.dumps({"shard": shard, **done}))

    report = run(urls_or_input_file=listing, directory=out, client=client, shard_size=SHARD)

    assert report.shards_done == 4
    assert {int(name) // SHARD for name in server.requests} == {2, 3}


def test_run_shard_by_hand_twice(site: tuple[Site, str], tmp_path: Path) -> None:
    server, base = site
    out = tmp_path / "out"
    distributed.plan_shards(urls(base, 50), out, 50)
    command = [sys.executable, "-m", "aiowget.distributed", "run-shard", str(out), "0"]

    first = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    asked = sum(server.requests.values())
    distributed.ShardPaths(out, 0).status.unlink()  # as if the status had been lost
    second = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["saved"] == 50
    assert json.loads(second.stdout)["skipped"] == 50  # complete files: nothing fetched
    assert sum(server.requests.values()) == asked == 50
    manifest = distributed.ShardPaths(out, 0).manifest.read_text().splitlines()
    assert all(json.loads(line)["sha256"] for line in manifest)  # hashed from disk


def asking_process(request: web.Request) -> int:
    """The pid at the other end of the request's connection (both ends are on this machine)."""
    assert request.transport is not None
    port = request.transport.get_extra_info("peername")[1]
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.pid:
            return int(connection.pid)
    raise AssertionError(f"no process owns port {port}")


def test_shard_whose_workers_keep_dying_is_reported_failed(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    with local_client(tmp_path, **{"distributed.scheduler.allowed-failures": 1}) as client:

        def poison(name: str, request: web.Request) -> None:
            if name == "poison":  # whichever process asks for it dies, every time
                os.kill(asking_process(request), signal.SIGKILL)

        server.on_request = poison
        listing = [*urls(base, 20), f"{base}/poison"]  # the last shard: just the poison

        report = run(
            urls_or_input_file=listing, directory=tmp_path / "out", client=client, shard_size=10
        )

    assert list(report.shards_failed) == [2]
    assert report.shards_done == 2
    assert report.exit_status == 1


def test_command_line_runs_on_a_local_cluster(site: tuple[Site, str], tmp_path: Path) -> None:
    _, base = site
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls(base, 40)) + "\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "aiowget", "--dask", "local:2", "--shard-size", "15"]

    # Dask's scratch space (default /tmp/dask-scratch-space) stays inside the test's folder.
    scratch = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}
    done = subprocess.run(
        [*command, "-i", str(listing), "-P", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=scratch,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "[*] 3 shards of up to 15 URLs (40 URLs), 0 done already"
    progress = [line.split("; ", 1)[1] for line in lines if line.startswith("[+] shard ")]
    assert progress[-1] == "shards 3/3 done, 0 failed; files 40/40: 40 saved, 0 skipped, 0 failed"
    assert [p.split(" done")[0] for p in progress] == ["shards 1/3", "shards 2/3", "shards 3/3"]
    assert lines[-1] == "[=] 3/3 shards done, 40 saved, 0 skipped, 0 failed"
    assert_complete(out, base, 40, size=15)  # 15, 15 and 10 files


def test_a_relative_directory_works_for_workers_elsewhere(
    site: tuple[Site, str], client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = site
    monkeypatch.chdir(tmp_path)
    client.run(os.chdir, "/")  # the workers run in another directory, as on a cluster

    report = run(urls_or_input_file=urls(base, 5), directory="out", client=client, shard_size=5)

    assert report.exit_status == 0
    assert report.saved == 5
    assert_complete(tmp_path / "out", base, 5)


@pytest.mark.parametrize(("good", "status"), [(True, 0), (False, 1)])
def test_command_line_checksum_is_verified_on_the_cluster(
    site: tuple[Site, str], tmp_path: Path, good: bool, status: int
) -> None:
    _, base = site
    url = f"{base}/0"
    digest = hashlib.sha256(content("0") if good else b"other").hexdigest()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "aiowget", "--dask", "local:1", "-P", str(out)]
    scratch = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}

    done = subprocess.run(
        [*command, "--checksum", f"sha256:{digest}", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=scratch,
    )

    assert done.returncode == status, done.stderr
    saved = out / "shard-00000" / flat_name(url)
    assert saved.exists() is good


def test_one_shard_run_twice_at_once_has_one_owner(site: tuple[Site, str], tmp_path: Path) -> None:
    server, base = site
    out = tmp_path / "out"
    distributed.plan_shards(urls(base, 20), out, 20)
    command = [sys.executable, "-m", "aiowget.distributed", "run-shard", str(out), "0"]
    gate = threading.Event()
    server.on_request = lambda name, request: gate.wait(30) if name == "7" else None

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as first:
        deadline = time.monotonic() + 30
        while not server.requests["7"]:  # the first runner is inside the shard
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as second:
            assert second.stderr is not None
            waiting = second.stderr.readline().decode()  # said before it blocks
            gate.set()
            outputs = [first.communicate(timeout=60), second.communicate(timeout=60)]

    assert "shard 0 is being run by another process; waiting" in waiting
    assert (first.returncode, second.returncode) == (0, 0)
    assert [json.loads(stdout)["saved"] for stdout, _ in outputs] == [20, 20]  # one summary
    assert set(server.requests.values()) == {1}  # the second runner fetched nothing
    assert_complete(out, base, 20)
    rows = [json.loads(r) for r in distributed.ShardPaths(out, 0).manifest.read_text().splitlines()]
    assert [r["outcome"] for r in rows] == ["saved"] * 20


def test_run_shard_of_a_shard_that_does_not_exist(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "aiowget.distributed", "run-shard", str(tmp_path), "7"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    assert done.stderr.startswith("aiowget: no shard 7 in ")
    assert "Traceback" not in done.stderr


def test_limit_rate_is_shared_by_the_shards_that_run_at_once(client: Client) -> None:
    # Two worker processes of one thread each: two shards at once, half the budget each.
    assert distributed._shared_rate({"limit_rate": 1000.0, "jobs": 4}, client) == {
        "limit_rate": 500.0,
        "jobs": 4,
    }
    assert distributed._shared_rate({"jobs": 4}, client) == {"jobs": 4}


def test_a_rerun_with_another_input_is_refused_not_skipped(
    site: tuple[Site, str], client: Client, tmp_path: Path
) -> None:
    _, base = site
    out = tmp_path / "out"
    run(urls_or_input_file=urls(base, 5), directory=out, client=client, shard_size=5)

    with pytest.raises(aiowget.UsageError, match="planned from another input or shard size"):
        run(urls_or_input_file=urls(base, 6), directory=out, client=client, shard_size=5)
    with pytest.raises(aiowget.UsageError, match="planned from another input or shard size"):
        run(urls_or_input_file=urls(base, 5), directory=out, client=client, shard_size=2)
    again = run(urls_or_input_file=urls(base, 5), directory=out, client=client, shard_size=5)
    assert again.exit_status == 0
    assert again.shards_done == 1


def test_a_url_listed_twice_in_a_shard_gets_two_true_rows(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    out = tmp_path / "out"
    listing = [*urls(base, 3), f"{base}/1"]
    distributed.plan_shards(listing, out, 10)

    summary = distributed.run_shard(out, 0)

    assert (summary["saved"], summary["skipped"]) == (3, 1)
    rows = [json.loads(r) for r in distributed.ShardPaths(out, 0).manifest.read_text().splitlines()]
    repeated = [r for r in rows if r["url"] == f"{base}/1"]
    assert [r["outcome"] for r in repeated] == ["saved", "skipped"]
    sha = hashlib.sha256(content("1")).hexdigest()
    assert [(r["bytes"], r["sha256"]) for r in repeated] == [(len(content("1")), sha)] * 2
    assert server.requests["1"] == 1


# Security: the cluster, the state folder and what is written in it ---------------------------


def listening(pid: int) -> set[tuple[str, int]]:
    """Every (address, port) that process `pid` or one of its children listens on."""
    parent = psutil.Process(pid)
    found: set[tuple[str, int]] = set()
    for process in [parent, *parent.children(recursive=True)]:
        with suppress(psutil.Error):
            for connection in process.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    found.add((connection.laddr.ip, connection.laddr.port))
    return found


async def dask_identity(address: str, **connection_args: Any) -> Any:
    """What the Dask server at `address` tells a stranger it is; None when it will not talk
    (an open server answers in milliseconds; a server of another kind may never answer)."""

    async def ask() -> Any:
        comm = await connect(address, timeout=2, **connection_args)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    try:
        return await asyncio.wait_for(ask(), 2)
    except (OSError, asyncio.TimeoutError):
        return None


def http_status(port: int, path: str) -> int | None:
    """The status an HTTP GET of `path` gets on 127.0.0.1:`port`; None when none comes."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, http.client.HTTPException):
        return None


def stranger_talks(port: int) -> list[str]:
    """How a stranger (no certificate, or a certificate of its own) gets answers from `port`."""
    own = Security.temporary().get_connection_args("client")
    heard = []
    if asyncio.run(dask_identity(f"tcp://127.0.0.1:{port}")) is not None:
        heard.append("dask over tcp")  # and no TLS asked of a server that speaks plain
    elif asyncio.run(dask_identity(f"tls://127.0.0.1:{port}", **own)) is not None:
        heard.append("dask over tls with a certificate of its own")
    for path in ("/json/identity.json", "/info/main/workers.html", "/health", "/metrics"):
        if http_status(port, path) == 200:
            heard.append(f"GET {path}")
    return heard


def test_the_probe_hears_an_open_cluster(client: Client) -> None:
    # The control for the test below: a plain LocalCluster answers the same stranger.
    info = client.scheduler_info()
    assert asyncio.run(dask_identity(info["address"]))["type"] == "Scheduler"
    assert http_status(info["services"]["dashboard"], "/json/identity.json") == 200


def test_a_local_cluster_answers_no_other_process(site: tuple[Site, str], tmp_path: Path) -> None:
    server, base = site
    gate = threading.Event()
    server.on_request = lambda name, request: gate.wait(60) if name == "slow" else None
    command = [sys.executable, "-m", "aiowget", "-q", "--dask", "local:1", "-P", str(tmp_path)]
    scratch = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}

    with subprocess.Popen(
        [*command, "--user", "alice", "--password", "S3CRET", f"{base}/slow"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=scratch,
    ) as job:
        try:
            deadline = time.monotonic() + 60
            while not server.requests["slow"]:  # the cluster is up, the shard in a worker
                assert time.monotonic() < deadline, "the job never asked for its URL"
                time.sleep(0.05)
            sockets = listening(job.pid)
            heard = {port: stranger_talks(port) for _, port in sockets}
        finally:
            gate.set()
            _, errors = job.communicate(timeout=60)

    assert job.returncode == 0, errors
    assert len(sockets) >= 3  # scheduler, nanny and worker, at least
    assert {address for address, _ in sockets} == {"127.0.0.1"}
    assert {port: ways for port, ways in heard.items() if ways} == {}


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file created with the default mode is 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_state_files_are_private_and_manifests_masked(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    _, base = site
    secret = base.replace("http://", "http://alice:S3CRET@")
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{secret}/{n}\n" for n in range(4)))
    listing.chmod(0o600)
    out = tmp_path / "out"

    distributed.plan_shards(listing, out, 2)
    summaries = [distributed.run_shard(out, shard) for shard in (0, 1)]

    assert [s["saved"] for s in summaries] == [2, 2]
    state = out / distributed.STATE
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in state.iterdir()}
    assert modes == dict.fromkeys(modes, 0o600)
    assert {"plan.json", "00000.urls", "00000.jsonl", "00001.done.json"} <= set(modes)
    holding = {path.name for path in state.iterdir() if b"S3CRET" in path.read_bytes()}
    assert holding == {"00000.urls", "00001.urls"}  # the workers need the password there
    masked = base.replace("http://", "http://alice:***@")
    rows = distributed.ShardPaths(out, 1).manifest.read_text().splitlines()
    assert sorted(json.loads(row)["url"] for row in rows) == [f"{masked}/2", f"{masked}/3"]


STATE_FILES = ("plan.json", "00000.urls", "00000.jsonl", "00000.done.json")


def test_state_files_never_write_through_a_planted_symlink(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    _, base = site
    out, victims = tmp_path / "out", tmp_path / "victims"
    (out / distributed.STATE).mkdir(parents=True, mode=0o700)
    victims.mkdir()
    for name in STATE_FILES:  # each temporary name leads to a victim outside the folder
        (victims / name).write_text("original")
        (out / distributed.STATE / f"{name}.tmp").symlink_to(victims / name)

    distributed.plan_shards(urls(base, 3), out, 10)
    summary = distributed.run_shard(out, 0)

    assert summary["saved"] == 3
    assert {path.read_text() for path in victims.iterdir()} == {"original"}
    for name in STATE_FILES:  # a real file each, and no symlink renamed into place
        assert stat.S_ISREG((out / distributed.STATE / name).lstat().st_mode)
        assert not (out / distributed.STATE / f"{name}.tmp").exists()


def plant_symlink(state: Path, elsewhere: Path) -> None:
    state.symlink_to(elsewhere, target_is_directory=True)


def plant_writable(state: Path, elsewhere: Path) -> None:
    state.mkdir()
    state.chmod(0o777)


@pytest.mark.parametrize("plant", [plant_symlink, plant_writable])
def test_a_state_folder_open_to_others_is_refused(
    site: tuple[Site, str], tmp_path: Path, plant: Callable[[Path, Path], None]
) -> None:
    _, base = site
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    plant(out / distributed.STATE, elsewhere)

    with pytest.raises(aiowget.LocalIOError, match=r"\.aiowget"):
        distributed.plan_shards(urls(base, 3), out, 10)

    assert not list(elsewhere.iterdir())
    assert not list((out / distributed.STATE).iterdir())


def test_run_shard_refuses_a_state_folder_opened_to_others(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    out = tmp_path / "out"
    distributed.plan_shards(urls(base, 3), out, 10)
    (out / distributed.STATE).chmod(0o777)  # anyone could now swap the shard or its records
    command = [sys.executable, "-m", "aiowget.distributed", "run-shard", str(out), "0"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 3
    assert done.stderr.startswith("aiowget: ")
    assert "writable by others" in done.stderr
    assert "Traceback" not in done.stderr
    assert not server.requests

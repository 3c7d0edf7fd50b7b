"""The command line against real servers: exit statuses, bytes on disk, what was printed."""

from __future__ import annotations

import asyncio
import inspect
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from aiowget import __version__, cli
from aiowget.console import ProgressMode
from aiowget.naming import flat_name

from .conftest import (
    FILES,
    RawFactory,
    ServeFactory,
    Server,
    body,
    run_cli,
    run_process,
    static,
)


def assert_one_clean_line(stderr: str, *expected: str) -> None:
    """Bad input gets one readable line, never a traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("aiowget:")]
    assert len(lines) == 1, stderr
    for text in expected:
        assert text in lines[0]


async def test_saves_every_url_and_reports_each(files_server: Server, tmp_path: Path) -> None:
    urls = [files_server.url(path) for path in FILES]

    result = await run_cli("-P", tmp_path, *urls)

    assert result.exit_code == 0
    for url, content in zip(urls, FILES.values(), strict=True):
        path = tmp_path / flat_name(url)
        assert path.read_bytes() == content
        assert f"[*] saving {url} to {path}" in result.stderr
        assert f"[+] saved {path} ({len(content)} bytes)" in result.stderr
    assert f"[=] {len(FILES)} saved" in result.stderr.splitlines()[-1]
    assert result.stdout == b""


async def test_error_status_exits_8_and_saves_nothing(files_server: Server, tmp_path: Path) -> None:
    missing = files_server.url("/nope")

    result = await run_cli("-P", tmp_path, missing, files_server.url("/files/f1.bin"))

    assert result.exit_code == 8
    assert f"[-] {missing}: 404 Not Found" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [flat_name(files_server.url("/files/f1.bin"))]


async def test_bad_urls_mixed_with_good_ones(files_server: Server, tmp_path: Path) -> None:
    good = files_server.url("/files/f2.bin")

    result = await run_cli("-P", tmp_path, "ftp://e.com/x", good, "http://", "http://[::1")

    assert result.exit_code == 2
    assert (tmp_path / flat_name(good)).read_bytes() == FILES["/files/f2.bin"]
    assert "[-] ftp://e.com/x: unsupported scheme 'ftp'" in result.stderr
    assert "[-] http://: invalid URL 'http://': no host" in result.stderr
    assert "Traceback" not in result.stderr


async def test_lowest_exit_status_wins(files_server: Server, tmp_path: Path) -> None:
    result = await run_cli(
        "-t", "0", "-P", tmp_path, files_server.url("/nope"), "http://127.0.0.1:9/"
    )

    assert result.exit_code == 4


async def test_output_to_a_file(files_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "exact.bin"
    target.parent.mkdir()

    result = await run_cli("-O", target, files_server.url("/files/f3.bin"))

    assert result.exit_code == 0
    assert target.read_bytes() == FILES["/files/f3.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["exact.bin"]


async def test_output_to_stdout(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(3 * 1024 * 1024 + 11, "stdout")
    server = await serve({"/big": static(content)})

    result = await run_cli("-O", "-", server.url("/big"))

    assert result.exit_code == 0
    assert result.stdout == content
    assert "[+] saved standard output" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-O", "x", "http://a/1", "http://a/2"),
        ("-O", "x", "-i", "urls.txt", "http://a/1"),
        (),
        ("-j", "0", "http://a/"),
        ("--naming", "mirror", "http://a/"),
        ("--if-exists", "ask", "http://a/"),
        ("-T", "0", "http://a/"),
        ("--json", "-O", "-", "http://a/"),
        ("--dask", "local:1", "--json", "http://a/"),
        ("--dask", "local:1", "-O", "x", "http://a/"),
    ],
)
async def test_usage_errors_exit_2(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths (`-O x`, the default `.`) land here

    result = await run_cli(*args)

    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


async def test_input_file_with_comments_and_names(files_server: Server, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# my downloads\n\n"
        f"{files_server.url('/files/f1.bin')}\n"
        f"{files_server.url('/files/f2.bin')} out=second.bin\n"
        f"{files_server.url('/files/f3.bin')} colour=red\n"
    )
    out = tmp_path / "out"

    result = await run_cli("-i", listing, "-P", out)

    assert result.exit_code == 2  # the unusable line, reported on its own
    assert "line 5: unknown option 'colour=red'" in result.stderr
    assert (out / flat_name(files_server.url("/files/f1.bin"))).read_bytes() == FILES[
        "/files/f1.bin"
    ]
    assert (out / "second.bin").read_bytes() == FILES["/files/f2.bin"]
    assert len(list(out.iterdir())) == 2


async def test_input_from_stdin(files_server: Server, tmp_path: Path) -> None:
    urls = [files_server.url(path) for path in FILES]

    result = await run_cli("-i", "-", "-P", tmp_path, stdin="\n".join(urls).encode())

    assert result.exit_code == 0
    assert len(list(tmp_path.iterdir())) == len(FILES)


async def test_missing_input_file_exits_3(tmp_path: Path) -> None:
    result = await run_cli("-i", tmp_path / "nope.txt", "-P", tmp_path / "out")

    assert result.exit_code == 3
    assert_one_clean_line(result.stderr, "cannot read input file", "nope.txt")


async def test_directory_that_is_a_file_exits_3_with_one_line(
    files_server: Server, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    result = await run_cli("-P", blocker, *(files_server.url(p) for p in FILES))

    assert result.exit_code == 3
    assert_one_clean_line(result.stderr, "cannot use directory", str(blocker))
    assert files_server.gets() == []


def without_privileges(*args: str | Path) -> list[str]:
    """`args` as a command that cannot bypass file permissions, even when run as root."""
    if os.geteuid() != 0:
        return [str(a) for a in args]
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv cannot drop its file-permission override")
    drop = "--bounding-set=-dac_override,-dac_read_search"
    return ["setpriv", drop, "--inh-caps=-all", "--", *map(str, args)]


@pytest.mark.parametrize("subdir", [False, True])
async def test_directory_without_write_permission_exits_3_with_one_line(
    files_server: Server, tmp_path: Path, subdir: bool
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    target = locked / "sub" if subdir else locked
    command = without_privileges(sys.executable, "-m", "aiowget", "-P", target)

    process = await asyncio.create_subprocess_exec(
        *command, files_server.url("/files/f1.bin"), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()

    assert process.returncode == 3
    assert_one_clean_line(stderr.decode(), str(target), "Permission denied")
    assert list(locked.iterdir()) == []
    assert files_server.gets() == []


async def test_quiet_prints_only_errors(files_server: Server, tmp_path: Path) -> None:
    missing = files_server.url("/nope")

    result = await run_cli("-q", "-P", tmp_path, files_server.url("/files/f1.bin"), missing)

    assert result.exit_code == 8
    assert result.stderr.splitlines() == [f"[-] {missing}: 404 Not Found"]


async def test_rerun_fetches_only_what_is_missing(files_server: Server, tmp_path: Path) -> None:
    urls = [files_server.url(path) for path in FILES]
    await run_cli("-P", tmp_path, *urls[:2])
    before = len(files_server.gets())

    result = await run_cli("-P", tmp_path, *urls)

    assert result.exit_code == 0
    assert len(files_server.gets()) - before == len(urls) - 2
    assert "[=] 3 saved" in result.stderr
    assert "2 skipped" in result.stderr


async def test_passwords_are_masked_and_controls_escaped(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    base = await raw_server(b"HTTP/1.1 500 Oops\x1b[2J\x07\r\nContent-Length: 0\r\n\r\n")
    url = base.replace("http://", "http://alice:s3cret@") + "/f"

    result = await run_cli("-t", "0", "-P", tmp_path, url)

    assert result.exit_code == 8
    assert "s3cret" not in result.stderr
    assert "alice:***@" in result.stderr
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    assert "Oops\\x1b[2J\\x07" in result.stderr


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (("--naming", "basename"), "f4.bin"),
        (("--if-exists", "rename"), None),
    ],
)
async def test_naming_flags_reach_the_library(
    files_server: Server, tmp_path: Path, flags: tuple[str, ...], name: str | None
) -> None:
    url = files_server.url("/files/f4.bin")
    (tmp_path / flat_name(url)).write_bytes(b"already here")

    result = await run_cli("-P", tmp_path, *flags, url)

    assert result.exit_code == 0
    expected = name or flat_name(url) + ".1"
    assert (tmp_path / expected).read_bytes() == FILES["/files/f4.bin"]
    assert (tmp_path / flat_name(url)).read_bytes() == b"already here"


async def test_content_disposition_names_the_file(serve: ServeFactory, tmp_path: Path) -> None:
    content = body(5000, "disposition")
    disposition = 'attachment; filename="../../.report.bin"'
    server = await serve({"/get": static(content, **{"Content-Disposition": disposition})})
    url = server.url("/get")
    (tmp_path / flat_name(url)).write_bytes(b"already here")

    result = await run_cli("-P", tmp_path, "--content-disposition", url)

    assert result.exit_code == 0
    # Only the last component, without its leading dot; the flat name is not used.
    assert (tmp_path / "report.bin").read_bytes() == content
    assert (tmp_path / flat_name(url)).read_bytes() == b"already here"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([flat_name(url), "report.bin"])
    assert len(server.gets("/get")) == 2  # one names the file, one fetches it

    again = await run_cli("-P", tmp_path, "--content-disposition", url)

    assert again.exit_code == 0
    assert "already there" in again.stderr
    assert len(server.gets("/get")) == 3  # naming it was enough


async def test_jobs_flag_bounds_concurrency(serve: ServeFactory, tmp_path: Path) -> None:
    active, peak = 0, 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return web.Response(body=b"x")

    server = await serve({"/{n}": handler})

    result = await run_cli("-j", "1", "-P", tmp_path, *(server.url(f"/{n}") for n in range(4)))

    assert result.exit_code == 0
    assert peak == 1


async def test_version() -> None:
    result = await run_cli("--version")

    assert result.exit_code == 0
    assert result.stdout.decode().strip() == f"aiowget {__version__}"


async def test_version_alone_is_answered_before_the_command_line_and_says_the_same() -> None:
    alone = await run_process("--version")
    among_flags = await run_process("-q", "--version")

    assert (alone.exit_code, alone.stderr) == (0, "")
    assert alone.stdout == among_flags.stdout == f"aiowget {__version__}\n".encode()


@pytest.mark.parametrize(
    ("redirect", "status", "said"),
    [
        (">/dev/full", 3, "aiowget: cannot write to standard output: No space left on device\n"),
        (">&-", 0, ""),  # closed: as if /dev/null, as a run takes it
    ],
)
async def test_version_into_a_failing_stdout_is_what_a_run_makes_of_it(
    redirect: str, status: int, said: str
) -> None:
    process = await asyncio.create_subprocess_shell(
        f"{shlex.quote(sys.executable)} -m aiowget --version {redirect}",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()

    assert (process.returncode, stderr.decode()) == (status, said)


def test_progress_choices_are_the_console_modes() -> None:
    assert [m.value for m in cli._Progress] == [m.value for m in ProgressMode]


def test_the_command_runs_on_uvloop_and_falls_back_to_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli._event_loop_runner() is uvloop.run

    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed: the import fails

    assert cli._event_loop_runner() is asyncio.run


# The real process: `python -m aiowget` and the `aiowget` console script, with real pipes.


async def test_python_m_aiowget_pipes_stdin_and_stdout(files_server: Server) -> None:
    url = files_server.url("/files/f5.bin")

    result = await run_process("-O", "-", url)

    assert result.exit_code == 0
    assert result.stdout == FILES["/files/f5.bin"]
    assert "[+] saved standard output" in result.stderr


async def test_process_reads_urls_from_stdin(files_server: Server, tmp_path: Path) -> None:
    urls = "\n".join(files_server.url(p) for p in FILES).encode()

    result = await run_process("-q", "-i", "-", "-P", tmp_path, stdin=urls)

    assert (result.exit_code, result.stderr) == (0, "")
    assert len(list(tmp_path.iterdir())) == len(FILES)


async def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "aiowget"
    process = await asyncio.create_subprocess_exec(script, "--help", stdout=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()

    assert process.returncode == 0
    assert b"--input-file" in stdout


async def test_help_names_its_values_plainly() -> None:
    result = await run_cli("--help")

    assert result.exit_code == 0
    shown = " ".join(result.stdout.decode().split())  # however rich wraps it
    for option in (
        "-j, --jobs N",
        "--naming flat|basename",
        "--if-exists skip|overwrite|rename",
        "--progress auto|bar|plain|none",
        "--shard-size N",
        "-v, --verbose",
        "[URL]...",
    ):
        assert option in shown
    assert "<" not in shown  # typer's `<int range>`, `<flat|basename>`


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--shard-size", "5"], "--shard-size is for --dask"),
        (["--dask", "local:1", "-v"], "with --dask the workers make them"),
        (["--dask", "local:1", "--shard-size", "0"], "--shard-size"),
    ],
)
async def test_dask_options_are_checked_before_any_work(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    result = await run_cli(*args, "-P", tmp_path, "http://127.0.0.1:9/")

    assert result.exit_code == 2
    assert_one_clean_line(result.stderr, reason)
    assert list(tmp_path.iterdir()) == []


def test_shard_size_default_is_the_librarys() -> None:
    from aiowget import distributed

    default = inspect.signature(distributed.download).parameters["shard_size"].default
    assert default == cli._SHARD_SIZE

"""Hostile servers and hostile input: names, symlinks, redirects, secrets, limits, full disks."""

from __future__ import annotations

import asyncio
import gzip
import resource
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import aiowget
from aiowget.errors import InvalidURLError
from aiowget.naming import (
    NAME_LIMIT,
    NameRegistry,
    basename_name,
    disposition_name,
    fit_length,
    flat_name,
    safe_name,
)
from aiowget.policy import check_url
from aiowget.text import is_unsafe_char, redact_url

from .conftest import ServeFactory, body, run_cli, static
from .faults import Fault, FaultyFile

# Names: properties over arbitrary input ----------------------------------------------------

HOSTS = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6})?(:[1-9][0-9]{0,3})?", fullmatch=True
)
SEGMENT = st.text(max_size=80) | st.sampled_from(["..", ".", "", "%2e%2e", "%2F", "%00", "~"])
PATHS = st.lists(SEGMENT, max_size=6).map(lambda parts: "/" + "/".join(parts))


def assert_safe(name: str, directory: Path = Path("/srv/target")) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert "\0" not in name
    assert not any(is_unsafe_char(c) for c in name)
    assert len(name.encode()) <= NAME_LIMIT
    assert (directory / name).parent == directory  # one component: inside the directory


@st.composite
def urls(draw: st.DrawFn) -> str:
    path = draw(PATHS)
    encode = draw(st.booleans())
    path = quote(path, safe="/%") if encode else path
    query = draw(st.sampled_from(["", "?a=1", "?x=../../etc", "#frag"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:pa55word@"]))
    return f"{draw(st.sampled_from(['http', 'https']))}://{userinfo}{draw(HOSTS)}{path}{query}"


def usable(url: str) -> bool:
    try:
        check_url(url)
    except InvalidURLError:
        return False
    return True


@given(urls())
def test_url_names_are_safe_and_deterministic(url: str) -> None:
    assume(usable(url))
    for make in (flat_name, basename_name):
        name = make(url)
        assert_safe(name)
        assert make(url) == name
        assert "pa55word" not in name


@given(st.text(), st.booleans())
def test_safe_name_of_any_text(raw: str, from_server: bool) -> None:
    name = safe_name(raw, from_server=from_server)
    if name is not None:
        assert_safe(name)
        assert not (from_server and name.startswith("."))


@given(st.text(max_size=300))
def test_disposition_filename_star_of_any_text(raw: str) -> None:
    header = f"attachment; filename*=UTF-8''{quote(raw, safe='')}"
    name = disposition_name(header)
    if name is not None:
        assert_safe(name)
        assert not name.startswith(".")


@given(st.text(max_size=300))
def test_disposition_quoted_filename_of_any_text(raw: str) -> None:
    escaped = raw.replace("\\", "\\\\").replace('"', '\\"')
    name = disposition_name(f'attachment; filename="{escaped}"')
    if name is not None:
        assert_safe(name)
        assert not name.startswith(".")


@given(st.text(max_size=2000))
def test_fit_length_of_any_text(raw: str) -> None:
    assert len(fit_length(raw).encode(errors="surrogatepass")) <= NAME_LIMIT


@given(st.lists(urls(), min_size=2, max_size=30))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_names_are_unique_within_a_run(batch: list[str]) -> None:
    registry = NameRegistry()
    claimed: dict[str, str] = {}
    for url in filter(usable, batch):
        name, duplicate = registry.claim(flat_name(url), url, batch=1)
        if duplicate:
            assert claimed[name] == url
        else:
            assert name not in claimed
            claimed[name] = url
            assert_safe(name)


@given(st.from_regex(r"[A-Z0-9]{8,20}", fullmatch=True), st.text(max_size=30))
def test_passwords_never_shown(password: str, path: str) -> None:
    url = f"http://user:{password}@host.example/{quote(path)}"
    assert password not in redact_url(url)


# Files: symlinks planted by someone else ----------------------------------------------------


async def test_symlink_at_the_final_name_is_replaced_not_followed(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/f": static(b"downloaded")})
    target, victim = tmp_path / "out", tmp_path / "victim.txt"
    target.mkdir()
    victim.write_bytes(b"precious")
    url = server.url("/f")
    (target / aiowget.naming.flat_name(url)).symlink_to(victim)

    (result,) = await aiowget.download([url], target, if_exists="overwrite")

    assert result.path is not None
    assert not result.path.is_symlink()
    assert result.path.read_bytes() == b"downloaded"
    assert victim.read_bytes() == b"precious"


# Symlinks planted among the working files (.aiowget/NAME.part, NAME.meta, NAME.meta.tmp) and
# a working folder that is a symlink: tests/test_integrity.py, with a body large enough to
# write a sidecar (a 10-byte one never writes it, so a test with one could not fail).


# Redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x"])
async def test_redirect_to_another_scheme_is_refused(
    serve: ServeFactory, tmp_path: Path, location: str
) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    server = await serve({"/r": redirect})

    result = await run_cli("-P", tmp_path, server.url("/r"))

    assert result.exit_code == 7
    assert "redirect to an unusable URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


async def test_secrets_are_not_sent_to_another_host(serve: ServeFactory, tmp_path: Path) -> None:
    other = await serve({"/landing": static(b"landed")}, host="127.0.0.2")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(other.url("/landing"))

    origin = await serve({"/r": redirect})
    with_password = origin.url("/r").replace("http://", "http://bob:s3cret@")

    flags = await run_cli(
        "-P",
        tmp_path / "a",
        "--user",
        "alice",
        "--password",
        "pw",
        "-H",
        "Cookie: id=42",
        "-H",
        "X-Trace: 7",
        origin.url("/r"),
    )
    userinfo = await run_cli("-P", tmp_path / "b", with_password)

    assert flags.exit_code == userinfo.exit_code == 0
    assert [s.headers.get("Authorization") is not None for s in origin.seen] == [True, True]
    assert len(other.seen) == 2
    for seen in other.seen:
        assert "Authorization" not in seen.headers
        assert "Cookie" not in seen.headers
    assert other.seen[0].headers["X-Trace"] == "7"  # an ordinary header still goes along
    # The name comes from the URL as given, not from where it led.
    assert (tmp_path / "a" / aiowget.naming.flat_name(origin.url("/r"))).read_bytes() == b"landed"


# Limits ----------------------------------------------------------------------------------------


async def test_max_filesize_refuses_an_announced_length(
    serve: ServeFactory, tmp_path: Path
) -> None:
    faulty = FaultyFile(body(3 << 20, "big"))
    server = await serve({"/big": faulty.handler})

    result = await run_cli("-P", tmp_path, "--max-filesize", "1M", server.url("/big"))

    assert result.exit_code == 1
    assert "larger than the limit of 1048576 bytes (3145728 bytes)" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert len(faulty.requests) == 1  # not retried


async def test_max_filesize_counts_the_bytes_that_came(serve: ServeFactory, tmp_path: Path) -> None:
    # No Content-Length: only the bytes received can tell.
    faulty = FaultyFile(body(3 << 20, "big"), [Fault(chunked=True)], etag=None)
    server = await serve({"/big": faulty.handler})

    (result,) = await aiowget.download(
        [server.url("/big")], tmp_path, max_filesize=1 << 20, retry_wait=0
    )

    assert isinstance(result.error, aiowget.FileTooLargeError)
    assert list(tmp_path.iterdir()) == []


async def test_compression_bomb_is_stored_as_served(serve: ServeFactory, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 KiB
    server = await serve({"/bomb": static(bomb, **{"Content-Encoding": "gzip"})})

    (result,) = await aiowget.download([server.url("/bomb")], tmp_path)

    assert result.path is not None
    assert result.path.stat().st_size == len(bomb)


# Bad local conditions ----------------------------------------------------------------------


def small_file_limit() -> None:
    # As a full disk would: writes beyond 1 MiB fail (EFBIG; Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


async def test_full_disk_fails_that_file_alone(serve: ServeFactory, tmp_path: Path) -> None:
    server = await serve({"/big": static(body(3 << 20, "big")), "/small": static(b"small")})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiowget",
        "-t",
        "0",
        "-P",
        tmp_path,
        server.url("/big"),
        server.url("/small"),
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=small_file_limit,
    )
    _, stderr = await process.communicate()
    message = stderr.decode()

    assert process.returncode == 3
    assert "Traceback" not in message
    (failure,) = (line for line in message.splitlines() if line.startswith("[-]"))
    assert failure.startswith(f"[-] {server.url('/big')}: ")
    assert failure.endswith("File too large")
    names = {p.name for p in tmp_path.iterdir()}
    assert aiowget.naming.flat_name(server.url("/small")) in names
    assert aiowget.naming.flat_name(server.url("/big")) not in names  # no partial final file

"""Request options, TLS, proxies, the rate limit and --json, against real servers."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

import aiowget
from aiowget.naming import flat_name
from aiowget.text import redact_url as redacted

from .conftest import FILES, ServeFactory, Server, body, run_cli, static


async def test_headers_and_user_agent_are_sent(files_server: Server, tmp_path: Path) -> None:
    url = files_server.url("/files/f1.bin")

    result = await run_cli(
        "-P", tmp_path, "-H", "X-Token: abc", "-H", "Accept: */*", "-U", "tester/1.0", url
    )

    assert result.exit_code == 0
    seen = files_server.gets()[0].headers
    assert seen["X-Token"] == "abc"
    assert seen["Accept"] == "*/*"
    assert seen["User-Agent"] == "tester/1.0"
    assert seen["Accept-Encoding"] == "identity"  # not overridable: bytes stay as served


async def test_default_user_agent(files_server: Server, tmp_path: Path) -> None:
    await aiowget.download([files_server.url("/files/f1.bin")], tmp_path)

    assert files_server.gets()[0].headers["User-Agent"] == f"aiowget/{aiowget.__version__}"


@pytest.mark.parametrize("header", ["NoColon", "Bad Name: x", ": empty"])
async def test_malformed_header_is_a_usage_error(header: str) -> None:
    result = await run_cli("-H", header, "http://127.0.0.1/x")

    assert result.exit_code == 2
    assert "expected 'Name: value'" in result.stderr


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_from_flags_and_from_the_url(files_server: Server, tmp_path: Path) -> None:
    url = files_server.url("/files/f1.bin")
    with_userinfo = url.replace("http://", "http://carol:pw%40x@")

    flags = await run_cli("-P", tmp_path / "a", "--user", "alice", "--password", "s3cret", url)
    userinfo = await run_cli("-P", tmp_path / "b", "--user", "ignored", with_userinfo)

    assert flags.exit_code == userinfo.exit_code == 0
    first, second = (s.headers["Authorization"] for s in files_server.gets())
    assert first == basic("alice", "s3cret")
    assert second == basic("carol", "pw@x")
    assert "pw@x" not in userinfo.stderr
    assert "pw%40x" not in userinfo.stderr


async def test_wrong_credentials_exit_6(serve: ServeFactory, tmp_path: Path) -> None:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != basic("alice", "right"):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="x"'})
        return web.Response(body=b"secret file")

    server = await serve({"/f": guarded})

    wrong = await run_cli(
        "-P", tmp_path, "--user", "alice", "--password", "wrong", server.url("/f")
    )
    right = await run_cli(
        "-P", tmp_path, "--user", "alice", "--password", "right", server.url("/f")
    )

    assert wrong.exit_code == 6
    assert "401 Unauthorized" in wrong.stderr
    assert right.exit_code == 0
    assert (tmp_path / flat_name(server.url("/f"))).read_bytes() == b"secret file"


async def test_proxy_flag_and_environment(
    serve: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        asked.append(str(request.url))  # a proxy gets the absolute URL of the target
        return web.Response(body=b"via proxy")

    proxy = await serve({"/{tail:.*}": forward})
    target = "http://origin.invalid/file.txt"  # resolvable only by way of the proxy

    flag = await run_cli("-P", tmp_path / "flag", "--proxy", proxy.url("/"), target)
    monkeypatch.setenv("http_proxy", proxy.url("/"))
    env = await run_cli("-P", tmp_path / "env", target)
    monkeypatch.setenv("no_proxy", "origin.invalid")
    bypassed = await run_cli("-t", "0", "-P", tmp_path / "bypass", target)

    assert flag.exit_code == env.exit_code == 0
    assert asked == [target, target]
    assert (tmp_path / "env" / "origin.invalid__file.txt").read_bytes() == b"via proxy"
    assert bypassed.exit_code == 4  # no_proxy: asked directly, and that host does not exist


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(aiohttp_server: AiohttpServer, certificate_authority: trustme.CA) -> Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    app = web.Application()
    app.router.add_get("/f", static(b"over tls"))
    server = await aiohttp_server(app, ssl=context)
    return Server(server)


async def test_tls_is_verified_by_default(tls_server: Server, tmp_path: Path) -> None:
    url = tls_server.url("/f")
    assert url.startswith("https://")

    result = await run_cli("-P", tmp_path, url)

    assert result.exit_code == 5
    assert "certificate" in result.stderr.lower()
    assert list(tmp_path.iterdir()) == []


async def test_tls_accepted_with_the_ca_file_or_the_opt_out(
    tls_server: Server, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca))
    url = tls_server.url("/f")

    trusted = await run_cli("-P", tmp_path / "a", "--ca-certificate", ca, url)
    unchecked = await run_cli("-P", tmp_path / "b", "--no-check-certificate", url)

    assert trusted.exit_code == unchecked.exit_code == 0
    assert (tmp_path / "a" / flat_name(url)).read_bytes() == b"over tls"
    assert (tmp_path / "b" / flat_name(url)).read_bytes() == b"over tls"


async def test_unreadable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cli("--ca-certificate", tmp_path / "none.pem", "https://127.0.0.1/")

    assert result.exit_code == 2
    assert "cannot use CA certificate" in result.stderr


async def test_limit_rate_holds_across_downloads(serve: ServeFactory, tmp_path: Path) -> None:
    contents = {f"/{n}": body(384 * 1024, str(n)) for n in range(4)}  # 1.5 MiB in all
    server = await serve({path: static(c) for path, c in contents.items()})
    started = time.monotonic()

    result = await run_cli("-q", "-P", tmp_path, "--limit-rate", "1M", *map(server.url, contents))

    elapsed = time.monotonic() - started
    assert result.exit_code == 0
    # 1.5 MiB at 1 MiB/s: about 1.4 s after the first burst. Generous bounds; the precise
    # figure belongs to the benchmark.
    assert 1.2 < elapsed < 4.0
    assert sorted(p.read_bytes() for p in tmp_path.iterdir()) == sorted(contents.values())


@pytest.mark.parametrize("rate", ["fast", "0", "-1k", "5x"])
async def test_bad_rate_is_a_usage_error(rate: str) -> None:
    result = await run_cli("--limit-rate", rate, "http://127.0.0.1/x")

    assert result.exit_code == 2
    assert "not a positive amount" in result.stderr


async def test_json_report(files_server: Server, tmp_path: Path) -> None:
    good = files_server.url("/files/f2.bin")
    missing = files_server.url("/nope")
    secret = good.replace("http://", "http://u:hunter2@")

    result = await run_cli("--json", "-P", tmp_path, good, missing, secret)

    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    records, summary = {r["url"]: r for r in lines[:-1]}, lines[-1]
    assert result.exit_code == 8
    saved = records[good]
    assert saved == {
        "url": good,
        "path": str(tmp_path / flat_name(good)),
        "outcome": "saved",
        "bytes": len(FILES["/files/f2.bin"]),
        "sha256": hashlib.sha256(FILES["/files/f2.bin"]).hexdigest(),
        "last_modified": None,  # the server sent none
        "elapsed": saved["elapsed"],
        "attempts": 1,
        "error": None,
        "exit_code": 0,
    }
    assert records[missing]["outcome"] == "failed"
    assert records[missing]["exit_code"] == 8
    assert records[missing]["error"] == "404 Not Found"
    assert "hunter2" not in result.stdout.decode()
    assert records[redacted(secret)]["outcome"] == "saved"  # another URL, so another name
    assert summary == {
        "summary": True,
        "saved": 2,
        "skipped": 0,
        "unchanged": 0,
        "failed": 1,
        "bytes": 2 * len(FILES["/files/f2.bin"]),
        "elapsed": summary["elapsed"],
        "exit_code": 8,
        "origins": summary["origins"],  # what each origin's window did (--per-host auto)
    }
    (seen,) = summary["origins"].values()
    assert seen["requests"] == 3
    assert "[+] saved" in result.stderr  # human output stays on stderr


async def test_version_and_completion_are_offered() -> None:
    result = await run_cli("--help")

    assert "--install-completion" in result.stdout.decode()


@pytest.mark.parametrize(
    ("given", "kept"),
    [("auto", "auto"), ("AUTO:4", "auto:4"), (" auto:16 ", "auto:16"), ("3", 3), (5, 5),
     (None, None)],
)  # fmt: skip
def test_per_host_is_auto_a_capped_auto_or_a_number(given: object, kept: object) -> None:
    assert aiowget.Options(per_host=given).per_host == kept  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given", ["", "x", "auto:", "auto:0", "0", "-1", 0, True, 2.5, "²", "auto:²", "٣"]
)
def test_a_bad_per_host_is_a_usage_error(given: object) -> None:
    with pytest.raises(aiowget.UsageError, match="per_host"):
        aiowget.Options(per_host=given)  # type: ignore[arg-type]


async def test_a_bad_per_host_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    result = await run_cli("--per-host", "many", "-P", tmp_path, "http://127.0.0.1:9/x")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "per_host" in result.stderr

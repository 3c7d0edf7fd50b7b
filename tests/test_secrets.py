"""Secrets stay secret, and a server cannot reach the terminal (issue #13): masking that does
not depend on a parser, credentials kept to their origin through redirects followed hop by
hop, proxies chosen per hop, extra trust that adds to the system's, passwords off the command
line, and server text that is never markup."""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from importlib.metadata import version
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from aiowget.errors import InvalidURLError, LocalIOError
from aiowget.naming import flat_name
from aiowget.policy import bypasses_proxy, check_url
from aiowget.text import redact_url, scrub

from .conftest import Proxy, ServeFactory, Server, run_cli, run_process, static
from .test_console import run_on_terminal

ROOT = Path(__file__).resolve().parent.parent

# Masking: found in the text, not by parsing the URL -----------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:S3CRET@host/f", "http://user:***@host/f"),
        ("http://user:S3CRET@exa\uff0fmple.com/f", "http://user:***@exa\uff0fmple.com/f"),
        ("http://user:S3CRET@[::1/f", "http://user:***@[::1/f"),
        ("http://user:S3CRET?x@127.0.0.1:8/f", "http://user:***@127.0.0.1:8/f"),
        ("http://user:S3/CRET@127.0.0.1:8/f", "http://user:***@127.0.0.1:8/f"),
        ("http://ghp_S3CRET@host/", "http://***@host/"),
        ("https://host/a@b", "https://host/a@b"),
        ("http://host:8080/x?mail=a@b", "http://host:8080/x?mail=a@b"),
        ("http://u:S3CRET@h:1/x?y=a@b", "http://u:***@h:1/x?y=a@b"),
        # Found by a tester: quotes, spaces, odd schemes, an @ in the password.
        ("http://user:S3CRET'pw@127.0.0.1:8/x", "http://user:***@127.0.0.1:8/x"),
        ('http://tok"S3CRET@h/y', "http://***@h/y"),
        ("http://user:my S3CRET@h/", "http://user:***@h/"),
        ("http://user:a\u2028S3CRET@h/", "http://user:***@h/"),
        ("http:/user:S3CRET@h/", "http:/user:***@h/"),
        ("//user:S3CRET@h/", "//user:***@h/"),
        ("user:S3CRET@host/", "user:***@host/"),
        ("http\uff1a//user:S3CRET@h/", "http\uff1a//user:***@h/"),
        ("http://u:p@S3CRET@h/", "http://u:***@h/"),
        ("https://registry.example/@scope/pkg", "https://registry.example/@scope/pkg"),
    ],
)
def test_credentials_are_masked_whether_or_not_the_url_parses(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "http://user:S3CRET@exa\uff0fmple.com/f",
        "http://user:S3CRET?x@127.0.0.1:8/f",
        "http://user:S3CRET@127.0.0.1:99999/f",
        "http://user:S3CRET@[::1/f",
    ],
)
def test_a_parsers_complaint_about_a_url_never_quotes_its_password(url: str) -> None:
    with pytest.raises(InvalidURLError) as refused:
        check_url(url)

    assert "S3CRET" not in str(refused.value)
    assert "S3CRET" not in scrub("netloc 'user:S3CRET@x' and port 'S3CRET'", url)


async def test_no_line_and_no_record_shows_a_password_of_an_unparsable_url(
    tmp_path: Path,
) -> None:
    urls = ["http://user:S3CRET@exa\uff0fmple.com/f", "http://user:S3CRET?x@127.0.0.1:9/f"]

    result = await run_process("--json", "-t", "0", "-P", tmp_path, *urls, limit=60)

    assert result.exit_code == 2
    assert "S3CRET" not in result.stdout.decode() + result.stderr
    assert len(result.stdout.decode().splitlines()) == 3  # two records and the summary


# Credentials go to the first origin only ----------------------------------------------------


@pytest.fixture
async def two_origins(serve: ServeFactory) -> tuple[Server, Server]:
    """`first` redirects /same to itself (/f), /away to `other` (/f), /round to `other`
    which sends it back to `first`."""
    servers: list[Server] = []

    async def back(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(servers[0].url("/f"))

    other = await serve({"/f": static(b"other"), "/back": back})

    async def same(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/f")

    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(other.url("/f"))

    async def round_trip(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(other.url("/back"))

    first = await serve({"/same": same, "/away": away, "/round": round_trip, "/f": static(b"1")})
    servers.append(first)
    return first, other


CREDENTIALS = ("Authorization", "Cookie", "Proxy-Authorization")


async def test_header_credentials_stay_at_the_first_origin_through_redirects(
    two_origins: tuple[Server, Server], tmp_path: Path
) -> None:
    first, other = two_origins
    secret = ("-H", "Authorization: Bearer S3CRET", "-H", "Cookie: c=S3CRET", "-H", "X-Kept: 1")

    result = await run_cli(
        "-P", tmp_path, *secret, first.url("/same"), first.url("/away"), first.url("/round")
    )

    assert result.exit_code == 0, result.stderr
    assert all(s.headers["Authorization"] == "Bearer S3CRET" for s in first.gets("/same"))
    assert first.gets("/f")[0].headers["Cookie"] == "c=S3CRET"  # same origin: kept
    for seen in other.gets() + first.gets("/f")[1:]:  # left the origin, or came back to it
        assert not any(name in seen.headers for name in CREDENTIALS), seen
        assert seen.headers["X-Kept"] == "1"


async def test_url_and_option_credentials_stay_at_the_first_origin(
    two_origins: tuple[Server, Server], tmp_path: Path
) -> None:
    first, other = two_origins
    with_user = first.url("/same").replace("http://", "http://alice:S3CRET@")
    away = first.url("/away").replace("http://", "http://alice:S3CRET@")
    expected = "Basic " + base64.b64encode(b"alice:S3CRET").decode()

    result = await run_cli("-P", tmp_path, with_user, away)
    by_option = await run_cli(
        "-P", tmp_path / "o", "--user", "bob", "--password", "pw", first.url("/away")
    )

    assert (result.exit_code, by_option.exit_code) == (0, 0)
    assert [s.headers.get("Authorization") for s in first.gets("/f")] == [expected]
    assert all("Authorization" not in s.headers for s in other.gets())


async def test_proxy_authorization_as_a_header_is_refused() -> None:
    result = await run_cli("-H", "Proxy-Authorization: Basic eDp5", "http://127.0.0.1:9/")

    assert result.exit_code == 2
    assert "proxy's credentials in its URL" in result.stderr


def test_aiohttp_is_one_that_drops_credentials_on_cross_origin_redirects() -> None:
    """3.13.4 drops Cookie and Proxy-Authorization, 3.14.3 every copy of them: older ones
    would leak what `-H` gives to wherever a server redirects."""
    (requirement,) = re.findall(r'"aiohttp>=([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    minimum = tuple(map(int, requirement.split(".")))

    assert minimum >= (3, 14, 3)
    assert tuple(map(int, version("aiohttp").split(".")[:3])) >= minimum


# Proxies: no_proxy as curl reads it, and a choice at every hop --------------------------------


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypass"),
    [
        ("http://example.com/", "example.com", True),
        ("http://www.example.com/", ".example.com", True),
        ("http://www.example.com/", "example.com", True),
        ("http://notexample.com/", "example.com", False),
        ("http://127.0.0.2:8080/", "127.0.0.2:8080", True),
        ("http://127.0.0.2:9090/", "127.0.0.2:8080", False),
        ("https://h/", "h:443", True),
        ("http://10.1.2.3/", "10.0.0.0/8", True),
        ("http://11.1.2.3/", "10.0.0.0/8", False),
        ("http://[::1]:8080/", "[::1]:8080", True),
        ("http://[::1]/", "::1", True),
        ("http://anything/", "*", True),
        ("http://a/", " b , a ", True),
        ("http://a/", "", False),
    ],
)
def test_no_proxy_entries(url: str, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(url, no_proxy) is bypass


async def test_the_proxy_is_chosen_again_at_every_redirect(
    serve: ServeFactory, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://origin.invalid/file.txt")  # reachable through the proxy only

    direct = await serve({"/away": away})
    monkeypatch.setenv("http_proxy", proxy.url())
    monkeypatch.setenv("no_proxy", "127.0.0.1")

    result = await run_cli("-P", tmp_path, direct.url("/away"))

    assert result.exit_code == 0, result.stderr
    assert len(direct.gets("/away")) == 1  # asked directly, as no_proxy says
    assert proxy.asked == ["http://origin.invalid/file.txt"]
    assert (tmp_path / flat_name(direct.url("/away"))).read_bytes() == b"via proxy"


# Extra trust adds to the system's -------------------------------------------------------------


async def test_ca_certificate_adds_to_the_system_trust_instead_of_replacing_it(
    aiohttp_server: AiohttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, extra = trustme.CA(), trustme.CA()
    servers = []
    for authority in (system, extra):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        app = web.Application()
        app.router.add_get("/f", static(b"tls"))
        servers.append(await aiohttp_server(app, ssl=context))
    system.cert_pem.write_to_path(str(tmp_path / "system.pem"))
    extra.cert_pem.write_to_path(str(tmp_path / "extra.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system.pem"))  # the "system" trust
    urls = [f"https://127.0.0.1:{server.port}/f" for server in servers]

    result = await run_process(
        "-t", "0", "--ca-certificate", tmp_path / "extra.pem", "-P", tmp_path / "d", *urls, limit=60
    )

    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(map(flat_name, urls))


# Passwords off the command line ---------------------------------------------------------------


async def test_a_password_from_a_file_or_the_environment(
    serve: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def guarded(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(body=b"ok")

    server = await serve({"/{n}": guarded})
    (tmp_path / "pw").write_text("fr0m-file\n")
    from_file = await run_cli(
        "-P", tmp_path / "d", "--user", "u", "--password-file", tmp_path / "pw", server.url("/1")
    )
    monkeypatch.setenv("AIOWGET_PASSWORD", "fr0m-env")
    from_env = await run_cli("-P", tmp_path / "d", "--user", "u", server.url("/2"))
    missing = await run_cli("--user", "u", "--password-file", tmp_path / "none", server.url("/3"))

    assert (from_file.exit_code, from_env.exit_code, missing.exit_code) == (0, 0, 2)
    assert seen == ["Basic " + base64.b64encode(f"u:{pw}".encode()).decode() for pw in
                    ("fr0m-file", "fr0m-env")]  # fmt: skip
    assert "cannot read password file" in missing.stderr


# Server text is text, never markup ------------------------------------------------------------


async def test_a_servers_name_with_markup_sends_no_escape_to_the_terminal(
    serve: ServeFactory, tmp_path: Path
) -> None:
    name = "[link=https:evil.example][reverse]report.pdf"

    async def named(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        response = web.StreamResponse(headers={**headers, "Content-Length": str(3 << 20)})
        await response.prepare(request)
        await response.write(b"r" * (2 << 20))
        await asyncio.sleep(0.8)  # long enough for the bars to be drawn a few times
        await response.write(b"r" * (1 << 20))
        return response

    server = await serve({"/cd": named})

    status, sent = await run_on_terminal(
        "--content-disposition", "--progress", "bar", "-P", "d", server.url("/cd"),
        columns=120, rows=30, cwd=tmp_path,
    )  # fmt: skip

    assert status == 0, sent
    assert "\x1b]8;" not in sent  # no hyperlink
    assert "\x1b[7m" not in sent  # no reverse video
    assert "━" in sent  # the bars were drawn, the name in them
    assert name in sent
    assert [p.name for p in (tmp_path / "d").iterdir()] == [name]


async def test_a_password_with_a_quote_is_masked_in_a_download_that_works(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server = await serve({"/x": static(b"x")})
    url = server.url("/x").replace("http://", "http://user:S3CRET'pw@")

    result = await run_process("--json", "--progress", "plain", "-P", tmp_path, url, limit=60)

    assert result.exit_code == 0, result.stderr
    assert "S3CRET" not in result.stdout.decode() + result.stderr
    assert "user:***@" in result.stderr


async def test_a_proxy_variable_without_a_scheme_is_http_and_a_bad_one_is_masked(
    proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url().replace("http://", "pu:S3CRET@"))
    through = await run_cli("-P", tmp_path, "http://origin.invalid/f")
    monkeypatch.setenv("http_proxy", "pu:S3CRET@[::1")
    broken = await run_cli("--json", "-P", tmp_path, "http://origin.invalid/g")

    assert through.exit_code == 0, through.stderr
    assert proxy.credentials == ["Basic " + base64.b64encode(b"pu:S3CRET").decode()]
    assert broken.exit_code == 2
    assert "http_proxy" in broken.stderr
    assert "S3CRET" not in broken.stderr + broken.stdout.decode()


@pytest.mark.parametrize(
    "location", ["http://[x/", "ftp://a]b/", "http://[127.0.0.2]:1/", "ftp://a/"]
)
async def test_a_redirect_to_junk_is_a_protocol_error(
    serve: ServeFactory, tmp_path: Path, location: str
) -> None:
    async def junk(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    server = await serve({"/r": junk})

    result = await run_cli("-P", tmp_path, server.url("/r"))

    assert result.exit_code == 7, result.stderr
    assert "redirect to an unusable URL" in result.stderr


async def test_a_typo_in_a_header_does_not_print_its_value() -> None:
    result = await run_cli("-H", "Authorization Bearer S3CRET", "http://127.0.0.1:9/")

    assert result.exit_code == 2
    assert "S3CRET" not in result.stderr


def test_a_damaged_dask_state_file_is_one_error_naming_it(tmp_path: Path) -> None:
    from aiowget.distributed import plan_shards

    state = tmp_path / ".aiowget"
    state.mkdir(mode=0o700)
    (state / "plan.json").write_text("{not json")

    with pytest.raises(LocalIOError, match=r"plan\.json is damaged"):
        plan_shards(["http://127.0.0.1:9/"], tmp_path, 10)

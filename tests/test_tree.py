"""`--naming tree` against real servers: folders on disk, hostile paths, clashes, planted
symlinks, resume and rerun."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

import aiowget

from .conftest import Proxy, ServeFactory, Server, body, files_in, leave_part, run_cli


async def echo_path(request: web.Request) -> web.StreamResponse:
    """Every path answers with its own (decoded) path: the bytes say what was asked."""
    return web.Response(body=f"body of {request.path}".encode())


async def start(serve: ServeFactory) -> tuple[Server, str]:
    server = await serve({"/{tail:.*}": echo_path})
    return server, f"127.0.0.1:{server.server.port}"


async def test_tree_names_follow_the_url_path_with_host_and_port(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server, host = await start(serve)
    urls = [server.url(p) for p in ("/a/b/c.txt", "/a/", "", "/a/d.txt?q=1")]

    result = await run_cli("--naming", "tree", "-P", tmp_path, *urls)

    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path) == [
        host,
        f"{host}/a",
        f"{host}/a/b",
        f"{host}/a/b/c.txt",
        f"{host}/a/d.txt",
        f"{host}/a/index.html",
        f"{host}/index.html",
    ]
    assert (tmp_path / host / "a/b/c.txt").read_bytes() == b"body of /a/b/c.txt"
    assert (tmp_path / host / "a/index.html").read_bytes() == b"body of /a/"
    assert (tmp_path / host / "index.html").read_bytes() == b"body of /"


async def test_hostile_paths_stay_inside_the_target(serve: ServeFactory, tmp_path: Path) -> None:
    server, host = await start(serve)
    target = tmp_path / "target"
    long = "L" * 300
    paths = ["/x/../../../up", "/x/%2e%2e/%2E%2E/up2", "/a%2F..%2F..%2Fout", "/n%00ul", f"/{long}"]

    # As given, not as yarl would normalize them before aiowget sees them.
    result = await run_cli("--naming", "tree", "-P", target, *(f"http://{host}{p}" for p in paths))

    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # nothing beside it
    names = sorted(p.name for p in (target / host).iterdir())
    assert names[1:] == ["a%2F..%2F..%2Fout", "n%00ul", "up", "up2"]
    assert names[0].startswith("L" * 200)
    assert "~" in names[0]
    assert len(names[0].encode()) <= 239
    assert (target / host / "up").read_bytes() == b"body of /up"  # what yarl asked for
    assert (target / host / "a%2F..%2F..%2Fout").read_bytes() == b"body of /a/../../out"
    assert (target / host / "n%00ul").read_bytes() == b"body of /n\0ul"
    asked = {s.path for s in server.gets()}  # (in whatever order the requests went)
    assert {"/up", "/up2"} <= asked


async def test_a_file_and_a_folder_of_one_path_both_saved(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server, host = await start(serve)

    result = await run_cli("--naming", "tree", "-j", "1", "-P", tmp_path, server.url("/a"),
                           server.url("/a/b"))  # fmt: skip

    assert result.exit_code == 0, result.stderr
    root = tmp_path / host
    assert (root / "a").read_bytes() == b"body of /a"
    [folder] = [p for p in root.iterdir() if p.is_dir()]
    assert folder.name.startswith("a~")
    assert (folder / "b").read_bytes() == b"body of /a/b"
    rerun = await run_cli("--naming", "tree", "-P", tmp_path, server.url("/a"), server.url("/a/b"))
    assert rerun.exit_code == 0
    assert rerun.stderr.count("already there") == 2  # the same names in the next run
    assert len(server.gets()) == 2


async def test_a_planted_symlinked_folder_is_never_written_through(
    serve: ServeFactory, tmp_path: Path
) -> None:
    server, host = await start(serve)
    target, elsewhere = tmp_path / "target", tmp_path / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    (target / host).symlink_to(elsewhere)

    result = await run_cli("--naming", "tree", "-P", target, server.url("/a/f"), server.url("/g"))

    assert result.exit_code == 3
    assert list(elsewhere.iterdir()) == []
    assert "Traceback" not in result.stderr
    failures = [line for line in result.stderr.splitlines() if line.startswith("[-]")]
    assert len(failures) == 2  # one line per URL
    assert all(f"{host}: it is a symlink (not followed)" in line for line in failures)
    assert server.gets() == []  # refused before asking


async def test_a_symlink_deeper_down_is_refused_too(serve: ServeFactory, tmp_path: Path) -> None:
    server, host = await start(serve)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "t" / host).mkdir(parents=True)
    (tmp_path / "t" / host / "a").symlink_to(elsewhere)

    result = await run_cli("--naming", "tree", "-P", tmp_path / "t", server.url("/a/b/f"))

    assert result.exit_code == 3
    assert list(elsewhere.iterdir()) == []
    assert "it is a symlink" in result.stderr


async def test_a_tree_file_resumes_its_part_and_a_rerun_skips(
    serve: ServeFactory, tmp_path: Path
) -> None:
    content = body(300_000, "tree")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(content)

    async def file(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(tmp_path / "srv" / "f.bin")

    server = await serve({"/d/f.bin": file})
    url = server.url("/d/f.bin")
    final = tmp_path / "out" / f"127.0.0.1:{server.server.port}" / "d" / "f.bin"
    final.parent.mkdir(parents=True)
    served = (tmp_path / "srv" / "f.bin").stat()
    response_etag = f'"{served.st_mtime_ns:x}-{served.st_size:x}"'  # FileResponse's ETag
    leave_part(final, url, content[:100_000], validator=response_etag, total=len(content))

    second = await run_cli("--naming", "tree", "-P", tmp_path / "out", url)
    third = await run_cli("--naming", "tree", "-P", tmp_path / "out", url)

    assert second.exit_code == third.exit_code == 0, second.stderr
    assert final.read_bytes() == content
    [asked] = server.gets()  # the third run asked nothing
    assert asked.headers["Range"] == "bytes=100000-"
    assert files_in(tmp_path / "out") == [final.parent.parent.name, f"{final.parent.parent.name}/d",
                                          f"{final.parent.parent.name}/d/f.bin"]  # fmt: skip


async def test_the_library_saves_a_tree_and_says_where(serve: ServeFactory, tmp_path: Path) -> None:
    server, host = await start(serve)

    results = await aiowget.download([server.url("/x/y.txt")], tmp_path, naming="tree")

    assert results[0].path == tmp_path / host / "x" / "y.txt"
    assert results[0].path.read_bytes() == b"body of /x/y.txt"


async def test_a_host_named_dot_dot_stays_inside_the_target(proxy: Proxy, tmp_path: Path) -> None:
    """Through a proxy, `http://../x` and `http://%2e%2e/x` are fetched: their host is a
    folder in the tree like any other, never a way up out of the target."""
    target = tmp_path / "target"
    urls = ("http://../up.txt", "http://%2e%2e/up2.txt", "http://./here.txt")

    result = await run_cli("--naming", "tree", "--proxy", proxy.url(), "-P", target, *urls)

    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert (target / "%2E%2E" / "up.txt").read_bytes() == b"via proxy"
    assert (target / "%2E%2E" / "up2.txt").read_bytes() == b"via proxy"
    assert (target / "%2E" / "here.txt").read_bytes() == b"via proxy"

"""`python -m aiowget.demo`: the main job on a local server, with no internet.

Starts an aiohttp server on 127.0.0.1 (a free port) serving a handful of files, runs the
`aiowget` command against it into a temporary folder, runs it again to show that a rerun only
fetches what is missing, then stops the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

FILES = {
    "/index.html": b"<h1>aiowget demo</h1>\n",
    "/data/numbers.csv": b"".join(b"%d,%d\n" % (n, n * n) for n in range(20_000)),
    "/data/blob.bin": hashlib.sha256(b"demo").digest() * 65_536,  # 2 MiB
    "/docs/readme.txt": b"downloaded by aiowget\n",
    "/docs/": b"a directory index\n",
}


def make_app() -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        body = FILES.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    return app


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Run `app` on 127.0.0.1 in a thread with its own event loop; yield its base URL."""
    ready: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, str]] = queue.Queue()
    thread = threading.Thread(target=lambda: asyncio.run(_serve(app, ready)), daemon=True)
    thread.start()
    loop, stop, base = ready.get(timeout=30)
    try:
        yield base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()


async def _serve(
    app: web.Application,
    ready: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, str]],
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        stop = asyncio.Event()
        port = runner.addresses[0][1]
        ready.put((asyncio.get_running_loop(), stop, f"http://127.0.0.1:{port}"))
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    with serving(make_app()) as base, tempfile.TemporaryDirectory(prefix="aiowget-demo-") as folder:
        urls = [base + path for path in FILES] + [base + "/missing.txt"]
        command = [sys.executable, "-m", "aiowget", "-P", folder, "-j", "4", *urls]
        print(f"$ aiowget -P {folder} -j 4 <{len(urls)} URLs on {base}>", flush=True)
        first = subprocess.run(command, check=False).returncode
        print(f"exit status {first} (8: the server answered 404 for one URL)\n", flush=True)
        for path in sorted(Path(folder).iterdir()):
            print(f"  {path.name:40} {path.stat().st_size:>9} bytes")
        print("\n$ the same command again: files already there are not fetched", flush=True)
        second = subprocess.run(command, check=False).returncode
        print(f"exit status {second}", flush=True)
    return 0 if first == second == 8 else 1


if __name__ == "__main__":
    sys.exit(main())

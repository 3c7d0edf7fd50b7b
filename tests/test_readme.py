"""The README stays true: its option table matches `--help`, and its library examples run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer.main
from aiohttp import web

from aiowget.cli import app

from .conftest import ServeFactory

README = (Path(__file__).parent.parent / "README.md").read_text()


def documented_flags() -> set[str]:
    table = README.split("<!-- options -->")[1].split("<!-- /options -->")[0]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    return {flag for cell in first_cells for flag in re.findall(r"(?<![\w-])--?[\w-]+", cell)}


def offered_flags() -> set[str]:
    command = typer.main.get_command(app)
    flags = {
        flag
        for param in command.params
        for flag in [*param.opts, *param.secondary_opts]
        if flag.startswith("-")
    }
    return flags | {"--help", "-h"}  # from the app's context_settings


def test_option_table_matches_help() -> None:
    assert documented_flags() == offered_flags()


EXAMPLES = re.findall(r"```python\n(# example: .*?)```", README, flags=re.DOTALL)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


async def contents(request: web.Request) -> web.StreamResponse:
    if request.path == "/missing.csv":
        raise web.HTTPNotFound()
    return web.Response(body=f"contents of {request.path}".encode())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.splitlines()[0][11:])
async def test_library_example_runs(serve: ServeFactory, tmp_path: Path, example: str) -> None:
    server = await serve({"/{tail:.*}": contents})
    code = example.replace("https://example.com", server.url("").rstrip("/"))
    namespace: dict[str, Any] = {}
    exec(f"async def example(tmp):\n{textwrap.indent(code, '    ')}", namespace)

    await namespace["example"](tmp_path)

    assert server.gets()

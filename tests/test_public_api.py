"""The public face: a sorted `__all__` that matches the package, and pure modules kept pure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aiowget

from .conftest import Server


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(aiowget).items()
        if not name.startswith("_") and not isinstance(value, type(aiowget))
    }
    lazy = {"Downloader", "download"}  # imported on first use (they bring aiohttp)

    assert aiowget.__all__ == sorted(aiowget.__all__)
    assert set(aiowget.__all__) == public | lazy | {"__version__"}
    assert all(getattr(aiowget, name) is not None for name in lazy)


def test_importing_aiowget_brings_no_io_library() -> None:
    """`import aiowget` (and the command line's --help and --version) costs no aiohttp."""
    code = (
        "import sys, aiowget, aiowget.cli;"
        "print(sorted(m for m in ('aiohttp', 'aiofiles', 'rich') if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert shown.stdout.strip() == "[]"


# A plain program that uses the library in asyncio.run, with uvloop installed beside it.
PLAIN_PROGRAM = """
import asyncio, sys
before = type(asyncio.get_event_loop_policy())
import aiowget

async def main():
    results = await aiowget.download([sys.argv[1]], directory=sys.argv[2])
    return type(asyncio.get_running_loop()), len(results) - len(results.failed)

loop, saved = asyncio.run(main())
after = type(asyncio.get_event_loop_policy())
print(before is after, loop.__module__.split(".")[0], saved)
"""


async def test_the_library_leaves_the_event_loop_policy_alone(
    files_server: Server, tmp_path: Path
) -> None:
    """uvloop is a dependency for the command line; the caller's loop is the caller's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PLAIN_PROGRAM,
        files_server.url("/files/f1.bin"),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    shown, _ = await process.communicate()

    assert shown.decode().split() == ["True", "asyncio", "1"]


# The `aiowget` command as its console script runs it, reporting the modules it imported as
# it exits (on stderr, one a line).
STARTUP = """
import os, sys
exit_now = os._exit
def exit_with_report(status):
    sys.stdout.flush()
    os.write(2, "\\n".join(sorted(sys.modules)).encode())
    exit_now(status)
os._exit = exit_with_report
sys.argv[0] = "aiowget"
from aiowget.__main__ import main
main()
"""

# Start-up (issue #15): the I/O libraries, rich, the engine, and what only a run needs.
NOT_FOR_HELP = {"aiohttp", "aiofiles", "rich", "asyncio", "uvloop", "json", "ssl"} | {
    f"aiowget.{name}" for name in ("downloader", "transfer", "storage", "console", "policy")
}


@pytest.mark.parametrize(
    ("flag", "not_imported"),
    [
        ("--version", NOT_FOR_HELP | {"typer", "aiowget.cli"}),
        ("--help", NOT_FOR_HELP),
        ("-h", NOT_FOR_HELP),
    ],
)
def test_version_and_help_import_only_what_they_print(flag: str, not_imported: set[str]) -> None:
    # Not measured by coverage (`make test`): its tracer imports json and more of its own.
    plain = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    shown = subprocess.run(
        [sys.executable, "-c", STARTUP, flag], capture_output=True, text=True, check=True,
        env=plain,
    )  # fmt: skip
    imported = set(shown.stderr.splitlines())

    assert "aiowget" in shown.stdout
    assert "aiowget._version" in imported
    assert imported.isdisjoint(not_imported), imported & not_imported


def test_every_error_is_an_aiowget_error() -> None:
    errors = [getattr(aiowget, n) for n in aiowget.__all__ if n.endswith("Error")]

    assert all(issubclass(e, aiowget.AiowgetError) for e in errors)
    assert len(errors) == 14


# Loads aiowget.<module> without running aiowget/__init__.py (which imports the I/O modules),
# then reports which I/O libraries came along.
ISOLATED_IMPORT = """
import importlib.machinery, sys, types
spec = importlib.machinery.PathFinder.find_spec("aiowget")
package = types.ModuleType("aiowget")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["aiowget"] = package
import aiowget.{module}
print(sorted(m for m in ("aiohttp", "aiofiles") if m in sys.modules))
"""


@pytest.mark.parametrize("module", ["naming", "policy", "models", "errors", "text", "cookiefile"])
def test_pure_modules_import_no_io_library(module: str) -> None:
    found = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORT.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert found == "[]"


def test_demo_runs_the_main_job_offline() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "aiowget.demo"], capture_output=True, text=True, timeout=120
    )

    assert demo.returncode == 0, demo.stderr
    assert "5 saved" in demo.stderr
    assert "5 skipped" in demo.stderr

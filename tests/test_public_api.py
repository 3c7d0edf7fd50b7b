"""The public face: a sorted `__all__` that matches the package, and pure modules kept pure."""

from __future__ import annotations

import subprocess
import sys

import pytest

import aiowget


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


@pytest.mark.parametrize("module", ["naming", "policy", "models", "errors", "text"])
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

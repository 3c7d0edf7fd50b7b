"""Input files: parsing is pure (a table); reading streams a real file or stdin."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from aiowget.errors import LocalIOError, UsageError
from aiowget.inputfile import InputFile, parse_line
from aiowget.models import Job


@pytest.mark.parametrize(
    ("line", "job"),
    [
        ("", None),
        ("   \t", None),
        ("# a comment", None),
        ("  #indented comment", None),
        ("http://e.com/a", Job("http://e.com/a")),
        ("  http://e.com/a  \r", Job("http://e.com/a")),
        ("http://e.com/a out=x.bin", Job("http://e.com/a", name="x.bin")),
        ("http://e.com/a out=../../x", Job("http://e.com/a", name="..%2F..%2Fx")),
        # As people paste them: spaces inside the URL, a BOM-less CRLF end.
        ("http://e.com/a b.txt out=c.txt\r", Job("http://e.com/a b.txt", name="c.txt")),
        ("http://e.com/two  spaces", Job("http://e.com/two  spaces")),
    ],
)
def test_parse_line(line: str, job: Job | None) -> None:
    assert parse_line(line, 1) == job


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("http://e.com/a colour=red", "line 7: unknown option 'colour=red'"),
        ("http://e.com/a out=..", "line 7: unusable out= name '..'"),
        ("http://e.com/a checksum=md5", "line 7: checksum 'md5': expected 32 hex digits for md5"),
    ],
)
def test_unusable_lines_become_failing_jobs(line: str, reason: str) -> None:
    job = parse_line(line, 7)

    assert job is not None
    assert job.url == "http://e.com/a"
    assert isinstance(job.problem, UsageError)
    assert str(job.problem) == reason


async def test_reads_a_file_in_blocks_across_line_boundaries(tmp_path: Path) -> None:
    urls = [f"http://e.com/{n:06d}" for n in range(20_000)]  # several 64 KiB blocks
    source = tmp_path / "urls.txt"
    source.write_text("# list\n" + "\n".join(urls) + "\n\nhttp://e.com/é out=é.txt")

    jobs = [job async for job in (await InputFile.open(source)).jobs()]

    assert [j.url for j in jobs[:-1]] == urls
    assert jobs[-1] == Job("http://e.com/é", name="é.txt")


async def test_missing_input_file_is_a_local_io_error(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError, match=r"cannot read input file .*missing\.txt"):
        await InputFile.open(tmp_path / "missing.txt")


async def test_input_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError, match="cannot read input file"):
        await InputFile.open(tmp_path)


async def test_line_ends_of_every_kind_and_a_bom_in_the_middle(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(
        b"\xef\xbb\xbfhttp://a/1\rhttp://a/2\r\nhttp://a/3\n\xef\xbb\xbfhttp://a/4\r"
    )

    source = await InputFile.open(listing)

    assert [job.url async for job in source.jobs()] == [f"http://a/{n}" for n in range(1, 5)]


async def test_a_named_pipe_gives_each_line_as_it_arrives(tmp_path: Path) -> None:
    """`-i FIFO`, `-i <(tail -f list)`: a line is a job at once, not once 64 KiB have come."""
    fifo = tmp_path / "urls"
    os.mkfifo(fifo)
    writer = asyncio.ensure_future(asyncio.to_thread(os.open, fifo, os.O_WRONLY))
    source = await InputFile.open(fifo)
    fd = await writer
    try:
        os.write(fd, b"http://e.com/1\n")
        jobs = source.jobs()
        first = await asyncio.wait_for(anext(jobs), 10)
    finally:
        os.close(fd)

    assert first == Job("http://e.com/1")
    assert [job async for job in jobs] == []


async def test_stdin_from_dev_null_is_an_empty_list(tmp_path: Path) -> None:
    """The event loop cannot wait on /dev/null (epoll refuses it, and uvloop aborted)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiowget", "-i", "-", "-P", str(tmp_path),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0
    assert "0 saved" in stderr.decode()

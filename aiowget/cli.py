"""The command line: flags -> `Options`, `asyncio.run`, exit status. Nothing else."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from ._version import __version__
from .console import ConsoleReporter
from .downloader import Downloader
from .errors import AiowgetError, ExitStatus, UsageError
from .inputfile import STDIN, InputFile
from .models import IfExists, Job, Naming, Options

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aiowget {__version__}")
        raise typer.Exit()


@app.command(help="Download many URLs at once.")
def command(
    urls: Annotated[
        list[str] | None, typer.Argument(help="URLs to fetch.", show_default=False)
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "-i",
            "--input-file",
            metavar="FILE",
            help="Read URLs from FILE, one a line ('-' = stdin).",
        ),
    ] = None,
    directory: Annotated[
        Path,
        typer.Option(
            "-P", "--directory", metavar="DIR", help="Where files go (created if missing)."
        ),
    ] = Path(),
    output: Annotated[
        str | None,
        typer.Option(
            "-O", "--output", metavar="FILE", help="Exact output path for one URL ('-' = stdout)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Downloads at once.")] = 8,
    per_host: Annotated[
        int | None,
        typer.Option(
            "--per-host", min=1, metavar="N", help="Connections per host [default: --jobs]."
        ),
    ] = None,
    naming: Annotated[
        Naming, typer.Option(help="flat: host__path; basename: the last path segment.")
    ] = Naming.FLAT,
    content_disposition: Annotated[
        bool,
        typer.Option("--content-disposition", help="Use the server's suggested name (sanitized)."),
    ] = False,
    if_exists: Annotated[
        IfExists, typer.Option(help="When the final file is already there.")
    ] = IfExists.SKIP,
    timeout: Annotated[
        float,
        typer.Option(
            "-T", "--timeout", metavar="SECONDS", help="Longest silence tolerated mid-transfer."
        ),
    ] = 60.0,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", metavar="SECONDS", help="Connect timeout.")
    ] = 30.0,
    max_redirect: Annotated[
        int, typer.Option("--max-redirect", min=0, metavar="N", help="Redirects followed.")
    ] = 20,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    urls = urls or []
    try:
        options = Options(
            directory=directory,
            jobs=jobs,
            per_host=per_host,
            naming=naming,
            content_disposition=content_disposition,
            if_exists=if_exists,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_redirects=max_redirect,
        )
        _check_sources(urls, input_file, output)
    except UsageError as error:
        _fail(error)
    reporter = ConsoleReporter(quiet=quiet)
    try:
        status = asyncio.run(_run(urls, input_file, output, options, reporter))
    except KeyboardInterrupt:
        typer.echo("aiowget: interrupted", err=True)
        status = ExitStatus.INTERRUPTED
    raise typer.Exit(int(status))


def _check_sources(urls: list[str], input_file: str | None, output: str | None) -> None:
    if not urls and input_file is None:
        raise UsageError("no URLs given (pass URLs or -i FILE; see --help)")
    if output is not None and (len(urls) != 1 or input_file is not None):
        raise UsageError("-O/--output takes exactly one URL")


def _fail(error: AiowgetError) -> None:
    typer.echo(f"aiowget: {error}", err=True)
    raise typer.Exit(int(error.exit_status))


async def _run(
    urls: list[str],
    input_file: str | None,
    output: str | None,
    options: Options,
    reporter: ConsoleReporter,
) -> ExitStatus:
    try:
        source = await InputFile.open(input_file) if input_file is not None else None
        async with Downloader(options, on_event=reporter) as downloader:
            if output is None:
                await downloader.prepare_directory()  # one clear error, not one per URL
            if output == STDIN:
                await downloader.download_to_stream(urls[0], sys.stdout.buffer)
            elif output is not None:
                await downloader.download_one(urls[0], output)
            else:
                async for _ in downloader.iter_download(_jobs(urls, source)):
                    pass
    except AiowgetError as error:
        await reporter.write(f"aiowget: {error}")
        return error.exit_status
    await reporter.summarize()
    return reporter.tally.exit_status


async def _jobs(urls: list[str], source: InputFile | None) -> AsyncIterator[Job]:
    for url in urls:
        yield Job(url=url)
    if source is not None:
        async for job in source.jobs():
            yield job


def main() -> None:
    app()

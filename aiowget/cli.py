"""The command line: flags -> `Options`, `asyncio.run`, exit status. Nothing else.

Start-up: `--help` imports typer and the models, nothing more. asyncio, the console, the
parsers and the engine are imported by the functions of a run, where they are first needed
(each costs --help a few milliseconds; tests/test_public_api.py holds the list).
"""

import dataclasses
import functools
import importlib.util
import itertools
import os
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.core

from ._version import __version__
from .errors import AiowgetError, ExitStatus, LocalIOError, OutputClosedError, UsageError
from .models import DEFAULT_USER_AGENT, STDIN, Checksum, IfExists, Job, Naming, Options, Tally
from .text import shorten

if TYPE_CHECKING:
    from .console import ConsoleReporter, ProgressMode
    from .inputfile import InputFile

__all__ = ["app", "main"]


class _Command(typer.core.TyperCommand):
    """click's command, with its usage errors said on one line, as every other error."""

    # typer turns a KeyboardInterrupt in parsing or in the command into a silent status 130:
    # an interruption says so, on one line, as everywhere else.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _said_if_interrupted():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _said_if_interrupted():
            return super().invoke(ctx)

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except typer.Abort:  # click's word for a KeyboardInterrupt before the run
            _say("aiowget: interrupted")
            sys.exit(ExitStatus.INTERRUPTED)
        except typer.TyperException as error:  # click's (typer's copy): bad flags and values
            text = error.format_message() if hasattr(error, "format_message") else str(error)
            _say(f"aiowget: {shorten(' '.join(text.split()))} (see aiowget --help)")
            sys.exit(getattr(error, "exit_code", ExitStatus.USAGE))
        sys.exit(status or 0)


@contextmanager
def _said_if_interrupted() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        _say("aiowget: interrupted")
        raise typer.Exit(ExitStatus.INTERRUPTED) from None


# `distributed.download`'s default: repeated so that --help need not import it (and asyncio).
_SHARD_SIZE = 10_000

app = typer.Typer(
    add_completion=True,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" is not markup
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Progress(str, Enum):
    """--progress's choices: the console's `ProgressMode`, spelled again here so that --help
    need not import the console (and asyncio with it); a test keeps the two in step."""

    AUTO = "auto"
    BAR = "bar"
    PLAIN = "plain"
    NONE = "none"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aiowget {__version__}")
        raise typer.Exit()


@app.command(cls=_Command, help="Download many URLs at once.")
def command(
    urls: Annotated[
        list[str] | None,
        typer.Argument(metavar="[URL]...", help="URLs to fetch.", show_default=False),
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
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", min=1, metavar="N", help="Downloads at once.")
    ] = 8,
    per_host: Annotated[
        str,
        typer.Option(
            "--per-host",
            metavar="auto|auto:MAX|N|none",
            help="Connections per host: adapted to what it takes (up to MAX, default --jobs),"
            " N at most, or none: no limit per host [default: auto].",
            show_default=False,
        ),
    ] = "auto",
    naming: Annotated[
        Naming,
        typer.Option(
            metavar="flat|basename|tree",
            help="flat: host__path; basename: the last path segment; tree: host/dir/file.",
        ),
    ] = Naming.FLAT,
    content_disposition: Annotated[
        bool,
        typer.Option("--content-disposition", help="Use the server's suggested name (sanitized)."),
    ] = False,
    if_exists: Annotated[
        IfExists | None,
        typer.Option(
            metavar="skip|overwrite|rename|update",
            help="When the final file is already there (update: ask the server whether it "
            "changed, with a conditional GET).",
            show_default="skip",
        ),
    ] = None,
    timestamping: Annotated[
        bool,
        typer.Option(
            "-N", "--timestamping", help="--if-exists update, as wget's -N.", show_default=False
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "-T", "--timeout", metavar="SECONDS", help="Longest silence tolerated mid-transfer."
        ),
    ] = 60.0,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", metavar="SECONDS", help="Connect timeout.")
    ] = 30.0,
    retries: Annotated[
        int, typer.Option("-t", "--retries", metavar="N", help="Retries after the first attempt.")
    ] = 5,
    retry_wait: Annotated[
        float,
        typer.Option("--retry-wait", metavar="SECONDS", help="Base of the jittered backoff."),
    ] = 1.0,
    no_continue: Annotated[
        bool, typer.Option("--no-continue", help="Do not resume a .part left by an earlier run.")
    ] = False,
    checksum: Annotated[
        str | None,
        typer.Option("--checksum", metavar="ALGO:HEX", help="Verify the file (one URL)."),
    ] = None,
    max_redirect: Annotated[
        int, typer.Option("--max-redirect", min=0, metavar="N", help="Redirects followed.")
    ] = 20,
    header: Annotated[
        list[str] | None,
        typer.Option("-H", "--header", metavar="'NAME: VALUE'", help="Add a request header."),
    ] = None,
    user_agent: Annotated[
        str, typer.Option("-U", "--user-agent", metavar="AGENT", help="User-Agent header.")
    ] = DEFAULT_USER_AGENT,
    user: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Basic auth user name.")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            metavar="PASSWORD",
            envvar="AIOWGET_PASSWORD",
            show_envvar=True,
            help="Basic auth password (other users can read a command line: prefer "
            "--password-file or the variable).",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            metavar="FILE",
            help="Read the Basic auth password from the first line of FILE.",
        ),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", metavar="URL", help="HTTP proxy [default: the *_proxy variables]."),
    ] = None,
    no_check_certificate: Annotated[
        bool, typer.Option("--no-check-certificate", help="Do not verify TLS certificates.")
    ] = False,
    ca_certificate: Annotated[
        Path | None,
        typer.Option("--ca-certificate", metavar="FILE", help="Also trust the CAs in FILE (PEM)."),
    ] = None,
    split: Annotated[
        int,
        typer.Option("-s", "--split", min=1, metavar="N", help="Ranged segments per large file."),
    ] = 1,
    limit_rate: Annotated[
        str | None,
        typer.Option("--limit-rate", metavar="RATE", help="Total bandwidth cap, e.g. 500k, 2M."),
    ] = None,
    lowest_speed: Annotated[
        str | None,
        typer.Option(
            "--lowest-speed",
            metavar="RATE",
            help="Fail (as a timeout: retried, resumed) a transfer averaging less than RATE "
            "(1k, 50k, 1M) over the last -T seconds.",
        ),
    ] = None,
    max_filesize: Annotated[
        str | None,
        typer.Option("--max-filesize", metavar="SIZE", help="Refuse bodies larger than SIZE."),
    ] = None,
    fsync: Annotated[
        bool,
        typer.Option(
            "--fsync",
            help="Flush each file to the disk before its rename, and the folder after it, "
            "so a power cut leaves no empty or partial file under a final name.",
        ),
    ] = False,
    load_cookies: Annotated[
        Path | None,
        typer.Option(
            "--load-cookies",
            metavar="FILE",
            help="Send the cookies of FILE (Netscape cookies.txt) where their domain, path, "
            "secure flag and expiry allow.",
        ),
    ] = None,
    no_server_timestamps: Annotated[
        bool,
        typer.Option(
            "--no-server-timestamps",
            help="Do not give saved files the server's Last-Modified as their mtime.",
        ),
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Run the job in shards on a Dask cluster (local:N starts one here).",
        ),
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            min=1,
            metavar="N",
            help=f"With --dask: URLs per shard, one task on one worker [default: {_SHARD_SIZE}].",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[
        _Progress,
        typer.Option(
            metavar="auto|bar|plain|none", help="Bars on a terminal, plain lines elsewhere."
        ),
    ] = _Progress.AUTO,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per URL on stdout, then a summary.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only errors.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v",
            "--verbose",
            help="Print every request and response head on stderr (credentials masked).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    from .console import ConsoleReporter
    from .policy import parse_header, parse_rate, parse_size

    urls = urls or []
    try:
        options = Options(
            directory=directory,
            jobs=jobs,
            per_host=per_host,
            naming=naming,
            content_disposition=content_disposition,
            if_exists=_if_exists(if_exists, timestamping),
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            retry_wait=retry_wait,
            continue_partial=not no_continue,
            max_redirects=max_redirect,
            headers=dict(parse_header(h) for h in header or ()),
            user_agent=user_agent,
            auth=None if user is None else (user, _password(password, password_file)),
            proxy=proxy,
            verify_tls=not no_check_certificate,
            ca_certificate=ca_certificate,
            limit_rate=None if limit_rate is None else parse_rate(limit_rate),
            lowest_speed=None if lowest_speed is None else parse_rate(lowest_speed),
            max_filesize=None if max_filesize is None else parse_size(max_filesize),
            split=split,
            compute_sha256=json_output,
            fsync=fsync,
            cookies=load_cookies,
            server_timestamps=not no_server_timestamps,
            verbose=verbose,
        )
        _check_sources(urls, input_file, output, checksum)
        _check_standard_streams(input_file, output, json_output)
        _check_output(output)
        digest = Checksum.parse(checksum) if checksum is not None else None
        _check_dask(dask, shard_size, output, json_output, verbose)
        if json_output and output == STDIN:
            raise UsageError("--json and -O - would both write to stdout")
    except (UsageError, LocalIOError) as error:
        _fail(error, json_output)
    if dask is not None:
        # A --checksum (one URL) travels with its URL, as an input line's checksum= would.
        lines = [f"{url} checksum={digest}" if digest else url for url in urls]
        raise typer.Exit(_run_on_dask(dask, shard_size, lines, input_file, options, quiet))
    reporter = ConsoleReporter(
        mode=_mode(progress),
        quiet=quiet,
        json_stream=sys.stdout if json_output else None,
        total=None if input_file is not None else len(urls),
        verbose=verbose,
    )
    given = [Job(url=url, checksum=digest) for url in urls]
    runner = _event_loop_runner()
    work = _run(given, input_file, output, options, reporter)
    run = _interruptible(work, reporter)
    try:
        status = runner(run)
    except KeyboardInterrupt:
        run.close()  # interrupted before the loop ran them: no "never awaited" warnings
        work.close()
        raise
    raise typer.Exit(int(status))


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, ExitStatus]], ExitStatus]:
    """uvloop (a dependency wherever it builds): faster on many small files; else asyncio's.
    The command line's choice only: the library runs on whatever loop its caller runs."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.run
    run: Callable[[Coroutine[Any, Any, ExitStatus]], ExitStatus] = uvloop.run
    return run


def _run_on_dask(
    address: str,
    shard_size: int | None,
    urls: list[str],
    input_file: str | None,
    options: Options,
    quiet: bool,
) -> int:
    if importlib.util.find_spec("distributed") is None:  # pragma: no cover - in the dev extra
        _fail(UsageError("--dask needs the dask extra: pip install 'aiowget[dask]'"))
    from . import distributed
    from .console import shard_line, shards_start_line

    settings = {f.name: getattr(options, f.name) for f in fields(Options)}
    directory = settings.pop("directory")
    size = shard_size or _SHARD_SIZE
    source: Iterable[str] | str = input_file if input_file not in (None, STDIN) else urls
    if input_file == STDIN:
        source = itertools.chain(urls, sys.stdin)  # streamed into shards, never held whole
    try:
        report = distributed.download(
            source,
            directory,
            address=address,
            shard_size=size,
            on_start=None if quiet else lambda report: _say(shards_start_line(report, size)),
            on_shard=None if quiet else lambda shard, report: _say(shard_line(shard, report)),
            **settings,
        )
    except AiowgetError as error:  # a refused OUT/.aiowget too: one line, exit 3
        _fail(error)
    if quiet:  # the failures were not said as they came
        for shard, reason in report.shards_failed.items():
            _say(f"[-] shard {shard}: {reason}")
    _say(
        f"[=] {report.shards_done}/{report.shards} shards done, {report.saved} saved, "
        f"{_unchanged(report.unchanged)}{report.skipped} skipped, {report.failed} failed"
    )
    return int(report.exit_status)


def _unchanged(count: int) -> str:
    """Unchanged files (`-N`) are counted only in jobs that have some, as in the summary line."""
    return f"{count} unchanged, " if count else ""


def _if_exists(given: IfExists | None, timestamping: bool) -> IfExists:
    """`-N` is wget's name for `--if-exists update`: with another choice, a contradiction."""
    if not timestamping:
        return given or IfExists.SKIP
    if given not in (None, IfExists.UPDATE):
        raise UsageError(f"-N is --if-exists update: it cannot go with --if-exists {given}")
    return IfExists.UPDATE


def _mode(progress: _Progress) -> "ProgressMode":
    from .console import ProgressMode

    if progress is _Progress.AUTO:
        return ProgressMode.BAR if sys.stderr.isatty() else ProgressMode.PLAIN
    return ProgressMode(progress.value)


def _password(given: str | None, file: Path | None) -> str:
    if file is None:
        return given or ""
    if given is not None and "AIOWGET_PASSWORD" not in os.environ:
        raise UsageError("--password and --password-file: give one")
    try:
        with open(file, encoding="utf-8") as lines:
            return lines.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read password file {file}: {reason}") from None


def _check_dask(
    dask: str | None, shard_size: int | None, output: str | None, json_output: bool, verbose: bool
) -> None:
    if dask is None:
        if shard_size is not None:
            raise UsageError("--shard-size is for --dask")
        return
    if output is not None or json_output:
        raise UsageError(
            "--dask writes into -P DIR and its manifests (DIR/.aiowget/*.jsonl): "
            "it cannot be used with -O or --json"
        )
    if verbose:  # the requests are made by the workers, in other processes
        raise UsageError("-v shows this process's requests; with --dask the workers make them")


def _check_sources(
    urls: list[str], input_file: str | None, output: str | None, checksum: str | None
) -> None:
    if not urls and input_file is None:
        raise UsageError("no URLs given (pass URLs or -i FILE; see --help)")
    single = len(urls) == 1 and input_file is None
    if output is not None and not single:
        raise UsageError("-O/--output takes exactly one URL")
    if output == "":
        raise UsageError("-O/--output needs a file name (or - for standard output)")
    if checksum is not None and not single:
        raise UsageError("--checksum takes exactly one URL (use checksum= in an input file)")


def _say(line: str) -> None:
    """A line on stderr; a closed or departed stderr silences it, and nothing else."""
    with suppress(OSError, ValueError):
        typer.echo(line, err=True)


def _fail(error: AiowgetError, json_output: bool = False) -> NoReturn:
    _say(f"aiowget: {error}")
    if json_output:  # the stream always ends with a summary carrying the exit status
        import json

        from .console import summary_record

        record = summary_record(Tally(), 0.0)
        record.update(error=str(error), exit_code=int(error.exit_status))
        with suppress(OSError):
            typer.echo(json.dumps(record))
    raise typer.Exit(int(error.exit_status))


async def _interruptible(
    run: Coroutine[Any, Any, ExitStatus], reporter: "ConsoleReporter"
) -> ExitStatus:
    """`run`, stopped cleanly by SIGINT or SIGTERM: transfers are cancelled (keeping their
    resumable .part files), what was unfinished is said, and the status is 130."""
    import asyncio

    task: asyncio.Future[ExitStatus] = asyncio.ensure_future(run)
    interrupted = False

    def interrupt(number: int) -> None:
        nonlocal interrupted
        if interrupted:  # asked again while cleaning up: stop now, as the default would
            loop.remove_signal_handler(number)
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        interrupted = True
        task.cancel()

    loop = asyncio.get_running_loop()
    # Signal handlers can only be set from the main thread (tests run the CLI in others).
    signals = (signal.SIGINT, signal.SIGTERM) if _in_main_thread() else ()
    for number in signals:
        loop.add_signal_handler(number, interrupt, number)
    status = ExitStatus.INTERRUPTED
    try:
        status = await task
        return status
    except asyncio.CancelledError:
        if not interrupted:
            raise
        await reporter.interrupted()
        status = _with_output(reporter, ExitStatus.INTERRUPTED)
        return status
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
            # After the run: interrupted, what is left (a write stuck on a reader that stopped
            # reading, which the interpreter waits for) ends at the next signal, as by default;
            # finished, a late signal ends the process with the status the summary gave.
            late = functools.partial(_exit_now, status)
            signal.signal(number, signal.SIG_DFL if interrupted else late)


def _exit_now(status: int, *_: object) -> NoReturn:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    # Flushed on the side: a stdout whose reader stopped reading must not hold the exit.
    flushing = threading.Thread(target=_flush_standard_streams, daemon=True)
    flushing.start()
    flushing.join(_FLUSH_WAIT)
    os._exit(status)


_FLUSH_WAIT = 2.0  # seconds


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


async def _run(
    given: list[Job],
    input_file: str | None,
    output: str | None,
    options: Options,
    reporter: "ConsoleReporter",
) -> ExitStatus:
    import asyncio

    from .downloader import Downloader
    from .inputfile import InputFile

    reporter.start()
    try:
        source = await InputFile.open(input_file) if input_file is not None else None
        async with Downloader(options, on_event=reporter) as downloader:
            reporter.watch_hosts(downloader.busiest)
            if output is None:
                await downloader.prepare_directory()  # one clear error, not one per URL
            else:
                reporter.taken(given[0].url)
            if output == STDIN:
                result = await downloader.download_to_stream(given[0], sys.stdout.buffer)
                if isinstance(result.error, OutputClosedError):
                    raise result.error  # `-O - | head`: the reader has what it wanted
            elif output is not None and _is_device(output):
                # `-O /dev/null`, a FIFO: written to as a stream, never replaced by a file.
                stream = await asyncio.to_thread(open, output, "wb")
                try:
                    named = dataclasses.replace(given[0], path=Path(output))  # for the lines
                    result = await downloader.download_to_stream(named, stream)
                finally:
                    await asyncio.to_thread(stream.close)
            elif output is not None:
                await downloader.download_one(given[0], output)
            else:
                async for _ in downloader.iter_download(_jobs(given, source, reporter)):
                    pass
    except AiowgetError as error:
        await reporter.failed(error)
        status = error.exit_status
    else:
        await reporter.summarize(downloader.connections())
        status = reporter.tally.exit_status
    return _with_output(reporter, status)


def _is_device(path: str) -> bool:
    """A character device or a FIFO (`/dev/null`, `/dev/stdout`, `mkfifo`), links followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _with_output(reporter: "ConsoleReporter", status: ExitStatus) -> ExitStatus:
    """`status`, unless stdout could not be written (exit 3: its reader left, quietly, or
    a full disk, said once)."""
    failure = reporter.output_failed
    if failure is None:
        return status
    _drop_stdout()
    if not isinstance(failure, OutputClosedError):
        with suppress(OSError):
            print(f"aiowget: {failure}", file=sys.stderr)
    return ExitStatus.INTERRUPTED if status == ExitStatus.INTERRUPTED else failure.exit_status


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that left cannot make
    the interpreter complain at exit."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


async def _jobs(
    jobs: list[Job], source: "InputFile | None", reporter: "ConsoleReporter"
) -> AsyncIterator[Job]:
    """The jobs of the command line, then of the input; each one, once taken by a worker,
    is under way for the reporter (listed as unfinished on Ctrl-C)."""
    for job in jobs:
        reporter.taken(job.url)
        yield job
    if source is not None:
        async for job in source.jobs():
            reporter.taken(job.url)
            yield job


def main() -> None:
    # Until the run sets its own handling (and after it), a signal is an interruption too:
    # one line and status 130, not a traceback.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _CLOSED_AT_START.update(_reopen_closed_standard_streams())
        app()
        status = 0
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    except KeyboardInterrupt:
        _say("aiowget: interrupted")
        status = ExitStatus.INTERRUPTED
    # The run is over and said so: no signal may change its status now, and nothing is left
    # for the interpreter's teardown to wait for (a write stuck on a reader that left).
    _exit_now(status)


# Standard descriptors closed by the caller (`aiowget URL >&-`): reopened on /dev/null, so no
# socket or file of the run takes their number; a run that needs one of them is refused.
_CLOSED_AT_START: set[int] = set()


def _reopen_closed_standard_streams() -> set[int]:
    closed = set()
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115
            closed.add(fd)
    return closed


def _check_output(output: str | None) -> None:
    """`-O dir/` names a folder (a path drops the slash, and a symlink to a folder would
    then be taken for a file)."""
    if output is None or output == STDIN or not output.endswith(("/", os.sep)):
        return
    if os.path.isdir(output):
        raise LocalIOError(f"cannot save {output}: it is a directory")
    raise UsageError(f"-O {output}: a file name cannot end with '/'")


def _check_standard_streams(input_file: str | None, output: str | None, json: bool) -> None:
    if input_file == STDIN and 0 in _CLOSED_AT_START:
        raise UsageError("-i -: standard input is closed")
    if (output == STDIN or json) and 1 in _CLOSED_AT_START:
        raise UsageError("standard output is closed (it is where -O - and --json write)")

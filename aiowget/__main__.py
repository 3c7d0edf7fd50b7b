"""The `aiowget` command (and `python -m aiowget`): `--version` alone, then the command line."""

import errno
import os
import signal
import sys
from contextlib import suppress
from typing import NoReturn


def main() -> None:
    # Answered before the command line is built: importing typer alone takes three times the
    # interpreter's start (issue #15: --version and --help within 0.08 s).
    if sys.argv[1:] == ["--version"]:
        _version()
    # A signal while the command line is still being imported is an interruption too: one
    # line and status 130, not a traceback (cli.main takes over from there).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        from .cli import main as command_line
    except KeyboardInterrupt:
        _say("aiowget: interrupted")
        os._exit(130)
    command_line()


def _version() -> NoReturn:
    """What `--version` among other flags prints, in one unbuffered write; a stdout that fails
    is what it is to a run (README, Pipes): closed counts as /dev/null, a reader gone is a
    silent exit 3, anything else one line and exit 3."""
    from ._version import __version__
    from .errors import OutputClosedError, output_error

    status = 0
    try:
        os.write(1, f"aiowget {__version__}\n".encode())
    except OSError as exc:
        if exc.errno != errno.EBADF:
            failure = output_error(exc)
            if not isinstance(failure, OutputClosedError):
                _say(f"aiowget: {failure}")
            status = int(failure.exit_status)
    os._exit(status)


def _say(line: str) -> None:
    with suppress(OSError):  # a stderr gone silences the message, and nothing else
        os.write(2, f"{line}\n".encode())


if __name__ == "__main__":
    main()

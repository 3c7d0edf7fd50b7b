"""Run the aiowget command and signal it at its K-th step.

    python tests/hop_signal.py SIGNAL K hops|steps [aiowget arguments...]

A step is a hop to a worker thread (every disk operation of aiowget is one, and so is every
DNS lookup) or, with `steps`, also each call that changes the disk inside a hop (`os.open`,
`os.ftruncate`, `os.pwrite`, `os.replace`, `os.unlink`, `os.mkdir`, `os.rmdir`). So a test can
interrupt a real process at each one in turn: SIGKILL lands right before step K (the process
dies with the disk exactly as step K-1 left it, even between two calls of one hop); SIGINT or
SIGTERM lands while step K runs (the command's own interrupt handling, in the middle of a
write). At exit (`os._exit`) the number of steps made is printed to stderr (`steps: N`), so a
test knows when K went past the last one. Nothing is replaced: the calls are only counted.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# Long enough for the event loop to take the signal while the step is still running.
_WIDEN = 0.05
_DISK_CALLS = ("open", "ftruncate", "pwrite", "replace", "unlink", "mkdir", "rmdir")


class Steps:
    def __init__(self, number: signal.Signals, target: int) -> None:
        self.number, self.target, self.count = number, target, 0
        self.lock = threading.Lock()

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, signalling this process first when it is call number `target`."""
        with self.lock:
            self.count += 1
            hit = self.count == self.target
        if not hit:
            return function

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            os.kill(os.getpid(), self.number)
            time.sleep(_WIDEN)
            return function(*args, **kwargs)

        return interrupted


def count_hops(steps: Steps) -> None:
    submit = concurrent.futures.ThreadPoolExecutor.submit

    def counted(
        self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *a: Any, **k: Any
    ) -> concurrent.futures.Future[Any]:
        return submit(self, steps.wrap(fn), *a, **k)

    concurrent.futures.ThreadPoolExecutor.submit = counted  # type: ignore[method-assign,assignment]


def count_disk_calls(steps: Steps) -> None:
    for name in _DISK_CALLS:
        original = getattr(os, name)

        def counted(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            if threading.current_thread() is threading.main_thread():
                return _original(*args, **kwargs)  # start-up and imports: not the transfer
            return steps.wrap(_original)(*args, **kwargs)

        setattr(os, name, counted)


def main() -> None:
    steps = Steps(signal.Signals[sys.argv[1]], int(sys.argv[2]))
    count_hops(steps)
    if sys.argv[3] == "steps":
        count_disk_calls(steps)
    exit_now = os._exit  # the command ends with it, past atexit: say the count just before

    def counted_exit(status: int) -> None:
        print(f"steps: {steps.count}", file=sys.stderr, flush=True)
        exit_now(status)

    os._exit = counted_exit  # type: ignore[assignment]
    sys.argv = ["aiowget", *sys.argv[4:]]
    from aiowget.cli import main as aiowget

    aiowget()


if __name__ == "__main__":
    main()

"""aiowget: download many URLs at once with asyncio.

```
results = await aiowget.download(urls, directory="data", jobs=16)
for result in results.failed:
    print(result.url, result.error)
```
"""

import typing as _typing

from ._version import __version__
from .errors import (
    AiowgetError,
    AuthenticationError,
    ChecksumError,
    ContentTooShortError,
    DownloadTimeoutError,
    ExitStatus,
    FileTooLargeError,
    HTTPStatusError,
    InvalidURLError,
    LocalIOError,
    NetworkError,
    OutputClosedError,
    ProtocolError,
    TLSError,
    UsageError,
)
from .models import (
    Checksum,
    Event,
    Exchange,
    Finished,
    HttpHead,
    IfExists,
    Job,
    Naming,
    Note,
    Notice,
    Options,
    Outcome,
    Progress,
    Result,
    Results,
    Retrying,
    Started,
)

__all__ = [
    "AiowgetError",
    "AuthenticationError",
    "Checksum",
    "ChecksumError",
    "ContentTooShortError",
    "DownloadTimeoutError",
    "Downloader",
    "Event",
    "Exchange",
    "ExitStatus",
    "FileTooLargeError",
    "Finished",
    "HTTPStatusError",
    "HttpHead",
    "IfExists",
    "InvalidURLError",
    "Job",
    "LocalIOError",
    "Naming",
    "NetworkError",
    "Note",
    "Notice",
    "Options",
    "Outcome",
    "OutputClosedError",
    "Progress",
    "ProtocolError",
    "Result",
    "Results",
    "Retrying",
    "Started",
    "TLSError",
    "UsageError",
    "__version__",
    "download",
]

if _typing.TYPE_CHECKING:
    from .downloader import Downloader, download


def __getattr__(name: str) -> object:
    """`Downloader` and `download` are imported on first use: they bring aiohttp, which the
    command line's `--version` and `--help` (and a signal handler set early) do without."""
    if name in ("Downloader", "download"):
        from . import downloader

        return getattr(downloader, name)
    raise AttributeError(f"module 'aiowget' has no attribute {name!r}")

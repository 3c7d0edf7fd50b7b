"""policy.py and the exit-status rules of errors.py are pure: plain tables."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from aiowget.errors import (
    AiowgetError,
    AuthenticationError,
    ContentTooShortError,
    DownloadTimeoutError,
    ExitStatus,
    HTTPStatusError,
    InvalidURLError,
    LocalIOError,
    NetworkError,
    ProtocolError,
    TLSError,
    combine_exit_statuses,
    map_errors,
)
from aiowget.policy import check_complete, check_status, check_url, expected_length, origin


@pytest.mark.parametrize(
    "url", ["http://e.com", "https://e.com:8443/a?b#c", "HTTP://E.COM/", "http://[::1]:80/"]
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://e.com/f", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("e.com/f", "unsupported scheme 'none'"),
        ("http:///path", "no host"),
        ("http://e.com:99999/", "Port out of range"),
        ("http://e.com:0/", "port 0"),
        ("http://e.com/a b", "spaces or controls"),
        (" http://e.com/", "spaces or controls"),
        ("http://e.com/\x1b[2J", "spaces or controls"),
        ("http://u:hunter2@e.com:x/", "Port could not be cast"),
    ],
)
def test_check_url_rejects_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidURLError, match=reason.replace("(", r"\(")) as caught:
        check_url(url)
    assert "hunter2" not in str(caught.value)
    assert "\x1b" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://E.com/x", "http://e.com:80"),
        ("https://e.com/x", "https://e.com:443"),
        ("http://u:p@e.com:8080/", "http://e.com:8080"),
    ],
)
def test_origin(url: str, key: str) -> None:
    assert origin(url) == key


@pytest.mark.parametrize(
    ("status", "error", "exit_status"),
    [
        (200, None, 0),
        (204, None, 0),
        (206, None, 0),
        (304, ProtocolError, 7),
        (302, ProtocolError, 7),
        (401, AuthenticationError, 6),
        (407, AuthenticationError, 6),
        (403, HTTPStatusError, 8),
        (404, HTTPStatusError, 8),
        (503, HTTPStatusError, 8),
    ],
)
def test_check_status(status: int, error: type[AiowgetError] | None, exit_status: int) -> None:
    if error is None:
        check_status(status, "OK")
        return
    with pytest.raises(error) as caught:
        check_status(status, "Reason\x07")
    assert caught.value.exit_status == exit_status
    assert "\x07" not in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "length"),
    [({}, None), ({"Content-Length": "0"}, 0), ({"Content-Length": " 42 "}, 42)],
)
def test_expected_length(headers: dict[str, str], length: int | None) -> None:
    assert expected_length(headers) == length


@pytest.mark.parametrize("value", ["-1", "12abc", "", "1e3", "٣"])
def test_invalid_content_length_is_a_protocol_error(value: str) -> None:
    with pytest.raises(ProtocolError, match="invalid Content-Length"):
        expected_length({"Content-Length": value})


@pytest.mark.parametrize(
    ("received", "expected", "error"),
    [
        (10, 10, None),
        (10, None, None),
        (0, None, None),
        (9, 10, ContentTooShortError),
        (11, 10, ProtocolError),
    ],
)
def test_check_complete(received: int, expected: int | None, error: type[Exception] | None) -> None:
    if error is None:
        check_complete(received, expected)
    else:
        with pytest.raises(error):
            check_complete(received, expected)


@pytest.mark.parametrize(
    ("statuses", "combined"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 8], 8),
        ([8, 4, 0], 4),
        ([1, 8], 8),
        ([1, 1], 1),
        ([3, 2, 8], 2),
        ([7, 5, 6], 5),
    ],
)
def test_lowest_specific_exit_status_wins(statuses: list[int], combined: int) -> None:
    assert combine_exit_statuses(statuses) == combined


def raised(exc: Exception) -> AiowgetError:
    with pytest.raises(AiowgetError) as caught, map_errors():
        raise exc
    assert caught.value.__cause__ is exc
    return caught.value


@pytest.mark.parametrize(
    ("exc", "kind", "exit_status"),
    [
        (asyncio.TimeoutError(), DownloadTimeoutError, ExitStatus.NETWORK),
        (aiohttp.ServerTimeoutError("slow"), DownloadTimeoutError, ExitStatus.NETWORK),
        (aiohttp.ServerDisconnectedError(), NetworkError, ExitStatus.NETWORK),
        (aiohttp.ClientPayloadError("cut"), ContentTooShortError, ExitStatus.NETWORK),
        (ConnectionResetError(104, "Connection reset by peer"), NetworkError, ExitStatus.NETWORK),
        (aiohttp.ClientError("odd"), NetworkError, ExitStatus.NETWORK),
        (aiohttp.InvalidURL("nope"), InvalidURLError, ExitStatus.USAGE),
        (PermissionError(13, "Permission denied", "/x"), LocalIOError, ExitStatus.LOCAL_IO),
        (OSError(28, "No space left on device"), LocalIOError, ExitStatus.LOCAL_IO),
        (ValueError("strange"), AiowgetError, ExitStatus.GENERIC),
    ],
)
def test_map_errors_translates_into_the_tree(
    exc: Exception, kind: type[AiowgetError], exit_status: ExitStatus
) -> None:
    error = raised(exc)

    assert type(error) is kind
    assert error.exit_status == exit_status
    assert str(error)


def test_map_errors_keeps_aiowget_errors_and_names_the_file() -> None:
    original = TLSError("bad certificate")
    with pytest.raises(TLSError) as caught, map_errors():
        raise original
    assert caught.value is original
    assert str(raised(PermissionError(13, "Permission denied", "/x"))) == "/x: Permission denied"

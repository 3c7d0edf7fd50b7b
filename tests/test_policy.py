"""policy.py and the exit-status rules of errors.py are pure: plain tables."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

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
    UsageError,
    combine_exit_statuses,
    map_errors,
)
from aiowget.models import Checksum, PartState, Stamp
from aiowget.policy import (
    Action,
    ContentRange,
    DiskPace,
    TokenBucket,
    backoff,
    basic_authorization,
    can_resume,
    check_complete,
    check_status,
    check_url,
    conditional_headers,
    etag_to_keep,
    expected_length,
    file_mtime,
    is_retryable,
    is_unchanged,
    judge,
    origin,
    parse_content_range,
    parse_header,
    parse_http_date,
    parse_rate,
    parse_retry_after,
    parse_size,
    part_matches,
    resume_headers,
    retry_delay,
    same_validator,
    validator_of,
)


@pytest.mark.parametrize(
    "url", ["http://e.com", "https://e.com:8443/a?b#c", "HTTP://E.COM/", "http://[::1]:80/"]
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://e.com/a b", "http://e.com/caf\u00e9?q=\u00e9 t", "http://b\u00fccher.example/"]
)
def test_spaces_and_non_ascii_in_a_path_or_query_and_idn_hosts_are_fine(url: str) -> None:
    assert check_url(url) == url  # aiohttp percent-encodes them (UTF-8) and punycodes the host


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://e.com/f", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("e.com/f", "unsupported scheme 'none'"),
        ("http:///path", "no host"),
        ("http://e.com:99999/", "Port out of range"),
        ("http://e.com:0/", "port 0"),
        ("http://e .com/a", "a space in the host"),
        (" http://e.com/", "space before or after"),
        ("http://e.com/ ", "space before or after"),
        ("http://e.com/\x1b[2J", "control characters"),
        ("http://e.com/a\tb", "control characters"),
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
        # One host, however it is spelt, is one origin: what the request connects to.
        ("http://localhost./x", "http://localhost:80"),
        ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/x", "http://localhost:80"),
        ("http://b\u00fccher.de/", "http://xn--bcher-kva.de:80"),
        ("http://[::1]:8080/", "http://::1:8080"),
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
        (299, None, 0),
        (300, ProtocolError, 7),
        (304, ProtocolError, 7),
        (399, ProtocolError, 7),
        (400, HTTPStatusError, 8),
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
    assert str(status) in str(caught.value)
    assert "Reason" in str(caught.value)


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
        with pytest.raises(error, match=rf"\b{received}\b.*\b{expected}\b"):
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


# Retries and resuming ---------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (NetworkError("reset"), True),
        (DownloadTimeoutError("slow"), True),
        (ContentTooShortError(1, 2), True),
        (HTTPStatusError(500, ""), True),
        (HTTPStatusError(503, ""), True),
        (HTTPStatusError(429, ""), True),
        (HTTPStatusError(408, ""), True),
        (HTTPStatusError(404, ""), False),
        (HTTPStatusError(501, ""), False),
        (AuthenticationError(401, ""), False),
        (ProtocolError("loop"), False),
        (TLSError("bad cert"), False),
        (LocalIOError("disk full"), False),
        (InvalidURLError("x"), False),
    ],
)
def test_is_retryable(error: AiowgetError, retry: bool) -> None:
    assert is_retryable(error) is retry


@pytest.mark.parametrize(
    ("attempt", "draw", "delay"),
    [(0, 0.5, 0.5), (1, 0.5, 1.0), (3, 1.0, 8.0), (10, 1.0, 60.0), (10, 0.0, 0.0)],
)
def test_backoff_is_exponential_jittered_and_capped(
    attempt: int, draw: float, delay: float
) -> None:
    assert backoff(attempt, base=1.0, cap=60.0, draw=draw) == delay


@pytest.mark.parametrize(
    ("error", "delay"),
    [
        (HTTPStatusError(503, "", retry_after=7.0), 7.0),
        (HTTPStatusError(429, "", retry_after=9999.0), 300.0),
        (HTTPStatusError(500, ""), 2.0),
        (NetworkError("reset"), 2.0),
    ],
)
def test_retry_after_wins_when_sent(error: AiowgetError, delay: float) -> None:
    assert retry_delay(error, 1, base=1.0, cap=60.0, after_cap=300.0, draw=1.0) == delay


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 12:00:30", 30.0),  # no zone: taken as UTC
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_only_kept_for_429_and_503() -> None:
    for status, kept in [(429, 5.0), (503, 5.0), (500, None)]:
        with pytest.raises(HTTPStatusError) as caught:
            check_status(status, "", retry_after=5.0)
        assert caught.value.retry_after == kept


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-99/200", ContentRange(0, 99, 200)),
        ("bytes 100-199/*", ContentRange(100, 199, None)),
        ("bytes */200", ContentRange(None, None, 200)),
        ("bytes 5-4/200", None),
        ("items 0-1/2", None),
        ("bytes 0-99/200 junk", None),
        (None, None),
        ("bytes 5-5/10", ContentRange(5, 5, 10)),  # one byte
    ],
)
def test_parse_content_range(value: str | None, parsed: ContentRange | None) -> None:
    assert parse_content_range(value) == parsed


OLD = "Mon, 01 Jan 2024 10:00:00 GMT"
DATE = "Mon, 01 Jan 2024 10:01:00 GMT"  # OLD is exactly 60 s older: strong (RFC 9110 8.8.2.2)


@pytest.mark.parametrize(
    ("headers", "validator"),
    [
        ({"ETag": '"abc"', "Last-Modified": OLD, "Date": DATE}, '"abc"'),
        ({"ETag": ' "abc" '}, '"abc"'),
        ({"ETag": 'W/"weak"', "Last-Modified": OLD, "Date": DATE}, OLD),
        ({"Last-Modified": OLD, "Date": DATE}, OLD),
        ({"Last-Modified": OLD, "Date": "Mon, 01 Jan 2024 10:00:59 GMT"}, None),  # too recent
        ({"Last-Modified": OLD}, None),  # no Date to compare with
        ({"Last-Modified": "Tue", "Date": DATE}, None),  # not a date
        ({"Last-Modified": OLD, "Date": "Mon, 01 Jan 2024 10:01:00"}, None),  # no zone
        ({"ETag": 'W/"weak"'}, None),
        ({"ETag": "unquoted"}, None),
        ({}, None),
    ],
)
def test_validator_is_a_strong_one_or_none(headers: dict[str, str], validator: str | None) -> None:
    assert validator_of(headers) == validator


STATE = PartState("http://e.com/f", '"v1"', 1000)


@pytest.mark.parametrize(
    ("offset", "state", "headers"),
    [
        (0, STATE, {}),
        (10, None, {}),
        (10, PartState("u", None, None), {}),
        (10, PartState("u", None, 1000), {}),  # a known total does not name the version
        (1, STATE, {"Range": "bytes=1-", "If-Range": '"v1"'}),
        (10, PartState("u", OLD, None), {"Range": "bytes=10-", "If-Range": OLD}),
    ],
)
def test_resume_headers(offset: int, state: PartState | None, headers: dict[str, str]) -> None:
    assert resume_headers(offset, state) == headers
    assert can_resume(offset, state) is bool(headers)


@pytest.mark.parametrize(
    ("status", "headers", "offset", "action"),
    [
        (200, {}, 0, Action.FROM_ZERO),
        (200, {}, 500, Action.FROM_ZERO),  # Range ignored, or If-Range failed
        (206, {"Content-Range": "bytes 500-999/1000", "ETag": '"v1"'}, 500, Action.APPEND),
        (206, {"Content-Range": "bytes 500-999/1000"}, 500, Action.RESTART),  # no validator
        (206, {"Content-Range": "bytes 400-999/1000", "ETag": '"v1"'}, 500, Action.RESTART),
        (206, {"Content-Range": "bytes 500-1999/2000"}, 500, Action.RESTART),  # other total
        (206, {"Content-Range": "bytes 500-999/1000", "ETag": '"v2"'}, 500, Action.RESTART),
        (206, {"Content-Range": "bytes 500-999/1000", "ETag": 'W/"v1"'}, 500, Action.RESTART),
        (206, {"Content-Range": "bytes 500-999/*", "ETag": '"v1"'}, 500, Action.APPEND),
        (206, {"Content-Range": "bytes 500-999/1000", "Last-Modified": OLD}, 500, Action.RESTART),
        (206, {}, 500, Action.RESTART),  # no Content-Range at all
        (416, {"Content-Range": "bytes */1000"}, 1000, Action.COMPLETE),
        (416, {}, 1000, Action.COMPLETE),  # the sidecar knows the total
        (416, {"Content-Range": "bytes */2000"}, 1500, Action.RESTART),
    ],
)
def test_judge(status: int, headers: dict[str, str], offset: int, action: Action) -> None:
    assert judge(status, "", headers, offset, STATE, NOW) is action


@pytest.mark.parametrize(
    ("headers", "offset", "action"),
    [
        ({"Content-Range": "bytes */1", "ETag": '"v1"'}, 1, Action.COMPLETE),  # one byte, whole
        ({"Content-Range": "bytes */1", "ETag": '"v2"'}, 1, Action.RESTART),  # another version
        ({"Content-Range": "bytes */1"}, 1, Action.RESTART),  # which version? start over
        ({"Content-Range": "bytes */5", "ETag": '"v1"'}, 1, Action.RESTART),
        ({"ETag": '"v1"'}, 1, Action.RESTART),  # no total known anywhere: start over
    ],
)
def test_416_without_a_sidecar_total(headers: dict[str, str], offset: int, action: Action) -> None:
    assert judge(416, "", headers, offset, PartState("u", '"v1"', None), NOW) is action
    assert judge(416, "", headers, offset, None, NOW) is Action.RESTART


@pytest.mark.parametrize(
    ("headers", "validator", "same"),
    [
        ({}, '"v1"', False),  # a 206 must name its validator (RFC 9110 15.3.7)
        ({"ETag": '"v1"'}, '"v1"', True),
        ({"ETag": ' "v1" '}, '"v1"', True),
        ({"ETag": '"v2"'}, '"v1"', False),
        ({"ETag": 'W/"v1"'}, '"v1"', False),  # weak never matches strongly
        ({"ETag": '"v2"', "Last-Modified": OLD}, OLD, True),  # dates compare with dates
        ({"Last-Modified": DATE}, OLD, False),
        ({"Last-Modified": OLD}, OLD, True),
        ({"ETag": '"x"'}, None, True),
    ],
)
def test_same_validator(headers: dict[str, str], validator: str | None, same: bool) -> None:
    assert same_validator(headers, validator) is same


SEGMENTS = ((0, 99, 100), (100, 199, 5), (200, 299, 0))


@pytest.mark.parametrize(
    ("size", "state", "matches"),
    [
        (0, PartState("u", '"v"', 1000), True),
        (1000, PartState("u", '"v"', 1000), True),
        (1001, PartState("u", '"v"', 1000), False),  # junk past the end
        (5, PartState("u", '"v"', None), True),
        (300, PartState("u", '"v"', 300, SEGMENTS), True),
        (299, PartState("u", '"v"', 300, SEGMENTS), False),  # truncated
        (301, PartState("u", '"v"', 300, SEGMENTS), False),  # too long
        (300, PartState("u", '"v"', None, SEGMENTS), False),
        (300, PartState("u", '"v"', 300, ()), False),  # no segments at all
        (300, PartState("u", '"v"', 300, SEGMENTS[:2]), False),  # the last one missing
        (300, PartState("u", '"v"', 300, (SEGMENTS[0], SEGMENTS[2])), False),  # a gap
        (300, PartState("u", '"v"', 300, ((0, 99, 0), (50, 299, 0))), False),  # overlap
        (300, PartState("u", '"v"', 300, ((0, 99, 101), SEGMENTS[1], SEGMENTS[2])), False),
        (300, PartState("u", '"v"', 300, ((0, 99, -1), SEGMENTS[1], SEGMENTS[2])), False),
        (300, PartState("u", '"v"', 300, ((0, 299, 0), (300, 299, 0))), False),  # backwards
        (300, PartState("u", '"v"', 300, ((0, 0, 1), (1, 299, 299))), True),  # one-byte segment
        (300, PartState("u", '"v"', 300, ((0, 99, 100), (100, 199, 150), SEGMENTS[2])), False),
    ],
)
def test_part_matches_its_sidecar(size: int, state: PartState, matches: bool) -> None:
    assert part_matches(size, state) is matches


@pytest.mark.parametrize(
    ("status", "offset", "error"),
    [(206, 0, ProtocolError), (404, 500, HTTPStatusError), (416, 0, HTTPStatusError)],
)
def test_judge_rejects(status: int, offset: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        judge(status, "", {}, offset, STATE, NOW)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("sha256:" + "a" * 64, Checksum("sha256", "a" * 64)),
        ("SHA1:" + "B" * 40, Checksum("sha1", "b" * 40)),
        ("md5:" + "0" * 32, Checksum("md5", "0" * 32)),
    ],
)
def test_checksum_parse(text: str, parsed: Checksum) -> None:
    assert Checksum.parse(text) == parsed
    assert str(parsed) == text.lower()


@pytest.mark.parametrize("text", ["sha256:abc", "crc:00", "sha256", "md5:" + "g" * 32])
def test_checksum_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        Checksum.parse(text)


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("X-Token: XYZ", ("X-Token", "XYZ")),
        ("  Accept :  text/html  ", ("Accept", "text/html")),
        ("X-Url: http://a/b", ("X-Url", "http://a/b")),  # the first colon ends the name
        ("Empty:", ("Empty", "")),
    ],
)
def test_parse_header(text: str, pair: tuple[str, str]) -> None:
    assert parse_header(text) == pair


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no colon", "expected 'Name: value'"),
        ("bad name: x", "expected 'Name: value'"),
        (": x", "expected 'Name: value'"),
        ("X-A: one\rtwo", "line break or NUL"),
        ("X-A: one\ntwo", "line break or NUL"),
        ("X-A: one\0two", "line break or NUL"),
    ],
)
def test_parse_header_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_header(text)


def test_basic_authorization() -> None:
    assert basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert basic_authorization("é", "p:w") == "Basic w6k6cDp3"
    with pytest.raises(UsageError, match="cannot contain ':'"):
        basic_authorization("a:b", "c")


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("10k", 10240), ("1.5M", 1572864), (" 2g ", 2 << 30), ("0.5", 0)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "0k", "-1", "1x", "", "k", "1 kb"])
def test_parse_size_and_rate_reject(text: str) -> None:
    with pytest.raises(UsageError, match=r"^size .* is not a positive amount like 500k or 2M$"):
        parse_size(text)
    with pytest.raises(UsageError, match=r"^rate .* is not a positive amount"):
        parse_rate(text)


def test_parse_rate() -> None:
    assert parse_rate("500k") == 512000.0
    assert parse_rate("2M") == 2097152.0
    assert parse_rate("0.5") == 0.5


def test_token_bucket_charges_and_refills() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0)
    assert bucket.take(50, now=0.0) == 0.5  # nothing saved up yet: wait for the debt
    assert bucket.take(0, now=1.0) == 0.0  # refilled to 50 after the debt: no wait
    assert bucket.tokens == 50.0  # capped at the burst
    assert bucket.take(80, now=1.0) == pytest.approx(0.3)
    assert bucket.take(0, now=10.0) == 0.0
    assert bucket.tokens == 50.0


def test_a_416_never_finishes_a_part_without_a_validator() -> None:
    nameless = PartState("u", None, None)
    assert judge(416, "", {"Content-Range": "bytes */10"}, 10, nameless, NOW) is Action.RESTART


def test_a_206_to_a_request_without_range_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^206 Partial Content to a request without Range$"):
        judge(206, "", {"Content-Range": "bytes 0-9/10"}, 0, STATE, NOW)


def test_token_bucket_does_not_wait_when_the_balance_is_exactly_zero() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0, tokens=50.0, stamp=0.0)
    assert bucket.take(50, now=0.0) == 0.0


@pytest.mark.parametrize(
    ("took", "inline_after"),
    [
        # seconds each inline operation took -> whether the next runs inline, after each
        ([0.0005, 0.0005, 0.0005], [True, True, True]),
        ([0.002, 0.002, 0.002], [True, True, True]),  # at the limit: fast enough
        ([0.003, 0.003, 0.003], [True, True, False]),  # three slow in a row
        ([0.003, 0.001, 0.003, 0.003], [True, True, True, True]),  # one fast: count again
        ([0.021], [False]),  # one very slow is enough
        ([0.02], [True]),
    ],
)
def test_disk_work_leaves_the_loop_after_slow_operations(
    took: list[float], inline_after: list[bool]
) -> None:
    pace = DiskPace(slow=0.002, very_slow=0.02, strikes=3, backoff=30.0)
    assert pace.inline(0.0)
    seen = []
    for seconds in took:
        pace.took(seconds, now=10.0)
        seen.append(pace.inline(10.0))
    assert seen == inline_after


def test_disk_work_tries_the_loop_again_after_the_backoff() -> None:
    pace = DiskPace(very_slow=0.02, backoff=30.0)
    pace.took(1.0, now=10.0)
    assert [pace.inline(t) for t in (10.0, 39.9, 40.0)] == [False, False, True]
    pace.took(0.001, now=40.0)  # fast again: stays
    assert pace.inline(100.0)


# Server timestamps, kept ETags and --if-exists update ---------------------------------------

JUNE = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
MARCH = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 04 Mar 2021 05:06:07 GMT", MARCH),  # RFC 9110's IMF-fixdate
        ("  Thu, 04 Mar 2021 05:06:07 GMT ", MARCH),
        ("Thursday, 04-Mar-21 05:06:07 GMT", MARCH),  # obsolete RFC 850
        ("Thu Mar  4 05:06:07 2021", MARCH),  # asctime: no zone, so GMT
        ("Thu, 04 Mar 2021 07:06:07 +0200", MARCH),  # a zone: turned to UTC
        (None, None),
        ("", None),
        ("yesterday", None),
        ("Thu, 32 Mar 2021 05:06:07 GMT", None),
        ("Thu, 04 Mar 99999999999 05:06:07 GMT", None),
        ("Fri, 31 Dec 9999 23:59:59 -0100", None),  # past year 9999 in UTC: no traceback
        ("Mon, 01 Jan 0001 00:00:00 GMT", None),  # not 2001
        ("Thu, 01 Jan 2026 00:30:00 +0100", datetime(2025, 12, 31, 23, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_http_date(value: str | None, expected: datetime | None) -> None:
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (MARCH, MARCH.timestamp()),
        (JUNE, JUNE.timestamp()),
        (JUNE + timedelta(seconds=59), (JUNE + timedelta(seconds=59)).timestamp()),  # skew
        (JUNE + timedelta(seconds=61), None),  # from the future: a wrong clock
        (datetime(1969, 12, 31, tzinfo=timezone.utc), None),
        (datetime(1970, 1, 1, tzinfo=timezone.utc), 0.0),
        (None, None),
    ],
)
def test_file_mtime(when: datetime | None, expected: float | None) -> None:
    assert file_mtime(when, JUNE) == expected


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ('"abc"', '"abc"'),
        ('W/"abc"', 'W/"abc"'),  # weak: kept as sent (If-None-Match compares weakly)
        ('  "abc" ', '"abc"'),
        ('""', '""'),
        ('"' + "x" * 1022 + '"', '"' + "x" * 1022 + '"'),  # 1024: the longest kept
        ('"' + "x" * 1023 + '"', None),
        ("abc", None),  # not quoted
        ('w/"abc"', None),  # W is upper case
        ('"a"b"', None),
        ('"a b"', None),
        ('"a\x1bb"', None),
        ('"caf\u00e9"', None),  # obs-text is not kept
        ('"a", "b"', None),  # a list is no ETag
        (None, None),
    ],
)
def test_etag_to_keep(value: str | None, kept: str | None) -> None:
    assert etag_to_keep(value) == kept


_MARCH_DATE = "Thu, 04 Mar 2021 05:06:07 GMT"


@pytest.mark.parametrize(
    ("current", "headers"),
    [
        (
            Stamp(MARCH.timestamp(), '"v1"'),
            {"If-None-Match": '"v1"', "If-Modified-Since": _MARCH_DATE},
        ),
        (Stamp(MARCH.timestamp() + 0.9, None), {"If-Modified-Since": _MARCH_DATE}),  # floored
        (Stamp(None, 'W/"v1"'), {"If-None-Match": 'W/"v1"'}),
        (Stamp(MARCH.timestamp(), "garbage\r\nX: 1"), {"If-Modified-Since": _MARCH_DATE}),
        (Stamp((JUNE + timedelta(days=1)).timestamp(), None), {}),  # no date to ask by
        (Stamp(-1.0, None), {}),
        (Stamp(), {}),
    ],
)
def test_conditional_headers(current: Stamp, headers: dict[str, str]) -> None:
    assert conditional_headers(current, JUNE) == headers


@pytest.mark.parametrize(
    ("status", "sent", "unchanged"),
    [
        (304, {"If-None-Match": '"v1"'}, True),
        (304, {"If-Modified-Since": _MARCH_DATE}, True),
        (304, {}, False),  # nobody asked: a protocol error, not "unchanged"
        (304, {"Range": "bytes=5-"}, False),
        (200, {"If-None-Match": '"v1"'}, False),  # changed: fetched and replaced
        (412, {"If-None-Match": '"v1"'}, False),
    ],
)
def test_is_unchanged(status: int, sent: dict[str, str], unchanged: bool) -> None:
    assert is_unchanged(status, sent) is unchanged

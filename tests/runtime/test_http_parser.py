"""Request framing (runtime/http/parser.py): llhttp through httptools, mkserve's limits on top.

Every class of input that lets a front end and mkserve count requests
differently is refused with the status the client gets; valid requests in any
split into reads parse the same; and no mutation of a request makes the parser
accept more requests, or other requests, than h11 (an independent strict
parser, standing in for the proxy in front) sees in the same bytes.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import h11
import pytest
from http_cases import CHUNKED, defects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mkserve.runtime.http import HttpError, Limits
from mkserve.runtime.http.parser import RequestParser

LIMITS = Limits(max_body=100_000, max_trailer=1024, max_chunks=64)
DEFECTS = defects(LIMITS)


def parse(data: bytes, limits: Limits = LIMITS, pieces: list[int] | None = None):
    """The requests `data` parses into, fed whole or cut at `pieces`."""
    parser = RequestParser(limits)
    cuts = [0, *(pieces or []), len(data)]
    for start, end in itertools.pairwise(cuts):
        if start < end:
            parser.feed(data[start:end])
    return list(parser.done)


def refused(data: bytes, limits: Limits = LIMITS) -> HttpError:
    parser = RequestParser(limits)
    with pytest.raises(HttpError) as caught:
        parser.feed(data)
    return caught.value


def test_a_plain_post():
    [request] = parse(b"POST /predictions/m?x=1 HTTP/1.1\r\nHost: a\r\n"
                      b"content-type: application/json\r\nContent-Length: 12\r\n"
                      b"X-Request-ID: r1\r\n\r\n{\"a\": [1, 2]}"[:-1])
    assert (request.method, request.path, request.query) == ("POST", "/predictions/m", "x=1")
    assert request.version == (1, 1) and request.keep_alive and request.length == 12
    assert request.content_type == "application/json"
    assert request.body == b'{"a": [1, 2]'
    # Names as werkzeug spells environ headers (what handlers saw under gunicorn).
    assert request.headers == {"Host": "a", "Content-Type": "application/json",
                               "Content-Length": "12", "X-Request-Id": "r1"}


def test_repeated_headers_are_joined_and_underscored_names_dropped():
    [request] = parse(b"GET / HTTP/1.1\r\nHost: t\r\nAccept: a\r\nAccept: b \r\nX_Forwarded_For: spoof"
                      b"\r\nTransfer_Encoding: chunked\r\n\r\n")
    assert request.headers == {"Host": "t", "Accept": "a,b"} and not request.chunked


def test_keep_alive_by_version_and_connection_header():
    assert not parse(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")[0].keep_alive
    assert not parse(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive
    assert parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")[0].keep_alive


@pytest.mark.parametrize(("target", "path", "query"), [
    (b"http://host:8080/ping?a=b", "/ping", "a=b"),
    (b"http://host", "/", ""),
    (b"/predictions/caf%C3%A9", "/predictions/caf\xc3\xa9", ""),
    (b"/a#frag", "/a", ""),
    (b"/a?", "/a", ""),
])
def test_targets(target: bytes, path: str, query: str):
    [request] = parse(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (request.path, request.query, request.target) == (path, query, target.decode())


def test_options_asterisk():
    assert parse(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")[0].path == "*"
    assert refused(b"GET * HTTP/1.1\r\nHost: t\r\n\r\n").status == 400


def test_chunked_body_with_extensions_and_trailers():
    [request] = parse(CHUNKED + b"3;name=value;q=\"quoted\"\r\nabc\r\n2\r\nde\r\n"
                      b"0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n")
    assert request.chunked and request.body == b"abcde" and request.length is None


def test_expect_100_continue_is_noticed_on_http_1_1_only():
    head = b"POST / HTTP/1.%d\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    parser = RequestParser(LIMITS)
    parser.feed(head % 1)
    assert parser.current is not None and parser.current.expect_continue
    parser = RequestParser(LIMITS)
    parser.feed(head % 0)
    assert parser.current is not None and not parser.current.expect_continue


def test_pipelined_requests_come_out_in_order():
    data = (b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
            + CHUNKED + b"1\r\nq\r\n0\r\n\r\n" + b"\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [(r.path, r.body) for r in parse(data)] == [
        ("/a", b""), ("/b", b"xyz"), ("/p", b"q"), ("/c", b"")]


def test_an_upgrade_request_without_a_body_is_served_and_parsing_goes_on():
    data = (b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [r.path for r in parse(data)] == ["/a", "/b"]
    assert [r.path for r in parse(data, pieces=[40, 130])] == ["/a", "/b"]


def test_thousands_of_upgrade_requests_in_one_read_are_parsed_without_recursion():
    one = b"GET /u HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
    assert len(parse(one * 3000)) == 3000


def test_a_request_completed_before_a_refused_one_is_kept():
    parser = RequestParser(LIMITS)
    with pytest.raises(HttpError):
        parser.feed(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nget /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [r.path for r in parser.done] == ["/a"]


@pytest.mark.parametrize("name", DEFECTS)
def test_each_framing_defect_is_refused(name: str):
    data, status = DEFECTS[name]
    error = refused(data)
    assert error.status == status, error.message
    assert error.type_name.endswith("Exception") and error.message


def test_a_chunked_body_is_counted_as_it_arrives():
    parser = RequestParser(LIMITS)
    parser.feed(CHUNKED)
    for _ in range(10):
        parser.feed(b"2710\r\n" + b"x" * 10_000 + b"\r\n")  # 100,000 bytes: the limit
    with pytest.raises(HttpError) as caught:
        parser.feed(b"2710\r\n" + b"x" * 10_000 + b"\r\n")
    assert caught.value.status == 413


@pytest.mark.parametrize(("prefix", "status"), [
    (CHUNKED + b"0\r\nX-Trailer: ", 431),  # an unterminated trailer
    (CHUNKED + b"5;ext=", 431),  # an endless chunk extension
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: ", 431),  # an endless header field
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Name-Without-End", 431),
    (b"", 400),  # endless empty lines before a request
])
def test_what_the_parser_holds_without_finishing_a_piece_is_bounded(prefix: bytes, status: int):
    """llhttp keeps an unfinished field in memory; fed in small reads it must not grow
    past one field's size (the hand-written parser held an endless trailer forever)."""
    parser = RequestParser(LIMITS)
    parser.feed(prefix)
    filler = b"\r\n" if not prefix else b"a"
    fed = 0
    with pytest.raises(HttpError) as caught:
        while fed < 1_000_000:
            parser.feed(filler * 512)
            fed += 512 * len(filler)
    assert caught.value.status == status
    assert fed <= LIMITS.max_stall + 1024


def test_a_megabyte_in_one_byte_chunks_is_refused_early():
    parser = RequestParser(Limits(max_body=2_000_000))
    parser.feed(CHUNKED)
    sent = 0
    with pytest.raises(HttpError) as caught:
        while sent < 1_000_000:
            parser.feed(b"1\r\nx\r\n" * 100)
            sent += 100
    assert caught.value.status == 413 and sent <= Limits().max_chunks + 100


def test_data_after_a_closing_request_never_parses_as_a_request():
    parser = RequestParser(LIMITS)
    try:
        parser.feed(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    except HttpError:
        pass
    assert [r.path for r in parser.done] == ["/a"]


# -- properties -----------------------------------------------------------------
REQUESTS = [
    b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n",
    (b"POST /predictions/m HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
     b"Content-Length: 13\r\n\r\n{\"i\": [1, 2]}"),
    CHUNKED + b"4;x=y\r\n{\"a\"\r\n5\r\n: 1 }\r\n0\r\nX-T: 1\r\n\r\n",
    b"\r\nHEAD /readyz?x=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nAccept: text/plain\r\n\r\n",
    b"GET http://h/v2/health/ready HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]


def summary(requests) -> list[tuple]:
    return [(r.method, r.path, r.query, r.version, r.headers, r.body, r.keep_alive)
            for r in requests]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=6), st.data())
def test_any_split_of_a_pipeline_parses_the_same(requests: list[bytes], data: st.DataObject):
    stream = b"".join(requests)
    whole = summary(parse(stream))
    assert len(whole) == len(requests)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12, unique=True))
    assert summary(parse(stream, pieces=sorted(cuts))) == whole
    assert summary(parse(stream, pieces=list(range(1, len(stream))))) == whole  # byte by byte


def h11_requests(data: bytes) -> tuple[list[tuple[str, str, bytes]], bool]:
    """The requests h11 sees in `data`, and whether it then refused the rest (rather than
    waiting for more bytes)."""
    seen: list[tuple[str, str, bytes]] = []
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
    conn.receive_data(data)
    method = target = ""
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.PAUSED and conn.our_state is h11.SEND_RESPONSE:
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return seen, False
            elif isinstance(event, h11.Request):
                method, target, body = event.method.decode(), event.target.decode(), b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.append((method, target, body))
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return seen, True


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REQUESTS[:3]), st.data())
def test_no_mutation_makes_us_see_requests_a_strict_front_end_does_not(
        request: bytes, data: st.DataObject):
    """The smuggling property: whatever a request is mutated into, mkserve and h11 (the
    proxy in front) agree on the requests both see; and mkserve sees more than h11 only
    where h11 refused the rest of the stream, so never forwarded it. (mkserve seeing
    more while h11 still waits for bytes is the desync that smuggles a request.)"""
    stream = bytearray(request + REQUESTS[0])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b"\r\n\t \x00:;,-0123456789aAzZ\x7f\xff"))
        if action == "replace":
            stream[at] = byte
        elif action == "insert":
            stream.insert(at, byte)
        else:
            del stream[at]
    parser = RequestParser(LIMITS)
    try:
        parser.feed(bytes(stream))
    except HttpError as error:
        assert 400 <= error.status < 600
    ours = [(r.method, r.target, r.body) for r in parser.done]
    theirs, h11_refused = h11_requests(bytes(stream))
    common = min(len(ours), len(theirs))
    assert ours[:common] == theirs[:common]
    assert len(ours) <= len(theirs) or h11_refused


def test_no_hand_written_framing_is_left_in_the_runtime():
    """Request lines, header fields and chunk lines are llhttp's to tokenize, nobody else's."""
    import mkserve.runtime

    root = Path(mkserve.runtime.__file__).parent
    looking_for_line_ends = re.compile(
        r"""\.(find|rfind|index|split|rsplit|partition|startswith|endswith)\(\s*b?["']\\r""")
    hex_sizes = re.compile(r"int\([^()]*,\s*16\)")
    found = [f"{path.relative_to(root)}:{number}: {line.strip()}"
             for path in sorted(root.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if looking_for_line_ends.search(line) or hex_sizes.search(line)]
    assert found == []
    assert "httptools.HttpRequestParser" in (root / "http" / "parser.py").read_text()
    assert len((root / "worker.py").read_text().splitlines()) < 300

"""The worker's request-head parser (runtime/worker.py parse_head) on its own.

What it accepts becomes the WSGI environ and the handler's headers; what it
refuses is an HttpError with the status the client gets. Anything else it
raises would be a 500 and a closed connection, so the fuzz test feeds it
arbitrary text.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mkserve.runtime.worker import HttpError, parse_head, response_bytes


def parse(head: str):
    return parse_head(head, 4094, 100, 8190)


def test_a_plain_post():
    request = parse("POST /predictions/m?x=1 HTTP/1.1\r\nHost: a\r\n"
                    "content-type: application/json\r\nContent-Length: 12\r\nX-Request-ID: r1")
    assert (request.method, request.path, request.query) == ("POST", "/predictions/m", "x=1")
    assert request.version == (1, 1) and request.keep_alive and request.length == 12
    assert request.content_type == "application/json"
    # Names as werkzeug spells environ headers (what handlers saw under gunicorn).
    assert request.headers == {"Host": "a", "Content-Type": "application/json",
                               "Content-Length": "12", "X-Request-Id": "r1"}


def test_repeated_headers_are_joined_and_underscored_names_dropped():
    request = parse("GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\nX_Forwarded_For: spoof")
    assert request.headers == {"Accept": "a,b"}


def test_keep_alive_by_version_and_connection_header():
    assert not parse("GET / HTTP/1.1\r\nConnection: close").keep_alive
    assert not parse("GET / HTTP/1.0").keep_alive
    assert parse("GET / HTTP/1.0\r\nConnection: Keep-Alive").keep_alive


def test_targets():
    assert parse("GET http://host:8080/ping?a=b HTTP/1.1").path == "/ping"
    assert parse("GET http://host HTTP/1.1").path == "/"
    assert parse("GET /predictions/caf%C3%A9 HTTP/1.1").path == "/predictions/caf\xc3\xa9"
    assert parse("OPTIONS * HTTP/1.1").path == "*"
    assert parse("GET /a#frag HTTP/1.1").path == "/a"


def test_chunked():
    request = parse("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked")
    assert request.chunked and request.length is None


@pytest.mark.parametrize(("head", "status"), [
    ("GET /", 400),
    ("GET  / HTTP/1.1", 400),
    ("G(T / HTTP/1.1", 400),
    ("GET ping HTTP/1.1", 400),
    ("GET / HTTP/3.0", 505),
    ("GET / HTTPS/1.1", 400),
    ("GET / HTTP/1.1\r\nNo-Colon", 400),
    ("GET / HTTP/1.1\r\nSpace Name: x", 400),
    ("GET / HTTP/1.1\r\n\tfolded", 400),
    ("GET / HTTP/1.1\r\nX: a\x00b", 400),
    ("GET / HTTP/1.1\r\nX: a\nInjected: b", 400),
    ("GET /" + "a" * 5000 + " HTTP/1.1", 414),
    ("GET / HTTP/1.1" + "\r\nX: y" * 101, 431),
    ("GET / HTTP/1.1\r\nX: " + "y" * 9000, 431),
    ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 0x10", 400),
    ("POST / HTTP/1.1\r\nContent-Length: \u0661", 400),  # a non-ASCII digit
    ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 501),
    ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 501),
])
def test_refusals(head: str, status: int):
    with pytest.raises(HttpError) as caught:
        parse(head)
    assert caught.value.status == status and caught.value.type_name.endswith("Exception")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=300))
def test_any_head_parses_or_is_refused_with_a_4xx_or_5xx(head: str):
    try:
        request = parse(head)
    except HttpError as error:
        assert error.status in (400, 414, 431, 501, 505)
    else:
        assert request.path.startswith("/") or request.path == "*"


def test_response_bytes_frames_every_answer():
    out = response_bytes((1, 1), "200 OK", [("Content-Type", "text/plain")], b"hi", True)
    assert out.endswith(b"\r\nContent-Length: 2\r\n\r\nhi")
    assert b"\r\nConnection: keep-alive\r\n" in out
    head = response_bytes((1, 0), "200 OK", [("Content-Length", "2")], b"hi", False,
                          head_only=True)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Content-Length: 2" in head
    assert b"Content-Length" not in response_bytes((1, 1), "204 NO CONTENT", [], b"", True)

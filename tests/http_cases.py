"""HTTP requests for the framing tests: each class of defect, with the status it gets.

Shared by tests/runtime/test_http_parser.py (the parser alone) and
tests/e2e/test_conformance.py (a real server over raw sockets).
"""
from __future__ import annotations

from mkserve.runtime.http import Limits

CHUNKED = b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: t\r\n"
GET = b"GET / HTTP/1.1\r\nHost: t\r\n"


def defects(limits: Limits) -> dict[str, tuple[bytes, int]]:
    """Each class of framing defect under `limits`: the bytes, and the status they get.

    The first group is what the hand-written parser let through (issue 12); then
    the smuggling classics; then the size limits.
    """
    return {
        "bare LF in a chunk extension": (CHUNKED + b"3;a\nb\r\nabc\r\n0\r\n\r\n", 400),
        "CR in a chunk extension": (CHUNKED + b"3;a\rb\r\nabc\r\n0\r\n\r\n", 400),
        "NUL in a chunk extension": (CHUNKED + b"3;a\x00b\r\nabc\r\n0\r\n\r\n", 400),
        "space after a chunk size": (CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n", 400),
        "space before a chunk size": (CHUNKED + b" 3\r\nabc\r\n0\r\n\r\n", 400),
        "tab after a chunk size": (CHUNKED + b"3\t\r\nabc\r\n0\r\n\r\n", 400),
        "bare LF after a chunk size": (CHUNKED + b"3\nabc\r\n0\r\n\r\n", 400),
        "bare LF after chunk data": (CHUNKED + b"3\r\nabc\n0\r\n\r\n", 400),
        "bare LF in the trailer": (CHUNKED + b"0\r\nX: 1\n" + GET + b"\r\n", 400),
        "garbage in the trailer": (CHUNKED + b"0\r\nnot a field\r\n\r\n", 400),
        "a trailer over its limit": (
            CHUNKED + b"0\r\nX-T: " + b"a" * limits.max_trailer + b"\r\n\r\n", 431),
        "lowercase method": (b"post / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 400),
        "unknown method": (b"FETCH / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "control byte in the target": (b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "DEL in the target": (b"GET /a\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "non-ASCII in the target": (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "bare LF line ends in the head": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        "bare CR in the head": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
        "an HTTP/1.1 request without Host": (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
        "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        "an upgrade with a body": (
            POST + b"Connection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc", 400),
        "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\n\r\n", 505),
        "HTTP/0.9 request line": (b"GET /\r\n\r\n", 505),
        "HTTP/1.2": (b"GET / HTTP/1.2\r\n\r\n", 400),
        "no version": (b"GET /\r\nHost: a\r\n\r\n", 505),
        "no target": (b"GET  HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "a relative target": (b"GET ping HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "obs-fold": (GET + b"X: a\r\n b\r\n\r\n", 400),
        "a space in a field name": (GET + b"X Y: a\r\n\r\n", 400),
        "NUL in a field value": (GET + b"X: a\x00b\r\n\r\n", 400),
        "an empty field name": (GET + b": a\r\n\r\n", 400),
        # The classics.
        "Content-Length with Transfer-Encoding": (
            POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        "Transfer-Encoding with Content-Length": (
            POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        "two Content-Lengths": (
            POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        "two equal Content-Lengths": (
            POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        "a Content-Length list": (POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
        "a signed Content-Length": (POST + b"Content-Length: +3\r\n\r\nabc", 400),
        "a negative Content-Length": (POST + b"Content-Length: -1\r\n\r\n", 400),
        "a hex Content-Length": (POST + b"Content-Length: 0x10\r\n\r\n", 400),
        "a non-ASCII digit": (POST + "Content-Length: \u0661\r\n\r\n".encode(), 400),
        "Transfer-Encoding gzip": (POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        "gzip, chunked": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        "chunked, gzip": (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
        "xchunked": (POST + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
        "two Transfer-Encodings": (
            POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400),
        "space before the colon": (POST + b"Transfer-Encoding : chunked\r\n\r\n", 400),
        "vertical tab in a value": (POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n", 400),
        "chunked in HTTP/1.0": (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        "a chunk size with 0x": (CHUNKED + b"0x3\r\nabc\r\n0\r\n\r\n", 400),
        "chunk data longer than its size": (CHUNKED + b"3\r\nabcd\r\n0\r\n\r\n", 400),
        "a chunk size that overflows": (CHUNKED + b"fffffffffffffffff\r\n", 413),
        # Sizes.
        "a target over the limit": (
            b"GET /" + b"a" * limits.max_line + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        "too many header fields": (GET + b"X: y\r\n" * limits.max_fields + b"\r\n", 431),
        "a header field over the limit": (
            GET + b"X: " + b"y" * limits.max_field + b"\r\n\r\n", 431),
        "a Content-Length over the limit": (
            POST + b"Content-Length: %d\r\n\r\n" % (limits.max_body + 1), 413),
        "a Content-Length that overflows": (
            POST + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n", 413),
        "a chunked body over the limit": (
            CHUNKED + b"%x\r\n" % (limits.max_body + 1) + b"x" * (limits.max_body + 1), 413),
        "too many chunks": (CHUNKED + b"1\r\nx\r\n" * (limits.max_chunks + 1), 413),
    }

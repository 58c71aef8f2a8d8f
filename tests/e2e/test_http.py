"""HTTP/1.1 as mkserve's server speaks it (runtime/http/), on a real server.

Raw sockets: chunked bodies, 100-continue, HTTP/1.0, request limits and
malformed requests (each answered in the serving error shape, with the
connection closed and the server still serving), slow readers, clients that
vanish, queries and forms (through Flask), and answers that wait on the model
while other connections keep being served.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from rawhttp import Reader, connect, request_bytes
from server import Server, plain_model

pytestmark = pytest.mark.slow

HANDLER = """
import time


class Handler:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        out = []
        for row in data:
            body = row.get("body")
            if isinstance(body, dict) and "sleep" in body:
                time.sleep(body["sleep"])
            if isinstance(body, dict) and "size" in body:
                out.append({"blob": "x" * body["size"]})
            elif body is None:
                out.append({"fields": sorted(k for k in row)})
            else:
                out.append({"echo": body})
        return out
"""
LIMIT = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("http")
    source = plain_model(tmp / "m", HANDLER)
    env = {"MKSERVE_WORKERS": "1", "MKSERVE_THREADS": "2", "MKSERVE_BATCH_SIZE": "4",
           "MKSERVE_MAX_REQUEST_SIZE": str(LIMIT)}
    with Server(source, tmp, env=env) as srv:
        srv.wait_ready()
        yield srv


def closed_after(sock: socket.socket, reader: Reader) -> bool:
    """True if the server closes the connection (after whatever it already sent)."""
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
            reader.buf += chunk
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def still_serving(server: Server) -> None:
    answer = server.post("/predictions/plain", json={"i": 1})
    assert answer.status_code == 200 and answer.json() == {"echo": {"i": 1}}


def test_chunked_body_is_answered_like_a_content_length_one(server: Server):
    body = json.dumps({"i": 42}).encode()
    sock, reader = connect(server)
    with sock:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3], body[3:]))
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunks + b"0\r\n\r\n")
        status, headers, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"echo": {"i": 42}}
        assert headers["connection"] == "keep-alive"
        sock.sendall(request_bytes(3))  # the connection goes on
        assert json.loads(reader.response()[2]) == {"echo": {"i": 3}}


def test_expect_100_continue_gets_the_interim_answer_before_the_body(server: Server):
    body = json.dumps({"i": 7}).encode()
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        while b"\r\n\r\n" not in reader.buf:
            reader._fill()
        assert reader.buf == b"HTTP/1.1 100 Continue\r\n\r\n"
        reader.buf = b""
        sock.sendall(body)
        status, _, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"echo": {"i": 7}}


def test_http_1_0_closes_unless_asked_to_keep_alive(server: Server):
    body = b'{"i": 1}'
    head = (b"POST /predictions/plain HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: 8\r\n")
    sock, reader = connect(server)
    with sock:
        sock.sendall(head + b"\r\n" + body)
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.buf == b"" and closed_after(sock, reader)
    sock, reader = connect(server)
    with sock:
        for _ in range(3):
            sock.sendall(head + b"Connection: keep-alive\r\n\r\n" + body)
            status, headers, _ = reader.response()
            assert status == 200 and headers["connection"] == "keep-alive"


def test_connection_close_is_honoured(server: Server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert closed_after(sock, reader)


@pytest.mark.parametrize(("raw", "status", "kind"), [
    (b"NONSENSE\r\n\r\n", 400, "BadRequestException"),
    (b"GET /ping HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTPVersionNotSupportedException"),
    (b"GET /ping HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, "BadRequestException"),
    (b"GET /ping HTTP/1.1\r\nHost: t\r\n folded: continuation\r\n\r\n", 400,
     "BadRequestException"),
    (b"GET " + b"/x" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "URITooLongException"),
    (b"GET /ping HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431,
     "RequestHeaderFieldsTooLargeException"),
    (b"GET /ping HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
     "RequestHeaderFieldsTooLargeException"),
    # Smuggling shapes: never guess where the body ends.
    ((b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n"), 400, "BadRequestException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nContent-Length: 9\r\n\r\n", 400,
     "BadRequestException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400,
     "BadRequestException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "NotImplementedException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "BadRequestException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n", 400,
     "BadRequestException"),
    (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1), 413,
     "RequestEntityTooLargeException"),
])
def test_malformed_requests_get_a_json_error_and_a_closed_connection(server: Server, raw: bytes,
                                                                    status: int, kind: str):
    sock, reader = connect(server)
    with sock:
        sock.sendall(raw)
        got, headers, body = reader.response()
        assert got == status, body
        error = json.loads(body)
        assert error["code"] == status and error["type"] == kind and error["message"]
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert closed_after(sock, reader)
    still_serving(server)


def test_a_body_in_one_byte_chunks_is_read_whole(server: Server):
    body = json.dumps({"i": 9}).encode()
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for byte in body:
            sock.sendall(b"1\r\n%c\r\n" % byte)
        sock.sendall(b"0\r\nX-Trailer: ignored\r\n\r\n")
        status, _, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"echo": {"i": 9}}


def test_chunked_body_over_the_limit_is_413(server: Server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(LIMIT // 10_000 + 2):
                sock.sendall(b"2710\r\n" + b"1" * 10_000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have answered and closed already
        status, _, body = reader.response()
        assert status == 413 and json.loads(body)["type"] == "RequestEntityTooLargeException"
    still_serving(server)


def test_an_oversized_body_is_refused_before_it_is_sent(server: Server):
    """The 413 comes from the head alone: the client can stop sending at once."""
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
        status, headers, _ = reader.response()
        assert status == 413 and headers["connection"] == "close"


def test_queries_and_forms_take_the_full_route(server: Server):
    """Query parameters become fields of the row, as in TorchServe; form fields too."""
    answer = server.post("/predictions/plain?top=3", json={"i": 2})
    assert answer.status_code == 200 and answer.json() == {"echo": {"i": 2}}
    answer = server.post("/predictions/plain", data={"a": "1", "b": "2"})
    assert answer.status_code == 200 and answer.json() == {"fields": ["a", "b"]}
    answer = server.post("/predictions/plain", data={"a": "1"},
                         files={"data": ("x.bin", b"\x00\x01")})
    assert answer.status_code == 200 and answer.json() == {"fields": ["a", "data"]}


def test_a_slow_reader_gets_the_whole_answer(server: Server):
    """An answer larger than the socket buffers leaves in pieces as the client reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(10)
    reader = Reader(sock)
    with sock:
        body = json.dumps({"size": 3_000_000}).encode()
        sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        time.sleep(0.5)  # the server has filled the buffers and waits to write more
        still_serving(server)  # meanwhile others are served
        status, _, answer = reader.response()
        assert status == 200 and len(json.loads(answer)["blob"]) == 3_000_000
        sock.sendall(request_bytes(5))
        assert json.loads(reader.response()[2]) == {"echo": {"i": 5}}


def test_clients_that_vanish_mid_request_or_mid_answer_do_not_hurt(server: Server):
    for raw in (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"i\"",
                b"GET /pi", request_bytes(1)):
        sock, _ = connect(server)
        sock.sendall(raw)
        sock.close()
    sock, _ = connect(server)  # gone while its prediction waits on the model
    body = json.dumps({"sleep": 0.3}).encode()
    sock.sendall(b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset
    time.sleep(0.5)
    still_serving(server)


def test_probes_answer_while_the_model_is_busy(server: Server):
    """A long batch holds no connection but its own: /ping and /metrics answer at once."""
    result: dict[str, requests.Response] = {}

    def slow() -> None:
        result["slow"] = server.post("/predictions/plain", json={"sleep": 2.0})

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert server.get("/ping").status_code == 200
    assert server.get("/metrics").status_code == 200
    assert time.monotonic() - started < 1.0
    thread.join(10)
    assert result["slow"].status_code == 200


def test_pipelined_requests_of_different_kinds_come_back_in_order(server: Server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(request_bytes(1) + b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"
                     + b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n" + request_bytes(2))
        assert json.loads(reader.response()[2]) == {"echo": {"i": 1}}
        assert json.loads(reader.response()[2]) == {"status": "Healthy"}
        assert reader.response()[0] == 404
        assert json.loads(reader.response()[2]) == {"echo": {"i": 2}}


def test_an_idle_connection_is_closed_after_the_keepalive_time(server: Server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(request_bytes(1))
        reader.response()
        started = time.monotonic()
        sock.settimeout(15)
        assert sock.recv(1) == b""  # closed by the server
        assert 4.0 <= time.monotonic() - started <= 8.0  # keepalive is 5 s


def test_request_id_and_handler_headers_reach_the_handler(tmp_path: Path):
    source = plain_model(tmp_path / "m", """
class Handler:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        return [{"id": context.get_request_id(0),
                 "custom": context.get_request_header(0, "X-Custom")}]
""")
    with Server(source, tmp_path) as server:
        server.wait_ready()
        answer = server.post("/predictions/plain", json={"a": 1},
                             headers={"X-Request-ID": "abc123", "X-Custom": "yes"})
        assert answer.status_code == 200
        assert answer.headers["X-Request-ID"] == "abc123"
        assert answer.json() == {"id": "abc123", "custom": "yes"}

"""HTTP framing on a real server over raw sockets: refusals, valid framings, properties.

Every class of defect in tests/http_cases.py (what the hand-written parser let
through, the smuggling classics, the size limits) is answered with its status
in the serving error shape, the connection is closed, and the server goes on
serving. Valid framings (chunk extensions, trailers, upgrade requests without a
body, pipelining) are still served. Two hypothesis properties run on the wire:
a pipeline cut into any pieces gets the same answers, and a mutated request
never gets a 500 nor more answers than requests the parser finds in it.
"""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from http_cases import defects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mkserve.runtime.http import HttpError, Limits
from mkserve.runtime.http.parser import RequestParser
from rawhttp import connect
from server import Server, plain_model

pytestmark = pytest.mark.slow

HANDLER = """
class Handler:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        return [{"echo": row.get("body")} for row in data]
"""
LIMIT = 100_000
LIMITS = Limits(max_body=LIMIT)
DEFECTS = defects(LIMITS)
JSON_CHUNKED = (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                b"\r\nTransfer-Encoding: chunked\r\n\r\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("conformance")
    source = plain_model(tmp / "m", HANDLER)
    env = {"MKSERVE_WORKERS": "1", "MKSERVE_MAX_REQUEST_SIZE": str(LIMIT),
           "MKSERVE_ACCESS_LOG": "false"}
    with Server(source, tmp, env=env) as srv:
        srv.wait_ready()
        yield srv


def predict(i: int, extra: bytes = b"") -> bytes:
    body = json.dumps({"i": i}).encode()
    return (b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def exchange(server: Server, data: bytes, pieces: list[int] | None = None,
             ) -> list[tuple[int, dict[str, str], bytes]]:
    """Send `data` (cut at `pieces`, each sent on its own), say nothing more, and read
    every answer until the server closes."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        cuts = [0, *(pieces or []), len(data)]
        try:
            for start, end in itertools.pairwise(cuts):
                sock.sendall(data[start:end])
                if pieces:
                    time.sleep(0.002)  # each piece its own read, most of the time
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed already
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return parse_answers(received)


def parse_answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"a truncated answer: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        answers.append((status, headers, rest[:length]))
        data = rest[length:]
    return answers


def still_serving(server: Server) -> None:
    [(status, _, body)] = exchange(server, predict(1))
    assert status == 200 and json.loads(body) == {"echo": {"i": 1}}


@pytest.mark.parametrize("name", DEFECTS)
def test_each_framing_defect_is_refused_and_the_connection_closed(server: Server, name: str):
    data, status = DEFECTS[name]
    sock, reader = connect(server)
    with sock:
        try:
            sock.sendall(data + predict(2))  # a request after it must never be answered
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, headers, body = reader.response()
        error = json.loads(body)
        assert got == status, body
        assert error["code"] == status and error["type"].endswith("Exception") and error["message"]
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        sock.settimeout(5)
        rest = b""
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except ConnectionResetError:
            pass
        assert reader.buf + rest == b""  # closed, and nothing more answered
    still_serving(server)


def test_a_malformed_head_is_answered_at_once_not_with_silence(server: Server):
    """The hand-written parser waited 15 s for a CRLF CRLF that bare-LF heads never send."""
    sock, reader = connect(server)
    with sock:
        started = time.monotonic()
        sock.sendall(b"GET /ping HTTP/1.1\nHost: t\n\n")
        status, _, _ = reader.response()
        assert status == 400 and time.monotonic() - started < 1.0


def test_valid_chunk_extensions_and_trailers_are_served(server: Server):
    body = json.dumps({"i": 5}).encode()
    data = (JSON_CHUNKED + b"%x;name=value;quoted=\"a b\"\r\n%s\r\n" % (len(body), body)
            + b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n" + predict(6))
    answers = exchange(server, data)
    assert [(s, json.loads(b)) for s, _, b in answers] == [
        (200, {"echo": {"i": 5}}), (200, {"echo": {"i": 6}})]


def test_an_upgrade_request_without_a_body_is_answered_as_http_1_1(server: Server):
    data = (b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n" + predict(7))
    answers = exchange(server, data)
    assert [s for s, _, _ in answers] == [200, 200]
    assert json.loads(answers[1][2]) == {"echo": {"i": 7}}


def test_nothing_after_a_closing_request_is_answered(server: Server):
    answers = exchange(server, b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                       + predict(8))
    assert [(s, h["connection"]) for s, h, _ in answers] == [(200, "close")]


def test_expect_100_continue_on_a_pipelined_request_waits_its_turn(server: Server):
    """The interim answer of a later request never lands before an earlier answer."""
    body = json.dumps({"i": 9}).encode()
    sock, reader = connect(server)
    with sock:
        sock.sendall(predict(1) + b"POST /predictions/plain HTTP/1.1\r\nHost: t\r\n"
                     b"Expect: 100-continue\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        status, _, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"echo": {"i": 1}}
        while b"\r\n\r\n" not in reader.buf:
            reader._fill()
        assert reader.buf == b"HTTP/1.1 100 Continue\r\n\r\n"
        reader.buf = b""
        sock.sendall(body)
        status, _, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"echo": {"i": 9}}


def test_ten_thousand_pipelined_requests_are_answered_in_order(server: Server):
    """Sent in one stream while the answers are read: the server reads on only while
    few enough wait (it stops reading past 64), and answers every one in order."""
    count = 10_000
    sock, reader = connect(server)
    with sock:
        sender = threading.Thread(target=lambda: sock.sendall(
            b"".join(predict(i) for i in range(count))))
        sender.start()
        for i in range(count):
            status, _, body = reader.response()
            assert status == 200 and json.loads(body) == {"echo": {"i": i}}
        sender.join(10)


PIPELINE = [predict(1), b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n",
            JSON_CHUNKED + b"3;x\r\n[1,\r\n3\r\n 2]\r\n0\r\n\r\n",
            b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", predict(2, b"X-Request-ID: r-2\r\n"),
            b"GET /v2/health/ready HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]


def answers_of(answers: list[tuple[int, dict[str, str], bytes]]) -> list[tuple[int, bytes]]:
    return [(status, body) for status, _, body in answers]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.sampled_from(range(len(PIPELINE))), min_size=2, max_size=5), st.data())
def test_any_split_of_a_pipeline_gets_the_same_answers(server: Server, order: list[int],
                                                       data: st.DataObject):
    stream = b"".join(PIPELINE[i] for i in order)
    whole = answers_of(exchange(server, stream))
    assert len(whole) == len(order)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), min_size=1, max_size=8,
                              unique=True))
    assert answers_of(exchange(server, stream, sorted(cuts))) == whole


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(PIPELINE[:3]), st.data())
def test_a_mutated_request_never_gets_a_500_or_more_answers_than_requests(
        server: Server, request: bytes, data: st.DataObject):
    stream = bytearray(request)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(stream) - 1))
        byte = data.draw(st.sampled_from(b"\r\n\t \x00:;,-019aAzZ\x7f\xff"))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "replace":
            stream[at] = byte
        elif action == "insert":
            stream.insert(at, byte)
        else:
            del stream[at]
    parser = RequestParser(LIMITS)
    refused = False
    try:
        parser.feed(bytes(stream))
    except HttpError:
        refused = True
    answers = exchange(server, bytes(stream))
    assert all(status < 500 or status in (501, 505) for status, _, _ in answers), answers
    assert len(answers) <= len(parser.done) + refused
    for status, _, body in answers:
        if status >= 400 and body:
            assert set(json.loads(body)) >= {"code", "type", "message"}


def test_the_server_survived_it_all(server: Server, tmp_path: Path):
    still_serving(server)
    assert "Traceback" not in server.log()

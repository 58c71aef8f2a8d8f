"""Handlers in TorchServe's style answer under `mkserve serve` as TorchServe 0.12 answered.

The handlers and requests are tests/ts_handlers.py's; TorchServe's answers were
recorded by tests/recorded/record_torchserve.py (kept in
tests/recorded/torchserve-answers.json), so TorchServe need not run here.
"""
from __future__ import annotations

import http.client
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from server import Server
from ts_handlers import CASES, Call, Case, archive_case, same_body

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "recorded"
                       / "torchserve-answers.json").read_text())
pytestmark = pytest.mark.slow


def send(port: int, name: str, call: Call) -> dict[str, Any]:
    """The answer, with each piece of the body as it arrived and when."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    conn.request(call.method, call.path.format(name=name), body=call.body or None,
                 headers=call.headers)
    response = conn.getresponse()
    pieces: list[tuple[float, str]] = []
    while True:
        piece = response.read1(65536) if response.chunked else response.read()
        if not piece:
            break
        pieces.append((time.monotonic() - started, piece.decode(errors="replace")))
        if not response.chunked:
            break
    conn.close()
    return {"status": response.status, "chunked": bool(response.chunked),
            "body": "".join(p for _, p in pieces), "pieces": pieces}


# Describe fields whose values must agree with TorchServe's for the same archive and
# settings (both served with one worker); the rest describe the server (pids, times).
DESCRIBED = ("modelName", "modelVersion", "modelUrl", "runtime", "minWorkers", "maxWorkers",
             "batchSize", "maxBatchDelay", "responseTimeout", "deviceType", "loadedAtStartup",
             "customizedMetadata", "parallelType", "stateful")


def same_description(ours: str, theirs: str) -> None:
    [mine], [its] = json.loads(ours), json.loads(theirs)
    assert set(its) <= set(mine), set(its) - set(mine)
    assert {k: mine.get(k) for k in DESCRIBED} == {k: its.get(k) for k in DESCRIBED}
    assert [w["status"] for w in mine["workers"]] == [w["status"] for w in its["workers"]]
    assert set(its["workers"][0]) <= set(mine["workers"][0])
    assert set(mine["jobQueueStatus"]) == set(its["jobQueueStatus"])


def series(text: str) -> dict[str, set[str]]:
    """Prometheus text: each sampled series name with its label names."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = {pair.split("=")[0] for pair in rest.split("}")[0].split(",") if "=" in pair}
            found.setdefault(name.split()[0], set()).update(labels)
    return found


def same_series(ours: str, theirs: str) -> None:
    """Every series TorchServe sampled is in mkserve's /metrics, with at least its labels."""
    mine, its = series(ours), series(theirs)
    # One difference, in the README's list: the three ts_* series have no `hostname` label
    # (Prometheus's own `instance` label tells replicas apart).
    for name in ("ts_inference_requests_total", "ts_inference_latency_microseconds",
                 "ts_queue_latency_microseconds"):
        its[name] = its.get(name, set()) - {"hostname"}
    missing = {name: labels for name, labels in its.items()
               if name not in mine or not labels <= mine[name]}
    assert missing == {}, {name: mine.get(name) for name in missing}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every case's archive under one `mkserve serve` each, started once."""
    started: dict[str, Server] = {}
    work = tmp_path_factory.mktemp("ts-answers")

    def serve(case: Case) -> Server:
        if case.name not in started:
            archive = archive_case(case, work / case.name)
            # One worker, as TorchServe was recorded with, and the same config.properties.
            args: tuple[str, ...] = ("--workers", "1")
            if case.properties:
                properties = work / f"{case.name}.properties"
                properties.write_text(case.properties)
                args += ("--ts-config", str(properties))
            started[case.name] = Server(archive, work, args=args).wait_ready()
        return started[case.name]

    yield serve
    for server in started.values():
        server.terminate()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_answers_match_torchserve(case: Case, served: Any) -> None:
    server = served(case)
    for call, theirs in zip(case.calls, RECORDED[case.name], strict=True):
        ours = send(server.port, case.name, call)
        assert ours["status"] == theirs["status"], (call, ours, server.log()[-3000:])
        if theirs["status"] >= 400:  # the error's message is TorchServe's; its shape mkserve's
            assert json.loads(theirs["body"])["message"] in ours["body"]
        elif call.management:
            same_description(ours["body"], theirs["body"])
        elif call.metrics:
            same_series(ours["body"], theirs["body"])
        else:
            assert same_body(ours["body"], theirs["body"]), (ours["body"], theirs["body"])
        assert ours["chunked"] == theirs["chunked"]


def test_streamed_parts_arrive_before_the_handler_finishes(served: Any) -> None:
    """The streaming handler sleeps 0.4 s after each part: each arrives on its own,
    as a chunk, long before the answer ends (as curl --no-buffer shows them)."""
    case = next(c for c in CASES if c.name == "streaming")
    server = served(case)
    answer = send(server.port, case.name, case.calls[0])
    times = [t for t, _ in answer["pieces"]]
    assert [p for _, p in answer["pieces"]] == RECORDED["streaming"][0]["pieces"]
    assert times[-1] - times[0] > 1.0  # three sleeps of 0.4 s between first and last
    assert all(later - earlier > 0.25 for earlier, later in itertools.pairwise(times))
    # The server keeps serving: the next stream on a fresh connection works too.
    assert send(server.port, case.name, case.calls[0])["body"] == answer["body"]


def test_a_stream_keeps_the_connection_and_a_client_that_leaves_harms_nothing(
        served: Any) -> None:
    import socket

    case = next(c for c in CASES if c.name == "streaming")
    server = served(case)
    # Two streams, one after the other, on one keep-alive connection.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for _ in range(2):
        conn.request("POST", "/predictions/streaming", body=b'"ka"',
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.chunked and response.read() == b"ka part 0\nka part 1\nka part 2\nka done\n"
    conn.close()
    # A client that reads the first part and leaves; the server goes on serving.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b'POST /predictions/streaming HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Type: application/json\r\nContent-Length: 6\r\n\r\n"gone"')
        assert b"gone part 0" in sock.recv(4096)
    # HTTP/1.0 has no chunks: the parts arrive as they come and the connection closes.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b'POST /predictions/streaming HTTP/1.0\r\n'
                     b'Content-Type: application/json\r\nContent-Length: 5\r\n\r\n"ten"')
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    assert body == b"ten part 0\nten part 1\nten part 2\nten done\n"
    assert send(server.port, case.name, case.calls[0])["status"] == 200


def test_sigterm_lets_a_stream_in_flight_finish(tmp_path: Path) -> None:
    import threading

    case = next(c for c in CASES if c.name == "streaming")
    archive = archive_case(case, tmp_path)
    server = Server(archive, tmp_path).wait_ready()
    got: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: got.update(send(server.port, case.name,
                                                             case.calls[0])))
    reader.start()
    time.sleep(0.5)  # the first part is out, the handler is sleeping
    assert server.terminate(timeout=20) == 0
    reader.join(10)
    assert got["body"] == RECORDED["streaming"][0]["body"]

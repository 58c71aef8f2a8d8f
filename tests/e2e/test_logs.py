"""Structured logs from the real process tree: JSON lines, request ids, handler output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from archives import make_archive
from server import Server

pytestmark = pytest.mark.slow

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be one JSON object


def test_json_lines_with_request_ids_platform_and_handler_output(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    env = {"K_SERVICE": "classifier-svc", "K_REVISION": "classifier-svc-00002"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        r = server.post("/predictions/classifier", json=GUIDE_INPUT,
                        headers={"X-Request-ID": "req-42"})
        assert r.headers["X-Request-ID"] == "req-42"
        generated = server.post("/predictions/classifier", json=GUIDE_INPUT)
        assert len(generated.headers["X-Request-ID"]) == 32
        server.terminate()
        entries = json_lines(server.log())
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    access = [e for e in entries if e.get("request_id") == "req-42"]
    assert access and access[0]["status"] == 200 and access[0]["model"] == "classifier"
    assert access[0]["duration_ms"] > 0
    assert any(e.get("request_id") == generated.headers["X-Request-ID"] for e in entries)
    messages = " ".join(e["message"] for e in entries)
    assert "K_SERVICE=classifier-svc" in messages and "K_REVISION=classifier-svc-00002" in messages
    # The guide's handler logs through `logging`; its line arrives as JSON too.
    assert any(e["message"].startswith("Model loaded on cpu") for e in entries)


def test_access_log_can_be_switched_off(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    with Server(source, tmp_path, env={"MKSERVE_ACCESS_LOG": "false"}) as server:
        server.wait_ready()
        server.post("/predictions/classifier", json=GUIDE_INPUT, headers={"X-Request-ID": "q1"})
        server.terminate()
        assert not [e for e in json_lines(server.log()) if e.get("request_id") == "q1"]


def test_invalid_setting_fails_at_start_with_one_line(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    with Server(source, tmp_path, env={"MKSERVE_BATCH_SIZE": "many"}) as server:
        assert server.proc.wait(60) == 2
        entries = json_lines(server.log())
    assert len(entries) == 1
    assert "MKSERVE_BATCH_SIZE='many'" in entries[0]["message"]

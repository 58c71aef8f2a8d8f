"""The predictions fast path answers exactly as the Flask route it bypasses.

create_app serves plain POST /predictions/{model} requests without Flask's
request machinery; app.flask_wsgi_app is the Flask route
itself. Every request here goes through both; status, headers and body must be
the same (a generated X-Request-ID aside).
"""
from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mkserve.runtime.app import create_app
from werkzeug.test import Client

HANDLER = """
def handle(data, context):
    if data is None:
        return None
    out = []
    for idx, row in enumerate(data):
        body = row.get("body")
        context.set_response_header(idx, "X-Seen", context.get_request_header(idx, "x-tag") or "-")
        if body == "teapot":
            context.set_response_status(418, "I'm a teapot", idx)
            context.set_response_content_type(idx, "text/plain")
            out.append("short and stout")
        elif isinstance(body, dict) and body.get("boom"):
            raise ValueError("boom requested")
        elif isinstance(body, dict) and "status" in body:
            context.set_response_status(int(body["status"]), "", idx)
            out.append({"status": body["status"]})
        elif isinstance(body, dict) and "header" in body:
            key, value = body["header"]
            context.set_response_header(idx, key, value)
            out.append({"header": key})
        elif isinstance(body, dict) and body.get("raw"):
            out.append(b"\\x00raw bytes")
        elif isinstance(body, dict) and body.get("unjsonable"):
            out.append({1, 2})
        else:
            out.append({"echo": body if not isinstance(body, (bytes, bytearray)) else len(body),
                         "fields": sorted(row)})
    return out
"""
ENV = {"MKSERVE_BATCH_SIZE": "4", "MKSERVE_MAX_REQUEST_SIZE": "5000"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def both(served: Any, path: str, body: bytes, headers: dict[str, str]) -> tuple[Any, Any]:
    fast = served.app.test_client()
    flask = Client(served.app.flask_wsgi_app)
    return (fast.post(path, data=body, headers=headers),
            flask.post(path, data=body, headers=headers))


def assert_same(a: Any, b: Any, sent: dict[str, str]) -> None:
    assert a.status == b.status
    assert a.get_data() == b.get_data()
    ida, idb = a.headers["X-Request-ID"], b.headers["X-Request-ID"]
    if sent.get("X-Request-ID"):
        assert ida == idb == sent["X-Request-ID"]
    else:
        assert GENERATED_ID.fullmatch(ida) and GENERATED_ID.fullmatch(idb) and ida != idb
    # Every header, in order (the request id masked).
    ha = [(k, "<id>" if k == "X-Request-ID" else v) for k, v in a.headers.items()]
    hb = [(k, "<id>" if k == "X-Request-ID" else v) for k, v in b.headers.items()]
    assert ha == hb


CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/predictions/m", b'{"features": [1, 2, 3]}', {"Content-Type": "application/json"}),
    ("/predictions/m/1.0", b'{"a": 1}', {"Content-Type": "application/json",
                                         "X-Request-ID": "abc-1", "X-Tag": "t"}),
    ("/predictions/m", b'[{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}, {"e": 5}]',
     {"Content-Type": "application/json"}),
    ("/predictions/m", b"[1, 2, 3]", {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"boom": true}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'[{"a": 1}, {"boom": true}]', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 299}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 503}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'[{"status": 201}, {"status": 422}]', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"raw": true}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["X-Extra", "1"]}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["x-seen", "dup"]}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["Content-Type", "text/csv"]}',
     {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["content-length", "3"]}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["X-Request-ID", "mine"]}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["Location", "/elsewhere"]}',
     {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"header": ["X-Bad", "a\\nb"]}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 204}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 304}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 103}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"status": 600}', {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"unjsonable": true}', {"Content-Type": "application/json"}),
    ("/predictions/m", b"teapot", {"Content-Type": "text/plain", "X-Tag": "t2"}),
    ("/predictions/m", b"caf\xe9", {"Content-Type": "text/plain; charset=latin-1"}),
    ("/predictions/m", b"\xff\xfe", {"Content-Type": "text/plain; charset=nope"}),
    ("/predictions/m", b"\x00\x01binary", {"Content-Type": "application/octet-stream"}),
    ("/predictions/m", b"no type at all", {}),
    ("/predictions/m", b'{"a": ', {"Content-Type": "application/json"}),
    ("/predictions/m", b"[" * 300 + b"]" * 300, {"Content-Type": "application/json"}),
    ("/predictions/m", b'"\\ud800"', {"Content-Type": "application/json"}),
    ("/predictions/m", b"", {"Content-Type": "application/json"}),
    ("/predictions/m", b'{"x": 1}', {"Content-Type": "application/problem+json; charset=utf-8"}),
    ("/predictions/m", b'{"x": 1}', {"Content-Type": "APPLICATION/JSON"}),
    # Left to Flask (forms, too large, query string, other routes): the same by construction,
    # checked anyway.
    ("/predictions/m", b'{"curl": "-d"}', {"Content-Type": "application/x-www-form-urlencoded"}),
    ("/predictions/m", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("/predictions/m", b"x" * 6000, {"Content-Type": "text/plain"}),
    ("/predictions/m?q=1", b'{"a": 1}', {"Content-Type": "application/json"}),
    ("/predictions/m/2.0", b'{"a": 1}', {"Content-Type": "application/json"}),
    ("/predictions/other", b'{"a": 1}', {"Content-Type": "application/json"}),
    ("/predictions/m/", b'{"a": 1}', {"Content-Type": "application/json"}),
]


def test_fast_path_answers_like_the_flask_route(serve_handler):
    served = serve_handler(HANDLER, env=ENV)
    for path, body, headers in CASES:
        fast, flask = both(served, path, body, headers)
        assert_same(fast, flask, headers)
    assert served.client.get("/readyz").status_code == 200


def test_fast_path_records_the_same_metrics_and_access_lines(serve_handler, caplog):
    served = serve_handler(HANDLER, env=ENV)
    app = create_app(served.service, served.service.metrics, access_log=True)
    fast = app.test_client()
    flask = Client(app.flask_wsgi_app)

    def samples() -> dict[str, float]:
        out = {}
        for metric in served.registry.collect():
            for sample in metric.samples:
                if sample.name.startswith(("flask_http_request_total", "mkserve_responses",
                                           "ts_inference_requests", "flask_http_request_dur")
                                          ) and not sample.name.endswith(("_created", "_sum")):
                    out[f"{sample.name}{sorted(sample.labels.items())}"] = sample.value
        return out

    with caplog.at_level("INFO", logger="mkserve.access"):
        before = samples()
        fast.post("/predictions/m", json={"a": 1}, headers={"X-Request-ID": "f1"})
        fast.post("/predictions/m", json={"boom": True}, headers={"X-Request-ID": "f2"})
        after_fast = samples()
        flask.post("/predictions/m", json={"a": 1}, headers={"X-Request-ID": "s1"})
        flask.post("/predictions/m", json={"boom": True}, headers={"X-Request-ID": "s2"})
        after_flask = samples()
    fast_delta = {k: v - before.get(k, 0) for k, v in after_fast.items()}
    flask_delta = {k: v - after_fast.get(k, 0) for k, v in after_flask.items()}
    assert fast_delta == flask_delta and any(fast_delta.values())
    lines = {r.request_id: r for r in caplog.records if r.name == "mkserve.access"}
    for fast_id, flask_id in (("f1", "s1"), ("f2", "s2")):
        a, b = lines[fast_id], lines[flask_id]
        assert (a.getMessage(), a.status, a.model) == (b.getMessage(), b.status, b.model)


texts = st.one_of(st.binary(max_size=300),
                  st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                               max_leaves=12).map(lambda v: json.dumps(v).encode()))
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=bogus",
    "text/plain", "text/plain; charset=utf-16", "text/csv", "application/octet-stream",
    "image/png", ";", "", "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded"])


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=texts, content_type=content_types, tag=st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10), with_id=st.booleans())
def test_fast_path_matches_flask_on_random_requests(serve_handler, body, content_type, tag,
                                                    with_id):
    served = _served(serve_handler)
    headers = {"Content-Type": content_type, "X-Tag": tag}
    if with_id:
        headers["X-Request-ID"] = "rid-" + str(len(body))
    fast, flask = both(served, "/predictions/m", body, headers)
    assert_same(fast, flask, headers)


_cache: dict[int, Any] = {}


def _served(serve_handler: Any) -> Any:
    """One served app per test function (hypothesis calls the test body many times)."""
    key = id(serve_handler)
    if key not in _cache:
        _cache.clear()
        _cache[key] = serve_handler(HANDLER, env=ENV)
    return _cache[key]

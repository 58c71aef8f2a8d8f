"""The HTTP contract in-process: probes, decoding, client batches, errors, shedding, deadlines."""
from __future__ import annotations

import json
import threading
import time

ECHO = """
class Echo:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        out = []
        for row in data:
            body = row.get("body")
            if isinstance(body, dict) and body.get("boom"):
                raise ValueError("boom requested")
            if isinstance(body, dict) and body.get("crash"):
                raise ZeroDivisionError("division by zero")
            out.append({"echo": body if not isinstance(body, bytes) else body.decode(),
                        "n": len(data)})
        return out
"""


def error_of(response):
    body = response.get_json()
    assert set(body) == {"code", "type", "message"}, body
    assert body["code"] == response.status_code
    return body


def test_probes_and_single_prediction(serve_handler):
    served = serve_handler(ECHO)
    c = served.client
    assert c.get("/ping").get_json() == {"status": "Healthy"}
    assert c.get("/livez").status_code == 200
    assert c.get("/readyz").status_code == 200
    r = c.post("/predictions/m", json={"features": [1, 2]})
    assert r.status_code == 200 and r.get_json() == {"echo": {"features": [1, 2]}, "n": 1}
    assert r.headers["X-Request-ID"]
    r = c.post("/predictions/m/1.0", data="hello", content_type="text/plain")
    assert r.get_json()["echo"] == "hello"


def test_request_id_is_echoed(serve_handler):
    served = serve_handler(ECHO)
    r = served.client.post("/predictions/m", json={}, headers={"X-Request-ID": "abc-1"})
    assert r.headers["X-Request-ID"] == "abc-1"


def test_client_batch_answers_in_order(serve_handler):
    served = serve_handler(ECHO, env={"MKSERVE_BATCH_SIZE": "4"})
    rows = [{"i": i} for i in range(10)]
    r = served.client.post("/predictions/m", json=rows)
    assert r.status_code == 200
    assert [x["echo"] for x in r.get_json()] == rows


def test_json_array_of_numbers_is_one_input(serve_handler):
    served = serve_handler(ECHO)
    r = served.client.post("/predictions/m", json=[1, 2, 3])
    assert r.get_json() == {"echo": [1, 2, 3], "n": 1}


def test_bare_curl_form_encoded_json_is_read_as_json(serve_handler):
    served = serve_handler(ECHO)
    r = served.client.post("/predictions/m", data='{"a": 1}',
                           content_type="application/x-www-form-urlencoded")
    assert r.get_json()["echo"] == {"a": 1}


def test_unknown_model_version_route_and_method(serve_handler):
    served = serve_handler(ECHO)
    c = served.client
    r = c.post("/predictions/other", json={})
    assert r.status_code == 404 and "serves 'm'" in error_of(r)["message"]
    assert c.post("/predictions/m/9.9", json={}).status_code == 404
    assert error_of(c.get("/nowhere"))["type"] == "ResourceNotFoundException"
    r = c.get("/predictions/m")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    error_of(r)


def test_malformed_json_is_400_and_server_keeps_serving(serve_handler):
    served = serve_handler(ECHO)
    r = served.client.post("/predictions/m", data="{bad", content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in error_of(r)["message"]
    assert served.client.post("/predictions/m", json={"ok": 1}).status_code == 200


def test_oversized_body_is_413(serve_handler):
    served = serve_handler(ECHO, env={"MKSERVE_MAX_REQUEST_SIZE": "100"})
    r = served.client.post("/predictions/m", data="x" * 1000, content_type="text/plain")
    assert r.status_code == 413 and "MKSERVE_MAX_REQUEST_SIZE" in error_of(r)["message"]


def test_one_bad_row_does_not_fail_its_batch_neighbours(serve_handler):
    slow = ECHO.replace("out = []", "import time; time.sleep(0.05); out = []")
    served = serve_handler(slow, env={"MKSERVE_BATCH_SIZE": "8"})
    results: dict[int, object] = {}

    def call(i: int) -> None:
        body = {"boom": True} if i == 3 else {"crash": True} if i == 5 else {"i": i}
        results[i] = served.client.post("/predictions/m", json=body)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[3].status_code == 400 and "ValueError: boom requested" in error_of(
        results[3])["message"]
    assert results[5].status_code == 500
    assert "ZeroDivisionError" in error_of(results[5])["message"]
    assert all(results[i].status_code == 200 for i in (0, 1, 2, 4, 6, 7))


def test_wrong_number_of_results_is_500_with_a_clear_message(serve_handler):
    served = serve_handler("def handle(data, context):\n    return None if data is None else [1, 2]\n")
    r = served.client.post("/predictions/m", json={})
    assert r.status_code == 500
    assert "one result per request" in error_of(r)["message"]
    assert served.client.get("/readyz").status_code == 200


def test_prediction_exception_sets_its_code(serve_handler):
    code = """
from ts.utils.util import PredictionException
def handle(data, context):
    if data is None:
        return None
    raise PredictionException("features missing", 422)
"""
    r = serve_handler(code).client.post("/predictions/m", json={})
    assert r.status_code == 422 and error_of(r)["message"] == "features missing"


def test_handler_sets_status_content_type_and_headers_per_request(serve_handler):
    code = """
def handle(data, context):
    if data is None:
        return None
    out = []
    for idx, row in enumerate(data):
        context.set_response_header(idx, "X-Seen", context.get_request_header(idx, "x-tag") or "")
        if row["body"] == "teapot":
            context.set_response_status(418, "I'm a teapot", idx)
            context.set_response_content_type(idx, "text/plain")
            out.append("short and stout")
        else:
            out.append({"ok": True})
    return out
"""
    served = serve_handler(code)
    r = served.client.post("/predictions/m", data="teapot", content_type="text/plain",
                           headers={"X-Tag": "t1"})
    assert r.status_code == 418 and r.data == b"short and stout"
    assert r.headers["Content-Type"].startswith("text/plain") and r.headers["X-Seen"] == "t1"


def test_full_queue_sheds_with_retry_after(serve_handler):
    code = "import time\ndef handle(data, context):\n    time.sleep(0.3) if data else None\n" \
           "    return None if data is None else [1] * len(data)\n"
    served = serve_handler(code, env={"MKSERVE_QUEUE_SIZE": "1", "MKSERVE_BATCH_SIZE": "1"})
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        served.client.post("/predictions/m", json={}))) for _ in range(5)]
    started = time.monotonic()
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    shed = [r for r in results if r.status_code == 503]
    assert shed and all(r.headers["Retry-After"] == "1" for r in shed)
    assert "queue is full" in error_of(shed[0])["message"]
    assert any(r.status_code == 200 for r in results)
    assert time.monotonic() - started < 2


def test_expired_deadline_is_504(serve_handler):
    code = "import time\ndef handle(data, context):\n    time.sleep(0.5) if data else None\n" \
           "    return None if data is None else [1] * len(data)\n"
    served = serve_handler(code, env={"MKSERVE_RESPONSE_TIMEOUT": "0.2"})
    r = served.client.post("/predictions/m", json={})
    assert r.status_code == 504 and error_of(r)["type"] == "RequestTimeoutException"
    time.sleep(0.4)
    assert served.client.get("/readyz").status_code == 200


def test_readyz_503_while_loading_then_200(serve_handler):
    code = "import time\ndef handle(data, context):\n    time.sleep(0.5) if data is None else None\n" \
           "    return None if data is None else [1] * len(data)\n"
    served = serve_handler(code, wait=False)
    r = served.client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["status"] == "loading"
    assert served.client.get("/ping").status_code == 503
    assert served.client.post("/predictions/m", json={}).status_code == 503
    served.wait_ready()
    assert served.client.get("/readyz").status_code == 200


def test_failed_load_never_ready_and_reports_the_reason(serve_handler):
    code = "class H:\n    def initialize(self, ctx):\n        raise RuntimeError('weights corrupt')\n" \
           "    def handle(self, d, c):\n        return d\n"
    served = serve_handler(code, wait=False)
    deadline = time.monotonic() + 5
    while not served.failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.failures and "weights corrupt" in served.failures[0]
    r = served.client.get("/readyz")
    assert r.status_code == 503 and "weights corrupt" in r.get_json()["reason"]
    assert served.client.get("/ping").status_code == 503


def test_draining_refuses_new_work(serve_handler):
    served = serve_handler(ECHO)
    served.service.drain()
    assert served.client.get("/readyz").status_code == 503
    r = served.client.post("/predictions/m", json={})
    assert r.status_code == 503 and "shutting down" in error_of(r)["message"]


def test_concurrent_clients_are_batched_but_lone_client_is_not_delayed(serve_handler):
    code = """
import time
SIZES = []
def handle(data, context):
    if data is None:
        return None
    SIZES.append(len(data))
    time.sleep(0.02)
    return [len(data)] * len(data)
"""
    served = serve_handler(code, env={"MKSERVE_BATCH_SIZE": "8",
                                      "MKSERVE_MAX_BATCH_DELAY_MS": "1000"})
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(
        served.client.post("/predictions/m", json={}).get_json())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) > 1 and max(seen) <= 8
    started = time.monotonic()
    assert served.client.post("/predictions/m", json={}).get_json() == 1
    assert time.monotonic() - started < 0.5  # far below the 1000 ms max batch delay


def test_error_bodies_do_not_leak_paths(serve_handler):
    code = "def handle(data, context):\n    if data is None: return None\n" \
           "    open('/srv/secret/dir/file.bin')\n"
    r = serve_handler(code).client.post("/predictions/m", json={})
    message = error_of(r)["message"]
    assert "/srv/secret" not in message and "<path>" in message


def test_metrics_count_requests(serve_handler):
    served = serve_handler(ECHO)
    for _ in range(3):
        served.client.post("/predictions/m", json={})
    value = served.registry.get_sample_value("ts_inference_requests_total",
                                             {"model_name": "m", "model_version": "1.0"})
    assert value == 3
    count = served.registry.get_sample_value("ts_inference_latency_ms_count",
                                             {"model_name": "m", "model_version": "1.0"})
    assert count == 3
    assert json.loads(json.dumps(value)) == 3


def test_out_of_memory_is_507_and_contained(serve_handler):
    code = """
def handle(data, context):
    if data is None:
        return None
    if any(row["body"].get("huge") for row in data):
        raise MemoryError("cannot allocate 80 GiB")
    return [{"ok": True} for _ in data]
"""
    served = serve_handler(code)
    r = served.client.post("/predictions/m", json={"huge": True})
    assert r.status_code == 507 and "out of memory" in error_of(r)["message"]
    assert served.client.post("/predictions/m", json={}).status_code == 200


ECHO_ROWS = """
def handle(data, context):
    if data is None:
        return None
    return [{"rows": len(data), "body": row.get("body")} for row in data]
"""


def test_a_json_list_is_rows_by_default_and_one_body_with_list_body_whole(serve_handler):
    batch = [{"a": 1}, {"a": 2}]
    rows = serve_handler(ECHO_ROWS)
    split = rows.client.post("/predictions/m", json=batch)
    assert [r["body"] for r in split.get_json()] == batch  # one row each, answered as an array
    whole = serve_handler(ECHO_ROWS, env={"MKSERVE_LIST_BODY": "whole"})
    for path in ("/predictions/m", "/predictions/m?x=1"):  # the fast path and Flask's
        answer = whole.client.post(path, json=batch)
        assert answer.status_code == 200 and answer.get_json()["body"] == batch, answer.data
        assert answer.get_json()["rows"] == 1
    # From the model's config too (listBody in model-config.yaml), as for TorchServe keys.
    configured = serve_handler(ECHO_ROWS, files={"model-config.yaml": "listBody: whole\n"})
    assert configured.service.settings.list_body == "whole"
    assert configured.client.post("/predictions/m", json=batch).get_json()["body"] == batch

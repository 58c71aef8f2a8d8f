"""Fuzz the HTTP layer in-process: random methods, paths, headers, content types and bodies.

The handler echoes what it is given and never raises, so any 500 is a defect in
the server's own code. Every error must be JSON in the documented shape:
{"code", "type", "message"} on TorchServe and probe routes, {"error"} on /v1 and
/v2. The server must still be ready afterwards. Last, a property test of the linear
pre-scan that turns too-deeply nested JSON into a 400.
"""
from __future__ import annotations

import encodings
import json
import math
import pkgutil
import string
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mkserve.runtime.codec import MAX_JSON_DEPTH, json_too_deep

ECHO = """
def handle(data, context):
    if data is None:
        return None
    # Forms have no body: answer with the field names instead.
    return [row["body"] if row.get("body") is not None else sorted(map(str, row))
            for row in data]
"""
ENV = {"MKSERVE_MAX_REQUEST_SIZE": "200000", "MKSERVE_BATCH_SIZE": "4"}
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROUTES = ["/", "/ping", "/livez", "/readyz", "/metrics", "/predictions/m", "/predictions/m/1.0",
          "/predictions/m/9", "/predictions/other", "/v1/models", "/v1/models/m",
          "/v1/models/m:predict", "/v1/models/x:predict", "/v1/models/m:explain", "/v2", "/v2/",
          "/v2/health/live", "/v2/health/ready", "/v2/models/m", "/v2/models/m/ready",
          "/v2/models/m/infer", "/v2/models/m/versions/1.0", "/v2/models/m/versions/1.0/ready",
          "/v2/models/m/versions/1.0/infer", "/v2/models/m/versions/2/infer",
          "/v2/models/x/infer"]
SUFFIXES = ["", "/", "//", "/..", "/.", "%2F", "%2f..", "%00", "%ff%fe", "%", "%zz", ":predict",
            "/ready", "/infer", "/versions/1.0", "/versions//infer", ";x=1", "~", "%C3%A9",
            "?a=%ff&b", "?" + "q" * 300]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]
CONTENT_TYPES = [
    None, "", "application/json", "application/json; charset=utf-8",
    "application/json; charset=latin-1", "application/json; charset=bogus", "application/JSON",
    "application/problem+json",
    "application/json;;;", "text/plain", "text/plain; charset=utf-16", "text/plain; charset=nope",
    "text/plain; charset=", "text/csv", "application/octet-stream", "image/png",
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=xyz",
    'multipart/form-data; boundary="a b"', "multipart/form-data; boundary=" + "b" * 200,
    "multipart/mixed; boundary=xyz", "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-16", ";", "x/y; a=\"unterminated"]
# Every codec Python knows, as a text charset: some raise more than UnicodeDecodeError.
CODECS = sorted({m.name for m in pkgutil.iter_modules(encodings.__path__)} - {"aliases"})
content_types = (st.sampled_from(CONTENT_TYPES)
                 | st.sampled_from(CODECS).map(lambda c: f"text/plain; charset={c}"))

# Header text: what HTTP can carry (latin-1, no control characters).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters="\x7f"), max_size=200)
header_name = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=30)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=25)


def _nested(depth: int, opener: bytes, closer: bytes, leaf: bytes = b"1") -> bytes:
    return opener * depth + leaf + closer * depth


@st.composite
def v2_valid(draw: Any) -> dict[str, Any]:
    """A well-formed inference request, with matching shapes and element kinds."""
    batch = draw(st.integers(1, 4))
    inputs = []
    for index in range(draw(st.integers(1, 3))):
        datatype = draw(st.sampled_from(DATATYPES))
        shape = [batch, *draw(st.lists(st.integers(1, 3), max_size=2))]
        element = {"BOOL": st.booleans(), "BYTES": st.text(max_size=5)}.get(
            datatype, st.integers(0, 100) if "INT" in datatype else st.floats(-1e3, 1e3))
        data = draw(st.lists(element, min_size=math.prod(shape), max_size=math.prod(shape)))
        inputs.append({"name": f"in{index}", "shape": shape, "datatype": datatype, "data": data})
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=20))
    return body


v2_malformed = st.fixed_dictionaries(
    {"inputs": st.lists(st.fixed_dictionaries(
        {"name": json_values, "shape": st.lists(st.integers(-2, 4), max_size=4) | json_values,
         "datatype": st.sampled_from([*DATATYPES, "FP99", ""]) | json_values,
         "data": json_values},
        optional={"parameters": json_values}), max_size=3) | json_values},
    optional={"id": json_values, "parameters": json_values, "outputs": json_values})


def _multipart(boundary: bytes, name: bytes, value: bytes, cut: int) -> bytes:
    whole = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name
             + b"\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
             + value + b"\r\n--" + boundary + b"--\r\n")
    return whole[:cut] if cut else whole


bodies = st.one_of(
    st.binary(max_size=2000),
    # JSON that parses to lone surrogates, which have no UTF-8 form.
    st.sampled_from([b'"\\ud800"', b'"\\udfff x"', b'{"\\ud800": "\\udc00"}']),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda n: _nested(n, b"[", b"]")),
    st.integers(1, 5000).map(lambda n: _nested(n, b'{"a":', b"}")),
    st.integers(1, 5000).map(lambda n: b'{"instances": ' + _nested(n, b"[", b"]") + b"}"),
    st.integers(1, 5000).map(lambda n: b"[" * n),
    st.integers(1, 3000).map(lambda n: b'"' + b'\\"[' * n + b'"'),
    st.binary(max_size=40).map(lambda b: b'{"instances": ["' + b + b'"]}'),
    json_values.map(lambda v: json.dumps({"instances": [v, v]}).encode()),
    v2_valid().map(lambda v: json.dumps(v).encode()),
    v2_malformed.map(lambda v: json.dumps(v).encode()),
    st.builds(_multipart, st.sampled_from([b"xyz", b"other", b""]), st.binary(max_size=10),
              st.binary(max_size=50), st.integers(0, 200)),
)
paths = st.one_of(
    st.builds(str.__add__, st.sampled_from(ROUTES), st.sampled_from(SUFFIXES)),
    st.lists(st.text(max_size=15), max_size=6).map(lambda parts: "/" + "/".join(
        quote(p, safe="") for p in parts)),
    st.lists(st.text(max_size=15), max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.integers(100, 20000).map(lambda n: "/predictions/" + "a" * n),
    st.integers(100, 5000).map(lambda n: "/v2/models/" + "é" * n + "/infer"),
    st.text(max_size=30).map(lambda s: "/v2/models/" + quote(s, safe="") + "/infer"),
)
headers = st.dictionaries(
    st.sampled_from(["X-Request-ID", "Accept", "explain", "describe", "Content-Encoding",
                     "Inference-Header-Content-Length", "Expect"]) | header_name,
    header_text, max_size=4)


def is_kserve(path: str) -> bool:
    return path in ("/v1", "/v2") or path.startswith(("/v1/", "/v2/"))


def send(client: Any, method: str, raw_target: str, body: bytes, content_type: str | None,
         extra: dict[str, str]) -> Any:
    """Send as a WSGI server would: PATH_INFO is the percent-decoded target as latin-1."""
    path, _, query = raw_target.partition("?")
    raw = path.encode("utf-8", errors="surrogatepass")
    path_info = unquote_to_bytes(raw).decode("latin-1")
    query = query.encode("utf-8", errors="surrogatepass").decode("latin-1")
    environ = {"PATH_INFO": path_info, "QUERY_STRING": query, "RAW_URI": raw_target}
    return client.open(method=method, data=body, content_type=content_type, headers=extra,
                       environ_overrides=environ), path_info


def check(response: Any, method: str, path_info: str) -> None:
    status = response.status_code
    event(f"status {status}")  # see the mix with --hypothesis-show-statistics
    # The handler never raises: a 500 can only be the server's own fault.
    assert status != 500, response.get_data()[:500]
    assert status < 500 or status in (503, 504), status
    assert not 300 <= status < 400, (status, response.headers.get("Location"))
    if status < 400:
        return
    assert response.mimetype == "application/json", (status, response.headers)
    if method == "HEAD":
        return  # no body on HEAD
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "File \"/" not in text
    body = json.loads(text)
    # As werkzeug reads it: UTF-8 with replacement, leading slashes collapsed.
    path = "/" + path_info.encode("latin-1").decode("utf-8", errors="replace").lstrip("/")
    if is_kserve(path):
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body
        assert set(body) <= {"error", "name", "ready"}, body
    else:
        assert set(body) == {"code", "type", "message"}, body
        assert body["code"] == status and isinstance(body["message"], str), body


def still_serving(client: Any) -> None:
    assert client.get("/readyz").status_code == 200
    r = client.post("/v2/models/m/infer", json={"inputs": [
        {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]})
    assert r.status_code == 200 and r.get_json()["outputs"][0]["data"] == [1.0, 2.0]
    assert client.post("/predictions/m", json={"a": 1}).get_json() == {"a": 1}


def test_fuzz_requests_never_break_the_server(serve_handler):
    served = serve_handler(ECHO, env=ENV)
    client = served.client

    @SETTINGS
    @given(method=st.sampled_from(METHODS) | st.text(string.ascii_uppercase, min_size=1,
                                                      max_size=10),
           target=paths, body=bodies,
           content_type=content_types | header_text, extra=headers)
    def one(method: str, target: str, body: bytes, content_type: str | None,
            extra: dict[str, str]) -> None:
        response, path_info = send(client, method, target, body, content_type, extra)
        check(response, method, path_info)

    one()
    still_serving(client)


def test_fuzz_kserve_and_torchserve_bodies(serve_handler):
    """Bodies aimed at the inference routes, so that most get past routing."""
    served = serve_handler(ECHO, env=ENV)
    client = served.client

    @SETTINGS
    @given(target=st.sampled_from(["/predictions/m", "/v1/models/m:predict", "/v2/models/m/infer",
                                   "/v2/models/m/versions/1.0/infer"]),
           body=bodies, content_type=content_types, extra=headers)
    def one(target: str, body: bytes, content_type: str | None, extra: dict[str, str]) -> None:
        response, path_info = send(client, "POST", target, body, content_type, extra)
        check(response, "POST", path_info)

    one()
    still_serving(client)


def test_fuzz_text_charsets_and_forms(serve_handler):
    """Decoding surfaces: text under every codec, urlencoded and (broken) multipart forms."""
    served = serve_handler(ECHO, env=ENV)
    client = served.client
    forms = st.sampled_from(["multipart/form-data; boundary=xyz", "multipart/form-data",
                             "multipart/form-data; boundary=other",
                             "application/x-www-form-urlencoded"])

    @SETTINGS
    @given(target=st.sampled_from(["/predictions/m", "/predictions/m/1.0?x=%ff&y"]),
           content_type=st.sampled_from(CODECS).map(lambda c: f"text/plain; charset={c}")
           | forms,
           body=st.binary(max_size=300) | bodies)
    def one(target: str, content_type: str, body: bytes) -> None:
        response, path_info = send(client, "POST", target, body, content_type, {})
        check(response, "POST", path_info)

    one()
    still_serving(client)


def test_fuzz_valid_v2_requests_round_trip(serve_handler):
    """Well-formed V2 requests through the echo handler come back with their own tensors."""
    served = serve_handler(ECHO, env=ENV)
    client = served.client

    @SETTINGS
    @given(request=v2_valid())
    def one(request: dict[str, Any]) -> None:
        r = client.post("/v2/models/m/infer", json=request)
        assert r.status_code == 200, r.get_data()[:500]
        body = r.get_json()
        assert body["id"] == request.get("id", r.headers["X-Request-ID"])
        outputs = {o["name"]: o for o in body["outputs"]}
        inputs = request["inputs"]
        expected = {"output-0": inputs[0]} if len(inputs) == 1 else {i["name"]: i for i in inputs}
        assert set(outputs) == set(expected)
        for name, sent in expected.items():
            got = outputs[name]
            assert got["shape"] == sent["shape"]
            if sent["datatype"] in ("BYTES", "BOOL"):
                assert got["data"] == sent["data"]
            else:  # integers and floats come back as INT64 or FP32 numbers
                assert [float(x) for x in got["data"]] == [float(x) for x in sent["data"]]

    one()
    still_serving(client)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict)
                                                  else item))
            deepest = max(deepest, depth + 1)
    return deepest


@SETTINGS
@given(value=st.recursive(st.integers() | st.text("[]{}\\\"aé\u2028", max_size=6),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text("[]{}\\\"", max_size=3), inner, max_size=3),
                          max_leaves=10),
       wrap=st.integers(0, MAX_JSON_DEPTH + 5), layout=st.sampled_from([",:", ", :", "indent"]),
       ascii_only=st.booleans())
def test_json_depth_scan_agrees_with_the_parser(value: Any, wrap: int, layout: str,
                                                ascii_only: bool) -> None:
    """The linear pre-scan that rejects deep JSON measures exactly what json.loads builds."""
    for _ in range(wrap):
        value = [value, "]]]"] if wrap % 2 else {"{[": value}
    if layout == "indent":
        text = json.dumps(value, indent=1, ensure_ascii=ascii_only)
    else:
        text = json.dumps(value, separators=(layout[:-1], layout[-1]), ensure_ascii=ascii_only)
    assert json_too_deep(text.encode()) == (_depth(value) > MAX_JSON_DEPTH)
    assert json_too_deep(text.encode("utf-16")) == (_depth(value) > MAX_JSON_DEPTH)

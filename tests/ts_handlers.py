"""Handlers written in TorchServe's documented style, and the requests the tests send them.

Each case is archived by the real torch-model-archiver (archives.archive_handler),
served by TorchServe 0.12 once to record its answers
(tests/recorded/record_torchserve.py -> tests/recorded/torchserve-answers.json),
and by mkserve in the tests, which compare the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    path: str  # after the server's base URL; {name} is the model name
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    # TorchServe answers describe on its management port; mkserve on the serving port.
    management: bool = False
    # TorchServe's metrics port (mkserve: /metrics on the serving port too).
    metrics: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    handler: str
    calls: tuple[Call, ...]
    config: str | None = None
    # config.properties lines both servers get (mkserve serve --ts-config)
    properties: str = ""


STREAMING = '''
import time

from ts.handler_utils.utils import send_intermediate_predict_response


def handle(data, context):
    if data is None:  # TorchServe calls a function handler once at load, with no data
        return None
    text = data[0].get("body") or data[0].get("data")
    if isinstance(text, (bytes, bytearray)):
        text = text.decode()
    for i in range(3):
        send_intermediate_predict_response([f"{text} part {i}\\n"], context.request_ids,
                                           "Intermediate Prediction success", 200, context)
        time.sleep(0.4)
    return [f"{text} done\\n"]
'''

REQUEST_PROPERTIES = '''
import ts
from ts.handler_utils.timer import timed
from ts.handler_utils.utils import import_class
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException


class Handler(BaseHandler):
    def initialize(self, context):
        self.context = context
        self.ordered = import_class("collections.OrderedDict")
        self.initialized = True

    @timed
    def preprocess(self, data):
        return data

    def handle(self, data, context):
        self.context = context
        out = []
        for i, row in enumerate(self.preprocess(data)):
            request = context.request_processor[i]
            custom = request.get_request_property("X-Custom")
            if custom == "fail":
                raise PredictionException("custom failure asked for", 418)
            out.append({
                "custom": custom,
                "content_type": context.get_request_header(i, "Content-Type"),
                "sequence": context.get_sequence_id(i),
                "names": sorted(k.lower() for k in request.get_request_properties()
                                if k.lower().startswith("x-")),
                "version_at_least_0_12": tuple(int(p) for p in ts.__version__.split(".")[:2])
                >= (0, 12),
                "ordered": self.ordered.__name__,
            })
        return out
'''

EXPLAIN = '''
from ts.torch_handler.base_handler import BaseHandler


class Handler(BaseHandler):
    def initialize(self, context):
        self.context = context
        self.initialized = True

    def handle(self, data, context):
        self.context = context
        if self._is_describe():
            return [self.describe_handle()]
        explain = self._is_explain()
        out = []
        for row in data:
            body = row.get("body") or row.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = body.decode()
            out.append({"explain": explain, "body": body})
        return out

    def describe_handle(self):
        return {"doc": "echoes its input", "inputs": ["x"]}
'''

JSON = {"Content-Type": "application/json"}

# Echoes what reached it: under an envelope, the unpacked instances or tensors.
ENVELOPED = '''
def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        if isinstance(row, dict) and "datatype" in row:  # a V2 tensor: double its values
            values = row["data"]
            flat = [v for r in values for v in (r if isinstance(r, list) else [r])]
            out.append([v * 2 for v in flat])
        else:
            out.append({"row": row})
    return out
'''
V2_BODY = (b'{"id": "r-1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", '
           b'"data": [1, 2, 3, 4]}]}')

CASES = (
    Case("streaming", STREAMING, (Call("/predictions/{name}", b'"hi"',
                                       {"Content-Type": "application/json"}),)),
    Case("reqprops", REQUEST_PROPERTIES, (
        Call("/predictions/{name}", b'{"a": 1}',
             {"Content-Type": "application/json", "X-Custom": "yes", "X-Other": "1"}),
        Call("/predictions/{name}", b'{"a": 1}',
             {"Content-Type": "application/json", "X-Custom": "fail"}),
    ), config="handler:\n  profile: true\n"),
    Case("explain", EXPLAIN, (
        Call("/predictions/{name}", b'{"x": 1}', JSON),
        Call("/explanations/{name}", b'{"x": 1}', JSON),
        Call("/invocations?model_name={name}", b'{"x": 2}', JSON),
        Call("/invocations", b'{"x": 3}', JSON),
        Call("/models/{name}/invoke", b'{"x": 4}', JSON),
        Call("/{name}/predict", b'{"x": 5}', JSON),
        Call("/models/{name}", method="GET", management=True),
        Call("/models/{name}?customized=true", method="GET", management=True),
        Call("/models/{name}/1.0", method="GET", management=True),
        Call("/models/nope", method="GET", management=True),
    )),
    Case("metrics", ENVELOPED, (
        Call("/predictions/{name}", b'{"a": 1}', JSON),
        Call("/predictions/{name}", b'{"a": 1}', JSON),
        Call("/predictions/nope", b'{"a": 1}', JSON),
        Call("/metrics", method="GET", metrics=True),
    ), properties="metrics_mode=prometheus\n"),
    Case("kserve", ENVELOPED, (
        Call("/v1/models/{name}:predict",
             b'{"instances": [{"data": [1, 2]}, {"data": [3]}]}', JSON),
        Call("/predictions/{name}", b'{"instances": [{"data": "a"}]}', JSON),
    ), properties="service_envelope=kserve\n"),
    Case("kservev2", ENVELOPED, (
        Call("/v2/models/{name}/infer", V2_BODY, JSON),
    ), properties="service_envelope=kservev2\n"),
)

"""Handlers written in TorchServe's documented style, and the requests the tests send them.

Each case is archived by the real torch-model-archiver (archives.archive_handler),
served by TorchServe 0.12 once to record its answers
(tests/recorded/record_torchserve.py -> tests/recorded/torchserve-answers.json),
and by mkserve in the tests, which compare the two.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


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
    # Writes the model files into a folder: (--serialized-file, --model-file or None).
    model: Callable[[Path], tuple[Path, Path | None]] | None = None
    # Files the model builder also wrote there, archived as --extra-files.
    extra_files: tuple[str, ...] = ()


def same_body(ours: str, theirs: str) -> bool:
    """Equal as JSON when both are JSON (TorchServe indents; mkserve does not), else as text."""
    import json

    try:
        return bool(json.loads(ours) == json.loads(theirs))
    except ValueError:
        return ours == theirs


def archive_case(case: Case, work: Path) -> Path:
    """The case's archive, made by the real torch-model-archiver under work/store."""
    from archives import archive_handler

    work.mkdir(parents=True, exist_ok=True)
    serialized, model_file = case.model(work) if case.model else (None, None)
    extras = {name: (work / name).read_bytes() for name in case.extra_files}
    return archive_handler(case.handler, work / "store", case.name, config=case.config,
                           extra_files=extras or None, serialized_file=serialized,
                           model_file=model_file)


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

# Echoes what TorchServe's frontend tells a handler besides the body: the fields of the
# row, the `explain` and `url_path` headers, the client's X- headers, the GPU it was given.
PROPERTIES = '''
def handle(data, context):
    if data is None:
        return None
    out = []
    for i, row in enumerate(data):
        props = context.request_processor[i].get_request_properties()
        out.append({
            "fields": sorted(row),
            "body": row.get("body"),
            "explain": props.get("explain"),
            "url_path": props.get("url_path"),
            "x": {k.lower(): v for k, v in props.items() if k.lower().startswith("x-")},
            "gpu_id": context.system_properties.get("gpu_id"),
        })
    return out
'''

# One handler for a model in each of TorchServe's serialized forms (state dict + pt2
# compile, ONNX, AOTInductor .so): BaseHandler loads it; it says what it was handed.
TENSORS = '''
import torch
from ts.torch_handler.base_handler import BaseHandler


class Handler(BaseHandler):
    def preprocess(self, data):
        return torch.tensor([row.get("body") for row in data], dtype=torch.float32)

    def inference(self, data, *args, **kwargs):
        if hasattr(self.model, "get_inputs"):  # an onnxruntime session
            name = self.model.get_inputs()[0].name
            return torch.from_numpy(self.model.run(None, {name: data.numpy()})[0])
        return super().inference(data, *args, **kwargs)

    def postprocess(self, data):
        return [{"y": row, "model": type(self.model).__name__} for row in data.tolist()]
'''

NET = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)
'''


def _net(folder: Path) -> object:
    """NET with weights and inputs exact in float32, so every runtime gives the same bits."""
    import torch

    namespace: dict[str, object] = {}
    exec(compile(NET, "model.py", "exec"), namespace)  # noqa: S102 - our own source text
    net = namespace["Net"]().eval()  # type: ignore[operator]
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[0.5, 1.0, 1.5], [-1.0, 2.0, 0.25]]))
        net.fc.bias.copy_(torch.tensor([0.5, -1.0]))
    (folder / "model.py").write_text(NET)
    return net


def state_dict_model(folder: Path) -> tuple[Path, Path | None]:
    import torch

    torch.save(_net(folder).state_dict(), folder / "model.pth")  # type: ignore[attr-defined]
    return folder / "model.pth", folder / "model.py"


def onnx_model(folder: Path) -> tuple[Path, Path | None]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_net(folder), (torch.zeros(1, 3),), str(folder / "model.onnx"),
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return folder / "model.onnx", None


def aoti_model(folder: Path) -> tuple[Path, Path | None]:
    """An AOTInductor shared library, as TorchServe's pt2 export example makes it."""
    import torch
    from torch._export import aot_compile

    batch = torch.export.Dim("batch", min=1, max=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aot_compile(_net(folder), (torch.zeros(2, 3),), dynamic_shapes={"x": {0: batch}},
                    options={"aot_inductor.output_path": str(folder / "model.so")})
    return folder / "model.so", None


TEXT_NET = '''
import torch


class TextNet(torch.nn.Module):
    """TorchServe's text classification example's shape: an EmbeddingBag over token and
    bigram ids, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(6, 2, mode="mean")
        self.fc = torch.nn.Linear(2, 2)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
'''
TEXT_VOCAB = {"<unk>": 0, "good": 1, "movie": 2, "good movie": 3, "bad": 4, "bad movie": 5}


def text_model(folder: Path) -> tuple[Path, Path | None]:
    """A state dict for TEXT_NET, with the built-in text_classifier's source_vocab.pt
    (a {token: id} dict) and index_to_name.json beside it."""
    import json

    import torch

    namespace: dict[str, object] = {}
    exec(compile(TEXT_NET, "model.py", "exec"), namespace)  # noqa: S102 - our own source
    net = namespace["TextNet"]().eval()  # type: ignore[operator]
    with torch.no_grad():
        net.embedding.weight.copy_(torch.tensor(
            [[0.0, 0.0], [1.0, -1.0], [0.5, 0.5], [2.0, -0.5], [-1.0, 1.0], [-2.0, 0.5]]))
        net.fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        net.fc.bias.copy_(torch.tensor([0.0, 0.25]))
    (folder / "model.py").write_text(TEXT_NET)
    torch.save(net.state_dict(), folder / "text.pth")
    torch.save(TEXT_VOCAB, folder / "source_vocab.pt")
    (folder / "index_to_name.json").write_text(json.dumps({"0": "positive", "1": "negative"}))
    return folder / "text.pth", folder / "model.py"


ROW = b"[1, 2, 3]"
TEXT = {"Content-Type": "text/plain"}

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
    Case("props", PROPERTIES, (
        Call("/predictions/{name}", b'{"a": 1}', {**JSON, "X-Trace": "t1"}),
        Call("/predictions/{name}/1.0/extra/more", b'{"a": 2}', JSON),
        Call("/predictions/{name}/1.0/a%20b/c", b'{"a": 3}', JSON),
        Call("/predictions/{name}?q=1", b'{"a": 4}', JSON),
        Call("/explanations/{name}/1.0/why", b'{"a": 5}', JSON),
        Call("/predictions/{name}", b'[{"a": 6}, {"a": 7}]', JSON),
        Call("/predictions/{name}/extra", b'{"a": 8}', JSON),
        Call("/predictions/{name}/2.0/extra", b'{"a": 9}', JSON),
        Call("/{name}/predict?q=1", b'{"a": 10}', JSON),
    ), config="listBody: whole\ndeviceIds: [0]\n"),
    Case("pt2", TENSORS, (Call("/predictions/{name}", ROW, JSON),),
         config="pt2:\n  compile:\n    enable: true\n    backend: inductor\n",
         model=state_dict_model),
    Case("onnx", TENSORS, (Call("/predictions/{name}", ROW, JSON),), model=onnx_model),
    Case("aoti", TENSORS, (Call("/predictions/{name}", ROW, JSON),),
         config="pt2:\n  export:\n    aot_compile: true\n", model=aoti_model),
    # The built-in handler (text_classifier names it, not a file).
    Case("text_classifier", "text_classifier", (
        Call("/predictions/{name}", b"Good movie!", TEXT),
        Call("/predictions/{name}", b"<b>BAD</b> movie.", TEXT),
        Call("/predictions/{name}", b"good", TEXT),
    ), model=text_model, extra_files=("source_vocab.pt", "index_to_name.json")),
)

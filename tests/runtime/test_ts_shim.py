"""Tests for the `ts` shim: BaseHandler, ts.utils.util, ts.metrics and the built-in handler names."""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from mkserve.runtime.ts.context import Context, RequestProcessor
from mkserve.runtime.ts.metrics import CachingMetric, Dimension, HandlerMetrics, MetricTypes
from mkserve.runtime.ts.torch_handler import _requirements
from mkserve.runtime.ts.torch_handler.base_handler import BaseHandler
from mkserve.runtime.ts.torch_handler.image_classifier import ImageClassifier
from mkserve.runtime.ts.torch_handler.image_segmenter import ImageSegmenter
from mkserve.runtime.ts.torch_handler.object_detector import ObjectDetector
from mkserve.runtime.ts.torch_handler.vision_handler import VisionHandler
from mkserve.runtime.ts.utils.util import (
    PredictionException,
    get_yaml_config,
    list_classes_from_module,
    load_label_mapping,
    map_class_to_label,
)
from tiny_models import Linear3
from ts_handlers import NET

# TorchServe archives are TorchScript; torch's deprecation notice for scripting is expected.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


class FakeSink:
    """Records what HandlerMetrics hands to the runtime."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, str, dict[str, str]]] = []

    def __call__(self, name: str, kind: str, value: float, unit: str,
                 dimensions: dict[str, str]) -> None:
        self.calls.append((name, kind, value, unit, dimensions))


def make_context(model_dir: Path, metrics: Any = None, **model: str) -> Context:
    manifest = {"runtime": "python", "model": {"modelName": "m", "handler": "base_handler",
                                               **model}}
    context = Context("m", str(model_dir), manifest, batch_size=4, gpu=None,
                      mms_version="0.1.0", metrics=metrics)
    context._begin_batch([RequestProcessor(f"r{i}", {}) for i in range(len(X))])
    return context


def expected(model: torch.nn.Module) -> list[list[float]]:
    with torch.no_grad():
        return model(torch.tensor(X)).tolist()


def assert_close(actual: Any, wanted: Any) -> None:
    torch.testing.assert_close(torch.tensor(actual), torch.tensor(wanted))


def rows(values: list[Any]) -> list[dict[str, Any]]:
    return [{"body": value} for value in values]


# -- BaseHandler: loading ----------------------------------------------------

def test_torchscript_model_serves_like_the_model(tmp_path: Path) -> None:
    model = Linear3().eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    sink = FakeSink()
    context = make_context(tmp_path, HandlerMetrics(sink, "m"), serializedFile="model.pt")
    handler = BaseHandler()
    handler.initialize(context)
    assert handler.initialized and handler.device == torch.device("cpu")
    assert handler.mapping is None and handler.explain is False
    assert_close(handler.handle(rows(X), context), expected(model))
    [(name, kind, value, unit, dims)] = sink.calls
    assert (name, kind, unit, dims) == ("HandlerTime", "gauge", "ms",
                                        {"ModelName": "m", "Level": "Model"})
    assert value >= 0


def test_cpu_worker_never_touches_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The one monkeypatch here: a tripwire proving gpu_id=None skips torch.cuda entirely.
    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))

    def tripwire() -> bool:
        raise AssertionError("torch.cuda.is_available() called on a CPU worker")

    monkeypatch.setattr(torch.cuda, "is_available", tripwire)
    BaseHandler().initialize(make_context(tmp_path, serializedFile="model.pt"))


def test_eager_model_file_and_state_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch
        from collections import OrderedDict  # imported classes are not the model


        class Config:
            hidden = 2


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, Config.hidden)

            def forward(self, x):
                return self.fc(x)
    """))
    reference = Linear3()
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    context = make_context(tmp_path, serializedFile="weights.pth", modelFile="model.py")
    handler = BaseHandler()
    handler.initialize(context)
    assert type(handler.model).__name__ == "Net" and not handler.model.training
    assert_close(handler.handle(rows(X), context), expected(reference))


def test_eager_model_file_with_two_modules_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch
        class Block(torch.nn.Module):
            pass
        class Net(torch.nn.Module):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    with pytest.raises(ValueError, match=r"exactly one torch.nn.Module.*Block, Net"):
        BaseHandler().initialize(make_context(tmp_path, modelFile="model.py"))


def test_exported_pt2_model(tmp_path: Path) -> None:
    model = Linear3().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.tensor(X),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "model.pt2"))
    context = make_context(tmp_path, serializedFile="model.pt2")
    handler = BaseHandler()
    handler.initialize(context)
    assert_close(handler.handle(rows(X), context), expected(model))


@pytest.mark.slow
def test_aotinductor_pt2_package(tmp_path: Path) -> None:
    model = Linear3().eval()
    program = torch.export.export(model, (torch.tensor(X),))
    torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "model.pt2"))
    context = make_context(tmp_path, serializedFile="model.pt2")
    handler = BaseHandler()
    handler.initialize(context)
    assert_close(handler.handle(rows(X), context), expected(model))


def test_missing_serialized_file_names_it_and_the_archive(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("")
    (tmp_path / "index_to_name.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"'model\.pt'.*handler\.py, index_to_name\.json"):
        BaseHandler().initialize(make_context(tmp_path, serializedFile="model.pt"))


def test_pickled_whole_module_is_not_torchscript(tmp_path: Path) -> None:
    torch.save(Linear3(), tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match=r"not TorchScript.*torch\.save\(model\)"):
        BaseHandler().initialize(make_context(tmp_path, serializedFile="model.pt"))


def test_state_dict_without_model_file_says_to_add_one(tmp_path: Path) -> None:
    torch.save(Linear3().state_dict(), tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match=r"state_dict.*--model-file"):
        BaseHandler().initialize(make_context(tmp_path, serializedFile="model.pt"))


def test_index_to_name_becomes_mapping(tmp_path: Path) -> None:
    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))
    (tmp_path / "index_to_name.json").write_text(json.dumps({"0": "cat", "1": ["n02", "dog"]}))
    handler = BaseHandler()
    handler.initialize(make_context(tmp_path, serializedFile="model.pt"))
    assert handler.mapping == {"0": "cat", "1": "dog"}


def test_precision_bf16_runs_under_autocast(tmp_path: Path) -> None:
    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))
    context = make_context(tmp_path, serializedFile="model.pt")
    context.system_properties["precision"] = "bf16"
    handler = BaseHandler()
    handler.initialize(context)
    assert handler.inference(torch.tensor(X)).dtype == torch.bfloat16


# -- BaseHandler: preprocess / postprocess -------------------------------------

@pytest.mark.parametrize("batch", [
    X,                                                   # bare rows
    rows(X),                                             # parsed JSON bodies
    [{"data": row} for row in X],                        # form field "data"
    rows([{"data": row} for row in X]),
    rows([{"features": row} for row in X]),
    rows([{"instances": row} for row in X]),
    rows([{"pixels": row} for row in X]),                # one unknown key: its value
    rows([json.dumps(row).encode() for row in X]),       # bytes
    rows([bytearray(json.dumps({"inputs": row}), "utf-8") for row in X]),
    rows([json.dumps(row) for row in X]),                # text
])
def test_preprocess_builds_one_batch_tensor(batch: list[Any]) -> None:
    tensor = BaseHandler().preprocess(batch)
    assert tensor.dtype == torch.float32
    assert tensor.tolist() == X


def test_preprocess_keeps_integers_and_narrows_float64() -> None:
    assert BaseHandler().preprocess(rows([[1, 2], [3, 4]])).dtype == torch.int64
    float64 = torch.tensor(X, dtype=torch.float64)
    assert BaseHandler().preprocess(list(float64)).dtype == torch.float32


@pytest.mark.parametrize(("batch", "message"), [
    (rows([[1, 2, 3], [1, 2]]), r"row 1: shape \[2\] differs from row 0's shape \[3\]"),
    (rows([[1, 2], ["a", "b"]]), r"row 1: expected numbers, got str at \[0\]"),
    (rows([[1, 2], [[1], [2, 3]]]), r"row 1: nested arrays must be rectangular"),
    (rows([b"\xff\xfe"]), r"row 0: .*not UTF-8"),
    (rows(["not json"]), r"row 0: .*not JSON"),
    (rows([{"a": 1, "b": 2}]), r"row 0: .*keys a, b"),
    ([], r"non-empty"),
])
def test_preprocess_rejects_bad_rows(batch: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BaseHandler().preprocess(batch)


def test_postprocess_gives_one_entry_per_row() -> None:
    handler = BaseHandler()
    assert handler.postprocess(torch.tensor([[1.0], [2.0]])) == [[1.0], [2.0]]
    pair = (torch.tensor([1, 2]), torch.tensor([[3], [4]]))
    assert handler.postprocess(pair) == [[1, [3]], [2, [4]]]
    named = {"label": torch.tensor([0, 1]), "score": torch.tensor([0.5, 0.25])}
    assert handler.postprocess(named) == [{"label": 0, "score": 0.5},
                                          {"label": 1, "score": 0.25}]


def test_explain_header_routes_to_get_insights(tmp_path: Path) -> None:
    class Explained(BaseHandler):
        def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> Any:
            return [{"shape": list(tensor_data.shape), "target": target}]

    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))
    context = make_context(tmp_path, serializedFile="model.pt")
    context._begin_batch([RequestProcessor("r0", {"explain": "True"})])
    handler = Explained()
    handler.initialize(context)
    assert handler.handle([{"body": [1, 2, 3], "target": 1}], context) == [
        {"shape": [1, 3], "target": 1}]
    assert handler.explain is True


# -- ts.utils.util ------------------------------------------------------------

def test_prediction_exception() -> None:
    error = PredictionException("bad image", 415)
    assert (str(error), error.message, error.error_code) == ("bad image", "bad image", 415)
    assert PredictionException("boom").error_code == 500


def test_map_class_to_label() -> None:
    mapping = {"0": "cat", "1": ["n02", "dog"]}
    assert map_class_to_label([[0.1, 0.9]], mapping) == [{"cat": 0.1, "dog": 0.9}]
    assert map_class_to_label([[0.9, 0.1]], mapping, [[1, 2]]) == [{"dog": 0.9, "2": 0.1}]
    assert map_class_to_label([[0.5], [0.7]]) == [{"0": 0.5}, {"0": 0.7}]
    with pytest.raises(TypeError):
        map_class_to_label("probs")
    with pytest.raises(TypeError):
        map_class_to_label([[0.5]], ["cat"])


def test_load_label_mapping(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert load_label_mapping(str(tmp_path / "index_to_name.json")) is None
    assert "index_to_name.json" in caplog.text
    (tmp_path / "labels.json").write_text(json.dumps(["cat", ["n02", "dog"]]))
    assert load_label_mapping(str(tmp_path / "labels.json")) == {"0": "cat", "1": "dog"}
    (tmp_path / "bad.json").write_text("3")
    with pytest.raises(ValueError, match="bad.json"):
        load_label_mapping(str(tmp_path / "bad.json"))


def test_list_classes_from_module(tmp_path: Path) -> None:
    path = tmp_path / "shim_classes_example.py"
    path.write_text(textwrap.dedent("""
        import torch
        from collections import OrderedDict

        class Zeta:
            pass

        class Alpha(torch.nn.Module):
            pass
    """))
    spec = importlib.util.spec_from_file_location("shim_classes_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [c.__name__ for c in list_classes_from_module(module)] == ["Zeta", "Alpha"]
    assert [c.__name__ for c in list_classes_from_module(module, torch.nn.Module)] == ["Alpha"]


def test_get_yaml_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("batchSize: 4\nhandler:\n  topk: 3\n")
    (tmp_path / "empty.yaml").write_text("")
    assert get_yaml_config(str(tmp_path / "c.yaml")) == {"batchSize": 4, "handler": {"topk": 3}}
    assert get_yaml_config(str(tmp_path / "empty.yaml")) == {}


# -- ts.metrics -----------------------------------------------------------------

def test_add_calls_reach_the_sink_with_kind_unit_and_dimensions() -> None:
    sink = FakeSink()
    metrics = HandlerMetrics(sink, "resnet")
    default = {"ModelName": "resnet", "Level": "Model"}
    metrics.add_time("Pre", 1.5, None, "ms", [Dimension("stage", "pre")])
    metrics.add_counter("Calls", 2)
    metrics.add_size("Img", 3, dimensions={"fmt": "png"})
    metrics.add_percent("Util", 50)
    metrics.add_metric("Dist", 7, "km")
    metrics.add_metric("Lat", 8, "ms", metric_type="histogram")
    metrics.add_error("Failures", 1)
    assert sink.calls == [
        ("Pre", "gauge", 1.5, "ms", {"stage": "pre", **default}),
        ("Calls", "counter", 2.0, "count", default),
        ("Img", "gauge", 3.0, "MB", {"fmt": "png", **default}),
        ("Util", "gauge", 50.0, "percent", default),
        ("Dist", "counter", 7.0, "km", default),
        ("Lat", "histogram", 8.0, "ms", default),
        ("Failures", "counter", 1.0, "count", {"ModelName": "resnet", "Level": "Error"}),
    ]


def test_cached_metrics_add_or_update_and_update() -> None:
    sink = FakeSink()
    metrics = HandlerMetrics(sink, "m")
    gauge = metrics.add_metric_to_cache("Queue", "count", ["worker"], MetricTypes.GAUGE)
    assert isinstance(gauge, CachingMetric)
    assert sink.calls == []  # declaring emits nothing
    gauge.add_or_update(4, ["w1"], request_id="r0")
    assert metrics.get_metric("Queue", MetricTypes.GAUGE) is gauge
    metrics.get_metric("Queue", MetricTypes.GAUGE).update(5, dimensions=[Dimension("worker", "w2")])
    gauge.add_or_update(6, ["w1", "extra"])  # wrong arity: dropped, not raised
    undeclared = metrics.get_metric("Seen")
    undeclared.add_or_update(1)
    undeclared.add_or_update(2, ["m", "Model"])
    assert sink.calls == [
        ("Queue", "gauge", 4.0, "count", {"worker": "w1"}),
        ("Queue", "gauge", 5.0, "count", {"worker": "w2"}),
        ("Seen", "counter", 1.0, "", {"ModelName": "m", "Level": "Model"}),
        ("Seen", "counter", 2.0, "", {"ModelName": "m", "Level": "Model"}),
    ]


def test_metric_failures_never_reach_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    def broken_sink(*args: Any) -> None:
        raise RuntimeError("registry exploded")

    metrics = HandlerMetrics(broken_sink, "m")
    metrics.add_time("HandlerTime", 1.0)
    metrics.add_time("HandlerTime", 2.0)
    HandlerMetrics(FakeSink()).add_counter("Bad", "not a number")
    HandlerMetrics(FakeSink()).add_metric("Typed", 1, "ms", metric_type="summary")
    assert caplog.text.count("HandlerTime") == 1  # warned once per metric name
    with pytest.raises(ValueError, match="metric_type"):
        metrics.add_metric_to_cache("X", "ms", [], "summary")


# -- built-in handler names ---------------------------------------------------------

def test_requirement_error_names_packages_and_fix() -> None:
    with pytest.raises(RuntimeError) as info:
        _requirements.require("image_classifier",
                              {"mkserve_absent_pkg": "absent-pkg", "json": "json"})
    assert "absent-pkg" in str(info.value) and "json" not in str(info.value).split(";")[0]
    assert "--requirements or the archive's requirements file" in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                    reason="torchvision is installed, so the missing-package path cannot occur")
@pytest.mark.parametrize("handler_class", [ImageClassifier, ObjectDetector, ImageSegmenter])
def test_builtin_vision_handler_without_torchvision_fails_at_initialize(
        tmp_path: Path, handler_class: type[BaseHandler]) -> None:
    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))
    handler = handler_class()  # importing and constructing must work without torchvision
    with pytest.raises(RuntimeError, match=r"needs the package.*torchvision.*--requirements"):
        handler.initialize(make_context(tmp_path, serializedFile="model.pt"))
    assert not handler.initialized


def test_text_classifier_serves_a_vocabulary_model(tmp_path: Path) -> None:
    """TorchServe 0.12's text_classifier contract: source_vocab.pt, model(ids, offsets)."""
    from mkserve.runtime.ts.torch_handler.text_classifier import TextClassifier

    class Bag(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.EmbeddingBag(8, 4, mode="mean")
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, text: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
            return self.fc(self.embedding(text, offsets))

    torch.manual_seed(0)
    model = Bag().eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    vocab = {"<unk>": 0, "it": 1, "is": 2, "not": 3, "good": 4, "it is": 5, "is not": 6,
             "not good": 7}
    torch.save(vocab, tmp_path / "source_vocab.pt")
    (tmp_path / "index_to_name.json").write_text('{"0": "neg", "1": "pos"}')
    handler = TextClassifier()
    context = make_context(tmp_path, serializedFile="model.pt")
    handler.initialize(context)
    # HTML dropped, lower-cased, "isn't" expanded, punctuation removed, then bigrams.
    out = handler.handle([{"body": b"<b>It isn't</b> good!"}], context)
    ids = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    with torch.no_grad():
        probs = torch.softmax(model(ids, torch.tensor([0])), dim=1)[0].tolist()
    assert out == [{"neg": pytest.approx(probs[0]), "pos": pytest.approx(probs[1])}]


def test_text_classifier_without_a_vocabulary_says_what_to_add(tmp_path: Path) -> None:
    from mkserve.runtime.ts.torch_handler.text_classifier import TextClassifier

    torch.jit.script(Linear3()).save(str(tmp_path / "model.pt"))
    with pytest.raises(FileNotFoundError, match="source_vocab.pt"):
        TextClassifier().initialize(make_context(tmp_path, serializedFile="model.pt"))


def test_vision_preprocess_decodes_images_with_pil() -> None:
    image_module = pytest.importorskip("PIL.Image")

    class Gray(VisionHandler):
        @staticmethod
        def image_processing(image: Any) -> torch.Tensor:
            return torch.tensor(list(image.convert("L").tobytes()), dtype=torch.float32)

    buffer = io.BytesIO()
    image_module.new("RGB", (2, 2), (255, 255, 255)).save(buffer, format="PNG")
    batch = Gray().preprocess([{"body": buffer.getvalue()}, {"data": [1, 2, 3, 4]}])
    assert batch.tolist() == [[255.0] * 4, [1.0, 2.0, 3.0, 4.0]]


def test_builtin_postprocess_shapes() -> None:
    classifier = ImageClassifier()
    classifier.mapping = {"0": "cat", "1": "dog"}
    [top] = classifier.postprocess(torch.tensor([[0.0, 10.0]]))
    assert list(top) == ["dog", "cat"] and top["dog"] > 0.99

    detector = ObjectDetector()
    detector.mapping = {"3": "car"}
    found = detector.postprocess([{"boxes": torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3]]),
                                   "labels": torch.tensor([3, 4]),
                                   "scores": torch.tensor([0.9, 0.1])}])
    assert found == [[{"car": [0.0, 0.0, 1.0, 1.0], "score": pytest.approx(0.9)}]]

    masks = ImageSegmenter().postprocess({"out": torch.zeros(1, 3, 2, 2)})
    assert torch.tensor(masks).shape == (1, 2, 2, 2)


def test_integer_json_reaches_a_float_model_as_floats(tmp_path: Path) -> None:
    """[1, 2, 3] to a float model: the base handler casts when the model refuses integers
    (a token-id model gets its integers untouched)."""
    model = Linear3().eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    handler = BaseHandler()
    context = make_context(tmp_path, serializedFile="model.pt")
    handler.initialize(context)
    out = handler.handle([{"body": [1, 2, 3]}, {"body": [4, 5, 6]}], context)
    for got, want in zip(out, expected(model), strict=True):
        assert got == pytest.approx(want)

    embed = torch.nn.Embedding(10, 2).eval()
    torch.jit.script(embed).save(str(tmp_path / "embed.pt"))
    handler = BaseHandler()
    context = make_context(tmp_path, serializedFile="embed.pt")
    handler.initialize(context)
    with torch.no_grad():
        assert handler.handle([{"body": [1, 2, 3]}, {"body": [4, 5, 6]}], context) == \
            embed(torch.tensor([[1, 2, 3], [4, 5, 6]])).tolist()


def config_context(model_dir: Path, serialized: str, config: dict[str, Any]) -> Context:
    manifest = {"runtime": "python", "model": {"modelName": "m", "handler": "base_handler",
                                               "serializedFile": serialized}}
    context = Context("m", str(model_dir), manifest, batch_size=4, gpu=None,
                      mms_version="0.1.0", model_yaml_config=config)
    context._begin_batch([RequestProcessor(f"r{i}", {}) for i in range(len(X))])
    return context


def served_rows(handler: BaseHandler, context: Context) -> list[list[float]]:
    return handler.handle(rows(X), context)


EAGER_MODEL = NET  # model.py of a Linear(3, 2), as the recorded cases use


def eager_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> torch.nn.Module:
    """model.py and a state dict: what TorchServe's pt2 compile is for (not TorchScript)."""
    (tmp_path / "model.py").write_text(EAGER_MODEL)
    reference = Linear3()
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    return reference


@pytest.mark.parametrize("pt2", [{"compile": {"enable": True, "backend": "eager"}}, "eager",
                                 {"backend": "eager"}])
def test_pt2_compile_in_the_model_config_compiles_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pt2: Any) -> None:
    model = eager_model(tmp_path, monkeypatch)
    handler = BaseHandler()
    context = config_context(tmp_path, "weights.pth", {"pt2": pt2})
    context.manifest["model"]["modelFile"] = "model.py"
    handler.initialize(context)
    assert type(handler.model).__name__ == "OptimizedModule"
    assert_close(served_rows(handler, context), expected(model))


def test_pt2_compile_disabled_or_unknown_backend_serves_uncompiled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eager_model(tmp_path, monkeypatch)
    for pt2 in ({"compile": {"enable": False, "backend": "eager"}}, {"backend": "warp"}):
        handler = BaseHandler()
        context = config_context(tmp_path, "weights.pth", {"pt2": pt2})
        context.manifest["model"]["modelFile"] = "model.py"
        handler.initialize(context)
        assert type(handler.model).__name__ == "Net"


def test_onnx_serialized_file_is_served_through_onnxruntime(tmp_path: Path) -> None:
    model = Linear3().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3),), str(tmp_path / "model.onnx"),
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    handler = BaseHandler()
    context = config_context(tmp_path, "model.onnx", {})
    handler.initialize(context)
    assert_close(served_rows(handler, context), expected(model))


def test_aotinductor_so_from_the_model_config_export(tmp_path: Path) -> None:
    """TorchServe's `pt2: {export: {aot_compile: true}}` with a .so serializedFile."""
    from torch._export import aot_compile

    model = Linear3().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aot_compile(model, (torch.randn(2, 3),), dynamic_shapes=None,
                    options={"aot_inductor.output_path": str(tmp_path / "model.so")})
    handler = BaseHandler()
    context = config_context(tmp_path, "model.so", {"pt2": {"export": {"aot_compile": True}}})
    handler.initialize(context)
    assert handler._use_torch_export_aot_compile()
    assert_close(served_rows(handler, context), expected(model))


def test_unhonoured_model_config_keys_are_named_with_the_reason() -> None:
    from mkserve.runtime.settings import unhonoured

    lines = unhonoured({"batchSize": 4, "parallelType": "pp", "useVenv": True,
                        "my_handler_key": 1, "pt2": "eager", "deviceIds": [0]})
    assert len(lines) == 2 and "parallelType: ignored: no model parallelism" in lines[0]
    assert "useVenv" in lines[1]

"""TorchServe 0.12's handler-facing API: every public name imports, and what each does.

tests/recorded/torchserve-0.12-api.json lists the names, recorded from the real
torchserve wheel's file list by tests/recorded/record_ts_api.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from mkserve.runtime.ts.context import Context, RequestProcessor
from mkserve.runtime.ts.metrics import HandlerMetrics

API = Path(__file__).resolve().parents[1] / "recorded" / "torchserve-0.12-api.json"


def test_every_handler_facing_name_of_torchserve_0_12_imports_through_ts() -> None:
    """In a fresh interpreter, as a handler would: `import ts.x` then each name of x
    (the real torchserve is installed here too; mkserve's alias must win)."""
    api = json.loads(API.read_text())
    assert api["torchserve"] == "0.12.0" and len(api["modules"]) > 50
    script = textwrap.dedent(f"""
        import importlib, json
        from mkserve.runtime.handlers import install_ts_alias
        install_ts_alias()
        missing = []
        for module, names in json.loads(open({str(API)!r}).read())["modules"].items():
            try:
                mod = importlib.import_module(module)
            except Exception as exc:
                missing.append(f"{{module}}: {{type(exc).__name__}}: {{exc}}")
                continue
            assert mod.__name__.startswith("mkserve.runtime.ts"), mod.__name__
            missing += [f"{{module}}.{{n}}" for n in names if not hasattr(mod, n)]
        print(json.dumps(missing))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def make_context(headers: list[dict[str, str]] | None = None, config: Any = None,
                 metrics: Any = None) -> Context:
    manifest = {"model": {"modelName": "m", "modelVersion": "2.0"}}
    context = Context("m", ".", manifest, 4, None, "0", metrics=metrics,
                      model_yaml_config=config)
    context._begin_batch([RequestProcessor(f"r{i}", h) for i, h in enumerate(headers or [{}])])
    return context


def test_version_and_request_processor_as_the_sagemaker_toolkit_reads_them() -> None:
    from mkserve.runtime import ts

    assert ts.__version__ == "0.12.0"
    context = make_context([{"Content-Type": "application/json", "X-Amzn-Custom": "a"},
                            {"ts_request_sequence_id": "seq-7"}])
    first = context.request_processor[0]
    assert first.get_request_property("content-type") == "application/json"
    assert first.get_request_properties()["X-Amzn-Custom"] == "a"
    context.set_response_status(201, "Created", idx=0)
    assert (first.get_response_status_code(), first.get_response_status_phrase()) == \
        (201, "Created")
    first.add_response_property("X-Extra", 1)
    assert context.get_response_headers(0) == {"X-Extra": "1"}
    assert context.get_sequence_id(0) is None and context.get_sequence_id(1) == "seq-7"
    assert context.stopping_criteria is None


def test_unsupported_integrations_import_and_fail_on_use_with_the_reason() -> None:
    from mkserve.runtime.ts.handler_utils.distributed import deepspeed
    from mkserve.runtime.ts.torch_handler.vllm_handler import VLLMHandler
    from mkserve.runtime.ts.unsupported import UnsupportedError
    from mkserve.runtime.ts.utils import hf_utils

    with pytest.raises(UnsupportedError, match="DeepSpeed"):
        deepspeed.get_ds_engine(None, None)
    with pytest.raises(UnsupportedError, match="vLLM"):
        VLLMHandler().initialize(None)
    with pytest.raises(UnsupportedError, match="extra-files"):
        hf_utils.download_model("org/model")


def test_timed_records_ts_handler_metrics_only_when_profiling() -> None:
    from mkserve.runtime.ts.handler_utils.timer import timed

    calls: list[tuple[Any, ...]] = []

    class Handler:
        def __init__(self, context: Context) -> None:
            self.context = context

        @timed
        def preprocess(self, data: list[Any]) -> list[Any]:
            return data

    def sink(*args: Any) -> None:
        calls.append(args)

    quiet = Handler(make_context(metrics=HandlerMetrics(sink, "m")))
    assert quiet.preprocess([1]) == [1] and calls == []
    profiled = Handler(make_context(config={"handler": {"profile": True}},
                                    metrics=HandlerMetrics(sink, "m")))
    assert profiled.preprocess([2]) == [2]
    [(name, kind, value, unit, dims)] = calls
    assert (name, kind, unit) == ("ts_handler_preprocess", "gauge", "ms") and value >= 0
    assert dims["ModelName"] == "m"


def test_micro_batching_pipelines_and_keeps_the_order() -> None:
    from mkserve.runtime.ts.handler_utils.micro_batching import MicroBatching

    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    class Handler:
        context: Any = None

        def preprocess(self, rows: list[int]) -> list[int]:
            with lock:
                seen.append(("pre", mb.get_micro_batch_idx()))
            return [r * 10 for r in rows]

        def inference(self, rows: list[int]) -> list[int]:
            return [r + 1 for r in rows]

        def postprocess(self, rows: list[int]) -> list[int]:
            return rows

    mb = MicroBatching(Handler(), micro_batch_size=2,
                       parallelism={"preprocess": 2, "inference": 1, "postprocess": 2})
    try:
        assert mb(list(range(7)), make_context()) == [1, 11, 21, 31, 41, 51, 61]
        assert sorted(i for _, i in seen) == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="unknown steps"):
            mb.parallelism = {"decode": 1}
    finally:
        mb.shutdown()


def test_text_utils_tokenize_and_make_ngrams() -> None:
    from mkserve.runtime.ts.handler_utils.text_utils import get_tokenizer, ngrams_iterator

    assert get_tokenizer("basic_english")("Hello, World!") == ["hello", ",", "world", "!"]
    assert get_tokenizer(None)("a  b") == ["a", "b"]
    assert list(ngrams_iterator(["a", "b", "c"], 2)) == ["a", "b", "c", "a b", "b c"]
    with pytest.raises(ValueError, match="basic_english"):
        get_tokenizer("spacy")


def test_utils_import_class_deprecated_and_pt2_backends() -> None:
    from mkserve.runtime.ts.handler_utils.utils import import_class
    from mkserve.runtime.ts.utils.util import PT2Backend, check_valid_pt2_backend, deprecated

    assert import_class("collections.OrderedDict").__name__ == "OrderedDict"
    assert import_class("OrderedDict", module_prefix="collections").__name__ == "OrderedDict"
    with pytest.raises(ImportError, match="no class"):
        import_class("collections.Nope")
    assert check_valid_pt2_backend(PT2Backend.INDUCTOR.value)
    assert not check_valid_pt2_backend("warp-drive")

    @deprecated("0.10", replacement="new_f")
    def old_f() -> int:
        return 3

    with pytest.warns(PendingDeprecationWarning, match="new_f"):
        assert old_f() == 3


def echo(rows: list[Any], context: Any) -> list[Any]:
    return [{"got": r.decode() if isinstance(r, bytes) else r} for r in rows]


def test_json_and_kserve_envelopes_unpack_as_torchserve_does() -> None:
    from mkserve.runtime.ts.torch_handler.request_envelope.json import JSONEnvelope
    from mkserve.runtime.ts.torch_handler.request_envelope.kserve import KServeEnvelope

    two = [{"body": {"instances": [1, 2]}}, {"body": b'{"instances": [{"b64": "aGk="}]}'}]
    out = JSONEnvelope(echo).handle(two, make_context([{}, {}]))
    assert [json.loads(o) for o in out] == [{"predictions": [{"got": 1}, {"got": 2}]},
                                           {"predictions": [{"got": "hi"}]}]
    # KServe V1: each instance object is a row for the handler, as TorchServe hands it.
    body = {"instances": [{"data": [1, 2]}, {"data": [3]}]}
    assert KServeEnvelope(echo).handle([{"body": body}], make_context()) == \
        [{"predictions": [{"got": {"data": [1, 2]}}, {"got": {"data": [3]}}]}]
    explained = KServeEnvelope(echo).handle([{"body": body}], make_context([{"explain": "True"}]))
    assert list(explained[0]) == ["explanations"]


def test_kservev2_envelope_hands_over_named_tensors_whole() -> None:
    from mkserve.runtime.ts.torch_handler.request_envelope.kservev2 import KServev2Envelope

    def double(inputs: list[dict[str, Any]], context: Any) -> list[Any]:
        return [torch.tensor(t["data"]).mul(2).tolist() for t in inputs]

    body = {"id": "req-1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64",
                                      "data": [1, 2, 3, 4]}]}
    [answer] = KServev2Envelope(double).handle([{"body": json.dumps(body).encode()}],
                                               make_context())
    assert answer == {"id": "req-1", "model_name": "m", "model_version": "2.0",
                      "outputs": [{"name": "x", "datatype": "INT64", "data": [2, 4, 6, 8],
                                   "shape": [4]}]}


def test_legacy_metrics_store_and_yaml_cache(tmp_path: Path) -> None:
    from mkserve.runtime.ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
    from mkserve.runtime.ts.metrics.metrics_store import MetricsStore

    store = MetricsStore({0: "r0"}, "m")
    store.add_time("PreprocessTime", 1.5, None, "ms")
    [metric] = store.store
    assert metric.to_dict()["MetricName"] == "PreprocessTime" and metric.unit == "Milliseconds"
    config = tmp_path / "metrics.yaml"
    config.write_text("model_metrics:\n  counter:\n    - name: Hits\n      unit: count\n"
                      "      dimensions: [ModelName]\n")
    got: list[tuple[Any, ...]] = []
    cache = MetricsCacheYamlImpl(str(config), sink=lambda *a: got.append(a), model_name="m")
    cache.initialize_cache()
    cache.get_metric("Hits").add_or_update(2, ["m"])
    assert got == [("Hits", "counter", 2.0, "count", {"ModelName": "m"})]


def test_base_handler_get_device() -> None:
    from mkserve.runtime.ts.torch_handler.base_handler import BaseHandler

    assert BaseHandler().get_device() == torch.device("cpu")

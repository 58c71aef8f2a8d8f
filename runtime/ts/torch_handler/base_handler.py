"""`ts.torch_handler.base_handler.BaseHandler`: load the archive's model and serve tensors."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import torch
from mkserve.runtime.precision import autocast
from mkserve.runtime.ts.torch_handler import _inputs, _loading
from mkserve.runtime.ts.torch_handler._loading import setup_ort_session
from mkserve.runtime.ts.utils.util import load_label_mapping

logger = logging.getLogger(__name__)
__all__ = ["BaseHandler", "setup_ort_session"]
# How torch says that an integer input met floating weights (matmul, conv, linear).
_DTYPE_REFUSAL = re.compile(r"dtype|scalar type|expected .*Float|Long.*Float|Float.*Long",
                            re.IGNORECASE)


def _same_batch(items: Sequence[Any]) -> bool:
    """True when items are tensors that all have the same leading (batch) size."""
    sizes = {item.shape[0] if isinstance(item, torch.Tensor) and item.dim() else None
             for item in items}
    return bool(items) and None not in sizes and len(sizes) == 1


class BaseHandler:
    """TorchServe's default handler, reimplemented; custom handlers subclass it.

    Steps: `initialize(context)` once (device, model, index_to_name.json), then
    `handle(data, context)` per batch: `preprocess` (JSON rows -> one batch
    tensor) -> `inference` (model under torch.inference_mode) -> `postprocess`
    (one list per row). Thread rules: one worker's batcher thread is the only
    caller, so handlers may keep per-batch state on `self`.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, str] | None = None
        self.device: torch.device | None = None
        self.initialized = False
        self.context: Any = None
        self.manifest: dict[str, Any] | None = None
        self.model_pt_path: str | None = None
        self.model_yaml_config: dict[str, Any] = {}
        self.map_location: str | None = None
        self.explain = False
        self.target = 0

    # -- load -------------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Pick the device, load the model the manifest names, read index_to_name.json."""
        self.context = context
        self.manifest = context.manifest
        self.model_yaml_config = getattr(context, "model_yaml_config", None) or {}
        properties = context.system_properties
        model_dir = properties.get("model_dir") or "."
        self.device = _loading.pick_device(properties.get("gpu_id"))
        self.map_location = self.device.type

        model_info = (self.manifest or {}).get("model", {})
        serialized = model_info.get("serializedFile")
        model_file = model_info.get("modelFile")
        self.model_pt_path = os.path.join(model_dir, serialized) if serialized else None
        if self.model_pt_path and not os.path.isfile(self.model_pt_path):
            raise _loading.missing_file_error(model_dir, serialized, "serializedFile")

        if model_file:
            model = self._load_pickled_model(model_dir, model_file, self.model_pt_path)
            self.model = model.to(self.device).eval()
        elif self.model_pt_path is None:
            raise RuntimeError(
                "the manifest names neither a serializedFile nor a modelFile, so the base "
                "handler has no model to load; rebuild the archive with --serialized-file")
        elif self.model_pt_path.endswith(".pt2"):
            self.model = _loading.load_pt2(self.model_pt_path, self.device)
        elif self.model_pt_path.endswith(".onnx"):
            self.model = _loading.onnx_session(self.model_pt_path, self.device)
        elif self.model_pt_path.endswith(".so"):
            self.model = self._load_torch_export_aot_compile(self.model_pt_path)
        else:
            self.model = self._load_torchscript_model(self.model_pt_path).to(self.device).eval()
        options = _loading.compile_options(self.model_yaml_config)
        if options is not None:
            self.model = _loading.compile_model(self.model, options)

        self.mapping = load_label_mapping(os.path.join(model_dir, "index_to_name.json"))
        self.initialized = True
        logger.info("model %s loaded on %s", serialized or model_file, self.device)

    def _load_torch_export_aot_compile(self, model_so_path: str) -> Any:
        """Load an AOTInductor .so (TorchServe's `pt2: {export: {aot_compile: true}}`)."""
        return _loading.load_aot_so(model_so_path, self._device())

    def _use_torch_export_aot_compile(self) -> bool:
        export = (self.model_yaml_config.get("pt2") or {}) if isinstance(
            self.model_yaml_config.get("pt2"), dict) else {}
        value = export.get("export")
        return isinstance(value, dict) and value.get("aot_compile") is True

    def _load_torchscript_model(self, model_pt_path: str) -> torch.nn.Module:
        """Load a TorchScript file onto self.device (kept for handlers that call it)."""
        return _loading.load_torchscript(model_pt_path, self._device())

    def _load_pickled_model(self, model_dir: str, model_file: str,
                            model_pt_path: str | None) -> torch.nn.Module:
        """Build the model class from model_file and load its state dict, if any."""
        module = _loading.import_model_module(model_dir, model_file)
        model_class = _loading.model_class(module, model_file)
        try:
            model = model_class()
        except TypeError as exc:
            raise TypeError(f"{model_class.__name__} in {model_file} must be constructible "
                            f"without arguments: {exc}") from exc
        if model_pt_path:
            model.load_state_dict(_loading.load_state_dict(model_pt_path, self._device()))
        return model

    def _device(self) -> torch.device:
        return self.device if self.device is not None else torch.device("cpu")

    def get_device(self) -> torch.device:
        """The device the model was loaded on (CPU until initialize has run)."""
        return self._device()

    # -- serve ------------------------------------------------------------
    def preprocess(self, data: list[Any]) -> torch.Tensor:
        """JSON numbers/arrays (bare or under data/inputs/instances/...) -> [N, ...] tensor."""
        return _inputs.rows_to_batch(data).to(self._device())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        properties = getattr(self.context, "system_properties", None) or {}
        return autocast(str(properties.get("precision") or "").lower(), self._device().type)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the model on the preprocessed batch, without autograd."""
        if _loading.is_onnx_session(self.model):
            return _loading.run_onnx(self.model, data, *args)
        if isinstance(data, torch.Tensor):
            data = data.to(self._device())
        with torch.inference_mode(), self._autocast():
            try:
                return self.model(data, *args, **kwargs)
            except RuntimeError as exc:
                # JSON integers ([1, 2, 3, 4]) make an integer tensor, which a float model
                # refuses; token-id models want exactly that, so cast only on the refusal.
                if not (isinstance(data, torch.Tensor) and not data.is_floating_point()
                        and _DTYPE_REFUSAL.search(str(exc))):
                    raise
                return self.model(data.float(), *args, **kwargs)

    def postprocess(self, data: Any) -> list[Any]:
        """One JSON-able entry per row: tensor rows, or per-row tuples/dicts of tensors."""
        if isinstance(data, torch.Tensor):
            return data.tolist()
        if isinstance(data, (tuple, list)) and _same_batch(data):
            # Multi-output models: regroup so each request gets its own slice of each output.
            return [list(row) for row in zip(*(item.tolist() for item in data), strict=False)]
        if isinstance(data, dict) and _same_batch(list(data.values())):
            columns = {key: value.tolist() for key, value in data.items()}
            return [dict(zip(columns, row, strict=False))
                    for row in zip(*columns.values(), strict=False)]
        return data

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        """preprocess -> inference -> postprocess for one batch; records HandlerTime (ms)."""
        start = time.perf_counter()
        self.context = context
        if self._is_describe():
            output: Any = [self.describe_handle()]
        else:
            batch = self.preprocess(data)
            if self._is_explain():
                output = self.explain_handle(batch, data)
            else:
                output = self.postprocess(self.inference(batch))
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            elapsed_ms = round((time.perf_counter() - start) * 1000, 2)
            metrics.add_time("HandlerTime", elapsed_ms, None, "ms")
        return output

    # -- explanations and description (TorchServe's request headers) --------
    def _request_header(self, key: str) -> str | None:
        try:
            return self.context.get_request_header(0, key)
        except (AttributeError, IndexError, KeyError):
            return None  # no batch in flight (e.g. called during initialize)

    def _is_explain(self) -> bool:
        if self._request_header("explain") == "True":
            self.explain = True
            return True
        return False

    def _is_describe(self) -> bool:
        return self._request_header("describe") == "True"

    def explain_handle(self, data_preprocess: Any, raw_data: list[Any]) -> Any:
        """Explanations for the batch via `get_insights`, targeting row 0's "target"."""
        inputs = None
        target: Any = 0
        row = raw_data[0] if raw_data else None
        if isinstance(row, dict):
            inputs = _inputs.row_payload(row)
            target = row.get("target") or 0
        self.target = target
        return self.get_insights(data_preprocess, inputs, target)

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} does not implement get_insights, so it cannot answer "
            f"explanation requests")

    def describe_handle(self) -> Any:
        """Custom model metadata for describe requests; None unless overridden."""
        logger.info("describe request: %s returns no custom metadata", type(self).__name__)
        return None

"""`ts.utils.util`: label mapping, class discovery, YAML, torch.compile backends, the
PredictionException and a deprecation decorator."""
from __future__ import annotations

import enum
import functools
import inspect
import json
import logging
import os
import re
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import yaml

logger = logging.getLogger(__name__)

# HTML tags, which text handlers strip before tokenising.
CLEANUP_REGEX = re.compile("<.*?>")


class PT2Backend(str, enum.Enum):
    """torch.compile backends a model config's `pt2: {backend: ...}` may name."""

    EAGER = "eager"
    AOT_EAGER = "aot_eager"
    INDUCTOR = "inductor"
    CUDAGRAPHS = "cudagraphs"
    ONNXRT = "onnxrt"
    TVM = "tvm"
    IPEX = "ipex"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    TORCH_TENSORRT = "torch_tensorrt"
    HPU_BACKEND = "hpu_backend"


def check_valid_pt2_backend(backend: str) -> bool:
    """True when `backend` is a torch.compile backend this torch knows; logs the choices
    otherwise."""
    try:
        import torch._dynamo as dynamo

        known = set(dynamo.list_backends(exclude_tags=())) | {"eager", "aot_eager"}
    except Exception:  # noqa: BLE001 - an old or stripped torch: fall back to the enum
        known = {b.value for b in PT2Backend}
    if backend in known:
        return True
    logger.warning("%r is not a torch.compile backend here; choose one of %s",
                   backend, ", ".join(sorted(known)))
    return False


def deprecated(version: str, replacement: str = "",
               klass: type[Warning] = PendingDeprecationWarning
               ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function deprecated since `version`: each call warns with `klass`."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        message = f"{func.__name__} is deprecated since {version}"
        if replacement:
            message += f"; use {replacement} instead"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warnings.warn(message, klass, stacklevel=2)
            return func(*args, **kwargs)

        return wrapper

    return decorate


class PredictionException(Exception):
    """Raised by a handler to answer a request with `error_code` and `message`."""

    def __init__(self, message: str, error_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    def __str__(self) -> str:
        return self.message


def _label(value: Any) -> str:
    # ImageNet-style files map an index to [wordnet_id, name]; the name is the label.
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    return value if isinstance(value, str) else str(value)


def load_label_mapping(mapping_file_path: str) -> dict[str, str] | None:
    """Read an index_to_name.json file into {"0": "label", ...}; None when the file is absent."""
    if not os.path.isfile(mapping_file_path):
        logger.info("no %s: class indices will not be mapped to names",
                    os.path.basename(mapping_file_path))
        return None
    with open(mapping_file_path, encoding="utf-8") as handle:
        try:
            mapping = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{mapping_file_path} is not valid JSON: {exc}") from exc
    # Some older examples wrap the labels as {"object_type_names": [...]}.
    if isinstance(mapping, dict) and isinstance(mapping.get("object_type_names"), list):
        mapping = mapping["object_type_names"]
    if isinstance(mapping, list):
        return {str(idx): _label(value) for idx, value in enumerate(mapping)}
    if not isinstance(mapping, dict):
        # A malformed file, not a wrong argument: ValueError like other bad file content.
        raise ValueError(  # noqa: TRY004
            f"{mapping_file_path} must hold a JSON object {{\"0\": \"label\", ...}} or a list "
            f"of labels, not {type(mapping).__name__}")
    return {str(key): _label(value) for key, value in mapping.items()}


def map_class_to_label(probs: Any, mapping: dict[str, Any] | None = None,
                       lbl_classes: Any = None) -> list[dict[str, Any]]:
    """Turn per-row probabilities into one {label: probability} dict per row.

    `lbl_classes` holds the class index of each probability (e.g. from topk);
    without it the classes are 0..n-1. Indices missing from `mapping` keep
    their number as the label.
    """
    if hasattr(probs, "tolist"):
        probs = probs.tolist()
    if hasattr(lbl_classes, "tolist"):
        lbl_classes = lbl_classes.tolist()
    if not isinstance(probs, list):
        raise TypeError("map_class_to_label needs a list of rows: convert tensors with .tolist()")
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError(f"mapping must be a dict, not {type(mapping).__name__}")
    if lbl_classes is None:
        lbl_classes = [range(len(row)) for row in probs]
    results = []
    for classes, row in zip(lbl_classes, probs, strict=False):
        entry: dict[str, Any] = {}
        for cls, prob in zip(classes, row, strict=False):
            key = str(cls)
            entry[_label(mapping[key]) if mapping and key in mapping else key] = prob
        results.append(entry)
    return results


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """Classes defined in `module` itself (not imported), in source order.

    With `parent_class`, only its subclasses are returned.
    """
    order = {name: pos for pos, name in enumerate(vars(module))}

    def position(cls: type) -> tuple[float, int]:
        try:
            line = float(inspect.getsourcelines(cls)[1])
        except (OSError, TypeError):
            line = float("inf")  # no source (e.g. built dynamically): fall back to dict order
        return line, order.get(cls.__name__, 0)

    classes = [member for member in vars(module).values()
               if inspect.isclass(member) and member.__module__ == module.__name__]
    if parent_class is not None:
        classes = [cls for cls in classes if issubclass(cls, parent_class)]
    return sorted(classes, key=position)


def get_yaml_config(yaml_file_path: str) -> dict[str, Any]:
    """Parse a YAML file (e.g. model-config.yaml); an empty file gives {}."""
    with open(yaml_file_path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    return config if config is not None else {}

"""Handler resolution: find, import and initialise a TorchServe-style handler."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .source import ModelSource

BUILTIN_PACKAGE = "mkserve.runtime.ts.torch_handler"
BUILTINS = ("base_handler", "image_classifier", "text_classifier", "object_detector",
            "image_segmenter", "vision_handler")

Handle = Callable[[list[Any], Any], Any]


class HandlerError(RuntimeError):
    """The handler could not be found, imported or initialised."""


class _TsAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import ts.x` return mkserve.runtime.ts.x (the same module object).

    An alias rather than a top-level `ts` package, so that a torchserve
    installation on the same machine is never shadowed outside the worker,
    and so that classes such as Context have one identity under both names.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "ts" and not fullname.startswith("ts."):
            return None
        real = "mkserve.runtime." + fullname
        try:
            if importlib.util.find_spec(real) is None:
                return None
        except ModuleNotFoundError:
            return None
        module = importlib.import_module(real)
        is_pkg = hasattr(module, "__path__")
        return importlib.util.spec_from_loader(fullname, self, is_package=is_pkg)

    def create_module(self, spec: Any) -> types.ModuleType:
        return importlib.import_module("mkserve.runtime." + spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install_ts_alias() -> None:
    """Route `ts` imports to mkserve's implementation (idempotent)."""
    if not any(isinstance(f, _TsAlias) for f in sys.meta_path):
        # list(): other threads may import while we look (the dict would change size).
        for name in [n for n in list(sys.modules) if n == "ts" or n.startswith("ts.")]:
            del sys.modules[name]  # a real torchserve imported earlier must not win
        sys.meta_path.insert(0, _TsAlias())


def split_handler(spec: str) -> tuple[str, str | None]:
    """'handler.py:fn' → ('handler', 'fn'); 'pkg.mod' → ('pkg.mod', None)."""
    module, _, function = spec.partition(":")
    module = module.strip()
    if module.endswith(".py"):
        module = Path(module).with_suffix("").as_posix().replace("/", ".")
    return module, (function.strip() or None)


def import_handler_module(source: ModelSource) -> tuple[types.ModuleType, str | None]:
    """Import the manifest's handler module with the model folder on sys.path."""
    install_ts_alias()
    model_dir = str(source.model_dir)
    if model_dir not in sys.path:
        sys.path.insert(0, model_dir)
    name, function = split_handler(source.handler)
    if not name:
        raise HandlerError("the manifest names no handler")
    try:
        return importlib.import_module(name), function
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "ts" or exc.name.startswith("ts.")):
            raise HandlerError(f"handler {source.handler!r} imports {exc.name}, which mkserve's "
                               "TorchServe handler API does not provide (it is TorchServe's "
                               "serving internals, not handler API); import what the handler "
                               "needs from ts.torch_handler, ts.utils, ts.handler_utils, "
                               "ts.metrics or ts.context") from exc
        if exc.name != name and not name.startswith(f"{exc.name}."):
            raise HandlerError(f"handler {source.handler!r} imports a module that is not "
                               "installed: "
                               f"{exc.name}; add it to the archive's requirements file or to "
                               "`mkserve build --requirements`") from exc
    try:
        return importlib.import_module(f"{BUILTIN_PACKAGE}.{name}"), function
    except ModuleNotFoundError as exc:
        if exc.name != f"{BUILTIN_PACKAGE}.{name}":
            raise HandlerError(f"built-in handler {name!r} needs {exc.name}, which is not "
                               "installed") from exc
    raise HandlerError(f"handler {source.handler!r} not found: it is not a file in the model "
                       "folder, an importable module, nor a built-in handler "
                       f"({', '.join(BUILTINS)})")


def resolve_entry(module: types.ModuleType, function: str | None) -> tuple[str, Any]:
    """('function', fn) or ('class', cls), following TorchServe's rules."""
    if function:
        fn = getattr(module, function, None)
        if not callable(fn):
            raise HandlerError(f"handler module {module.__name__} has no function {function!r}")
        return "function", fn
    classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if obj.__module__ == module.__name__]
    if len(classes) == 1:
        return "class", classes[0]
    handle = getattr(module, "handle", None)
    if callable(handle) and not classes:
        return "function", handle
    if not classes:
        raise HandlerError(f"handler module {module.__name__} defines no class and no "
                           "handle(data, context) function")
    names = ", ".join(c.__name__ for c in classes)
    raise HandlerError(f"handler module {module.__name__} defines several classes ({names}); "
                       "keep one handler class per module or name a function as module:function")


ENVELOPES = {
    "body": "mkserve.runtime.ts.torch_handler.request_envelope.body.BodyEnvelope",
    "json": "mkserve.runtime.ts.torch_handler.request_envelope.json.JSONEnvelope",
    "kserve": "mkserve.runtime.ts.torch_handler.request_envelope.kserve.KServeEnvelope",
    "kservev2": "mkserve.runtime.ts.torch_handler.request_envelope.kservev2.KServev2Envelope",
}


def load_handler(source: ModelSource, context: Any, envelope: str = "") -> Handle:
    """Import and initialise the handler; returns handle(data, context), wrapped in
    TorchServe's request envelope when one is named (MKSERVE_SERVICE_ENVELOPE)."""
    handle = _load_handle(source, context)
    if not envelope:
        return handle
    module_name, _, class_name = ENVELOPES[envelope].rpartition(".")
    wrapper = getattr(importlib.import_module(module_name), class_name)(handle)
    return wrapper.handle


def _load_handle(source: ModelSource, context: Any) -> Handle:
    module, function = import_handler_module(source)
    kind, entry = resolve_entry(module, function)
    if kind == "function":
        entry(None, context)  # TorchServe calls function handlers once with no data at load
        return entry
    instance = entry()
    initialize = getattr(instance, "initialize", None)
    if callable(initialize):
        initialize(context)
    handle = getattr(instance, "handle", None)
    if not callable(handle):
        raise HandlerError(f"handler class {entry.__name__} has no handle(data, context) method")
    return handle

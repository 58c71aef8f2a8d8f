"""`ts.handler_utils.utils`: import a class by name; send an intermediate (streamed) answer."""
from __future__ import annotations

import importlib
from typing import Any

from mkserve.runtime.ts.protocol.otf_message_handler import send_intermediate_predict_response

__all__ = ["import_class", "send_intermediate_predict_response"]


def import_class(class_name: str, module_prefix: str | None = None) -> type[Any]:
    """`"package.module.Class"` (or `"module.Class"` under `module_prefix`) as the class.

    Raises ImportError naming what was looked for when the module or the class
    does not exist.
    """
    module_name, _, name = class_name.rpartition(".")
    if module_prefix:
        module_name = f"{module_prefix}.{module_name}" if module_name else module_prefix
    if not module_name:
        raise ImportError(f"{class_name!r}: expected module.Class, or a module_prefix")
    module = importlib.import_module(module_name)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        # ImportError, as for a missing module: the name is not there to import.
        raise ImportError(f"{module_name} has no class {name!r}")  # noqa: TRY004
    return cls

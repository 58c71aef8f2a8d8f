"""Record TorchServe 0.12's handler-facing names into torchserve-0.12-api.json.

Run once with the real wheel installed (pip install torchserve==0.12.0):
    python tests/recorded/record_ts_api.py
It walks the wheel's own file list (importlib.metadata), reads each module's
top-level public names with `ast` (nothing is imported or copied), and leaves
out TorchServe's serving internals, which a handler never imports: the
frontend launcher, the worker process and its wire protocol (all but
send_intermediate_predict_response), the venv installer, TorchServe's own
unit tests and the DALI pipeline-building script, and module loggers.
"""
from __future__ import annotations

import ast
import json
import sys
from importlib import metadata
from pathlib import Path

OUT = Path(__file__).with_name("torchserve-0.12-api.json")
INTERNAL_MODULES = ("ts.arg_parser", "ts.async_service", "ts.launcher", "ts.llm_launcher",
                    "ts.model_loader", "ts.model_server", "ts.model_service_worker",
                    "ts.service", "ts.model_service", "ts.utils.setup_model_venv",
                    "ts.metrics.metric_collector", "ts.torch_handler.unit_tests",
                    "ts.handler_utils.preprocess.built-in")
INTERNAL_NAMES = {
    "ts.protocol.otf_message_handler": {"bool_size", "int_size", "END_OF_LIST", "LOAD_MSG",
                                        "PREDICT_MSG", "RESPONSE", "retrieve_msg",
                                        "encode_response_headers", "create_predict_response",
                                        "create_load_model_response"},
    "ts.handler_utils.micro_batching": {"execute_call", "WorkerThread"},
    "ts.version": {"version_path"},
}


def public_names(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return sorted({n for n in names if not n.startswith("_") and n != "logger"}
                  | ({"__version__"} if path.name in ("__init__.py", "version.py")
                     and "__version__" in path.read_text() else set()))


def main() -> int:
    dist = metadata.distribution("torchserve")
    api: dict[str, list[str]] = {}
    for file in dist.files or []:
        parts = file.parts
        if parts[0] != "ts" or file.suffix != ".py":
            continue
        module = ".".join(parts)[:-3].removesuffix(".__init__")
        if any(module == m or module.startswith(m + ".") for m in INTERNAL_MODULES):
            continue
        names = [n for n in public_names(Path(str(file.locate())))
                 if n not in INTERNAL_NAMES.get(module, set())]
        api[module] = names
    OUT.write_text(json.dumps({"torchserve": dist.version, "modules": dict(sorted(api.items()))},
                              indent=1) + "\n")
    print(f"{len(api)} modules, {sum(map(len, api.values()))} names -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ts.handler_utils.distributed.pt_pippy`: importable; PiPPy pipelines are not offered."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import stub

pippy_installed = False
initialize_rpc_workers = stub("distributed", "ts.handler_utils.distributed.pt_pippy."
                                             "initialize_rpc_workers")
get_pipeline_driver = stub("distributed", "ts.handler_utils.distributed.pt_pippy."
                                          "get_pipeline_driver")

"""`ts.handler_utils.distributed.deepspeed`: importable; DeepSpeed serving is not offered."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import stub

create_checkpoints_json = stub("distributed", "ts.handler_utils.distributed.deepspeed."
                                              "create_checkpoints_json")
get_ds_engine = stub("distributed", "ts.handler_utils.distributed.deepspeed.get_ds_engine")

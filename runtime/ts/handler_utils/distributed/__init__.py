"""`ts.handler_utils.distributed`: model-parallel helpers; see mkserve.runtime.ts.unsupported."""

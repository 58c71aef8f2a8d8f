"""`ts.torch_handler.distributed`: DeepSpeed and PiPPy base handlers, which cannot run in a
one-process worker (see mkserve.runtime.ts.unsupported)."""

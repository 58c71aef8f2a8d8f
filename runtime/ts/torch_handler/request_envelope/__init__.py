"""`ts.torch_handler.request_envelope`: wrappers that unpack a request format (JSON
instances, KServe V1 and V2) before the handler and pack its answers after."""

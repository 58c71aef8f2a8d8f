"""gRPC: TorchServe's InferenceAPIsService and KServe's GRPCInferenceService (Open
Inference Protocol), with grpc.health.v1, on MKSERVE_GRPC_PORT (off by default).

Each worker runs its own grpcio server on the port (SO_REUSEPORT spreads the
connections), started after fork and only when the setting is on; every call goes
through the worker's ModelService as an HTTP request does. See server.py.
"""

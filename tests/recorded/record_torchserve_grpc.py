"""Record TorchServe 0.12's gRPC answers to tests/grpc_cases.py's calls.

    pip install torchserve==0.12.0 torch-model-archiver pyyaml   # and Java 17
    python3 tests/recorded/record_torchserve_grpc.py [CASE ...]

The client stubs are generated from the inference.proto inside TorchServe's own jar,
so the recorded answers are what a TorchServe user's generated client receives.
The tests (tests/e2e/test_grpc.py) send the same calls to mkserve and compare.
"""
from __future__ import annotations

import importlib
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "e2e")]

from grpc_cases import GRPC_CASES, build_archive, send  # noqa: E402
from mkserve.bench.servers import TorchServe  # noqa: E402

OUT = HERE / "torchserve-grpc-answers.json"


def torchserve_stubs(dest: Path) -> tuple[object, object]:
    """pb2 and pb2_grpc generated from the jar's inference.proto (its google/rpc import
    comes from the jar too)."""
    import grpc_tools
    import ts
    from grpc_tools import protoc

    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    with zipfile.ZipFile(jar) as archive:
        for member in ("inference.proto", "google/rpc/status.proto"):
            target = dest / "protos" / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out = dest / "stubs"
    out.mkdir()
    for proto in ("inference.proto", "google/rpc/status.proto"):
        code = protoc.main(["protoc", f"-I{dest / 'protos'}", f"-I{well_known}",
                            f"--python_out={out}", f"--grpc_python_out={out}", proto])
        assert code == 0, proto
    sys.path.insert(0, str(out))
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


def main(names: list[str]) -> int:
    answers = json.loads(OUT.read_text()) if OUT.exists() else {}
    stubs_dir = Path(tempfile.mkdtemp(prefix="ts-grpc-stubs-"))
    pb, pb_grpc = torchserve_stubs(stubs_dir)
    for case in GRPC_CASES:
        if names and case.name not in names:
            continue
        work = Path(tempfile.mkdtemp(prefix=f"record-grpc-{case.name}-"))
        archive, model = build_archive(case, work)
        body = next(v for call in case.calls for v in call.input.values())
        server = TorchServe(work, model, body, archive, 1, 0)  # ready once REST answers it
        server.start()
        try:
            answers[case.name] = [send(pb, pb_grpc, server.grpc_ports[0], model, call)
                                  for call in case.calls]
        finally:
            server.stop()
        print(case.name, json.dumps(answers[case.name])[:400])
        shutil.rmtree(work, ignore_errors=True)
    OUT.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(stubs_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Record TorchServe 0.12's answers to tests/ts_handlers.py's cases.

    python tests/recorded/record_torchserve.py [CASE ...]

Needs torchserve==0.12.0 and Java 17 (the tests that read the answers do not).
Each case's handler is archived by the real torch-model-archiver and served
by a real TorchServe; each call's status, content type, body and the body's
pieces as they arrived (HTTP chunks) go into torchserve-answers.json.
"""
from __future__ import annotations

import http.client
import json
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from mkserve.bench.servers import TorchServe  # noqa: E402
from ts_handlers import CASES, Call, archive_case  # noqa: E402

OUT = Path(__file__).with_name("torchserve-answers.json")


def send(port: int, name: str, call: Call) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(call.method, call.path.format(name=name), body=call.body or None,
                 headers=call.headers)
    response = conn.getresponse()
    pieces = []
    while True:
        piece = response.read1(65536) if response.chunked else response.read()
        if not piece:
            break
        pieces.append(piece.decode(errors="replace"))
        if not response.chunked:
            break
    conn.close()
    return {"status": response.status, "content_type": response.getheader("Content-Type"),
            "chunked": bool(response.chunked), "body": "".join(pieces), "pieces": pieces}


def main(names: list[str]) -> int:
    answers = json.loads(OUT.read_text()) if OUT.exists() else {}
    for case in CASES:
        if names and case.name not in names:
            continue
        work = Path(tempfile.mkdtemp(prefix=f"record-{case.name}-"))
        archive = archive_case(case, work)
        first = case.calls[0]
        server = TorchServe(work, case.name, first.body, archive, 1, 0, case.properties)
        server.start()
        try:
            answers[case.name] = [send(server.management_port if call.management else
                                       server.metrics_port if call.metrics else server.port,
                                       case.name, call)
                                  for call in case.calls]
        finally:
            server.stop()
        print(case.name, json.dumps(answers[case.name])[:300])
    OUT.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""mkserve against TorchServe 0.12, side by side, in one run: one table of ratios.

    python benchmarks/bench.py                       # both examples, 1/16/64 connections
    python benchmarks/bench.py classifier --duration 5 --connections 1,64
    python benchmarks/bench.py path/to/model.mar --body request.json
    python benchmarks/bench.py classifier --only mkserve --precision bf16
    python benchmarks/bench.py --url http://127.0.0.1:8080/predictions/classifier --body b.json

The benchmark is the installed package mkserve.bench and this script is
`mkserve bench` under another name (the same options, the same table); in a
checkout the example names (classifier, transformer) are archived from
examples/ with the real torch-model-archiver. See benchmarks/README.md.
"""
from __future__ import annotations

import sys

from mkserve.builder.cli import main

if __name__ == "__main__":
    sys.argv = ["mkserve", "bench", *sys.argv[1:]]
    main()

"""A benchmark run (the JSON `mkserve bench --json` writes) as a chart and a short table.

The chart puts mkserve and TorchServe side by side for each model: requests per
second and p50/p99 latency against the number of connections. The table keeps the
rows a reader compares; benchmarks/RESULTS.md has every figure.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mkserve.builder.errors import UsageError

# What the chart and the table compare, in this order: (key in the report, legend).
SERVERS = (("mkserve", "mkserve"), ("torchserve", "TorchServe 0.12"))
COLOURS = {"mkserve": "#d1495b", "torchserve": "#30638e"}


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A report written by `mkserve bench --json FILE`, checked enough to draw."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the benchmark results ({exc.strerror})") from exc
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise UsageError(f"{path}: not a report of `mkserve bench --json FILE` (no results)")
    return report


def median_load(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of one connection count, by requests/s (what the bench table shows)."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def series(report: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{model label: {server: [median run per connection count, ascending]}} for SERVERS."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in report["results"]:
        servers = result.get("servers") or {}
        lines = {}
        for key, _ in SERVERS:
            loads = (servers.get(key) or {}).get("loads") or {}
            lines[key] = [median_load(loads[c]) for c in sorted(loads, key=int) if loads[c]]
        if any(lines.values()):
            found[str(result.get("label") or result.get("model"))] = lines
    if not found:
        raise UsageError("the benchmark results hold no mkserve or TorchServe runs to draw")
    return found


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}×" if ours and theirs else ""


def summary_table(report: dict[str, Any]) -> str:
    """Markdown: per model, lone-client and 64-connection throughput, latency, start, memory."""
    rows = [["model", "measure", "TorchServe", "mkserve", "mkserve/TS"],
            ["---"] * 5]
    for result in report["results"]:
        servers = result.get("servers") or {}
        ts, mk = servers.get("torchserve") or {}, servers.get("mkserve") or {}
        label = str(result.get("label") or result.get("model"))
        counts = sorted({int(c) for s in (ts, mk) for c in (s.get("loads") or {})})
        for conns in (counts[0], counts[-1]) if counts else ():
            t = median_load(ts["loads"][str(conns)]) if str(conns) in ts.get("loads", {}) else {}
            m = median_load(mk["loads"][str(conns)]) if str(conns) in mk.get("loads", {}) else {}
            rows.append([label, f"c={conns} req/s", _number(t.get("rps")),
                         _number(m.get("rps")), _ratio(m.get("rps"), t.get("rps"))])
            rows.append([label, f"c={conns} p50 / p99 ms",
                         f"{_number(t.get('p50_ms'), 1)} / {_number(t.get('p99_ms'), 1)}",
                         f"{_number(m.get('p50_ms'), 1)} / {_number(m.get('p99_ms'), 1)}",
                         (f"{_ratio(m.get('p50_ms'), t.get('p50_ms'))} / "
                          f"{_ratio(m.get('p99_ms'), t.get('p99_ms'))}")])
        rows.append([label, "cold start to first 200 (s)", _number(ts.get("cold_start_s"), 2),
                     _number(mk.get("cold_start_s"), 2),
                     _ratio(mk.get("cold_start_s"), ts.get("cold_start_s"))])
        rows.append([label, "memory, PSS (MB)", _number(ts.get("pss_mb")),
                     _number(mk.get("pss_mb")), _ratio(mk.get("pss_mb"), ts.get("pss_mb"))])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw the chart into `path` (PNG, or any format matplotlib knows by the extension)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'mkserve[plot]'") from exc
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib import pyplot as plt

    models = series(report)
    figure, axes = plt.subplots(len(models), 2, figsize=(10, 3.4 * len(models)),
                                squeeze=False)
    for row, (label, lines) in zip(axes, models.items(), strict=False):
        throughput, latency = row
        for key, legend in SERVERS:
            runs = lines.get(key) or []
            if not runs:
                continue
            conns = [run["connections"] for run in runs]
            colour = COLOURS[key]
            throughput.plot(conns, [run["rps"] for run in runs], marker="o", color=colour,
                            label=legend)
            latency.plot(conns, [run["p50_ms"] for run in runs], marker="o", color=colour,
                         label=f"{legend} p50")
            latency.plot(conns, [run["p99_ms"] for run in runs], marker="^", color=colour,
                         linestyle="--", label=f"{legend} p99")
        throughput.set_title(f"{label}: throughput (higher is better)")
        throughput.set_ylabel("requests/s")
        latency.set_title(f"{label}: latency (lower is better)")
        latency.set_ylabel("ms")
        counts = sorted({run["connections"] for runs in lines.values() for run in runs})
        for axis in row:
            axis.set_xscale("log", base=2)
            axis.set_xticks(counts, [str(c) for c in counts])
            axis.minorticks_off()
            axis.set_yscale("log")
            axis.set_xlabel("concurrent connections")
            axis.grid(True, which="major", alpha=0.3)
            axis.legend(fontsize=8)
    header = str(report.get("header") or "")
    if header:
        figure.suptitle(header, fontsize=8)
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out

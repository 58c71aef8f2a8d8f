"""Draw docs/img/flow.svg, the README's build -> image -> deploy diagram, from the code.

    python docs/flow.py            # rewrite docs/img/flow.svg
    python docs/flow.py --check    # exit 1 if the committed file is stale

The platforms and the files `mkserve render` writes come from builder/deploy_render.py,
so the picture changes when they do (tests/test_readme.py runs --check).
"""
from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from mkserve.builder.deploy_render import FILES

OUT = Path(__file__).resolve().parent / "img" / "flow.svg"
PLATFORMS = {"kubernetes": "Kubernetes", "knative": "Knative", "cloudrun": "Cloud Run",
             "kserve": "KServe", "compose": "Compose + Prometheus", "github": "GitHub Actions"}
FONT = "font-family='Helvetica, Arial, sans-serif'"
LINE = 17


def _box(x: int, y: int, w: int, title: str, lines: list[str], fill: str) -> tuple[str, int]:
    """A titled box; returns its SVG and its height."""
    h = 34 + LINE * len(lines) + 6
    parts = [(f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='{fill}' "
              "stroke='#444' stroke-width='1.2'/>"),
             (f"<text x='{x + 12}' y='{y + 22}' {FONT} font-size='14' font-weight='bold'>"
              f"{escape(title)}</text>")]
    for i, line in enumerate(lines):
        mono = line.startswith("`") and line.endswith("`")
        text = line.strip("`") if mono else line
        indent = 14 * (len(text) - len(text.lstrip()))  # leading spaces: an indent
        family = "font-family='Menlo, Consolas, monospace'" if mono else FONT
        parts.append(f"<text x='{x + 12 + indent}' y='{y + 42 + LINE * i}' {family} "
                     f"font-size='12'>{escape(text.strip())}</text>")
    return "\n".join(parts), h


def _arrow(x1: int, y1: int, x2: int, y2: int, label: str, dy: int = -8, dx: int = 0) -> str:
    mid_x, mid_y = (x1 + x2) // 2 + dx, (y1 + y2) // 2
    return (f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='#444' stroke-width='1.5' "
            "marker-end='url(#head)'/>\n"
            f"<text x='{mid_x}' y='{mid_y + dy}' text-anchor='middle' "
            f"font-family='Menlo, Consolas, monospace' font-size='12'>{escape(label)}</text>")


def manifests() -> list[str]:
    """One line per platform: its name and the files render writes for it."""
    by_group: dict[str, list[str]] = {}
    for path, (group, _) in FILES.items():
        by_group.setdefault(group, []).append(path)
    lines = []
    for group, paths in by_group.items():
        lines.append(f"{PLATFORMS.get(group, group)}:")
        lines.extend(f"` {path}`" for path in paths)
    return lines


def svg() -> str:
    source, _ = _box(20, 70, 230, "model source", [
        "TorchServe archive:", "`.mar  .tar.gz  unpacked`", "or a plain model folder",
        "(handler, weights,", "model-config.yaml)"], "#fff7e0")
    image, image_h = _box(360, 40, 250, "container image", [
        "one model, no management API", "gunicorn + flask workers", "micro-batcher",
        "`POST /predictions/<model>`", "`/readyz  /livez  /metrics`", "GPU detected at start",
        "drains on SIGTERM"], "#e6f0fa")
    local, _ = _box(360, 270, 250, "local server", [
        "the same runtime, no engine", "`http://127.0.0.1:8080`"], "#eef7ea")
    lines = manifests()
    deploy, deploy_h = _box(720, 20, 300, "manifests", lines, "#f3ecf9")
    height = max(20 + deploy_h, 270 + 80) + 20
    parts = [
        (f"<svg xmlns='http://www.w3.org/2000/svg' width='1040' height='{height}' "
         f"viewBox='0 0 1040 {height}'>"),
        ("<defs><marker id='head' markerWidth='10' markerHeight='8' refX='9' refY='4' "
         "orient='auto'><path d='M0,0 L10,4 L0,8 z' fill='#444'/></marker></defs>"),
        f"<rect width='1040' height='{height}' fill='white'/>",
        source, image, local, deploy,
        _arrow(250, 110, 358, 110, "mkserve build"),
        _arrow(250, 110, 358, 110, "-t REF [--push]", dy=20),
        _arrow(250, 150, 358, 295, "mkserve serve", dy=10, dx=-52),
        _arrow(610, 110, 718, 110, "mkserve render"),
        _arrow(610, 110, 718, 110, "IMAGE -o DIR", dy=20),
        (f"<text x='485' y='{40 + image_h + 22}' text-anchor='middle' {FONT} font-size='12'>"
         "mkserve run / predict / inspect / bench</text>"),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    text = svg()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python docs/flow.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

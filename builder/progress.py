"""Build output: live step lines from the engine's event stream, and the final summary."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Out = Callable[[str], None]

# Podman prints `STEP 3/14: COPY ...`, Docker's classic builder `Step 3/14 : COPY ...`.
# Podman prefixes the stage in multi-stage builds: `[2/2] STEP 3/14: ...`.
STEP_RE = re.compile(r"^\s*(?:\[(\d+)/(\d+)\] )?(?:STEP|Step) (\d+)/(\d+)\s?: (.*)$")
CACHE_RE = re.compile(r"^\s*-+> Using cache")
STEP_DONE_RE = re.compile(r"^\s*-+> [0-9a-f]{6,}\s*$")


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@dataclass
class BuildProgress:
    """Turns engine events into lines as they arrive; counts steps and cache hits."""

    out: Out
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    total: int = 0
    cached: int = 0
    _partial: str = ""
    _stage: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        text = event.get("stream")
        if text is None:
            if event.get("error"):
                self.out(f"  ! {str(event['error']).strip()}")
            elif event.get("status"):  # pull/push progress
                detail = event.get("progress") or event.get("id") or ""
                self.out(f"  {event['status']} {detail}".rstrip())
            return
        self._partial += str(text)
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line.rstrip("\r"))

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        step = STEP_RE.match(line)
        if step:
            stage, stages, number, total, what = step.groups()
            self.steps += 1
            if stage is None:  # Docker numbers the steps of all stages together
                self.total = int(total)
            elif stage != self._stage:  # Podman restarts the numbering in every stage
                self.total += int(total)
                self._stage = stage
            where = f"stage {stage}/{stages} " if stage else ""
            elapsed = time.monotonic() - self.started
            self.out(f"[{elapsed:6.1f}s] {where}step {number}/{total}: {what[:150]}")
            return
        if STEP_DONE_RE.match(line):
            return  # Podman's "--> 1a2b3c" after each step: the layer id, noise here
        if CACHE_RE.match(line):
            self.cached += 1
            self.out("           (cached)")
            return
        self.out(f"           {line[:200]}")

    def flush(self) -> None:
        if self._partial.strip():
            self._line(self._partial)
        self._partial = ""


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]
    size: int
    seconds: float
    layers: tuple[tuple[int, str], ...]  # (size, what made it), newest first
    steps: int
    cached: int
    pushed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _short_step(created_by: str) -> str:
    text = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", created_by.strip())
    text = re.sub(r"\b(dir|file|multi):[0-9a-f]{16,}", r"\1", text)  # content hashes
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= 90 else text[:87] + "..."


def summary(result: BuildResult) -> str:
    """The lines CI logs and people read after a build."""
    short = result.image_id.removeprefix("sha256:")[:12]
    lines = [(f"built {short} in {result.seconds:.1f}s "
              f"({result.cached} of {result.steps} steps from cache)"),
             f"  tags:  {', '.join(result.tags)}",
             f"  size:  {human(result.size)} ({result.size} bytes)",
             "  layers (newest first):"]
    for size, created_by in result.layers:
        if size > 0:
            lines.append(f"    {human(size):>9}  {_short_step(created_by)}")
    for tag in result.pushed:
        lines.append(f"  pushed: {tag}")
    return "\n".join(lines)

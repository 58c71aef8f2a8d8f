"""git, as the builder asks it things (a revision, a remote): an answer or None, never an error."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git(args: list[str], cwd: Path) -> str | None:
    """`git ARGS` in `cwd`: its stripped output, or None (not a checkout, no git, a failure)."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None

"""`mkserve serve`: run the image's runtime locally, with no container engine."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from mkserve.runtime.settings import SettingsError, to_env

from .errors import UsageError


def serve_env(source: str, overrides: Mapping[str, Any],
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the runtime starts with: flags win over the caller's environment."""
    env = dict(os.environ if base is None else base)
    try:
        env.update(to_env({"model_dir": os.path.abspath(source), **overrides}))
    except (SettingsError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return env


def exec_runtime(env: Mapping[str, str]) -> None:
    """Replace this process by the runtime, exactly as the image's ENTRYPOINT starts it."""
    argv = [sys.executable, "-m", "mkserve.runtime"]
    os.execvpe(argv[0], argv, dict(env))

"""`mkserve serve`'s environment: flags over the caller's, and the image's warning filter."""
from __future__ import annotations

import subprocess
import sys

from mkserve.builder.serve import serve_env

NUMPY_WARNING = ("import warnings; warnings.warn(\"Failed to initialize NumPy: No module named "
                 "'numpy'\", UserWarning); print('done')")


def test_flags_win_over_the_callers_environment(tmp_path) -> None:
    env = serve_env(str(tmp_path), {"port": 9001}, base={"PORT": "8080", "HOME": "/h"})
    assert env["PORT"] == "9001" and env["HOME"] == "/h"
    assert env["MKSERVE_MODEL"] == str(tmp_path)


def test_torchs_numpy_warning_is_not_printed_on_start(tmp_path) -> None:
    """torch without numpy warns at import (numpy is optional): as in the image, the line
    is filtered, and the caller's own PYTHONWARNINGS still applies after it."""
    env = serve_env(str(tmp_path), {}, base={"PATH": "/usr/bin"})
    quiet = subprocess.run([sys.executable, "-c", NUMPY_WARNING], env=env, capture_output=True,
                           text=True, check=True)
    assert quiet.stdout.strip() == "done" and quiet.stderr == ""
    loud = serve_env(str(tmp_path), {}, base={"PATH": "/usr/bin", "PYTHONWARNINGS": "error"})
    failed = subprocess.run([sys.executable, "-c", NUMPY_WARNING], env=loud,
                            capture_output=True, text=True, check=False)
    assert failed.returncode != 0 and "Failed to initialize NumPy" in failed.stderr

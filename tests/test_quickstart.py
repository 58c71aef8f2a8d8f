"""The README's first command, run as written in a fresh clone: a virtualenv, mkserve with
the CPU torch and the archiver only, the guide's archive, and a server that answers.

(The second command, `bash .ci/run`, is what CI runs.)
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}


def first_command() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", readme, re.DOTALL)[0]


def test_the_readme_first_command_serves_the_example_from_a_fresh_clone(tmp_path: Path):
    clone = tmp_path / "mkserve"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("MKSERVE_")}
    log = tmp_path / "quickstart.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", first_command()], cwd=clone, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                request = urllib.request.Request(
                    "http://127.0.0.1:8080/predictions/classifier",
                    data=json.dumps(GUIDE_INPUT).encode(),
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
                    break
            except OSError:
                time.sleep(1)
        assert answer is not None, f"no answer on :8080 (exit {proc.poll()}):\n" \
                                   f"{log.read_text()[-4000:]}"
        assert answer["class_name"] in ("cat", "dog", "bird") and len(answer["probabilities"]) == 3
        venv = clone / ".venv" / "lib"
        installed = " ".join(p.name for p in venv.glob("python3*/site-packages/*"))
        assert "torch" in installed and "mkserve" in installed.lower()
        assert "pytest" not in installed and "hypothesis" not in installed  # serving only
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

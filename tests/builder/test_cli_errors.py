"""The installed `mkserve` as a newcomer meets it: no traceback, the documented exit code,
a message naming the fix, for every mistake the first hour brings.

Exit codes (README "Command line"): 0 done, 1 failed (e.g. the server answered an error),
2 usage or configuration, 3 the model source, 4 the container engine.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mkserve.builder.sources import model_source
from mkserve.runtime import __version__

MKSERVE = shutil.which("mkserve")


def mkserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert MKSERVE, "the mkserve command is not installed (pip install -e .)"
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    full_env.pop("MKSERVE_DEBUG", None)
    return subprocess.run([MKSERVE, *args], capture_output=True, text=True, timeout=60,
                          env=full_env, check=False)


def flat(text: str) -> str:
    """Terminal output as one line: typer's error boxes wrap a message across lines."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    store = tmp_path / "model_store"
    store.mkdir()
    for name in ("a.mar", "b.mar"):
        (store / name).write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return store


NOWHERE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def cases(model_store: Path, tmp_path: Path) -> list[tuple[list[str], int, str, dict]]:
    port = free_port()
    return [
        ([], 2, "Usage: mkserve", {}),
        (["--version"], 0, f"mkserve {__version__}", {}),
        (["-h"], 0, "Usage: mkserve", {}),
        (["serve", "-h"], 0, "Usage: mkserve serve", {}),
        (["nope"], 2, "No such command 'nope'", {}),
        (["serve"], 2, "Missing argument 'SOURCE'", {}),
        (["run", "-p", "8080:8080"], 2, "Missing argument 'IMAGE'", {}),
        (["run", "-p", "abc", "some/image:1"], 2, "expected a port (8080) or HOST:CONTAINER",
         NOWHERE),
        (["serve", "nope.mar"], 3, "nope.mar: no such file or folder", {}),
        (["build", "nope.mar"], 3, "nope.mar: no such file or folder", NOWHERE),
        (["inspect", "./nope.mar"], 3, "no such file or folder", NOWHERE),
        (["render", "nope.tar.gz", "-o", str(tmp_path / "out")], 3, "no such file or folder",
         NOWHERE),
        (["serve", str(model_store)], 2, "model store with 2 archives", {}),
        (["predict", f"http://127.0.0.1:{port}", "-d", "{}"], 1,
         f"nothing is listening at http://127.0.0.1:{port}", {}),
        (["predict", f"localhost:{port}", "-d", "{}"], 1,
         f"nothing is listening at http://localhost:{port}", NOWHERE),
        (["predict", "some/image:1", "-d", "{}"], 4, "Point DOCKER_HOST at", NOWHERE),
        (["prune"], 4, "Point DOCKER_HOST at", NOWHERE),
        (["bench", str(tmp_path / "nope.json")], 2, "cannot read the benchmark results", {}),
        (["serve", "model.mar", "--port", "notaport"], 2, "Invalid value for '--port'", {}),
    ]


def test_every_first_hour_mistake_gets_one_clear_line(model_store: Path, tmp_path: Path):
    for args, code, message, env in cases(model_store, tmp_path):
        done = mkserve(*args, env=env)
        out = done.stdout + done.stderr
        assert "Traceback" not in out, (args, out)
        assert done.returncode == code, (args, done.returncode, out)
        assert message in flat(out), (args, out)


def test_a_port_in_use_is_named_with_the_flag_to_change(tmp_path: Path):
    archive = tmp_path / "m.mar"
    archive.write_bytes(b"not really an archive")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = mkserve("serve", str(archive), "--port", str(port))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port" in done.stderr
    with socket.socket() as taken:  # gRPC's port too: SO_REUSEPORT would share it silently
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            http_port = spare.getsockname()[1]
        done = mkserve("serve", str(archive), "--port", str(http_port), "--grpc-port", str(port))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "pass --grpc-port with a free one" in done.stderr


def test_a_model_store_with_one_archive_stands_for_it(tmp_path: Path):
    (tmp_path / "only.mar").write_bytes(b"x")
    notes: list[str] = []
    assert model_source(str(tmp_path), notes.append) == tmp_path / "only.mar"
    assert notes and "model store" in notes[0]


def test_help_has_no_type_placeholders():
    for command in ("build", "serve", "run", "render", "bench"):
        text = mkserve(command, "-h").stdout
        for placeholder in ("<bool>", "<list[", "<str>", "<int>", "<path>", "<float>"):
            assert placeholder not in text, (command, placeholder)


def test_an_unexpected_failure_is_one_line_unless_debugging(tmp_path: Path):
    script = ("import sys; import mkserve.builder.run as t\n"
              "def boom(data): raise RuntimeError('simulated bug')\n"
              "t.read_data = boom\n"
              "sys.argv = ['mkserve', 'predict', 'http://127.0.0.1:1', '-d', '{}']\n"
              "from mkserve.builder.cli import main; main()\n")
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=False, env={k: v for k, v in os.environ.items()
                                             if k != "MKSERVE_DEBUG"})
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "simulated bug" in plain.stderr and "MKSERVE_DEBUG=1" in plain.stderr
    debug = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=False, env={**os.environ, "MKSERVE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr

"""Render the build's text files from a BuildSpec: pure, deterministic, jinja2 StrictUndefined.

Every decision (paths, what to prune, how values are quoted) is made here in
Python; the templates only substitute.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

import jinja2
from mkserve.runtime import QUIET_WARNINGS, routes
from mkserve.runtime.settings import BY_NAME, to_env

from . import labels as L
from .spec import GPU_ENV, BuildSpec

VENV = "/opt/mkserve/venv"
LIB = "/opt/mkserve/lib"  # mkserve's runtime package, found through a .pth in the venv
MODEL_DEPS = "/opt/mkserve/model-deps"  # the model's requirements (pip --target), same .pth
MODEL_DIR = BY_NAME["model_dir"].default  # where the runtime looks by default
BUILD_DIR = "/tmp/mkserve-build"  # stage 1 only: lock and wheels, never in the final image
USER = "1000:0"  # numeric (Kubernetes runAsNonRoot can verify it), group 0 (OpenShift)
PYTHON = f"{VENV}/bin/python"
TEMPLATES = {"Dockerfile": "Dockerfile.j2", ".dockerignore": "dockerignore.j2"}

# Files in the venv that serving never touches: C++ headers, CMake files, test
# binaries and test suites (~250 MB of a torch install). torch/bin/torch_shm_manager
# stays: `import torch` checks that it exists.
PRUNE_PATHS = ("torch/include", "torch/share", "torch/test", "torch/bin/*Test",
               "torch/bin/test_*", "torch/bin/protoc*",
               "torch/lib/libjitbackend_test.so", "torch/lib/libtorchbind_test.so",
               "torch/lib/libaoti_custom_ops.so", "torch/lib/libbackend_with_compiler.so")
PRUNE_TESTS_IN = ("sympy", "networkx")

# Context folders (what write_context lays out) -> where they go in the image.
CONTEXT_WEIGHTS = "model/weights/"
CONTEXT_CODE = "model/code/"


def quote(value: Any) -> str:
    """A double-quoted Dockerfile value; `$` is escaped so nothing is expanded."""
    text = str(value)
    for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("$", "\\$"), ("\n", "\\n")):
        text = text.replace(char, escaped)
    return f'"{text}"'


def _block(pairs: Iterable[tuple[str, str]]) -> str:
    return " \\\n    ".join(f"{key}={quote(value)}" for key, value in pairs)


def _shell(commands: list[str]) -> str:
    return " \\\n && ".join(commands)


def deps_commands() -> list[str]:
    """Stage 1: venv, offline install of exactly the lock, prune, hook the runtime in."""
    prune = " ".join(PRUNE_PATHS)
    tests = " ".join(PRUNE_TESTS_IN)
    return [
        f"python3 -m venv {VENV}",
        (f"{PYTHON} -m pip install --isolated --no-index --find-links {BUILD_DIR}/wheels "
         "--no-deps --require-hashes --no-cache-dir --disable-pip-version-check "
         f"--no-warn-script-location --requirement {BUILD_DIR}/requirements.lock"),
        f"{PYTHON} -m pip check --disable-pip-version-check",
        # No installer in the image: nothing can add packages at run time.
        f"{PYTHON} -m pip uninstall --yes --quiet pip",
        f"cd \"$({PYTHON} -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')\"",
        f"rm -rf {prune}",
        (f"for d in {tests}; do [ ! -d \"$d\" ] || find \"$d\" -type d -name tests -prune "
         "-exec rm -rf {} +; done"),
        f"printf '%s\\n' {LIB} {MODEL_DEPS} > mkserve-runtime.pth",
        f"rm -rf {BUILD_DIR}",
    ]


def model_deps_commands() -> list[str]:
    """Stage 2: the model's locked packages into their own folder, if it has any.

    A throw-away venv provides pip, so the serving venv can stay without one.
    """
    pip = "/tmp/mkserve-pip/bin/python -m pip"
    return [
        f"mkdir -p {MODEL_DEPS}",
        (f"if grep -q '^[^#]' {BUILD_DIR}/model-requirements.lock; then "
         "python3 -m venv /tmp/mkserve-pip "
         f"&& {pip} install --isolated --no-index --find-links {BUILD_DIR}/model-wheels "
         "--no-deps --require-hashes --no-cache-dir --disable-pip-version-check "
         f"--no-warn-script-location --target {MODEL_DEPS} "
         f"--requirement {BUILD_DIR}/model-requirements.lock; fi"),
        f"rm -rf /tmp/mkserve-pip {BUILD_DIR}",
    ]


def static_env(spec: BuildSpec) -> str:
    """ENV that does not depend on the model: the venv, Python, HOME, the model's place."""
    pairs = [("PYTHONUNBUFFERED", "1"),
             # Read-only root filesystem, and the serving user may not write here anyway.
             ("PYTHONDONTWRITEBYTECODE", "1"),
             # UID 1000 has no passwd entry: give libraries a writable home and a login name.
             ("HOME", "/tmp"), ("LOGNAME", "mkserve"),
             ("PYTHONWARNINGS", QUIET_WARNINGS),  # torch's "Failed to initialize NumPy"
             *to_env({"model_dir": MODEL_DIR}).items()]
    if spec.gpu:
        pairs += list(GPU_ENV)
    # PATH is the one value that must expand (the base image's PATH).
    return f'PATH="{VENV}/bin:${{PATH}}" \\\n    ' + _block(pairs)


def model_copies(spec: BuildSpec) -> list[tuple[str, str]]:
    copies = []
    if spec.weight_files:
        copies.append((CONTEXT_WEIGHTS, MODEL_DIR + "/"))
    if len(spec.weight_files) < len(spec.model_files):
        copies.append((CONTEXT_CODE, MODEL_DIR + "/"))
    return copies


def healthcheck(spec: BuildSpec) -> tuple[str, str]:
    """Options and exec-form command: /readyz on the HTTP port ($PORT, or
    $MKSERVE_HTTP_PORT when gRPC is first), with Python (the image has no curl)."""
    probe = ("import os, urllib.request; e = os.environ; urllib.request.urlopen("
             f"'http://127.0.0.1:%s{routes.READINESS}' % (e.get('MKSERVE_HTTP_PORT', '8081') "
             "if e.get('MKSERVE_PROTOCOL') == 'grpc' else e.get('PORT', '8080')), timeout=4)")
    # The start period covers the model load, so a slow load is not "unhealthy".
    start_period = max(5, round(spec.startup_timeout_s))
    options = (f"--interval=15s --timeout=5s --start-period={start_period}s"
               " --retries=3")
    return options, json.dumps([PYTHON, "-c", probe])


def context(spec: BuildSpec) -> dict[str, Any]:
    """The template variables, all formatted here."""
    hc_options, hc_cmd = healthcheck(spec)
    return {
        "mkserve_version": spec.mkserve_version,
        "model_name": spec.model_name,
        "model_version": spec.model_version,
        "base_image": spec.base_image,
        "build_dir": BUILD_DIR,
        "deps_run": _shell(deps_commands()),
        "model_deps_run": _shell(model_deps_commands()),
        "model_deps": MODEL_DEPS,
        "static_env": static_env(spec),
        "venv": VENV,
        "lib": LIB,
        "model_dir": MODEL_DIR,
        "model_copies": model_copies(spec),
        "settings_env": _block(spec.env),
        "user": USER,
        "check_run": (json.dumps([PYTHON, "-m", "mkserve.runtime.check", MODEL_DIR])
                      if spec.check else ""),
        "port": spec.port,
        "healthcheck_options": hc_options,
        "healthcheck_cmd": hc_cmd,
        "labels": _block(spec.labels),
        "created_label": L.OCI_CREATED,
        "stage_label": L.STAGE,
        "entrypoint": json.dumps([PYTHON, "-m", "mkserve.runtime"]),
    }


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("mkserve.templates").joinpath(name).read_text("utf-8"))
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)


def render(spec: BuildSpec) -> dict[str, str]:
    """{path in the build context: text} for every templated file."""
    env = _environment()
    variables = context(spec)
    return {path: env.get_template(name).render(**variables)
            for path, name in TEMPLATES.items()}

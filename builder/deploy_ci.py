"""The CI publish pipeline for a user's repository: documented commands and workflow inputs."""
from __future__ import annotations

import json
import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mkserve.runtime import __version__

from .deploy import DeploySpec
from .deploy_derive import image_repository, registry_host
from .errors import UsageError
from .vcs import git

# The exact commands docs/deploying.md documents and the generated workflow runs; a test
# holds the two together. Shell variables are set by earlier workflow steps.
# CPU images take torch from the PyTorch CPU index (PyPI has only the CUDA builds, ~15x
# larger); GPU images from PyPI.
BUILD_COMMAND = ('mkserve build "$MODEL_SOURCE" -t "$IMAGE:$TAG" --push '
                 '--torch-index-url "$TORCH_CPU_INDEX"')
GPU_BUILD_COMMAND = 'mkserve build "$MODEL_SOURCE" -t "$IMAGE:$TAG" --push --gpu'
CONTEXT_COMMAND = ('mkserve build "$MODEL_SOURCE" --context-only ctx '
                   '--torch-index-url "$TORCH_CPU_INDEX"')
GPU_CONTEXT_COMMAND = 'mkserve build "$MODEL_SOURCE" --context-only ctx --gpu'
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
RENDER_COMMAND = 'mkserve render "$MODEL_SOURCE" --image "$IMAGE:$TAG" --out manifests'
# Release tags v1.2.0 publish 1.2.0; any other ref publishes sha-<7 hex> (never "latest",
# so a manifest always names one immutable build).
TAG_SCRIPT = ('if [ "$GITHUB_REF_TYPE" = tag ]; then TAG="${GITHUB_REF_NAME#v}"; '
              'else TAG="sha-${GITHUB_SHA::7}"; fi\necho "TAG=$TAG" >> "$GITHUB_ENV"')
PYTHON_VERSION = "3.11"
# Action majors (checked against each action's README at the time of writing).
ACTIONS = {
    "checkout": "actions/checkout@v4",
    "setup_python": "actions/setup-python@v5",
    "upload_artifact": "actions/upload-artifact@v4",
    "docker_login": "docker/login-action@v3",
    "setup_buildx": "docker/setup-buildx-action@v3",
    "build_push": "docker/build-push-action@v6",
}


def requirement_from(value: str) -> str:
    """--mkserve-from: a pip requirement for mkserve from a git URL, a wheel URL or path, or
    a requirement as pip writes it (mkserve==0.1.0, mkserve @ URL)."""
    text = value.strip()
    if re.match(r"^(git\+|https?://|file://)", text):
        return f"mkserve @ {text}"
    if text.endswith(".whl") or re.match(r"^mkserve\b", text, re.IGNORECASE):
        return text
    raise UsageError(f"--mkserve-from {value!r}: expected a git URL "
                     "(git+https://github.com/OWNER/mkserve@v0.1.0), the URL or path of a "
                     "mkserve wheel, or a requirement such as mkserve==0.1.0")


def installed_requirement() -> tuple[str, str | None]:
    """How a CI runner can install the mkserve running here: (requirement, warning or None).

    pip records where a package came from (direct_url.json, PEP 610): a git URL is
    reused at its commit; a checkout is reused through its `origin` remote at HEAD (its
    tag when HEAD has one). A package from an index is named by version. Anything else
    (a local wheel, a clone of a clone) cannot be reached from a runner: the warning says so.
    """
    pinned = f"mkserve=={__version__}"
    try:
        raw = metadata.distribution("mkserve").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        raw = None
    if not raw:
        return pinned, None
    try:
        info = json.loads(raw)
    except ValueError:
        info = {}
    url = str(info.get("url", ""))
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id") and not url.startswith("file:"):
        return f"mkserve @ {vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}", None
    if url.startswith(("https://", "http://")):
        return f"mkserve @ {url}", None
    if url.startswith("file:") and "dir_info" in info:
        remote = _git_remote_requirement(Path(unquote(urlparse(url).path)))
        if remote:
            return remote, None
    where = unquote(urlparse(url).path) if url.startswith("file:") else url or "here"
    return pinned, (f"the workflow installs {pinned}, but this mkserve was installed from "
                    f"{where}, which a CI runner cannot reach and no package index serves: "
                    "pass --mkserve-from with a git URL "
                    f"(git+https://github.com/OWNER/mkserve@v{__version__}) or the URL of a "
                    "released wheel")


def _git_remote_requirement(checkout: Path) -> str | None:
    """`mkserve @ git+URL@REF` for a checkout whose origin a runner can reach (https/ssh)."""
    remote = git(["remote", "get-url", "origin"], checkout)
    if not remote:
        return None
    scp = re.match(r"^[\w.-]+@([\w.-]+):(.+)$", remote)  # git@github.com:owner/repo.git
    if scp:
        remote = f"https://{scp.group(1)}/{scp.group(2)}"
    if not remote.startswith(("https://", "ssh://")):
        return None  # a local path: a clone of a clone
    ref = git(["describe", "--tags", "--exact-match", "HEAD"], checkout) \
        or git(["rev-parse", "HEAD"], checkout)
    return f"mkserve @ git+{remote}@{ref}" if ref else None


def install_script(spec: DeploySpec) -> str:
    """The "Install mkserve" step: CPU torch at the image's version, then mkserve.

    The runner's torch only runs the builder; `mkserve build` copies its version into the
    image (+cpu for CPU images, PyPI's CUDA build for --gpu ones), so it is pinned.
    """
    torch = f"torch=={spec.torch_version}+cpu" if spec.torch_version else "torch"
    requirement = spec.mkserve_requirement or f"mkserve=={__version__}"
    return (f'pip install {shlex.quote(torch)} --extra-index-url "$TORCH_CPU_INDEX"\n'
            f"pip install {shlex.quote(requirement)}")


def workflow_context(spec: DeploySpec) -> dict[str, Any]:
    """What the workflow template substitutes: registry login, image repository, source path."""
    registry = registry_host(spec.image)
    github_registry = registry == "ghcr.io"
    return {
        "image_repository": image_repository(spec.image),
        "registry": registry,
        # ghcr.io accepts the job's own token; other registries need repository secrets.
        "registry_username": "${{ github.actor }}" if github_registry
        else "${{ secrets.REGISTRY_USERNAME }}",
        "registry_password": "${{ secrets.GITHUB_TOKEN }}" if github_registry
        else "${{ secrets.REGISTRY_PASSWORD }}",
        "model_source": spec.source,
        "python_version": PYTHON_VERSION,
        "install_script": install_script(spec),
        "torch_cpu_index": TORCH_CPU_INDEX,
        "build_command": GPU_BUILD_COMMAND if spec.gpu else BUILD_COMMAND,
        "context_command": GPU_CONTEXT_COMMAND if spec.gpu else CONTEXT_COMMAND,
        "render_command": RENDER_COMMAND,
        "tag_script": TAG_SCRIPT,
        "actions": ACTIONS,
    }

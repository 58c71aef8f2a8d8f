"""The CI publish pipeline for a user's repository: documented commands and workflow inputs."""
from __future__ import annotations

from typing import Any

from mkserve.runtime import __version__

from .deploy import DeploySpec
from .deploy_derive import image_repository, registry_host

# The exact commands docs/deploying.md documents and the generated workflow runs; a test
# holds the two together. Shell variables are set by earlier workflow steps.
BUILD_COMMAND = 'mkserve build "$MODEL_SOURCE" -t "$IMAGE:$TAG" --push'
CONTEXT_COMMAND = 'mkserve build "$MODEL_SOURCE" --context-only ctx'
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


def build_command() -> str:
    """The build-and-push command line the README documents (see BUILD_COMMAND)."""
    return BUILD_COMMAND


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
        "mkserve_requirement": f"mkserve=={__version__}",
        "build_command": BUILD_COMMAND,
        "context_command": CONTEXT_COMMAND,
        "render_command": RENDER_COMMAND,
        "tag_script": TAG_SCRIPT,
        "actions": ACTIONS,
    }

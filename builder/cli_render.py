"""`mkserve render`: deployment manifests for an image or a model source (a thin typer command)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import EngineError, UsageError
from .sources import looks_like_a_path, model_source


def image_labels(ref: str) -> Mapping[str, str]:
    """The labels of a local image, through the container engine (Docker SDK)."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env()
        try:
            image = client.images.get(ref)
        finally:
            client.close()
    except ImageNotFound as exc:
        raise UsageError(f"{ref}: no such image in the local engine and no such file or "
                         "folder; pull or build it first, or pass the model SOURCE with "
                         "--image REF") from exc
    except DockerException as exc:
        raise EngineError(f"cannot read the labels of {ref}: the container engine is not "
                          f"reachable ({exc}); start it or set DOCKER_HOST, or render from "
                          "the model SOURCE with --image REF") from exc
    return dict(image.labels or {})


def render_command(
    target: Annotated[str, typer.Argument(
        metavar="SOURCE|IMAGE", help="A model source (.mar, .tar.gz, folder) or a built image.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the manifests into.")],
    image: Annotated[str | None, typer.Option(
        help="Image reference the manifests run (default: IMAGE; with a SOURCE, the tag "
             "mkserve build gives it, NAME:VERSION).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    replicas: Annotated[int | None, typer.Option(help="Deployment replicas.")] = None,
    cpu: Annotated[str | None, typer.Option(
        help="CPU request and limit (e.g. 2, 500m).")] = None,
    memory: Annotated[str | None, typer.Option(
        help="Memory request and limit (e.g. 4Gi).")] = None,
    min_scale: Annotated[int | None, typer.Option(
        help="Fewest replicas (0 = scale to zero).")] = None,
    max_scale: Annotated[int | None, typer.Option(help="Most replicas.")] = None,
    gpu: Annotated[bool | None, typer.Option(
        "--gpu/--no-gpu", help="With a SOURCE: the image is a GPU build (mkserve build --gpu).",
        show_default=False)] = None,
    gpu_type: Annotated[str | None, typer.Option(
        help="Cloud Run GPU (e.g. nvidia-l4).")] = None,
    previous_revision: Annotated[str | None, typer.Option(
        help="Knative revision serving now; adds knative/canary.yaml splitting traffic "
             "between it and this image.")] = None,
    canary_percent: Annotated[int | None, typer.Option(
        help="Share of traffic for the new revision in knative/canary.yaml.")] = None,
    values: Annotated[Path | None, typer.Option(
        "--values", "-f", help="YAML file of deploy settings (flags win).")] = None,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated: kubernetes, knative, cloudrun, kserve, compose, github.")] = None,
    mkserve_from: Annotated[str | None, typer.Option(
        metavar="URL|REQUIREMENT",
        help="Where the CI workflow installs mkserve from: a git URL "
             "(git+https://github.com/OWNER/mkserve@v0.1.0), a wheel URL or path, or a "
             "requirement (default: where this mkserve was installed from).")] = None,
) -> None:
    """Write Kubernetes, Knative, Cloud Run, KServe, compose and CI files for SOURCE or IMAGE."""
    from .deploy import from_labels, from_source, load_values
    from .deploy_render import parse_only, render_files, warnings, write_files

    groups = parse_only(only)
    overrides: dict[str, Any] = load_values(values) if values is not None else {}
    flags = {"namespace": namespace, "replicas": replicas, "cpu": cpu, "memory": memory,
             "min_scale": min_scale, "max_scale": max_scale, "gpu": gpu, "gpu_type": gpu_type,
             "previous_revision": previous_revision, "canary_percent": canary_percent}
    for key, value in flags.items():
        if value is not None:
            overrides[key] = value
            if key in ("cpu", "memory"):  # the flag beats request/limit from the file
                overrides.pop(f"{key}_request", None)
                overrides.pop(f"{key}_limit", None)
    if Path(target).exists() or looks_like_a_path(target):
        target = str(model_source(target, lambda line: typer.echo(line, err=True)))
        spec = from_source(target, image or "", overrides)
        if not image:
            from .spec import default_tag  # what `mkserve build SOURCE` tags by default

            spec = spec.replace(image=default_tag(spec.model_name, spec.model_version))
            typer.secho(f"note: no --image given; the manifests run {spec.image}", err=True)
    else:
        spec = from_labels(image or target, image_labels(target), overrides)
    notes: list[str] = []
    if "github" in groups:
        from .deploy_ci import installed_requirement, requirement_from

        if mkserve_from is not None:
            spec = spec.replace(mkserve_requirement=requirement_from(mkserve_from))
        elif not spec.mkserve_requirement:
            requirement, problem = installed_requirement()
            spec = spec.replace(mkserve_requirement=requirement)
            notes += [problem] if problem else []
    files = render_files(spec, groups)
    for warning in [*warnings(spec, groups), *notes]:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    for path in write_files(files, out):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add `render` to the mkserve CLI."""
    app.command("render")(render_command)

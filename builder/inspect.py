"""`mkserve inspect`: what an image (from its labels) or a model source serves, not running it."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkserve.runtime import routes
from mkserve.runtime.settings import SETTINGS, SettingsError, resolve

from . import labels as L
from .build import open_model
from .engine import Engine
from .errors import UsageError
from .progress import human

SETTING_ENVS = {s.env for s in SETTINGS}


def describe_image(engine: Engine, image: str) -> dict[str, Any]:
    info = engine.inspect(image)
    if info is None:
        raise UsageError(f"{image}: neither a model file/folder here nor an image the engine has")
    labels = info.labels
    mkserve = {k.removeprefix(L.PREFIX): v for k, v in sorted(labels.items())
               if k.startswith(L.PREFIX)}
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in sorted(labels.items())
           if k.startswith("org.opencontainers.image.")}
    return {
        "kind": "image",
        "image": image,
        "id": info.id,
        "tags": list(info.tags),
        "size": info.size,
        "built_by_mkserve": L.MODEL_NAME in labels,
        "model": {"name": labels.get(L.MODEL_NAME), "version": labels.get(L.MODEL_VERSION),
                  "handler": labels.get(L.HANDLER), "source_kind": labels.get(L.SOURCE_KIND),
                  "archive_sha256": labels.get(L.ARCHIVE_SHA256)},
        "labels": {"mkserve": mkserve, "oci": oci},
        "baked_settings": {k: v for k, v in sorted(info.env.items()) if k in SETTING_ENVS
                           or k == "PORT"},
        "entrypoint": list(info.entrypoint),
        "user": info.user,
        "exposed_ports": list(info.exposed_ports),
        "healthcheck": list(info.healthcheck),
        "layers": [{"size": size, "created_by": by} for size, by in info.history],
        "architecture": info.architecture,
    }


def describe_source(path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mkserve-inspect-") as tmp:
        source = open_model(path, Path(tmp))
        warnings: list[str] = []
        try:
            settings = resolve({}, source.model_config, warn=warnings.append)
        except SettingsError as exc:  # only the model config feeds it; report, don't fail
            warnings.append(str(exc))
            settings = resolve({})
        settings = settings.replace(model_name=settings.model_name or source.name)
        files = sorted(p.relative_to(source.model_dir).as_posix()
                       for p in source.model_dir.rglob("*") if p.is_file())
        sizes = {f: (source.model_dir / f).stat().st_size for f in files}
    effective = {s.name: getattr(settings, s.name) for s in SETTINGS
                 if s.name not in ("model_dir",)}
    return {
        "kind": "source",
        "source": path,
        "source_kind": source.kind,
        "model": {"name": source.name, "version": source.version, "handler": source.handler},
        "manifest": source.manifest,
        "model_config": source.model_config,
        "settings": effective,
        "settings_from": {k: v for k, v in settings.sources.items() if v != "default"},
        "files": [{"path": f, "size": sizes[f]} for f in files],
        "notes": list(source.notes) + warnings,
    }


def describe(target: str, engine_factory: Callable[[], Engine]) -> dict[str, Any]:
    """A source when TARGET is a path that exists here, otherwise an image."""
    if Path(target).exists():
        return describe_source(target)
    return describe_image(engine_factory(), target)


def format_text(data: dict[str, Any]) -> str:
    model = data["model"]
    lines = [f"{model.get('name')} {model.get('version')} (handler {model.get('handler')})"]
    if data["kind"] == "source":
        lines.append(f"  source:   {data['source']} ({data['source_kind']})")
        for key, value in data["settings"].items():
            origin = data["settings_from"].get(key, "default")
            lines.append(f"  {key:<20} {value!s:<12} ({origin})")
        lines.append("  files:")
        lines += [f"    {human(f['size']):>9}  {f['path']}" for f in data["files"]]
        lines += [f"  note: {n}" for n in data["notes"]]
        return "\n".join(lines)
    if not data["built_by_mkserve"]:
        lines = [f"{data['image']}: not built by mkserve (no {L.MODEL_NAME} label)"]
    lines.append(f"  image:    {data['image']} ({data['id'][:19]}), {human(data['size'])}")
    lines.append(f"  serves:   POST {routes.predictions(str(model.get('name')))} on port "
                 f"{data['labels']['mkserve'].get('port', '?')}, as user {data['user'] or 'root'}")
    for key, value in data["labels"]["mkserve"].items():
        lines.append(f"  {key:<22} {value}")
    for key, value in data["labels"]["oci"].items():
        lines.append(f"  oci.{key:<18} {value}")
    if data["baked_settings"]:
        lines.append("  baked settings: " + " ".join(f"{k}={v}"
                                                     for k, v in data["baked_settings"].items()))
    lines.append(f"  entrypoint: {' '.join(data['entrypoint'])}")
    if data["healthcheck"]:
        lines.append("  healthcheck: " + " ".join(data["healthcheck"])[:100])
    return "\n".join(lines)

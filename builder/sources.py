"""A model SOURCE argument, checked before anything else is done with it."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import SourceProblem, UsageError

ARCHIVES = (".mar", ".tar.gz", ".tgz")
# What only a file name ends with, never an image reference.
PATH_ENDINGS = (*ARCHIVES, ".zip", ".pt", ".pth", ".yaml", ".yml", ".json")


def looks_like_a_path(target: str) -> bool:
    """True for what can only be a file or folder (never an image reference)."""
    return (target.startswith(("./", "../", "/", "~"))
            or target.lower().endswith(PATH_ENDINGS) or target in (".", ".."))


def is_model_folder(path: Path) -> bool:
    return (path / "MAR-INF" / "MANIFEST.json").is_file() or any(
        (path / name).is_file() for name in ("mkserve.yaml", "handler.py", "model-config.yaml"))


def model_source(target: str, note: Callable[[str], None]) -> Path:
    """The model to use for SOURCE: a .mar, .tar.gz or model folder that exists.

    A TorchServe model store (a folder of .mar files, the --model-store habit) stands
    for its one archive; with several, say which to pick.
    """
    path = Path(target).expanduser()
    if not path.exists():
        raise SourceProblem(f"{target}: no such file or folder; pass a .mar, a .tar.gz or a "
                            "model folder")
    if not path.is_dir() or is_model_folder(path):
        return path
    archives = sorted(p for p in path.iterdir()
                      if p.is_file() and p.name.lower().endswith(ARCHIVES))
    if len(archives) == 1:
        note(f"{target} is a model store; serving its one archive, {archives[0]}")
        return archives[0]
    if archives:
        listing = ", ".join(str(a) for a in archives)
        raise UsageError(f"{target} is a model store with {len(archives)} archives ({listing}); "
                         "mkserve serves one model: pass the archive to serve")
    return path  # a plain model folder; opening it says what it lacks

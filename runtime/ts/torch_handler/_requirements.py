"""Check, when a built-in handler initialises, that the packages it needs are installed."""
from __future__ import annotations

import importlib.util


def missing_packages(packages: dict[str, str]) -> list[str]:
    """pip names of the {import name: pip name} entries that cannot be imported."""
    return [pip for module, pip in packages.items() if importlib.util.find_spec(module) is None]


def require(handler: str, packages: dict[str, str], purpose: str = "") -> None:
    """Raise RuntimeError naming the missing packages and how to add them."""
    missing = missing_packages(packages)
    if not missing:
        return
    names = " and ".join(missing) if len(missing) <= 2 else ", ".join(missing)
    plural = "s" if len(missing) > 1 else ""
    raise RuntimeError(
        f"the built-in {handler} handler needs the package{plural} {names}"
        f"{' ' + purpose if purpose else ''}, which {'are' if plural else 'is'} not installed; "
        f"add {names} to --requirements or the archive's requirements file "
        f"(torch-model-archiver --requirements-file)")

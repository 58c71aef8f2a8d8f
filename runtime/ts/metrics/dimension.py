"""`ts.metrics.dimension.Dimension`: one name/value label of a metric."""
from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class Dimension:
    """A metric label, e.g. Dimension("ModelName", "resnet")."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        return f"Dimension({self.name!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Dimension)
                and (self.name, self.value) == (other.name, other.value))

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def to_dict(self) -> dict[str, str]:
        return {"Name": self.name, "Value": self.value}


def as_dimension_dict(dimensions: Any, defaults: dict[str, str]) -> dict[str, str]:
    """Normalise what handlers pass as dimensions into {name: value}.

    Accepts None, a dict, or a list of Dimension objects, (name, value) pairs or
    bare default names (TorchServe's docs show dimensions=["ModelName", "Level"],
    meaning those defaults).
    """
    if dimensions is None:
        return {}
    if isinstance(dimensions, dict):
        return {str(name): str(value) for name, value in dimensions.items()}
    result: dict[str, str] = {}
    for item in dimensions:
        if isinstance(item, Dimension) or (hasattr(item, "name") and hasattr(item, "value")):
            result[str(item.name)] = str(item.value)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            result[str(item[0])] = str(item[1])
        elif isinstance(item, str) and item in defaults:
            result[item] = defaults[item]
        else:
            logger.warning("ignoring metric dimension %r: expected Dimension(name, value)", item)
    return result

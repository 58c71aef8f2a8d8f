"""`ts.version`: the TorchServe version whose handler API mkserve serves."""
from __future__ import annotations

from mkserve.runtime.ts import __version__

__all__ = ["__version__"]

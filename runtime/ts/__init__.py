"""The `ts` import surface TorchServe handlers use, reimplemented for mkserve.

Installed under `mkserve.runtime.ts` and aliased to the top-level name `ts`
only while a handler loads (see mkserve.runtime.handlers), so that a real
torchserve installation on the same machine is never shadowed.
"""

# The TorchServe release whose handler API this reimplements; handlers gate features on it.
__version__ = "0.12.0"

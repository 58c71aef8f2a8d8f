"""mkserve's build side: the CLI, the image builder and the deploy renderers.

May import mkserve.runtime; the runtime never imports this package.
"""
from __future__ import annotations

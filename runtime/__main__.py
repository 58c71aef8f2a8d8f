"""`python -m mkserve.runtime`: the image's entrypoint."""
from __future__ import annotations

import sys

from .server import main

sys.exit(main())

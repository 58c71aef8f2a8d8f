"""Shared fixtures for end-to-end tests: archives from the real archiver, servers."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for folder in (TESTS, TESTS / "e2e"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

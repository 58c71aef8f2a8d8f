"""Shared fixtures for end-to-end tests: archives from the real archiver, servers."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for folder in (TESTS, TESTS / "e2e"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


# -- container engine (tests marked `engine`) --------------------------------------------

import os
from collections.abc import Iterator
from importlib import metadata

import pytest
from imagetools import Images, fill_wheelhouse, start_engine, stop_engine


@pytest.fixture(scope="session")
def engine_env() -> Iterator[dict[str, str]]:
    """Podman's Docker API from .ci/engine.sh, exported into this process for the session.

    Skips (with the reason) only where no engine can be started and CI is not
    "true"; in CI a missing engine is a failure, never a skip.
    """
    exports, started_here, why = start_engine()
    if exports is None:
        if os.environ.get("CI") == "true" or os.environ.get("MKSERVE_REQUIRE_ENGINE"):
            pytest.fail(f"no container engine in CI: {why}")
        pytest.skip(f"no container engine could be started here: {why}")
    saved = {name: os.environ.get(name) for name in exports}
    os.environ.update(exports)
    yield exports
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if started_here:  # only the service this session started; others may share one
        stop_engine()


@pytest.fixture(scope="session")
def engine(engine_env: dict[str, str]):
    from mkserve.builder.engine import connect

    return connect()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory):
    """The image's wheels, downloaded once (MKSERVE_TEST_WHEELHOUSE keeps them across runs)."""
    from pathlib import Path

    from wheelmaker import make_wheel

    configured = os.environ.get("MKSERVE_TEST_WHEELHOUSE")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("wheelhouse")
    fill_wheelhouse(folder, metadata.version("torch").split("+")[0] + "+cpu")
    make_wheel(folder, "mkserve-tinydep", "1.2.3", {"tinydep.py": "VALUE = 42\n"})
    return folder


@pytest.fixture(scope="session")
def images(engine, wheelhouse) -> Iterator[Images]:
    made = Images(wheelhouse, engine)
    yield made
    made.cleanup()

"""The one exception family of the build side; only the CLI turns it into output and exit codes."""
from __future__ import annotations


class MkserveError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""

    exit_code = 1


class UsageError(MkserveError):
    """Bad flags or configuration."""

    exit_code = 2


class SourceProblem(MkserveError):
    """The model source cannot be served (missing files, handler that does not import...)."""

    exit_code = 3


class EngineError(MkserveError):
    """The container engine is unreachable or the build/run failed."""

    exit_code = 4

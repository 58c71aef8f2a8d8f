"""`ts.utils.timeit_decorator.timeit`: log how long a function took."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def timeit(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            logger.info("%s took %.3f ms", func.__qualname__,
                        (time.perf_counter() - started) * 1000.0)

    return wrapper

"""`ts.metrics.unit.Units`: the unit names metrics accept, and their long names."""
from __future__ import annotations


class Units:
    def __init__(self) -> None:
        self.units = {"ms": "Milliseconds", "s": "Seconds", "percent": "Percent",
                      "count": "Count", "MB": "Megabytes", "GB": "Gigabytes",
                      "kB": "Kilobytes", "B": "Bytes", "": ""}

"""Test support: write a tiny pure-Python wheel by hand (no build backend, no network)."""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(dest: Path, name: str, version: str, modules: dict[str, str]) -> Path:
    """`dest/<name>-<version>-py3-none-any.whl` holding `modules` ({"pkg.py": source})."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = dict(modules)
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "Summary: mkserve test package\n")
    files[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: mkserve-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{path},{_record_hash(text.encode())},{len(text.encode())}"
              for path, text in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in sorted(files.items()):
            info_ = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info_.external_attr = 0o644 << 16
            zf.writestr(info_, text)
    return wheel

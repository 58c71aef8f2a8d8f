"""Model sources: archive kinds, plain folders, and refusal of hostile archives."""
from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from mkserve.runtime import source as src
from mkserve.runtime.source import SourceError, open_source

MANIFEST = {"runtime": "python", "model": {"modelName": "m", "serializedFile": "w.pt",
                                             "handler": "handler.py"}}


def write_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def model_files(manifest: dict | None = None) -> dict[str, bytes]:
    return {"MAR-INF/MANIFEST.json": json.dumps(manifest or MANIFEST).encode(),
            "w.pt": b"weights", "handler.py": b"def handle(d, c):\n    return d\n"}


def test_mar_opens_with_manifest(tmp_path: Path):
    mar = write_zip(tmp_path / "m.mar", model_files())
    source = open_source(mar, tmp_path / "out")
    assert source.name == "m" and source.version == "1.0" and source.kind == "mar"
    assert (source.model_dir / "w.pt").read_bytes() == b"weights"


def test_tgz_top_folder_is_the_model(tmp_path: Path):
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in model_files().items():
            info = tarfile.TarInfo(f"m/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    source = open_source(archive, tmp_path / "out")
    assert source.kind == "tgz" and source.model_dir.name == "m"


def test_folder_with_one_subfolder_is_that_subfolder(tmp_path: Path):
    inner = tmp_path / "export" / "m"
    for name, data in model_files().items():
        (inner / name).parent.mkdir(parents=True, exist_ok=True)
        (inner / name).write_bytes(data)
    assert open_source(tmp_path / "export").model_dir == inner


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil"])
def test_zip_slip_is_refused(tmp_path: Path, name: str):
    entries = model_files()
    entries[name] = b"x"
    mar = write_zip(tmp_path / "bad.mar", entries)
    with pytest.raises(SourceError, match="outside the archive"):
        open_source(mar, tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_links_in_zip_are_refused(tmp_path: Path):
    mar = write_zip(tmp_path / "bad.mar", model_files(), links={"w2.pt": "/etc/passwd"})
    with pytest.raises(SourceError, match="links"):
        open_source(mar, tmp_path / "out")


def test_links_in_tar_are_refused(tmp_path: Path):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("m/w.pt")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(SourceError, match="links"):
        open_source(archive, tmp_path / "out")


def test_size_bomb_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(src, "MAX_UNPACKED_BYTES", 10_000)
    entries = model_files()
    entries["big.bin"] = b"\0" * 5_000_000  # compresses to a few KB
    mar = write_zip(tmp_path / "bomb.mar", entries)
    assert mar.stat().st_size < 100_000
    with pytest.raises(SourceError, match="unpacks to more than"):
        open_source(mar, tmp_path / "out")


def test_missing_files_named_in_manifest(tmp_path: Path):
    entries = model_files()
    del entries["w.pt"]
    with pytest.raises(SourceError, match="serializedFile 'w.pt'.*not in the archive"):
        open_source(write_zip(tmp_path / "m.mar", entries), tmp_path / "out")


def test_bad_manifest(tmp_path: Path):
    entries = model_files()
    entries["MAR-INF/MANIFEST.json"] = b"{nope"
    with pytest.raises(SourceError, match="not valid JSON"):
        open_source(write_zip(tmp_path / "m.mar", entries), tmp_path / "out")
    entries["MAR-INF/MANIFEST.json"] = json.dumps({"model": {"modelName": "bad name!",
                                                             "handler": "x"}}).encode()
    with pytest.raises(SourceError, match="modelName"):
        open_source(write_zip(tmp_path / "m2.mar", entries), tmp_path / "out2")


def test_not_an_archive(tmp_path: Path):
    (tmp_path / "x.mar").write_bytes(b"hello")
    with pytest.raises(SourceError, match="not a zip"):
        open_source(tmp_path / "x.mar", tmp_path / "out")


def test_plain_folder_inference_says_what_it_inferred(tmp_path: Path):
    (tmp_path / "weights.pth").write_bytes(b"w")
    (tmp_path / "model.py").write_text("class M: pass\n")
    (tmp_path / "handler.py").write_text("def handle(d, c): return d\n")
    source = open_source(tmp_path)
    assert source.kind == "plain"
    assert source.model["serializedFile"] == "weights.pth"
    assert source.model["modelFile"] == "model.py"
    assert source.handler == "handler.py"
    assert any("inferred" in note for note in source.notes)


def test_plain_folder_ambiguity_asks_for_mkserve_yaml(tmp_path: Path):
    (tmp_path / "a.pt").write_bytes(b"w")
    (tmp_path / "b.pt").write_bytes(b"w")
    with pytest.raises(SourceError, match="mkserve.yaml"):
        open_source(tmp_path)
    (tmp_path / "mkserve.yaml").write_text("serializedFile: b.pt\nmodelName: named\n"
                                           "handler: base_handler\n")
    source = open_source(tmp_path)
    assert source.model["serializedFile"] == "b.pt" and source.name == "named"


def test_model_config_is_parsed(tmp_path: Path):
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["model"]["configFile"] = "model-config.yaml"
    entries = model_files(manifest)
    entries["model-config.yaml"] = b"batchSize: 8\nmaxBatchDelay: 50\nhandler:\n  k: v\n"
    source = open_source(write_zip(tmp_path / "m.mar", entries), tmp_path / "out")
    assert source.model_config == {"batchSize": 8, "maxBatchDelay": 50, "handler": {"k": "v"}}

"""The archive helper builds what torchserve-compat.md says real archives look like.

These run the real torch-model-archiver, so they double as a check that the
layout facts mkserve relies on still hold for the pinned archiver version.
"""
from __future__ import annotations

import re
import tarfile
import zipfile
from datetime import datetime

import pytest
import yaml
from archives import (
    EXAMPLES,
    FORMATS,
    VARIANTS,
    build_model_files,
    get_variant,
    list_members,
    make_archive,
    model_name,
    read_manifest,
)

pytestmark = pytest.mark.slow

MODEL_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$"
ALL_VARIANTS = sorted(VARIANTS)


def expected_files(example: str, variant: str) -> set[str]:
    """Files the archive must hold, flat at its root."""
    v = get_variant(example, variant)
    files = {"MAR-INF/MANIFEST.json", v.serialized_file, *v.extra_files}
    if v.handler.endswith(".py"):
        files.add(v.handler)
    if v.model_file:
        files.add(v.model_file)
    if v.config_file:
        files.add(v.config_file)
    return files


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive"])
@pytest.mark.parametrize(("example", "variant"), ALL_VARIANTS, ids="/".join)
def test_layout_and_manifest(tmp_path, example, variant, fmt):
    v = get_variant(example, variant)
    out = make_archive(example, tmp_path, fmt=fmt, variant=variant)

    members = list_members(out)
    if fmt == "tgz":
        assert out == tmp_path / f"{v.model_name}.tar.gz"
        # Every entry sits under one top folder named after the model.
        assert {m.split("/", 1)[0] for m in members} == {v.model_name}
        members = {m.split("/", 1)[1] for m in members}
    elif fmt == "no-archive":
        assert out == tmp_path / v.model_name
        assert out.is_dir()
        # The export folder holds exactly that one model folder.
        assert [p.name for p in tmp_path.iterdir()] == [v.model_name]
    else:
        assert out == tmp_path / f"{v.model_name}.mar"
        assert zipfile.is_zipfile(out)
    assert members == expected_files(example, variant)

    manifest = read_manifest(out)
    assert set(manifest) == {"createdOn", "runtime", "model", "archiverVersion"}
    assert manifest["runtime"] == "python"
    assert manifest["archiverVersion"] == "0.12.0"
    datetime.strptime(manifest["createdOn"], "%d/%m/%Y %H:%M:%S")  # day-first

    model = manifest["model"]
    # Optional keys are left out, not written as null.
    wanted = {"modelName", "serializedFile", "handler", "modelVersion"}
    if v.model_file:
        wanted.add("modelFile")
    if v.config_file:
        wanted.add("configFile")
    assert set(model) == wanted
    assert model["modelName"] == v.model_name
    assert model["modelVersion"] == "1.0"
    assert model["serializedFile"] == v.serialized_file
    # Paths are reduced to base names; built-in handlers stay bare names.
    assert model["handler"] == v.handler
    assert model.get("modelFile") == v.model_file
    assert model.get("configFile") == v.config_file


def test_model_names_are_valid_and_distinct():
    names = [v.model_name for v in VARIANTS.values()]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.match(MODEL_NAME_RE, name)
    assert model_name("classifier") == "classifier"
    assert set(EXAMPLES) == {"classifier", "eager", "function_handler", "headers", "transformer"}


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_mar_compression(tmp_path, fmt):
    out = make_archive("classifier", tmp_path, fmt=fmt)
    expected = zipfile.ZIP_DEFLATED if fmt == "default" else zipfile.ZIP_STORED
    with zipfile.ZipFile(out) as zf:
        assert {i.compress_type for i in zf.infolist()} == {expected}


def test_tgz_has_no_directory_entries(tmp_path):
    # mkserve's unpacker must not depend on directory entries being present.
    out = make_archive("classifier", tmp_path, fmt="tgz")
    with tarfile.open(out, "r:gz") as tar:
        assert all(m.isfile() for m in tar.getmembers())


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("custom", {"batchSize": 32, "maxBatchDelay": 5, "responseTimeout": 120}),
        ("batch8", {"batchSize": 8, "maxBatchDelay": 50}),
    ],
)
def test_classifier_configs(tmp_path, variant, expected):
    out = make_archive("classifier", tmp_path, fmt="no-archive", variant=variant)
    assert yaml.safe_load((out / "model-config.yaml").read_text()) == expected


def test_requirements_file(tmp_path):
    out = make_archive("eager", tmp_path, fmt="no-archive", requirements="numpy\n")
    assert read_manifest(out)["model"]["requirementsFile"] == "requirements.txt"
    assert (out / "requirements.txt").read_text() == "numpy\n"


def test_name_override_and_rebuild_replaces(tmp_path):
    first = make_archive("classifier", tmp_path, fmt="no-archive", name="other")
    (first / "stale.txt").write_text("left over")
    again = make_archive("classifier", tmp_path, fmt="no-archive", variant="base_handler",
                         name="other")
    assert again == first
    assert read_manifest(again)["model"]["handler"] == "base_handler"
    # The archiver itself would keep stale.txt and handler.py; the helper must not.
    assert list_members(again) == {"MAR-INF/MANIFEST.json", "model_scripted.pt"}


def test_unknown_names_are_rejected(tmp_path):
    with pytest.raises(KeyError):
        make_archive("nope", tmp_path)
    with pytest.raises(KeyError):
        make_archive("classifier", tmp_path, variant="nope")
    with pytest.raises(ValueError):
        make_archive("classifier", tmp_path, fmt="zip")
    assert "zip-store" in FORMATS


@pytest.mark.parametrize(
    ("example", "files"),
    [
        ("classifier", {"model_scripted.pt", "model_traced.pt", "model_weights.pth"}),
        ("eager", {"model_weights.pth"}),
        ("function_handler", {"model_scripted.pt"}),
        ("headers", {"model_scripted.pt"}),
        ("transformer", {"model_scripted.pt"}),
    ],
)
def test_build_model_files(tmp_path, example, files):
    out = build_model_files(example, tmp_path / "m")
    assert out == tmp_path / "m"
    assert {p.name for p in out.iterdir()} == files


def test_classifier_files_are_reproducible(tmp_path):
    import torch

    a = build_model_files("classifier", tmp_path / "a")
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]])
    scripted = torch.jit.load(str(a / "model_scripted.pt"))
    traced = torch.jit.load(str(a / "model_traced.pt"))
    state = torch.load(a / "model_weights.pth")
    with torch.no_grad():
        assert torch.allclose(scripted(x), traced(x))
    # Seed 0: the first layer is what torch.manual_seed(0) + nn.Linear(10, 64) makes.
    torch.manual_seed(0)
    assert torch.equal(state["layers.0.weight"], torch.nn.Linear(10, 64).weight.detach())
    assert torch.equal(state["layers.0.weight"], scripted.state_dict()["layers.0.weight"])

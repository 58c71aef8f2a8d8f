"""BuildSpec: one frozen value from flags, manifest, model-config and config.properties."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from fakes import write_model
from mkserve.builder import labels as L
from mkserve.builder.errors import UsageError
from mkserve.builder.spec import (
    DEFAULT_BASE_IMAGE,
    PRECEDENCE,
    BuildRequest,
    make_spec,
    torch_requirement_version,
)
from mkserve.builder.tsconfig import TsConfig
from mkserve.runtime.settings import SETTINGS, resolve
from mkserve.runtime.source import open_source

HOST_TORCH = "2.13.0+cpu"


def spec_for(folder: Path, ts: TsConfig | None = None, **request: object):
    source = open_source(folder)
    return make_spec(BuildRequest(source=str(folder), **request), source, ts,  # type: ignore[arg-type]
                     host_torch=HOST_TORCH)


def test_defaults(tiny_model: Path) -> None:
    spec = spec_for(tiny_model)
    assert spec.tags == ("tiny:2.0",)
    assert spec.base_image == DEFAULT_BASE_IMAGE == "docker.io/library/python:3.11-slim"
    assert spec.torch_version == "2.13.0+cpu"
    assert spec.platform == "linux/amd64" and spec.python_version == "3.11"
    # Nothing was set, so nothing is baked: the runtime applies model-config.yaml itself.
    assert spec.env == ()
    labels = spec.label_map
    assert labels[L.BATCH_SIZE] == "4"  # from model-config.yaml, as the runtime will see it
    assert labels[L.MODEL_NAME] == "tiny" and labels[L.MODEL_VERSION] == "2.0"
    assert labels[L.GPU] == "false" and labels[L.TORCH_VERSION] == "2.13.0+cpu"
    assert labels[L.SOURCE_KIND] == "folder"
    assert spec.port == 8080
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.port = 1  # type: ignore[misc]


def test_precedence_cli_over_tsconfig_over_model_config(tiny_model: Path) -> None:
    assert PRECEDENCE == ("CLI flag", "config.properties", "model-config.yaml", "default")
    ts = TsConfig("config.properties", {"batch_size": 16, "max_batch_delay_ms": 50.0}, ())
    both = spec_for(tiny_model, ts, settings={"batch_size": 8})
    env = dict(both.env)
    assert env["MKSERVE_BATCH_SIZE"] == "8"  # CLI flag wins
    assert env["MKSERVE_MAX_BATCH_DELAY_MS"] == "50.0"  # config.properties fills the rest
    assert dict(both.env_sources)["MKSERVE_BATCH_SIZE"] == "--batch-size"
    assert dict(both.env_sources)["MKSERVE_MAX_BATCH_DELAY_MS"].startswith("config.properties")
    only_ts = spec_for(tiny_model, ts)
    assert dict(only_ts.env)["MKSERVE_BATCH_SIZE"] == "16"
    assert only_ts.label_map[L.BATCH_SIZE] == "16"
    neither = spec_for(tiny_model)
    assert "MKSERVE_BATCH_SIZE" not in dict(neither.env)
    assert neither.label_map[L.BATCH_SIZE] == "4"  # model-config.yaml


def test_baked_env_round_trips_through_the_runtime_contract(tiny_model: Path) -> None:
    spec = spec_for(tiny_model, settings={"batch_size": 8, "workers": 2, "port": 9000,
                                          "max_batch_delay_ms": 2.5, "queue_size": 7,
                                          "response_timeout_s": 30.0,
                                          "max_request_bytes": 1000})
    contract = {s.env for s in SETTINGS}
    assert {k for k, _ in spec.env} <= contract
    settings = resolve(dict(spec.env))
    assert (settings.batch_size, settings.workers, settings.port) == (8, 2, 9000)
    assert (settings.max_batch_delay_ms, settings.queue_size) == (2.5, 7)
    assert (settings.response_timeout_s, settings.max_request_bytes) == (30.0, 1000)
    assert spec.port == 9000 and spec.label_map[L.PORT] == "9000"
    # Contract order, so the Dockerfile does not change when flags are given in another order.
    order = [s.env for s in SETTINGS]
    assert [k for k, _ in spec.env] == sorted((k for k, _ in spec.env), key=order.index)


def test_env_flag_sets_settings_and_extras(tiny_model: Path) -> None:
    spec = spec_for(tiny_model, env=("MKSERVE_PRECISION=bf16", "OMP_NUM_THREADS=1"))
    assert dict(spec.env) == {"MKSERVE_PRECISION": "bf16", "OMP_NUM_THREADS": "1"}
    with pytest.raises(UsageError, match="contradicts --batch-size"):
        spec_for(tiny_model, env=("MKSERVE_BATCH_SIZE=3",), settings={"batch_size": 4})
    with pytest.raises(UsageError, match="MKSERVE_MODEL"):
        spec_for(tiny_model, env=("MKSERVE_MODEL=/elsewhere",))


def test_every_problem_is_reported_at_once(tiny_model: Path) -> None:
    with pytest.raises(UsageError) as info:
        spec_for(tiny_model, tags=("Bad Tag!",), platform="windows/386",
                 labels=("io.mkserve.model.name=x", "novalue"), build_args=("PIP_INDEX_URL=x",),
                 settings={"batch_size": 0}, requirements=("/no/such/file.txt",))
    message = str(info.value)
    for needle in ("--tag 'Bad Tag!'", "--platform windows/386", "io.mkserve.model.name",
                   "--label 'novalue'", "--build-arg PIP_INDEX_URL", "MKSERVE_BATCH_SIZE",
                   "/no/such/file.txt"):
        assert needle in message


def test_user_labels_and_vcs(tiny_model: Path) -> None:
    source = open_source(tiny_model)
    spec = make_spec(BuildRequest(source=str(tiny_model), labels=(
        "team=vision", f"{L.OCI_DESCRIPTION}=mine")), source, host_torch=HOST_TORCH,
        revision="abc123", source_url="https://example.com/repo.git")
    labels = spec.label_map
    assert labels["team"] == "vision" and labels[L.OCI_DESCRIPTION] == "mine"
    assert labels[L.OCI_REVISION] == "abc123"
    assert labels[L.OCI_SOURCE] == "https://example.com/repo.git"
    assert [k for k, _ in spec.labels] == sorted(labels)  # deterministic order


def test_torch_version_rules() -> None:
    assert torch_requirement_version(None, "2.13.0+cpu", gpu=False) == "2.13.0+cpu"
    assert torch_requirement_version(None, "2.13.0+cu126", gpu=False) == "2.13.0+cpu"
    assert torch_requirement_version(None, "2.13.0+cpu", gpu=True) == "2.13.0"
    assert torch_requirement_version("2.5.1", "2.13.0+cpu", gpu=False) == "2.5.1"
    with pytest.raises(UsageError, match="--torch-version"):
        torch_requirement_version(None, None, gpu=False)
    with pytest.raises(UsageError, match="not a version"):
        torch_requirement_version("latest", None, gpu=False)


def test_gpu_spec(tiny_model: Path) -> None:
    spec = spec_for(tiny_model, gpu=True)
    assert spec.gpu and spec.torch_version == "2.13.0"
    assert spec.label_map[L.GPU] == "true"


def test_weights_and_code_are_split(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", extra={"big.json": b"x" * (2 << 20),
                                                "extra.pt": b"w", "labels.json": b"{}"})
    spec = spec_for(folder)
    assert spec.weight_files == ("big.json", "extra.pt", "weights.bin")
    assert set(spec.model_files) - set(spec.weight_files) == {
        "MAR-INF/MANIFEST.json", "handler.py", "labels.json", "model-config.yaml"}


def test_archive_digest_and_requirements(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", extra={"requirements.txt": b"six\n"})
    manifest = (folder / "MAR-INF" / "MANIFEST.json")
    manifest.write_text(manifest.read_text().replace(
        '"handler": "handler.py"', '"handler": "handler.py", "requirementsFile": "requirements.txt"'))
    extra = tmp_path / "more.txt"
    extra.write_text("idna\n")
    spec = spec_for(folder, requirements=(str(extra),))
    assert spec.requirement_files == (str(extra.resolve()), str(folder / "requirements.txt"))
    # A folder's digest covers names and contents: change one byte, get another digest.
    before = spec.archive_sha256
    (folder / "handler.py").write_text("# changed\n" + (folder / "handler.py").read_text())
    assert spec_for(folder, requirements=(str(extra),)).archive_sha256 != before


def test_archive_digest_of_a_file(tmp_path: Path) -> None:
    import zipfile

    folder = write_model(tmp_path / "m")
    mar = tmp_path / "tiny.mar"
    with zipfile.ZipFile(mar, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    source = open_source(mar, tmp_path / "unpacked")
    spec = make_spec(BuildRequest(source=str(mar)), source, host_torch=HOST_TORCH)
    assert spec.archive_sha256 == hashlib.sha256(mar.read_bytes()).hexdigest()
    assert spec.source_kind == "mar"


def test_a_plain_folder_keeps_its_name_in_the_image(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"not really torchscript")
    (folder / "handler.py").write_text("def handle(data, context):\n    return data\n")
    spec = spec_for(folder)
    assert spec.source_kind == "plain" and spec.model_name == "my-model"
    assert dict(spec.env)["MODEL_NAME"] == "my-model"  # in the image the folder is /opt/mkserve/model
    renamed = spec_for(folder, env=("MODEL_NAME=other",))
    assert dict(renamed.env)["MODEL_NAME"] == "other"

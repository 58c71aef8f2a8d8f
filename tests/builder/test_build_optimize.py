"""`mkserve build --optimize`: the image gets a frozen, optimised TorchScript file that answers alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from archives import make_archive
from mkserve.builder.build import optimize_model
from mkserve.runtime.source import open_source

pytestmark = pytest.mark.slow


def run(source_path: Path, sample: Path | None, tmp: Path) -> tuple[object, list[str]]:
    lines: list[str] = []
    source = open_source(source_path, tmp / "unpacked")
    result = optimize_model(source, str(sample) if sample else None, tmp / "optimized",
                            lines.append)
    return result, lines


def test_guide_classifier_is_optimised_and_answers_alike(tmp_path: Path):
    mar = make_archive("classifier", tmp_path / "store")
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([[0.1 * i for i in range(10)], [0.5] * 10]))
    optimised, lines = run(mar, sample, tmp_path)
    assert any(line.startswith("optimize: freeze") for line in lines), lines
    original = torch.jit.load(str(tmp_path / "unpacked" / "model_scripted.pt")).eval()
    new_file = optimised.model_dir / "model_scripted.pt"
    assert new_file.read_bytes() != (tmp_path / "unpacked" / "model_scripted.pt").read_bytes()
    frozen = torch.jit.load(str(new_file))
    inputs = torch.rand(16, 10)
    with torch.no_grad():
        assert torch.allclose(frozen(inputs), original(inputs), atol=1e-4, rtol=1e-3)


def test_transformer_with_a_tuple_of_arguments(tmp_path: Path):
    archive = make_archive("transformer", tmp_path / "store", fmt="no-archive")
    tokens = torch.randint(1, 100, (2, 64))
    mask = torch.zeros(2, 64, dtype=torch.bool)
    sample = tmp_path / "sample.pt"
    torch.save((tokens, mask), sample)
    optimised, lines = run(archive, sample, tmp_path)
    assert any(line.startswith("optimize: freeze") for line in lines), lines
    original = torch.jit.load(str(archive / "model_scripted.pt")).eval()
    frozen = torch.jit.load(str(optimised.model_dir / "model_scripted.pt"))
    other = torch.randint(1, 100, (3, 64))
    with torch.no_grad():
        want = original(other, torch.zeros(3, 64, dtype=torch.bool))
        got = frozen(other, torch.zeros(3, 64, dtype=torch.bool))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-3)
    # The user's folder is never changed.
    assert (archive / "model_scripted.pt").read_bytes() != (
        optimised.model_dir / "model_scripted.pt").read_bytes()


def test_eager_models_and_missing_samples_are_kept_with_a_note(tmp_path: Path):
    eager = make_archive("classifier", tmp_path / "store", variant="eager")
    _, lines = run(eager, None, tmp_path / "a")
    assert "applies to TorchScript models" in lines[0]
    scripted = make_archive("classifier", tmp_path / "store")
    _, lines = run(scripted, None, tmp_path / "b")
    assert "needs --sample-input" in lines[0]

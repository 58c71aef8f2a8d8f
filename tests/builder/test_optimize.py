"""builder.optimize: freeze + optimize_for_inference on the examples, checked; fallbacks say why."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from archives import build_model_files
from mkserve.builder.optimize import OptimizeReport, Tolerance, optimize_torchscript
from torch import nn

SEQ_LEN, FEATURE_DIM = 64, 32


def classifier_inputs() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, 10, generator=gen), torch.randn(7, 10, generator=gen)]


def transformer_inputs() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(3, SEQ_LEN, dtype=torch.bool)
    mask[1, 40:] = True  # a padded row
    tokens = torch.randint(1, 1000, (3, SEQ_LEN), generator=gen)
    features = torch.randn(3, SEQ_LEN, FEATURE_DIM, generator=gen)
    return {"forward": [(tokens, mask)], "forward_features": [(features, mask)]}


def answers(path: Path, method: str, args: tuple) -> torch.Tensor:
    with torch.inference_mode():
        return getattr(torch.jit.load(str(path)).eval(), method)(*args)


@pytest.mark.parametrize("serialized", ["model_scripted.pt", "model_traced.pt"])
def test_classifier_is_frozen_optimised_and_answers_within_tolerance(tmp_path: Path,
                                                                     serialized: str):
    files = build_model_files("classifier", tmp_path / "files")
    src, dst = files / serialized, tmp_path / "optimised.pt"
    report = optimize_torchscript(src, dst, classifier_inputs())
    assert isinstance(report, OptimizeReport)
    assert report.optimized, report.reason
    assert report.checked_inputs == 2 and report.max_abs_diff is not None
    assert report.max_abs_diff <= 1e-4 and report.speedup is not None and report.speedup > 0
    for x in classifier_inputs() + [torch.randn(32, 10)]:
        torch.testing.assert_close(answers(dst, "forward", (x,)), answers(src, "forward", (x,)),
                                   atol=1e-4, rtol=1e-3)
    # The optimised file is frozen: the parameters became constants of the graph.
    assert not list(torch.jit.load(str(dst)).parameters())
    assert report.stage == "freeze + optimize_for_inference" and report.stage in str(report)


def test_transformer_keeps_its_exported_method_and_matches(tmp_path: Path):
    src = build_model_files("transformer", tmp_path / "files") / "model_scripted.pt"
    dst = tmp_path / "optimised.pt"
    report = optimize_torchscript(src, dst, transformer_inputs(), Tolerance(atol=1e-4, rtol=1e-3))
    assert report.optimized, report.reason
    assert report.methods == ("forward", "forward_features")
    assert report.checked_inputs == 2
    for method, calls in transformer_inputs().items():
        for args in calls:
            torch.testing.assert_close(answers(dst, method, args), answers(src, method, args),
                                       atol=1e-4, rtol=1e-3)


def test_optimising_in_place_replaces_the_file(tmp_path: Path):
    model = build_model_files("classifier", tmp_path / "files") / "model_scripted.pt"
    before = model.read_bytes()
    report = optimize_torchscript(model, model, classifier_inputs(), time_it=False)
    assert report.optimized and report.original_ms is None
    assert model.read_bytes() != before
    assert not list(tmp_path.glob("files/.*.tmp"))  # no temporary file left behind


class _ConvBN(nn.Module):
    """optimize_for_inference folds the batch norm into the convolution (tiny float changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _script(module: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(module.eval()).save(str(path))
    return path


def _fallback(src: Path, dst: Path, *args, **kwargs) -> OptimizeReport:
    with pytest.warns(RuntimeWarning, match="not optimised"):
        report = optimize_torchscript(src, dst, *args, **kwargs)
    assert not report.optimized and report.reason
    assert dst.read_bytes() == src.read_bytes()  # the original, unchanged, is what gets served
    return report


class _Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_an_optimised_model_that_fails_on_a_sample_is_not_used(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    src = build_model_files("classifier", tmp_path / "files") / "model_scripted.pt"
    broken = torch.jit.script(_Raises())
    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda *a, **k: broken)
    monkeypatch.setattr(torch.jit, "freeze", lambda *a, **k: broken)
    report = _fallback(src, tmp_path / "out.pt", classifier_inputs())
    assert "forward failed on sample input 0" in report.reason and "boom" in report.reason


def test_freeze_errors_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = build_model_files("classifier", tmp_path / "files") / "model_scripted.pt"

    def refuse(*args, **kwargs):
        raise RuntimeError("Freezing is not supported for this module")

    monkeypatch.setattr(torch.jit, "freeze", refuse)
    report = _fallback(src, tmp_path / "out.pt", classifier_inputs())
    assert report.reason.startswith("cannot be frozen: RuntimeError: Freezing is not supported")


def test_outputs_outside_the_tolerance_keep_the_original(tmp_path: Path):
    src = _script(_ConvBN(), tmp_path / "convbn.pt")
    with torch.no_grad():  # give the batch norm statistics worth folding
        module = torch.jit.load(str(src))
        module.bn.running_var.uniform_(0.5, 2.0)
        module.bn.running_mean.uniform_(-1, 1)
        module.save(str(src))
    x = torch.randn(2, 3, 16, 16)
    report = _fallback(src, tmp_path / "strict.pt", [x], Tolerance(atol=0.0, rtol=0.0))
    assert "exceeds atol 0" in report.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the default tolerance accepts it
        report = optimize_torchscript(src, tmp_path / "ok.pt", [x])
    assert report.optimized and report.stage
    # Whichever graph won, the file on disk is the one that was checked.
    torch.testing.assert_close(answers(tmp_path / "ok.pt", "forward", (x,)),
                               answers(src, "forward", (x,)), atol=1e-4, rtol=1e-3)


def test_not_torchscript_and_no_samples_fall_back(tmp_path: Path):
    files = build_model_files("classifier", tmp_path / "files")
    report = _fallback(files / "model_weights.pth", tmp_path / "w.pth", classifier_inputs())
    assert report.reason.startswith("not a TorchScript file")
    report = _fallback(files / "model_scripted.pt", tmp_path / "s.pt", None)
    assert "no sample inputs" in report.reason
    report = _fallback(files / "model_scripted.pt", tmp_path / "m.pt", {"predict": [torch.ones(1)]})
    assert "does not have" in report.reason

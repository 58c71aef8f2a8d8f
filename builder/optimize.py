"""Build-time TorchScript optimisation: freeze + optimize_for_inference, checked on sample inputs.

The guide's "Optimizing Performance" section as a feature (`mkserve build
--optimize`): the optimised file replaces the model's serialized file only if
it loads back and answers every sample input like the original, within a
tolerance. Otherwise the original is kept and the report says why (a model
that cannot be frozen is not an error: the build goes on, unoptimised).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class Tolerance:
    """Outputs match when |optimised - original| <= atol + rtol * |original| everywhere."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL


@dataclass(frozen=True)
class OptimizeReport:
    """What `optimize_torchscript` did.

    optimized: True when dst holds the frozen (and, stage permitting, optimised) model;
    False when it holds the original. `reason` says why the original was kept, or why
    optimize_for_inference's graph was passed over for the frozen one. max_abs_diff is the largest
    difference seen on the sample inputs (None when nothing was compared);
    speedup is the original's median time over the optimised one's on them.
    """

    src: str
    dst: str
    optimized: bool
    reason: str = ""
    methods: tuple[str, ...] = ("forward",)
    checked_inputs: int = 0
    max_abs_diff: float | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    original_ms: float | None = None
    optimized_ms: float | None = None
    seconds: float = 0.0
    stage: str = ""  # "freeze + optimize_for_inference" or "freeze" when optimized

    @property
    def speedup(self) -> float | None:
        if not self.original_ms or not self.optimized_ms:
            return None
        return self.original_ms / self.optimized_ms

    def __str__(self) -> str:
        if not self.optimized:
            return f"kept the original model: {self.reason}"
        parts = [f"{self.stage} ({', '.join(self.methods)})",
                 f"{self.checked_inputs} sample input(s) match"]
        if self.max_abs_diff is not None:
            parts[-1] += f" (max |diff| {self.max_abs_diff:.2g})"
        if self.speedup is not None:
            parts.append(f"{self.original_ms:.3g} ms → {self.optimized_ms:.3g} ms "
                         f"({self.speedup:.2f}×)")
        return "; ".join(parts)


class _Mismatch(Exception):
    pass


def _tolerance(value: Tolerance | tuple[float, float] | float | None) -> Tolerance:
    if value is None:
        return Tolerance()
    if isinstance(value, Tolerance):
        return value
    if isinstance(value, (int, float)):
        return Tolerance(atol=float(value))
    atol, rtol = value
    return Tolerance(float(atol), float(rtol))


def _samples(sample_inputs: Any, methods: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """(method, positional args) pairs; a bare tensor or tuple is one call of forward."""
    if sample_inputs is None:
        return []
    if isinstance(sample_inputs, Mapping):
        out: list[tuple[str, tuple[Any, ...]]] = []
        for method, calls in sample_inputs.items():
            if method not in methods:
                raise ValueError(f"sample inputs name method {method!r}, which the model does not "
                                 f"have (it has {', '.join(methods)})")
            out.extend((method, _args(call)) for call in _calls(calls))
        return out
    return [("forward", _args(call)) for call in _calls(sample_inputs)]


def _calls(value: Any) -> list[Any]:
    import torch

    if isinstance(value, (torch.Tensor, tuple)):
        return [value]  # one call: a tensor, or a tuple of arguments
    return list(value)


def _args(call: Any) -> tuple[Any, ...]:
    return call if isinstance(call, tuple) else (call,)


def _compare(expected: Any, got: Any, tol: Tolerance, where: str = "output") -> float:
    """Largest |difference| between two outputs; raises _Mismatch when they do not match."""
    import torch

    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            raise _Mismatch(f"{where}: shape {tuple(expected.shape)} became "
                            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got)}")
        if not expected.is_floating_point() and not expected.is_complex():
            if not torch.equal(expected, got.to(expected.dtype)):
                raise _Mismatch(f"{where}: integer/boolean values differ")
            return 0.0
        a, b = expected.detach().double(), got.detach().double()
        if not torch.equal(torch.isnan(a), torch.isnan(b)):
            raise _Mismatch(f"{where}: NaNs differ")
        diff = (a - b).abs().nan_to_num(0.0)
        worst = float(diff.max()) if diff.numel() else 0.0
        if not torch.allclose(a, b, atol=tol.atol, rtol=tol.rtol, equal_nan=True):
            raise _Mismatch(f"{where}: max |diff| {worst:.3g} exceeds atol {tol.atol:g} + "
                            f"rtol {tol.rtol:g} × |original|")
        return worst
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            raise _Mismatch(f"{where}: structure differs")
        return max((_compare(e, g, tol, f"{where}[{i}]")
                    for i, (e, g) in enumerate(zip(expected, got, strict=False))), default=0.0)
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or set(got) != set(expected):
            raise _Mismatch(f"{where}: keys differ")
        return max((_compare(expected[k], got[k], tol, f"{where}[{k!r}]") for k in expected),
                   default=0.0)
    if isinstance(expected, float) and isinstance(got, float):
        if not math.isclose(expected, got, rel_tol=tol.rtol, abs_tol=tol.atol):
            raise _Mismatch(f"{where}: {expected!r} became {got!r}")
        return abs(expected - got)
    if expected != got:
        raise _Mismatch(f"{where}: {expected!r} became {got!r}")
    return 0.0


def _median_ms(module: Any, samples: list[tuple[str, tuple[Any, ...]]], repeats: int) -> float:
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            for method, args in samples:
                getattr(module, method)(*args)
            times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def optimize_torchscript(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str],
                         sample_inputs: Any = None,
                         tolerance: Tolerance | tuple[float, float] | float | None = None,
                         *, time_it: bool = True, repeats: int = 20) -> OptimizeReport:
    """Freeze and optimise the TorchScript model at src_path into dst_path (may be the same).

    sample_inputs: what the model is called with, as it will be served: a tensor or a
    tuple of positional arguments (one call of `forward`), a list of those, or a
    mapping {method name: list of calls} for models that export several methods
    (every public method is preserved). tolerance: Tolerance(atol, rtol), an
    (atol, rtol) pair or an atol; default atol 1e-4, rtol 1e-3.

    The optimised file is written only after it loaded back from disk and answered
    every sample input like the original. Anything else (not TorchScript, freezing
    fails, an output differs or raises, no sample inputs to check) keeps the original
    in dst_path and returns optimized=False with the reason, with a warning.
    """
    import torch

    started = time.monotonic()
    src, dst = Path(src_path), Path(dst_path)
    tol = _tolerance(tolerance)

    def fallback(reason: str, methods: tuple[str, ...] = ("forward",), checked: int = 0,
                 ) -> OptimizeReport:
        if src.resolve() != dst.resolve():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        warnings.warn(f"{src.name}: not optimised, keeping the original model: {reason}",
                      RuntimeWarning, stacklevel=3)
        return OptimizeReport(str(src), str(dst), False, reason, methods, checked, None, tol,
                              seconds=time.monotonic() - started)

    try:
        original = torch.jit.load(str(src), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - any load failure means "not TorchScript"
        return fallback(f"not a TorchScript file ({_first_line(exc)})")
    names = [m for m in original._c._method_names() if not m.startswith("_")]
    methods = tuple(["forward"] + sorted(m for m in names if m != "forward"))
    try:
        samples = _samples(sample_inputs, methods)
    except ValueError as exc:
        return fallback(str(exc), methods)
    if not samples:
        return fallback("no sample inputs to check the optimised model against", methods)
    others = [m for m in methods if m != "forward"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own notes on what it could not fold
            frozen = torch.jit.freeze(original, preserved_attrs=others)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, AssertionError, ...
        return fallback(f"cannot be frozen: {_first_line(exc)}", methods)
    # optimize_for_inference's graph is tried first; on CPU it may pre-pack weights in
    # ways that do not survive save/load (convolutions), then the frozen graph is used.
    candidates: list[tuple[str, Any]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # optimize_for_inference rewrites the module it is given: a frozen copy of its own.
            again = torch.jit.freeze(original, preserved_attrs=others)
            candidates.append(("freeze + optimize_for_inference",
                               torch.jit.optimize_for_inference(again,
                                                                other_methods=others or None)))
    except Exception as exc:  # noqa: BLE001
        notes = [f"optimize_for_inference failed ({_first_line(exc)})"]
    else:
        notes = []
    candidates.append(("freeze", frozen))
    failures = []
    for stage, candidate in candidates:
        try:
            report = _check_and_save(candidate, original, samples, src, dst, tol, methods,
                                     time_it, repeats)
        except _Mismatch as exc:
            failures.append(f"{stage}: {exc}")
            continue
        skipped = notes + failures
        return dataclasses.replace(report, stage=stage, reason="; ".join(skipped),
                                   seconds=time.monotonic() - started)
    return fallback("; ".join(notes + failures), methods)


def _first_line(exc: BaseException) -> str:
    """The exception in one line; for TorchScript's interpreter errors, the real (last) one."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "TorchScript" in lines[0] and len(lines) > 1:
        return lines[-1][:300]
    return f"{type(exc).__name__}: {lines[0][:300]}"


def _check_and_save(candidate: Any, original: Any, samples: list[tuple[str, tuple[Any, ...]]],
                    src: Path, dst: Path, tol: Tolerance, methods: tuple[str, ...],
                    time_it: bool, repeats: int) -> OptimizeReport:
    """Save next to dst, load it back (what the image will run), check that copy, move it.

    Raises _Mismatch (leaving dst alone) when the copy does not load or does not match.
    """
    import torch

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            candidate.save(str(tmp))
            reloaded = torch.jit.load(str(tmp), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001
            raise _Mismatch(f"cannot be saved and loaded back ({_first_line(exc)})") from None
        worst = 0.0
        with torch.inference_mode():
            for index, (method, args) in enumerate(samples):
                expected = getattr(original, method)(*args)
                try:
                    got = getattr(reloaded, method)(*args)
                except Exception as exc:  # noqa: BLE001
                    raise _Mismatch(f"{method} failed on sample input {index} "
                                    f"({_first_line(exc)})") from None
                worst = max(worst, _compare(expected, got, tol, f"{method} output {index}"))
        original_ms = optimized_ms = None
        if time_it:
            for module in (original, reloaded):  # warm up both (profiling executor)
                _median_ms(module, samples, 3)
            original_ms = _median_ms(original, samples, repeats)
            optimized_ms = _median_ms(reloaded, samples, repeats)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return OptimizeReport(str(src), str(dst), True, "", methods, len(samples), worst, tol,
                          original_ms, optimized_ms)

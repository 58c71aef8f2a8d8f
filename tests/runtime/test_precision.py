"""MKSERVE_PRECISION: one autocast, entered by the service, never nested by BaseHandler."""
from __future__ import annotations

import contextlib

import torch
from mkserve.runtime.precision import autocast


def test_bf16_autocasts_and_fp32_does_not() -> None:
    with autocast("bf16", "cpu"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")


def test_inside_an_autocast_region_it_adds_nothing() -> None:
    """The service wraps each handler call; BaseHandler.inference asks again and gets a
    no-op, so the region is entered once."""
    with autocast("bf16", "cpu"):
        inner = autocast("bf16", "cpu")
        assert isinstance(inner, contextlib.nullcontext)
        with inner:
            assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16

"""Helpers TorchServe handlers import from `ts.utils` (see util.py)."""

"""A module-level function handler: ``handle(data, context)``, no class.

TorchServe (and mkserve) call ``handle(None, context)`` once when the model
loads, then ``handle(batch, context)`` for every batch. This handler loads
the TorchScript file named in the manifest on that first call and must return
None there; afterwards it returns one result per row, in order.

Request body: ``{"values": [numbers...]}`` or a bare list of numbers.
Answer: ``{"sum": float, "mean": float, "max": float}``. A row without numbers
gets status 400 and an error object, without failing the rest of its batch.
"""
from __future__ import annotations

import json
import os

import torch

# Loaded once per worker process; the handler is only ever called from one
# thread at a time, so a module global is enough.
_model = None


def _load(context):
    model_dir = context.system_properties["model_dir"]
    serialized = context.manifest["model"]["serializedFile"]
    model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
    return model.eval()


def _values(row):
    """The row's list of numbers, or None when it has none."""
    payload = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    if isinstance(payload, dict):
        payload = payload.get("values")
    if (
        isinstance(payload, list)
        and payload
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in payload)
    ):
        return payload
    return None


def handle(data, context):
    global _model
    if _model is None:
        _model = _load(context)
    if data is None:
        # The load-time call: nothing to answer.
        return None

    results = []
    with torch.inference_mode():
        for idx, row in enumerate(data):
            values = _values(row)
            if values is None:
                context.set_response_status(400, "Bad Request", idx)
                results.append({"error": 'expected {"values": [numbers...]}'})
                continue
            # Rows have different lengths, so they run one by one, not stacked.
            total, mean, top = _model(torch.tensor(values, dtype=torch.float32)).tolist()
            results.append({"sum": total, "mean": mean, "max": top})
    return results

"""Eager-mode handler that overrides only ``preprocess``.

Everything else comes from ``BaseHandler``: it loads ``model.py`` +
``model_weights.pth`` (eager mode, because the manifest has ``modelFile``),
runs the model and turns the output rows into lists. This is the most common
shape of a real-world TorchServe handler, so it is worth serving unchanged.

Request body: ``{"values": [v0, v1, v2, v3]}`` (or a bare list of 4 numbers).
Answer: the model's two outputs, ``[y0, y1]``.
"""
from __future__ import annotations

import json

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException


class EagerHandler(BaseHandler):
    """BaseHandler with a JSON ``{"values": [...]}`` preprocess."""

    def preprocess(self, data):
        rows = []
        for row in data:
            # Built-in handlers read "data" first (form field) then "body" (raw body).
            payload = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
            # TorchServe hands JSON bodies over already parsed, but a client that
            # forgets the Content-Type header sends bytes; accept both.
            if isinstance(payload, (bytes, bytearray)):
                payload = payload.decode("utf-8")
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError as exc:
                    raise PredictionException(f"body is not JSON: {exc}", 400) from exc
            values = payload.get("values") if isinstance(payload, dict) else payload
            if not isinstance(values, list) or len(values) != 4:
                raise PredictionException('expected {"values": [4 numbers]}', 400)
            rows.append(torch.tensor(values, dtype=torch.float32))
        # BaseHandler.inference moves the batch to the device in TorchServe;
        # doing it here as well costs nothing and does not rely on that.
        return torch.stack(rows).to(self.device)

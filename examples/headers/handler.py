"""A class handler that uses the per-request side of ``context``.

Not a BaseHandler subclass: a plain class with ``initialize(context)`` and
``handle(data, context)`` is a complete TorchServe handler too.

For each row of the batch (index ``idx``):
- reads the ``X-Scale`` request header (default: ``handler.default_scale`` from
  model-config.yaml, else 1.0) and multiplies ``values`` by it;
- body ``{"fail": true}`` -> status 422 "Unprocessable" and an error object;
- body ``{"format": "text"}`` -> a plain-text answer (``text/plain``);
- otherwise ``{"result": [...], "scale": s, "scale_source": "header"|"config"}``;
- every row gets the response header ``X-Handled-By: headers-example``.
A bad ``X-Scale`` value gets status 400 for that row only.
"""
from __future__ import annotations

import json
import os

import torch


class HeadersHandler:
    """Scales ``values`` by a request header; sets status, content type, headers."""

    def __init__(self):
        self.model = None
        self.default_scale = 1.0
        self.initialized = False

    def initialize(self, context):
        model_dir = context.system_properties["model_dir"]
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
        self.model.eval()
        # Handlers read their own section of model-config.yaml.
        config = (getattr(context, "model_yaml_config", None) or {}).get("handler") or {}
        self.default_scale = float(config.get("default_scale", 1.0))
        self.initialized = True

    @staticmethod
    def _body(row):
        payload = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
        if isinstance(payload, (bytes, bytearray)):
            payload = payload.decode("utf-8")
        if isinstance(payload, str):
            payload = json.loads(payload) if payload.strip() else {}
        return payload if isinstance(payload, dict) else {"values": payload}

    @staticmethod
    def _scale_header(context, idx):
        # Header names are case-insensitive in HTTP, but TorchServe hands them
        # to the handler verbatim, so a client or proxy that lower-cases them
        # would otherwise go unnoticed.
        value = context.get_request_header(idx, "X-Scale")
        if value is None:
            value = context.get_request_header(idx, "x-scale")
        if isinstance(value, (bytes, bytearray)):
            value = value.decode("utf-8")
        return value

    def handle(self, data, context):
        results = []
        for idx, row in enumerate(data):
            context.set_response_header(idx, "X-Handled-By", "headers-example")
            try:
                body = self._body(row)
            except ValueError:
                context.set_response_status(400, "Bad Request", idx)
                results.append({"error": "body is not JSON"})
                continue

            if body.get("fail"):
                context.set_response_status(422, "Unprocessable", idx)
                results.append({"error": "the request asked to fail"})
                continue

            header = self._scale_header(context, idx)
            try:
                scale = float(header) if header is not None else self.default_scale
            except ValueError:
                context.set_response_status(400, "Bad Request", idx)
                results.append({"error": f"X-Scale is not a number: {header!r}"})
                continue

            values = torch.tensor(body.get("values") or [], dtype=torch.float32)
            with torch.inference_mode():
                scaled = self.model(values, scale).tolist()

            if body.get("format") == "text":
                context.set_response_content_type(idx, "text/plain")
                results.append(" ".join(f"{v:g}" for v in scaled))
            else:
                results.append({
                    "result": scaled,
                    "scale": scale,
                    "scale_source": "header" if header is not None else "config",
                })
        return results

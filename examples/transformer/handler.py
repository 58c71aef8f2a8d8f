"""Handler for the transformer classifier (the compute-heavy benchmark model).

Each request is one sequence, either
- ``{"tokens": [int, ...]}``: token ids in 1..999 (0 is padding), or
- ``{"features": [[32 floats], ...]}``: one 32-float vector per position.
Sequences longer than 64 are truncated (as a tokenizer would), shorter ones
padded and masked. A batch may mix both kinds: each kind runs as one forward
pass and the answers are put back in request order.

Answer: ``{"predicted_class": int, "probabilities": [4 floats]}``.

Loading is BaseHandler's (a ``.pt`` serialized file is TorchScript).
"""
from __future__ import annotations

import json

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

SEQ_LEN = 64
FEATURE_DIM = 32
VOCAB_SIZE = 1000


def _payload(row):
    """The request's JSON object, whether the server parsed it already or not."""
    payload = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise PredictionException(f"body is not JSON: {exc}", 400) from exc
    if not isinstance(payload, dict):
        raise PredictionException('expected {"tokens": [...]} or {"features": [[...]]}', 400)
    return payload


class TransformerHandler(BaseHandler):
    """Batches token rows and feature rows separately; answers in request order."""

    def preprocess(self, data):
        token_idx, token_rows, feature_idx, feature_rows = [], [], [], []
        for idx, row in enumerate(data):
            payload = _payload(row)
            if "tokens" in payload:
                tokens = torch.as_tensor(payload["tokens"], dtype=torch.long).flatten()[:SEQ_LEN]
                if tokens.numel() == 0 or tokens.min() < 1 or tokens.max() >= VOCAB_SIZE:
                    raise PredictionException(
                        f"tokens must be 1..{SEQ_LEN} ids in 1..{VOCAB_SIZE - 1}", 400
                    )
                token_idx.append(idx)
                token_rows.append(tokens)
            elif "features" in payload:
                features = torch.as_tensor(payload["features"], dtype=torch.float32)
                if features.dim() != 2 or features.shape[1] != FEATURE_DIM or len(features) == 0:
                    raise PredictionException(
                        f"features must be 1..{SEQ_LEN} rows of {FEATURE_DIM} numbers", 400
                    )
                feature_idx.append(idx)
                feature_rows.append(features[:SEQ_LEN])
            else:
                raise PredictionException('expected "tokens" or "features"', 400)
        return {
            "size": len(data),
            "tokens": (token_idx, *self._pad(token_rows, (SEQ_LEN,), torch.long)),
            "features": (feature_idx, *self._pad(feature_rows, (SEQ_LEN, FEATURE_DIM), torch.float32)),
        }

    def _pad(self, rows, shape, dtype):
        """Stack variable-length rows into one padded tensor plus its padding mask."""
        batch = torch.zeros((len(rows), *shape), dtype=dtype)
        # Start fully padded; real positions are cleared below.
        mask = torch.ones((len(rows), SEQ_LEN), dtype=torch.bool)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = row
            mask[i, : len(row)] = False
        return batch.to(self.device), mask.to(self.device)

    def inference(self, data, *args, **kwargs):
        logits = [None] * data["size"]
        with torch.inference_mode():
            for kind, run in (("tokens", self.model.forward), ("features", self.model.forward_features)):
                indices, batch, mask = data[kind]
                if indices:
                    for idx, out in zip(indices, run(batch, mask)):
                        logits[idx] = out
        return torch.stack(logits)

    def postprocess(self, data):
        probabilities = torch.softmax(data, dim=1)
        return [
            {"predicted_class": int(p.argmax()), "probabilities": p.tolist()}
            for p in probabilities
        ]

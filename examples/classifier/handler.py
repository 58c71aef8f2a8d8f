"""The guide's custom handler for SimpleClassifier (see "Writing Custom Handlers").

Runs unchanged under TorchServe and under mkserve: it only uses the
``BaseHandler`` / ``context`` API both provide. It loads the TorchScript file
named by the manifest, reads ``index_to_name.json`` when it was packed with
``--extra-files``, and answers each request with the predicted class, its
confidence, all probabilities and (with a mapping) the class name.
"""
from __future__ import annotations

import json
import logging

import torch
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)


class ClassifierHandler(BaseHandler):
    """Custom handler for classification models."""

    def __init__(self):
        super().__init__()
        self.initialized = False

    def initialize(self, context):
        """Load model and initialize components."""
        self.manifest = context.manifest
        properties = context.system_properties
        model_dir = properties.get("model_dir")

        # Load class labels if provided
        mapping_file = f"{model_dir}/index_to_name.json"
        try:
            with open(mapping_file) as f:
                self.mapping = json.load(f)
        except FileNotFoundError:
            self.mapping = None

        # Load the model
        serialized_file = self.manifest["model"]["serializedFile"]
        model_path = f"{model_dir}/{serialized_file}"

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

        self.model = torch.jit.load(model_path, map_location=self.device)
        self.model.eval()

        self.initialized = True
        logger.info(f"Model loaded on {self.device}")

    def preprocess(self, data):
        """Convert input data to tensor."""
        preprocessed = []

        for row in data:
            # Handle different input formats
            if isinstance(row, dict) and "body" in row:
                input_data = row["body"]
            else:
                input_data = row

            # Parse JSON if needed
            if isinstance(input_data, (bytes, bytearray)):
                input_data = json.loads(input_data.decode("utf-8"))

            # Convert to tensor
            tensor = torch.tensor(input_data["features"], dtype=torch.float32)
            preprocessed.append(tensor)

        # Stack into batch
        return torch.stack(preprocessed).to(self.device)

    def inference(self, data):
        """Run model inference."""
        with torch.no_grad():
            outputs = self.model(data)
            probabilities = torch.softmax(outputs, dim=1)
        return probabilities

    def postprocess(self, data):
        """Convert model output to response format."""
        results = []

        for probs in data:
            predicted_class = probs.argmax().item()
            confidence = probs[predicted_class].item()

            result = {
                "predicted_class": predicted_class,
                "confidence": confidence,
                "probabilities": probs.tolist(),
            }

            # Add class name if mapping exists
            if self.mapping:
                result["class_name"] = self.mapping.get(str(predicted_class), "unknown")

            results.append(result)

        return results

"""What cannot work in a one-model mkserve container: importable, and one clear error on use.

TorchServe ships integrations (DeepSpeed, PiPPy, torchrun launchers, NVIDIA
DALI, TensorRT-LLM, vLLM, downloads from the Hugging Face hub) that need its
multi-process launcher, a GPU runtime mkserve's images do not carry, or the
network at load time. Handlers that merely import them still load; calling
one raises `UnsupportedError` naming the reason and what to do instead.
"""
from __future__ import annotations

from typing import Any, NoReturn


class UnsupportedError(RuntimeError):
    """A TorchServe feature mkserve's one-model container does not offer."""


REASONS = {
    "distributed": "mkserve runs each worker as one process with the whole model; TorchServe's "
                   "torchrun-launched DeepSpeed and PiPPy model parallelism is not available. "
                   "Serve a model that fits one device, or shard it with torch.distributed in "
                   "your own handler",
    "dali": "NVIDIA DALI is not in mkserve's images; decode inputs in preprocess (torchvision) "
            "or add nvidia-dali to the archive's requirements and use it in your own handler",
    "trt_llm": "TensorRT-LLM needs NVIDIA's runtime, which mkserve's images do not carry; use "
               "a handler that runs the model with torch",
    "vllm": "vLLM runs its own engine and scheduler, which do not fit mkserve's batcher; serve "
            "it with vLLM's server, or run the model with torch in your own handler",
    "hf_download": "nothing in an mkserve image downloads a model when it loads: put the "
                   "weights in the archive (torch-model-archiver --extra-files) and load them "
                   "from context.system_properties['model_dir']",
}


def unsupported(feature: str, what: str) -> NoReturn:
    raise UnsupportedError(f"{what}: {REASONS[feature]}")


def stub(feature: str, what: str) -> Any:
    """A function that raises UnsupportedError when called (for module-level names)."""
    def call(*args: Any, **kwargs: Any) -> NoReturn:
        unsupported(feature, what)

    call.__name__ = what.rsplit(".", 1)[-1]
    call.__qualname__ = call.__name__
    return call


class UnsupportedHandler:
    """Base of handler classes that cannot run here: they fail at initialize()."""

    feature = "distributed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        unsupported(self.feature, type(self).__name__)

    def handle(self, data: Any, context: Any) -> Any:
        unsupported(self.feature, type(self).__name__)

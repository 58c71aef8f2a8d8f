"""`ts.handler_utils`: helpers TorchServe handlers import (timing, streaming, micro-batching)."""

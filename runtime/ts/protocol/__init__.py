"""`ts.protocol`: the one piece of TorchServe's worker protocol handlers call."""

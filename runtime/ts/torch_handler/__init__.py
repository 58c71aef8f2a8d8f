"""`ts.torch_handler`: BaseHandler and TorchServe's built-in handler names."""

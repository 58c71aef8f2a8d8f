"""Side-by-side benchmarks of mkserve against TorchServe 0.12 (`mkserve bench`, benchmarks/)."""

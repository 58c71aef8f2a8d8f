"""`ts.handler_utils.preprocess`: GPU preprocessing (DALI); see mkserve.runtime.ts.unsupported."""

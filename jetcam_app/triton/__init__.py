"""Triton Inference Server: the model repository the app exports, a local server for tests and benches, its statistics."""

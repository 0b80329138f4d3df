"""Benchmark of the inference service against a tutorial-style baseline: `python -m bench.run`."""

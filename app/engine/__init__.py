"""The serving engine, plain Python that knows nothing of routes: classification and
explanation services, micro-batching, the model worker, admission and the model manager."""

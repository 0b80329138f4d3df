"""The inference service: FastAPI over a model-store entry."""

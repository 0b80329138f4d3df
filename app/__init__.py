"""The inference service: FastAPI over a model-store entry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wbc-explain")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

"""The core's own exceptions: what a caller asked that the model cannot do, and a device
that failed. They carry no HTTP status; `app/core/errors.py` maps them."""

from __future__ import annotations


class ModelCoreError(Exception):
    """Base of everything the model core raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownLayer(ModelCoreError):
    """A layer that does not exist, or that the chosen method cannot explain."""


class DeviceFailure(ModelCoreError):
    """A model pass failed on its device (out of memory, device lost, runtime error)."""


class OnnxUnusable(ModelCoreError):
    """An entry's `model.onnx` is there but cannot serve: corrupt, or not this model's."""


class ScaleOutOfReach(ModelCoreError):
    """An image that, at the scale it was given, is too large to search for the cell at the
    model's own scale (a wide field at low magnification: cells a few pixels across)."""

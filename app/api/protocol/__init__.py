"""The Open Inference Protocol (KServe V2, as served by Triton, MLServer and KServe): its
messages (`schemas`), how a request body arrives (`body`: size limits, compression, the
binary tensor data extension) and how tensors become images and probabilities become
tensors (`tensors`). The HTTP routes are `app.api.routes.v2`."""

"""The HTTP surface: one router per concern (`routes/`), the Open Inference Protocol
adapter (`protocol/`), uploads, content negotiation and the request dependencies."""

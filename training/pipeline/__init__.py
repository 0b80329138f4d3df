"""The training pipeline: data, model, training, publishing an entry, ONNX export,
evaluation and calibration."""

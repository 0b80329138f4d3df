"""A tutorial-style service on the same model, kept only as the benchmark's baseline.

It is written the way most blog posts serve a Keras model, mistakes included: the model is
loaded at import time; every request is decoded with PIL and run through `model.predict`
on its own (no batching, no compiled fixed signature, a progress bar per call); the routes
are `async def` yet call TensorFlow directly, so the event loop stalls for every pass; and
/explain follows the Keras Grad-CAM example, building a new gradient model per request
and encoding the overlay with PIL. Do not copy it: `app/` is the real service.

Store and model come from WBC_STORE_DIR and WBC_MODEL_NAME, as for the real service.
Run: `uvicorn bench.baseline_service:app`.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

from model_core.inputs.transform import prepare_frame
from model_core.store.entries import entry_dir, load_entry

STORE = Path(os.environ.get("WBC_STORE_DIR", Path(__file__).resolve().parents[1] / "model_store"))
manifest, model = load_entry(entry_dir(STORE, os.environ.get("WBC_MODEL_NAME", "wbc-squeezenet")))
OVERLAY_ALPHA = 0.4

app = FastAPI(title="Tutorial-style baseline (benchmark only)")


@app.get("/health/ready")
def ready() -> dict:
    """Ready as soon as it answers: the model was loaded at import time."""
    return {"status": "ready"}


@app.post("/predict")
async def predict(file: list[UploadFile] = File(...)) -> dict:
    """Classify each uploaded image with its own `model.predict` call."""
    predictions = []
    for upload in file:
        image = await _read_rgb(upload)
        probabilities = model.predict(_model_input(image))[0]
        predictions.append(_prediction(probabilities))
    return {"predictions": predictions}


@app.post("/explain")
async def explain(file: UploadFile = File(...), method: str = "gradcam") -> dict:
    """Grad-CAM of the predicted class, drawn over the upload as a base64 PNG."""
    if method != "gradcam":
        raise HTTPException(422, "only method=gradcam is implemented")
    image = await _read_rgb(file)
    heatmap, probabilities = _gradcam(_model_input(image), manifest.layers.explanation)
    buffer = io.BytesIO()
    Image.fromarray(_overlay(image, heatmap)).save(buffer, format="PNG")
    return {
        "method": "gradcam",
        "prediction": _prediction(probabilities),
        "overlay_png": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


async def _read_rgb(upload: UploadFile) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(await upload.read())).convert("RGB"))


def _model_input(image: np.ndarray) -> tf.Tensor:
    """The service's own transform (the scale measured, the main cell's window where the
    model finds it), so the baseline does the work the service does and answers the same."""
    inputs = prepare_frame(image, manifest.input_size, manifest.preprocessing).cells[0][0]
    return tf.convert_to_tensor(inputs[None])


def _prediction(probabilities: np.ndarray) -> dict:
    index = int(np.argmax(probabilities))
    return {
        "label": manifest.class_names[index],
        "class_index": index,
        "confidence": float(probabilities[index]),
        "probabilities": dict(zip(manifest.class_names, map(float, probabilities), strict=True)),
    }


def _gradcam(inputs: tf.Tensor, layer_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The Keras example's `make_gradcam_heatmap`: a gradient model built per call and the
    predicted class's softmax score differentiated eagerly."""
    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    with tf.GradientTape() as tape:
        activations, predictions = grad_model(inputs)
        class_score = predictions[:, tf.argmax(predictions[0])]
    pooled_grads = tf.reduce_mean(tape.gradient(class_score, activations), axis=(0, 1, 2))
    heatmap = tf.squeeze(activations[0] @ pooled_grads[..., tf.newaxis])
    heatmap = tf.maximum(heatmap, 0) / (tf.math.reduce_max(heatmap) + 1e-8)
    return heatmap.numpy(), predictions[0].numpy()


def _overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    heat = np.uint8(255 * cv2.resize(heatmap, (width, height)))
    colored = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return np.uint8(image * (1 - OVERLAY_ALPHA) + colored * OVERLAY_ALPHA)

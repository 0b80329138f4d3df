"""The MLServer baseline: a custom MLServer 1.7 runtime serving the same model-store entry the
way an MLServer user would, kept only for the benchmark (`bench/mlserver.py` starts it).

It answers the same Open Inference Protocol request as the service's /v2 route, one input
`images` (BYTES [N], each element a base64 JPEG in JSON), with FP32 `probabilities`
[N, classes]. Each image is decoded with PIL and preprocessed by the store's own
`prepare_frame`, the service's own transform (white balance, the scale measured from the red
cells, the main cell found and cut out when the manifest asks for it); the batch
goes through one compiled `tf.function` forward with a fixed [None, h, w, 3] signature.
MLServer's adaptive batching (`max_batch_size`, `max_batch_time` in model-settings.json)
merges concurrent requests before `predict`.

Runs in bench/.mlserver-venv (scripts/setup-mlserver.sh) with the repository on PYTHONPATH;
imports nothing from `app/`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from PIL import Image

from model_core.inputs.transform import mean_of_views, mirror_views, prepare_frame
from model_core.store.entries import load_entry

OUTPUT_NAME = "probabilities"


class WBCRuntime(MLModel):
    """The model-store entry at `parameters.uri`, answering probabilities for JPEGs."""

    async def load(self) -> bool:
        self.manifest, model = load_entry(Path(self.settings.parameters.uri))
        height, width = self.manifest.input_size
        logits_of = keras.Model(model.inputs, model.get_layer(self.manifest.layers.logits).output)

        def answer(inputs):  # the service's answer, test-time mirror included
            if not self.manifest.preprocessing.flip_average:
                return model(inputs, training=False)
            logits = logits_of(mirror_views(inputs), training=False)
            count = tf.shape(inputs)[0]
            return mean_of_views(logits[:count], logits[count:])[0]

        self._forward = tf.function(
            answer, input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)]
        )
        self._forward(tf.zeros([1, height, width, 3]))  # trace before the first request
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        encoded = payload.inputs[0].data.root
        inputs = np.stack([self._preprocess(base64.b64decode(item)) for item in encoded])
        probabilities = self._forward(tf.convert_to_tensor(inputs)).numpy()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(OUTPUT_NAME, probabilities)],
        )

    def _preprocess(self, jpeg: bytes) -> np.ndarray:
        rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        manifest = self.manifest
        return prepare_frame(rgb, manifest.input_size, manifest.preprocessing).cells[0][0]

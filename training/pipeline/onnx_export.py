"""Export an entry's serving forward pass to `model.onnx` (tf2onnx, opset 17), so ONNX
Runtime can serve it on CPUs; the manifest records its SHA-256 and what it pools."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from model_core.onnx_forward import INPUT_NAME, OUTPUT_NAMES, OnnxForward, parity_gap, probe
from model_core.runtime import ModelRuntime
from model_core.store.entries import load_entry, read_manifest, sha256_file, write_manifest
from model_core.store.manifest import ONNX_FILE, Manifest, OnnxExport
from training.studies.model_card import write_model_card

OPSET = 17


class ExportFailed(Exception):
    """The exported model does not answer as the Keras model does."""


def export_onnx(
    directory: Path, manifest: Manifest, model: keras.Model, feature_layers: list[str]
) -> Manifest:
    """Write `model.onnx` into the entry from the runtime's own compiled forward pass
    (pooling `feature_layers`), check it against TensorFlow on a probe, and return the
    manifest with its checksum and `onnx` section (not yet written)."""
    import tf2onnx

    runtime = ModelRuntime(manifest, model, directory, "CPU:0", feature_layers=feature_layers)
    forward = runtime.forward_function
    height, width = manifest.input_size
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name=INPUT_NAME)
    named = tf.function(
        lambda inputs: dict(zip(OUTPUT_NAMES, forward(inputs), strict=True)), input_signature=[spec]
    )
    path = Path(directory) / ONNX_FILE
    partial = path.with_suffix(".onnx.partial")
    tf2onnx.convert.from_function(
        named, input_signature=[spec], opset=OPSET, output_path=str(partial)
    )
    os.replace(partial, path)  # a reader never sees half a file
    exported = manifest.model_copy(
        update={
            "onnx": OnnxExport(
                feature_layers=list(feature_layers),
                opset=OPSET,
                exporter=f"tf2onnx {tf2onnx.__version__}",
            ),
            "artefacts": {**manifest.artefacts, ONNX_FILE: sha256_file(path)},
        }
    )
    inputs = probe(manifest)
    onnx = OnnxForward.load(Path(directory), exported, list(feature_layers))
    gap = parity_gap(tuple(t.numpy() for t in forward(tf.constant(inputs))), onnx(inputs))
    if gap is not None:
        path.unlink()
        raise ExportFailed(f"the exported {ONNX_FILE} does not match the model: {gap}")
    return exported


def export_entry(directory: Path) -> Manifest:
    """Add `model.onnx` to an existing entry, pooling the layers of its feature distribution
    (none if it has none), and rewrite its manifest."""
    manifest, model = load_entry(directory)
    distribution = manifest.feature_distribution
    updated = export_onnx(
        directory, manifest, model, list(distribution.layers) if distribution else []
    )
    # Re-read so nothing written meanwhile is lost; only the ONNX fields change.
    current = read_manifest(directory)
    written = current.model_copy(
        update={
            "onnx": updated.onnx,
            "artefacts": {**current.artefacts, ONNX_FILE: updated.artefacts[ONNX_FILE]},
        }
    )
    write_manifest(directory, written)
    write_model_card(directory)  # it lists model.onnx and its digest
    return written

"""Write a trained model into the store as a new, never-overwritten version."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import keras
import tensorflow as tf

from model_core.store.entries import create_next_version_dir, sha256_file, write_manifest
from model_core.store.manifest import (
    MODEL_FILE,
    REPORTS_DIR,
    WEIGHTS_FILE,
    Framework,
    Layers,
    Manifest,
    WhiteBalance,
)
from training.pipeline.calibration import OOD_LAYERS
from training.pipeline.config import TRAIN_BACKGROUND_RGB, TrainConfig
from training.pipeline.model import EXPLANATION_LAYER, FEATURES_LAYER, LOGITS_LAYER
from training.pipeline.onnx_export import export_onnx
from training.pipeline.plots import plot_training_curves
from training.pipeline.train import TrainResult
from training.studies.model_card import write_model_card

log = logging.getLogger(__name__)


def publish(result: TrainResult, config: TrainConfig) -> tuple[Path, Manifest]:
    """Save model, weights, its ONNX export, training curves and manifest; return the entry
    folder."""
    version, directory = create_next_version_dir(config.store_dir, config.model_name)
    result.model.save(directory / MODEL_FILE)
    result.model.save_weights(directory / WEIGHTS_FILE)
    reports = directory / REPORTS_DIR
    reports.mkdir()
    (reports / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    plot_training_curves(
        result.history,
        f"{config.model_name} v{version}: training curves",
        reports / "training_curves.png",
    )
    training_record = config.to_record() | {
        "seconds_per_epoch": round(result.seconds_per_epoch, 2),
        **result.counts,
    }
    manifest = Manifest(
        name=config.model_name,
        version=version,
        created_at=datetime.now(UTC),
        class_names=result.class_names,
        input_size=config.input_size,
        preprocessing=result.preprocessing,
        layers=Layers(
            explanation=EXPLANATION_LAYER,
            features=FEATURES_LAYER,
            logits=LOGITS_LAYER,
        ),
        framework=Framework(tensorflow=tf.__version__, keras=keras.__version__),
        training=training_record,
        artefacts={name: sha256_file(directory / name) for name in (MODEL_FILE, WEIGHTS_FILE)},
    )
    try:  # model.onnx pools the layers calibration is about to fit
        manifest = export_onnx(directory, manifest, result.model, list(OOD_LAYERS))
    except Exception as error:  # the Keras model still serves; the export can be redone
        log.warning(
            "v%s published without model.onnx (python -m training export-onnx "
            "--version %s adds it): %s",
            version,
            version,
            error,
        )
    write_manifest(directory, manifest)
    write_model_card(directory)
    return directory, manifest


def promote(source: Path, store_dir: Path, white_balance: bool = False) -> tuple[Path, Manifest]:
    """Publish an entry trained elsewhere (e.g. the best seed of a study, trained into its
    own store) as the next version of its model in `store_dir`, through `publish`: fresh
    checksums and ONNX export; its history, training record, metrics and calibration carried
    over. `white_balance`: its weights with the background white balance added in front
    (`preprocessing.white_balance`, the train originals' background); its metrics are then
    no longer its own, so they are not carried: evaluate and calibrate it again."""
    from model_core.store.entries import load_entry

    manifest, model = load_entry(source)
    added: dict[str, str] = {}
    if white_balance and manifest.preprocessing.white_balance is None:
        balance = WhiteBalance.model_validate({"reference_rgb": TRAIN_BACKGROUND_RGB})
        manifest = manifest.model_copy(
            update={
                "preprocessing": manifest.preprocessing.model_copy(
                    update={"white_balance": balance}
                ),
                "metrics": {},
            }
        )
        added = {
            "white_balance_added": "published with the background white balance in front of "
            "weights trained without it (python -m training promote --white-balance)"
        }
    config = TrainConfig.from_record(manifest.training)
    config.store_dir = Path(store_dir)
    known = set(TrainConfig().to_record()) | {"seconds_per_epoch"}
    result = TrainResult(
        model=model,
        class_names=manifest.class_names,
        preprocessing=manifest.preprocessing,
        history=json.loads((Path(source) / REPORTS_DIR / "history.json").read_text()),
        seconds_per_epoch=float(manifest.training.get("seconds_per_epoch", 0.0)),
        validation=None,
        counts={k: v for k, v in manifest.training.items() if k not in known}
        | {"promoted_from": str(source)}
        | added,
    )
    directory, published = publish(result, config)
    for report in sorted((Path(source) / REPORTS_DIR).iterdir()):
        target = directory / REPORTS_DIR / report.name
        if report.is_file() and not target.exists():  # metrics.json, confusion matrices
            shutil.copy2(report, target)
    # Calibration, metrics and the explanation layer chosen for them (publish names the
    # recipe's default) belong to the weights and preprocessing, which are unchanged.
    published = published.model_copy(
        update={
            "layers": manifest.layers,
            "metrics": manifest.metrics,
            "calibration": manifest.calibration,
            "feature_distribution": manifest.feature_distribution,
            "review": manifest.review,
        }
    )
    write_manifest(directory, published)
    write_model_card(directory)  # now with the reports and metrics carried over
    return directory, published

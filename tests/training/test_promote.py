"""promote: an entry trained into its own store becomes the next version of another."""

from model_core.store.entries import (
    list_versions,
    load_entry,
    read_manifest,
    sha256_file,
    write_manifest,
)
from model_core.store.manifest import Calibration, Localisation, Preprocessing
from tests.utils.models import publish_tiny_model
from training.pipeline.publish import promote


def test_promote_publishes_the_entry_as_the_next_version_with_its_calibration(tmp_path):
    source, manifest, _ = publish_tiny_model(tmp_path / "seed-store")
    cell_window = Preprocessing(antialias=True, localisation=Localisation())
    write_manifest(
        source,
        manifest.model_copy(
            update={
                "preprocessing": cell_window,
                "metrics": {"validation": {"accuracy": 0.5}},
                "calibration": Calibration(temperature=1.5, fitted_on="validation"),
                "training": manifest.training | {"seed": 3, "best_epoch": 2},
                # chosen for these weights by evaluate-explanations: not the recipe's default
                "layers": manifest.layers.model_copy(update={"explanation": "fire4"}),
            }
        ),
    )
    publish_tiny_model(tmp_path / "store")  # version 1 is taken

    directory, promoted = promote(source, tmp_path / "store")

    assert promoted.version == 2 and list_versions(tmp_path / "store", "tiny") == [1, 2]
    assert read_manifest(directory) == promoted
    assert promoted.preprocessing == cell_window
    assert promoted.calibration.temperature == 1.5
    assert promoted.layers.explanation == "fire4"
    assert promoted.metrics == {"validation": {"accuracy": 0.5}}
    assert promoted.training["seed"] == 3 and promoted.training["best_epoch"] == 2
    assert promoted.training["promoted_from"] == str(source)
    for name, digest in promoted.artefacts.items():
        assert sha256_file(directory / name) == digest
    load_entry(directory)  # verifies every checksum
    assert (directory / "reports" / "history.json").is_file()


def test_promote_copies_the_sources_other_reports(tmp_path):
    source, _, _ = publish_tiny_model(tmp_path / "seed-store")
    (source / "reports" / "metrics.json").write_text("{}")
    directory, _ = promote(source, tmp_path / "store")
    assert (directory / "reports" / "metrics.json").read_text() == "{}"


def test_promote_with_white_balance_puts_it_in_front_and_drops_the_old_metrics(tmp_path):
    from model_core.store.manifest import ReviewPolicy
    from training.pipeline.config import TRAIN_BACKGROUND_RGB

    source, manifest, _ = publish_tiny_model(tmp_path / "seed-store")
    policy = ReviewPolicy(
        min_calibrated_confidence=0.7,
        target_accuracy=0.98,
        expected_coverage=0.6,
        expected_accuracy=0.98,
        fitted_on="held-out originals",
    )
    write_manifest(
        source,
        manifest.model_copy(update={"metrics": {"test": {"accuracy": 0.9}}, "review": policy}),
    )
    directory, promoted = promote(source, tmp_path / "store", white_balance=True)
    balance = promoted.preprocessing.white_balance
    assert balance is not None and balance.reference_rgb == TRAIN_BACKGROUND_RGB
    assert promoted.metrics == {}  # measured without the balance: evaluate it again
    assert promoted.review == policy
    assert "white_balance_added" in promoted.training
    assert promoted.training["white_balance"] is False  # the weights were trained without
    assert read_manifest(directory) == promoted

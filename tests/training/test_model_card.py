"""Model cards: README.md in every entry, written by training from the manifest and reports."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_core.store.entries import list_versions, load_entry, read_manifest
from tests.conftest import BUNDLED_MODEL, BUNDLED_STORE, BUNDLED_VERSION, ROOT
from training.pipeline.config import TrainConfig
from training.studies.model_card import CARD_FILE, render_model_card, write_model_card
from training.studies.model_card_inputs import NOT_MEASURED
from training.studies.model_card_training import FOLD_SETTINGS, train_command

ENTRIES = [
    BUNDLED_STORE / BUNDLED_MODEL / str(v) for v in list_versions(BUNDLED_STORE, BUNDLED_MODEL)
]
DEFAULT_ENTRY = BUNDLED_STORE / BUNDLED_MODEL / str(BUNDLED_VERSION)


def section(card: str, title: str) -> str:
    """The text under `## title`, up to the next section."""
    return card.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def command_of(card: str) -> list[str]:
    """The words of the card's training command (its bash block, continuations joined)."""
    block = card.split("```bash\n", 1)[1].split("\n```", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


def card_sources(entry: Path, target: Path, without: tuple[str, ...] = ()) -> Path:
    """A copy of what a card is made of (manifest and reports, less `without`) at `target`."""
    target.mkdir(parents=True)
    shutil.copy2(entry / "manifest.json", target)
    shutil.copytree(entry / "reports", target / "reports")
    for name in without:
        (target / "reports" / name).unlink()
    return target


def test_default_card_has_the_test_accuracy_every_class_and_the_sections(bundled_manifest):
    card = render_model_card(DEFAULT_ENTRY)
    test = bundled_manifest.metrics["test"]
    assert f"| TEST | {test['count']} | {test['accuracy']:.3f} " in section(card, "Metrics")
    for name in bundled_manifest.class_names:
        assert name in section(card, "Intended use and limits")
        assert f"| {name} |" in section(card, "Metrics")
    for digest in bundled_manifest.artefacts.values():
        assert digest in section(card, "Files")
    assert "not a medical device" in card
    assert "../../../docs/training.md" in card and "../../../docs/model-history.md" in card
    assert len(card.splitlines()) >= 30


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda path: f"v{path.name}")
def test_the_training_command_gives_back_the_training_record(entry):
    from training.cli import build_parser, config_from_args

    record = read_manifest(entry).training
    words = command_of(render_model_card(entry))
    assert words[:4] == ["python", "-m", "training", "train"]
    rebuilt = config_from_args(build_parser().parse_args(words[3:])).to_record()
    expected = TrainConfig.from_record(record).to_record()
    _, notes = train_command(record)  # what the command line cannot say, the card notes
    left_out = {key.split(".")[0] for key in notes}
    if expected["folds"] is None:  # no fold: what only a fold of cross-validate sets is moot
        left_out |= set(FOLD_SETTINGS)
    assert {k: v for k, v in rebuilt.items() if k not in left_out} == {
        k: v for k, v in expected.items() if k not in left_out
    }
    for note in notes.values():
        assert note in section(render_model_card(entry), "How it was trained")
    if entry == DEFAULT_ENTRY:
        assert notes == {}


@pytest.mark.parametrize(
    ("version", "without", "title", "expected"),
    [
        (8, ("seed_report.json",), "Seeds", NOT_MEASURED),
        (8, ("seed_report.json",), "Failing originals", NOT_MEASURED),
        (8, ("ood_check.json",), "Out-of-distribution check", NOT_MEASURED),
        (8, ("localiser.json",), "Cell localiser", NOT_MEASURED),
        # v8's temperature names the cross-validation it came from: the card says so.
        (8, ("cv_report.json",), "Cross-validation", "whose report is not in reports/"),
        (5, (), "Cross-validation", NOT_MEASURED),
        (2, (), "Calibration", NOT_MEASURED),
        (2, (), "Explanation quality", NOT_MEASURED),
    ],
)
def test_a_section_without_its_data_says_not_measured(tmp_path, version, without, title, expected):
    entry = BUNDLED_STORE / BUNDLED_MODEL / str(version)
    copy = card_sources(entry, tmp_path / "entry", without)
    assert expected in section(render_model_card(copy), title)
    if without:  # the entry itself has the data
        assert expected not in section(render_model_card(entry), title)


def test_a_report_of_another_shape_costs_its_section_not_the_card(tmp_path):
    copy = card_sources(DEFAULT_ENTRY, tmp_path / "entry")
    (copy / "reports" / "cv_report.json").write_text(json.dumps({"folds": 4}))
    (copy / "reports" / "seed_report.json").write_text("not json")
    card = render_model_card(copy)
    assert "Could not be read from this entry (KeyError" in section(card, "Cross-validation")
    assert NOT_MEASURED in section(card, "Seeds")
    assert section(card, "Metrics") == section(render_model_card(DEFAULT_ENTRY), "Metrics")


def test_writing_is_atomic_and_idempotent(tmp_path):
    copy = card_sources(DEFAULT_ENTRY, tmp_path / "entry")
    first = write_model_card(copy).read_bytes()
    second = write_model_card(copy).read_bytes()
    assert first == second == render_model_card(copy).encode()
    assert sorted(p.name for p in copy.iterdir()) == [CARD_FILE, "manifest.json", "reports"]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda path: f"v{path.name}")
def test_every_committed_card_is_current(entry):
    written = (entry / CARD_FILE).read_text() if (entry / CARD_FILE).is_file() else ""
    assert written == render_model_card(entry), (
        f"{entry / CARD_FILE} is stale: run `python -m training model-card --all`"
    )


def test_the_command_writes_one_card_or_all(tmp_path, capsys):
    from training.cli import main

    store = tmp_path / "store"
    for version in (7, 8):
        card_sources(
            BUNDLED_STORE / BUNDLED_MODEL / str(version), store / BUNDLED_MODEL / str(version)
        )
    assert main(["model-card", "--store-dir", str(store), "--version", "7"]) == 0
    assert not (store / BUNDLED_MODEL / "8" / CARD_FILE).exists()
    assert main(["model-card", "--store-dir", str(store), "--all"]) == 0
    for version in (7, 8):
        entry = store / BUNDLED_MODEL / str(version)
        assert (entry / CARD_FILE).read_text() == render_model_card(entry)
    assert main(["model-card", "--store-dir", str(store), "--version", "9"]) == 2
    assert "has no version 9" in capsys.readouterr().err


def test_the_card_is_no_artefact_and_checksums_still_verify():
    manifest = read_manifest(DEFAULT_ENTRY)
    assert CARD_FILE not in manifest.artefacts
    load_entry(DEFAULT_ENTRY)  # verifies every checksum, with README.md beside them


def test_publishing_and_promoting_write_the_card(tmp_path):
    from tests.utils.models import publish_tiny_model
    from training.pipeline.publish import promote

    directory, manifest, _ = publish_tiny_model(tmp_path / "seeds")
    card = (directory / CARD_FILE).read_text()
    assert card == render_model_card(directory)
    assert CARD_FILE not in manifest.artefacts
    assert NOT_MEASURED in section(card, "Metrics")  # not evaluated yet
    (directory / "reports" / "metrics.json").write_text("{}")

    promoted, _ = promote(directory, tmp_path / "store")
    card = (promoted / CARD_FILE).read_text()
    assert card == render_model_card(promoted)
    assert f"python -m training promote {directory}" in section(card, "How it was trained")
    load_entry(promoted)


def test_writing_the_localiser_report_into_an_entry_rewrites_its_card(tmp_path):
    from training.studies.localiser_report import write_localiser_report

    copy = card_sources(DEFAULT_ENTRY, tmp_path / "entry", without=("localiser.json",))
    write_model_card(copy)
    assert NOT_MEASURED in section((copy / CARD_FILE).read_text(), "Cell localiser")
    report = json.loads((DEFAULT_ENTRY / "reports" / "localiser.json").read_text())
    write_localiser_report(report, copy / "reports")
    assert NOT_MEASURED not in section((copy / CARD_FILE).read_text(), "Cell localiser")


@pytest.mark.slow
def test_calibrating_and_evaluating_rewrite_the_card(example_data_dir, tmp_path):
    from training.pipeline.calibration import calibrate_entry
    from training.pipeline.evaluate import evaluate_entry

    directory = _publish_four_class_model(tmp_path / "store", example_data_dir)
    config = TrainConfig.from_record(read_manifest(directory).training)
    distribution = calibrate_entry(directory, config).feature_distribution
    assert distribution is not None
    card = (directory / CARD_FILE).read_text()
    assert f"exceeds {distribution.threshold:.2f}" in section(card, "Out-of-distribution check")

    metrics = evaluate_entry(directory, example_data_dir, ("test_simple",))
    card = (directory / CARD_FILE).read_text()
    assert card == render_model_card(directory)
    accuracy = metrics["test_simple"]["accuracy"]
    assert f"| TEST_SIMPLE | 8 | {accuracy:.3f} " in section(card, "Metrics")


def _publish_four_class_model(store_dir: Path, data_dir: Path) -> Path:
    """An untrained model of the real architecture for the example data set's four classes,
    trained on every original (so calibration fits only the feature distribution)."""
    from model_core.store.manifest import Preprocessing
    from training.pipeline.model import build_model
    from training.pipeline.publish import publish
    from training.pipeline.train import TrainResult

    classes = sorted(p.name for p in (data_dir / "images" / "TRAIN").iterdir())
    config = TrainConfig(
        data_dir=data_dir,
        store_dir=store_dir,
        input_size=(32, 32),
        epochs=0,
        localise=False,
        validation_fraction=0.0,
    )
    result = TrainResult(
        model=build_model(len(classes), config.input_size),
        class_names=classes,
        preprocessing=Preprocessing(antialias=True),
        history={"loss": [1.0]},
        seconds_per_epoch=0.0,
        validation=None,
    )
    return publish(result, config)[0]


def test_file_names_agree_with_the_writers():
    from training.pipeline import calibration, publish
    from training.studies import explanation_quality, model_card_inputs

    assert model_card_inputs.REPORTS_DIR == publish.REPORTS_DIR
    assert model_card_inputs.CV_REPORT_FILE == calibration.CV_REPORT_FILE
    assert model_card_inputs.EXPLANATION_BASELINES == explanation_quality.BASELINES


def test_the_card_renders_without_tensorflow():
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from training.studies.model_card import render_model_card\n"
        f"render_model_card(Path({str(DEFAULT_ENTRY)!r}))\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True
    )
    assert loaded.stdout.strip() == "[]"

"""The model card: `README.md` in each model-store entry, a Hugging Face-style card written
by training from the entry's manifest and reports, never by hand. Publishing, evaluation,
calibration and the other studies that change an entry rewrite it; `python -m training
model-card` rewrites it on demand. It is for people: it is not an artefact (no checksum), and
nothing reads it back."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from model_core.store.entries import EntryNotFound, list_versions
from training.studies import model_card_checks as checks
from training.studies import model_card_scores as scores
from training.studies.model_card_inputs import (
    CV_REPORT_FILE,
    LOCALISER_FILE,
    SEED_REPORT_FILE,
    EntryFacts,
    number,
    read_entry,
    split_keys,
    split_label,
    table,
)
from training.studies.model_card_training import training_section

CARD_FILE = "README.md"
DOCS = "../../../docs"
DATA_CREDIT = "../../../examples/README.md"
Section = Callable[[EntryFacts], list[str]]


def render_model_card(entry_dir: Path) -> str:
    """The card of the entry in `entry_dir`, from its manifest and reports alone."""
    facts = read_entry(entry_dir)
    manifest = facts.manifest
    lines = [
        "---",
        "library_name: keras",
        "pipeline_tag: image-classification",
        "tags: [white-blood-cells, blood-smear, microscopy, research-only]",
        "---",
        "",
        f"# {manifest.name} v{manifest.version}",
        "",
        _summary(facts),
        "",
        "_Written by `training/studies/model_card.py` from this entry's `manifest.json` and "
        "`reports/`; do not edit: `python -m training model-card --model-name "
        f"{manifest.name} --version {manifest.version}` rewrites it._",
        "",
    ]
    for title, section in SECTIONS:
        lines += [f"## {title}", "", *_guarded(section, facts), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_model_card(entry_dir: Path) -> Path:
    """Write `<entry_dir>/README.md` atomically (a reader never sees half a card)."""
    path = Path(entry_dir) / CARD_FILE
    text = render_model_card(entry_dir)
    handle, partial = tempfile.mkstemp(dir=entry_dir, prefix=".README.", suffix=".md.partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def write_all_model_cards(store_dir: Path) -> list[Path]:
    """Rewrite the card of every version of every model in the store."""
    if not Path(store_dir).is_dir():
        raise EntryNotFound(f"there is no model store at {store_dir}")
    models = sorted(p.name for p in Path(store_dir).iterdir() if p.is_dir())
    return [
        write_model_card(Path(store_dir) / name / str(version))
        for name in models
        for version in list_versions(store_dir, name)
    ]


def _guarded(section: Section, facts: EntryFacts) -> list[str]:
    """A report of an unexpected shape costs its section, not the card (nor a publish)."""
    try:
        return section(facts)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        return [f"Could not be read from this entry ({type(error).__name__}: {error})."]


def _summary(facts: EntryFacts) -> str:
    manifest, settings = facts.manifest, facts.settings()
    height, width = manifest.input_size
    localisation = manifest.preprocessing.localisation
    seen = (
        f"the {localisation.window} px window around the white cell that a nucleus-colour "
        f"localiser finds in the frame (at {localisation.working_width} px width)"
        if localisation
        else "the whole frame"
    )
    mirror = (
        "; it answers the mean of that input's and its mirror image's softmax outputs"
        if manifest.preprocessing.flip_average
        else ""
    )
    arch = f"`{settings.arch}` widths, " if settings else ""
    scores = [
        f"{split_label(k)} accuracy {number(manifest.metrics[k]['accuracy'])} "
        f"({manifest.metrics[k].get('count', 'n/a')} images)"
        for k in ("test", "test_simple")
        if k in split_keys(manifest.metrics)
    ]
    return (
        f"A small SqueezeNet-style convolutional network ({arch}Keras "
        f"{manifest.framework.keras}, TensorFlow {manifest.framework.tensorflow}) that sorts a "
        "photo of a stained blood smear with one white blood cell of interest into "
        f"{manifest.num_classes} types: {', '.join(manifest.class_names)}. It sees {seen}, "
        f"resized to {height}x{width}{mirror}. {_how_trained(facts)} "
        + (f"Held-out test scores: {'; '.join(scores)}. " if scores else "Not yet evaluated. ")
        + _cross_validated(facts)
        + f"Published {manifest.created_at:%Y-%m-%d}. A research tool, not a diagnostic device."
    )


def _cross_validated(facts: EntryFacts) -> str:
    pooled = (facts.report(CV_REPORT_FILE) or {}).get("pooled")
    if not isinstance(pooled, dict) or "accuracy" not in pooled:
        return ""
    return (
        "Its recipe's cross-validated accuracy on train originals it did not see: "
        f"{number(pooled['accuracy'])}. "
    )


def _how_trained(facts: EntryFacts) -> str:
    settings, record = facts.settings(), facts.record
    if settings is None:
        return "Its training record does not parse."
    images = record.get("train_images", "n/a")
    source = (
        f"{images} augmented copies of the data set's train originals (images/TRAIN)"
        if settings.source == "train-folder"
        else f"{images} train originals, augmented during training"
    )
    held = (
        "refitted on every train original (none held out)"
        if not settings.holds_out()
        else f"with {record.get('validation_images', 'n/a')} validation images of held-out "
        "train originals"
    )
    return f"Trained for {settings.epochs} epochs (seed {settings.seed}) on {source}, {held}."


def intended_use_section(facts: EntryFacts) -> list[str]:
    manifest = facts.manifest
    localisation = manifest.preprocessing.localisation
    framing = (
        "It classifies the window around the cell its localiser finds; where it finds no single "
        "cell, the whole frame is classified and serving says so."
        if localisation
        else "It sees the whole frame, so other cells in it sway the answer."
    )
    return [
        "- **Use**: research and teaching (how a small network classifies white blood cells, "
        "and what its explanation maps show). It is not a medical device: not for diagnosis, "
        "triage or any decision about a patient.",
        f"- **Classes**: {', '.join(manifest.class_names)}, and nothing else: a basophil, a "
        "blast, debris or a frame with several white cells still gets one of these labels.",
        "- **Inputs**: images like the data set's frames: 320x240 (or the 640x480 originals) "
        "RGB photos of a stained peripheral blood smear from the BCCD microscope, with one white "
        f"cell of interest. {framing} Other stains, magnifications, cameras and scanners were "
        "never measured.",
        "- **Known failure modes** (from the metrics and reports below):",
        *(
            f"  - {item}"
            for item in (checks.failure_modes(facts) or ["none listed in the reports."])
        ),
    ]


def data_section(facts: EntryFacts) -> list[str]:
    metrics, settings = facts.manifest.metrics, facts.settings()
    held_out = settings is not None and settings.holds_out()
    rows = [
        ["training", facts.record.get("train_images", "n/a"), _training_images(facts)],
        [
            "validation",
            facts.record.get("validation_images", "n/a") if held_out else 0,
            _validation_images(facts),
        ],
    ]
    for key, what in (
        ("test", "augmented copies of the test originals (never read by training)"),
        ("test_simple", "the test originals themselves, un-augmented, resized to 320x240"),
    ):
        rows.append([split_label(key), metrics.get(key, {}).get("count", "not evaluated"), what])
    return [
        *table(["split", "images", "what"], rows),
        "",
        _test_originals(facts),
        "",
        "Data: the public `blood-cells` data set (BCCD-derived; Kaggle, Paul Mooney; built by "
        "Dhruv Parthasarathy's `wbc-classification`), whose images are resized originals of the "
        "BCCD Dataset (Shenggan, MIT licence); the `blood-cells` set is commonly described as "
        "MIT-licensed, which its publisher has not confirmed. Credit and the full licence text: "
        f"[examples/README.md]({DATA_CREDIT}).",
    ]


def _training_images(facts: EntryFacts) -> str:
    settings = facts.settings()
    if settings is None:
        return "n/a"
    if settings.source == "train-folder":
        return "images/TRAIN: the data set's augmented copies of the train originals"
    return f"train originals of splits.csv, augmented here ({settings.frame_copies()} copies each)"


def _validation_images(facts: EntryFacts) -> str:
    settings = facts.settings()
    if settings is None:
        return "n/a"
    if not settings.holds_out():
        return "none: a refit on every train original"
    share = (
        f"fold {settings.fold} of {settings.folds}"
        if settings.folds
        else f"{settings.validation_fraction:.0%}"
    )
    seed = settings.seed if settings.holdout_seed is None else settings.holdout_seed
    return f"{share} of the train originals (by class, holdout seed {seed}), all their copies"


def _test_originals(facts: EntryFacts) -> str:
    seeds, localiser = facts.report(SEED_REPORT_FILE), facts.report(LOCALISER_FILE)
    count = None
    if seeds and seeds.get("runs"):
        count = len(seeds["runs"][0].get("test_simple", {}).get("per_original", {})) or None
    if count is None and localiser:
        count = localiser.get("test_originals_640x480", {}).get("count")
    supports = facts.manifest.metrics.get("test_simple", {}).get("per_class", {})
    balance = ", ".join(f"{s.get('support')} {n}" for n, s in supports.items())
    return (
        "TEST and TEST_SIMPLE come from the test originals ("
        + (f"{count} of them" if count else "their number is not in this entry's reports")
        + "), none of which is behind TRAIN: both measure originals the model never saw. TEST's "
        "copies of one original stand or fall together, so TEST is worth about as much evidence "
        "as its originals" + (f"; TEST_SIMPLE is imbalanced ({balance})." if balance else ".")
    )


def files_section(facts: EntryFacts) -> list[str]:
    manifest = facts.manifest
    prep = manifest.preprocessing
    lines = [
        *table(["file", "SHA-256"], [[f"`{n}`", f"`{d}`"] for n, d in manifest.artefacts.items()]),
        "",
        "Serving checks these digests before it loads a file (`model_core.store.entries`). This "
        "card and `reports/` carry no digest: training rewrites them as it studies the entry.",
        "",
        f"Preprocessing (`preprocessing` in the manifest): `{prep.resize_method}` resize to "
        f"{manifest.input_size[0]}x{manifest.input_size[1]} (antialias {prep.antialias}), then "
        f"pixels x {prep.scale:.6g} + {prep.offset:g}. Layers: explanation "
        f"`{manifest.layers.explanation}`, features `{manifest.layers.features}`, logits "
        f"`{manifest.layers.logits}`.",
    ]
    if manifest.onnx is not None:
        lines += [
            "",
            f"`model.onnx`: the serving forward pass for ONNX Runtime ({manifest.onnx.exporter}, "
            f"opset {manifest.onnx.opset}).",
        ]
    return lines


def more_section(facts: EntryFacts) -> list[str]:
    return [
        f"- Training, evaluating and publishing: [docs/training.md]({DOCS}/training.md)",
        f"- Every version and why it was made: [docs/model-history.md]({DOCS}/model-history.md)",
    ]


SECTIONS: list[tuple[str, Section]] = [
    ("Intended use and limits", intended_use_section),
    ("Data and splits", data_section),
    ("Metrics", scores.metrics_section),
    ("Cross-validation", scores.cross_validation_section),
    ("Seeds", scores.seeds_section),
    ("Failing originals", scores.failing_originals_section),
    ("Calibration", checks.calibration_section),
    ("Out-of-distribution check", checks.ood_section),
    ("Review flag and colour robustness", checks.review_section),
    ("Cell localiser", checks.localiser_section),
    ("Explanation quality", checks.explanations_section),
    ("How it was trained", training_section),
    ("Files", files_section),
    ("More", more_section),
]

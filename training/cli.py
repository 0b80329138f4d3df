"""`python -m training train|evaluate`: the command line of the training package."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training.dataprep import fetch
from training.pipeline.config import DEFAULT_DATA_DIR, AugmentConfig, TrainConfig


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="data set root (default: %(default)s)",
    )


def _train_parser(
    subparsers,
    name: str = "train",
    help_text: str = "train a model and publish it as a new model-store version",
) -> argparse.ArgumentParser:
    from training.pipeline.model import ARCHITECTURES

    defaults, augment = TrainConfig(), AugmentConfig()
    parser = subparsers.add_parser(
        name,
        help=help_text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(parser)
    parser.add_argument(
        "--store-dir",
        type=Path,
        default=defaults.store_dir,
        help="model store root the new version is written into",
    )
    parser.add_argument("--model-name", default=defaults.model_name, help="model name in the store")
    parser.add_argument(
        "--source",
        choices=("originals", "train-folder"),
        default=defaults.source,
        help="train-folder: the data set's augmented copies in images/TRAIN, "
        "every copy of a held-out share of their originals kept for "
        "validation; originals: the train originals of splits.csv, augmented "
        "here, validated on held-out originals (images/TEST is never read)",
    )
    parser.add_argument(
        "--input-size", type=int, default=defaults.input_size[0], help="square input side in pixels"
    )
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHITECTURES),
        default=defaults.arch,
        help="network: the tutorial's fire modules, or 1.5x wider",
    )
    parser.add_argument(
        "--whole-frame",
        dest="localise",
        action="store_false",
        help="classify the whole frame (v1-v3) instead of the window around the white cell",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=defaults.window,
        help="side of the square window cut around the white cell, in pixels "
        "of a 320-wide frame, resized to the input size",
    )
    parser.add_argument(
        "--no-flip-average",
        dest="flip_average",
        action="store_false",
        default=defaults.flip_average,
        help="serve one view of the input instead of the mean of its and its "
        "left-right mirror's answers (test-time augmentation)",
    )
    parser.add_argument(
        "--bank-copies",
        type=int,
        default=defaults.bank_copies,
        help="augmented full-frame copies of each training frame, localised "
        "and cropped once per run (with the cell window; default: 16 for "
        "--source originals, 0 for train-folder)",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="global batch size (split across replicas)",
    )
    parser.add_argument(
        "--samples-per-epoch",
        type=int,
        default=defaults.samples_per_epoch,
        help="augmented samples per epoch with --source originals",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=defaults.initial_lr,
        help="initial Adam learning rate, halved every --lr-drop-every epochs",
    )
    parser.add_argument(
        "--lr-drop-every",
        type=int,
        default=defaults.lr_drop_every,
        help="step decay: lr = initial * 0.5 ** floor((1 + epoch) / N)",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=defaults.dropout,
        help="dropout rate before the dense layer (0: none, as the tutorial)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        help="label smoothing of the cross-entropy loss",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=defaults.validation_fraction,
        help="share of each class's train originals held out for validation, "
        "with all their copies (0: train on all)",
    )
    parser.add_argument(
        "--temperature-from",
        type=Path,
        default=None,
        help="with --validation-fraction 0 (nothing held out): carry over the "
        "temperature of this model-store entry folder, trained by the same "
        "recipe and seed with originals held out",
    )
    parser.add_argument(
        "--holdout-seed",
        type=int,
        default=defaults.holdout_seed,
        help="seeds which train originals are held out (the same for every "
        "--seed, so seeds are compared on the same originals)",
    )
    parser.add_argument(
        "--validation-copies",
        type=int,
        default=defaults.validation_copies,
        help="fixed augmented copies of each held-out original in validation (--source originals)",
    )
    parser.add_argument(
        "--best-epoch",
        dest="restore_best",
        action="store_true",
        default=defaults.restore_best,
        help="keep the weights of the epoch with the lowest validation loss "
        "instead of the last epoch's",
    )
    parser.add_argument(
        "--last-epoch",
        dest="restore_best",
        action="store_false",
        help="keep the last epoch's weights (the default)",
    )
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train without augmentation"
    )
    parser.add_argument(
        "--rotation", type=float, default=augment.rotation_degrees, help="max rotation in degrees"
    )
    parser.add_argument(
        "--shift",
        type=float,
        default=augment.shift_fraction,
        help="max shift as a fraction of width and height",
    )
    parser.add_argument(
        "--zoom", type=float, default=augment.zoom_fraction, help="max zoom in or out as a fraction"
    )
    parser.add_argument(
        "--shear", type=float, default=augment.shear, help="max shear angle in radians"
    )
    parser.add_argument(
        "--no-flips",
        dest="flips",
        action="store_false",
        help="no random horizontal and vertical flips",
    )
    parser.add_argument(
        "--color-jitter",
        type=float,
        default=augment.color_jitter,
        help="max relative change of brightness, contrast, saturation",
    )
    parser.add_argument(
        "--limit-per-class",
        type=int,
        default=None,
        help="use at most this many images per class (quick runs)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seeds weights, sampling, augmentation and the hold-out",
    )
    parser.add_argument(
        "--strategy",
        choices=("default", "mirrored", "one-device", "multi-worker"),
        default=defaults.strategy,
        help="tf.distribute strategy; "
        "multi-worker: one process per machine, the cluster in TF_CONFIG, "
        "only the chief publishes (training/pipeline/distributed.py)",
    )
    parser.add_argument(
        "--cpu-replicas",
        type=int,
        default=1,
        help="split the CPU into N logical devices (for --strategy mirrored without GPUs)",
    )
    parser.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        help="BackupAndRestore folder: an interrupted run resumes from it "
        "(runs/<model-name>/backup when not given)",
    )
    parser.add_argument(
        "--no-evaluate",
        dest="evaluate",
        action="store_false",
        help="skip evaluating on TEST and TEST_SIMPLE after publishing",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data_dir=args.data_dir,
        store_dir=args.store_dir,
        model_name=args.model_name,
        source=args.source,
        input_size=(args.input_size, args.input_size),
        arch=args.arch,
        localise=args.localise,
        window=args.window,
        flip_average=args.flip_average,
        bank_copies=args.bank_copies,
        epochs=args.epochs,
        batch_size=args.batch_size,
        samples_per_epoch=args.samples_per_epoch,
        initial_lr=args.lr,
        lr_drop_every=args.lr_drop_every,
        dropout=args.dropout,
        label_smoothing=args.label_smoothing,
        validation_fraction=args.validation_fraction,
        holdout_seed=args.holdout_seed,
        temperature_from=args.temperature_from,
        validation_copies=args.validation_copies,
        restore_best=args.restore_best,
        augment=args.augment,
        augmentation=AugmentConfig(
            rotation_degrees=args.rotation,
            shift_fraction=args.shift,
            zoom_fraction=args.zoom,
            shear=args.shear,
            flips=args.flips,
            color_jitter=args.color_jitter,
        ),
        limit_per_class=args.limit_per_class,
        seed=args.seed,
        strategy=args.strategy,
        cpu_replicas=args.cpu_replicas,
        backup_dir=args.backup_dir or Path("runs") / args.model_name / "backup",
        evaluate=args.evaluate,
    )


def _entry_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    _add_common(parser)
    parser.add_argument(
        "--store-dir", type=Path, default=Path("model_store"), help="model store root"
    )
    parser.add_argument(
        "--model-name", default=TrainConfig().model_name, help="model name in the store"
    )
    parser.add_argument("--version", type=int, default=None, help="default: the newest")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description="Train and evaluate the white-blood-cell model."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _train_parser(subparsers)
    cross = _train_parser(
        subparsers,
        "cross-validate",
        "train the recipe on each of K grouped folds of the train originals (each original "
        "held out once), pool the out-of-fold answers and fit their temperature; resumes "
        "folds already done",
    )
    cross.add_argument("--folds", type=int, default=4, help="number of folds (K)")
    cross.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        help="each fold's store and answers, and cv_report.json/.md (folds "
        "replace --validation-fraction; --store-dir, --backup-dir and "
        "evaluation do not apply)",
    )
    evaluate = _entry_parser(
        subparsers, "evaluate", "score a model-store entry on TEST and TEST_SIMPLE, write reports"
    )
    evaluate.add_argument(
        "--splits", nargs="+", choices=("test", "test_simple"), default=["test", "test_simple"]
    )
    calibrate = _entry_parser(
        subparsers,
        "calibrate",
        "fit the softmax temperature and the feature distribution of an entry",
    )
    calibrate.add_argument(
        "--temperature-from",
        type=Path,
        default=None,
        help="for an entry trained on every train original (--validation-fraction 0): carry "
        "over the temperature of this entry folder, trained by the same recipe and seed with "
        "originals held out, or of a cross-validate report (cv_report.json) of them",
    )
    seeds = subparsers.add_parser(
        "seed-report",
        help="score entries of the same recipe with different seeds on TEST "
        "and TEST_SIMPLE, with accuracy per original",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(seeds)
    seeds.add_argument("entries", type=Path, nargs="+", help="entry folders, one per seed")
    seeds.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        help="writes seed_report.json and seed_report.md here",
    )
    seeds.add_argument(
        "--mapping-cache",
        type=Path,
        default=Path("runs/test_originals.json"),
        help="TEST image -> original matches, computed once (minutes)",
    )
    promote = subparsers.add_parser(
        "promote",
        help="publish an entry trained into another store (e.g. the best seed) "
        "as the next version in --store-dir",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    promote.add_argument("source", type=Path, help="the entry folder to publish")
    promote.add_argument(
        "--store-dir",
        type=Path,
        default=Path("model_store"),
        help="model store root the new version is written into",
    )
    _entry_parser(
        subparsers,
        "evaluate-localiser",
        "score an entry's cell localiser against the annotated WBC boxes",
    )
    _entry_parser(
        subparsers,
        "export-onnx",
        "add model.onnx (the forward pass for ONNX Runtime) to an existing entry",
    )
    explain = _entry_parser(
        subparsers, "evaluate-explanations", "score every explanation method against the WBC boxes"
    )
    explain.add_argument(
        "--keep-layer",
        dest="choose_layer",
        action="store_false",
        help="keep the manifest's explanation layer instead of choosing "
        "the best on the train originals",
    )
    fetch.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch-data":
        return fetch.run(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.pipeline.cluster import ClusterConfigError
    from training.pipeline.data import DataError

    try:
        if args.command == "train":
            return _run_train(config_from_args(args))
        if args.command == "cross-validate":
            if args.temperature_from is not None:
                raise DataError(
                    "cross-validate fits its own temperature: --temperature-from "
                    "is for a refit (train or calibrate)"
                )
            return _run_cross_validate(config_from_args(args), args.folds, args.output_dir)
        if args.command == "calibrate":
            return _run_calibrate(args)
        if args.command == "promote":
            from training.pipeline.publish import promote

            directory, manifest = promote(args.source, args.store_dir)
            print(f"published {manifest.name} v{manifest.version} to {directory}")
            return 0
        if args.command == "seed-report":
            return _run_seed_report(args)
        if args.command == "evaluate-localiser":
            return _run_localiser(args)
        if args.command == "export-onnx":
            return _run_export_onnx(args)
        if args.command == "evaluate-explanations":
            return _run_explanations(args)
        return _run_evaluate(args)
    except (DataError, ClusterConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run_train(config: TrainConfig) -> int:
    from training.pipeline.train import configure_devices

    configure_devices(config.cpu_replicas)
    from training.pipeline.calibration import calibrate_entry, carried_temperature
    from training.pipeline.evaluate import evaluate_entry, summary_line
    from training.pipeline.publish import publish
    from training.pipeline.train import train

    if config.temperature_from is not None:  # a temperature that won't carry: refuse it now
        carried_temperature(config.temperature_from, config.to_record())
    if config.strategy == "multi-worker":
        from training.pipeline.distributed import train_on_workers

        result = train_on_workers(config)
        if result is None:  # not the chief: the chief publishes
            return 0
    else:
        result = train(config)
    directory, manifest = publish(result, config)
    print(
        f"published {manifest.name} v{manifest.version} to {directory} "
        f"({result.seconds_per_epoch:.1f} s/epoch)"
    )
    calibrate_entry(directory, config, temperature_from=config.temperature_from)
    extra = {"validation": result.validation} if result.validation is not None else {}
    splits = ("test", "test_simple") if config.evaluate else ()
    metrics = evaluate_entry(directory, config.data_dir, splits, extra)
    print(summary_line(metrics))
    return 0


def _run_cross_validate(config: TrainConfig, folds: int, output_dir: Path) -> int:
    from training.pipeline.train import configure_devices

    configure_devices(config.cpu_replicas)
    from training.studies.cross_validation import cross_validate, markdown

    print(markdown(cross_validate(config, folds, output_dir)))
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from training.pipeline.evaluate import evaluate_entry, summary_line

    metrics = evaluate_entry(_entry(args), args.data_dir, tuple(args.splits))
    print(summary_line({k: metrics[k] for k in args.splits}))
    return 0


def _entry(args: argparse.Namespace) -> Path:
    from model_core.store.entries import entry_dir

    return entry_dir(args.store_dir, args.model_name, args.version)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from training.pipeline.onnx_export import export_entry

    directory = _entry(args)
    manifest = export_entry(directory)
    assert manifest.onnx is not None
    print(
        f"wrote {directory / 'model.onnx'} ({manifest.onnx.exporter}, opset "
        f"{manifest.onnx.opset}, features of {manifest.onnx.feature_layers})"
    )
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    from model_core.store.entries import read_manifest
    from training.pipeline.calibration import calibrate_entry

    directory = _entry(args)
    config = TrainConfig.from_record(read_manifest(directory).training)
    config.data_dir = args.data_dir
    manifest = calibrate_entry(directory, config, temperature_from=args.temperature_from)
    assert manifest.feature_distribution
    temperature = (
        f"temperature {manifest.calibration.temperature:.3f}"
        if manifest.calibration
        else "no temperature (no held-out images; see --temperature-from)"
    )
    print(
        f"{temperature}; out-of-distribution threshold "
        f"{manifest.feature_distribution.threshold:.2f}"
    )
    return 0


def _run_seed_report(args: argparse.Namespace) -> int:
    import json

    from training.studies.seed_report import markdown, seed_report

    report = seed_report(args.entries, args.data_dir, args.mapping_cache)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "seed_report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output_dir / "seed_report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _run_localiser(args: argparse.Namespace) -> int:
    from model_core.store.entries import read_manifest
    from training.pipeline.data import DataError
    from training.pipeline.publish import REPORTS_DIR
    from training.studies.localiser_report import (
        evaluate_localiser,
        markdown,
        write_localiser_report,
    )

    directory = _entry(args)
    manifest = read_manifest(directory)
    if manifest.preprocessing.localisation is None:
        raise DataError(
            f"{manifest.name} v{manifest.version} classifies the whole frame: it "
            "has no localiser to measure (preprocessing.localisation is null)"
        )
    report = evaluate_localiser(args.data_dir, manifest.preprocessing.localisation)
    write_localiser_report(report, directory / REPORTS_DIR)
    print(markdown(report))
    return 0


def _run_explanations(args: argparse.Namespace) -> int:
    from training.studies.explanation_report import evaluate_explanations, markdown_table

    print(markdown_table(evaluate_explanations(_entry(args), args.data_dir, args.choose_layer)))
    return 0

"""`python -m training train|evaluate`: the command line of the training package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_core.quiet import quiet_tensorflow
from training.dataprep import fetch
from training.pipeline import options
from training.pipeline.config import TrainConfig
from training.pipeline.options import add_arguments


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, TrainConfig, only={"data_dir"})


def _train_parser(
    subparsers,
    name: str = "train",
    help_text: str = "train a model and publish it as a new model-store version",
) -> argparse.ArgumentParser:
    """A subcommand that takes every training setting as a flag (derived from TrainConfig)."""
    parser = subparsers.add_parser(
        name,
        help=help_text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser, TrainConfig, command=name)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = options.config_from_args(TrainConfig, args)
    if config.backup_dir is None:  # the command line always keeps a backup
        config.backup_dir = Path("runs") / config.model_name / "backup"
    return config


def _entry_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_arguments(parser, TrainConfig, only={"data_dir", "store_dir", "model_name"})
    parser.add_argument("--version", type=int, default=None, help="default: the newest")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description="Train and evaluate the white-blood-cell model."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="let TensorFlow log its start-up (oneDNN, CPU features, devices) and warnings; "
        "without it, TF_CPP_MIN_LOG_LEVEL is 2 (errors only) unless you set it",
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
        "--white-balance",
        action="store_true",
        help="publish the weights with the background white balance in front "
        "(preprocessing.white_balance); evaluate and calibrate the new version after",
    )
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
    review = _entry_parser(
        subparsers,
        "evaluate-review",
        "fit an entry's review threshold on its held-out train originals and score its "
        "served answers (coverage, accepted accuracy, AURC), unchanged and colour-shifted",
    )
    review.add_argument(
        "--target-accuracy",
        type=float,
        default=0.98,
        help="the accuracy the accepted answers must keep where the threshold is fitted",
    )
    review.add_argument(
        "--no-fit", action="store_true", help="score the manifest's policy as it is"
    )
    review.add_argument(
        "--answers-from",
        type=Path,
        default=None,
        help="for an entry trained on every train original: fit on the originals this entry "
        "folder (the same recipe and seed, with originals held out) held out",
    )
    review.add_argument(
        "--splits", nargs="*", choices=("test", "test_simple"), default=["test_simple", "test"]
    )
    review.add_argument(
        "--shifted",
        nargs="*",
        choices=("validation", "test", "test_simple"),
        default=["validation", "test_simple"],
        help="the sets also scored under every colour shift (training/studies/colour_shifts.py)",
    )
    _entry_parser(
        subparsers,
        "measure-stain",
        "measure the TRAIN frames' red-cell stain range and write it into an entry's manifest "
        "(preprocessing.stain_range: answers on images stained outside it are flagged)",
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
    card = subparsers.add_parser(
        "model-card",
        help="write the model card (README.md) of an entry from its manifest and reports",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(card, TrainConfig, only={"store_dir", "model_name"})
    which = card.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="default: the newest")
    which.add_argument(
        "--all", action="store_true", help="every version of every model in --store-dir"
    )
    fetch.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # imports no TensorFlow (tests/training/test_cli.py)
    if args.command == "fetch-data":
        return fetch.run(args)
    if args.command == "model-card":
        return _run_model_card(args)
    quiet_tensorflow(args.verbose)  # the first import of TensorFlow
    from model_core.store.entries import StoreError
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

            directory, manifest = promote(args.source, args.store_dir, args.white_balance)
            print(f"published {manifest.name} v{manifest.version} to {directory}")
            return 0
        if args.command == "seed-report":
            return _run_seed_report(args)
        if args.command == "measure-stain":
            return _run_measure_stain(args)
        if args.command == "evaluate-localiser":
            return _run_localiser(args)
        if args.command == "export-onnx":
            return _run_export_onnx(args)
        if args.command == "evaluate-review":
            return _run_review(args)
        if args.command == "evaluate-explanations":
            return _run_explanations(args)
        return _run_evaluate(args)
    except (DataError, ClusterConfigError, StoreError) as error:  # e.g. no such version
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
    if config.init_from is not None:  # an entry that is not there: refuse it now
        from model_core.store.entries import read_manifest

        read_manifest(config.init_from)
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


def _run_measure_stain(args: argparse.Namespace) -> int:
    from training.studies.stain_range import measure_stain_range

    manifest = measure_stain_range(_entry(args), args.data_dir)
    stain = manifest.preprocessing.stain_range
    assert stain is not None
    print(f"stain range: hue {stain.hue}, saturation {stain.saturation} ({stain.measured_on})")
    return 0


def _run_localiser(args: argparse.Namespace) -> int:
    from model_core.store.entries import read_manifest
    from model_core.store.manifest import REPORTS_DIR
    from training.pipeline.data import DataError
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


def _run_review(args: argparse.Namespace) -> int:
    from training.studies.review_report import evaluate_review, markdown

    report = evaluate_review(
        _entry(args),
        args.data_dir,
        args.target_accuracy,
        not args.no_fit,
        args.answers_from,
        tuple(args.splits),
        tuple(args.shifted),
    )
    print(markdown(report))
    return 0


def _run_explanations(args: argparse.Namespace) -> int:
    from training.studies.explanation_report import evaluate_explanations, markdown_table

    print(markdown_table(evaluate_explanations(_entry(args), args.data_dir, args.choose_layer)))
    return 0


def _run_model_card(args: argparse.Namespace) -> int:
    from model_core.store.entries import StoreError, entry_dir
    from training.studies.model_card import write_all_model_cards, write_model_card

    try:
        written = (
            write_all_model_cards(args.store_dir)
            if args.all
            else [write_model_card(entry_dir(args.store_dir, args.model_name, args.version))]
        )
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0

"""`python -m training`: flags derived from TrainConfig keep their names, defaults and
effects; records stay as they were; TensorFlow's start-up stays off stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from training.cli import build_parser, config_from_args
from training.pipeline.config import Arch, AugmentConfig, TrainConfig
from training.pipeline.options import field_docs

ROOT = Path(__file__).resolve().parents[2]
BACKUP = Path("runs") / "wbc-squeezenet" / "backup"

# Every flag of `train` (users' commands, the README, deploy/ and the tests use them) and
# the settings it gives, where they differ from the defaults.
FLAGS = [
    (["--data-dir", "d"], {"data_dir": Path("d")}),
    (["--store-dir", "s"], {"store_dir": Path("s")}),
    (["--model-name", "m"], {"model_name": "m", "backup_dir": Path("runs/m/backup")}),
    (["--source", "originals"], {"source": "originals"}),
    (["--input-size", "128"], {"input_size": (128, 128)}),
    (["--arch", "wide"], {"arch": "wide"}),
    (["--whole-frame"], {"localise": False}),
    (["--window", "144"], {"window": 144}),
    (["--no-flip-average"], {"flip_average": False}),
    (["--bank-copies", "3"], {"bank_copies": 3}),
    (["--epochs", "9"], {"epochs": 9}),
    (["--batch-size", "16"], {"batch_size": 16}),
    (["--samples-per-epoch", "32"], {"samples_per_epoch": 32}),
    (["--lr", "0.004"], {"initial_lr": 0.004}),
    (["--lr-drop-every", "10"], {"lr_drop_every": 10}),
    (["--dropout", "0.2"], {"dropout": 0.2}),
    (["--label-smoothing", "0.1"], {"label_smoothing": 0.1}),
    (["--validation-fraction", "0"], {"validation_fraction": 0.0}),
    (["--temperature-from", "e/5"], {"temperature_from": Path("e/5")}),
    (["--holdout-seed", "3"], {"holdout_seed": 3}),
    (["--validation-copies", "1"], {"validation_copies": 1}),
    (["--best-epoch"], {"restore_best": True}),
    (["--best-epoch", "--last-epoch"], {"restore_best": False}),
    (["--no-augment"], {"augment": False}),
    (["--rotation", "5"], {"augmentation": AugmentConfig(rotation_degrees=5.0)}),
    (["--shift", "0.2"], {"augmentation": AugmentConfig(shift_fraction=0.2)}),
    (["--zoom", "0.1"], {"augmentation": AugmentConfig(zoom_fraction=0.1)}),
    (["--shear", "0"], {"augmentation": AugmentConfig(shear=0.0)}),
    (["--no-flips"], {"augmentation": AugmentConfig(flips=False)}),
    (["--color-jitter", "0.1"], {"augmentation": AugmentConfig(color_jitter=0.1)}),
    (["--limit-per-class", "4"], {"limit_per_class": 4}),
    (["--seed", "5"], {"seed": 5}),
    (["--strategy", "mirrored"], {"strategy": "mirrored"}),
    (["--cpu-replicas", "2"], {"cpu_replicas": 2}),
    (["--backup-dir", "b"], {"backup_dir": Path("b")}),
    (["--no-evaluate"], {"evaluate": False}),
]


def _config(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults_are_the_configs():
    assert _config("train") == TrainConfig(backup_dir=BACKUP)


@pytest.mark.parametrize("command", ["train", "cross-validate"])
@pytest.mark.parametrize("argv, settings", FLAGS, ids=[" ".join(argv) for argv, _ in FLAGS])
def test_every_flag_reaches_its_setting(command, argv, settings):
    extra = ["--output-dir", "o"] if command == "cross-validate" else []
    expected = TrainConfig(backup_dir=BACKUP)
    for name, value in settings.items():
        setattr(expected, name, value)
    assert _config(command, *argv, *extra) == expected


def test_fold_method_is_a_flag_of_cross_validate_only():
    config = _config("cross-validate", "--output-dir", "o", "--fold-method", "round-robin")
    assert config.fold_method == "round-robin" and config.folds is None  # --folds: the study's
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--fold-method", "round-robin"])


def _help(command: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "training", command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert completed.returncode == 0, completed.stderr
    return " ".join(completed.stdout.split())


def test_help_shows_every_flag_with_its_help_and_default():
    text = _help("train")
    flags = {argv[0] for argv, _ in FLAGS} | {"--last-epoch"}
    for flag in flags:
        assert flag in text
    assert "--lr LR Initial Adam learning rate" in text and "(default: 0.001)" in text
    # A switch says what it turns, and which way is the default.
    assert "--whole-frame turn localise off; localise: Classify the window" in text
    assert "--best-epoch turn restore_best on; restore_best:" in text
    assert "--last-epoch turn restore_best off (the default); restore_best:" in text
    assert "--source {originals,train-folder}" in text
    assert "--arch {tutorial,wide}" in text and "--rotation ROTATION Max rotation" in text


def test_every_setting_is_a_documented_flag_or_kept_off_the_command_line():
    """A field without a docstring would be a flag without help."""
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions}
    off = {"folds", "fold", "fill_value", "fold_method"}  # fold_method: cross-validate's
    for config_class, prefix in ((TrainConfig, ""), (AugmentConfig, "augmentation.")):
        docs = field_docs(config_class)
        for field in fields(config_class):
            if field.name == "augmentation":
                continue
            assert field.name in docs, f"{field.name} has no docstring"
            assert (prefix + field.name in dests) == (field.name not in off), field.name


def test_arch_choices_are_the_models_architectures():
    from training.pipeline.model import ARCHITECTURES

    assert sorted(typing.get_args(Arch)) == sorted(ARCHITECTURES)


def test_building_and_parsing_imports_no_tensorflow():
    """So `--help` answers at once, and the quieting below runs before TensorFlow loads."""
    probe = (
        "import sys\n"
        "from training.cli import build_parser, config_from_args\n"
        "config_from_args(build_parser().parse_args(['train']))\n"
        "print('tensorflow' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert completed.stdout.split() == ["False", "False"], completed.stderr


STORED = sorted((ROOT / "model_store" / "wbc-squeezenet").glob("*/manifest.json"))


@pytest.mark.parametrize("manifest", STORED, ids=[p.parent.name for p in STORED])
def test_stored_records_read_and_write_back_as_they_were(manifest):
    record = json.loads(manifest.read_text())["training"]
    config = TrainConfig.from_record(record)
    written = config.to_record()
    for key in set(record) & set(written):  # the settings the entry recorded, byte for byte
        if key == "augmentation":  # shear came later (the legacy 0.0 fills it in)
            recorded = {k: v for k, v in written[key].items() if k in record[key]}
            assert json.dumps(recorded) == json.dumps(record[key])
        else:
            assert json.dumps(written[key]) == json.dumps(record[key]), key
    assert TrainConfig.from_record(written) == config
    assert config.fold_method == "round-robin"  # dealt before StratifiedGroupKFold


def test_records_keep_their_keys_in_order():
    assert list(TrainConfig().to_record()) == [
        "data_dir",
        "store_dir",
        "model_name",
        "source",
        "input_size",
        "arch",
        "localise",
        "window",
        "white_balance",
        "flip_average",
        "bank_copies",
        "epochs",
        "init_from",
        "batch_size",
        "samples_per_epoch",
        "initial_lr",
        "lr_drop_every",
        "dropout",
        "label_smoothing",
        "validation_fraction",
        "folds",
        "fold",
        "fold_method",
        "holdout_seed",
        "temperature_from",
        "validation_copies",
        "restore_best",
        "augment",
        "augmentation",
        "limit_per_class",
        "seed",
        "strategy",
        "cpu_replicas",
        "backup_dir",
        "evaluate",
    ]


TF_START_UP = ("oneDNN custom operations", "cpu_feature_guard", "absl::InitializeLog")


def _train_without_data(tmp_path: Path, *options: str, **environ: str) -> str:
    """stderr of `python -m training [options] train` on a missing data folder: it imports
    TensorFlow, then stops with a clear error."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | environ
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            *options,
            "train",
            "--data-dir",
            str(tmp_path / "missing"),
            "--store-dir",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "error: expected a folder of class folders" in completed.stderr
    return completed.stderr


def test_tensorflow_start_up_stays_off_stderr(tmp_path):
    stderr = _train_without_data(tmp_path)
    assert not [line for line in TF_START_UP if line in stderr], stderr
    assert stderr.strip().splitlines() == [stderr.strip().splitlines()[-1]]  # the error alone


@pytest.mark.parametrize(
    "options, environ", [(["--verbose"], {}), (["-v"], {}), ([], {"TF_CPP_MIN_LOG_LEVEL": "0"})]
)
def test_verbose_or_the_users_log_level_lets_tensorflow_log(tmp_path, options, environ):
    stderr = _train_without_data(tmp_path, *options, **environ)
    assert [line for line in TF_START_UP if line in stderr], stderr


def test_fine_tuning_from_a_folder_that_is_no_entry_stops_before_training(tmp_path, capsys):
    from training.cli import main

    code = main(["train", "--init-from", str(tmp_path / "nothing"), "--data-dir", str(tmp_path)])
    assert code == 2
    assert f"no manifest.json in {tmp_path / 'nothing'}" in capsys.readouterr().err

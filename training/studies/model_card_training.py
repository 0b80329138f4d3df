"""How an entry was trained, for its model card: the `python -m training train` command its
training record stands for (every setting that decides the model spelled out, so it does not
lean on today's defaults), what the run recorded, and the settings themselves."""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import fields
from typing import Any

from training.pipeline import options
from training.pipeline.config import AugmentConfig, TrainConfig
from training.studies.model_card_inputs import HISTORY_FILE, SETTINGS, EntryFacts, number, table

TRAIN = "train"
# Settings that mean something only in a fold of `cross-validate`, which sets them.
FOLD_SETTINGS = ("folds", "fold", "fold_method")


def run_results(record: dict[str, Any]) -> dict[str, Any]:
    """What the run measured or was told afterwards (counts, timings, notes): every record key
    that is not a training setting."""
    return {key: value for key, value in record.items() if key not in SETTINGS}


def recorded_settings(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key in SETTINGS}


def train_command(record: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The arguments of `python -m training train` that give back the record's settings, each
    flag of the command spelled out (so the command does not lean on today's defaults; the
    flags derive from TrainConfig, `training.pipeline.options`), and a note per setting no flag
    of `train` can set, keyed by setting."""
    config = TrainConfig.from_record(record)
    parser = argparse.ArgumentParser(add_help=False)
    options.add_arguments(parser, TrainConfig, command=TRAIN)
    arguments: list[str] = []
    for action in parser._actions:  # argparse offers no public list of them
        value = _flag_value(config, action.dest)
        if action.nargs == 0:  # a switch: given where it sets the recorded value
            if value == action.const:
                arguments.append(action.option_strings[0])
        elif value is not None:
            arguments += [action.option_strings[0], str(value)]
    rebuilt = options.config_from_args(TrainConfig, parser.parse_args(arguments))
    return arguments, _unexpressed(config, rebuilt)


def _flag_value(config: Any, dest: str) -> Any:
    """The value of the flag whose `dest` is a (dotted) field of `config`."""
    *owners, name = dest.split(".")
    for owner in owners:
        config = getattr(config, owner)
    field = next(f for f in fields(config) if f.name == name)
    described = next((m for m in field.metadata.values() if isinstance(m, options.Flag)), None)
    value = getattr(config, name)
    return described.from_config(value) if described and described.from_config else value


def _unexpressed(config: TrainConfig, rebuilt: TrainConfig) -> dict[str, str]:
    ignored = FOLD_SETTINGS if config.folds is None else ()
    recorded, given = _flat(config.to_record()), _flat(rebuilt.to_record())
    docs = options.field_docs(TrainConfig) | {
        f"augmentation.{k}": v for k, v in options.field_docs(AugmentConfig).items()
    }
    return {
        key: f"`{key}` is {json.dumps(value)} in the record, and no flag of `{TRAIN}` sets it "
        f"(the command gives {json.dumps(given[key])}). {docs.get(key, '')}".rstrip()
        for key, value in recorded.items()
        if value != given[key] and key.split(".")[0] not in ignored
    }


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def training_section(facts: EntryFacts) -> list[str]:
    arguments, notes = train_command(facts.record)
    lines = [
        "The command, from the manifest's `training` record (every setting spelled out):",
        "",
        "```bash",
        _wrapped(["python", "-m", "training", "train", *arguments]),
        "```",
        "",
    ]
    lines += [f"- Note: {note}" for note in notes.values()]
    results = run_results(facts.record)
    if "promoted_from" in results:
        lines.append(
            f"- Trained into another store and published here with `python -m training promote "
            f"{shlex.quote(str(results['promoted_from']))}`."
        )
    lines += ["", "What the run recorded:", ""]
    lines += table(
        ["recorded", "value"], [[key, json.dumps(value)] for key, value in results.items()]
    )
    history = facts.report(HISTORY_FILE)
    if history and history.get("loss"):
        last = {k: v[-1] for k, v in history.items() if isinstance(v, list) and v}
        lines += [
            "",
            f"Last of {len(history['loss'])} epochs: "
            + ", ".join(f"{k} {number(v, 4)}" for k, v in last.items())
            + (
                "; curves: [reports/training_curves.png](reports/training_curves.png)"
                if facts.has_file("training_curves.png")
                else ""
            )
            + ".",
        ]
    settings = recorded_settings(facts.record)
    block = ",\n".join(
        f" {json.dumps(key)}: {json.dumps(value)}" for key, value in settings.items()
    )
    return lines + ["", "The recorded settings:", "", "```json", "{", block, "}", "```"]


def _wrapped(words: list[str], width: int = 88) -> str:
    """Flags with their values, wrapped into shell continuation lines."""
    groups, index = [shlex.join(words[:4])], 4
    while index < len(words):
        take = 2 if index + 1 < len(words) and not words[index + 1].startswith("--") else 1
        groups.append(shlex.join(words[index : index + take]))
        index += take
    lines = [groups[0]]
    for group in groups[1:]:
        if len(lines[-1]) + len(group) + 3 > width:
            lines[-1] += " \\"
            lines.append("  " + group)
        else:
            lines[-1] += " " + group
    return "\n".join(lines)

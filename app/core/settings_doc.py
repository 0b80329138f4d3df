"""The configuration table of docs/operations.md, generated from `Settings`.

    python -m app.core.settings_doc                            # print the table
    python -m app.core.settings_doc --write docs/operations.md # replace it between the markers

Each row is one field: its environment variable, its default and its docstring, so the
table cannot drift from the code (tests/test_docs.py compares the two).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from app.core.settings import Settings

START = "<!-- settings-table:start (python -m app.core.settings_doc --write docs/operations.md) -->"
END = "<!-- settings-table:end -->"


def env_name(name: str, field: FieldInfo) -> str:
    """The variable read first: the alias a field declares, else WBC_<FIELD>."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return Settings.model_config["env_prefix"] + name.upper()


def shown_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        meaning = " ".join((field.description or "").split())
        meaning = meaning.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{env_name(name, field)}` | {shown_default(default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def with_table(text: str, table: str) -> str:
    """`text` with the region between START and END replaced by `table`."""
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"expected the markers {START!r} and {END!r}")
    return f"{before}{START}\n{table}{END}{after}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.core.settings_doc")
    parser.add_argument("--write", type=Path, help="a Markdown file holding the markers")
    args = parser.parse_args(argv)
    if args.write is None:
        print(settings_table(), end="")
        return
    args.write.write_text(with_table(args.write.read_text(), settings_table()))


if __name__ == "__main__":
    main()

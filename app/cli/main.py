"""`wbc-explain`: the project's console script (installed by the set-up into .venv/bin)."""

from __future__ import annotations

import sys

USAGE = """usage: wbc-explain score PATH... --output results.csv [--report report.html] [--url URL]

commands:
  score   classify every white cell in image files and folders (wbc-explain score --help)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "score":
        from model_core.quiet import quiet_tensorflow

        quiet_tensorflow()  # before the first import of TensorFlow
        from app.cli.score import main as score

        return score(args[1:])
    print(f"wbc-explain: unknown command {args[0]!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `avmaster` command. Each module that owns a command registers it here.

    avmaster data fetch <dataset>     official annotation files, checksummed    (download.py)
    avmaster synth                    generate the bundled synthetic benchmark  (synthetic.py)
    avmaster train / evaluate / score train, evaluate, score predictions        (engine_cli.py)
    avmaster sweep                    experiments x seeds, mean ± std tables    (sweep.py)
    avmaster extract / ask            features from raw videos; ask a question  (extract/pipeline.py)
    avmaster benchmark                model speed and memory                    (benchmark.py)
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .threads import add_threads_argument, apply_threads

# module -> it defines `register(subparsers)`; each registered parser sets `func=` (called with args).
COMMAND_MODULES = (
    "avmaster_core.download",
    "avmaster_core.synthetic",
    "avmaster_core.engine_cli",
    "avmaster_core.sweep",
    "avmaster_core.extract.pipeline",
    "avmaster_core.benchmark",
    "avmaster_core.store_cli",
    "avmaster_core.reproduce_run",
)
# commands that compute: each gets `--threads` (threads.py), applied before the command runs
COMPUTING_COMMANDS = ("train", "sweep", "evaluate", "benchmark", "extract", "ask")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avmaster",
        description="AV-Master reproduction: data, features, training, evaluation. "
                    "Run `avmaster <command> --help` for each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that command is not built yet
                continue
            raise
        module.register(sub)
    for name in COMPUTING_COMMANDS:
        if name in sub.choices:
            add_threads_argument(sub.choices[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    apply_threads(args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

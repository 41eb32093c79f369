"""The `avmaster` command. Each module that owns a command registers it here.

    avmaster data fetch <dataset>     official annotation files, checksummed    (download.py)
    avmaster synth                    generate the bundled synthetic benchmark  (synthetic.py)
    avmaster train / evaluate / score train, evaluate, score predictions        (engine_cli.py)
    avmaster sweep                    experiments x seeds, mean ± std tables    (sweep.py)
    avmaster extract / ask            features from raw videos; ask a question  (extract/pipeline.py)
    avmaster benchmark                model speed and memory                    (benchmark.py)
    avmaster runs check DIR           which commit and configuration made runs  (provenance.py)
    avmaster report                   the executed notebooks as a static website (website.py)

Errors: a domain error (bad file, bad option, missing feature, ...; see `domain_errors`) is printed as one
line `avmaster <command>: <message>` and exits 1; `--debug` or AVMASTER_DEBUG=1 shows the traceback instead.
Ctrl-C exits 130 with how to continue; a closed output pipe (`avmaster data list | head`) exits quietly.
"""
from __future__ import annotations

import argparse
import importlib
import os
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
    "avmaster_core.provenance",
    "avmaster_core.website",
)
# commands that compute: each gets `--threads` (threads.py), applied before the command runs
COMPUTING_COMMANDS = ("train", "sweep", "evaluate", "benchmark", "extract", "ask")

# How to continue after Ctrl-C, per command (default: rerun it; every long command resumes).
RESUME_HINTS = {
    "train": "rerun the same command with --resume to continue from the last checkpoint (last.pt)",
    "sweep": "rerun the same command: finished runs are skipped and the interrupted one resumes",
    "extract": "rerun the same command: finished videos and questions are kept and skipped",
    "store": "rerun the same command: it continues from <store>.partial and renames it when done",
    "data": "rerun the same command: downloads resume",
    "reproduce": "rerun the same command: finished items are never redone and interrupted runs resume",
}


class AvmasterError(Exception):
    """Base class for errors that are the user's input, not a bug: the CLI prints them as one line."""


def domain_errors() -> tuple[type[BaseException], ...]:
    """The exception classes the CLI reports as a message (the package's own, and the usual input errors)."""
    from .store import MissingFeatureError

    return (AvmasterError, ValueError, OSError, MissingFeatureError, NotImplementedError, EOFError)


def debug_enabled(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("AVMASTER_DEBUG", "") not in ("", "0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avmaster",
        description="AV-Master reproduction: data, features, training, evaluation. "
                    "Run `avmaster <command> --help` for each command.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: AVMASTER_DEBUG=1)")
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


def check_device_option(args: argparse.Namespace) -> None:
    """`--device cuda...` on a machine without a visible GPU: a message, before any work."""
    device = getattr(args, "device", None)
    if isinstance(device, str) and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise AvmasterError(f"--device {device}: no CUDA GPU is visible on this machine; "
                                "use --device cpu (or --device auto)")


def run_command(func, args: argparse.Namespace, argv: list[str], command: str) -> int:
    """Run a parsed command with the CLI's error policy (module docstring); returns the exit code."""
    debug = debug_enabled(argv)
    try:
        apply_threads(args)
        check_device_option(args)
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except KeyboardInterrupt:
        sys.unraisablehook = lambda unraisable: None  # objects cut off mid-construction complain when collected
        hint = RESUME_HINTS.get(command, "rerun the same command to continue")
        print(f"\navmaster {command}: interrupted (Ctrl-C); {hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): no traceback; silence the final flush as well.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except domain_errors() as e:
        if debug:
            raise
        print(f"avmaster {command}: {error_text(e)}", file=sys.stderr)
        return 1


def error_text(e: BaseException) -> str:
    """The message of `e` (KeyError-style quoting removed), with its type when it says nothing. A message is
    one line, except the lists of preflight.PreflightError."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return text.strip() or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])  # --debug goes anywhere on the line
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args, argv, args.command)


if __name__ == "__main__":
    sys.exit(main())

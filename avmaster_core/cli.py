"""The `avmaster` command. Each module that owns a command registers it here.

    avmaster data fetch <dataset>     official annotation files, checksummed    (download.py)
    avmaster synth                    generate the bundled synthetic benchmark  (synthetic.py)
    avmaster train / evaluate / score train, evaluate, score predictions        (engine_cli.py)
    avmaster sweep                    experiments x seeds, mean ± std tables    (sweep.py)
    avmaster extract / ask            features from raw videos; ask a question  (extract/pipeline.py)
    avmaster benchmark                model speed and memory                    (benchmark.py)
    avmaster runs check DIR           which commit and configuration made runs  (provenance.py)
    avmaster report                   the executed notebooks as a static website (website.py)

Errors: no traceback reaches the user without `--debug` (or AVMASTER_DEBUG=1). Every exception is turned
into one line `avmaster <command>: <message>` and exit code 1 by `explain`: the package's own messages as
they are, OS errors (disk full, permission, read-only file system, a file where a folder should be) with
the file and what to do, anything else as an internal error to report. Ctrl-C exits 130 and SIGTERM (kill,
SLURM, containers) 143, both with how to continue (RESUME_HINTS); an atomic write in progress is finished
first (atomic.signals_deferred). A closed output pipe (`avmaster data list | head`) exits quietly.
Before a command runs, the files and folders it will write (`outputs=` in its parser's defaults) are
checked (`check_outputs`), so that a bad --out fails in a second, not after the work.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
from pathlib import Path

import torch

from .core.errors import AvmasterError
from .core.store import InUseError, MissingFeatureError
from .core.vocab import UnknownAnswerError
from .data.download import DownloadError
from .extract.video import VideoDecodeError
from .training.threads import add_threads_argument, apply_threads

# module -> it defines `register(subparsers)`; each registered parser sets `func=` (called with args).
COMMAND_MODULES = (
    "avmaster_core.data.download",
    "avmaster_core.data.synthetic",
    "avmaster_core.training.commands",
    "avmaster_core.training.sweep",
    "avmaster_core.extract.pipeline",
    "avmaster_core.extract.asking",
    "avmaster_core.training.benchmark",
    "avmaster_core.extract.store_cli",
    "avmaster_core.reproduction.run",
    "avmaster_core.training.provenance",
    "avmaster_core.reproduction.website",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (locks released, `finally` run)."""


def domain_errors() -> tuple[type[BaseException], ...]:
    """The exception classes whose message is the user's news as it is (the package's own, the usual input
    errors); OS errors are worded by `explain`, anything else is reported as an internal error."""
    return (AvmasterError, ValueError, MissingFeatureError, UnknownAnswerError, NotImplementedError, EOFError,
            VideoDecodeError, DownloadError, InUseError)


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
        if not torch.cuda.is_available():
            raise AvmasterError(f"--device {device}: no CUDA GPU is visible on this machine; "
                                "use --device cpu (or --device auto)")


def check_outputs(args: argparse.Namespace) -> None:
    """The files and folders a command will write, checked before it starts: `outputs` in its parser's
    defaults maps an option's dest to "file" or "folder" (e.g. {"out": "folder"})."""
    for dest, kind in (getattr(args, "outputs", None) or {}).items():
        value = getattr(args, dest, None)
        if value:
            check_writable(Path(value), kind, "--" + dest.replace("_", "-") if dest != "store" else "store")


def check_writable(path: Path, kind: str, option: str) -> None:
    """AvmasterError unless `path` can be written as a `kind` ("file" or "folder"): it is not the other kind,
    no part of it is a file, and its nearest existing folder accepts new entries. Writes nothing."""
    if path.exists() and path.is_dir() != (kind == "folder"):
        other = "a folder" if path.is_dir() else "a file"
        raise AvmasterError(f"{option} {path} is {other}, not {'a folder' if kind == 'folder' else 'a file'}: "
                            f"give {'a new or existing folder' if kind == 'folder' else 'a file name'}")
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise AvmasterError(f"{option} {path}: {existing} is a file, so no folder can be made under it: give "
                            "another path")
    target = path if path.exists() else existing
    if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
        why = "is on a read-only file system" if _read_only_fs(existing) else "is not writable by you"
        raise AvmasterError(f"{option} {path}: {target} {why}: give a path in a folder you can write")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _on_sigterm(signum, frame):
    raise Terminated()


def run_command(func, args: argparse.Namespace, argv: list[str], command: str) -> int:
    """Run a parsed command with the CLI's error policy (module docstring); returns the exit code."""
    debug = debug_enabled(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)  # unwinds like Ctrl-C instead of killing mid-write
    except ValueError:  # not the main thread (e.g. called from a test thread): keep the default
        previous = None
    try:
        return _run_guarded(func, args, debug, command)
    finally:
        if previous is not None:  # a SIGTERM after the command's end terminates as usual
            signal.signal(signal.SIGTERM, previous)


def _run_guarded(func, args: argparse.Namespace, debug: bool, command: str) -> int:
    try:
        apply_threads(args)
        check_device_option(args)
        check_outputs(args)
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except KeyboardInterrupt as e:
        sys.unraisablehook = lambda unraisable: None  # objects cut off mid-construction complain when collected
        hint = RESUME_HINTS.get(command.split()[0], "rerun the same command to continue")
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
        print(f"\navmaster {command}: {what}; {hint}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): no traceback; silence the final flush as well.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # noqa: BLE001 - the boundary: every error becomes one line (module docstring)
        if debug:
            raise
        print(f"avmaster {command}: {explain(e, command)}", file=sys.stderr)
        return 1


def error_text(e: BaseException) -> str:
    """The message of `e` (KeyError-style quoting removed), with its type when it says nothing. A message is
    one line, except the lists of preflight.PreflightError."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return text.strip() or type(e).__name__


def explain(e: BaseException, command: str) -> str:
    """The one-line message of any exception at the command boundary (module docstring)."""
    if isinstance(e, domain_errors()) or (isinstance(e, OSError) and not e.errno):
        return error_text(e)  # the package's own message (its OSErrors carry no errno)
    os_error = os_error_in(e)
    if os_error is not None and os_error.errno in OS_ADVICE:
        name = os_error.filename or "a file"
        return OS_ADVICE[os_error.errno].format(file=name, detail=os_error.strerror or "",
                                                resume=RESUME_HINTS.get(command, "rerun the same command"))
    if isinstance(e, OSError):
        return f"{error_text(e)} (the file system refused: {errno.errorcode.get(e.errno, e.errno)})"
    return (f"internal error ({type(e).__name__}: {' '.join(error_text(e).split())[:300]}): this is a bug, not "
            "your input; rerun with --debug for the traceback and report it")


def os_error_in(e: BaseException) -> OSError | None:
    """The OSError with an errno that `e` is or was caused by (torch wraps a failed write in a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e
        e = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ else e.__context__
    return None


# What to do about the OS errors a user's files, disks and permissions cause ({file}, {detail}, {resume}).
OS_ADVICE = {
    errno.ENOSPC: "no space left on the device while writing {file}; what was written before is intact (writes "
                  "are atomic): free space or choose an --out on a disk with room, then {resume}",
    errno.EDQUOT: "disk quota exceeded while writing {file}; what was written before is intact (writes are "
                  "atomic): free space or choose an --out on a disk with room, then {resume}",
    errno.EACCES: "permission denied: {file}: give a file or folder you can read (inputs) or write (--out)",
    errno.EPERM: "operation not permitted on {file}: give a file or folder you own",
    errno.EROFS: "{file} is on a read-only file system: write to a folder on a writable disk (--out)",
    errno.ENOTDIR: "{file}: a part of this path is a file, not a folder: give a path made of folders",
    errno.EISDIR: "{file} is a folder where a file is expected: give the file inside it",
    errno.ENOENT: "no such file or folder: {file}: check the path",
    errno.EEXIST: "{file} exists and is not a folder: give another path",
    errno.EMFILE: "too many open files ({detail}): raise the limit (`ulimit -n 4096`) or use fewer --workers",
    errno.EIO: "input/output error reading or writing {file}: the disk or network file system failed; check it "
               "and {resume}",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])  # --debug goes anywhere on the line
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    action = getattr(args, f"{args.command}_command", None)  # `store import`, `data fetch`, `reproduce run`
    return run_command(args.func, args, argv, f"{args.command} {action}" if action else args.command)


if __name__ == "__main__":
    sys.exit(main())

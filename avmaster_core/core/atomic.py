"""Atomic file writes: the one way every module of the package writes a file a reader may see.

    atomic_write(path, lambda f: f.write(b"..."))        # f: the open temp file (binary; mode="w" for text)
    write_text(path, text); write_json(path, obj); save_torch(obj, path)
    publish(finished, path)          # a file completed elsewhere (e.g. a store built as <store>.partial)

The content goes to a temporary file in the same folder (so the rename stays on one file system), is
flushed and fsync'ed, then renamed over `path` with os.replace: a reader sees the old file or the whole new
one, never half of it, even if the process is killed or the writer raises midway. On any failure the
temporary file is removed and the old file is left as it was. Folders are created as needed.
Ctrl-C and SIGTERM arriving during a write take effect once it is done (`signals_deferred`): an interrupted
run keeps the file it was writing. An OSError of a write (disk full, ...) names `path`.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], *, mode: str = "wb",
                 encoding: str | None = None) -> Path:
    """Call `write(f)` on a temp file beside `path`, then replace `path` with it; returns `path`.

    mode: "wb" (binary, default) or "w" (text, UTF-8 unless `encoding` says otherwise)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
            os.replace(tmp, path)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            _name_file(e, path)
            raise
    return path


def _name_file(e: BaseException, path: Path) -> None:
    """Give the OSError behind a failed write (torch wraps it in a RuntimeError) the file's name."""
    while e is not None:
        if isinstance(e, OSError) and e.errno and not e.filename:
            e.filename = str(path)
            return
        e = e.__cause__ or e.__context__


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM) + tuple(
    getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C, SIGTERM and the cluster's preemption signals (SIGUSR1/SIGUSR2: submitit checkpoints and
    requeues on SIGUSR2, and its handler ran inside torch.save, leaving 'unexpected pos' and a failed task) back
    while the body runs (a write that must finish): a signal that arrives is noted and raised again, to its own
    handler, when the body ends. Python runs signal handlers in the main thread only, so elsewhere this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2, **dumps) -> Path:
    """`obj` as JSON (plus a final newline when indented)."""
    text = json.dumps(obj, indent=indent, **dumps)
    return write_text(path, text + "\n" if indent is not None else text)


def save_torch(obj, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def publish(finished: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Replace `path` by the complete file `finished` (same folder): flushed to disk, then renamed in one step."""
    with signals_deferred():
        fd = os.open(finished, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(finished, path)
    return Path(path)

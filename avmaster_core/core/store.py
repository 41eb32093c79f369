"""The HDF5 feature store: one file per dataset, one HDF5 dataset per video and per question.

Layout (all float32; the widths are the encoders', e.g. VGGish 128 and CLIP ViT-L/14@336 768):
    /audio/<video_id>      [T, audio_dim]    audio encoder, one row per 1-s segment
    /visual/<video_id>     [T, visual_dim]   visual encoder, one row per frame (one frame per second)
    /question/<question_id> [text_dim]       CLIP sentence feature (EOT state @ text_projection)
    /words/<question_id>   [77, text_dim]    CLIP states at all 77 context positions @ text_projection;
                                             attribute `tokens`: the question's CLIP tokens with start and
                                             end token (positions 1..tokens-1 are its words; mask_padding)
    /choices/<question_id> [C, text_dim]     multiple-choice datasets only (AVQA): each candidate answer's
                                             sentence feature, same text path, in the record's `choices` order
No width is fixed here: a store learns `audio_dim`, `visual_dim` and `text_dim` from the encoders that write
it (`widths=`) or from its first item of each kind, records them as root attributes and refuses items of
another width. Root attributes also describe how the features were made (encoders, weights, route, ...).

Writes are crash-safe at the granularity of one item: an item is written under a temporary name and
moved to its final name only when complete, and the file is flushed, so a rerun skips finished items
(`has`) and an interrupted write leaves no half item under a final name.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from .atomic import signals_deferred

KINDS: dict[str, tuple[int | str | None, ...]] = {
    # kind: expected shape; None = any length (T), a name = a width the store learns and then enforces
    "audio": (None, "audio_dim"),
    "visual": (None, "visual_dim"),
    "question": ("text_dim",),
    "words": (77, "text_dim"),
    "choices": (None, "text_dim"),  # multiple choice (AVQA): the candidate answers' sentence features [C, D]
}
WIDTHS = ("audio_dim", "visual_dim", "text_dim")
TOKENS_ATTR = "tokens"  # attribute of words/<question_id>: CLIP tokens of the question, start and end token included
_TMP = "_partial"


class MissingFeatureError(KeyError):
    """A record's features are not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0])


class InUseError(OSError):
    """Another process writes this file or folder (it holds its WriterLock)."""


class StoreInUseError(InUseError):
    """Another process holds the store (writing it, or reading it while we want to write)."""


class StoreNotFileError(ValueError):
    """The path given as a store is a folder or a file of another kind (see `not_a_store`)."""


def lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


class WriterLock:
    """One writer per store (or run folder: run_config.lock_run_folder): an exclusive flock on `lock_file`
    (default `<store>.lock`), which records "PID N on HOST" of the holder.

    The kernel drops the lock when the holder dies, so a stale lock file never blocks anyone: the next writer
    locks it and writes its own PID over the dead one's. The file is removed on release; a process that locked
    a file just removed that way notices (another inode now at the path, or none) and locks again.
    A second writer gets `error` (StoreInUseError) "<what> <target> is in use by PID N on HOST (writing it):
    <remedy>", or with wait=True waits until the first one releases it."""

    def __init__(self, store_path: Path, *, lock_file: Path | None = None, what: str = "feature store",
                 remedy: str = "wait for that run to finish, or write to another --out",
                 error: type[InUseError] = StoreInUseError, wait: bool = False):
        self.path = Path(lock_file) if lock_file is not None else lock_path(store_path)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise error(f"{what} {store_path} is in use by {holder} (writing it): {remedy}") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the previous holder removed this file while we waited: lock the new one
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still holding it (see the class docstring)
            except FileNotFoundError:
                pass
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def writer_of(store_path: Path, lock_file: Path | None = None) -> str | None:
    """"PID N on HOST" of the process writing `store_path` (holding `lock_file`, default `<store>.lock`) now,
    or None when no process holds its lock."""
    path = Path(lock_file) if lock_file is not None else lock_path(store_path)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def not_a_store(path: Path) -> str | None:
    """Why `path` cannot be a feature store at all (a folder, an empty file, a file of another kind), or None
    when it is an HDF5 file (or does not exist). Reads only the first bytes."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.h5"))
        return (f"{path} is a folder, not a feature store (.h5 file): give the store itself"
                + (f", e.g. {path / inside[0]}" if inside else ""))
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(2048)
    if not head:
        return f"{path} is an empty file, not a feature store: give the .h5 store that extract/import/synth wrote"
    if not any(head[i:i + 4] == HDF5_SIGNATURE[:4] for i in (0, 512, 1024)):  # HDF5 superblock offsets
        kind = "a JSON file" if head.lstrip()[:1] in (b"[", b"{") else "a file of another kind (not HDF5)"
        return (f"{path} is {kind}, not a feature store (.h5): give the store that `avmaster extract`, `store "
                "import` or `synth` wrote (e.g. <root>/features.h5)")
    return None


def _open_error(path: Path, error: OSError) -> OSError:
    """Why h5py could not open the store, and what to do: wait for a holder, give the right file, or (only an
    HDF5 file that no process holds and that does not open) move a broken file away."""
    wrong = not_a_store(path)
    if wrong is not None:
        return StoreNotFileError(wrong)
    holder = writer_of(path)
    if holder is not None:
        return StoreInUseError(f"feature store {path} is in use by {holder} (writing it): wait for that run to "
                               "finish")
    if "lock" in str(error).lower():  # HDF5's own file lock: some process (e.g. a training run) has it open
        return StoreInUseError(f"feature store {path} is open in another process (HDF5 file lock: {error}); "
                               "wait for that process (e.g. a training or evaluation reading it) to finish")
    return OSError(f"cannot open feature store {path} ({error}); no process holds it, so it is probably "
                   "damaged (e.g. a run was killed while writing): move it away and rerun the extraction")


class FeatureStore:
    """Read and write features; use as a context manager or call `close()`.

    mode: "r" (read), "a" (create or append). `widths`: {"audio_dim": 128, ...} from the encoders that write;
    a store that already holds another width refuses them (ValueError). A writer holds `<store>.lock`
    (WriterLock): a second writer is refused with StoreInUseError naming the first one's PID and host.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", widths: dict | None = None, lock: bool = True):
        self.path = Path(path)
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(
                f"feature store {self.path} does not exist: extract features (`avmaster extract`), "
                "import .npy folders (`avmaster store import`) or generate the synthetic benchmark (`avmaster synth`)"
            )
        self._lock = None
        wrong = not_a_store(self.path)  # a folder or a JSON file given as the store: say so, never "damaged"
        if wrong is not None:
            raise StoreNotFileError(wrong)
        if mode != "r":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if lock:  # lock=False: the caller holds the lock of the store this file becomes (npy_io staging)
                self._lock = WriterLock(self.path)  # StoreInUseError if another process writes this store
        try:
            self.file = h5py.File(self.path, mode)
        except OSError as e:
            if self._lock is not None:
                self._lock.release()
            raise _open_error(self.path, e) from None
        if mode != "r" and _TMP in self.file:  # leftovers of an interrupted write
            del self.file[_TMP]
        self.widths = {k: int(v) for k, v in self.attrs.items() if k in WIDTHS}
        for kind, dims in KINDS.items():  # a store written before widths were recorded: read them off an item
            keys = self.keys(kind)
            if keys and dims[-1] not in self.widths:
                self.widths[dims[-1]] = int(self.file[f"{kind}/{keys[0]}"].shape[-1])
        self.expect_widths(**(widths or {}))

    def expect_widths(self, **widths: int) -> None:
        """Fix widths from the encoders that write (e.g. audio_dim=128); ValueError if the store holds others."""
        for name, width in widths.items():
            self._learn_width(name, int(width))

    def _learn_width(self, name: str, width: int) -> None:
        if name not in WIDTHS:
            raise ValueError(f"unknown width {name!r}; expected one of {WIDTHS}")
        known = self.widths.get(name)
        if known is not None and known != width:
            raise ValueError(f"{self.path} holds features with {name}={known}, these have {width}: "
                             "write them to another store")
        if known is None:
            self.widths[name] = width
            if self.file.mode != "r":
                self.set_attrs(**{name: width})

    def shape(self, kind: str) -> tuple:
        """The expected shape of a `kind` item (None: any length, or a width not learnt yet)."""
        return tuple(self.widths.get(d) if isinstance(d, str) else d for d in KINDS[kind])

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()
        if self._lock is not None:
            self._lock.release()

    # -- metadata --------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.file.attrs.items()}

    def set_attrs(self, **attrs) -> None:
        for k, v in attrs.items():
            self.file.attrs[k] = v
        self.file.flush()

    # -- items -----------------------------------------------------------------------------
    @staticmethod
    def _name(kind: str, key) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; expected one of {sorted(KINDS)}")
        return f"{kind}/{key}"

    def has(self, kind: str, key) -> bool:
        return self._name(kind, key) in self.file

    def keys(self, kind: str) -> list[str]:
        return list(self.file[kind].keys()) if kind in self.file else []

    def put(self, kind: str, key, array, **attrs) -> None:
        """Write one item atomically (replaces an existing one)."""
        name = self._name(kind, key)
        array = np.asarray(array, dtype=np.float32)
        expected = self.shape(kind)
        if array.ndim != len(expected) or \
                any(e is not None and e != s for e, s in zip(expected, array.shape)):
            raise ValueError(f"{kind} feature for {key!r} has shape {array.shape}, expected {expected} "
                             "(None = any length)")
        if not np.isfinite(array).all():
            raise ValueError(f"{kind} feature for {key!r} contains NaN or inf")
        for dim, size in zip(KINDS[kind], array.shape):
            if isinstance(dim, str):
                self._learn_width(dim, size)
        tmp = f"{_TMP}/{kind}_{key}"
        with signals_deferred():  # Ctrl-C / SIGTERM take effect after this item (atomic.signals_deferred)
            if tmp in self.file:
                del self.file[tmp]
            # lzf: fast, built into h5py; CLIP word features are mostly zero padding and shrink several-fold.
            ds = self.file.create_dataset(tmp, data=array, compression="lzf" if array.size >= 1024 else None)
            for k, v in attrs.items():
                ds.attrs[k] = v
            if name in self.file:
                del self.file[name]
            self.file.require_group(kind)
            self.file.move(tmp, name)
            self.file.flush()

    def link(self, kind: str, key, target) -> None:
        """Make `kind/key` name the same stored item as `kind/target` (e.g. questions with identical text)."""
        if not self.has(kind, target):
            raise MissingFeatureError(f"cannot link {kind}/{key}: no {kind} item {target!r} in {self.path}")
        name = self._name(kind, key)
        if name in self.file:
            del self.file[name]
        self.file[name] = self.file[self._name(kind, target)]  # an HDF5 hard link: no copy
        self.file.flush()

    def set_item_attrs(self, kind: str, key, **attrs) -> None:
        """Add attributes to a stored item (e.g. a question's token count) without rewriting it."""
        if not self.has(kind, key):
            raise MissingFeatureError(f"no {kind} item {key!r} in {self.path}")
        item = self.file[self._name(kind, key)]
        for k, v in attrs.items():
            item.attrs[k] = v
        self.file.flush()

    def get(self, kind: str, key) -> np.ndarray:
        name = self._name(kind, key)
        if name not in self.file:
            raise MissingFeatureError(
                f"no {kind} feature for {'video' if kind in ('audio', 'visual') else 'question'} {key!r} "
                f"in {self.path}: extract it (`avmaster extract`) or drop the record"
            )
        return self.file[name][()]

    def get_many(self, kind: str, keys: Iterable) -> np.ndarray:
        """Stack the items of `keys` into one array [N, ...] (they must share a shape)."""
        return np.stack([self.get(kind, k) for k in keys])

    def missing(self, kind: str, keys: Iterable) -> list:
        """The keys of `keys` that have no `kind` item."""
        group = self.file[kind] if kind in self.file else {}
        return [k for k in keys if str(k) not in group]

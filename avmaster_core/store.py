"""The HDF5 feature store: one file per dataset, one HDF5 dataset per video and per question.

Layout (all float32):
    /audio/<video_id>      [T, 128]   VGGish, one row per 1-s segment
    /visual/<video_id>     [T, 768]   CLIP image embedding of the frame at each whole second
    /question/<question_id> [768]     CLIP sentence feature (EOT state @ text_projection)
    /words/<question_id>   [77, 768]  CLIP states at all 77 context positions @ text_projection
Root attributes describe how the features were made (extractor, weights tag, protocol, ...).

Writes are crash-safe at the granularity of one item: an item is written under a temporary name and
moved to its final name only when complete, and the file is flushed, so a rerun skips finished items
(`has`) and an interrupted write leaves no half item under a final name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

KINDS: dict[str, tuple[int | None, ...]] = {
    # kind: expected shape, None = any length (T)
    "audio": (None, 128),
    "visual": (None, 768),
    "question": (768,),
    "words": (77, 768),
}
_TMP = "_partial"


class MissingFeatureError(KeyError):
    """A record's features are not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0])


class FeatureStore:
    """Read and write features; use as a context manager or call `close()`.

    mode: "r" (read), "a" (create or append). `shapes` overrides KINDS (e.g. another encoder's width).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", shapes: dict | None = None):
        self.path = Path(path)
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(
                f"feature store {self.path} does not exist: extract features (`avmaster extract`), "
                "import .npy folders (`avmaster store import`) or generate the synthetic benchmark (`avmaster synth`)"
            )
        if mode != "r":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = h5py.File(self.path, mode)
        except OSError as e:
            raise OSError(f"cannot open feature store {self.path} ({e}); if a run was killed while writing, "
                          "move the file away and rerun the extraction") from e
        self.shapes = dict(KINDS, **(shapes or {}))
        if mode != "r" and _TMP in self.file:  # leftovers of an interrupted write
            del self.file[_TMP]

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

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
        array = np.asarray(array, dtype=np.float32)
        expected = self.shapes[kind]
        if array.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, array.shape)):
            raise ValueError(f"{kind} feature for {key!r} has shape {array.shape}, expected {expected} "
                             "(None = any length)")
        if not np.isfinite(array).all():
            raise ValueError(f"{kind} feature for {key!r} contains NaN or inf")
        name = self._name(kind, key)
        tmp = f"{_TMP}/{kind}_{key}"
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

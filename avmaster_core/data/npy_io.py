"""Per-item `.npy` folders in the released layout <-> the HDF5 feature store; merging shard stores.

Released layout (docs/extraction.md), one file per video or question:
    <root>/vggish/<video_id>.npy               [T, 128]
    <root>/clip_vit_l14_336px/<video_id>.npy   [T, 768]
    <root>/clip_qst/<question_id>.npy          [1, 768]
    <root>/clip_word/<question_id>.npy         [1, 77, 768]
The store keeps questions without the leading singleton axis ([768], [77, 768]). Both directions are
resumable: items already at the destination are skipped.

Import and merge never leave a half-filled store: they write `<store>.partial` (a copy of the store when it
exists) and rename it over the store only when every item is in. An interrupted or failed run leaves the
store as it was and the .partial file, from which a rerun of the same command continues.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core.atomic import atomic_write, publish
from ..core.store import KINDS, WIDTHS, FeatureStore, WriterLock

RELEASED_DIRS = {"audio": "vggish", "visual": "clip_vit_l14_336px", "question": "clip_qst", "words": "clip_word"}
_SINGLETON = {"question", "words"}  # stored on disk with a leading [1, ...] axis


def import_npy(store_path: str | Path, folders: dict[str, str | Path], progress: bool = True,
               **attrs) -> dict[str, int]:
    """Copy `{kind: folder of <key>.npy}` into the store; returns {kind: items written}. Skips existing items."""
    unknown = set(folders) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown feature kind(s) {sorted(unknown)}; expected {sorted(KINDS)}")
    plan = {}
    for kind, folder in folders.items():
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{kind} folder {folder} does not exist")
        files = sorted(folder.glob("*.npy"))
        if not files:
            raise FileNotFoundError(f"{kind} folder {folder} holds no .npy files")
        plan[kind] = files
    check_npy_files([f for files in plan.values() for f in files])
    written = {}  # the store learns each width (ViT-B/32: 512, ...) from the first item and enforces it
    with staged_store(store_path) as store:
        if attrs:
            store.set_attrs(**attrs)
        for kind, files in plan.items():
            present = set(store.keys(kind))
            todo = [f for f in files if f.stem not in present]
            for f in tqdm(todo, desc=f"import {kind}", unit="item", disable=not progress):
                array = load_npy(f)
                if kind in _SINGLETON and array.ndim == len(KINDS[kind]) + 1 and array.shape[0] == 1:
                    array = array[0]
                try:
                    store.put(kind, f.stem, array)
                except ValueError as e:
                    raise ValueError(f"{f}: {e}") from None
            written[kind] = len(todo)
    return written


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A numeric array from a .npy file; ValueError naming the file for an empty, damaged or pickled one."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"holds {type(array).__name__} of dtype {getattr(array, 'dtype', '?')}, not numbers")
        return array
    except (ValueError, EOFError, OSError) as e:
        size = path.stat().st_size if path.exists() else 0
        raise ValueError(f"{path} ({size} bytes) is not a numeric .npy array ({' '.join(str(e).split())[:160]}); "
                         "re-export it with numpy.save, or remove it from the folder") from None


def check_npy_files(files: list[Path], max_listed: int = 20) -> None:
    """Read every file's .npy header (cheap: memory-mapped) before anything is written; one ValueError that
    lists the unreadable ones (the first `max_listed`, then a count)."""
    problems = []
    for f in files:
        try:
            load_npy(f, mmap_mode="r")
        except ValueError as e:
            problems.append(str(e))
    if problems:
        more = f"; ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise ValueError(f"{len(problems)} of {len(files)} .npy file(s) cannot be imported, nothing was written: "
                         + "; ".join(problems[:max_listed]) + more)


@contextlib.contextmanager
def staged_store(store_path: str | Path):
    """An open store to fill that becomes `store_path` only on success (see the module docstring)."""
    final = Path(store_path)
    partial = final.with_name(final.name + ".partial")
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = WriterLock(final)  # held for the whole job: the store and its .partial have one writer
    try:
        if not partial.exists() and final.exists():
            copy = partial.with_name(partial.name + ".copying")
            shutil.copy2(final, copy)
            publish(copy, partial)
        try:
            with FeatureStore(partial, "a", lock=False) as store:
                yield store
        except BaseException as e:
            if isinstance(e, Exception) and e.args:
                e.args = (f"{e.args[0]} ({final} was not changed; {partial} keeps the items done so far: a "
                          "rerun continues from it, delete it to start over)", *e.args[1:])
            raise
        publish(partial, final)
    finally:
        lock.release()


def export_npy(store_path: str | Path, out_dir: str | Path, kinds: list[str] | None = None,
               progress: bool = True) -> dict[str, int]:
    """Write the store's items as `<out_dir>/<released dir>/<key>.npy`; returns {kind: files written}."""
    out_dir = Path(out_dir)
    written = {}
    with FeatureStore(store_path, "r") as store:
        for kind in kinds or list(RELEASED_DIRS):  # the released layout; "choices" (AVQA) only when asked
            if kind not in KINDS:
                raise ValueError(f"unknown feature kind {kind!r}; expected one of {sorted(KINDS)}")
            folder = out_dir / RELEASED_DIRS.get(kind, kind)
            folder.mkdir(parents=True, exist_ok=True)
            todo = [k for k in store.keys(kind) if not (folder / f"{k}.npy").is_file()]
            for key in tqdm(todo, desc=f"export {kind}", unit="item", disable=not progress):
                array = store.get(kind, key)
                if kind in _SINGLETON:
                    array = array[None]
                # np.save on a handle keeps the exact name (given a path it would add ".npy")
                atomic_write(folder / f"{key}.npy", lambda f: np.save(f, array.astype(np.float32)))
            written[kind] = len(todo)
    return written


def merge_stores(out_path: str | Path, inputs: list[str | Path], progress: bool = True) -> dict[str, int]:
    """Copy every item of `inputs` (e.g. the shards of one extraction) into `out_path`. Attributes must agree."""
    written = {kind: 0 for kind in KINDS}
    if not inputs:
        raise ValueError("no input stores to merge")
    with FeatureStore(inputs[0], "r") as first:
        reference = first.attrs
    with staged_store(out_path) as out:
        for path in inputs:
            with FeatureStore(path, "r") as src:
                for k in ("visual_extractor", "clip_weights", "audio_extractor", "vggish_weights", "protocol",
                          "seconds", "text_extractor", "text_weights", "audio_encoder", "visual_encoder",
                          "route", "route_params"):
                    mine, theirs = reference.get(k), src.attrs.get(k)
                    if mine is not None and theirs is not None and str(mine) != str(theirs):
                        raise ValueError(f"cannot merge {path}: {k} is {theirs!r} there but {mine!r} in {inputs[0]}")
                out.set_attrs(**{k: v for k, v in src.attrs.items() if k not in WIDTHS})  # widths: learnt per item
                for kind in KINDS:
                    present = set(out.keys(kind))
                    for key in tqdm([k for k in src.keys(kind) if k not in present], desc=f"{Path(path).name} {kind}",
                                    unit="item", disable=not progress):
                        ds = src.file[f"{kind}/{key}"]
                        out.put(kind, key, ds[()], **dict(ds.attrs))
                        written[kind] += 1
    return written

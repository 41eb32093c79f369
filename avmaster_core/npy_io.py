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
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import atomic_write, publish
from .store import KINDS, WIDTHS, FeatureStore, WriterLock

RELEASED_DIRS = {"audio": "vggish", "visual": "clip_vit_l14_336px", "question": "clip_qst", "words": "clip_word"}
_SINGLETON = {"question", "words"}  # stored on disk with a leading [1, ...] axis


def import_npy(store_path: str | Path, folders: dict[str, str | Path], progress: bool = True,
               **attrs) -> dict[str, int]:
    """Copy `{kind: folder of <key>.npy}` into the store; returns {kind: items written}. Skips existing items.

    Every file is checked before anything is written (`check_npy_files`: readable, numeric, finite, the shape
    of its kind, one width per kind); a refused input writes nothing, and a `.partial` left by an earlier run
    whose widths differ from this input's (built from input that was refused since) is discarded."""
    from tqdm.auto import tqdm

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
    widths = check_npy_files(plan, store_widths(store_path))
    discard_stale_partial(store_path, widths)
    written = {}
    with staged_store(store_path) as store:
        store.expect_widths(**widths)
        if attrs:
            store.set_attrs(**attrs)
        for kind, files in plan.items():
            present = set(store.keys(kind))
            todo = [f for f in files if f.stem not in present]
            for f in tqdm(todo, desc=f"import {kind}", unit="item", disable=not progress):
                store.put(kind, f.stem, _unwrap(kind, load_npy(f)))
            written[kind] = len(todo)
    return written


def _unwrap(kind: str, array: np.ndarray) -> np.ndarray:
    """Questions are stored on disk with a leading [1, ...] axis (module docstring); the store keeps none."""
    if kind in _SINGLETON and array.ndim == len(KINDS[kind]) + 1 and array.shape[0] == 1:
        return array[0]
    return array


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


def store_widths(store_path: str | Path) -> dict[str, int]:
    """The widths an existing store holds ({} for a new one)."""
    if not Path(store_path).exists():
        return {}
    with FeatureStore(store_path, "r") as store:
        return dict(store.widths)


def check_npy_files(plan: dict[str, list[Path]], widths: dict[str, int] | None = None,
                    max_listed: int = 20) -> dict[str, int]:
    """Read every file before anything is written: readable, numeric, finite, the shape of its kind
    (store.KINDS), and per kind one width: the store's (`widths`) where it has one, else the one most files
    have. One ValueError lists every odd file (the first `max_listed`, then a count); returns the widths."""
    known = dict(widths or {})
    widths, problems, shapes, total = dict(known), [], {}, 0
    for kind, files in plan.items():
        expected = KINDS[kind]
        for f in files:
            total += 1
            try:
                array = _unwrap(kind, load_npy(f, mmap_mode="r"))
            except ValueError as e:
                problems.append(str(e))
                continue
            if array.ndim != len(expected) or any(isinstance(e, int) and e != n for e, n in zip(expected, array.shape)):
                layout = tuple("T" if e is None else e if isinstance(e, int) else "width" for e in expected)
                problems.append(f"{f}: shape {array.shape}, where a {kind} feature is {layout}: remove it")
                continue
            if not np.isfinite(array).all():
                problems.append(f"{f}: contains NaN or inf: re-extract it, or remove it from the folder")
                continue
            shapes[f] = (kind, array.shape[-1])
    for kind in plan:
        name = KINDS[kind][-1]
        found = Counter(width for k, width in shapes.values() if k == kind)
        if not found:
            continue
        if name in known:
            width, source = known[name], f"the store holds {name}={known[name]}"
        else:
            width = found.most_common(1)[0][0]
            source = f"{found[width]} of the {sum(found.values())} {kind} files have {name}={width}"
        widths[name] = width
        problems += [f"{f}: width {w}, where {source}: remove it, or import it into another store"
                     for f, (k, w) in shapes.items() if k == kind and w != width]
    if problems:
        more = f"; ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise ValueError(f"{len(problems)} of {total} .npy file(s) cannot be imported, nothing was written: "
                         + "; ".join(problems[:max_listed]) + more)
    return widths


def discard_stale_partial(store_path: str | Path, widths: dict[str, int]) -> None:
    """Remove `<store>.partial` when it holds widths other than `widths` (it was built from input refused
    since, e.g. by an older version that learnt a width from an odd file); say so."""
    partial = partial_path(Path(store_path))
    if not partial.exists():
        return
    with FeatureStore(partial, "r") as staged:
        clash = {k: v for k, v in staged.widths.items() if k in widths and widths[k] != v}
    if clash:
        partial.unlink()
        print(f"discarded {partial}: it holds {', '.join(f'{k}={v}' for k, v in clash.items())}, this input "
              f"{', '.join(f'{k}={widths[k]}' for k in clash)}", file=sys.stderr)


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


@contextlib.contextmanager
def staged_store(store_path: str | Path):
    """An open store to fill that becomes `store_path` only on success (see the module docstring)."""
    final = Path(store_path)
    partial = partial_path(final)
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
    from tqdm.auto import tqdm

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


MERGE_AGREE = ("visual_extractor", "clip_weights", "audio_extractor", "vggish_weights", "protocol", "seconds",
               "text_extractor", "text_weights", "audio_encoder", "visual_encoder", "route", "route_params", *WIDTHS)


def merge_stores(out_path: str | Path, inputs: list[str | Path], progress: bool = True) -> dict[str, int]:
    """Copy every item of `inputs` (e.g. the shards of one extraction) into `out_path`. Every input is opened
    and its attributes (encoders, route, widths; MERGE_AGREE) compared with the others' and the output's
    before anything is written; one ValueError lists every input that is missing, unreadable or disagrees."""
    from tqdm.auto import tqdm

    if not inputs:
        raise ValueError("no input stores to merge")
    check_mergeable(out_path, inputs)
    written = {kind: 0 for kind in KINDS}
    with staged_store(out_path) as out:
        for path in inputs:
            with FeatureStore(path, "r") as src:
                out.set_attrs(**{k: v for k, v in src.attrs.items() if k not in WIDTHS})  # widths: learnt per item
                for kind in KINDS:
                    present = set(out.keys(kind))
                    for key in tqdm([k for k in src.keys(kind) if k not in present], desc=f"{Path(path).name} {kind}",
                                    unit="item", disable=not progress):
                        ds = src.file[f"{kind}/{key}"]
                        out.put(kind, key, ds[()], **dict(ds.attrs))
                        written[kind] += 1
    return written


def check_mergeable(out_path: str | Path, inputs: list[str | Path]) -> None:
    """ValueError listing every input store that does not open or whose attributes (MERGE_AGREE, widths
    included) differ from the first one's or the output store's."""
    problems, reference, where = [], {}, {}
    stores = ([out_path] if Path(out_path).exists() else []) + list(inputs)
    for path in stores:
        try:
            with FeatureStore(path, "r") as store:
                attrs = {**store.attrs, **store.widths}
        except (OSError, ValueError) as e:
            problems.append(str(e).split("; ")[0] if isinstance(e, FileNotFoundError) else str(e))
            continue
        for k in MERGE_AGREE:
            if k in attrs and k in reference and str(attrs[k]) != str(reference[k]):
                problems.append(f"{path}: {k} is {attrs[k]!r} there but {reference[k]!r} in {where[k]}")
            elif k in attrs and k not in reference:
                reference[k], where[k] = attrs[k], path
    if problems:
        raise ValueError(f"cannot merge into {out_path}, nothing was written: " + "; ".join(problems)
                         + ": give only stores made with the same encoders and route (`avmaster store info` "
                         "shows them)")

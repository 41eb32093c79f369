"""`avmaster store import|export|merge|token-counts|info`: move features between .npy folders, shard stores and one
store; record question token counts (mask_padding) in a store made before they were recorded."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .npy_io import RELEASED_DIRS, export_npy, import_npy, merge_stores
from .store import KINDS, FeatureStore


def _run_import(args) -> int:
    folders = {kind: getattr(args, kind) for kind in KINDS if getattr(args, kind, None)}  # no --choices option
    if args.root:
        for kind, name in RELEASED_DIRS.items():
            if kind not in folders and (Path(args.root) / name).is_dir():
                folders[kind] = Path(args.root) / name
    if not folders:
        print("avmaster store import: give --root DIR (with vggish/, clip_vit_l14_336px/, clip_qst/, clip_word/) "
              "or at least one of --audio/--visual/--question/--words", file=sys.stderr)
        return 2
    attrs = {"imported_from": ", ".join(f"{k}={v}" for k, v in folders.items())}
    try:
        written = import_npy(args.store, folders, **attrs)
    except (FileNotFoundError, ValueError) as e:
        print(f"avmaster store import: {e}", file=sys.stderr)
        return 1
    print(f"imported into {args.store}: " + ", ".join(f"{k} {n}" for k, n in written.items()))
    return 0


def _run_export(args) -> int:
    try:
        written = export_npy(args.store, args.out, args.kinds.split(",") if args.kinds else None)
    except (FileNotFoundError, ValueError) as e:
        print(f"avmaster store export: {e}", file=sys.stderr)
        return 1
    print(f"exported {args.store} to {args.out}: " + ", ".join(f"{k} {n}" for k, n in written.items()))
    return 0


def _run_merge(args) -> int:
    try:
        written = merge_stores(args.out, args.inputs)
    except (FileNotFoundError, ValueError) as e:
        print(f"avmaster store merge: {e}", file=sys.stderr)
        return 1
    print(f"merged {len(args.inputs)} store(s) into {args.out}: " + ", ".join(f"{k} {n}" for k, n in written.items()))
    return 0


def _run_info(args) -> int:
    try:
        with FeatureStore(args.store, "r") as store:
            print(f"{args.store}")
            for kind in KINDS:
                keys = store.keys(kind)
                shape = store.file[f"{kind}/{keys[0]}"].shape if keys else "-"
                print(f"  {kind:9s} {len(keys):7d} items  (first shape {shape})")
            attrs = store.attrs
            route = attrs.pop("route", None)
            print(f"  extraction route: {route or 'not recorded (imported, synthetic or made before routes)'}")
            if "route_params" in attrs:
                import json
                for step, how in json.loads(attrs.pop("route_params")).items():
                    print(f"    {step}: {how}")
            for k, v in sorted(attrs.items()):
                print(f"  {k}: {v}")
    except FileNotFoundError as e:
        print(f"avmaster store info: {e}", file=sys.stderr)
        return 1
    return 0


def _run_token_counts(args) -> int:
    """Record each stored question's CLIP token count (mask_padding's word positions) from its text."""
    from .annotations import MissingAnnotationFile
    from .extract.pipeline import load_question_table, record_token_counts

    texts, absent = {}, []
    for split in [args.split] if args.split else _splits(args.questions):
        try:
            texts.update(load_question_table(None, args.questions, split, args.root))
        except MissingAnnotationFile:
            absent.append(split)
    if not texts:
        print(f"avmaster store token-counts: no annotation file of {args.questions} under {args.root} "
              f"(splits {', '.join(absent)}); pass --root, the folder of its annotation files", file=sys.stderr)
        return 1
    if not Path(args.store).is_file():
        print(f"avmaster store token-counts: no store {args.store}: give the feature store (.h5) that "
              "`avmaster extract --questions` wrote", file=sys.stderr)
        return 1
    with FeatureStore(args.store) as store:
        stored = sum(store.has("words", q) for q in texts)
    if stored < len(texts) / 2:  # the store holds another dataset's questions (or hardly any of these)
        print(f"avmaster store token-counts: only {stored} of the {len(texts)} questions of {args.questions} "
              f"under {args.root} are in {args.store}: it holds another dataset's questions (give the store "
              f"`avmaster extract --questions {args.questions}` wrote), or extract the rest first; nothing was "
              "written", file=sys.stderr)
        return 1
    try:
        with FeatureStore(args.store, "a") as store:
            added = record_token_counts(store, texts)
    except (OSError, ValueError) as e:
        print(f"avmaster store token-counts: {e}", file=sys.stderr)
        return 1
    print(f"{args.store}: token counts added to {added} question(s); {stored} of the {len(texts)} questions of "
          f"{args.questions} are in the store" + (f" (no annotation file for {', '.join(absent)})" if absent else ""))
    return 0


def _splits(dataset: str) -> list[str]:
    from .dataset_registry import get

    return list(dict.fromkeys(get(dataset).splits))


def register(subparsers) -> None:
    p = subparsers.add_parser("store", help="import/export .npy feature folders, merge shard stores, show a store")
    sub = p.add_subparsers(dest="store_command", metavar="<action>", required=True)

    imp = sub.add_parser("import", help="per-item .npy folders (released layout) -> HDF5 store",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    imp.add_argument("store", help="HDF5 store to create or extend")
    imp.add_argument("--root", help="folder holding " + ", ".join(f"{v}/" for v in RELEASED_DIRS.values()))
    for kind, name in RELEASED_DIRS.items():
        imp.add_argument(f"--{kind}", help=f"folder of <id>.npy {kind} features (default: ROOT/{name})")
    imp.set_defaults(func=_run_import, outputs={"store": "file"})

    exp = sub.add_parser("export", help="HDF5 store -> per-item .npy folders (released layout)")
    exp.add_argument("store")
    exp.add_argument("--out", required=True, help="folder to write " + ", ".join(f"{v}/" for v in RELEASED_DIRS.values()))
    exp.add_argument("--kinds", help="comma-separated subset of " + ",".join(KINDS))
    exp.set_defaults(func=_run_export, outputs={"out": "folder"})

    mer = sub.add_parser("merge", help="join stores (e.g. `extract --shard i/n` outputs) into one")
    mer.add_argument("inputs", nargs="+")
    mer.add_argument("--out", required=True)
    mer.set_defaults(func=_run_merge, outputs={"out": "file"})

    tok = sub.add_parser("token-counts", help="record each stored question's CLIP token count (the word "
                                              "positions ModelConfig.mask_padding keeps), from the annotation texts")
    tok.add_argument("store")
    tok.add_argument("--questions", metavar="DATASET", required=True, help="the dataset whose questions the store holds")
    tok.add_argument("--root", required=True, help="its annotation folder")
    tok.add_argument("--split", help="only this split (default: every split with an annotation file)")
    tok.set_defaults(func=_run_token_counts, outputs={"store": "file"})

    inf = sub.add_parser("info", help="item counts, shapes and provenance attributes of a store")
    inf.add_argument("store")
    inf.set_defaults(func=_run_info)

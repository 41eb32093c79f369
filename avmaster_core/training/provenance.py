"""Where a run and a result came from, and `avmaster runs check DIR`.

    run_provenance(record, data_cfg, device)   config.json's "provenance" (engine.train writes it)
    note_run_read(run_dir)                     a reader of a run folder says so (paper.read_run_table, checkpoints)
    write_sidecar(path)                        plots.save_table / save_figure: `<file>.provenance.json`
    check(folder) -> (lines, ok)               what `avmaster runs check DIR` prints, and its verdict

A run folder's config.json records, under "provenance": the package version, the git commit of the code
and whether its tracked files (outside results/) differed from it ("dirty"), a hash of the run's full
configuration (model, train, data), a fingerprint of its data (the annotation files' sha256) and of its
feature store (size, item counts, attributes; not every byte), the torch version, the device and the torch
threads. A run resumed on another commit keeps the earlier ones ("earlier_commits").

Every table and figure written through plots.save_table / save_figure gets a sidecar `<name>.provenance.json`
listing the run folders read in this process since the last `reset_reads()` (notebook_settings calls it, so
in a notebook: the runs that notebook read before writing), each with its commit and configuration hash.
It holds no timestamp and no writer's commit, so rewriting a table from the same runs rewrites the same bytes.
Runs made before provenance was recorded say so (commit null); nothing is guessed for them.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ..core.atomic import atomic_write, write_json
from ..core.run_reads import note_run_read, reset_reads, runs_read  # noqa: F401 (reset_reads: notebooks)
import torch
import dataclasses
from ..core import __version__
from ..data.annotations import MissingAnnotationFile, annotation_files, find_annotation_file
from ..core.store import FeatureStore
from ..core.config import SIZES
from ..core.experiments import experiment
from .run_config import config_differences, free_fields

REPO = Path(__file__).resolve().parents[2]
SIDECAR_SUFFIX = ".provenance.json"
UNKNOWN = "unknown (no provenance recorded)"


# ------------------------------------------------------------------------------------------ the code
@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """{"package", "commit", "dirty"} of the code running now; commit and dirty are None outside a git checkout.
    Dirty: a tracked file outside results/ (the outputs) differs from the commit, or an untracked file sits
    in the package."""
    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)results") if commit else None
    return {"package": __version__, "commit": commit,
            "dirty": None if status is None else bool(status.strip())}


def commit_label(prov: dict | None) -> str:
    """'abc1234', 'abc1234+dirty' or UNKNOWN: how runs and tables are grouped by the code that made them."""
    if not prov or not prov.get("commit"):
        return UNKNOWN
    return prov["commit"][:12] + ("+dirty" if prov.get("dirty") else "")


# ------------------------------------------------------------------------------------------ a run
def config_hash(record: dict) -> str:
    """sha256 (first 16 hex digits) of a run's full configuration: its model, train and data parts."""
    text = json.dumps({k: record.get(k) for k in ("model", "train", "data")}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(data_cfg, splits) -> dict:
    """{"annotations": {file: sha256}, "store": {path, bytes, items, attrs_sha256}} of a run's data."""
    files = {}
    for split in dict.fromkeys(s for s in splits if s):
        for name, _, _ in annotation_files(data_cfg.dataset, split):
            try:
                files[name] = file_sha256(find_annotation_file(data_cfg.root, data_cfg.dataset, name))
            except MissingAnnotationFile:
                files[name] = None
    store = data_cfg.store_path()
    with FeatureStore(store) as opened:
        attrs = json.dumps({k: str(v) for k, v in opened.attrs.items()}, sort_keys=True)
        items = {kind: len(opened.keys(kind)) for kind in ("audio", "visual", "question", "words", "choices")}
    return {"annotations": files, "store": {"path": str(store), "bytes": store.stat().st_size,
                                            "items": {k: n for k, n in items.items() if n},
                                            "attrs_sha256": hashlib.sha256(attrs.encode()).hexdigest()[:16]}}


def run_provenance(record: dict, data_cfg, splits, device, earlier: dict | None = None) -> dict:
    """config.json's "provenance" of a run about to train (see the module docstring); `earlier`: the
    provenance of the run being resumed."""
    prov = {**code_version(), "config_sha256": config_hash(record), "data": data_fingerprint(data_cfg, splits),
            "torch": str(torch.__version__), "device": str(device), "threads": torch.get_num_threads()}
    if earlier and commit_label(earlier) != commit_label(prov):
        prov["earlier_commits"] = sorted({*earlier.get("earlier_commits", ()), commit_label(earlier)})
    return prov


def read_run_provenance(run_dir: Path) -> tuple[dict | None, dict]:
    """(its provenance or None, its config.json) of a run folder."""
    path = Path(run_dir) / "config.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    return record.get("provenance"), record


# ------------------------------------------------------------------------------------------ results
def save_table(table, path) -> Path:
    """Write a result table as CSV, creating folders; atomic; with its provenance sidecar. Fixed decimals: a
    rerun rewrites the same bytes (no float noise, so `make demo` leaves git clean)."""
    path = atomic_write(path, lambda f: table.round(4).to_csv(f), mode="w")
    write_sidecar(path)
    return path


def write_sidecar(path, **extra) -> Path:
    """`<path>.provenance.json`: the runs read since reset_reads(), their commits and configuration hashes
    (and `extra` keys, e.g. what a figure draws: plots.save_figure)."""
    path = Path(path)
    runs = []
    for run_dir in runs_read():
        prov, record = read_run_provenance(run_dir)
        runs.append({"run": os.path.relpath(run_dir, path.resolve().parent), "commit": commit_label(prov),
                     "config_sha256": (prov or {}).get("config_sha256")})
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    write_json(sidecar, {"file": path.name, "commits": sorted({r["commit"] for r in runs}), "runs": runs, **extra})
    return sidecar


# ------------------------------------------------------------------------------------------ avmaster runs check
MAX_LISTED = 20


def _listed(items: list[str]) -> str:
    more = f"\n    ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "".join(f"\n    {item}" for item in items[:MAX_LISTED]) + more


def run_folders(folder: Path) -> list[Path]:
    """Every finished run folder (config.json and summary.json) under `folder`."""
    return sorted(p.parent for p in Path(folder).rglob("summary.json") if (p.parent / "config.json").is_file())


def _todays_model_differences(name: str, saved_model: dict) -> list[str] | None:
    """How a run's model config differs from what today's code builds for its run name (the closest size);
    None when the name is not a registered experiment (a --name or --set run)."""
    preset, base = ("paper", name.removeprefix("paper/")) if name.startswith("paper/") else ("official", name)
    try:
        candidates = [dataclasses.asdict(experiment(base, preset, size)) for size in SIZES]
    except (KeyError, ValueError):
        return None
    return min((config_differences({"model": saved_model}, {"model": c}) for c in candidates), key=len)


def check(folder) -> tuple[list[str], bool]:
    """(report lines, True when every run and table under `folder` comes from one commit and one configuration
    per run name, each as today's code builds it); see `avmaster runs check --help`."""
    folder, lines, ok = Path(folder), [], True
    runs = run_folders(folder)
    by_commit: dict[str, list[str]] = {}
    by_name: dict[str, list[tuple[str, dict]]] = {}
    stale = []
    for run_dir in runs:
        prov, record = read_run_provenance(run_dir)
        rel = run_dir.relative_to(folder).as_posix()
        by_commit.setdefault(commit_label(prov), []).append(rel)
        by_name.setdefault(run_dir.parent.relative_to(folder).as_posix(), []).append((rel, record))
        diffs = _todays_model_differences(run_dir.parent.relative_to(folder).as_posix(), record.get("model", {}))
        if diffs:
            stale.append(f"{rel}: {'; '.join(diffs)}")
    head = commit_label(code_version())
    lines.append(f"{len(runs)} run(s) under {folder}; the code here is {head}")
    for label, names in sorted(by_commit.items()):
        lines.append(f"  {len(names)} run(s) made by {label}" + (" (this code)" if label == head else ""))
    if UNKNOWN in by_commit:
        ok = False
        lines.append(f"{len(by_commit[UNKNOWN])} run(s) record no provenance (made before it was recorded): the "
                     f"commit, data and configuration hash that made them are unknown; re-train them to know:"
                     + _listed(by_commit[UNKNOWN]))
    if len(by_commit) > 1:
        ok = False
        lines.append(f"MIXED: these runs come from {len(by_commit)} different commits (or unknown ones); tables "
                     "made from them compare code versions")
    others = [n for label, names in by_commit.items() if label not in (head, UNKNOWN) for n in names]
    if others:
        lines.append(f"{len(others)} run(s) made by another commit than this code ({head}):" + _listed(others))
    if stale:
        ok = False
        lines.append(f"{len(stale)} run(s) of another configuration than today's code builds for their name:"
                     + _listed(stale))
    free = free_fields(resuming=False)
    free["train"] = free["train"] | {"seed"}
    for name, members in sorted(by_name.items()):
        first_rel, first = members[0]
        for rel, record in members[1:]:
            diffs = config_differences(first, record, free)
            if diffs:
                ok = False
                lines.append(f"{rel} and {first_rel} (seeds of one run) differ: {'; '.join(diffs)}")
    ok = _check_tables(folder, lines) and ok
    lines.append("OK: every run from one commit, one configuration per run" if ok else
                 "NOT OK: see above (exit 1)")
    return lines, ok


def _check_tables(folder: Path, lines: list[str]) -> bool:
    """Each table's sidecar: one commit among its runs, and the runs still as they were when it was written."""
    ok = True
    sidecars = sorted(folder.rglob(f"*{SIDECAR_SUFFIX}"))
    if sidecars:
        lines.append(f"{len(sidecars)} table(s)/figure(s) with a provenance record")
    for sidecar in sidecars:
        info = json.loads(sidecar.read_text())
        name = sidecar.relative_to(folder).as_posix().removesuffix(SIDECAR_SUFFIX)
        if len(info.get("commits", [])) > 1:
            ok = False
            lines.append(f"MIXED: {name} combines runs of {len(info['commits'])} commits: "
                         f"{', '.join(info['commits'])}")
        changed = []
        for run in info.get("runs", []):
            prov, _ = read_run_provenance(sidecar.parent / run["run"])
            if commit_label(prov) != run["commit"] or (prov or {}).get("config_sha256") != run["config_sha256"]:
                changed.append(run["run"])
        if changed:
            ok = False
            lines.append(f"STALE: {name} was written from runs that have since been re-made or removed; "
                         "re-run its notebook:" + _listed(changed))
    return ok


def _check_command(args) -> int:
    if not Path(args.folder).is_dir():
        raise FileNotFoundError(f"{args.folder}: no such folder; give a runs folder (results/runs/synthetic) or "
                                "results/")
    lines, ok = check(args.folder)
    print("\n".join(lines))
    return 0 if ok else 1


def register(subparsers) -> None:
    """Add `runs check` to the `avmaster` command."""
    p = subparsers.add_parser("runs", help="check where finished runs and result tables came from")
    sub = p.add_subparsers(dest="runs_command", metavar="<check>", required=True)
    c = sub.add_parser("check", help="runs made by another commit or configuration; tables that mix commits",
                       description="List the finished runs under FOLDER by the commit that made them (config.json's "
                                   "provenance), runs whose configuration differs from what today's code builds "
                                   "for their name or from their other seeds, and tables/figures whose sidecar "
                                   "(<file>" + SIDECAR_SUFFIX + ") mixes commits or is older than its runs. "
                                   "Exit 0 when everything comes from one commit, else 1.")
    c.add_argument("folder", help="a runs folder (e.g. results/runs/synthetic) or results/")
    c.set_defaults(func=_check_command)

"""Grids of runs (experiments x seeds) and their mean ± std tables: `avmaster sweep`.

    from avmaster_core.sweep import run_grid, summarize, write_markdown
    results = run_grid(["baseline/question_only", "default", "fig5/v+q"], [1, 2, 3], size="cpu",
                       train_cfg=TrainConfig(epochs=10, lr=1e-3, batch_size=32, device="cpu"),
                       data_cfg=DataConfig("synthetic", "data/synthetic"), out_dir="results/runs/synthetic")
    table = summarize("results/runs/synthetic", ["baseline/question_only", "default", "fig5/v+q"], [1, 2, 3])
    print(write_markdown(table))

A grid is resumable at every level: a run whose `summary.json` exists is finished and skipped (after
checking it was trained with the same configuration), an interrupted one (a `last.pt` without a summary)
is resumed where it stopped, and the others start. Run folders are the engine's:
`<out_dir>/<run name>/<seed>/`, where the run name is the experiment, under `paper/` for the paper preset
(`paper/default`). A run folder has one writer (run_config.lock_run_folder): a run that another process
(a sweep, `train`, `reproduce`) is writing is skipped with its holder named, so several sweeps over the
same grid share the work and never train one run twice.

summarize() reads every run's `test_table.csv` (the paper's Table II layout) and gives, per run name, the
mean and the sample standard deviation (ddof=1) over seeds of every type, modality average and the overall
average, in percent.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import experiments as experiment_registry
from .run_config import (DataConfig, RunFolderInUseError, RunResult, TrainConfig, config_differences,
                         free_fields, run_dir_for, run_name)

SUMMARY_FILE = "summary.json"
# Row labels of write_markdown (e.g. results/synthetic.md) for every run name of either preset, from the
# experiments registry's labels (the run name is kept for traceability).
RUN_LABELS = {run: experiment_registry.run_label(run)
              for name in experiment_registry.REGISTRY for run in (name, f"paper/{name}")}
STATISTICS = ("mean", "std")


def grid_configs(experiment: str, seed: int, preset: str, size: str, train_cfg: TrainConfig,
                  data_cfg: DataConfig):
    from .config import EXPERIMENT_SEGMENTS, experiment as experiment_config

    model_cfg = experiment_config(experiment, preset, size)
    seeded = dataclasses.replace(train_cfg, seed=int(seed))
    if data_cfg.T is None and experiment in EXPERIMENT_SEGMENTS:  # Fig. 4 fixes T at the data level
        data_cfg = dataclasses.replace(data_cfg, T=EXPERIMENT_SEGMENTS[experiment])
    return model_cfg, seeded, data_cfg


def grid_config_differences(saved: dict, model_cfg, train_cfg: TrainConfig, data_cfg: DataConfig) -> list[str]:
    wanted = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
              "data": dataclasses.asdict(data_cfg)}
    # A finished run must be the run asked for: only the fields that never change results may differ
    # (run_config.free_fields; unlike a resume, a finished run asked for with more epochs is another run).
    return config_differences(saved, wanted, free_fields(resuming=False))


def read_finished_run(run_dir: str | Path) -> RunResult:
    """The RunResult of a finished run folder, from its files (summary.json, test_table.csv, metrics.jsonl)."""
    from .paper import read_run_table

    run_dir = Path(run_dir)
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished")
    summary = json.loads(path.read_text())
    metrics = run_dir / "metrics.jsonl"
    history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] \
        if metrics.is_file() else []
    table = read_run_table(run_dir) if (run_dir / "test_table.csv").is_file() else None
    return RunResult(run_dir=run_dir, best_epoch=summary["best_epoch"], best_val_acc=summary["best_val_acc"],
                     test_acc=summary["test_acc"], table=table, history=history)


def run_grid(experiments: Sequence[str], seeds: Sequence[int], *, preset: str = "official", size: str = "full",
             train_cfg: TrainConfig = TrainConfig(), data_cfg: DataConfig = DataConfig(),
             out_dir: str | Path = "results/runs", skip_finished: bool = True,
             progress: bool = True) -> list[RunResult]:
    """Train every (experiment, seed) of the grid that has not finished; returns one RunResult per cell,
    experiment-major (finished runs are read back from their folders).

    train_cfg is shared by all runs; its `seed` is replaced by each grid seed. skip_finished=False retrains
    (from scratch) runs that have finished and whose last.pt is gone, and re-tests those that still have it.
    A finished run trained with another configuration is an error (choose another out_dir, or delete it).
    Runs that another process is writing (its run-folder lock) are skipped and left out of the returned list.
    """
    from tqdm.auto import tqdm

    from .engine import train

    experiments, seeds = list(experiments), [int(s) for s in seeds]
    if not experiments or not seeds:
        raise ValueError("run_grid needs at least one experiment and one seed")
    # Build every config first: a typo in the last experiment fails before hours of training.
    cells = [(e, s, *grid_configs(e, s, preset, size, train_cfg, data_cfg)) for e in experiments for s in seeds]
    results: list[RunResult] = []
    bar = tqdm(cells, desc="sweep", disable=not progress, dynamic_ncols=True)
    for experiment, seed, model_cfg, seeded_train, run_data in bar:
        name = run_name(experiment, preset)
        run_dir = run_dir_for(out_dir, name, seed)
        bar.set_postfix_str(f"{name} seed {seed}")
        if (run_dir / SUMMARY_FILE).is_file():
            # A finished run must be the run asked for (an unfinished one is checked by train's resume).
            saved = json.loads((run_dir / "config.json").read_text())
            diffs = grid_config_differences(saved, model_cfg, seeded_train, run_data)
            if diffs:
                raise ValueError(f"{run_dir} holds a run of another configuration ({'; '.join(diffs)}); "
                                 "use another out_dir, or delete that run folder to retrain it")
            if skip_finished:
                results.append(read_finished_run(run_dir))
                continue
        try:
            results.append(train(model_cfg, seeded_train, run_data, out_dir=out_dir, experiment=name,
                                 resume=True))
        except RunFolderInUseError as e:  # another process writes it: not ours to train now
            print(f"[avmaster] skipped: {e}", file=sys.stderr)
    bar.close()
    return results


def check_grid_inputs(experiments, seeds, *, preset: str, size: str, train_cfg: TrainConfig, data_cfg: DataConfig,
                      out_dir) -> None:
    """preflight.check_run_inputs once per distinct data config among the unfinished runs of a grid (the
    `sweep` command calls it before the first run)."""
    from .preflight import check_run_inputs, splits_of

    checked = set()
    for experiment, seed in ((e, s) for e in experiments for s in seeds):
        model_cfg, seeded_train, run_data = grid_configs(experiment, seed, preset, size, train_cfg, data_cfg)
        if run_data in checked or (run_dir_for(out_dir, run_name(experiment, preset), seed) / SUMMARY_FILE).is_file():
            continue
        check_run_inputs(run_data, model_cfg, splits_of(seeded_train, run_data))
        checked.add(run_data)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------------------- summaries
def run_minutes(run_dir: Path) -> float:
    """Training + validation wall time of a run, in minutes (from metrics.jsonl; test time not included)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return float("nan")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in rows) / 60.0


def summarize(out_dir: str | Path, experiments: Iterable[str], seeds: Iterable[int]) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over `seeds` of each run's test table, in the paper's Table II layout.

    experiments: run names under out_dir (the experiment, "paper/<experiment>" for paper-preset runs).
    Returns a frame indexed by (run, statistic) with statistic "mean" / "std" and the Table II columns
    (percent). attrs: "seeds" {run: seeds}, "minutes" {run: mean training minutes per seed}.
    Every (run, seed) must have finished; the error names the missing ones.
    """
    from .paper import read_run_table
    from .scoring import TABLE2_COLUMNS

    out_dir, experiments, seeds = Path(out_dir), list(experiments), [int(s) for s in seeds]
    missing = [f"{name}/{seed}" for name in experiments for seed in seeds
               if not (out_dir / name / str(seed) / "test_table.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"unfinished runs under {out_dir}: {', '.join(missing)}; train them with "
                                "`avmaster sweep` (same --out) first")
    columns = pd.MultiIndex.from_tuples(TABLE2_COLUMNS)
    rows, index, minutes = [], [], {}
    for name in experiments:
        tables = pd.concat([read_run_table(out_dir / name / str(seed)).reindex(columns=columns) for seed in seeds])
        rows += [tables.mean().to_numpy(dtype=float), tables.std(ddof=1).to_numpy(dtype=float)]
        index += [(name, "mean"), (name, "std")]
        minutes[name] = float(np.mean([run_minutes(out_dir / name / str(seed)) for seed in seeds]))
    out = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["run", "statistic"]), columns=columns)
    out.attrs["seeds"] = {name: seeds for name in experiments}
    out.attrs["minutes"] = minutes
    return out


def format_summary(summary: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """summarize()'s frame as one "mean ± std" text cell per run and column (std omitted for one seed)."""
    runs = list(dict.fromkeys(summary.index.get_level_values("run")))
    text = {}
    for name in runs:
        mean, std = summary.loc[(name, "mean")], summary.loc[(name, "std")]
        text[name] = [("–" if np.isnan(m) else f"{m:.{digits}f}" + ("" if np.isnan(s) else f" ± {s:.{digits}f}"))
                      for m, s in zip(mean.to_numpy(), std.to_numpy())]
    return pd.DataFrame.from_dict(text, orient="index", columns=summary.columns)


def write_markdown(summary: pd.DataFrame, *, labels: dict[str, str] | None = None,
                   extra_rows: dict[str, dict] | None = None, digits: int = 1) -> str:
    """A markdown table of summarize()'s frame: one row per run (labelled by `labels`), one column per Table II
    column ("Audio Count", ..., "Overall Avg"), cells "mean ± std"; plus a column with the seeds and the mean
    minutes per run. extra_rows: {label: {column label or (modality, type): value in percent}} appended as
    plain numbers (e.g. the question-only ceiling)."""
    from .scoring import MODALITY_LABELS

    short = {v: k for k, v in MODALITY_LABELS.items()}  # "Audio QA" -> "Audio"
    text = format_summary(summary, digits)
    heads = [f"{short.get(m, m)} {t}" for m, t in text.columns]
    labels = labels or {}
    seeds, minutes = summary.attrs.get("seeds", {}), summary.attrs.get("minutes", {})
    lines = ["| run | " + " | ".join(heads) + " | seeds | min/run |", "|---" * (len(heads) + 3) + "|"]
    for name, row in text.iterrows():
        bold = [f"**{c}**" if h.endswith("Avg") else c for h, c in zip(heads, row)]
        n = len(seeds.get(name, []))
        mins = minutes.get(name, float("nan"))
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(bold) + f" | {n} | "
                     + ("–" if np.isnan(mins) else f"{mins:.1f}") + " |")
    for label, values in (extra_rows or {}).items():
        cells = []
        for (m, t), h in zip(text.columns, heads):
            v = values.get((m, t), values.get(h, float("nan")))
            cells.append("–" if v is None or np.isnan(v) else f"{v:.{digits}f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " | – | – |")
    return "\n".join(lines) + "\n"


def question_only_row(root: str | Path) -> dict:
    """The synthetic benchmark's question-only rule (synthetic.question_only_ceiling) as an extra_rows entry:
    {(modality label, type label): percent}; modality averages are pooled over questions, like scoring's."""
    from .annotations import load_annotations
    from .records import QUESTION_TYPES
    from .scoring import MODALITY_LABELS, OVERALL, QTYPE_LABELS
    from .synthetic import question_only_ceiling

    by_type = question_only_ceiling(root)["by_type"]  # {"Audio Counting": fraction, ...}
    counts = load_annotations("synthetic", "test", root).groupby(["modality", "qtype"]).size()
    row: dict = {}
    pooled = {m: [0.0, 0] for m in MODALITY_LABELS}
    for m, q in QUESTION_TYPES:
        acc, n = by_type.get(f"{m} {q}"), int(counts.get((m, q), 0))
        if acc is None or n == 0:
            continue
        row[(MODALITY_LABELS[m], QTYPE_LABELS[q])] = 100 * acc
        pooled[m][0] += acc * n
        pooled[m][1] += n
    for m, (hits, n) in pooled.items():
        row[(MODALITY_LABELS[m], "Avg")] = 100 * hits / n if n else float("nan")
    total = sum(n for _, n in pooled.values())
    row[OVERALL] = 100 * sum(h for h, _ in pooled.values()) / total if total else float("nan")
    return row


# ------------------------------------------------------------------------------------------------ command line
_EPILOG = """\
examples:
  # the CPU grid of results/synthetic.md (each run ~1-3 min on one thread)
  avmaster synth --out data/synthetic
  avmaster sweep --experiments baseline/question_only default table7/wo_tdpp table7/wo_gpap fig5/a+q fig5/v+q \\
      --seeds 1 2 3 --size cpu --dataset synthetic --root data/synthetic --device cpu \\
      --epochs 10 --lr 1e-3 --batch-size 32 --out results/runs/synthetic
  avmaster sweep --preset paper --experiments default --seeds 1 2 3 --size cpu ...   # -> paper/default

  # only print the table of finished runs (no training); with a synthetic --root, also the question-only rule
  avmaster sweep --experiments default fig5/v+q --seeds 1 2 3 --out results/runs/synthetic --summary-only \
      --dataset synthetic --root data/synthetic

A finished run (summary.json present) is skipped, an interrupted one resumed: rerun the same command.
"""


def shared_experiments(experiments: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the experiments to train, once each; notes): an experiment whose configuration equals an earlier one's
    (experiments.run_for) is trained and reported as that one, so one configuration has one run set."""
    out, notes = [], []
    for name in experiments:
        shared = experiment_registry.run_for(name) if name in experiment_registry.REGISTRY else name
        if shared != name:
            notes.append(f"{name}: same configuration as {shared}, whose runs it shares")
        if shared not in out:
            out.append(shared)
    return out, notes


def _sweep_command(args) -> int:
    from .engine_cli import config_from_args, train_config_for

    args.experiments, notes = shared_experiments(args.experiments)
    for note in notes:
        print(f"[avmaster] {note}", file=sys.stderr)
    names = [run_name(e, args.preset) for e in args.experiments]
    if not args.summary_only:
        if not args.dataset or not args.root:
            raise SystemExit("avmaster sweep: --dataset and --root are required to train (or pass --summary-only)")
        train_cfg = train_config_for(args.preset, args)
        data_cfg = config_from_args(DataConfig, args)
        start = time.perf_counter()
        try:
            check_grid_inputs(args.experiments, args.seeds, preset=args.preset, size=args.size, train_cfg=train_cfg,
                              data_cfg=data_cfg, out_dir=args.out)  # every input, before the first run
            run_grid(args.experiments, args.seeds, preset=args.preset, size=args.size, train_cfg=train_cfg,
                     data_cfg=data_cfg, out_dir=args.out, progress=train_cfg.progress)
        except (KeyError, ValueError) as e:
            raise SystemExit(f"avmaster sweep: {e.args[0] if e.args else e}") from None
        print(f"sweep finished in {(time.perf_counter() - start) / 60:.1f} min")
    extra = {}
    if args.dataset == "synthetic" and args.root:
        extra["question-only rule (no training)"] = question_only_row(args.root)
    try:
        summary = summarize(args.out, names, args.seeds)
    except FileNotFoundError as e:  # e.g. runs another sweep is still training
        if args.summary_only:
            raise SystemExit(f"avmaster sweep: {e}") from None
        print(f"no table yet: {e}")
        return 0
    print(write_markdown(summary, labels=RUN_LABELS, extra_rows=extra))
    return 0


def register(subparsers) -> None:
    """Add `sweep` to the `avmaster` command."""
    from .engine_cli import add_config_arguments, add_model_arguments
    from .options import UniqueValues, field_ranges

    p = subparsers.add_parser("sweep", help="train a grid of experiments x seeds; print mean ± std tables",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                              description="Train every (experiment, seed) of a grid that has not finished yet "
                                          "(resuming interrupted runs), then print the per-type test accuracy "
                                          "(mean ± std over seeds) in the paper's Table II layout.")
    p.add_argument("--experiments", nargs="+", required=True,
                   help="named experiments (avmaster_core.config.EXPERIMENTS), e.g. default table7/wo_tdpp")
    p.add_argument("--seeds", nargs="+", type=field_ranges(TrainConfig)["seed"], action=UniqueValues,
                   default=[1, 2, 3], help="distinct seeds (default 1 2 3)")
    add_model_arguments(p)
    # The train command's options (run_config field metadata), except --seed: the grid gives the seeds.
    add_config_arguments(p, DataConfig)
    add_config_arguments(p, TrainConfig, skip=("seed",))
    p.add_argument("--out", default="results/runs", help="runs folder (default results/runs)")
    p.add_argument("--summary-only", action="store_true", help="train nothing; print the table of finished runs")
    p.set_defaults(func=_sweep_command, outputs={"out": "folder"})

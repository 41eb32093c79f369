"""The shipped synthetic runs (`results/runs/synthetic*/`): list them, re-train each from its own config.json
(the synthetic tier of `avmaster reproduce`), and check a re-trained run against the shipped one bit for bit
(`make verify-runs`, and the default-tier test of one configuration, tests/test_remake.py).

    runs = shipped_runs("results/runs")          # every finished run folder, from its config.json
    remade = retrain(runs[0], out="build/remake", data="data")
    differences(runs[0].folder, remade)          # [] when every metric is bit-identical

On CPU with one thread training is deterministic: the same code, data and configuration give the same metrics to
the last bit (same torch version and CPU). A run re-made by today's code that differs from its shipped folder
says the code (or the data) changed what it computes: drift shows the day it happens.

Each runs folder under `results/runs/` holds the runs of one synthetic benchmark; BENCHMARKS says how that
benchmark is generated (results/synthetic.md, sections 1, 5 and 6), under `<data>/<folder name>`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.atomic import write_text
from ..core.config import ModelConfig
from ..data.synthetic import generate_synthetic
from ..training.engine import train
from ..training.run_config import LAST_CHECKPOINT, DataConfig, TrainConfig
from ..training.sweep import run_minutes
from .worklock import WorkLock

# runs folder under results/runs -> (dataset, the generator's parameters beyond its defaults)
BENCHMARKS: dict[str, tuple[str, dict]] = {
    "synthetic": ("synthetic", {}),
    "synthetic_decorrelated": ("synthetic", {"visible_prob": 0.5, "silent_prob": 0.6}),
    "synthetic_mc": ("synthetic_mc", {"choices": 4}),
    "synthetic_context": ("synthetic", {"padding": "context"}),
}
TIMING_FIELDS = ("samples_per_s", "train_seconds", "eval_seconds")  # wall clock: never compared
COMPARED_FILES = ("summary.json", "metrics.jsonl", "test_table.csv", "predictions.json")
VERIFIED = "verified.json"  # under the verification folder: {run: commit-free record of the check}


@dataclass(frozen=True)
class ShippedRun:
    """One finished run folder: `<runs>/<benchmark>/<run name>/<seed>`."""

    folder: Path
    benchmark: str
    name: str           # the run name (experiment, `paper/<experiment>` for the paper preset)
    seed: int
    config: dict        # its config.json

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.name}/{self.seed}"

    def minutes(self) -> float:
        """Training + validation minutes it took (metrics.jsonl), to order runs cheapest first."""
        return run_minutes(self.folder)


def shipped_runs(runs="results/runs", only=None) -> list[ShippedRun]:
    """Every finished run (config.json + summary.json) under the BENCHMARKS folders of `runs`, in path order;
    `only`: keys or key prefixes ("synthetic/default", "synthetic_decorrelated/")."""
    out = []
    for benchmark in BENCHMARKS:
        root = Path(runs) / benchmark
        for summary in sorted(root.glob("**/summary.json")):
            folder = summary.parent
            rel = folder.relative_to(root)
            if not rel.name.isdigit() or not (folder / "config.json").is_file():
                continue
            run = ShippedRun(folder, benchmark, rel.parent.as_posix(), int(rel.name),
                             json.loads((folder / "config.json").read_text()))
            if not only or any(run.key == o or run.key.startswith(o.rstrip("/") + "/") for o in only):
                out.append(run)
    return out


def benchmark_root(benchmark: str, data="data") -> Path:
    """The benchmark's folder, generated first where missing (or made with other parameters)."""
    root = Path(data) / benchmark
    generate_synthetic(root, **BENCHMARKS[benchmark][1])  # reuses a complete output of the same parameters
    return root


def run_configs(run: ShippedRun, data="data"):
    """(ModelConfig, TrainConfig, DataConfig) of a shipped run, from its config.json, reading the benchmark under
    `data`, on the CPU (where one thread makes training deterministic)."""
    saved = run.config
    model_cfg = ModelConfig.from_dict(saved["model"])
    train = {**saved["train"], "betas": tuple(saved["train"]["betas"]), "device": "cpu", "progress": False}
    train_cfg = TrainConfig(**train)
    data_cfg = DataConfig(**{**saved["data"], "root": str(Path(data) / run.benchmark), "store": None})
    return model_cfg, train_cfg, data_cfg


def retrain(run: ShippedRun, out="build/remake", data="data", threads: int = 1) -> Path:
    """Train `run`'s configuration again into `<out>/<benchmark>/<name>/<seed>` (resumes an interrupted one, keeps
    a finished one); returns that folder."""
    torch.set_num_threads(threads)
    benchmark_root(run.benchmark, data)
    model_cfg, train_cfg, data_cfg = run_configs(run, data)
    folder = Path(out) / run.benchmark / run.name / str(run.seed)
    train(model_cfg, train_cfg, data_cfg, run_dir=folder, experiment=run.config.get("experiment", run.name),
          resume=True)
    return folder


def _comparable(path: Path):
    """What of a run file is compared: metrics without wall-clock fields; predictions without their header."""
    text = path.read_text()
    if path.name == "metrics.jsonl":
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
                for line in text.splitlines() if line.strip()]
    if path.name == "predictions.json":
        return json.loads(text)["predictions"]
    if path.suffix == ".json":
        return json.loads(text)
    return text


def differences(shipped: Path, remade: Path) -> list[str]:
    """How a re-made run differs from the shipped one (empty: bit-identical metrics, tables and predictions)."""
    out = []
    for name in COMPARED_FILES:
        a, b = Path(shipped) / name, Path(remade) / name
        if not a.is_file() or not b.is_file():
            out.append(f"{name}: {'absent in the shipped run' if not a.is_file() else 'not written by the re-run'}")
            continue
        old, new = _comparable(a), _comparable(b)
        if old != new:
            out.append(f"{name}: {_first_difference(old, new)}")
    return out


def _first_difference(old, new) -> str:
    if isinstance(old, list) and isinstance(new, list):
        for i, (x, y) in enumerate(zip(old, new)):
            if x != y:
                keys = [k for k in x if x.get(k) != y.get(k)] if isinstance(x, dict) else []
                return f"epoch {i + 1} differs" + (f" ({keys[0]}: shipped {x[keys[0]]!r}, now {y[keys[0]]!r})"
                                                  if keys else "")
        return f"{len(old)} records shipped, {len(new)} now"
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return f"{len(keys)} value(s) differ, e.g. {keys[0]}: shipped {old.get(keys[0])!r}, now {new.get(keys[0])!r}"
    return "the text differs"


def status(run: ShippedRun, out) -> str:
    """Where the re-make of `run` under `out` stands: finished (and whether it matches the shipped run bit for
    bit), interrupted (a last.pt), or missing."""
    folder = Path(out) / run.benchmark / run.name / str(run.seed)
    if (folder / "summary.json").is_file():
        return "finished, " + ("bit-identical" if not differences(run.folder, folder) else "differs from shipped")
    return "interrupted" if (folder / LAST_CHECKPOINT).is_file() else "missing"


def render_plan(runs, out) -> str:
    """The synthetic tier's plan: one line per shipped run, what re-makes it and where it stands."""
    lines = [f"Synthetic tier: {len(runs)} shipped run(s), re-made from their own config.json into {out}/ "
             "(CPU, one thread each)", ""]
    rows = [(status(r, out), r.key, r.config.get("experiment", r.name), f"{r.minutes():.1f}") for r in runs]
    width = [max(len(row[i]) for row in rows + [("status", "run", "experiment", "min")]) for i in range(4)]
    for row in [("status", "run", "experiment", "min"), *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, width)).rstrip())
    todo = [r for r, row in zip(runs, rows) if not row[0].startswith("finished")]
    lines += ["", f"{len(todo)} to train, about {sum(r.minutes() for r in todo):.0f} min of single-thread CPU "
                  "(the shipped runs' own training minutes)"]
    return "\n".join(lines)


def reproduce_synthetic(shipped="results/runs", out="build/remake/runs", data="data", only=None, *,
                        dry_run: bool = False, threads: int = 1, echo=print) -> int:
    """`avmaster reproduce plan|run --tier synthetic`: re-train every shipped synthetic run (cheapest first) into
    `out`, resumable (finished re-makes are kept, interrupted ones resume). Returns how many differ from the
    shipped run (0 after a dry run)."""
    runs = sorted(shipped_runs(shipped, only), key=ShippedRun.minutes)
    if not runs:
        raise ValueError(f"no finished run under {shipped}/{{{','.join(BENCHMARKS)}}} matches {only or 'anything'}")
    echo(render_plan(runs, out), flush=True)
    if dry_run:
        return 0
    differ = 0
    for i, run in enumerate(runs, 1):
        folder = Path(out) / run.benchmark / run.name / str(run.seed)
        folder.mkdir(parents=True, exist_ok=True)
        lock = WorkLock(folder / ".reproduce.lock")
        if not lock.acquire():
            echo(f"[{i}/{len(runs)}] skipped {run.key}: another process holds {lock.path}", flush=True)
            continue
        try:
            retrain(run, out, data, threads)
        finally:
            lock.release()
        diffs = differences(run.folder, folder)
        differ += bool(diffs)
        echo(f"[{i}/{len(runs)}] {run.key}: " + ("bit-identical to the shipped run" if not diffs else
                                                 "differs from the shipped run: " + "; ".join(diffs)), flush=True)
    return differ


def verify(runs="results/runs", out="build/verify-runs", data="data", only=None, threads: int = 1,
           log=print) -> int:
    """Re-train every shipped run (cheapest first) and compare it with the shipped folder; resumable: a run
    recorded as verified in `<out>/verified.json` is skipped. Returns the number of runs that differ."""
    record_path = Path(out) / VERIFIED
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    failed = 0
    for run in sorted(shipped_runs(runs, only), key=ShippedRun.minutes):
        if record.get(run.key, {}).get("identical"):
            log(f"{run.key}: verified before, skipped")
            continue
        diffs = differences(run.folder, retrain(run, out, data, threads))
        record[run.key] = {"identical": not diffs, "differences": diffs}
        Path(out).mkdir(parents=True, exist_ok=True)
        write_text(record_path, json.dumps(record, indent=1))
        failed += bool(diffs)
        log(f"{run.key}: " + ("bit-identical" if not diffs else "DIFFERS: " + "; ".join(diffs)))
    return failed


def main(argv=None) -> int:
    """`python -m avmaster_core.reproduction.remake` (make verify-runs): verify every shipped run, resumable."""
    p = argparse.ArgumentParser(prog="python -m avmaster_core.reproduction.remake", description=main.__doc__)
    p.add_argument("--runs", default="results/runs", help="the shipped runs (default results/runs)")
    p.add_argument("--out", default="build/verify-runs", help="where the re-made runs go (default build/verify-runs)")
    p.add_argument("--data", default="data", help="benchmarks folder (each generated where missing)")
    p.add_argument("--only", nargs="*", help="run keys or prefixes, e.g. synthetic/default")
    args = p.parse_args(argv)
    failed = verify(args.runs, args.out, args.data, args.only)
    print(f"{failed} run(s) differ from their shipped folder" if failed else "every run checked is bit-identical")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`avmaster reproduce plan|run` (and `make reproduce`): print the plan; train and evaluate what is missing,
then write our tables and execute the notebooks of the finished artefacts in full mode.

    avmaster reproduce plan                          # every table and figure: status, needs, GPU hours
    avmaster reproduce plan --only table7 fig4 --seeds 1
    avmaster reproduce run                           # one GPU, in order; resumable: rerun after any stop
    avmaster reproduce run --gpus 0 1 2 3            # one item per GPU
    avmaster reproduce run --slurm --partition gpu   # SLURM job arrays through submitit
    avmaster reproduce run --dry-run                 # what would be launched, nothing runs

The run goes in waves -- question features, then trainings, then evaluations -- because each wave reads what
the previous one wrote. It prints the plan, then one line per finished item with its result and the time
left, then where our tables went and which notebooks ran.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from ..core.config import SIZES
from ..core.options import AT_LEAST_0, AT_LEAST_1, POSITIVE, UniqueValues, field_ranges
from ..results.notebooks import NotebookRunError, declared_parameters, run_notebooks
from ..training.precision import PRECISION_HELP, PRECISIONS
from ..training.run_config import DataConfig, TrainConfig
from .launchers import InOrder, LocalGPUs, Submitit
from .plan import BLOCKED, CONFLICT, INTERRUPTED, READY, RUNNING, WAITING, Plan, ReproduceSettings, build_plan, refresh
from .remake import reproduce_synthetic
from .report import render_plan, write_tables

WAVES = ("questions", "train", "evaluate")


class Progress:
    """Counts finished items and tells the time left: the plan's GPU estimate, rescaled by how the finished
    items' real time compared with their estimate on this machine."""

    def __init__(self, plan: Plan, total: int, echo=print):
        self.plan, self.total, self.echo = plan, total, echo
        self.done, self.spent_s, self.estimated_s = 0, 0.0, 0.0
        self.estimates = {i.key: i.hours * 3600 for i in plan.items.values()}

    def finished(self, outcome: dict, remaining_s: float) -> None:
        self.done += 1
        if outcome["status"] == "done" and self.estimates.get(outcome["key"]):
            self.spent_s += outcome["seconds"]
            self.estimated_s += self.estimates[outcome["key"]]
        pace = self.spent_s / self.estimated_s if self.estimated_s else 1.0
        left = remaining_s * pace
        how = "at this machine's pace" if self.estimated_s else "GPU estimate"
        self.echo(f"[{self.done}/{self.total}] {outcome['status']:7s} {outcome['key']}: {outcome['message']} "
                  f"({_duration(outcome['seconds'])}); about {_duration(left)} left ({how})", flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_plan(settings: ReproduceSettings, only=None, launcher=None, *, dry_run: bool = False,
             notebooks: bool = True, notebook_out: str = "build/notebooks", echo=print) -> Plan:
    """Print the plan, do every item that is missing (wave by wave), write our tables, run the notebooks of the
    finished artefacts. Items held by another worker are skipped and named. Returns the refreshed plan."""
    launcher = launcher or InOrder()
    plan = build_plan(settings, only)
    echo(render_plan(plan, details=dry_run), flush=True)
    conflicts = [i for i in plan.items.values() if i.status == CONFLICT]
    if conflicts:
        raise ValueError("finished runs of another configuration: " + "; ".join(n for i in conflicts for n in i.needs)
                         + ". Use other --runs/--results folders, or delete those run folders to retrain them.")
    if dry_run:
        _print_launches(plan, launcher, echo)
        return plan
    echo(f"\nLaunching with {launcher.name}.", flush=True)
    progress = Progress(plan, len(plan.todo()), echo)
    for wave in WAVES:
        refresh(plan)
        ready = [i for i in plan.item_list((wave,)) if i.status in (READY, INTERRUPTED)]
        for item in plan.item_list((wave,)):
            if item.status in (RUNNING, WAITING):
                why = item.result if item.status == RUNNING else f"waits for {', '.join(item.after)}"
                echo(f"skipped {item.key}: {why}", flush=True)
        remaining = {i.key: i.hours * 3600 for i in plan.todo()}
        for outcome in launcher.launch([i.spec for i in ready], settings):
            remaining.pop(outcome["key"], None)
            progress.finished(outcome, sum(remaining.values()))
    refresh(plan)
    _finish(plan, launcher, notebooks, notebook_out, echo)
    return plan


def _print_launches(plan: Plan, launcher, echo) -> None:
    echo(f"\nWould launch with {launcher.name} (waves run in this order; later waves wait for earlier ones):")
    if not plan.todo():
        blocked = sum(i.status == BLOCKED for i in plan.items.values())
        echo(f"  nothing can run now: {blocked} item(s) blocked by what they need first (above)")
    for wave in WAVES:
        for item in plan.item_list((wave,)):
            if item.todo:
                after = f"   [after {', '.join(item.after)}]" if item.after else ""
                echo(f"  {launcher.describe(item.spec, plan.settings)}{after}")
    runnable = [a for a in plan.artefacts if plan.artefacts[a].notebook]
    echo(f"then: our tables into {Path(plan.settings.results) / 'reproduce'}/, and the notebooks of the finished "
         f"artefacts among {', '.join(runnable)} in full mode")


def _finish(plan: Plan, launcher, notebooks: bool, notebook_out: str, echo) -> None:
    for name, path in write_tables(plan).items():
        echo(f"table {name}: {path}", flush=True)
    complete = [a for a in plan.artefacts if plan.complete(a)]
    incomplete = [a for a in plan.artefacts if a not in complete]
    if notebooks and complete:
        # the notebooks re-score checkpoints (Tables XII/XIII, Figs. 4, 6, 8): on a cluster they run as a job too
        ran = launcher.call(notebooks_job, plan.settings.to_dict(), list(plan.artefacts), complete, notebook_out)
        echo(f"notebooks run in full mode: {', '.join(str(p) for p in ran) or 'none'}", flush=True)
    echo(f"\nfinished: {', '.join(complete) or 'none'}; not yet: {', '.join(incomplete) or 'none'} "
         f"(`avmaster reproduce plan` says why); time left {plan.hours_left():,.1f} h", flush=True)


def notebooks_job(settings_dict: dict, only: list[str], complete: list[str], out: str) -> list[str]:
    """Picklable entry of the notebook step (a launcher may run it elsewhere): the notebooks of `complete`."""
    plan = build_plan(ReproduceSettings.from_dict(settings_dict), only)
    return [str(p) for p in run_artefact_notebooks(plan, complete, out)]


def notebook_parameters(plan: Plan, notebook: Path) -> dict:
    """The full-mode parameters of one notebook: this plan's folders (absolute), seeds, recipe and device,
    and the annotation root and store of the notebook's own dataset."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    dataset = ast.literal_eval(declared["DATASET"]["default"]) if "DATASET" in declared else "music_avqa"
    s = plan.settings
    values = {"ROOT": str(s.root(dataset).resolve()), "STORE": str(s.store(dataset).resolve()),
              "RUNS": str(Path(s.runs).resolve()), "RESULTS": str(Path(s.results).resolve()),
              "DATA": str(Path(s.data).resolve()),  # Tables III, IV, XI: the folder of every benchmark
              "SEEDS": ",".join(map(str, s.seeds)), "PRESET": s.preset, "DEVICE": s.device}
    # EPOCHS stays 0: the notebooks read the runs this plan trained (EPOCHS > 0 would make them train again)
    return {k: v for k, v in values.items() if k in declared_parameters(notebook)}


def run_artefact_notebooks(plan: Plan, artefacts: list[str], out: str, echo=print) -> list[Path]:
    """Execute, in full mode, the notebook of each finished artefact (a notebook shared by several artefacts
    runs once all of them are finished); returns the executed copies of those that ran through (a failure is
    printed with its notebook, cell and error, and the next notebook runs)."""
    owners: dict[Path, list[str]] = {}
    for name, art in plan.artefacts.items():
        if art.notebook is not None:
            owners.setdefault(art.notebook, []).append(name)
    ran = []
    for notebook, names in owners.items():
        if not all(n in artefacts for n in names):
            continue
        try:
            run_notebooks([notebook], Path(out), smoke=False, parameters=notebook_parameters(plan, notebook),
                          echo=echo)
        except NotebookRunError as e:  # one failing notebook must not hide the others' tables
            echo(f"notebook failed: {e}", flush=True)
            continue
        ran.append(Path(out) / notebook.name)
    return ran


# -------------------------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------------------------
def settings_from_args(args) -> ReproduceSettings:
    seeds = tuple(range(1, args.seeds + 1))
    stores = tuple(tuple(s.split("=", 1)) for s in args.store or ())
    if any(len(s) != 2 for s in stores):
        raise SystemExit("--store expects DATASET=PATH, e.g. --store music_avqa=/data/features.h5")
    return ReproduceSettings(data=args.data, runs=args.runs, results=args.results, seeds=seeds, preset=args.preset,
                             size=args.size, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             device=args.device, precision=args.precision, compile=args.compile, limit=args.limit,
                             train_on=args.train_on, stores=stores, encoders=args.encoders,
                             clip_weights=args.clip_weights, train_speed=args.train_speed,
                             infer_speed=args.infer_speed, progress=getattr(args, "progress", False))


def _launcher_from_args(args):
    if args.slurm or args.submitit_executor:
        return Submitit(args.submitit_folder, args.submitit_executor or "slurm", partition=args.partition,
                        timeout_min=args.timeout_min, parallel=args.parallel, account=args.account)
    if args.gpus:
        return LocalGPUs(args.gpus, ddp=args.ddp)
    return InOrder()


SYNTHETIC_OUT = "build/remake/runs"  # where the synthetic tier re-makes the shipped runs (--runs)


def _synthetic_tier(args, dry_run: bool) -> int:
    """--tier synthetic: every shipped synthetic run (--shipped) re-trained from its config.json into --runs."""
    try:
        differ = reproduce_synthetic(args.shipped, args.runs or SYNTHETIC_OUT, args.data, args.only, dry_run=dry_run)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"avmaster reproduce: {e.args[0] if e.args else e}") from None
    if differ:
        print(f"{differ} re-made run(s) differ from the shipped ones (the code or data changed what they compute)")
    return 0


def _plan_command(args) -> int:
    if args.tier == "synthetic":
        return _synthetic_tier(args, dry_run=True)
    args.runs = args.runs or "results/runs"
    try:
        plan = build_plan(settings_from_args(args), args.only)
    except KeyError as e:
        raise SystemExit(f"avmaster reproduce plan: {e.args[0]}") from None
    print(render_plan(plan, details=not args.brief))
    return 0


def _run_command(args) -> int:
    if args.tier == "synthetic":
        return _synthetic_tier(args, dry_run=args.dry_run)
    args.runs = args.runs or "results/runs"
    start = time.perf_counter()
    try:
        plan = run_plan(settings_from_args(args), args.only, _launcher_from_args(args), dry_run=args.dry_run,
                        notebooks=not args.no_notebooks, notebook_out=args.notebook_out)
    except (KeyError, ValueError, RuntimeError) as e:
        raise SystemExit(f"avmaster reproduce run: {e.args[0] if e.args else e}") from None
    if not args.dry_run:
        print(f"reproduce run took {_duration(time.perf_counter() - start)}")
    failed = [i for i in plan.item_list() if i.todo]
    return 0 if args.dry_run or not failed else 1


_EPILOG = """\
examples:
  avmaster reproduce plan                                  # the whole paper, 3 seeds (README shows its output)
  avmaster reproduce plan --only table7 fig4 --seeds 1 --brief
  avmaster reproduce run --dry-run                         # what `make reproduce` would launch
  avmaster reproduce run --gpus 0 1 2 3                    # four local GPUs, one run each
  avmaster reproduce run --gpus 0 1 2 3 --ddp              # one run at a time over four GPUs (torchrun)
  avmaster reproduce run --slurm --partition gpu --parallel 32 --timeout-min 720
  avmaster reproduce run --tier synthetic --dry-run       # every shipped synthetic run: status, CPU minutes
  avmaster reproduce run --tier synthetic --only synthetic/default   # re-make runs (a key or prefix) on CPU
  # a dress rehearsal on CPU (tests/test_reproduce_rehearsal.py): tiny model, few questions
  avmaster reproduce run --only table2 --size cpu --epochs 1 --limit 40 --train-on val --device cpu \\
      --encoders tiny --seeds 1

Rerun the same command after any interruption: finished items are skipped, interrupted runs resume, and
items that another `reproduce run` (here or on another machine sharing the folders) is doing are skipped.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    train, data = field_ranges(TrainConfig), field_ranges(DataConfig)  # the same rules as `train`'s options
    p.add_argument("--only", nargs="+", metavar="ARTEFACT", help="tables/figures to cover, e.g. table7 fig4 "
                   "(default: Tables II-V, VII-XIII, Figs. 4-8)")
    p.add_argument("--seeds", type=AT_LEAST_1, default=3, help="seeds 1..N per run (default 3)")
    p.add_argument("--data", default="data", help="folder of <dataset>/ annotation folders with features.h5")
    p.add_argument("--store", action="append", metavar="DATASET=PATH", help="another feature store for a dataset")
    p.add_argument("--tier", default="paper", choices=("paper", "synthetic"),
                   help="paper (default): the paper's tables and figures from features; synthetic: re-train every "
                        "shipped synthetic run (--shipped) from its own config.json into --runs, on CPU")
    p.add_argument("--shipped", default="results/runs",
                   help="--tier synthetic: the shipped runs whose configurations are re-made (default results/runs)")
    p.add_argument("--runs", help=f"runs folder (default results/runs; --tier synthetic: {SYNTHETIC_OUT})")
    p.add_argument("--results", default="results", help="tables, evaluations, figures (default results)")
    p.add_argument("--preset", default="official", choices=("official", "paper"))
    p.add_argument("--size", default="full", choices=tuple(SIZES), help="model size (cpu: rehearsals)")
    p.add_argument("--epochs", type=train["epochs"], help="epochs per run (default 30, the authors')")
    p.add_argument("--lr", type=train["lr"], help="Adam learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=train["batch_size"], help="training batch size (default 64)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--compile", action="store_true", help="the fast path (CUDA-graph-captured train step)")
    p.add_argument("--limit", type=data["limit"], help="first N questions of every split (rehearsals)")
    p.add_argument("--train-on", default="train", choices=("train", "val"),
                   help="val: train on the validation file (a rehearsal where train files are absent)")
    p.add_argument("--encoders", default="real", choices=("real", "tiny"),
                   help="question features: CLIP ViT-L/14@336 (real) or a random tiny CLIP (tests)")
    p.add_argument("--clip-weights", help="local CLIP weights for question features (instead of a download)")
    p.add_argument("--train-speed", type=POSITIVE, metavar="SAMPLES/S",
                   help="training speed at T = 60, batch 64, for the GPU estimate (default: the released code on an "
                        "H200, 151)")
    p.add_argument("--infer-speed", type=POSITIVE, metavar="SAMPLES/S",
                   help="inference speed at T = 60, batch 64 (default 631)")


def register(subparsers) -> None:
    """Add `reproduce plan|run` to the `avmaster` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("reproduce", help="the whole paper from features: plan, then train and evaluate",
                              description=__doc__.split("\n\n")[0], formatter_class=fmt, epilog=_EPILOG)
    sub = p.add_subparsers(dest="reproduce_command", metavar="<plan|run>", required=True)
    plan = sub.add_parser("plan", help="what every table and figure needs, what exists, GPU hours left",
                          formatter_class=fmt, epilog=_EPILOG)
    _add_common(plan)
    plan.add_argument("--brief", action="store_true", help="the artefact table only, not every item")
    plan.set_defaults(func=_plan_command)
    run = sub.add_parser("run", help="train and evaluate what is missing, then run the notebooks",
                         formatter_class=fmt, epilog=_EPILOG)
    _add_common(run)
    run.add_argument("--dry-run", action="store_true", help="print what would be launched; run nothing")
    run.add_argument("--gpus", nargs="+", type=AT_LEAST_0, action=UniqueValues, help="local GPU indices: one item per GPU at a time")
    run.add_argument("--ddp", action="store_true", help="with --gpus: each training over all of them (torchrun)")
    run.add_argument("--slurm", action="store_true", help="submit SLURM job arrays through submitit")
    run.add_argument("--submitit-executor", choices=("slurm", "local", "debug"),
                     help="submitit executor (local/debug: this machine, for tests)")
    run.add_argument("--submitit-folder", default="results/submitit", help="submitit logs and pickles")
    run.add_argument("--partition", help="SLURM partition")
    run.add_argument("--account", help="SLURM account")
    run.add_argument("--timeout-min", type=AT_LEAST_1, default=24 * 60, help="SLURM time limit per task (requeued after)")
    run.add_argument("--parallel", type=AT_LEAST_1, default=16, help="array tasks running at once")
    run.add_argument("--no-notebooks", action="store_true", help="do not execute the notebooks at the end")
    run.add_argument("--notebook-out", default="build/notebooks", help="executed notebook copies")
    run.add_argument("--progress", action="store_true", help="progress bars inside each item")
    run.set_defaults(func=_run_command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avmaster")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

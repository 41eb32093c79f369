"""How `avmaster reproduce run` executes the items of a plan.

    InOrder()                      one GPU (or the CPU): items one after another, in this process
    LocalGPUs([0, 1, 2, 3])        several local GPUs: one item per GPU at a time, each in its own process
    LocalGPUs([0, 1, 2, 3], ddp=True)   one training at a time over all of them with torchrun (DDP)
    Submitit(folder, partition=...)     a SLURM cluster: one job array per wave, one item per array task,
                                   requeued on preemption or timeout (submitit's checkpointing protocol);
                                   `executor="local"` / `"debug"` run the same code on this machine (tests)

Every item is claimed with a WorkLock in its own folder before it runs (worklock.py: O_EXCL file plus a
heartbeat, valid across machines on a shared filesystem), so a second `reproduce run` -- here, on another
node, or a requeued array task -- skips what is being done and never trains a run twice. Each launcher
yields one outcome per item as it finishes: {"key", "status": done | skipped | failed, "message", "seconds"}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterator

from ..core.atomic import write_json
from ..core.store import FeatureStore
from ..data.scoring import write_predictions
from ..extract.candidates import extract_choices
from ..extract.encoders import ClipEncoder
from ..extract.pipeline import extract_device, extract_questions
from ..results.plots import save_table
from ..training.engine import evaluate, train
from ..training.run_config import BEST_CHECKPOINT
from .plan import (EvalSpec, FeatureSpec, Inventory, QuestionSpec, ReproduceSettings, RunSpec, finished_on_disk,
                   lock_path, read_table_avg, run_configs, spec_from_dict, spec_to_dict)
from .worklock import WorkLock, describe_holder


# -------------------------------------------------------------------------------------------------------------
# One item
# -------------------------------------------------------------------------------------------------------------
def run_item(spec, settings: ReproduceSettings) -> str:
    """Do one item's work (resuming what an earlier attempt left); returns its result in words."""
    if isinstance(spec, RunSpec):
        model_cfg, train_cfg, data_cfg = run_configs(spec, settings)
        result = train(model_cfg, train_cfg, data_cfg, experiment=spec.name, run_dir=spec.folder(settings),
                       resume=True)
        return "finished" if result.test_acc is None else f"test {result.test_acc:.2f} %"
    if isinstance(spec, EvalSpec):
        return _evaluate(spec, settings)
    if isinstance(spec, FeatureSpec):  # never ready in a plan: it needs the videos
        raise RuntimeError(f"{spec.key} needs the videos: run `{spec.command(settings)}`")
    return _question_features(spec, settings)


def _evaluate(spec: EvalSpec, settings: ReproduceSettings) -> str:
    checkpoint = spec.run.folder(settings) / BEST_CHECKPOINT
    table, predictions = evaluate(checkpoint, spec.dataset, spec.split, settings.root(spec.dataset),
                                  store=settings.store(spec.dataset), device=settings.device,
                                  precision=settings.precision, limit=settings.limit, changes=dict(spec.changes), progress=settings.progress)
    folder = spec.folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(folder / "predictions.json", predictions, dataset=spec.dataset, split=spec.split,
                      meta={"checkpoint": str(checkpoint), "changes": dict(spec.changes)})
    save_table(table, spec.table_path(settings))  # written last (atomically): it marks the evaluation finished
    return f"Avg {read_table_avg(spec.table_path(settings), spec.dataset):.2f} %"


def _question_features(spec: QuestionSpec, settings: ReproduceSettings) -> str:
    """CLIP features of every question of the spec's splits that has none (extract_questions skips the rest),
    and of its candidate answers for a multiple-choice benchmark (AVQA: store kind "choices")."""
    device = extract_device(settings.device)
    inventory = Inventory(settings)
    texts, candidates = {}, {}
    for split in spec.splits:
        records = inventory.records(spec.dataset, split)
        if records is None:  # its annotation file is absent: the items that need it are blocked
            continue
        texts.update(zip(records["question_id"].astype("int64"), records["question"].astype(str)))
        if "choices" in records:
            candidates.update(zip(records["question_id"].astype("int64"), records["choices"].map(list)))
    clip = _clip(settings, device)
    written = extract_questions(texts, settings.store(spec.dataset), clip, progress=settings.progress)
    if candidates:
        with FeatureStore(settings.store(spec.dataset), "a") as store:
            extract_choices(candidates, store, clip)
    return f"{written:,} question features written ({len(texts):,} questions)"


def _clip(settings: ReproduceSettings, device: str):
    if settings.encoders == "tiny":
        return ClipEncoder.tiny(device=device)
    return ClipEncoder.load("ViT-L-14-336", "openai", settings.clip_weights, device=device,
                            precision="fp16" if device.startswith("cuda") else "fp32")


def execute(spec_dict: dict, settings_dict: dict, owner: str | None = None, lock: bool = True) -> dict:
    """Claim, do and release one item (picklable: the entry point of every launcher). Never raises: a failure
    is an outcome, so one bad item does not stop the others."""
    spec, settings = spec_from_dict(spec_dict), ReproduceSettings.from_dict(settings_dict)
    claim = WorkLock(lock_path(spec, settings), owner=owner) if lock else None
    if claim is not None and not claim.acquire():
        return {"key": spec.key, "status": "skipped", "seconds": 0.0,
                "message": f"being done by {describe_holder(claim.holder())}"}
    start = time.perf_counter()
    try:
        if finished_on_disk(spec, settings):  # another worker finished it between our plan and our claim
            message, status = "finished by another worker meanwhile", "skipped"
        else:
            message, status = run_item(spec, settings), "done"
    except Exception as e:  # noqa: BLE001 - reported as the item's outcome
        message, status = f"{type(e).__name__}: {e}", "failed"
        traceback.print_exc()
    finally:
        if claim is not None:
            claim.release()
    return {"key": spec.key, "status": status, "message": message, "seconds": time.perf_counter() - start}


# -------------------------------------------------------------------------------------------------------------
# Launchers
# -------------------------------------------------------------------------------------------------------------
class InOrder:
    """One device: the items one after another in this process."""

    name = "in order (one device)"

    def launch(self, specs: list, settings: ReproduceSettings) -> Iterator[dict]:
        for spec in specs:
            yield execute(spec_to_dict(spec), settings.to_dict())

    def describe(self, spec, settings: ReproduceSettings) -> str:
        return f"in this process: {spec.describe()}"

    @staticmethod
    def call(fn, *args):
        """Run one more step (the notebooks) where this launcher runs work: here."""
        return fn(*args)


class LocalGPUs:
    """Several GPUs of this machine: one item per GPU at a time (CUDA_VISIBLE_DEVICES), or with ddp=True each
    training over all of them with torchrun. The parent claims each item's lock and keeps it alive."""

    def __init__(self, gpus: list[int], ddp: bool = False, python: str = sys.executable):
        if not gpus:
            raise ValueError("LocalGPUs needs at least one GPU index")
        self.gpus, self.ddp, self.python = list(gpus), ddp, python
        self.name = f"{'torchrun DDP over' if ddp else 'one item per GPU on'} GPUs {','.join(map(str, gpus))}"

    def command(self, spec, settings: ReproduceSettings, outcome: Path) -> list[str]:
        args = ["-m", "avmaster_core.reproduction.launchers", "work", "--spec", json.dumps(spec_to_dict(spec)),
                "--settings", json.dumps(settings.to_dict()), "--outcome", str(outcome)]
        if self.ddp and isinstance(spec, RunSpec):
            return [self.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={len(self.gpus)}",
                    *args]
        return [self.python, *args]

    def describe(self, spec, settings: ReproduceSettings) -> str:
        where = f"torchrun on GPUs {self.gpus}" if self.ddp and isinstance(spec, RunSpec) else "one GPU"
        return f"{where}: {spec.describe()}"

    call = InOrder.call

    def launch(self, specs: list, settings: ReproduceSettings) -> Iterator[dict]:
        slots = [[g] for g in self.gpus] if not self.ddp else [self.gpus]
        queue, running = list(specs), {}
        with tempfile.TemporaryDirectory(prefix="avmaster-reproduce-") as tmp:
            while queue or running:
                while queue and len(running) < len(slots):
                    spec = queue.pop(0)
                    claim = WorkLock(lock_path(spec, settings))
                    if not claim.acquire():
                        yield {"key": spec.key, "status": "skipped", "seconds": 0.0,
                               "message": f"being done by {describe_holder(claim.holder())}"}
                        continue
                    slot = next(s for s in slots if tuple(s) not in {tuple(r[1]) for r in running.values()})
                    outcome = Path(tmp) / f"{len(running)}-{time.monotonic_ns()}.json"
                    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(map(str, slot)))
                    process = subprocess.Popen(self.command(spec, settings, outcome), env=env)
                    running[process] = (spec, slot, claim, outcome, time.perf_counter())
                yield from self._reap(running)
                time.sleep(0.2)

    @staticmethod
    def _reap(running: dict) -> Iterator[dict]:
        for process in [p for p in running if p.poll() is not None]:
            spec, _, claim, outcome, start = running.pop(process)
            claim.release()
            if outcome.is_file():
                yield json.loads(outcome.read_text())
            else:
                yield {"key": spec.key, "status": "failed", "seconds": time.perf_counter() - start,
                       "message": f"worker exited with code {process.returncode} and no outcome"}


def submitit_module():
    """submitit, imported on first use: an optional dependency (the `cluster` extra), so that every other
    launcher and the command line work without it. The one place the package imports it."""
    import submitit

    return submitit


class _SubmititTask:
    """The callable of each array task. submitit calls `checkpoint` when the job is preempted or times out:
    it resubmits the same item, and engine.train's resume continues from the run's last.pt."""

    def __init__(self, settings_dict: dict):
        self.settings_dict = settings_dict

    def __call__(self, spec_dict: dict) -> dict:
        return execute(spec_dict, self.settings_dict, owner=_task_owner())

    def checkpoint(self, spec_dict: dict):
        submitit = submitit_module()

        return submitit.helpers.DelayedSubmission(_SubmititTask(self.settings_dict), spec_dict)


def _task_owner() -> str | None:
    """The array task's stable name (job id + index, unchanged by a requeue): it may take back its own lock."""
    try:
        submitit = submitit_module()

        env = submitit.JobEnvironment()
        return f"submitit:{env.job_id}"
    except RuntimeError:  # not inside a submitit job
        return None


class Submitit:
    """A SLURM cluster through submitit: each wave of items is one job array (one item per task, at most
    `parallel` at once), one GPU per task. executor: "slurm" (submitit.AutoExecutor: SLURM where `sbatch`
    exists), "local" (submitit.LocalExecutor: processes on this machine) or "debug" (in this process)."""

    def __init__(self, folder: str | os.PathLike = "results/submitit", executor: str = "slurm", *,
                 partition: str | None = None, timeout_min: int = 24 * 60, parallel: int = 16, cpus: int = 8,
                 gpus: int = 1, account: str | None = None, extra: dict | None = None):
        self.folder, self.kind = Path(folder), executor
        self.parameters = {"timeout_min": timeout_min, "slurm_partition": partition, "gpus_per_node": gpus,
                           "cpus_per_task": cpus, "slurm_array_parallelism": parallel, "slurm_account": account,
                           **(extra or {})}
        self.name = f"submitit ({executor}), job arrays in {self.folder}"

    def executor(self):
        submitit = submitit_module()

        if self.kind == "local":
            ex = submitit.LocalExecutor(folder=self.folder)
            ex.update_parameters(timeout_min=self.parameters["timeout_min"])
        elif self.kind == "debug":
            ex = submitit.DebugExecutor(folder=self.folder)
        else:
            ex = submitit.AutoExecutor(folder=self.folder)
            if ex.cluster != "slurm":  # AutoExecutor falls back to local processes where SLURM is absent
                raise RuntimeError("--slurm: no SLURM on this machine (no sbatch/srun found); run from a login "
                                   "node, or use --gpus (local GPUs) or --submitit-executor local")
            ex.update_parameters(**{k: v for k, v in self.parameters.items() if v is not None})
        return ex

    def describe(self, spec, settings: ReproduceSettings) -> str:
        return f"array task ({self.kind}): {spec.describe()}"

    def call(self, fn, *args):
        """Run one more step (the notebooks) as a single job on a GPU node, and wait for its result."""
        return self.executor().submit(fn, *args).result()

    def launch(self, specs: list, settings: ReproduceSettings) -> Iterator[dict]:
        submitit = submitit_module()

        if not specs:
            return
        jobs = self.executor().map_array(_SubmititTask(settings.to_dict()), [spec_to_dict(s) for s in specs])
        keys = {job.job_id: spec.key for job, spec in zip(jobs, specs)}
        for job in submitit.helpers.as_completed(jobs, poll_frequency=1.0):
            try:
                yield job.result()
            except Exception as e:  # noqa: BLE001 - the task died outside execute (node failure, ...)
                yield {"key": keys[job.job_id], "status": "failed", "seconds": 0.0,
                       "message": f"job {job.job_id}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                  f" (logs in {self.folder})"}


# -------------------------------------------------------------------------------------------------------------
# The worker process of LocalGPUs
# -------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m avmaster_core.reproduction.launchers work --spec JSON --settings JSON --outcome FILE` (LocalGPUs' worker;
    under torchrun only rank 0 writes the outcome). The parent holds the item's lock."""
    parser = argparse.ArgumentParser(prog="avmaster_core.reproduction.launchers")
    sub = parser.add_subparsers(dest="command", required=True)
    work = sub.add_parser("work", help="do one item of a reproduction plan (no lock: the launcher holds it)")
    work.add_argument("--spec", required=True)
    work.add_argument("--settings", required=True)
    work.add_argument("--outcome", required=True)
    args = parser.parse_args(argv)
    outcome = execute(json.loads(args.spec), json.loads(args.settings), lock=False)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(args.outcome, outcome)  # atomic: the launcher never reads half an outcome
    return 0 if outcome["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())

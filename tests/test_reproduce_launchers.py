"""The launchers of `avmaster reproduce run` on this machine's CPU, with the rehearsal's data (real annotation
files, random features): submitit.LocalExecutor runs each array task as its own process, as a SLURM node
would (same pickled task, same checkpoint/requeue protocol); LocalGPUs' worker processes (CPU here); and two
`reproduce run` processes sharing one grid."""
from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest

from avmaster_core.reproduction.launchers import LocalGPUs, Submitit, _SubmititTask
from avmaster_core.reproduction.plan import FINISHED, ReproduceSettings, RunSpec, build_plan, lock_path, spec_to_dict
from avmaster_core.reproduction.run import run_plan
from test_reproduce_rehearsal import LIMIT, _data_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("submitit")
    _data_folder(shared_data, tmp)
    return tmp


def _settings(tmp, **changes) -> ReproduceSettings:
    base = dict(data=str(tmp / "data"), runs=str(tmp / "runs"), results=str(tmp / "results"), seeds=(1,),
                size="cpu", epochs=1, lr=1e-3, batch_size=16, limit=LIMIT, train_on="val", device="cpu",
                encoders="tiny")
    return ReproduceSettings(**{**base, **changes})


def test_local_executor_runs_the_waves_as_job_arrays(data):
    lines = []
    settings = _settings(data)
    plan = run_plan(settings, ["fig5"], Submitit(data / "submitit", executor="local"),
                    notebook_out=str(data / "notebooks"), echo=lambda *a, **k: lines.append(a[0]))
    log = "\n".join(lines)
    done = [x for x in log.splitlines() if " done " in x]
    assert len(done) == 3, log               # the three runs of Fig. 5, as one job array
    assert plan.complete("fig5"), log
    assert (data / "results" / "reproduce" / "fig5.csv").is_file()
    assert (data / "notebooks" / "21_fig5_input_modalities.ipynb").is_file(), log   # the notebook job
    assert len(list((data / "submitit").glob("*_result.pkl"))) == 4   # 3 array tasks + the notebook job


def test_preempted_task_is_requeued_and_resumes(data):
    import submitit

    settings = _settings(data, runs=str(data / "runs-preempt"), epochs=6, batch_size=4)
    spec = RunSpec("music_avqa", "standard", "default", "official", 1)
    executor = submitit.LocalExecutor(folder=data / "submitit-preempt", max_num_timeout=2)
    executor.update_parameters(timeout_min=10)
    job = executor.submit(_SubmititTask(settings.to_dict()), spec_to_dict(spec))
    metrics = spec.folder(settings) / "metrics.jsonl"
    deadline = time.time() + 240
    last = spec.folder(settings) / "last.pt"
    # wait for the end of the first epoch: its metrics line and its checkpoint (written one after the other)
    while not (metrics.is_file() and last.is_file()) and time.time() < deadline:
        time.sleep(0.5)
    assert metrics.is_file() and last.is_file(), job.stderr()
    # What SLURM does before preempting a job: SIGUSR2 to the task (its pid is in the item's lock file).
    # submitit's handler calls _SubmititTask.checkpoint and requeues the task, which resumes the run.
    os.kill(json.loads(lock_path(spec, settings).read_text())["pid"], signal.SIGUSR2)
    outcome = job.result()
    assert outcome["status"] == "done", outcome
    assert "resuming" in (job.stderr() or ""), job.stderr()     # the requeued task continued from last.pt
    assert build_plan(settings, ["table2"]).items[spec.key].status == FINISHED


def test_local_gpus_launcher_runs_items_in_worker_processes(data):
    lines = []
    settings = _settings(data, runs=str(data / "runs-gpus"), results=str(data / "results-gpus"))
    plan = run_plan(settings, ["table12"], LocalGPUs([0, 1]), notebooks=False, echo=lambda *a, **k: lines.append(a[0]))
    log = "\n".join(lines)
    # the full model's run, then its three inference-only evaluations, two at a time
    assert len([x for x in log.splitlines() if " done " in x]) == 4, log
    assert plan.complete("table12"), log
    table = pd.read_csv(data / "results-gpus" / "reproduce" / "table12.csv", header=[0, 1], index_col=0)
    assert table[("ours", "Avg")].notna().all(), table


def test_two_runs_share_one_grid_without_duplicating_work(data):
    import subprocess
    import sys

    runs = data / "runs-shared"
    args = ["reproduce", "run", "--only", "fig5", "--seeds", "1", "--size", "cpu", "--epochs", "1", "--lr", "1e-3",
            "--batch-size", "16", "--limit", str(LIMIT), "--train-on", "val", "--device", "cpu", "--encoders", "tiny",
            "--data", str(data / "data"), "--runs", str(runs), "--results", str(data / "results-shared"),
            "--no-notebooks"]
    first = subprocess.Popen([sys.executable, "-m", "avmaster_core.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(runs.glob("**/.reproduce.lock")) and time.time() < deadline:   # the first has claimed a run
        time.sleep(0.2)
    second = subprocess.run([sys.executable, "-m", "avmaster_core.cli", *args], capture_output=True, text=True)
    first_log = first.communicate(timeout=600)[0]
    logs = first_log + second.stdout + second.stderr
    assert first.returncode == 0 and second.returncode == 0, logs[-3000:]
    started = [line for line in logs.splitlines() if "starting a new run" in line]
    assert len(started) == 3 and len(set(started)) == 3, logs[-3000:]       # each of the 3 runs trained once
    assert "skipped" in second.stdout, second.stdout                         # and the second says what it left
    assert "resuming" not in logs


def test_ddp_launcher_trains_one_run_over_two_processes(data):
    # --gpus 0 1 --ddp: torchrun with two ranks; on this CPU-only machine they train over gloo
    lines = []
    settings = _settings(data, runs=str(data / "runs-ddp"), results=str(data / "results-ddp"))
    plan = run_plan(settings, ["table2"], LocalGPUs([0, 1], ddp=True), notebooks=False,
                    echo=lambda *a, **k: lines.append(a[0]))
    log = "\n".join(lines)
    assert "torchrun DDP over GPUs 0,1" in log and plan.complete("table2"), log
    config = json.loads((RunSpec("music_avqa", "standard", "default", "official", 1).folder(settings)
                         / "config.json").read_text())
    assert config["train"]["device"] == "cpu"

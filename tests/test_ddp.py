"""Two CPU processes (gloo) through torchrun: DDP training completes, rank 0 writes the run folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from avmaster_core.data.annotations import load_annotations
from avmaster_core.data.scoring import read_predictions
from conftest import TINY_MODEL, set_args


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_data, tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "avmaster_core.cli", "train", "--dataset", "synthetic", "--root", str(tiny_data),
               "--device", "cpu", "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--checkpoint-every", "3",
               "--no-progress", "--out", str(out), "--name", "ddp", *set_args(TINY_MODEL)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("run folder:") == 1, "only rank 0 reports"

    run = out / "ddp" / "1"
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "predictions.json", "test_table.csv"):
        assert (run / name).is_file(), name
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_size = len(load_annotations("synthetic", "train", tiny_data))
    assert len(metrics) == 1 and 0 <= metrics[0]["val_acc"] <= 100
    # The two ranks together saw the whole training split once (plus DistributedSampler's padding).
    assert train_size <= metrics[0]["train_samples"] <= train_size + 1
    # Evaluation was gathered: every test question has a prediction.
    test_ids = set(load_annotations("synthetic", "test", tiny_data)["question_id"])
    assert set(read_predictions(run / "predictions.json")) == test_ids

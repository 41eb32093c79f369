"""A run killed mid-epoch (SIGKILL) and resumed ends bit-identical to one that never stopped (CPU)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from avmaster_core.training import engine
from avmaster_core.training.engine import DataConfig
from avmaster_core.data.scoring import read_predictions
from conftest import TINY_MODEL, metrics_without_timing, read_metrics, state_dicts_equal, tiny_model, tiny_train

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = dict(epochs=3, checkpoint_every_steps=2)
KILL_AT = 9  # 84 questions / batch 16 = 6 steps per epoch: step 3 of epoch 2, one step after a checkpoint

SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from avmaster_core.training import engine
    from avmaster_core.core.config import ModelConfig
    root, run_dir, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"

    def die(info):  # the hard way: no cleanup, no flush, exactly like a node failure or the OOM killer
        if info["global_step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    engine.train(ModelConfig.official(**{model}),
                 engine.TrainConfig(epochs={epochs}, batch_size=16, lr=1e-3, progress=False,
                                    checkpoint_every_steps={every}),
                 engine.DataConfig(dataset="synthetic", root=root), run_dir=run_dir, resume=resume,
                 step_callback=die)
""")


def _run_script(tmp_path, root, run_dir, kill_at, mode):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(model=TINY_MODEL, epochs=TRAIN["epochs"], every=TRAIN["checkpoint_every_steps"]))
    return subprocess.run([sys.executable, str(script), str(root), str(run_dir), str(kill_at), mode],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tiny_data, tmp_path):
    data = DataConfig(dataset="synthetic", root=str(tiny_data))
    reference = engine.train(tiny_model(), tiny_train(**TRAIN), data, run_dir=tmp_path / "reference")

    run_dir = tmp_path / "interrupted"
    killed = _run_script(tmp_path, tiny_data, run_dir, KILL_AT, "fresh")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert (last["next_epoch"], last["next_step"]) == (2, 2), "expected the intra-epoch checkpoint of step 2"
    assert not (run_dir / "predictions.json").exists()

    resumed = _run_script(tmp_path, tiny_data, run_dir, -1, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr

    assert read_predictions(run_dir / "predictions.json") == read_predictions(reference.predictions_path)
    assert (run_dir / "test_table.csv").read_text() == reference.table_path.read_text()
    assert metrics_without_timing(read_metrics(run_dir)) == metrics_without_timing(reference.history)
    for name in ("best.pt", "last.pt"):
        a = torch.load(run_dir / name, weights_only=True)
        b = torch.load(reference.run_dir / name, weights_only=True)
        assert state_dicts_equal(a["model"], b["model"]), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_acc"] == reference.test_acc and summary["best_epoch"] == reference.best_epoch


def test_resuming_a_finished_run_only_rescores_it(tiny_data, tmp_path):
    data = DataConfig(dataset="synthetic", root=str(tiny_data))
    first = engine.train(tiny_model(), tiny_train(epochs=1), data, run_dir=tmp_path / "run")
    before = torch.load(first.last_checkpoint, weights_only=True)["model"]
    steps = []
    again = engine.train(tiny_model(), tiny_train(epochs=1), data, run_dir=tmp_path / "run", resume=True,
                         step_callback=steps.append)
    assert steps == [] and again.test_acc == first.test_acc and again.best_epoch == first.best_epoch
    assert state_dicts_equal(before, torch.load(first.last_checkpoint, weights_only=True)["model"])

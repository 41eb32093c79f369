"""`--precision fp32|bf16` (training/precision.py). bf16 is asserted by the dtype the layers actually compute
in: training and evaluation on CPU run the model's linear layers under bf16 autocast, fp32 keeps them in fp32,
and the losses are fp32 either way. A CPU without a bf16 matmul unit is refused with one line."""
from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter

import pytest
import torch
from torch import nn

from avmaster_core import cli
from avmaster_core.core.errors import AvmasterError
from avmaster_core.training import engine, precision
from avmaster_core.training.engine import DataConfig, TrainConfig
from avmaster_core.training.run_config import config_differences
from conftest import tiny_model

needs_bf16_cpu = pytest.mark.skipif(precision.bf16_cpu_unit() is None,
                                    reason="this CPU has no bf16 matmul unit (amx_bf16 / avx512_bf16)")


@contextlib.contextmanager
def linear_output_dtypes():
    """Counts the output dtype of every nn.Linear call, split by whether autograd records it (training)."""
    seen = Counter()

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            seen[("train" if torch.is_grad_enabled() else "eval", output.dtype)] += 1

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.slow  # trains: ~30-60 s
@pytest.mark.parametrize("name", [pytest.param("bf16", marks=needs_bf16_cpu), "fp32"])
def test_precision_sets_the_dtype_of_training_and_evaluation(tiny_data, tmp_path, name, monkeypatch):
    torch.set_num_threads(1)
    losses = []
    real_loss = engine.AVMaster.loss
    monkeypatch.setattr(engine.AVMaster, "loss", lambda self, out, batch: losses.append(
        out["logits"].dtype) or real_loss(self, out, batch))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, progress=False, checkpoint_every_steps=0, precision=name)
    with linear_output_dtypes() as seen:
        engine.train(tiny_model(), cfg, DataConfig(dataset="synthetic", root=str(tiny_data)),
                     out_dir=tmp_path, experiment=name)
    expected = torch.bfloat16 if name == "bf16" else torch.float32
    for phase in ("train", "eval"):
        dtypes = {dtype for (p, dtype), n in seen.items() if p == phase}
        assert dtypes == {expected}, (phase, dict(seen))
    assert set(losses) == {torch.float32}  # the losses see fp32 logits in both precisions


def test_the_bf16_unit_is_read_from_the_cpu_flags():
    assert precision.bf16_cpu_unit(frozenset({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"})) == "amx_bf16"
    assert precision.bf16_cpu_unit(frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    assert precision.bf16_cpu_unit(frozenset({"avx2", "avx512f", "avx512bw"})) is None


def test_bf16_is_refused_with_one_line_on_a_cpu_without_a_bf16_unit(monkeypatch, capsys, tiny_data, tmp_path):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with pytest.raises(AvmasterError, match=r"--precision bf16: this CPU has no bf16 matmul unit .* "
                                            r"use --precision fp32"):
        precision.check_precision("bf16", "cpu")
    precision.check_precision("fp32", "cpu")
    for command in (["benchmark", "--device", "cpu", "--precision", "bf16", "--presets", "paper"],
                    ["train", "--dataset", "synthetic", "--root", str(tiny_data), "--device", "cpu", "--precision",
                     "bf16", "--no-progress", "--out", str(tmp_path / "runs")]):
        assert cli.main(command) == 1, command
        err = capsys.readouterr().err
        assert "--precision bf16: this CPU has no bf16 matmul unit" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))  # refused before training


def test_run_folders_from_before_the_option_read_as_their_precision():
    today = dataclasses.asdict(TrainConfig())
    assert "amp" not in today and today["precision"] == "fp32"
    before = {k: v for k, v in today.items() if k != "precision"}  # a config.json written with `amp`
    assert config_differences({"train": before | {"amp": False}}, {"train": today}) == []
    assert config_differences({"train": before | {"amp": True}}, {"train": today}) == ["train.precision: 'bf16' -> 'fp32'"]
    assert TrainConfig(amp=True).precision == "bf16" and TrainConfig(amp=False) == TrainConfig()
    with pytest.raises(ValueError, match="TrainConfig.precision = 'fp16': choose one of 'fp32', 'bf16'"):
        TrainConfig(precision="fp16")


@needs_bf16_cpu
def test_the_benchmark_runs_the_step_in_bf16_and_reports_its_logits_error():
    from avmaster_core.core.config import ModelConfig
    from avmaster_core.training.benchmark import benchmark_preset
    from conftest import TINY_MODEL

    r = benchmark_preset(ModelConfig.official(**TINY_MODEL), 2, 4, torch.device("cpu"), steps=1, warmup=0,
                         precision="bf16")
    e = r["logits_error"]
    assert 0 < e["rel_l2"] < 0.05 and 0 < e["max_row_rel"] < 0.1  # bf16 moved the logits, a little
    assert r["train_cpu_s"] > 0 and "logits_error" not in benchmark_preset(
        ModelConfig.official(**TINY_MODEL), 2, 4, torch.device("cpu"), steps=1, warmup=0)

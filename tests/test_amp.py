"""`amp=True` is asserted by the dtype the layers actually compute in: training and evaluation on CPU run
the model's linear layers under bf16 autocast, and `amp=False` keeps them in fp32."""
from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from torch import nn

from avmaster_core.training import engine
from avmaster_core.training.engine import DataConfig, TrainConfig
from test_engine import tiny_model

pytestmark = pytest.mark.slow  # trains, executes notebooks or builds a model: ~30-60 s


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


@pytest.mark.parametrize("amp", [True, False])
def test_amp_sets_the_dtype_of_training_and_evaluation(tiny_data, tmp_path, amp):
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, progress=False, checkpoint_every_steps=0, amp=amp)
    with linear_output_dtypes() as seen:
        engine.train(tiny_model(), cfg, DataConfig(dataset="synthetic", root=str(tiny_data)),
                     out_dir=tmp_path, experiment="amp")
    expected = torch.bfloat16 if amp else torch.float32
    for phase in ("train", "eval"):
        dtypes = {dtype for (p, dtype), n in seen.items() if p == phase}
        assert dtypes == {expected}, (phase, dict(seen))

"""The exact speed-ups (rewrites.py) against the plain form of every block (blocks.py, model.py).

For every experiment x both presets (cpu size): the same weights give the same logits (1e-5) and the same
gradients (1e-4) with fast=True and fast=False. tests/test_official.py compares the official preset with the
literal reference of the released code.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from avmaster_core import build_model
from avmaster_core.benchmark import random_batch
from avmaster_core.config import EXPERIMENTS, experiment
from avmaster_core.rewrites import dropout_masks

LOGIT_TOL, GRAD_TOL = 1e-5, 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    """The cpu-size models here run fastest on one thread (threads.py); on shared cores 2 threads stall."""
    torch.set_num_threads(1)
    yield


def pair(cfg, seed=0):
    torch.manual_seed(seed)
    fast = build_model(cfg)
    plain = build_model(cfg, fast=False)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def gradients(model, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.loss(model(batch), batch)["total"].backward()
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def assert_same(fast, plain, batch):
    with torch.no_grad():
        out_f, out_p = fast(batch), plain(batch)
    for key in ("logits", "logits_qa", "logits_a", "logits_v"):
        if out_p[key] is None:
            assert out_f[key] is None, key
            continue
        torch.testing.assert_close(out_f[key], out_p[key], rtol=LOGIT_TOL, atol=LOGIT_TOL, msg=key)
    g_f, g_p = gradients(fast, batch), gradients(plain, batch)
    for name in g_p:
        torch.testing.assert_close(g_f[name], g_p[name], rtol=GRAD_TOL, atol=GRAD_TOL, msg=name)


@pytest.mark.parametrize("preset", ["official", "paper"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_fast_equals_plain(name, preset):
    cfg = experiment(name, preset, "cpu")
    fast, plain = pair(cfg)
    fast.eval(), plain.eval()
    assert_same(fast, plain, random_batch(2, 3, cfg, "cpu", generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_fast_equals_plain_in_training_without_dropout(preset):
    """Training-mode branches (no collapse unless exact, the time-batched loop) with dropout 0."""
    cfg = dataclasses.replace(experiment("default", preset, "cpu"), dropout=0.0)
    fast, plain = pair(cfg)
    fast.train(), plain.train()
    assert_same(fast, plain, random_batch(2, 4, cfg, "cpu", generator=torch.Generator().manual_seed(2)))


def test_switch_keeps_parameters_and_keys():
    cfg = experiment("default", "official", "cpu")
    fast, plain = pair(cfg)
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert fast.focus.fast and not plain.focus.fast and not plain.decoder_qa.layers[0].fast
    fast.use_fast(False)
    assert not any(getattr(m, "fast", False) for m in fast.modules())


def test_dropout_masks_keep_the_released_statistics():
    """One draw for many dropout calls: values 0 or 1/(1-p), kept with probability 1-p, mean 1."""
    torch.manual_seed(0)
    p = 0.1
    masks = dropout_masks((60, 16, 8, 512), p, torch.empty(0))
    values = masks.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p))
    kept = (masks > 0).float().mean().item()
    assert abs(kept - (1 - p)) < 5e-3
    assert abs(masks.mean().item() - 1.0) < 5e-3
    # each step's mask is drawn independently: neighbouring steps differ
    assert not torch.equal(masks[0], masks[1])


def test_training_with_dropout_runs_and_draws_new_masks():
    cfg = dataclasses.replace(experiment("default", "official", "cpu"), dropout=0.1)  # cpu size has none
    fast, _ = pair(cfg)
    fast.train()
    batch = random_batch(2, 3, cfg, "cpu", generator=torch.Generator().manual_seed(3))
    a, b = fast(batch)["logits"], fast(batch)["logits"]
    assert torch.isfinite(a).all() and not torch.equal(a, b)

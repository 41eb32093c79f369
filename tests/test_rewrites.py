"""The exact speed-ups (rewrites.py) against the plain form of every block (blocks.py, model.py).

For every experiment x both presets (cpu size): the same weights give the same logits (1e-5) and the same
gradients (1e-4) with the rewrites (build_model's default, rewrites.apply) and without (fast=False).
tests/test_official.py compares the official preset with the
literal reference of the released code.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from avmaster_core import build_model
from avmaster_core.core import rewrites
from avmaster_core.training.benchmark import random_batch
from avmaster_core.core.experiments import EXPERIMENTS, experiment
from avmaster_core.core.model import AVMaster, SlotPooling
from avmaster_core.core.rewrites import dropout_masks, trim_padding
from conftest import tiered

LOGIT_TOL, GRAD_TOL = 1e-5, 1e-4


# The cpu-size models here run fastest on one thread (threads.py); on shared cores 2 threads stall.
pytestmark = pytest.mark.usefixtures("one_thread")


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
@pytest.mark.parametrize("name", tiered(EXPERIMENTS))
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


def test_apply_keeps_parameters_and_keys():
    """rewrites.apply is the one place the rewrites come in: it changes the classes of the model and its
    attention blocks, not their parameters; applying it twice changes nothing more."""
    cfg = experiment("default", "official", "cpu")
    torch.manual_seed(0)
    plain = build_model(cfg, fast=False)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    plain_types = [type(m) for m in plain.modules()]
    assert not any(t.__module__.endswith("rewrites") for t in plain_types)
    fast = rewrites.apply(plain)
    assert fast is plain and isinstance(fast, AVMaster) and isinstance(fast, rewrites.AVMasterRewrites)
    assert list(fast.state_dict()) == list(before)
    assert all(torch.equal(v, before[k]) for k, v in fast.state_dict().items())
    assert isinstance(fast.decoder_qa.layers[0], rewrites.FastBertCrossLayer)
    assert isinstance(fast.context.self_attn, rewrites.FastMultiheadAttention)
    assert [type(m) for m in rewrites.apply(fast).modules()] == [type(m) for m in fast.modules()]


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


def padded_words_batch(cfg, seed):
    """Words zero-padded at the end like CLIP-like features of short questions (the synthetic benchmark's),
    one sample shorter than the others: trim_padding's case."""
    batch = random_batch(3, 4, cfg, "cpu", generator=torch.Generator().manual_seed(seed))
    batch["words"][:, 9:] = 0
    batch["words"][0, 5:] = 0
    return batch


@pytest.mark.parametrize("preset", ["official", "paper"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fast_equals_plain_with_zero_padded_words(preset, mode):
    """The shared padding run as one weighted token (rewrites.trim_padding), in eval and in training without
    dropout, against the plain form over all 77 positions."""
    cfg = dataclasses.replace(experiment("default", preset, "cpu"), dropout=0.0)
    fast, plain = pair(cfg)
    getattr(fast, mode)(), getattr(plain, mode)()
    assert_same(fast, plain, padded_words_batch(cfg, 4))


def test_trim_padding_keeps_the_used_positions_and_counts_the_rest():
    words = torch.randn(2, 77, 8)
    words[:, 9:] = 0
    words[1, 5:] = 0
    trimmed, key_bias = trim_padding(words)
    assert torch.equal(trimmed, words[:, :10])
    assert torch.equal(key_bias[:9], torch.zeros(9)) and key_bias[9].item() == pytest.approx(math.log(68))
    assert trim_padding(torch.randn(2, 77, 8))[1] is None  # nothing to trim: the words as they are
    nan_tail = words.clone()
    nan_tail[0, 70] = float("nan")  # a NaN is not padding
    assert trim_padding(nan_tail)[0].shape[1] == 72


def test_zero_padded_words_with_dropout_take_the_plain_path():
    """With dropout every padded copy draws its own masks, so the padding is not merged."""
    cfg = dataclasses.replace(experiment("default", "official", "cpu"), dropout=0.1)
    fast, _ = pair(cfg)
    words = padded_words_batch(cfg, 5)["words"]
    fast.train()
    assert not fast._may_trim(words)
    fast.eval()
    assert fast._may_trim(words) and trim_padding(words)[1] is not None


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_focus_loop_in_training_equals_plain(preset):
    """The K-row focus loop in training (official: collapse switched off, as it is whenever dropout is on),
    with its weight gradients summed in place (rewrites.LoopWeights), against the plain form; dropout 0."""
    cfg = dataclasses.replace(experiment("default", preset, "cpu"), dropout=0.0)
    fast, plain = pair(cfg)
    fast.collapse_templates = False
    fast.train(), plain.train()
    assert_same(fast, plain, random_batch(2, 5, cfg, "cpu", generator=torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_loop_weight_gradients_equal_autograd_with_dropout(preset, monkeypatch):
    """With dropout on (same seed, so the same masks): the focus loop's in-place weight gradients
    (rewrites.LoopWeights) equal autograd's per-step ones, and the loop really used them."""
    cfg = dataclasses.replace(experiment("default", preset, "cpu"), dropout=0.1)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = random_batch(3, 5, cfg, "cpu", generator=torch.Generator().manual_seed(7))
    steps_added = []
    add = rewrites.LoopWeights.add
    monkeypatch.setattr(rewrites.LoopWeights, "add", lambda self, g, x: steps_added.append(1) or add(self, g, x))
    results = []
    for in_place in (True, False):
        monkeypatch.setattr(rewrites, "LOOP_WEIGHT_GRADS", in_place)
        torch.manual_seed(5)
        logits = model(batch)["logits"]
        torch.manual_seed(5)
        results.append((logits.detach(), gradients(model, batch)))
    per_step_linears = 5 if cfg.focus_first_stage == "additive" else 4  # qkv, out, ffn1, ffn2 (+ W3 W1)
    assert len(steps_added) == 5 * per_step_linears  # T = 5 steps, the first pass only
    torch.testing.assert_close(results[0][0], results[1][0], rtol=LOGIT_TOL, atol=LOGIT_TOL)
    for name, grad in results[1][1].items():
        torch.testing.assert_close(results[0][1][name], grad, rtol=GRAD_TOL, atol=GRAD_TOL, msg=name)


@pytest.mark.parametrize("chunk", [1, 2**20])
def test_slot_weights_without_the_big_tensor_equal_the_plain_pooling(chunk, monkeypatch):
    """rewrites.slot_weights (scores a few samples at a time, tanh recomputed in backward) against
    model.SlotPooling.weights: weights and gradients, one sample per chunk and all at once."""
    monkeypatch.setattr(rewrites, "SLOT_CHUNK", chunk)
    torch.manual_seed(0)
    pool = SlotPooling(16).double()
    context = torch.randn(5, 7, 16, dtype=torch.double, requires_grad=True)
    slots = torch.randn(5, 3, 16, dtype=torch.double, requires_grad=True)
    weights = torch.randn(5, 7, 3, dtype=torch.double)
    inputs = [context, slots, pool.beta, pool.score.weight, pool.score.bias]
    fast = rewrites.slot_weights(pool, context, slots)
    plain = pool.weights(context.unsqueeze(2) + (slots + pool.beta).unsqueeze(1))
    torch.testing.assert_close(fast, plain)
    for a, b in zip(torch.autograd.grad((fast * weights).sum(), inputs),
                    torch.autograd.grad((plain * weights).sum(), inputs)):
        torch.testing.assert_close(a, b)
    w = torch.randn(16, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(rewrites._AdditiveSlotScores.apply, (context, slots, w))


def test_the_plain_model_has_no_switch_to_the_rewrites():
    """model.py's and blocks.py's classes are the plain form: no name in their code chooses or serves a
    rewrite (the only place is rewrites.apply, called by build_model)."""
    import inspect
    import io
    import tokenize
    from avmaster_core.core import blocks, model
    for module in (blocks, model):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                source = io.StringIO(inspect.getsource(cls)).readline
                names = {t.string.lower() for t in tokenize.generate_tokens(source) if t.type == tokenize.NAME}
                for word in ("fast", "collapse", "multiplicity", "trim", "rewrites"):
                    assert not any(word in n for n in names), f"{module.__name__}.{name} has a name with {word!r}"


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_read_outs_equal_plain(preset):
    """focus_steps, step_logits (Fig. 6) and word_attention (Fig. 8) of the model with the rewrites (one
    collapsed template row where exact) against the plain model's."""
    cfg = experiment("default", preset, "cpu")
    fast, plain = pair(cfg)
    fast.eval(), plain.eval()
    batch = random_batch(2, 4, cfg, "cpu", generator=torch.Generator().manual_seed(8), negatives=False)
    with torch.no_grad():
        steps_f, steps_p = fast.step_logits(batch), plain.step_logits(batch)
        torch.testing.assert_close(steps_f, steps_p, rtol=LOGIT_TOL, atol=LOGIT_TOL)
        torch.testing.assert_close(steps_p[:, -1], plain(batch)["logits"], rtol=LOGIT_TOL, atol=LOGIT_TOL)
        att_f, att_p = fast.word_attention(batch), plain.word_attention(batch)
        for m in cfg.modalities:
            torch.testing.assert_close(att_f[m], att_p[m], rtol=LOGIT_TOL, atol=LOGIT_TOL)
        states = plain.focus_steps(plain.embed_inputs(batch).feats)
        assert [s.shape for s in states["a"]] == [(2, cfg.num_templates, cfg.dim)] * 4

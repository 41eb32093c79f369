"""The inference combination of the answer heads (Tables XII/XIII) and the preference layer (eq. 4), each
checked against an independent computation: probabilities by hand, torch.nn.MultiheadAttention."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from avmaster_core import ModelConfig
from avmaster_core.core.blocks import PreferenceLayer
from avmaster_core.core.model import combine_logits

pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(b=3, c=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {k: (2 * torch.randn(b, c, generator=g)).to(dtype) for k in ("qa", "a", "v")}


def _probs(logits):
    return {k: torch.softmax(v.float(), -1) for k, v in logits.items()}


OFFICIAL = ModelConfig.official(num_answers=5)


def test_prob_sum_mul_and_w_add_by_hand():
    lg = _logits()
    p = _probs(lg)
    cases = {"prob_sum": p["qa"] + p["a"] + p["v"], "mul": p["qa"] + p["a"] * p["v"]}
    # w_add: each preference head weighted by the softmax over the two heads' top probabilities, per sample
    top_a, top_v = p["a"].max(-1).values, p["v"].max(-1).values
    w_a = torch.tensor([math.exp(a) / (math.exp(a) + math.exp(v)) for a, v in zip(top_a.tolist(), top_v.tolist())])
    cases["w_add"] = p["qa"] + w_a[:, None] * p["a"] + (1 - w_a[:, None]) * p["v"]
    for combine, total in cases.items():
        torch.testing.assert_close(combine_logits(lg, dataclasses.replace(OFFICIAL, combine=combine)),
                                   total.log(), msg=combine)


@pytest.mark.parametrize("combine", ["mul", "w_add", "prob_sum"])
def test_one_preference_head_falls_back_to_the_sum(combine):
    lg = _logits(seed=1)
    p = _probs(lg)
    cfg = dataclasses.replace(OFFICIAL, combine=combine, inference_use_v=False)
    torch.testing.assert_close(combine_logits(lg, cfg), (p["qa"] + p["a"]).log())
    cfg = dataclasses.replace(OFFICIAL, combine=combine, inference_use_a=False)
    torch.testing.assert_close(combine_logits(lg, cfg), (p["qa"] + p["v"]).log())
    both_off = dataclasses.replace(cfg, inference_use_v=False)
    torch.testing.assert_close(combine_logits(lg, both_off), p["qa"].log())


def test_trained_heads_only():
    """answer_heads="trained" leaves out the heads whose loss weight is 0, the answer head included."""
    lg = _logits(seed=2)
    p = _probs(lg)
    no_qa = dataclasses.replace(OFFICIAL, answer_heads="trained", lambda_qa=0.0, combine="prob_sum")
    torch.testing.assert_close(combine_logits(lg, no_qa), (p["a"] + p["v"]).log())
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(no_qa, combine="mul")), (p["a"] * p["v"]).log())
    no_v = dataclasses.replace(OFFICIAL, answer_heads="trained", lambda_v=0.0)
    torch.testing.assert_close(combine_logits(lg, no_v), lg["qa"] + lg["a"])
    # with every weight of the used heads 0 nothing would be left: all the used heads count
    only_a = dataclasses.replace(no_qa, lambda_a=0.0, inference_use_v=False)
    torch.testing.assert_close(combine_logits(lg, only_a), p["qa"].add(p["a"]).log())


def test_preference_heads_only():
    """Without the answer head (trained heads only, lambda_qa = 0) the combination is the preference part."""
    lg = _logits(seed=3)
    p = _probs(lg)
    cfg = dataclasses.replace(OFFICIAL, answer_heads="trained", lambda_qa=0.0, combine="w_add")
    top_a, top_v = p["a"].amax(-1, keepdim=True), p["v"].amax(-1, keepdim=True)
    w_a = top_a.exp() / (top_a.exp() + top_v.exp())
    torch.testing.assert_close(combine_logits(lg, cfg), (w_a * p["a"] + (1 - w_a) * p["v"]).log())


def test_underflowing_products_stay_finite_and_dtype_follows_the_logits():
    lg = {"qa": torch.tensor([[0.0, 0.0]]), "a": torch.tensor([[0.0, -200.0]]), "v": torch.tensor([[-200.0, 0.0]])}
    cfg = dataclasses.replace(OFFICIAL, answer_heads="trained", lambda_qa=0.0, combine="mul")
    out = combine_logits(lg, cfg)  # p_a * p_v underflows to 0 for both answers: floored, not -inf
    assert torch.isfinite(out).all() and out.max() < -60 and out[0, 0] == out[0, 1]
    half = combine_logits({k: v.to(torch.bfloat16) for k, v in _logits().items()},
                          dataclasses.replace(OFFICIAL, combine="prob_sum"))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), combine_logits(_logits(), dataclasses.replace(OFFICIAL, combine="prob_sum")),
                               atol=0.02, rtol=0.02)


# ------------------------------------------------------------------------------------- the preference layer
def _reference(layer: PreferenceLayer, heads: int):
    """nn.MultiheadAttention twins of the layer's two attentions (same parameters)."""
    twins = []
    for mine in (layer.cm_attn, layer.self_attn):
        twin = nn.MultiheadAttention(mine.dim, heads, batch_first=True)
        twin.load_state_dict(mine.state_dict())
        twins.append(twin.eval())
    return twins


def _layer(dim=8, heads=2, seed=0):
    torch.manual_seed(seed)
    layer = PreferenceLayer(dim, heads, ffn=12, dropout=0.1, eps=1e-5)
    for p in layer.parameters():  # non-trivial biases and norms, so that no term can hide
        nn.init.normal_(p, std=0.3) if p.dim() == 1 else None
    return layer.eval()


def test_preference_layer_is_eq4():
    layer = _layer()
    cross, self_attn = _reference(layer, heads=2)
    g = torch.Generator().manual_seed(1)
    x, words = torch.randn(2, 3, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    for word_mask in (None, mask):
        with torch.no_grad():
            c, c_weights = cross(x, words, words, key_padding_mask=None if word_mask is None else ~word_mask)
            h = layer.norm1(x + c + self_attn(x, x, x)[0])
            expected = layer.norm2(h + layer.ffn(h))
            out, weights = layer(x, words, need_weights=True, word_mask=word_mask)
            plain, no_weights = layer(x, words, word_mask=word_mask)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(weights, c_weights)  # [B, T, L], averaged over heads
        torch.testing.assert_close(plain, expected)
        assert no_weights is None
    assert float(weights[0, :, 3].abs().max()) == 0.0 and float(weights[1, :, 1].abs().max()) == 0.0


def test_preference_layer_dropout_only_in_training():
    layer = _layer(seed=2)
    x, words = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    with torch.no_grad():
        evaluated = layer(x, words)[0]
        layer.train()
        torch.manual_seed(0)
        first = layer(x, words)[0]
        torch.manual_seed(0)
        again = layer(x, words)[0]
    assert not torch.allclose(first, evaluated) and torch.equal(first, again)

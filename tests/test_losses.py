"""Losses on small hand-computed inputs: eq. (5) cross-entropy, both contrastive forms, eq. (7) total."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from avmaster_core import ModelConfig
from avmaster_core.core.losses import (answer_loss, contrastive_loss, cosine_matrix, in_batch_contrastive,
                                  official_contrastive, total_loss)


def test_answer_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    label = torch.tensor([1, 0])
    # sample 0: p(1) = 3/4; sample 1: p(0) = 1/2
    expected = -(math.log(0.75) + math.log(0.5)) / 2
    assert abs(float(answer_loss(logits, label)) - expected) < 1e-6


def test_cosine_matrix():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(cosine_matrix(x, y), torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]))


# Two samples in 2-D with simple angles: f_0 = e1, f_1 = e2; positives / negatives chosen on the axes.
F = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
PA = torch.tensor([[2.0, 0.0], [0.0, 1.0]])     # cos(f_i, pa_j) = identity
PV = torch.tensor([[1.0, 1.0], [0.0, 3.0]])     # cos(f_0, pv_0) = 1/sqrt2, cos(f_0, pv_1) = 0, cos(f_1, .) = 1/sqrt2, 1
NA = torch.tensor([[0.0, 1.0], [1.0, 0.0]])     # cos(f_i, na_j) = anti-identity
NV = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])   # cos(f_i, nv_j) = -identity
TAU = 0.5


def test_official_contrastive_by_hand():
    r = 1 / math.sqrt(2)
    cos_pa = [[1, 0], [0, 1]]
    cos_pv = [[r, 0], [r, 1]]
    cos_na = [[0, 1], [1, 0]]
    cos_nv = [[-1, 0], [0, -1]]
    total = 0.0
    for i in range(2):
        for j in range(2):
            pos = (cos_pa[i][j] + cos_pv[i][j]) / TAU
            neg = (cos_na[i][j] + cos_nv[i][j]) / TAU
            total += -math.log(math.exp(pos) / (math.exp(pos) + math.exp(neg)))
    expected = total / 4
    got = official_contrastive(F, [PA, PV], [NA, NV], TAU)
    assert abs(float(got) - expected) < 1e-5


def test_in_batch_contrastive_by_hand():
    r = 1 / math.sqrt(2)
    cos_pa = [[1, 0], [0, 1]]
    cos_pv = [[r, 0], [r, 1]]
    p = [[math.exp(cos_pa[i][k] / TAU) + math.exp(cos_pv[i][k] / TAU) for k in range(2)] for i in range(2)]
    expected = -sum(math.log(p[i][i] / (p[i][0] + p[i][1])) for i in range(2)) / 2
    got = in_batch_contrastive(F, [PA, PV], TAU)
    assert abs(float(got) - expected) < 1e-5
    # one sample has no negatives: -log(p/p) = 0
    assert abs(float(in_batch_contrastive(F[:1], [PA[:1], PV[:1]], TAU))) < 1e-7


def test_total_loss_weights_and_forms():
    torch.manual_seed(0)
    out = {"logits": torch.zeros(2, 4), "logits_qa": torch.randn(2, 4), "logits_a": torch.randn(2, 4),
           "logits_v": torch.randn(2, 4),
           "features": {"fused": F, "pref_a": PA, "pref_v": PV, "neg_a": NA, "neg_v": NV}}
    label = torch.tensor([1, 3])
    cfg = ModelConfig.official(num_answers=4, temperature=TAU, lambda_qa=2.0, lambda_a=0.5, lambda_v=0.0, lambda_c=3.0)
    parts = total_loss(out, label, cfg, training=True)
    torch.testing.assert_close(parts["c"], official_contrastive(F, [PA, PV], [NA, NV], TAU))
    torch.testing.assert_close(parts["total"], 2.0 * parts["qa"] + 0.5 * parts["a"] + 3.0 * parts["c"])
    paper = ModelConfig.paper(num_answers=4, temperature=TAU)
    torch.testing.assert_close(total_loss(out, label, paper, training=True)["c"],
                               in_batch_contrastive(F, [PA, PV], TAU))
    no_c = ModelConfig.official(num_answers=4, lambda_c=0.0)
    assert float(total_loss(out, label, no_c, training=True)["c"]) == 0.0


def test_cosine_matrix_of_more_samples_than_dimensions():
    # 3 samples in 2-D: each row is normalised by its own length, whatever the batch size
    x = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, -5.0], [2.0, 2.0]])
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[0.6, -0.8, 0.7 * r * 2], [0.0, -1.0, r], [r, -r, 1.0]])
    torch.testing.assert_close(cosine_matrix(x, y), expected)


def test_in_batch_contrastive_stays_on_the_features_device():
    # the diagonal targets are made on the features' device (a "meta" tensor stands in for a GPU here)
    fused, positive = torch.empty(3, 4, device="meta"), torch.empty(3, 4, device="meta")
    assert in_batch_contrastive(fused, [positive], TAU).device.type == "meta"


def _heads(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(2, 4, generator=g) for k in ("logits", "logits_qa", "logits_a", "logits_v")}


def test_total_loss_parts_are_the_answer_losses_of_each_head():
    out, label = _heads(), torch.tensor([1, 3])
    cfg = ModelConfig.official(num_answers=4, lambda_qa=1.0, lambda_a=1.0, lambda_v=2.0, lambda_c=0.0)
    parts = total_loss(out, label, cfg, training=True)
    for name in ("qa", "a", "v"):
        torch.testing.assert_close(parts[name], answer_loss(out[f"logits_{name}"], label))
    # a weight of exactly 1 still counts its term
    torch.testing.assert_close(parts["total"], parts["qa"] + parts["a"] + 2.0 * parts["v"])


def test_total_loss_of_absent_heads_and_features_is_zero():
    # the question-only baseline: no preference heads, no features
    out, label = {**_heads(), "logits_a": None}, torch.tensor([0, 2])
    del out["logits_v"]
    cfg = ModelConfig.official(num_answers=4)
    parts = total_loss(out, label, cfg, training=True)
    assert float(parts["a"]) == 0.0 and float(parts["v"]) == 0.0 and float(parts["c"]) == 0.0
    torch.testing.assert_close(parts["total"], answer_loss(out["logits_qa"], label))


def test_total_loss_is_float32_under_half_precision_logits():
    # autocast gives bf16 logits; every part and the total stay float32 (also the parts that are absent)
    out = {k: v.to(torch.bfloat16) for k, v in _heads().items()}
    del out["logits_v"]
    parts = total_loss(out, torch.tensor([1, 3]), ModelConfig.official(num_answers=4), training=True)
    assert {k: v.dtype for k, v in parts.items()} == dict.fromkeys(("qa", "a", "v", "c", "total"), torch.float32)


def test_official_contrastive_without_negatives():
    features = {"fused": F, "pref_a": PA, "pref_v": PV}
    cfg = ModelConfig.official(num_answers=4, temperature=TAU)
    with pytest.raises(ValueError) as raised:
        total_loss({**_heads(), "features": features}, torch.tensor([1, 3]), cfg, training=True)
    message = str(raised.value)
    assert "['neg_audio', 'neg_visual']" in message
    assert "(features of one random other sample each) in training; pass them or set lambda_c=0 / " \
           "contrastive='in_batch'" in message
    with pytest.raises(ValueError, match=r"batch keys \['neg_visual'\]"):
        contrastive_loss({"fused": F, "pref_v": PV}, cfg, training=True)
    # in evaluation the term is left out
    assert contrastive_loss(features, cfg, training=False) is None
    assert float(total_loss({**_heads(), "features": features}, torch.tensor([1, 3]), cfg, training=False)["c"]) == 0


def test_contrastive_loss_needs_fused_and_preference_features():
    cfg = ModelConfig.official(num_answers=4, temperature=TAU)
    assert contrastive_loss({"fused": F, "neg_a": NA}, cfg, training=True) is None       # no preference path
    assert contrastive_loss({"pref_a": PA, "neg_a": NA}, cfg, training=True) is None     # no fused feature
    assert contrastive_loss({"fused": F, "pref_a": PA, "neg_a": NA}, dataclasses.replace(cfg, lambda_c=0.0),
                            training=True) is None
    torch.testing.assert_close(contrastive_loss({"fused": F, "pref_a": PA, "neg_a": NA}, cfg, training=True),
                               official_contrastive(F, [PA], [NA], TAU))

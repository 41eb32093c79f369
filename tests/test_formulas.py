"""Each formula of the model and of the candidate scorers against an independent computation (issue 28).

The independent side is written from the docstrings' equations, per sample and per element, in float64 with
numpy or plain Python (or torch.nn's own layers), reading the module's weights by their state-dict names: a
changed scale, a swapped operand or a dropped term fails here, in the fast tier. (The released forward as a
whole is pinned by tests/official_reference.py in test_official.py; combine_logits and the preference layer
by test_combine_preference.py.)
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from avmaster_core.core import choices
from avmaster_core.core.blocks import AnswerDecoder, BertCrossLayer, MultiheadAttention, token_mix
from avmaster_core.core.model import AdditiveFirstStage, SlotPooling, context_mask, without_masked_tokens, words_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


def _rand(*shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gelu(x):  # the exact (erf) GELU of torch.nn.functional.gelu
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _layer_norm(x, w, b, eps):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ------------------------------------------------------------------------------------ candidate scorers
@pytest.mark.parametrize("dim", [8, 18])  # 18: sqrt(D) is not a power of two, so no scale is exact by chance
def test_dot_scorer_is_the_inner_product_over_sqrt_d(dim):
    torch.manual_seed(0)
    scorer = choices.ChoiceScorer(dim, 5, "dot").double().eval()
    state, cands = _rand(3, dim, seed=1), _rand(3, 4, 5, seed=2)
    w = _weights(scorer)
    h, c = state.numpy(), cands.numpy()
    expected = np.array([[sum(h[b, d] * (w["candidate.weight"][d] @ c[b, j] + w["candidate.bias"][d])
                              for d in range(dim)) / math.sqrt(dim) for j in range(4)] for b in range(3)])
    np.testing.assert_allclose(scorer(state, cands).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_match_scorer_is_an_mlp_of_state_candidate_and_product():
    torch.manual_seed(0)
    dim = 6
    scorer = choices.ChoiceScorer(dim, 5, "match").double().eval()
    state, cands = _rand(2, dim, seed=3), _rand(2, 3, 5, seed=4)
    w = _weights(scorer)
    out = np.zeros((2, 3))
    for b in range(2):
        for j in range(3):
            h = state.numpy()[b]
            a = w["candidate.weight"] @ cands.numpy()[b, j] + w["candidate.bias"]
            hidden = _gelu(w["mlp.0.weight"] @ np.concatenate([h, a, h * a]) + w["mlp.0.bias"])
            out[b, j] = (w["mlp.2.weight"] @ hidden + w["mlp.2.bias"])[0]
    np.testing.assert_allclose(scorer(state, cands).detach().numpy(), out, rtol=1e-12, atol=1e-12)


def test_scorers_are_refused_by_name_and_built_per_head():
    with pytest.raises(ValueError, match=r"choice scorer 'cosine'; choose one of \('match', 'dot'\)"):
        choices.ChoiceScorer(4, 4, "cosine")
    assert not hasattr(choices.ChoiceScorer(4, 4, "dot"), "mlp")

    class Cfg:
        dim, text_dim, choice_scorer = 4, 3, "dot"
    built = choices.build_scorers(Cfg)
    assert list(built) == ["qa", "a", "v"] and all(s.kind == "dot" and s.candidate.in_features == 3
                                                    and s.candidate.out_features == 4 for s in built.values())
    Cfg.choice_scorer = None
    assert choices.build_scorers(Cfg) is None


def test_decoder_state_is_the_answer_decoders_state_before_its_vocabulary_projection():
    torch.manual_seed(0)
    decoder = AnswerDecoder(dim=8, heads=2, ffn=16, layers=2, num_answers=7, dropout=0.0, eps=1e-12).double().eval()
    memory, query = _rand(3, 5, 8, seed=5), _rand(3, 8, seed=6)
    state = choices.decoder_state(decoder, memory, query)
    w = _weights(decoder)
    expected = state.detach().numpy() @ w["head_decoder.weight"].T + w["head_bias"]
    np.testing.assert_allclose(decoder(memory, query).detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    # and the state itself: the layers, then LayerNorm(GELU(Dense(h)))
    h = query.unsqueeze(1)
    for layer in decoder.layers:
        h = layer(h, memory)
    h = h.squeeze(1).detach().numpy()
    by_hand = _layer_norm(_gelu(h @ w["head_dense.weight"].T + w["head_dense.bias"]), w["head_norm.weight"],
                          w["head_norm.bias"], 1e-12)
    np.testing.assert_allclose(state.detach().numpy(), by_hand, rtol=1e-9, atol=1e-9)


def test_head_logits_score_the_candidates_with_the_heads_own_scorer():
    torch.manual_seed(0)
    decoder = AnswerDecoder(8, 2, 16, 1, 7, 0.0, 1e-12).double().eval()

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.choice_scorers = nn.ModuleDict({h: choices.ChoiceScorer(8, 5, "dot") for h in choices.HEADS}).double()
    model, memory, query = Model(), _rand(2, 4, 8, seed=7), _rand(2, 8, seed=8)
    batch = {"choices": _rand(2, 3, 5, seed=9)}
    state = choices.decoder_state(decoder, memory, query)
    for name in choices.HEADS:
        torch.testing.assert_close(choices.head_logits(model, name, decoder, memory, query, batch),
                                   model.choice_scorers[name](state, batch["choices"]))
    assert not torch.equal(model.choice_scorers["a"](state, batch["choices"]),
                           model.choice_scorers["v"](state, batch["choices"]))
    torch.testing.assert_close(choices.head_logits(nn.Module(), "qa", decoder, memory, query, batch),
                               decoder(memory, query))


# ------------------------------------------------------------------------------------ attention blocks
def test_bert_cross_layer_is_eq_5_6_by_hand():
    torch.manual_seed(0)
    dim, heads, eps = 8, 2, 1e-12
    layer = BertCrossLayer(dim, heads, 12, 0.0, eps).double().eval()
    h, memory = _rand(2, 3, dim, seed=10), _rand(2, 5, dim, seed=11)
    w = _weights(layer)
    out = np.zeros((2, 3, dim))
    dh = dim // heads
    for b in range(2):
        x, m = h.numpy()[b], memory.numpy()[b]
        q = x @ w["query.weight"].T + w["query.bias"]
        k = m @ w["key.weight"].T + w["key.bias"]
        v = m @ w["value.weight"].T + w["value.bias"]
        ctx = np.concatenate([_softmax(q[:, i * dh:(i + 1) * dh] @ k[:, i * dh:(i + 1) * dh].T / math.sqrt(dh))
                              @ v[:, i * dh:(i + 1) * dh] for i in range(heads)], axis=-1)
        x = _layer_norm(x + ctx @ w["attn_dense.weight"].T + w["attn_dense.bias"], w["attn_norm.weight"],
                        w["attn_norm.bias"], eps)
        inter = _gelu(x @ w["inter_dense.weight"].T + w["inter_dense.bias"])
        out[b] = _layer_norm(x + inter @ w["out_dense.weight"].T + w["out_dense.bias"], w["out_norm.weight"],
                             w["out_norm.bias"], eps)
    np.testing.assert_allclose(layer(h, memory).detach().numpy(), out, rtol=1e-9, atol=1e-9)


def test_masked_attention_is_torchs_with_key_padding_mask():
    torch.manual_seed(0)
    ours = MultiheadAttention(8, 2).double().eval()
    twin = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    twin.load_state_dict(ours.state_dict())
    q, kv = _rand(2, 3, 8, seed=12), _rand(2, 6, 8, seed=13)
    keep = torch.tensor([[True] * 6, [True, True, False, True, False, False]])
    out, weights = ours(q, kv, kv, need_weights=True, key_mask=keep)
    ref, ref_weights = twin(q, kv, kv, key_padding_mask=~keep, need_weights=True, average_attn_weights=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(weights, ref_weights)
    assert (weights[1][:, ~keep[1]] == 0).all()
    unmasked, _ = ours(q, kv, kv)
    torch.testing.assert_close(unmasked, twin(q, kv, kv, need_weights=False)[0])


def test_token_mix_is_tanh_cosine_similarity_times_rows():
    z = _rand(2, 4, 5, seed=14)
    x = z.numpy()
    expected = np.zeros_like(x)
    for n in range(2):
        for i in range(4):
            for j in range(4):
                cos = x[n, i] @ x[n, j] / (np.linalg.norm(x[n, i]) * np.linalg.norm(x[n, j]))
                expected[n, i] += math.tanh(cos) * x[n, j]
    np.testing.assert_allclose(token_mix(z).numpy(), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ focus capture, key fusion
def _additive_pool(vectors: list, weight, bias):
    """sum_j softmax_j(w^T tanh(v_j) + b) v_j: the additive attention of eq. (2) and eq. (3)."""
    scores = _softmax(np.array([(weight @ np.tanh(v) + bias)[0] for v in vectors]))
    return sum(a * v for a, v in zip(scores, vectors))


def test_additive_first_stage_is_eq_2_by_hand():
    torch.manual_seed(0)
    stage = AdditiveFirstStage(4, 6).double()
    with torch.no_grad():
        stage.b.normal_()
    z, frames = _rand(2, 3, 4, seed=15), _rand(2, 3, 4, seed=16)
    w = _weights(stage)
    out = np.zeros((2, 3, 4))
    for n in range(2):
        for i in range(3):
            s = [w["linear1.weight"] @ z.numpy()[n, i] + w["linear1.bias"] + w["linear2.weight"] @ frames.numpy()[n, j]
                 + w["linear2.bias"] + w["b"] for j in range(3)]
            out[n, i] = w["linear3.weight"] @ _additive_pool(s, w["w.weight"], w["w.bias"]) + w["linear3.bias"]
    np.testing.assert_allclose(stage(z, frames).detach().numpy(), out, rtol=1e-10, atol=1e-10)


def test_slot_pooling_is_eq_3_by_hand():
    torch.manual_seed(0)
    pool = SlotPooling(4).double()
    with torch.no_grad():
        pool.beta.normal_()
    context, slots = _rand(2, 5, 4, seed=17), _rand(2, 3, 4, seed=18)
    w = _weights(pool)
    out = np.zeros((2, 5, 4))
    for b in range(2):
        for n in range(5):
            q = [context.numpy()[b, n] + w["proj.weight"] @ slots.numpy()[b, k] + w["proj.bias"] + w["beta"]
                 for k in range(3)]
            out[b, n] = _additive_pool(q, w["score.weight"], w["score.bias"])
    np.testing.assert_allclose(pool(context, slots).detach().numpy(), out, rtol=1e-10, atol=1e-10)


def test_word_masks_and_the_context_mask():
    words = torch.zeros(3, 5, 2)
    words[0, :3] = 1.0      # start token + 2 words, then padding
    words[1, 0] = 1.0       # the start token only: no word left, every position kept
    words[2] = 1.0          # no padding
    assert words_mask({"words": words}).tolist() == [[False, True, True, False, False], [True] * 5,
                                                     [False, True, True, True, True]]
    given = torch.tensor([[1, 0, 0, 0, 1]] * 3)
    assert words_mask({"words": words, "word_mask": given}).tolist() == [[True, False, False, False, True]] * 3
    feats = {"audio": torch.zeros(3, 2, 4), "visual": torch.zeros(3, 1, 4)}
    keep = words_mask({"words": words})
    mask = context_mask(feats, ("audio", "visual"), keep)
    assert mask.shape == (3, 8) and mask[:, :3].all() and torch.equal(mask[:, 3:], keep)
    assert context_mask(feats, ("audio",), None) is None


def test_masked_context_rows_become_the_first_kept_row():
    context = _rand(2, 4, 3, seed=19)
    keep = torch.tensor([[False, True, False, True], [True, True, True, True]])
    out = without_masked_tokens(context, keep)
    torch.testing.assert_close(out[0], torch.stack([context[0, 1], context[0, 1], context[0, 1], context[0, 3]]))
    torch.testing.assert_close(out[1], context[1])

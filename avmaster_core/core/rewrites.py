"""The exact speed-ups of AV-Master: algebraic rewrites of the plain blocks in blocks.py and model.py.

Every function here computes what the plain `forward` of its module computes (same parameters, same math,
same dropout statistics) with fewer or larger operations. The plain forms are the reference to read beside
the paper; `apply(model)` puts the rewrites in place, in one call (`model.build_model` does it unless
fast=False): the attention blocks become their subclasses below and the model gets `AVMasterRewrites`'
methods; parameters and state-dict keys stay. tests/test_rewrites.py compares both forms for every
experiment x preset.

- absorbed attention: with one head or few queries, the projection pairs W_k^T W_q and W_o W_v are folded
  (`absorbed_single_head`, `absorbed_bert_cross`);
- the focus recurrence (`focus_recurrence`): everything that depends on a frame but not on the recurrent
  state is computed for all T steps at once; the cross-attention over K copies of one frame is
  query-independent; dropout masks of the loop are drawn once per tensor for all steps; the weight
  gradients of the loop's linear maps are summed in place (`LoopWeights`);
- collapsed templates (`focus_collapsed`): in eval mode where the K rows stay identical, one row per
  sample with the affine parts of a step folded into one matrix;
- split fusion linear (`key_fusion_split`), and the additive slot pooling's scores without their
  [B, Lc, R, D] tensor (`slot_weights`);
- zero-padded words (`trim_padding`): the trailing padding shared by a batch runs as one token whose
  attention weight counts its copies (CPU, no dropout); a BERT cross layer over one memory token skips
  its attention (`absorbed_bert_cross`).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import BertCrossLayer, MultiheadAttention, token_mix


# ============================================================================ cached weight products
def capturing() -> bool:
    """True while torch.compile traces or the current CUDA stream records a graph."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def folded(module: nn.Module, name: str, compute, *params: Tensor) -> Tensor:
    """compute() -- a product of weights, e.g. W_o W_v -- cached on `module` while no gradient is recorded.

    Inference calls reuse it until one of `params` changes in place (an optimizer step bumps its version);
    with autograd on, it is recomputed every call so gradients flow through it. While a CUDA graph is being
    captured or torch.compile traces, it is recomputed too: the product must be part of the captured work,
    or replays after an optimizer step would use stale weights (fast.py).
    """
    if torch.is_grad_enabled() or capturing():
        return compute()
    key = (name, tuple(p._version for p in params), torch.is_autocast_enabled(params[0].device.type),
           params[0].device)
    cache = module.__dict__.setdefault("_folded_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        hit = cache[name] = (key, compute())
    return hit[1]


def dropout_masks(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Inverted-dropout multipliers for many dropout calls at once: 0 or 1/(1-p), each kept with prob. 1-p.

    One random draw replaces one `bernoulli_` per call (same statistics as F.dropout, other random stream);
    made in place in the drawn fp32 tensor (one allocation: at batch 32 a site's masks for 60 steps are 94 MB;
    a bf16 draw would keep only 8 random bits, so it is converted afterwards, a no-op for fp32).
    """
    return torch.rand(shape, device=like.device).ge_(p).div_(1.0 - p).to(like.dtype)


# ============================================================================ weights used at every step
LOOP_WEIGHT_GRADS = True  # switch for tests/test_rewrites.py: False = autograd's per-step weight gradients


class LoopWeights:
    """One linear map applied at every step of a loop, whose weight gradient is summed in place.

    Autograd gives every step's use of a weight its own [out, in] gradient (a fresh buffer and a small matmul)
    and adds it to the others' (a full-size add per step). Here each step's backward adds g_t^T x_t into one
    buffer with a beta = 1 matmul (`addmm_`), and the weight receives the sum once, when the first node of
    the loop (`_LoopWeightGrads`, whose 0-d output every step reads) runs in the backward pass. Same sum,
    other rounding order. `__call__(x)` = F.linear(x, weight, bias).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        self.weight, self.bias = weight, bias
        self.dw = self.db = None
        self.token = _LoopWeightGrads.apply(self, weight, bias)

    def __call__(self, x: Tensor) -> Tensor:
        return _LoopLinear.apply(x, self.weight, self.bias, self.token, self)

    def add(self, grad: Tensor, x: Tensor) -> None:
        """One step's contribution: grad [rows, out], x [rows, in]."""
        if self.dw is None:
            self.dw = grad.T @ x
        else:
            self.dw.addmm_(grad.T, x)
        if self.bias is not None:
            self.db = grad.sum(0) if self.db is None else self.db.add_(grad.sum(0))


class _LoopWeightGrads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, bank: LoopWeights, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.bank = bank
        return weight.new_zeros(())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _token_grad):
        bank = ctx.bank
        dw, db, bank.dw, bank.db = bank.dw, bank.db, None, None
        return None, dw, db


class _LoopLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, token: Tensor, bank: LoopWeights) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.bank = bank
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        ctx.bank.add(grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1]))
        dx = grad @ weight if ctx.needs_input_grad[0] else None
        return dx, None, None, grad.new_zeros(()), None


def loop_linears(layer, state_matrix: Tensor | None, x: Tensor) -> dict:
    """The linear maps of a focus step: LoopWeights where a CPU backward will follow, else plain F.linear."""
    sa, ffn = layer.self_attn, layer.ffn
    pairs = {"qkv": (sa.in_proj_weight, sa.in_proj_bias), "out": (sa.out_proj.weight, sa.out_proj.bias),
             "ffn1": (ffn.linear1.weight, ffn.linear1.bias), "ffn2": (ffn.linear2.weight, ffn.linear2.bias),
             "state": (state_matrix, None)}
    deferred = (LOOP_WEIGHT_GRADS and torch.is_grad_enabled() and x.device.type == "cpu" and not capturing()
                and not torch.is_autocast_enabled("cpu"))
    return {name: (LoopWeights(w, b) if deferred and (w.requires_grad or (b is not None and b.requires_grad))
                   else (lambda v, w=w, b=b: F.linear(v, w, b)))
            for name, (w, b) in pairs.items() if w is not None}


# ============================================================================ absorbed attention
def absorbed_single_head(att, query: Tensor, key: Tensor, value: Tensor, p: float,
                         key_bias: Tensor | None = None) -> Tensor:
    """blocks.MultiheadAttention with one head, both projection pairs absorbed (fewer matmuls over many rows):
    scores = (W_k^T (W_q x + b_q)) . y  (the q . b_k term is constant per query, cancels in the softmax)
    out    = (A Y_v)(W_o W_v)^T + (sum A) W_o b_v + b_o,  A the (dropped-out) attention probabilities."""
    d = att.dim
    w, b = att.in_proj_weight, att.in_proj_bias
    w_q, w_k, w_v = w[:d], w[d:2 * d], w[2 * d:]
    w_o = att.out_proj.weight
    ps = (att.in_proj_weight, att.in_proj_bias, w_o)
    w_qk, b_qk = folded(att, "qk", lambda: (w_k.T @ w_q, w_k.T @ b[:d]), *ps)
    w_ov, b_ov = folded(att, "ov", lambda: (w_o @ w_v, w_o @ b[2 * d:]), *ps)
    q_abs = F.linear(query, w_qk, b_qk)  # [..., Lq, D]
    scores = q_abs @ key.transpose(-1, -2) / math.sqrt(d)  # [..., Lq, Lk]
    probs = torch.softmax(scores if key_bias is None else scores + key_bias, dim=-1)
    probs = F.dropout(probs, p, p > 0)
    out = F.linear(probs @ value, w_ov, att.out_proj.bias)
    mass = probs.sum(-1, keepdim=True)  # 1 unless dropout
    return out + mass * b_ov


def fused_attention(att, query: Tensor, key: Tensor, value: Tensor, p: float,
                    key_bias: Tensor | None = None) -> Tensor:
    """blocks.MultiheadAttention through F.scaled_dot_product_attention, projections fused where inputs coincide.
    key_bias [Lk]: added to the scores (see `attend_weighted`)."""
    q, k, v = (att.split_heads(t) for t in att.project(query, key, value))  # [..., H, L, dh]
    mask = None if key_bias is None else key_bias.unsqueeze(0)  # [1, Lk]: the same for every query
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    return att.out_proj(out.transpose(-3, -2).flatten(-2))


def absorbed_bert_cross(layer, h: Tensor, memory: Tensor) -> Tensor:
    """blocks.BertCrossLayer with absorbed projections: with Lq << Lm queries (the decoders have Lq = 1),
    scores are (q_h W_k,h) . m / sqrt(dh) (q . b_k is constant per query and cancels in the softmax) and the
    values are W_v,h (sum_n a_n m_n) + b_v,h sum_n a_n: no projection of the Lm memory tokens."""
    b, lq, d = h.shape
    if memory.shape[1] == 1 and not (layer.training and layer.dropout > 0):
        # one memory token: every softmax is 1, the context is its value whatever the query (decoder_qa)
        return layer.add_and_feed_forward(h, layer.value(memory).expand(b, lq, d))
    nh, dh = layer.heads, d // layer.heads
    q = layer.query(h).unflatten(-1, (nh, dh))  # [B, Lq, H, dh]
    q_abs = torch.einsum("bqhe,hed->bhqd", q, layer.key.weight.unflatten(0, (nh, dh)))  # [B, H, Lq, D]
    scores = q_abs.flatten(1, 2) @ memory.transpose(1, 2) / math.sqrt(dh)  # [B, H*Lq, Lm]
    probs = F.dropout(torch.softmax(scores, dim=-1), layer.dropout, layer.training)
    mixed = probs @ memory  # [B, H*Lq, D]  sum_n a_n m_n
    mass = probs.sum(-1, keepdim=True)  # [B, H*Lq, 1]  sum_n a_n (1 unless dropout)
    w_v = layer.value.weight.unflatten(0, (nh, dh))  # [H, dh, D]
    ctx = torch.einsum("bhqd,hed->bqhe", mixed.unflatten(1, (nh, lq)), w_v)  # [B, Lq, H, dh]
    ctx = (ctx + mass.unflatten(1, (nh, lq)).transpose(1, 2) * layer.value.bias.view(nh, dh)).flatten(-2)
    return layer.add_and_feed_forward(h, ctx)


# ============================================================================ zero-padded words
def trim_padding(words: Tensor) -> tuple[Tensor, Tensor | None]:
    """Words [B, L, E] whose trailing positions are zero in every sample -> the same words with that padding
    as ONE position, and the log-multiplicity of every position [L'] (0, and log m for the padding row).

    CLIP-like word features of short questions (the synthetic benchmark's: 16 of 77 used) are mostly zero
    padding. Every padded position projects to the same token (the projection's bias), so as attention keys
    they act as one key counted m times: softmax over s_n + log m_n (`attend_weighted`); as queries or rows
    they give identical rows, which the max over tokens of the key fusion reads once. Only exact without
    dropout (the plain form drops each copy independently) and where shapes may depend on data (CPU).
    Returns (words, None) when fewer than 2 positions are padding.
    """
    used = (words.amax(dim=(0, 2)) != 0) | (words.amin(dim=(0, 2)) != 0)  # [L]; 6x cheaper than ne().any()
    length = words.shape[1]
    last = int(used.nonzero().max()) + 1 if bool(used.any()) else 0  # positions [0, last) hold words
    pad = length - last
    if pad < 2:
        return words, None
    key_bias = words.new_zeros(last + 1)
    key_bias[-1] = math.log(pad)
    return words[:, :last + 1], key_bias


def attend_weighted(att, query: Tensor, key: Tensor, value: Tensor, key_bias: Tensor) -> Tensor:
    """blocks.MultiheadAttention (no dropout) whose key n stands for exp(key_bias[n]) identical keys."""
    if att.heads == 1 and value[..., 0].numel() > 2 * att.dim:
        return absorbed_single_head(att, query, key, value, 0.0, key_bias)
    return fused_attention(att, query, key, value, 0.0, key_bias)


def self_attention_layer_weighted(layer, x: Tensor, key_bias: Tensor) -> Tensor:
    """blocks.SelfAttentionLayer (no dropout) over tokens with multiplicities exp(key_bias) [L]."""
    x = layer.norm1(x + attend_weighted(layer.self_attn, x, x, x, key_bias))
    return layer.norm2(x + layer.ffn(x))


def preference_layer_weighted(layer, x: Tensor, words: Tensor, key_bias: Tensor) -> Tensor:
    """blocks.PreferenceLayer (no dropout, no weights returned) over words with multiplicities exp(key_bias)."""
    cross = attend_weighted(layer.cm_attn, x, words, words, key_bias)
    x = layer.norm1(x + cross + layer.self_attn(x, x, x)[0])
    return layer.norm2(x + layer.ffn(x))


# ============================================================================ the focus recurrence
def frame_values(layer, frames: Tensor, per_head: bool) -> Tensor:
    """The focus cross-attention's output for K copies of each frame, all steps at once.

    Keys and values are K copies of one frame, so the softmax is uniform and the output does not depend on
    the query: out = out_proj(concat_h c_h * (W_v,h f + b_v,h)) with c_h = 1 in eval and
    c_h = (# copies kept by dropout) / (K (1 - p)) in training (`cross_scale`).
    frames [N, T, D] -> out_proj-mapped values: [N, T, H, D] per head (no out bias), or [N, T, D] summed.
    """
    att = layer.cross_attn
    d, h = att.dim, att.heads
    v = F.linear(frames, att.in_proj_weight[2 * d:], att.in_proj_bias[2 * d:])  # [N, T, D]
    if not per_head:
        return att.out_proj(v)
    w_o = att.out_proj.weight.unflatten(1, (h, d // h))  # [D_out, H, dh]
    return torch.einsum("nthe,ohe->ntho", v.unflatten(-1, (h, d // h)), w_o)


def cross_scale(layer, shape: tuple[int, ...], copies: int, device, dtype) -> Tensor:
    """Dropout on K uniform attention probabilities summed: Binomial(K, 1-p) / (K (1-p)), shape [..., H]."""
    p = layer.cross_attn.dropout
    kept = (torch.rand(*shape, layer.cross_attn.heads, copies, device=device) >= p).sum(-1)
    return kept.to(dtype) / (copies * (1.0 - p))


def _step_masks(layer, t_len: int, n: int, rows: int, like: Tensor) -> list[dict[str, Tensor]]:
    """Per-step dropout multipliers of one focus decoder step, drawn for all T steps in one call per site."""
    d, heads, hidden = like.shape[-1], layer.self_attn.heads, layer.ffn.linear1.out_features
    sites = {"attn": ((t_len, n, heads, rows, rows), layer.self_attn.dropout),
             "drop1": ((t_len, n, rows, d), layer.drop1.p), "drop2": ((t_len, n, rows, d), layer.drop2.p),
             "ffn": ((t_len, n, rows, hidden), layer.ffn.dropout.p), "drop3": ((t_len, n, rows, d), layer.drop3.p)}
    drawn = {name: dropout_masks(shape, p, like).unbind(0) for name, (shape, p) in sites.items()}
    return [{name: masks[t] for name, masks in drawn.items()} for t in range(t_len)]


def _self_attention_offset(att, bias: Tensor, mode: str) -> Tensor | float:
    """What the bias adds to the packed q,k,v projections of the focus self-attention, once for all steps.

    query_pos: q,k = W_qk (z + P) + b_qk, v = W_v z + b_v, so qkv = W z + b + [W_qk P, 0]. The per-step work
    is then one matmul with the whole packed weight: no slice of it per step, whose backward would write a
    zero-filled [3D, D] gradient every step.
    """
    if mode != "query_pos":
        return 0.0
    d = att.dim
    qk = F.linear(bias, att.in_proj_weight[: 2 * d])  # [N|1, R, 2D]
    return torch.cat([qk, qk.new_zeros(*qk.shape[:-1], d)], dim=-1)


def _self_attention_step(att, z: Tensor, offset: Tensor | float, mask: Tensor | None, lin: dict) -> Tensor:
    """blocks.MultiheadAttention(z + .., z + .., z) of a focus step; `mask` pre-drawn probability dropout;
    `lin` the step's linear maps (`loop_linears`)."""
    qkv = lin["qkv"](z) + offset
    q, k, v = (att.split_heads(t) for t in qkv.chunk(3, dim=-1))  # [N, H, R, dh]
    if mask is None:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        out = (probs * mask) @ v
    return lin["out"](out.transpose(-3, -2).flatten(-2))


def _decoder_step(layer, z: Tensor, bias: Tensor, offset: Tensor | float, cross: Tensor, mode: str,
                  m: dict | None, lin: dict) -> Tensor:
    """blocks.FocusDecoderLayer given its query-independent cross output; `m` the step's dropout masks
    (None in eval or without dropout); `lin` its linear maps (`loop_linears`)."""
    def drop(x, site):
        return x if m is None else x * m[site]

    def plus_dropped(z, x, site):  # z + drop(x): one addcmul instead of a product and a sum
        return z + x if m is None else torch.addcmul(z, x, m[site])

    if mode != "query_pos":  # "add": SAB(z + bias) + bias
        z = z + bias
    z = layer.norm1(plus_dropped(z, _self_attention_step(layer.self_attn, z, offset, m and m["attn"], lin), "drop1"))
    if mode != "query_pos":
        z = z + bias
    z = layer.norm2(plus_dropped(z, cross, "drop2"))
    return layer.norm3(plus_dropped(z, lin["ffn2"](drop(layer.ffn.act(lin["ffn1"](z)), "ffn")), "drop3"))


def focus_recurrence(block, x: Tensor, bias: Tensor, init: Tensor | None, collapse: bool,
                     return_steps: bool = False) -> tuple[Tensor, list[Tensor] | None]:
    """model.FocusBlock.forward (and, with return_steps, .steps), with the frame-only work of all T steps
    done before the loop over time: (templates, the templates after each step or None).

    The additive first stage is z <- W3 W1 z + (W3 (W2 f + b1 + b2 + beta) + b3) (uniform softmax over K
    copies of the frame); its frame half and the cross-attention output are computed for all steps at once.
    With `collapse` the K identical rows run as one (R = 1 row per sample).
    """
    cfg = block.cfg
    if cfg.use_focus and collapse and cfg.focus_first_stage == "additive" and not return_steps:
        return focus_collapsed(block, x), None
    x = block.embed(x)
    if not cfg.use_focus:  # Table VII w/o AVFC: the embedded frames themselves are the "templates"
        return x, None
    n, t_len, d = x.shape
    k, layer, first = cfg.num_templates, block.layer, block.first
    rows = 1 if collapse else k
    additive = cfg.focus_first_stage == "additive"
    state_matrix = None
    if additive:
        state_matrix = first.linear3.weight @ first.linear1.weight  # W3 W1
        terms = first.linear3(first.linear2(x) + first.linear1.bias + first.b).unbind(1)  # T x [N, D]
    per_head = layer.training and layer.cross_attn.dropout > 0
    values = frame_values(layer, x, per_head).unbind(1)  # T x ([N, H, D] or [N, D])
    frames = x.unbind(1)  # unbind once: indexing [:, t] in the loop would scatter T full-size gradients
    if per_head:  # attention dropout on K uniform probabilities, all steps at once
        scales = cross_scale(layer, (t_len, n, rows), k, x.device, x.dtype).unbind(0)  # T x [N, R, H]
    masks = _step_masks(layer, t_len, n, rows, x) if layer.training and cfg.dropout > 0 else [None] * t_len
    z = x[:, :1].expand(n, rows, d) if init is None else init.expand(n, rows, d)
    bias = bias[:, :rows]
    offset = _self_attention_offset(layer.self_attn, bias, cfg.bias_mode)
    lin = loop_linears(layer, state_matrix if additive else None, x)
    steps = [] if return_steps else None
    for t in range(t_len):
        if per_head:
            cross = torch.einsum("nrh,nho->nro", scales[t], values[t]) + layer.cross_attn.out_proj.bias
        else:
            cross = values[t].unsqueeze(1).expand(n, rows, d)
        z = lin["state"](z) + terms[t].unsqueeze(1) if additive else first(z + frames[t].unsqueeze(1))
        z = block.final_norm(_decoder_step(layer, z, bias, offset, cross, cfg.bias_mode, masks[t], lin))
        if return_steps:
            steps.append(z)
    return z, steps


def _collapsed_weights(block, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """B = (I + Wo Wv) W3 W1 and the folded frame -> (d_t, e_t) map of `focus_collapsed`."""
    layer, first = block.layer, block.first
    d = feats.shape[-1]
    eye = torch.eye(d, device=feats.device, dtype=feats.dtype)
    sa, ca = layer.self_attn, layer.cross_attn
    m = eye + sa.out_proj.weight @ sa.in_proj_weight[2 * d:]  # I + Wo Wv
    m_bias = sa.out_proj.weight @ sa.in_proj_bias[2 * d:] + sa.out_proj.bias
    w3 = first.linear3.weight
    b_mat = m @ (w3 @ first.linear1.weight)  # [D, D]
    w_d = m @ (w3 @ first.linear2.weight)  # frame -> d_t
    c_d = m @ (w3 @ (first.linear2.bias + first.linear1.bias + first.b) + first.linear3.bias) + m_bias
    w_e = ca.out_proj.weight @ ca.in_proj_weight[2 * d:]  # frame -> e_t
    c_e = ca.out_proj.weight @ ca.in_proj_bias[2 * d:] + ca.out_proj.bias
    w_de, c_de = torch.cat([w_d, w_e]), torch.cat([c_d, c_e])
    if isinstance(block.embed, nn.Linear):  # fold the embedding too: frames = E feats + e
        c_de = c_de + w_de @ block.embed.bias
        w_de = w_de @ block.embed.weight
    return b_mat, w_de, c_de


def focus_collapsed(block, feats: Tensor) -> Tensor:
    """Released focus recurrence with K identical rows and no dropout, on one row per sample. [N, 1, D].

    feats [N, T, D] are the features before `embed`. Per step: additive stage z' = A z + c_t;
    self-attention over identical rows returns its value, so LN1(z' + Wo Wv z' + (Wo bv + bo)) =
    LN1(B z + d_t) with B = (I + Wo Wv) A; the cross-attention output e_t does not depend on z. d_t and e_t
    are affine in the frame, so both come from one matmul of the (un-embedded) features with folded weights.
    Only B z, the LayerNorms and the FFN stay in the loop over time.
    """
    layer, d = block.layer, feats.shape[-1]
    b_mat, w_de, c_de = folded(block, "collapsed", lambda: _collapsed_weights(block, feats),
                               *[p for p in block.parameters()])
    de = F.linear(feats, w_de, c_de)  # [N, T, 2D]
    d_all, e_all = de[..., :d], de[..., d:]
    n1, n2, n3 = layer.norm1, layer.norm2, layer.norm3
    ffn, final = layer.ffn, block.final_norm
    z = block.embed(feats[:, 0])  # [N, D] the first frame
    for d_t, e_t in zip(d_all.unbind(1), e_all.unbind(1)):
        z = n1(torch.addmm(d_t, z, b_mat.T))
        z = n2(z + e_t)
        z = final(n3(z + ffn(z)))
    return z.unsqueeze(1)


# ============================================================================ key fusion
SLOT_CHUNK = 2**20  # numbers of [samples, Lc, R, D] per chunk of _AdditiveSlotScores (4 MB in fp32)


class _AdditiveSlotScores(torch.autograd.Function):
    """s[b, l, r] = w . tanh(c[b, l] + u[b, r]) (model.SlotPooling's scores, no bias) without keeping the
    [B, Lc, R, D] tensor: a few samples at a time, tanh recomputed in the backward pass. At batch 32 the
    tensor is 155 MB per modality and autograd's form writes and reads it about eight times per step."""

    @staticmethod
    def forward(ctx, context: Tensor, slots: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(context, slots, w)
        ctx.chunk = max(1, SLOT_CHUNK // (context[0].numel() * slots.shape[1]))
        return torch.cat([torch.tanh(c.unsqueeze(2) + u.unsqueeze(1)) @ w
                          for c, u in zip(context.split(ctx.chunk), slots.split(ctx.chunk))])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        context, slots, w = ctx.saved_tensors
        d_context, d_slots, d_w = [], [], torch.zeros_like(w)
        for c, u, g in zip(context.split(ctx.chunk), slots.split(ctx.chunk), grad.split(ctx.chunk)):
            t = torch.tanh(c.unsqueeze(2) + u.unsqueeze(1))  # [b, Lc, R, D]
            d_w += torch.einsum("blr,blrd->d", g, t)
            da = t.mul_(t).neg_().add_(1).mul_(g.unsqueeze(-1)).mul_(w)  # d s / d(c + u): (1 - t^2) g w
            d_context.append(da.sum(2))
            d_slots.append(da.sum(1))
        return torch.cat(d_context), torch.cat(d_slots), d_w


def slot_weights(pool, context: Tensor, u: Tensor) -> Tensor:
    """model.SlotPooling's weights g [B, Lc, R] of context [B, Lc, D] and the projected slots u = U z [B, R, D],
    through _AdditiveSlotScores; the plain form while a graph is captured or compiled, or under autocast."""
    if capturing() or torch.is_autocast_enabled(context.device.type):
        return pool.weights(context.unsqueeze(2) + (u + pool.beta).unsqueeze(1))
    scores = _AdditiveSlotScores.apply(context, u + pool.beta, pool.score.weight[0]) + pool.score.bias
    return torch.softmax(scores, dim=-1)


def key_fusion_split(model, context: Tensor, focus: dict[str, Tensor]) -> Tensor:
    """model.AVMaster.key_fusion with additive pooling, the fusion linear split per input.

    O_m = Fc + beta_m + g_m @ u_m (the pooling weights g sum to 1 over the slots; g = 1 for one collapsed
    slot), so fuse(concat(Fc, O_v, O_a)) = Fc (W_c + W_v + W_a)^T + sum_m g_m @ (u_m W_m^T) +
    (b + sum_m W_m beta_m): one D x D matmul over the tokens instead of a 3D x D one.
    """
    mods = tuple(reversed(model.cfg.modalities))  # released order: Fc, O_v, O_a
    d = context.shape[-1]
    w = model.fuse.weight.split(d, dim=1)  # W_c, then one [D, D] block per modality
    w_sum, bias = w[0], model.fuse.bias
    h_slots = 0
    for i, m in enumerate(mods):
        pool = model.pool[m]
        u = pool.proj(focus[m])  # [B, R, D]
        g = None if u.shape[1] == 1 else slot_weights(pool, context, u)  # [B, Lc, R]
        w_sum = w_sum + w[i + 1]
        bias = bias + w[i + 1] @ pool.beta
        uw = u @ w[i + 1].T  # [B, R, D]
        h_slots = h_slots + (uw if g is None else g @ uw)
    return (F.linear(context, w_sum, bias) + h_slots).amax(dim=1)


# ============================================================================ the rewrites in place
class FastMultiheadAttention(MultiheadAttention):
    """blocks.MultiheadAttention through F.scaled_dot_product_attention, or with one head over many rows its
    absorbed projections; the plain form where the probabilities are asked for or keys are masked."""

    def forward(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool = False,
                key_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if need_weights or key_mask is not None:
            return super().forward(query, key, value, need_weights, key_mask)
        p = self.dropout if self.training else 0.0
        if self.heads == 1 and value[..., 0].numel() > 2 * self.dim:
            return absorbed_single_head(self, query, key, value, p), None
        return fused_attention(self, query, key, value, p), None


class FastBertCrossLayer(BertCrossLayer):
    """blocks.BertCrossLayer with absorbed projections (`absorbed_bert_cross`)."""

    def forward(self, h: Tensor, memory: Tensor) -> Tensor:
        return absorbed_bert_cross(self, h, memory)


FAST_BLOCKS = {MultiheadAttention: FastMultiheadAttention, BertCrossLayer: FastBertCrossLayer}


class AVMasterRewrites:
    """The model-level rewrites of model.AVMaster, mixed in by `apply`:

    - focus sampling through `focus_recurrence`; where the K template rows provably stay identical
      (config.templates_stay_identical, no dropout) they run as one row, which the mixing counts K times;
    - key fusion with additive pooling through `key_fusion_split`;
    - positives and negatives through each preference layer as one batch;
    - on CPU without dropout, the words' trailing zero padding shared by the batch as one weighted token
      (`trim_padding`) in the fusion context and the preference layers.
    """

    collapse_templates: bool | None = None  # None: one row wherever that is exact; False: always K rows
    _key_bias: Tensor | None = None  # log-multiplicities of the trimmed words while `forward` runs

    def forward(self, batch: dict, check_finite: bool | None = None) -> dict:
        words = batch.get("words") if isinstance(batch, dict) else None
        trimmed, key_bias = trim_padding(words) if self._may_trim(words) else (words, None)
        if key_bias is None:
            return super().forward(batch, check_finite)
        self._key_bias = key_bias
        try:
            return super().forward({**batch, "words": trimmed}, check_finite)
        finally:
            self._key_bias = None

    def _may_trim(self, words: Any) -> bool:
        cfg = self.cfg
        return (isinstance(words, Tensor) and words.dim() == 3 and words.shape[-1] == cfg.text_dim
                and words.is_floating_point() and words.device.type == "cpu" and words.shape[1] > 2
                and not cfg.mask_padding and not (self.training and cfg.dropout > 0) and not capturing())

    def _collapsed(self) -> bool:
        """Whether the focus templates run as one row now (exact: identical rows, no dropout)."""
        cfg = self.cfg
        exact = cfg.use_focus and cfg.templates_stay_identical and (not self.training or cfg.dropout == 0)
        return exact and self.collapse_templates is not False

    def focus_capture(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        collapse = self._collapsed()
        found = self.run_focus(feats, lambda block, *args: focus_recurrence(block, *args, collapse)[0])
        return {m: self.mix(z) for m, z in found.items()}

    def focus_steps(self, feats: dict[str, Tensor]) -> dict[str, list[Tensor]]:
        if not (self.cfg.use_tdpp and self.cfg.use_focus):
            return super().focus_steps(feats)  # says what is missing
        collapse = self._collapsed()
        return self.run_focus(feats, lambda block, *args: focus_recurrence(block, *args, collapse, True)[1])

    def mix(self, z: Tensor) -> Tensor:
        if not self.cfg.focus_mix:
            return z
        # one collapsed row stands for K identical ones: the mixing's row sum counts each of them
        return self.cfg.num_templates * token_mix(z) if self._collapsed() else token_mix(z)

    def key_fusion(self, context: Tensor, focus: dict[str, Tensor]) -> Tensor:
        if self.cfg.fusion_pool == "additive":
            return key_fusion_split(self, context, focus)
        return super().key_fusion(context, focus)

    def fusion_context(self, x) -> Tensor:
        if self._key_bias is None:
            return super().fusion_context(x)
        tokens = torch.cat([x.feats[m] for m in self.cfg.modalities] + [x.words], dim=1)
        bias = torch.cat([self._key_bias.new_zeros(tokens.shape[1] - self._key_bias.shape[0]), self._key_bias])
        return self_attention_layer_weighted(self.context, tokens, bias)  # frames count 1 each

    def preference(self, m: str, x, negative: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if negative is None:
            return self._preference(m, x.feats[m], x.words, x.word_mask), None
        both_mask = None if x.word_mask is None else torch.cat([x.word_mask, x.word_mask])
        both = self._preference(m, torch.cat([x.feats[m], negative]), torch.cat([x.words, x.words]), both_mask)
        pref, neg = both.chunk(2)
        return pref, neg

    def _preference(self, m: str, feats: Tensor, words: Tensor, word_mask: Tensor | None) -> Tensor:
        if self._key_bias is None:
            return self.pref[m](feats, words, word_mask=word_mask)[0]
        return preference_layer_weighted(self.pref[m], feats, words, self._key_bias)


@functools.cache
def _with_rewrites(cls: type) -> type:
    if issubclass(cls, AVMasterRewrites):
        return cls
    return type(f"Fast{cls.__name__}", (AVMasterRewrites, cls), {"__module__": __name__})


def apply(model: nn.Module) -> nn.Module:
    """Put every rewrite of this module in place on `model` (a model.AVMaster) and return it: the attention
    blocks become their Fast subclasses, the model gets AVMasterRewrites' methods. Same parameters, same
    state-dict keys, same math (tests/test_rewrites.py)."""
    for module in model.modules():
        module.__class__ = FAST_BLOCKS.get(type(module), type(module))
    model.__class__ = _with_rewrites(type(model))
    return model

"""Attention building blocks of AV-Master, all on fused attention (F.scaled_dot_product_attention).

Parameter names follow torch.nn.MultiheadAttention (packed in_proj q,k,v; out_proj) and the released
code's layer names, so official checkpoints map onto them one to one (see official.py).
All tensors are batch-first: [batch, length, dim].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _capturing() -> bool:
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
    if torch.is_grad_enabled() or _capturing():
        return compute()
    key = (name, tuple(p._version for p in params), torch.is_autocast_enabled(params[0].device.type),
           params[0].device)
    cache = module.__dict__.setdefault("_folded_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        hit = cache[name] = (key, compute())
    return hit[1]


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention's math (same parameters, dropout on the attention probabilities), batch-first.

    Projections are fused where inputs coincide: one matmul for q,k,v in self-attention, one for k,v when
    key is value, one for q,k when query is key (DETR query_pos style).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w, b, d = self.in_proj_weight, self.in_proj_bias, self.dim
        if query is key and key is value:
            return F.linear(query, w, b).chunk(3, dim=-1)
        if key is value:
            q = F.linear(query, w[:d], b[:d])
            k, v = F.linear(key, w[d:], b[d:]).chunk(2, dim=-1)
            return q, k, v
        if query is key:
            q, k = F.linear(query, w[: 2 * d], b[: 2 * d]).chunk(2, dim=-1)
            return q, k, F.linear(value, w[2 * d:], b[2 * d:])
        return (F.linear(query, w[:d], b[:d]), F.linear(key, w[d:2 * d], b[d:2 * d]),
                F.linear(value, w[2 * d:], b[2 * d:]))

    def _heads(self, x: Tensor) -> Tensor:  # [..., L, D] -> [..., H, L, D/H]
        return x.unflatten(-1, (self.heads, self.dim // self.heads)).transpose(-3, -2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        p = self.dropout if self.training else 0.0
        if self.heads == 1 and not need_weights and value[..., 0].numel() > 2 * self.dim:
            return self._single_head_absorbed(query, key, value, p), None
        q, k, v = (self._heads(t) for t in self.project(query, key, value))  # [..., H, L, dh]
        if need_weights:  # explicit path (analysis only): returns the head-averaged probabilities
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
            out = F.dropout(probs, p, self.training) @ v
            weights = probs.mean(dim=-3)  # [..., Lq, Lk]
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            weights = None
        out = out.transpose(-3, -2).flatten(-2)  # [..., Lq, D]
        return self.out_proj(out), weights

    def _single_head_absorbed(self, query: Tensor, key: Tensor, value: Tensor, p: float) -> Tensor:
        """One head with both projection pairs absorbed (same math, fewer matmuls over many rows):
        scores = (W_k^T (W_q x + b_q)) . y  (the q . b_k term is constant per query, cancels in the softmax)
        out    = (A Y_v)(W_o W_v)^T + (sum A) W_o b_v + b_o,  A the (dropped-out) attention probabilities.
        Two D x D matmuls on the query rows replace the q, k, v and output projections."""
        d = self.dim
        w, b = self.in_proj_weight, self.in_proj_bias
        w_q, w_k, w_v = w[:d], w[d:2 * d], w[2 * d:]
        w_o = self.out_proj.weight
        ps = (self.in_proj_weight, self.in_proj_bias, w_o)
        w_qk, b_qk = folded(self, "qk", lambda: (w_k.T @ w_q, w_k.T @ b[:d]), *ps)
        w_ov, b_ov = folded(self, "ov", lambda: (w_o @ w_v, w_o @ b[2 * d:]), *ps)
        q_abs = F.linear(query, w_qk, b_qk)  # [..., Lq, D]
        probs = torch.softmax(q_abs @ key.transpose(-1, -2) / math.sqrt(d), dim=-1)  # [..., Lq, Lk]
        probs = F.dropout(probs, p, p > 0)
        out = F.linear(probs @ value, w_ov, self.out_proj.bias)
        mass = probs.sum(-1, keepdim=True)  # 1 unless dropout
        return out + mass * b_ov


class FeedForward(nn.Module):
    """linear2(dropout(act(linear1(x)))) -- the FFN of the post-norm layers (names as released)."""

    def __init__(self, dim: int, hidden: int, dropout: float, activation: str):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.act = {"relu": F.relu, "gelu": F.gelu}[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.act(self.linear1(x))))


class SelfAttentionLayer(nn.Module):
    """Post-norm encoder layer (SAB): x = LN1(x + drop(SA(x))); x = LN2(x + drop(FFN(x))).

    The released key-fusion context layer (1 head, ReLU FFN = dim) and the paper preset's SABs.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, eps: float, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout, activation)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.drop1(self.self_attn(x, x, x)[0]))
        return self.norm2(x + self.drop2(self.ffn(x)))


class PreferenceLayer(nn.Module):
    """Eq. (4): x = LN1(x + drop(CAB(x, words)) + drop(SAB(x))); x = LN2(x + drop(FFN(x))).

    Self- and cross-attention side by side on one residual (the released AP/VP layer).
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, dropout)
        self.cm_attn = MultiheadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout, "relu")
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop_cross, self.drop_self, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, words: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        cross, weights = self.cm_attn(x, words, words, need_weights=need_weights)  # weights [B, T, L]
        x = self.norm1(x + self.drop_cross(cross) + self.drop_self(self.self_attn(x, x, x)[0]))
        return self.norm2(x + self.drop2(self.ffn(x))), weights


class FocusDecoderLayer(nn.Module):
    """The bias / cross-attention / FFN part of a focus step (DETR post-norm decoder layer, released names).

    The cross-attention's keys and values are K copies of one frame, so its softmax is uniform and the
    output does not depend on the query: out = out_proj(concat_h c_h * (W_v,h f + b_v,h)) with c_h = 1 in
    eval and c_h = (# copies kept by dropout) / (K (1 - p)) in training -- exactly what attention dropout on
    K uniform probabilities gives. `frame_values` precomputes the per-head projected frames for all steps.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, dropout)
        self.cross_attn = MultiheadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout, "gelu")
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.drop1, self.drop2, self.drop3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def frame_values(self, frames: Tensor, per_head: bool) -> Tensor:
        """frames [N, T, D] -> out_proj-mapped values: [N, T, H, D] per head (no out bias), or [N, T, D] summed."""
        att = self.cross_attn
        d, h = att.dim, att.heads
        v = F.linear(frames, att.in_proj_weight[2 * d:], att.in_proj_bias[2 * d:])  # [N, T, D]
        if not per_head:
            return att.out_proj(v)
        w_o = att.out_proj.weight.unflatten(1, (h, d // h))  # [D_out, H, dh]
        return torch.einsum("nthe,ohe->ntho", v.unflatten(-1, (h, d // h)), w_o)

    def cross_scale(self, shape: tuple[int, ...], copies: int, device, dtype) -> Tensor:
        """Dropout on K uniform attention probabilities summed: Binomial(K, 1-p) / (K (1-p)), shape [..., H]."""
        p = self.cross_attn.dropout
        kept = (torch.rand(*shape, self.cross_attn.heads, copies, device=device) >= p).sum(-1)
        return (kept.to(dtype) / (copies * (1.0 - p)))

    def forward(self, z: Tensor, bias: Tensor | None, cross: Tensor, bias_mode: str) -> Tensor:
        """z [N, R, D] templates; bias [N or 1, R, D]; cross [N, R, D] the (query-independent) cross output."""
        if bias_mode == "query_pos":
            qk = z + bias
            z = self.norm1(z + self.drop1(self.self_attn(qk, qk, z)[0]))
        else:  # "add": SAB(z + bias) + bias
            z = z + bias
            z = self.norm1(z + self.drop1(self.self_attn(z, z, z)[0])) + bias
        z = self.norm2(z + self.drop2(cross))
        return self.norm3(z + self.drop3(self.ffn(z)))


class BertCrossLayer(nn.Module):
    """BERT cross-attention layer of the released decoders (query tokens attend to a memory).

    Attention uses absorbed projections: with Lq << Lm queries (the decoders have Lq = 1), scores are
    (q_h W_k,h) . m / sqrt(dh) (the q . b_k term is constant per query and cancels in the softmax) and the
    values are W_v,h (sum_n a_n m_n) + b_v,h sum_n a_n, which avoids projecting all Lm memory tokens
    (sum_n a_n is 1 except under attention dropout). Same math.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_dense = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.inter_dense = nn.Linear(dim, ffn)
        self.out_dense = nn.Linear(ffn, dim)
        self.out_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = dropout

    def forward(self, h: Tensor, memory: Tensor) -> Tensor:
        b, lq, d = h.shape
        nh, dh = self.heads, d // self.heads
        q = self.query(h).unflatten(-1, (nh, dh))  # [B, Lq, H, dh]
        q_abs = torch.einsum("bqhe,hed->bhqd", q, self.key.weight.unflatten(0, (nh, dh)))  # [B, H, Lq, D]
        scores = q_abs.flatten(1, 2) @ memory.transpose(1, 2) / math.sqrt(dh)  # [B, H*Lq, Lm]
        probs = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        mixed = probs @ memory  # [B, H*Lq, D]  sum_n a_n m_n
        mass = probs.sum(-1, keepdim=True)  # [B, H*Lq, 1]  sum_n a_n (1 unless dropout)
        w_v = self.value.weight.unflatten(0, (nh, dh))  # [H, dh, D]
        ctx = torch.einsum("bhqd,hed->bqhe", mixed.unflatten(1, (nh, lq)), w_v)  # [B, Lq, H, dh]
        ctx = (ctx + mass.unflatten(1, (nh, lq)).transpose(1, 2) * self.value.bias.view(nh, dh)).flatten(-2)
        p = self.dropout if self.training else 0.0
        h = self.attn_norm(h + F.dropout(self.attn_dense(ctx), p, self.training))
        inter = F.gelu(self.inter_dense(h))
        return self.out_norm(h + F.dropout(self.out_dense(inter), p, self.training))


class AnswerDecoder(nn.Module):
    """Released decoder: `layers` BERT cross-attention layers queried by the sentence feature + LM head."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, num_answers: int, dropout: float, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(BertCrossLayer(dim, heads, ffn, dropout, eps) for _ in range(layers))
        self.head_dense = nn.Linear(dim, dim)
        self.head_norm = nn.LayerNorm(dim, eps=eps)
        self.head_decoder = nn.Linear(dim, num_answers, bias=False)
        self.head_bias = nn.Parameter(torch.zeros(num_answers))

    def forward(self, memory: Tensor, query: Tensor) -> Tensor:
        """memory [B, Lm, D], query [B, D] -> logits [B, num_answers]."""
        h = query.unsqueeze(1)  # [B, 1, D]
        for layer in self.layers:
            h = layer(h, memory)
        h = self.head_norm(F.gelu(self.head_dense(h)))
        return (self.head_decoder(h) + self.head_bias).squeeze(1)


def token_mix(z: Tensor, multiplicity: int = 1) -> Tensor:
    """Released parameter-free mixer ("Norm"): tanh(cos-sim(z, z)) @ z over the template rows.

    z [N, R, D]. `multiplicity` > 1 means every stored row stands for that many identical rows
    (R = 1 collapsed templates): the row sum then counts each of them.
    """
    unit = z / z.norm(dim=-1, keepdim=True)
    return multiplicity * (torch.tanh(unit @ unit.transpose(1, 2)) @ z)

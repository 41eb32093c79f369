"""Attention building blocks of AV-Master in their plain form: the paper's equations as the released code reads.

Each block's `forward` is the textbook computation (nn.MultiheadAttention's, BERT's, DETR's post-norm
decoder layer) and can be called alone (shapes in its docstring). The exact speed-ups (fused or absorbed
attention, ...) are subclasses in rewrites.py, put in place by `rewrites.apply(model)`.
Parameter names follow torch.nn.MultiheadAttention (packed in_proj q,k,v; out_proj) and the released
code's layer names, so official checkpoints map onto them one to one (see official.py).
All tensors are batch-first: [batch, length, dim].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention's math (same parameters, dropout on the attention probabilities), batch-first.

    softmax(Q K^T / sqrt(d_h)) V per head, Q = W_q query + b_q, K = W_k key + b_k, V = W_v value + b_v
    (W_q, W_k, W_v packed in in_proj), heads concatenated, then out_proj.
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
        """Q, K, V; one matmul where inputs coincide (q,k,v in self-attention, k,v, or q,k for query_pos)."""
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

    def split_heads(self, x: Tensor) -> Tensor:  # [..., L, D] -> [..., H, L, D/H]
        return x.unflatten(-1, (self.heads, self.dim // self.heads)).transpose(-3, -2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool = False,
                key_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> (output [..., Lq, D], head-averaged probabilities [..., Lq, Lk] if need_weights else None).
        query [..., Lq, D], key and value [..., Lk, D]; key_mask [B, Lk] bool (True = attend;
        ModelConfig.mask_padding)."""
        p = self.dropout if self.training else 0.0
        q, k, v = (self.split_heads(t) for t in self.project(query, key, value))  # [..., H, L, dh]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [..., H, Lq, Lk]
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = (F.dropout(probs, p, self.training) @ v).transpose(-3, -2).flatten(-2)  # heads concatenated
        return self.out_proj(out), (probs.mean(dim=-3) if need_weights else None)


class FeedForward(nn.Module):
    """linear2(dropout(act(linear1(x)))) -- the FFN of the post-norm layers (names as released)."""

    def __init__(self, dim: int, hidden: int, dropout: float, activation: str):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.act = {"relu": F.relu, "gelu": F.gelu}[activation]

    def forward(self, x: Tensor) -> Tensor:
        """x [..., D] -> [..., D]."""
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

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """x [B, L, D] -> [B, L, D]; key_mask [B, L] bool (True = attend) or None."""
        x = self.norm1(x + self.drop1(self.self_attn(x, x, x, key_mask=key_mask)[0]))
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

    def forward(self, x: Tensor, words: Tensor, need_weights: bool = False, word_mask: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """x [B, T, D] segments, words [B, L, D] -> (F^p [B, T, D], the cross-attention over the words
        [B, T, L] if need_weights else None); word_mask [B, L] bool (True = attend) or None."""
        cross, weights = self.cm_attn(x, words, words, need_weights=need_weights, key_mask=word_mask)  # [B, T, L]
        x = self.norm1(x + self.drop_cross(cross) + self.drop_self(self.self_attn(x, x, x)[0]))
        return self.norm2(x + self.drop2(self.ffn(x))), weights


class FocusDecoderLayer(nn.Module):
    """Bias / cross-attention / FFN part of a focus step (DETR post-norm decoder layer, released names), eq. (2).

    query_pos (released): z = LN1(z + SA(z + P, z + P, z)); z = LN2(z + CA(z + P, F, F)); z = LN3(z + FFN(z)),
    with P the learnable bias and F the K copies of the current frame. "add" (paper reading): the bias is
    added to the templates before and after the self-attention.
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

    def attend_self(self, z: Tensor, bias: Tensor, bias_mode: str) -> Tensor:
        """The bias and the self-attention over the template rows. z [N, R, D]; bias [N|1, R, D]."""
        if bias_mode == "query_pos":
            qk = z + bias
            return self.norm1(z + self.drop1(self.self_attn(qk, qk, z)[0]))
        z = z + bias  # "add": SAB(z + bias) + bias
        return self.norm1(z + self.drop1(self.self_attn(z, z, z)[0])) + bias

    def finish(self, z: Tensor, cross: Tensor) -> Tensor:
        """z = LN2(z + cross); z = LN3(z + FFN(z)), cross the cross-attention output [N, R, D]."""
        z = self.norm2(z + self.drop2(cross))
        return self.norm3(z + self.drop3(self.ffn(z)))

    def forward(self, z: Tensor, bias: Tensor, frames: Tensor, bias_mode: str) -> Tensor:
        """z [N, K, D] templates; bias [N|1, K, D]; frames [N, K, D] the K copies of the current frame."""
        z = self.attend_self(z, bias, bias_mode)
        query = z + bias if bias_mode == "query_pos" else z
        return self.finish(z, self.cross_attn(query, frames, frames)[0])


class BertCrossLayer(nn.Module):
    """BERT cross-attention layer of the released decoders (query tokens attend to a memory), eq. (5)-(6).

    h = LN(h + Dense(softmax(Q K^T / sqrt(d_h)) V)), Q from h, K and V from the memory (8 heads);
    h = LN(h + Dense(GELU(Dense(h)))).
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
        """h [B, Lq, D] queries, memory [B, Lm, D] -> [B, Lq, D]."""
        nh, dh = self.heads, h.shape[-1] // self.heads

        def split(x):  # [B, L, D] -> [B, H, L, dh]
            return x.unflatten(-1, (nh, dh)).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(memory)), split(self.value(memory))
        probs = F.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1), self.dropout,
                          self.training)
        return self.add_and_feed_forward(h, (probs @ v).transpose(1, 2).flatten(-2))

    def add_and_feed_forward(self, h: Tensor, ctx: Tensor) -> Tensor:
        """The attention output ctx [B, Lq, D] through dense, residual and LayerNorm, then the FFN."""
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


def token_mix(z: Tensor) -> Tensor:
    """Released parameter-free mixer ("Norm") of the focus templates: tanh(cos-sim(z, z)) @ z over the rows.
    z [N, K, D] -> [N, K, D]."""
    unit = z / z.norm(dim=-1, keepdim=True)
    return torch.tanh(unit @ unit.transpose(1, 2)) @ z

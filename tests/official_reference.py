"""Test-only: a slow, literal eval-mode reference of the released AV-Master forward (docs/released-code.md §1-§6).

Written straight from the notes, per time step and per modality, with nn.MultiheadAttention's math spelled
out, reading the released key names from a state dict. No fused projections, no collapsed templates, no
absorbed attention: everything the fast model does differently must agree with this.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def layer_norm(sd, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def mha(sd, name, query, key, value, heads):
    """nn.MultiheadAttention (eval) on batch-first tensors; in_proj packed q, k, v."""
    w, b = sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"]
    d = query.shape[-1]
    q = F.linear(query, w[:d], b[:d])
    k = F.linear(key, w[d:2 * d], b[d:2 * d])
    v = F.linear(value, w[2 * d:], b[2 * d:])
    bsz, lq, lk, dh = q.shape[0], q.shape[1], k.shape[1], d // heads
    q = q.view(bsz, lq, heads, dh).transpose(1, 2) / math.sqrt(dh)
    k = k.view(bsz, lk, heads, dh).transpose(1, 2)
    v = v.view(bsz, lk, heads, dh).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(bsz, lq, d)
    return linear(sd, f"{name}.out_proj", out)


def focus_encoder(sd, x, bias_table, K=8):
    """§2.2: x [B, T, D] (already fc_a / fc_v projected)."""
    p = "AugInformation"
    x = linear(sd, f"{p}.video_embeddings", x)
    enc = f"{p}.focus_capture.encoder.layers.0"
    dec = f"{p}.focus_capture.decoder.layers.0"
    B, T, D = x.shape
    Z = x[:, 0:1, :].repeat(1, K, 1)
    P = bias_table.unsqueeze(0).repeat(B, 1, 1)
    for t in range(T):
        Ft = x[:, t:t + 1, :].repeat(1, K, 1)
        # ENC: additive attention, no residual / norm
        H = linear(sd, f"{enc}.linear1", Z)
        G = linear(sd, f"{enc}.linear2", Ft)
        S = H.unsqueeze(2) + G.unsqueeze(1) + sd[f"{enc}.b"]  # [B, K, K, 512]
        alpha = torch.softmax(linear(sd, f"{enc}.w", torch.tanh(S)), dim=2)  # softmax over j
        Z = linear(sd, f"{enc}.linear3", (alpha * S).sum(dim=2))
        # DEC: post-norm, bias as query_pos
        q = Z + P
        Z = layer_norm(sd, f"{dec}.norm1", Z + mha(sd, f"{dec}.self_attn", q, q, Z, 8), 1e-5)
        Z = layer_norm(sd, f"{dec}.norm2", Z + mha(sd, f"{dec}.cross_attn", Z + P, Ft, Ft, 8), 1e-5)
        ff = linear(sd, f"{dec}.linear2", F.gelu(linear(sd, f"{dec}.linear1", Z)))
        Z = layer_norm(sd, f"{dec}.norm3", Z + ff, 1e-5)
        Z = layer_norm(sd, f"{p}.focus_capture.decoder.norm", Z, 1e-5)
    # §2.4 mix ("Norm")
    Zn = Z / Z.norm(dim=-1, keepdim=True)
    return torch.tanh(Zn @ Zn.transpose(1, 2)) @ Z


def preference(sd, name, x, w):
    """§3: one post-norm layer, self and cross attention side by side (1 head)."""
    p = f"{name}.layers.0"
    x = layer_norm(sd, f"{p}.norm1", x + mha(sd, f"{p}.cm_attn", x, w, w, 1) + mha(sd, f"{p}.self_attn", x, x, x, 1),
                   1e-5)
    ff = linear(sd, f"{p}.linear2", F.relu(linear(sd, f"{p}.linear1", x)))
    return layer_norm(sd, f"{p}.norm2", x + ff, 1e-5)


def bert_decoder(sd, name, memory, query):
    """§4: 2 BERT cross layers (8 heads, eps 1e-12), query = sentence token, then the LM head."""
    h = query.unsqueeze(1)
    for i in range(2):
        p = f"{name}.layer_ca.{i}"
        q = linear(sd, f"{p}.attention.self.query", h)
        k = linear(sd, f"{p}.attention.self.key", memory)
        v = linear(sd, f"{p}.attention.self.value", memory)
        B, lq, D = q.shape
        lk, dh = k.shape[1], D // 8
        q = q.view(B, lq, 8, dh).transpose(1, 2)
        k = k.view(B, lk, 8, dh).transpose(1, 2)
        v = v.view(B, lk, 8, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, lq, D)
        h = layer_norm(sd, f"{p}.attention.output.LayerNorm", linear(sd, f"{p}.attention.output.dense", ctx) + h, 1e-12)
        inter = F.gelu(linear(sd, f"{p}.hidden_intermediate.dense", h))
        h = layer_norm(sd, f"{p}.output.LayerNorm", linear(sd, f"{p}.output.dense", inter) + h, 1e-12)
    t = layer_norm(sd, f"{name}.head.transform.LayerNorm", F.gelu(linear(sd, f"{name}.head.transform.dense", h)), 1e-12)
    return (F.linear(t, sd[f"{name}.head.decoder.weight"]) + sd[f"{name}.head.bias"]).squeeze(1)


def fusion(sd, Fc, Zv, Za):
    """§2.5: softmax over template slots per Fc token, then max over tokens."""
    outs = []
    for m, Z in (("v", Zv), ("a", Za)):
        Q = Fc.unsqueeze(2) + linear(sd, f"Uo_{m}", Z).unsqueeze(1) + sd[f"bo_{m}"]  # [B, Lc, K, D]
        g = torch.softmax(linear(sd, f"wo_{m}", torch.tanh(Q)), dim=2)
        outs.append((g * Q).sum(dim=2))
    H = linear(sd, "linear_visual_layer", torch.cat([Fc] + outs, dim=-1))
    return H.max(dim=1)[0]


def reference_forward(sd, batch):
    """Eval-mode logits (qa, a, v, sum) and the official contrastive loss when negatives are given."""
    a = linear(sd, "fc_a", batch["audio"])
    v = linear(sd, "fc_v", batch["visual"])
    w = linear(sd, "fc_word", batch["words"])
    s = linear(sd, "fc_q", batch["question"])
    Zv = focus_encoder(sd, v, sd["bisa_v.weight"])
    Za = focus_encoder(sd, a, sd["bias_a.weight"])
    X = torch.cat([a, v, w], dim=1)
    p = "GlobalSelf_Module.layers.0"
    X = layer_norm(sd, f"{p}.norm1", X + mha(sd, f"{p}.self_attn", X, X, X, 1), 1e-5)
    X = layer_norm(sd, f"{p}.norm2", X + linear(sd, f"{p}.linear2", F.relu(linear(sd, f"{p}.linear1", X))), 1e-5)
    f = fusion(sd, X, Zv, Za)
    Pa = preference(sd, "AP_Module", a, w)
    Pv = preference(sd, "VP_Module", v, w)
    out = {
        "logits_qa": bert_decoder(sd, "fc_answer_pred", f.unsqueeze(1), s),
        "logits_a": bert_decoder(sd, "fc_answer_pred2", Pa, s),
        "logits_v": bert_decoder(sd, "fc_answer_pred3", Pv, s),
    }
    out["logits"] = out["logits_qa"] + out["logits_a"] + out["logits_v"]
    if "neg_audio" in batch:
        na = preference(sd, "AP_Module", linear(sd, "fc_a", batch["neg_audio"]), w).mean(1)
        nv = preference(sd, "VP_Module", linear(sd, "fc_v", batch["neg_visual"]), w).mean(1)

        def cos(x, y):
            return (x / x.norm(dim=-1, keepdim=True)) @ (y / y.norm(dim=-1, keepdim=True)).T
        pos = torch.exp(cos(f, Pa.mean(1)) / 0.1 + cos(f, Pv.mean(1)) / 0.1)
        neg = torch.exp(cos(f, na) / 0.1 + cos(f, nv) / 0.1)
        out["c"] = (-torch.log(pos / (neg + pos))).mean()
    return out


def random_official_state_dict(keys, seed=0):
    """A random state dict with the released shapes (`keys`: (name, shape, used) rows).

    Scaled so activations stay in a normal range: weights ~ U(+-1/sqrt(fan_in)), LayerNorm weights near 1,
    biases small, bias tables N(0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, _used in keys:
        if len(shape) == 2 and not name.endswith(("bisa_v.weight", "bias_a.weight")):
            bound = 1.0 / math.sqrt(shape[1])
            sd[name] = (torch.rand(shape, generator=g) * 2 - 1) * bound
        elif "norm" in name.lower() and name.endswith("weight"):
            sd[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(("bisa_v.weight", "bias_a.weight")):
            sd[name] = torch.randn(shape, generator=g)
        else:
            sd[name] = 0.1 * torch.randn(shape, generator=g)
    return sd


if __name__ == "__main__":  # same-machine baseline: time this literal reference (python tests/official_reference.py)
    import argparse
    import os
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from avmaster_core.training.benchmark import random_batch
    from avmaster_core.core.config import ModelConfig
    from avmaster_core.core.official import official_keys

    ap = argparse.ArgumentParser(description="time the loop-based reference of the released forward")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--T", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sd = random_official_state_dict([(k.name, k.shape, k.used) for k in official_keys()])
    batch = random_batch(a.batch_size, a.T, ModelConfig.official(), "cpu", generator=torch.Generator().manual_seed(0))
    print(f"# reference threads={a.threads} batch={a.batch_size} T={a.T} load1={os.getloadavg()[0]:.2f}")
    with torch.no_grad():
        t0 = time.perf_counter()
        reference_forward(sd, {k: v for k, v in batch.items() if not k.startswith("neg_")})
        print(f"reference inference {time.perf_counter() - t0:.3f} s/batch", flush=True)
    params = {k: v.requires_grad_() for k, v in sd.items()}
    t0 = time.perf_counter()
    out = reference_forward(params, batch)
    loss = sum(F.cross_entropy(out[k], batch["label"]) for k in ("logits_qa", "logits_a", "logits_v")) + out["c"]
    loss.backward()
    print(f"reference train step (forward+backward, no dropout, no optimizer) {time.perf_counter() - t0:.3f} s")

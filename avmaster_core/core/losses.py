"""AV-Master losses: eq. (5) answer/preference cross-entropies, the two contrastive forms, eq. (7) total.

    official_contrastive(f, pos, neg, tau)   released code: mean over all B x B pairs of softplus(NEG - POS)
    in_batch_contrastive(f, pos, tau)        paper eq. (6): positives on the diagonal, other samples negative
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import ModelConfig


def answer_loss(logits: Tensor, label: Tensor) -> Tensor:
    """Eq. (5): mean negative log-likelihood of the true answer (nn.CrossEntropyLoss, no smoothing)."""
    return F.cross_entropy(logits.float(), label)


def cosine_matrix(x: Tensor, y: Tensor) -> Tensor:
    """[B, D] x [B, D] -> [B, B] cosine similarities cos(x_i, y_j) (released: x/|x| @ (y/|y|)^T)."""
    return (x / x.norm(dim=-1, keepdim=True)) @ (y / y.norm(dim=-1, keepdim=True)).T


def official_contrastive(fused: Tensor, positives: list[Tensor], negatives: list[Tensor], tau: float) -> Tensor:
    """Released L_c. POS[i,j] = sum_m cos(f_i, pos_m[j]) / tau, NEG likewise with the random negatives;
    L = mean_{i,j} -log(e^POS / (e^POS + e^NEG)) = mean softplus(NEG - POS) (exp of the *summed* cosines).
    fused [B, D]; positives / negatives: one [B, D] per modality (time-averaged preference features).
    """
    pos = sum(cosine_matrix(fused, p) for p in positives) / tau
    neg = sum(cosine_matrix(fused, n) for n in negatives) / tau
    return F.softplus(neg - pos).mean()


def in_batch_contrastive(fused: Tensor, positives: list[Tensor], tau: float) -> Tensor:
    """Paper eq. (6): p(i,k) = sum_m exp(cos(f_i, pos_m[k]) / tau);  L = -mean_i log(p(i,i) / sum_k p(i,k)).

    Sample k != i of the batch supplies the negatives of anchor i (B = 1 gives 0: no negatives).
    """
    log_p = torch.logsumexp(torch.stack([cosine_matrix(fused, p) / tau for p in positives]), dim=0)  # [B, B]
    target = torch.arange(fused.shape[0], device=fused.device)
    return F.cross_entropy(log_p, target)


def contrastive_loss(features: dict, cfg: ModelConfig, training: bool) -> Tensor | None:
    """L_c from the model's out["features"]; None where it does not apply (no TDPP/GPAP or lambda_c = 0)."""
    fused = features.get("fused")
    mods = [m for m in cfg.modalities if f"pref_{m}" in features]
    if cfg.lambda_c == 0 or fused is None or not mods:
        return None
    positives = [features[f"pref_{m}"].float() for m in mods]
    if cfg.contrastive == "in_batch":
        return in_batch_contrastive(fused.float(), positives, cfg.temperature)
    if not all(f"neg_{m}" in features for m in mods):
        if training:
            missing = [k for m in mods for k in [f"neg_{'audio' if m == 'a' else 'visual'}"]]
            raise ValueError(f"the official contrastive loss needs batch keys {missing} (features of one random "
                             "other sample each) in training; pass them or set lambda_c=0 / contrastive='in_batch'")
        return None
    negatives = [features[f"neg_{m}"].float() for m in mods]
    return official_contrastive(fused.float(), positives, negatives, cfg.temperature)


def total_loss(out: dict, label: Tensor, cfg: ModelConfig, training: bool) -> dict[str, Tensor]:
    """Eq. (7): total = lambda_qa L_qa + lambda_a L_a^p + lambda_v L_v^p + lambda_c L_c (absent parts are 0)."""
    zero = out["logits"].new_zeros((), dtype=torch.float32)
    parts = {name: (answer_loss(out[f"logits_{name}"], label) if out.get(f"logits_{name}") is not None else zero)
             for name in ("qa", "a", "v")}
    c = contrastive_loss(out.get("features", {}), cfg, training)
    parts["c"] = zero if c is None else c
    weights = {"qa": cfg.lambda_qa, "a": cfg.lambda_a, "v": cfg.lambda_v, "c": cfg.lambda_c}
    parts["total"] = sum(weights[k] * parts[k] for k in weights if weights[k] != 0) + zero
    return parts

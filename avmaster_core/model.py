"""AV-Master, read bottom-up: focus sampling -> key fusion -> preference path -> decoders -> answer.

    model = build_model(ModelConfig.official())
    out = model(batch)            # "logits", "logits_qa", "logits_a", "logits_v": [B, num_answers]
    losses = model.loss(out, batch)

Batch keys: audio [B,T,128], visual [B,T,768], question [B,768], words [B,L,768] (L = 77 for CLIP),
label [B] (for the loss); training with the official contrastive loss also neg_audio [B,T,128] and
neg_visual [B,T,768]. Any B >= 1 and T >= 1.

Speed (same math as the released code):
- audio and visual run through the shared focus block together, stacked on the batch axis;
- everything that depends on a frame but not on the recurrent state (the frame half of the additive layer,
  the query-independent cross-attention over K copies of the frame) is computed for all T steps at once,
  outside the Python loop over time;
- in eval mode, where the released design keeps the K template rows identical (first-frame init, bias used
  only as a query position, no dropout), the recurrence runs on one row per sample and the affine parts of
  a step are folded into one matrix (`_focus_collapsed`). This is exact, not an approximation;
- attention with few queries or one head uses absorbed projections (blocks.BertCrossLayer,
  MultiheadAttention._single_head_absorbed) and the fusion linear is split per input (key_fusion).
All of these are algebraic rewrites of the released math; tests/test_official.py checks the logits
against a literal loop-based reference of the released forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import AnswerDecoder, FocusDecoderLayer, PreferenceLayer, SelfAttentionLayer, folded, token_mix
from .choices import build_scorers, check_choices, head_logits
from .config import ModelConfig
from . import losses as L

MODALITY_KEYS = {"a": ("audio", "neg_audio"), "v": ("visual", "neg_visual")}


# ============================================================================ focus capture (eq. 1-2)
class AdditiveFirstStage(nn.Module):
    """Released first stage of a focus step (names as released: linear1, linear2, b, w, linear3).

    score[i,j] = w^T tanh(W1 z_i + W2 f_j + b1 + b2 + beta); z_i <- W3 sum_j softmax_j(score) (...) + b3.
    The keys f_j are K copies of one frame, so the softmax is uniform and the layer is exactly
    z <- W3 (W1 z + W2 f + b1 + b2 + beta) + b3. `w` therefore has no effect (its gradient is exactly 0;
    the released code measures ~7e-5 of float noise); it is kept so checkpoints load and counts match.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(dim, hidden)
        self.b = nn.Parameter(torch.ones(hidden))
        self.w = nn.Linear(hidden, 1)
        self.linear3 = nn.Linear(hidden, dim)

    def frame_term(self, frames: Tensor) -> Tensor:
        """frames [N, T, D] -> W3 (W2 f + b1 + b2 + beta) + b3 for all steps: [N, T, D]."""
        return self.linear3(self.linear2(frames) + self.linear1.bias + self.b)

    def state_matrix(self) -> Tensor:
        """W3 W1 [D, D]: the state half of the affine map."""
        return self.linear3.weight @ self.linear1.weight


class FocusBlock(nn.Module):
    """One focus encoder E (eq. 1-2): the recurrent templates read one frame per step.

    Shared by audio and visual when `share_focus_block` (Table X A-S), then both run in one batch.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.cfg = cfg
        self.embed = nn.Linear(d, d) if cfg.focus_embed else nn.Identity()
        if cfg.use_focus:
            if cfg.focus_first_stage == "additive":
                self.first = AdditiveFirstStage(d, cfg.focus_ffn)
            else:
                self.first = SelfAttentionLayer(d, cfg.focus_heads, cfg.focus_ffn, cfg.dropout, cfg.ln_eps, "gelu")
            self.layer = FocusDecoderLayer(d, cfg.focus_heads, cfg.focus_ffn, cfg.dropout, cfg.ln_eps)
            self.final_norm = nn.LayerNorm(d, eps=cfg.ln_eps) if cfg.focus_final_norm else nn.Identity()
            # released: xavier_uniform_ on every rank >= 2 parameter of the recurrent block
            for p in list(self.first.parameters()) + list(self.layer.parameters()):
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    # ---- one generic step, R rows per sample (R = K, or 1 for collapsed identical rows)
    def step(self, z: Tensor, frame: Tensor, frame_term: Tensor | None, bias: Tensor, cross: Tensor) -> Tensor:
        """z [N, R, D]; frame [N, D]; frame_term [N, D] (additive only); bias [N|1, R|K, D]; cross [N, R, D]."""
        cfg = self.cfg
        if cfg.focus_first_stage == "additive":
            z = z @ self._state_matrix.T + frame_term.unsqueeze(1)
        else:
            z = self.first(z + frame.unsqueeze(1))  # eq. (2): SAB(F^k + V_cls^{k-1})
        z = self.layer(z, bias[:, : z.shape[1]], cross, cfg.bias_mode)
        return self.final_norm(z)

    def forward(self, x: Tensor, bias: Tensor, init: Tensor | None, collapse: bool, return_steps: bool = False
                ) -> tuple[Tensor, int, list[Tensor] | None]:
        """x [N, T, D] projected features; bias [N|1, K, D]; init [N|1, K, D] learned templates or None.

        Returns (templates [N, R, D] before mixing, multiplicity of each row, per-step states or None).
        """
        cfg = self.cfg
        if cfg.use_focus and collapse and cfg.focus_first_stage == "additive" and not return_steps:
            return self._focus_collapsed(x), cfg.num_templates, None
        x = self.embed(x)
        if not cfg.use_focus:  # Table VII w/o AVFC: the embedded frames themselves are the "templates"
            return x, 1, None
        n, t_len, d = x.shape
        k = cfg.num_templates
        rows = 1 if collapse else k
        if cfg.focus_first_stage == "additive":
            self._state_matrix = self.first.state_matrix()
            frame_terms = self.first.frame_term(x)  # [N, T, D]
        per_head = self.training and self.layer.cross_attn.dropout > 0
        values = self.layer.frame_values(x, per_head)  # [N, T, H, D] or [N, T, D]
        z = x[:, :1].expand(n, rows, d) if init is None else init.expand(n, rows, d)
        steps = [] if return_steps else None
        # unbind once: indexing [:, t] inside the loop would make autograd scatter T full-size gradients
        frames, values = x.unbind(1), values.unbind(1)
        terms = frame_terms.unbind(1) if cfg.focus_first_stage == "additive" else [None] * t_len
        if per_head:  # attention dropout on K uniform probabilities (see FocusDecoderLayer), all steps at once
            scales = self.layer.cross_scale((t_len, n, rows), k, x.device, x.dtype).unbind(0)  # T x [N, R, H]
        for t in range(t_len):
            if per_head:
                cross = torch.einsum("nrh,nho->nro", scales[t], values[t]) + self.layer.cross_attn.out_proj.bias
            else:
                cross = values[t].unsqueeze(1).expand(n, rows, d)
            z = self.step(z, frames[t], terms[t], bias, cross)
            if return_steps:
                steps.append(z)
        return z, (k if collapse else 1), steps

    def _collapsed_weights(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """B = (I + Wo Wv) W3 W1 and the folded frame -> (d_t, e_t) map of `_focus_collapsed`."""
        layer, first = self.layer, self.first
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
        if isinstance(self.embed, nn.Linear):  # fold the embedding too: frames = E feats + e
            c_de = c_de + w_de @ self.embed.bias
            w_de = w_de @ self.embed.weight
        return b_mat, w_de, c_de

    def _focus_collapsed(self, feats: Tensor) -> Tensor:
        """Released focus recurrence with K identical rows and no dropout, on one row per sample. [N, 1, D].

        feats [N, T, D] are the features before `embed`. Per step: additive stage z' = A z + c_t;
        self-attention over identical rows returns its value, so LN1(z' + Wo Wv z' + (Wo bv + bo)) =
        LN1(B z + d_t) with B = (I + Wo Wv) A; the cross-attention output e_t does not depend on z. d_t and e_t
        are affine in the frame, so both come from one matmul of the (un-embedded) features with folded weights.
        Only B z, the LayerNorms and the FFN stay in the loop over time.
        """
        layer, d = self.layer, feats.shape[-1]
        b_mat, w_de, c_de = folded(self, "collapsed", lambda: self._collapsed_weights(feats),
                                   *[p for p in self.parameters()])
        de = F.linear(feats, w_de, c_de)  # [N, T, 2D]
        d_all, e_all = de[..., :d], de[..., d:]
        n1, n2, n3 = layer.norm1, layer.norm2, layer.norm3
        ffn, final = layer.ffn, self.final_norm
        z = self.embed(feats[:, 0])  # [N, D] the first frame
        for d_t, e_t in zip(d_all.unbind(1), e_all.unbind(1)):
            z = n1(torch.addmm(d_t, z, b_mat.T))
            z = n2(z + e_t)
            z = final(n3(z + ffn(z)))
        return z.unsqueeze(1)


# ============================================================================ key fusion (eq. 3)
class SlotPooling(nn.Module):
    """Released eq. (3) pooling: O[n] = sum_k softmax_k(w^T tanh(Fc[n] + U z_k + beta)) (Fc[n] + U z_k + beta).

    The weights sum to 1, so O[n] = Fc[n] + beta + sum_k g[n,k] U z_k; with one (collapsed) row g = 1.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.beta = nn.Parameter(torch.ones(dim))

    def weights(self, context: Tensor, slots: Tensor) -> tuple[Tensor | None, Tensor]:
        """(g [B, Lc, R] or None for one slot (g = 1), u = U z [B, R, D]); O = context + beta + g @ u."""
        u = self.proj(slots)  # [B, R, D]
        if u.shape[1] == 1:
            return None, u
        feat = context.unsqueeze(2) + (u + self.beta).unsqueeze(1)  # [B, Lc, R, D]
        return torch.softmax(self.score(torch.tanh(feat)).squeeze(-1), dim=-1), u

    def forward(self, context: Tensor, slots: Tensor) -> Tensor:
        """context [B, Lc, D]; slots [B, R, D] -> O [B, Lc, D]."""
        g, u = self.weights(context, slots)
        return context + self.beta + (u if g is None else g @ u)


class SlotSAB(nn.Module):
    """Paper reading of eq. (3): O[n] = sum_k SAB_k(Linear(z_k) + Fc[n]) (SAB over the R template slots)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.proj = nn.Linear(d, d)
        self.sab = SelfAttentionLayer(d, cfg.context_heads, cfg.context_ffn or d, cfg.dropout, cfg.ln_eps)

    def forward(self, context: Tensor, slots: Tensor) -> Tensor:
        b, lc, d = context.shape
        feat = context.unsqueeze(2) + self.proj(slots).unsqueeze(1)  # [B, Lc, R, D]
        return self.sab(feat.flatten(0, 1)).sum(dim=1).view(b, lc, d)


# ============================================================================ the model
class AVMaster(nn.Module):
    """AV-Master with both presets; see ModelConfig for every switch."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, mods = cfg.dim, cfg.modalities
        self.collapse_templates: bool | None = None  # None: automatic (exact cases only); False: never
        self.proj_audio = nn.Linear(cfg.audio_dim, d) if "a" in mods else None
        self.proj_visual = nn.Linear(cfg.visual_dim, d) if "v" in mods else None
        self.proj_words = nn.Linear(cfg.text_dim, d)
        self.proj_question = nn.Linear(cfg.text_dim, d)

        if cfg.use_tdpp:
            # focus blocks: one shared (A-S) or one per modality
            if cfg.share_focus_block:
                self.focus = FocusBlock(cfg)
            else:
                self.focus_blocks = nn.ModuleDict({m: FocusBlock(cfg) for m in mods})
            if cfg.use_focus:
                k = cfg.num_templates
                bias_names = ["shared"] if cfg.share_bias else list(mods)
                # nn.Embedding's default init N(0, 1), as released
                self.focus_bias = nn.ParameterDict({m: nn.Parameter(torch.randn(k, d)) for m in bias_names})
                if cfg.template_init == "learned":
                    self.templates = nn.ParameterDict(
                        {m: nn.Parameter(torch.randn(k, d) * 0.02) for m in mods})
            self.context = SelfAttentionLayer(d, cfg.context_heads, cfg.context_ffn or d, cfg.dropout, cfg.ln_eps)
            pool = SlotPooling if cfg.fusion_pool == "additive" else (lambda _d: SlotSAB(cfg))
            self.pool = nn.ModuleDict({m: pool(d) for m in mods})
            self.fuse = nn.Linear(d * (1 + len(mods)), d)
            self.decoder_qa = self._decoder()
        if cfg.use_gpap:
            self.pref = nn.ModuleDict({m: PreferenceLayer(d, cfg.pref_heads, cfg.pref_ffn or d, cfg.dropout,
                                                          cfg.ln_eps) for m in mods})
            self.decoder_pref = nn.ModuleDict({m: self._decoder() for m in mods})
        self.choice_scorers = build_scorers(cfg)  # multiple choice (AVQA): heads score batch["choices"]

    def _decoder(self) -> AnswerDecoder:
        c = self.cfg
        return AnswerDecoder(c.dim, c.decoder_heads, c.decoder_ffn or c.dim, c.decoder_layers, c.num_answers,
                             c.dropout, c.decoder_ln_eps)

    # ------------------------------------------------------------------ pieces
    def project(self, batch: dict, modality: str, negative: bool = False) -> Tensor:
        key = MODALITY_KEYS[modality][1 if negative else 0]
        proj = self.proj_audio if modality == "a" else self.proj_visual
        return proj(batch[key])

    def _collapse(self) -> bool:
        exact = self.cfg.templates_stay_identical and (not self.training or self.cfg.dropout == 0)
        return exact if self.collapse_templates is None else (exact and self.collapse_templates)

    def focus_capture(self, feats: dict[str, Tensor], return_steps: bool = False):
        """feats[m] [B, T, D] -> templates[m] [B, R, D] (mixed), plus per-step templates if asked."""
        cfg, mods = self.cfg, self.cfg.modalities
        collapse = self._collapse()
        bias = init = None

        def bias_of(m):
            return self.focus_bias["shared" if cfg.share_bias else m].unsqueeze(0)  # [1, K, D]

        def init_of(m):
            return self.templates[m].unsqueeze(0) if cfg.template_init == "learned" else None

        results = {}
        if cfg.share_focus_block:  # one batch [M*B, T, D] through the shared block
            b = next(iter(feats.values())).shape[0]
            x = torch.cat([feats[m] for m in mods], dim=0)
            if cfg.use_focus:
                bias = torch.cat([bias_of(m).expand(b, -1, -1) for m in mods], dim=0)
                if cfg.template_init == "learned":
                    init = torch.cat([init_of(m).expand(b, -1, -1) for m in mods], dim=0)
            z, mult, steps = self.focus(x, bias, init, collapse, return_steps)
            for i, m in enumerate(mods):
                results[m] = (z[i * b:(i + 1) * b], mult,
                              None if steps is None else [s[i * b:(i + 1) * b] for s in steps])
        else:
            for m in mods:
                results[m] = self.focus_blocks[m](
                    feats[m], bias_of(m) if cfg.use_focus else None,
                    init_of(m) if cfg.use_focus else None, collapse, return_steps)
        mixed = {m: self._mix(z, mult) for m, (z, mult, _) in results.items()}
        steps = {m: s for m, (_, _, s) in results.items()} if return_steps else None
        return mixed, steps

    def _mix(self, z: Tensor, mult: int) -> Tensor:
        return token_mix(z, mult) if self.cfg.focus_mix else z

    def key_fusion(self, context: Tensor, focus: dict[str, Tensor]) -> Tensor:
        """eq. (3): context [B, Lc, D] and focus templates -> F_fu [B, D] (max over tokens).

        fuse(concat(Fc, O_v, O_a)) with O_m = Fc + beta_m + g_m @ u_m is computed as
        Fc (W_c + W_v + W_a)^T + sum_m g_m @ (u_m W_m^T) + (b + sum_m W_m beta_m): one D x D matmul over the
        tokens instead of a 3D x D one (same math).
        """
        mods = tuple(reversed(self.cfg.modalities))  # released order: Fc, O_v, O_a
        if self.cfg.fusion_pool != "additive":
            parts = [context] + [self.pool[m](context, focus[m]) for m in mods]
            return self.fuse(torch.cat(parts, dim=-1)).amax(dim=1)
        d = context.shape[-1]
        w = self.fuse.weight.split(d, dim=1)  # W_c, then one [D, D] block per modality
        w_sum, bias = w[0], self.fuse.bias
        h_slots = 0
        for i, m in enumerate(mods):
            g, u = self.pool[m].weights(context, focus[m])
            w_sum = w_sum + w[i + 1]
            bias = bias + w[i + 1] @ self.pool[m].beta
            uw = u @ w[i + 1].T  # [B, R, D]
            h_slots = h_slots + (uw if g is None else g @ uw)
        return (F.linear(context, w_sum, bias) + h_slots).amax(dim=1)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict, return_steps: bool = False, return_attention: bool = False,
                return_focus: bool = False, check_finite: bool | None = None) -> dict:
        """Logits of the three heads and their combination.

        return_steps (Fig. 6): out["step_logits"] [B, T, C], the combined prediction read out after each
        focus step (the answer decoder applied to the templates of that step).
        return_attention (Fig. 8): out["word_attention_a"/"_v"] [B, T, L], the preference path's
        cross-attention over the question words.
        return_focus: out["focus_a"/"_v"] [B, R, D], the mixed focus templates (R = 1 when collapsed).
        check_finite: NaN/inf check of the inputs (default: on for CPU tensors, off on GPU to avoid a sync).
        """
        cfg, mods = self.cfg, self.cfg.modalities
        need_neg = self._needs_negatives(batch)
        validate_batch(batch, cfg, need_label=False, need_negatives=need_neg, check_finite=check_finite)
        check_choices(batch, cfg)
        feats = {m: self.project(batch, m) for m in mods}  # [B, T, D]
        words = self.proj_words(batch["words"])  # [B, L, D]
        sentence = self.proj_question(batch["question"])  # [B, D]
        out: dict = {}
        logits = {}
        fused = None
        if cfg.use_tdpp:
            focus, steps = self.focus_capture(feats, return_steps) if mods else ({}, None)
            context = self.context(torch.cat([feats[m] for m in mods] + [words], dim=1))  # [B, M*T+L, D]
            fused = self.key_fusion(context, focus)  # [B, D]
            logits["qa"] = head_logits(self, "qa", self.decoder_qa, fused.unsqueeze(1), sentence, batch)
            if return_focus:
                out.update({f"focus_{m}": focus[m] for m in mods})
        pref = {}
        if cfg.use_gpap:
            for m in mods:
                pref[m], weights = self.pref[m](feats[m], words, need_weights=return_attention)  # [B, T, D]
                logits[m] = head_logits(self, m, self.decoder_pref[m], pref[m], sentence, batch)
                if return_attention:
                    out[f"word_attention_{m}"] = weights  # [B, T, L]
        out["logits"] = combine_logits(logits, cfg)
        for name in ("qa", "a", "v"):
            out[f"logits_{name}"] = logits[name] if name in logits else None
        out["features"] = {"fused": fused, **{f"pref_{m}": p.mean(dim=1) for m, p in pref.items()}}
        if need_neg:  # official L_c: negatives through the same projections and preference blocks, own words
            for m in mods:
                neg, _ = self.pref[m](self.project(batch, m, negative=True), words)
                out["features"][f"neg_{m}"] = neg.mean(dim=1)
        if return_steps and cfg.use_tdpp:
            out["step_logits"] = self._step_logits(context, steps, sentence, logits)
        return out

    def _needs_negatives(self, batch: dict) -> bool:
        cfg = self.cfg
        return (cfg.contrastive == "official" and cfg.lambda_c != 0 and cfg.use_tdpp and cfg.use_gpap
                and bool(cfg.modalities) and all(MODALITY_KEYS[m][1] in batch for m in cfg.modalities))

    def _step_logits(self, context, steps, sentence, logits) -> Tensor:
        if steps is None or any(s is None for s in steps.values()):
            raise ValueError("return_steps needs the focus recurrence (use_focus=True)")
        mult = self.cfg.num_templates if self._collapse() else 1
        per_step = []
        for t in range(len(next(iter(steps.values())))):
            focus_t = {m: self._mix(s[t], mult) for m, s in steps.items()}
            qa_t = self.decoder_qa(self.key_fusion(context, focus_t).unsqueeze(1), sentence)
            per_step.append(combine_logits({**logits, "qa": qa_t}, self.cfg))
        return torch.stack(per_step, dim=1)  # [B, T, C]

    def loss(self, out: dict, batch: dict) -> dict[str, Tensor]:
        """Eq. (5)-(7): "qa", "a", "v", "c" and the weighted "total" (scalars; absent parts are 0)."""
        validate_batch(batch, self.cfg, need_label=True, need_negatives=False, check_finite=False)
        return L.total_loss(out, batch["label"], self.cfg, training=self.training)


def combine_logits(logits: dict[str, Tensor], cfg: ModelConfig) -> Tensor:
    """Inference combination of the available heads (see ModelConfig.combine, Tables XII/XIII)."""
    parts = {k: v for k, v in logits.items()
             if not (k == "a" and not cfg.inference_use_a) and not (k == "v" and not cfg.inference_use_v)}
    if cfg.answer_heads == "trained":  # leave out heads whose loss weight is 0 (untrained, Table VIII rows 1-4)
        weight = {"qa": cfg.lambda_qa, "a": cfg.lambda_a, "v": cfg.lambda_v}
        parts = {k: v for k, v in parts.items() if weight[k] != 0} or parts
    if cfg.combine == "logits_sum":
        return torch.stack(list(parts.values())).sum(0)
    probs = {k: torch.softmax(v.float(), dim=-1) for k, v in parts.items()}
    qa = probs.pop("qa", None)
    if cfg.combine == "mul" and len(probs) == 2:
        pref = probs["a"] * probs["v"]
    elif cfg.combine == "w_add" and len(probs) == 2:
        w = torch.softmax(torch.stack([probs["a"].amax(-1), probs["v"].amax(-1)], dim=-1), dim=-1)  # [B, 2]
        pref = w[:, :1] * probs["a"] + w[:, 1:] * probs["v"]
    else:  # prob_sum, or mul / w_add with fewer than two preference heads
        pref = sum(probs.values()) if probs else 0.0
    total = pref if qa is None else qa + pref
    return torch.log(total.clamp_min(1e-30)).to(next(iter(logits.values())).dtype)


# ============================================================================ batch checks
def validate_batch(batch: dict, cfg: ModelConfig, need_label: bool, need_negatives: bool,
                   check_finite: bool | None) -> None:
    """ValueError naming the key for a missing key, a wrong shape or dtype, or NaN/inf values."""
    if not isinstance(batch, dict):
        raise ValueError(f"batch must be a dict of tensors, got {type(batch).__name__}")
    spec = {"question": (2, cfg.text_dim), "words": (3, cfg.text_dim)}
    if "a" in cfg.modalities:
        spec["audio"] = (3, cfg.audio_dim)
    if "v" in cfg.modalities:
        spec["visual"] = (3, cfg.visual_dim)
    if need_negatives:
        for m in cfg.modalities:
            spec[MODALITY_KEYS[m][1]] = spec[MODALITY_KEYS[m][0]]
    b = t = None
    for key, (ndim, last) in spec.items():
        if key not in batch:
            raise ValueError(f"batch is missing key {key!r} (expected a tensor with {ndim} axes, last {last}); "
                             f"keys present: {sorted(batch)}")
        x = batch[key]
        if not isinstance(x, Tensor):
            raise ValueError(f"batch[{key!r}] must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != ndim or x.shape[-1] != last:
            raise ValueError(f"batch[{key!r}] has shape {tuple(x.shape)}; expected {ndim} axes with last size "
                             f"{last} (e.g. audio [B,T,{cfg.audio_dim}], visual [B,T,{cfg.visual_dim}], "
                             f"question [B,{cfg.text_dim}], words [B,L,{cfg.text_dim}])")
        if not x.is_floating_point():
            raise ValueError(f"batch[{key!r}] must be a floating-point tensor, got {x.dtype}")
        b = x.shape[0] if b is None else b
        if x.shape[0] != b or x.shape[0] < 1:
            raise ValueError(f"batch[{key!r}] has batch size {x.shape[0]}, other keys have {b}")
        if key in ("audio", "visual", "neg_audio", "neg_visual"):
            t = x.shape[1] if t is None else t
            if x.shape[1] != t or t < 1:
                raise ValueError(f"batch[{key!r}] has {x.shape[1]} segments, other streams have {t}; "
                                 "audio, visual and negatives must share T >= 1")
        if key == "words" and x.shape[1] < 1:
            raise ValueError("batch['words'] has no tokens")
        if (x.device.type == "cpu" if check_finite is None else check_finite) and not torch.isfinite(x).all():
            raise ValueError(f"batch[{key!r}] contains NaN or inf values; fix or drop the sample")
    if need_label:
        if "label" not in batch:
            raise ValueError(f"batch is missing key 'label' (answer indices [B], long); keys present: {sorted(batch)}")
        y = batch["label"]
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != b or y.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"batch['label'] must be an integer tensor [B={b}], got "
                             f"{getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}")
        if y.device.type == "cpu" and ((y < 0) | (y >= cfg.num_answers)).any():
            raise ValueError(f"batch['label'] has values outside [0, {cfg.num_answers})")


def build_model(cfg: ModelConfig | None = None) -> AVMaster:
    """AV-Master for `cfg` (default: the official preset)."""
    return AVMaster(cfg or ModelConfig.official())


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())

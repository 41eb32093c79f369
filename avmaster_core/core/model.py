"""AV-Master, read bottom-up: focus sampling -> key fusion -> preference path -> decoders -> answer.

    model = build_model(ModelConfig.official())   # fast=True: the exact speed-ups of rewrites.py
    out = model(batch)            # "logits", "logits_qa", "logits_a", "logits_v": [B, num_answers]
    losses = model.loss(out, batch)

Batch keys: audio [B,T,128], visual [B,T,768], question [B,768], words [B,L,768] (L = 77 for CLIP),
label [B] (for the loss); training with the official contrastive loss also neg_audio [B,T,128] and
neg_visual [B,T,768]. Any B >= 1 and T >= 1.

The classes here and in blocks.py are the plain form: the paper's equations (numbers in the comments) as
the released code computes them, step by step and row by row. `build_model(cfg, fast=False)` runs exactly
that. With fast=True (default) the same modules run the algebraic rewrites of rewrites.py (time-batched and
collapsed recurrence, absorbed attention, split fusion linear): same parameters and state-dict keys, same
math; tests/test_rewrites.py compares both for every experiment and tests/test_official.py compares the
logits with a literal loop-based reference of the released forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses as L, rewrites
from .blocks import AnswerDecoder, FocusDecoderLayer, PreferenceLayer, SelfAttentionLayer, token_mix
from .choices import build_scorers, check_choices, head_logits
from .config import ModelConfig

MODALITY_KEYS = {"a": ("audio", "neg_audio"), "v": ("visual", "neg_visual")}


# ============================================================================ focus capture (eq. 1-2)
class AdditiveFirstStage(nn.Module):
    """Released first stage of a focus step (names as released: linear1, linear2, b, w, linear3), eq. (2).

    s[i,j] = W1 z_i + b1 + W2 f_j + b2 + beta;  z_i <- W3 sum_j softmax_j(w^T tanh(s[i,j])) s[i,j] + b3.
    The keys f_j are K copies of one frame, so the softmax is uniform and the layer is exactly
    z <- W3 (W1 z + W2 f + b1 + b2 + beta) + b3 (rewrites.focus_recurrence). `w` therefore has no effect (its
    gradient is exactly 0; the released code measures ~7e-5 of float noise); it is kept so checkpoints load.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(dim, hidden)
        self.b = nn.Parameter(torch.ones(hidden))
        self.w = nn.Linear(hidden, 1)
        self.linear3 = nn.Linear(hidden, dim)

    def forward(self, z: Tensor, frames: Tensor) -> Tensor:
        """z [N, K, D] templates (queries i), frames [N, K, D] keys j -> [N, K, D]."""
        s = self.linear1(z).unsqueeze(2) + self.linear2(frames).unsqueeze(1) + self.b  # [N, K_i, K_j, h]
        alpha = torch.softmax(self.w(torch.tanh(s)), dim=2)  # over the keys j
        return self.linear3((alpha * s).sum(dim=2))


class FocusBlock(nn.Module):
    """One focus encoder E (eq. 1-2): the K recurrent templates read one frame per step.

    V^0 = K copies of the first frame (or learned templates); for t = 1..T:
    V^t = Norm(Decoder(FirstStage(V^{t-1}, F^t), P, F^t)), F^t the K copies of frame t, P the bias.
    Shared by audio and visual when `share_focus_block` (Table X A-S), then both run in one batch.
    """

    fast = True  # run rewrites.focus_recurrence (see AVMaster.use_fast)

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

    def step(self, z: Tensor, frames: Tensor, bias: Tensor) -> Tensor:
        """One focus step, eq. (2). z [N, K, D]; frames [N, K, D] copies of the frame; bias [N|1, K, D]."""
        if self.cfg.focus_first_stage == "additive":
            z = self.first(z, frames)
        else:
            z = self.first(z + frames)  # SAB(F^k + V_cls^{k-1})
        return self.final_norm(self.layer(z, bias, frames, self.cfg.bias_mode))

    def forward(self, x: Tensor, bias: Tensor, init: Tensor | None, collapse: bool, return_steps: bool = False
                ) -> tuple[Tensor, int, list[Tensor] | None]:
        """x [N, T, D] projected features; bias [N|1, K, D]; init [N|1, K, D] learned templates or None.

        Returns (templates [N, R, D] before mixing, multiplicity of each row, per-step states or None).
        The plain form always runs the K rows (R = K, multiplicity 1); `collapse` is for the fast path.
        """
        if self.fast:
            return rewrites.focus_recurrence(self, x, bias, init, collapse, return_steps)
        cfg = self.cfg
        x = self.embed(x)
        if not cfg.use_focus:  # Table VII w/o AVFC: the embedded frames themselves are the "templates"
            return x, 1, None
        n, t_len, d = x.shape
        k = cfg.num_templates
        z = x[:, :1].expand(n, k, d) if init is None else init.expand(n, k, d)  # eq. (1): V^0
        steps = []
        for t in range(t_len):
            z = self.step(z, x[:, t:t + 1].expand(n, k, d), bias)
            steps.append(z)
        return z, 1, (steps if return_steps else None)


# ============================================================================ key fusion (eq. 3)
class SlotPooling(nn.Module):
    """Released eq. (3) pooling: O[n] = sum_k g[n,k] Q[n,k], Q[n,k] = Fc[n] + U z_k + beta,
    g[n,k] = softmax_k(w^T tanh(Q[n,k])).  (rewrites.key_fusion_split uses that g sums to 1.)"""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.beta = nn.Parameter(torch.ones(dim))

    def slot_weights(self, context: Tensor, u: Tensor) -> Tensor:
        """g [B, Lc, R] from context [B, Lc, D] and the projected slots u = U z [B, R, D]."""
        q = context.unsqueeze(2) + (u + self.beta).unsqueeze(1)  # [B, Lc, R, D]
        return torch.softmax(self.score(torch.tanh(q)).squeeze(-1), dim=-1)

    def forward(self, context: Tensor, slots: Tensor) -> Tensor:
        """context [B, Lc, D]; slots [B, R, D] -> O [B, Lc, D]."""
        u = self.proj(slots)
        q = context.unsqueeze(2) + (u + self.beta).unsqueeze(1)  # [B, Lc, R, D]
        return (self.slot_weights(context, u).unsqueeze(-1) * q).sum(dim=2)


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
    """AV-Master with both presets; see ModelConfig for every switch. fast: see `use_fast`."""

    fast = True

    def __init__(self, cfg: ModelConfig, fast: bool = True):
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
        self.use_fast(fast)

    def use_fast(self, fast: bool = True) -> "AVMaster":
        """Switch every block between its plain form (False) and the exact rewrites of rewrites.py (True)."""
        for module in self.modules():
            if hasattr(module, "fast"):
                module.fast = bool(fast)
        return self

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
        if not self.fast:
            return False
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
        """eq. (3): F_fu = max_n Linear(concat(Fc, O_v, O_a))[n]; context [B, Lc, D] -> [B, D]."""
        if self.fast and self.cfg.fusion_pool == "additive":
            return rewrites.key_fusion_split(self, context, focus)
        mods = tuple(reversed(self.cfg.modalities))  # released order: Fc, O_v, O_a
        parts = [context] + [self.pool[m](context, focus[m]) for m in mods]
        return self.fuse(torch.cat(parts, dim=-1)).amax(dim=1)

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
        word_mask = words_mask(batch) if cfg.mask_padding else None  # [B, L] bool, paper Sec. III-A(c)
        # [B, L, D]; L shorter where the shared zero padding is trimmed (never when a mask is used)
        words, key_bias = self._words(batch["words"], may_trim=not return_attention and word_mask is None)
        sentence = self.proj_question(batch["question"])  # [B, D]
        out: dict = {}
        logits = {}
        fused = None
        if cfg.use_tdpp:
            focus, steps = self.focus_capture(feats, return_steps) if mods else ({}, None)
            tokens = torch.cat([feats[m] for m in mods] + [words], dim=1)  # [B, M*T+L, D]
            keep = context_mask(feats, mods, word_mask)
            if keep is None:
                context = self._context(tokens, key_bias)
            else:
                context = without_masked_tokens(self.context(tokens, key_mask=keep), keep)  # [B, Lc, D]
            fused = self.key_fusion(context, focus)  # [B, D]
            logits["qa"] = head_logits(self, "qa", self.decoder_qa, fused.unsqueeze(1), sentence, batch)
            if return_focus:
                out.update({f"focus_{m}": focus[m] for m in mods})
        pref, negs = {}, {}
        if cfg.use_gpap:
            for m in mods:
                if need_neg and self.fast:  # positives and negatives through the preference block as one batch
                    both_mask = None if word_mask is None else torch.cat([word_mask, word_mask])
                    both, weights = self._preference(m, torch.cat([feats[m], self.project(batch, m, True)]),
                                                     torch.cat([words, words]), key_bias, return_attention,
                                                     both_mask)
                    (pref[m], negs[m]), weights = both.chunk(2), weights if weights is None else weights.chunk(2)[0]
                else:
                    pref[m], weights = self._preference(m, feats[m], words, key_bias, return_attention,
                                                        word_mask)  # [B, T, D]
                logits[m] = head_logits(self, m, self.decoder_pref[m], pref[m], sentence, batch)
                if return_attention:
                    out[f"word_attention_{m}"] = weights  # [B, T, L]
        out["logits"] = combine_logits(logits, cfg)
        for name in ("qa", "a", "v"):
            out[f"logits_{name}"] = logits[name] if name in logits else None
        out["features"] = {"fused": fused, **{f"pref_{m}": p.mean(dim=1) for m, p in pref.items()}}
        if need_neg:  # official L_c: negatives through the same projections and preference blocks, own words
            for m in mods:
                neg = negs[m] if m in negs else self._preference(m, self.project(batch, m, True), words, key_bias,
                                                                 word_mask=word_mask)[0]
                out["features"][f"neg_{m}"] = neg.mean(dim=1)
        if return_steps and cfg.use_tdpp:
            out["step_logits"] = self._step_logits(context, steps, sentence, logits, batch)
        return out

    # ------------------------------------------------------------------ words padding (rewrites.trim_padding)
    def _words(self, raw: Tensor, may_trim: bool) -> tuple[Tensor, Tensor | None]:
        """Projected words [B, L, D] and None; on the fast path without dropout, on CPU, the trailing zero
        padding shared by the batch runs as one token: (words [B, L', D], log-multiplicities [L'])."""
        key_bias = None
        if (self.fast and may_trim and raw.device.type == "cpu" and raw.shape[1] > 2
                and not (self.training and self.cfg.dropout > 0) and not rewrites.capturing()):
            raw, key_bias = rewrites.trim_padding(raw)
        return self.proj_words(raw), key_bias

    def _context(self, tokens: Tensor, key_bias: Tensor | None) -> Tensor:
        if key_bias is None:
            return self.context(tokens)
        bias = torch.cat([key_bias.new_zeros(tokens.shape[1] - key_bias.shape[0]), key_bias])  # frames: 1 each
        return rewrites.self_attention_layer_weighted(self.context, tokens, bias)

    def _preference(self, m: str, x: Tensor, words: Tensor, key_bias: Tensor | None,
                    need_weights: bool = False, word_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if key_bias is None:
            return self.pref[m](x, words, need_weights=need_weights, word_mask=word_mask)
        return rewrites.preference_layer_weighted(self.pref[m], x, words, key_bias), None

    def _needs_negatives(self, batch: dict) -> bool:
        cfg = self.cfg
        return (cfg.contrastive == "official" and cfg.lambda_c != 0 and cfg.use_tdpp and cfg.use_gpap
                and bool(cfg.modalities) and all(MODALITY_KEYS[m][1] in batch for m in cfg.modalities))

    def _step_logits(self, context, steps, sentence, logits, batch) -> Tensor:
        if steps is None or any(s is None for s in steps.values()):
            raise ValueError("return_steps needs the focus recurrence (use_focus=True)")
        mult = self.cfg.num_templates if self._collapse() else 1
        per_step = []
        for t in range(len(next(iter(steps.values())))):
            focus_t = {m: self._mix(s[t], mult) for m, s in steps.items()}
            qa_t = head_logits(self, "qa", self.decoder_qa, self.key_fusion(context, focus_t).unsqueeze(1), sentence,
                               batch)
            per_step.append(combine_logits({**logits, "qa": qa_t}, self.cfg))
        return torch.stack(per_step, dim=1)  # [B, T, C]

    def loss(self, out: dict, batch: dict) -> dict[str, Tensor]:
        """Eq. (5)-(7): "qa", "a", "v", "c" and the weighted "total" (scalars; absent parts are 0)."""
        validate_batch(batch, self.cfg, need_label=True, need_negatives=False, check_finite=False)
        return L.total_loss(out, batch["label"], self.cfg, training=self.training)


def words_mask(batch: dict) -> Tensor:
    """[B, L] True at the question's word positions (ModelConfig.mask_padding): batch["word_mask"] where given,
    else every non-zero row but the start token (position 0). Zero rows are the padding of the synthetic
    benchmark and of zero-padded stores; a row of words is never all zero."""
    if "word_mask" in batch:
        return batch["word_mask"].bool()
    mask = batch["words"].abs().amax(dim=-1) > 0
    mask[:, 0] = False
    return mask | ~mask.any(dim=1, keepdim=True)  # a question with no word left keeps every position


def context_mask(feats: dict, mods: tuple, word_mask: Tensor | None) -> Tensor | None:
    """Key mask of the key-fusion context [audio; visual; words]: every segment, and `word_mask`'s words."""
    if word_mask is None:
        return None
    segments = [torch.ones(f.shape[:2], dtype=torch.bool, device=f.device) for f in (feats[m] for m in mods)]
    return torch.cat(segments + [word_mask], dim=1)


def without_masked_tokens(context: Tensor, keep: Tensor) -> Tensor:
    """Masked context rows replaced by a copy of the sample's first kept row. Key fusion (eq. 3) works per
    token and then takes the max over tokens, so a copy of a kept row changes no maximum: this removes the
    masked tokens from F_fu exactly while the shapes stay."""
    first = keep.float().argmax(dim=1)  # [B]
    kept_row = context[torch.arange(context.shape[0], device=context.device), first].unsqueeze(1)  # [B, 1, D]
    return torch.where(keep.unsqueeze(-1), context, kept_row)


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
        if (x.device.type == "cpu" if check_finite is None else check_finite) and not all_finite(x):
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


def all_finite(x: Tensor) -> bool:
    """No NaN or inf in x. A sum is non-finite whenever an element is, and one sum is ~10x cheaper than
    torch.isfinite(x).all() on CPU; only a non-finite sum (or a finite overflow) needs the elementwise check."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def build_model(cfg: ModelConfig | None = None, fast: bool = True) -> AVMaster:
    """AV-Master for `cfg` (default: the official preset); fast=False runs the plain form of every block."""
    return AVMaster(cfg or ModelConfig.official(), fast=fast)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())

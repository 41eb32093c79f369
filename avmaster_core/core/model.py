"""AV-Master beside the paper: focus sampling (eq. 1-2) -> key fusion (3) -> preference path (4) -> answer
heads (5) -> contrastive features (6); the losses (5)-(7) are in losses.py.

    model = build_model(ModelConfig.official())
    out = model(batch)            # "logits", "logits_qa", "logits_a", "logits_v": [B, num_answers]
    losses = model.loss(out, batch)

Batch keys: audio [B,T,128], visual [B,T,768], question [B,768], words [B,L,768] (L = 77 for CLIP),
label [B] (for the loss); training with the official contrastive loss also neg_audio [B,T,128] and
neg_visual [B,T,768]. Any B >= 1 and T >= 1.

The classes here and in blocks.py are the plain form: the paper's equations (numbers in the comments) as
the released code computes them, step by step and row by row; `AVMaster.forward` runs them in the paper's
order. Read-outs for the figures are methods of their own: `focus_steps` (the templates after each step),
`step_logits` (Fig. 6), `word_attention` (Fig. 8). The exact speed-ups live in rewrites.py and are put in
place in one call, `rewrites.apply(model)` (what `build_model` does unless asked not to): same parameters and
state-dict keys, same math; tests/test_rewrites.py compares both forms for every experiment and
tests/test_official.py compares the logits with a literal loop-based reference of the released forward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import losses as L, rewrites
from .blocks import AnswerDecoder, FocusDecoderLayer, PreferenceLayer, SelfAttentionLayer, token_mix
from .choices import build_scorers, check_choices, head_logits
from .config import ModelConfig

MODALITY_KEYS = {"a": ("audio", "neg_audio"), "v": ("visual", "neg_visual")}


# ============================================================================ focus sampling (eq. 1-2)
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

    def steps(self, x: Tensor, bias: Tensor, init: Tensor | None) -> list[Tensor]:
        """x [N, T, D] projected features; bias [N|1, K, D]; init [N|1, K, D] learned templates or None.
        -> the templates after each step, T x [N, K, D] (eq. 1: V^1 .. V^T)."""
        x = self.embed(x)
        n, t_len, d = x.shape
        k = self.cfg.num_templates
        z = x[:, :1].expand(n, k, d) if init is None else init.expand(n, k, d)  # eq. (1): V^0
        states = []
        for t in range(t_len):
            z = self.step(z, x[:, t:t + 1].expand(n, k, d), bias)
            states.append(z)
        return states

    def forward(self, x: Tensor, bias: Tensor | None, init: Tensor | None) -> Tensor:
        """The templates V^T [N, K, D] after the last step (see `steps`). Without the focus recurrence
        (Table VII w/o AVFC) the embedded frames [N, T, D] themselves are the "templates"."""
        if not self.cfg.use_focus:
            return self.embed(x)
        return self.steps(x, bias, init)[-1]


# ============================================================================ key fusion (eq. 3)
class SlotPooling(nn.Module):
    """Released eq. (3) pooling: O[n] = sum_k g[n,k] Q[n,k], Q[n,k] = Fc[n] + U z_k + beta,
    g[n,k] = softmax_k(w^T tanh(Q[n,k])).  (rewrites.key_fusion_split uses that g sums to 1.)"""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.beta = nn.Parameter(torch.ones(dim))

    def weights(self, q: Tensor) -> Tensor:
        """g [B, Lc, R] = softmax over the slots of w^T tanh(Q), Q [B, Lc, R, D]."""
        return torch.softmax(self.score(torch.tanh(q)).squeeze(-1), dim=-1)

    def forward(self, context: Tensor, slots: Tensor) -> Tensor:
        """context [B, Lc, D]; slots [B, R, D] -> O [B, Lc, D]."""
        q = context.unsqueeze(2) + (self.proj(slots) + self.beta).unsqueeze(1)  # [B, Lc, R, D]
        return (self.weights(q).unsqueeze(-1) * q).sum(dim=2)


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
@dataclass
class Inputs:
    """The batch projected to width D (Sec. III-A): feats[m] [B, T, D] per modality, words [B, L, D] (F_t^w),
    sentence [B, D] (q, the decoders' query), word_mask [B, L] bool or None (ModelConfig.mask_padding)."""
    feats: dict[str, Tensor]
    words: Tensor
    sentence: Tensor
    word_mask: Tensor | None


class AVMaster(nn.Module):
    """AV-Master with both presets; see ModelConfig for every switch."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, mods = cfg.dim, cfg.modalities
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

    # ------------------------------------------------------------------ forward: eq. (1) -> (6)
    def forward(self, batch: dict, check_finite: bool | None = None) -> dict:
        """Logits of the three heads and their combination, the features of the contrastive loss and the
        focus templates.

        out["logits"] (combined), out["logits_qa"/"_a"/"_v"] [B, C] (None for a head the config has not);
        out["features"]: "fused" F_fu [B, D], "pref_a"/"pref_v" and, with negatives, "neg_a"/"neg_v" [B, D];
        out["focus_a"/"_v"] [B, K, D]: the mixed focus templates.
        check_finite: NaN/inf check of the inputs (default: on for CPU tensors, off on GPU to avoid a sync).
        """
        cfg, mods = self.cfg, self.cfg.modalities
        need_neg = self._needs_negatives(batch)
        validate_batch(batch, cfg, need_label=False, need_negatives=need_neg, check_finite=check_finite)
        check_choices(batch, cfg)
        x = self.embed_inputs(batch)  # Sec. III-A
        out: dict = {}
        logits: dict[str, Tensor] = {}
        fused = None
        if cfg.use_tdpp:  # temporal dynamic perception path
            focus = self.focus_capture(x.feats)  # eq. (1)-(2): F~_a, F~_v
            context = self.fusion_context(x)  # eq. (3): F_c
            fused = self.key_fusion(context, focus)  # eq. (3): F_fu [B, D]
            logits["qa"] = head_logits(self, "qa", self.decoder_qa, fused.unsqueeze(1), x.sentence, batch)  # eq. (5)
            out.update({f"focus_{m}": focus[m] for m in mods})
        pref, negs = {}, {}
        if cfg.use_gpap:  # global preference activation path
            for m in mods:
                negative = self.project(batch, m, negative=True) if need_neg else None
                pref[m], negs[m] = self.preference(m, x, negative)  # eq. (4): F_m^p [B, T, D]
                logits[m] = head_logits(self, m, self.decoder_pref[m], pref[m], x.sentence, batch)  # eq. (5)
        out["logits"] = combine_logits(logits, cfg)
        for name in ("qa", "a", "v"):
            out[f"logits_{name}"] = logits[name] if name in logits else None
        # eq. (6): F_fu against the time-averaged preference features (and the negatives' of the official L_c)
        out["features"] = {"fused": fused, **{f"pref_{m}": p.mean(dim=1) for m, p in pref.items()}}
        if need_neg:
            out["features"].update({f"neg_{m}": n.mean(dim=1) for m, n in negs.items()})
        return out

    def loss(self, out: dict, batch: dict) -> dict[str, Tensor]:
        """Eq. (5)-(7): "qa", "a", "v", "c" and the weighted "total" (scalars; absent parts are 0)."""
        validate_batch(batch, self.cfg, need_label=True, need_negatives=False, check_finite=False)
        return L.total_loss(out, batch["label"], self.cfg, training=self.training)

    # ------------------------------------------------------------------ the steps of forward
    def project(self, batch: dict, modality: str, negative: bool = False) -> Tensor:
        """Audio or visual features (or their negatives) [B, T, *] -> [B, T, D]."""
        key = MODALITY_KEYS[modality][1 if negative else 0]
        proj = self.proj_audio if modality == "a" else self.proj_visual
        return proj(batch[key])

    def embed_inputs(self, batch: dict) -> Inputs:
        """The input projections (Sec. III-A) and the words' key mask (Sec. III-A(c), ModelConfig.mask_padding)."""
        feats = {m: self.project(batch, m) for m in self.cfg.modalities}
        word_mask = words_mask(batch) if self.cfg.mask_padding else None
        return Inputs(feats, self.proj_words(batch["words"]), self.proj_question(batch["question"]), word_mask)

    def focus_capture(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eq. (1)-(2) and the released "Norm": feats[m] [B, T, D] -> F~_m [B, K, D] (w/o AVFC: [B, T, D])."""
        return {m: self.mix(z) for m, z in self.run_focus(feats, lambda block, *args: block(*args)).items()}

    def mix(self, z: Tensor) -> Tensor:
        """The released parameter-free mixing of the K templates (ModelConfig.focus_mix)."""
        return token_mix(z) if self.cfg.focus_mix else z

    def run_focus(self, feats: dict[str, Tensor], run) -> dict:
        """run(block, x, bias, init) of each modality's focus block (x [N, T, D], bias and init [N|1, K, D] or
        None); a shared block (Table X A-S) runs the modalities as one batch [M*B, T, D]. Returns {m: result},
        a result being a tensor or a list of tensors with the batch first."""
        cfg, mods = self.cfg, self.cfg.modalities
        if not mods:
            return {}
        bias = {m: self.focus_bias["shared" if cfg.share_bias else m].unsqueeze(0) if cfg.use_focus else None
                for m in mods}  # [1, K, D]
        init = {m: self.templates[m].unsqueeze(0) if cfg.use_focus and cfg.template_init == "learned" else None
                for m in mods}
        if not cfg.share_focus_block:
            return {m: run(self.focus_blocks[m], feats[m], bias[m], init[m]) for m in mods}
        b = feats[mods[0]].shape[0]

        def batched(parts):  # [1, K, D] per modality -> [M*B, K, D]
            return None if parts[0] is None else torch.cat([p.expand(b, -1, -1) for p in parts], dim=0)

        result = run(self.focus, torch.cat([feats[m] for m in mods], dim=0), batched([bias[m] for m in mods]),
                     batched([init[m] for m in mods]))
        part = (lambda r, i: r[i * b:(i + 1) * b])
        return {m: part(result, i) if isinstance(result, Tensor) else [part(r, i) for r in result]
                for i, m in enumerate(mods)}

    def fusion_context(self, x: Inputs) -> Tensor:
        """Eq. (3), first line: F_c = SAB(concat(F_a, F_v, F_t^w)) over the tokens, [B, M*T + L, D]."""
        mods = self.cfg.modalities
        tokens = torch.cat([x.feats[m] for m in mods] + [x.words], dim=1)
        keep = context_mask(x.feats, mods, x.word_mask)
        if keep is None:
            return self.context(tokens)
        return without_masked_tokens(self.context(tokens, key_mask=keep), keep)

    def key_fusion(self, context: Tensor, focus: dict[str, Tensor]) -> Tensor:
        """Eq. (3): F_fu = max_n Linear(concat(Fc, O_v, O_a))[n]; context [B, Lc, D] -> [B, D]."""
        mods = tuple(reversed(self.cfg.modalities))  # released order: Fc, O_v, O_a
        parts = [context] + [self.pool[m](context, focus[m]) for m in mods]
        return self.fuse(torch.cat(parts, dim=-1)).amax(dim=1)

    def preference(self, m: str, x: Inputs, negative: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Eq. (4): F_m^p [B, T, D] of modality m, and the same of the negative clip's projected features
        [B, T, D] (the official L_c, eq. 6) when given, with this question's words."""
        layer = self.pref[m]
        pref = layer(x.feats[m], x.words, word_mask=x.word_mask)[0]
        return pref, None if negative is None else layer(negative, x.words, word_mask=x.word_mask)[0]

    def _needs_negatives(self, batch: dict) -> bool:
        cfg = self.cfg
        return (cfg.contrastive == "official" and cfg.lambda_c != 0 and cfg.use_tdpp and cfg.use_gpap
                and bool(cfg.modalities) and all(MODALITY_KEYS[m][1] in batch for m in cfg.modalities))

    # ------------------------------------------------------------------ read-outs for the figures
    def focus_steps(self, feats: dict[str, Tensor]) -> dict[str, list[Tensor]]:
        """The templates after each focus step, unmixed: {m: T x [B, R, D]} (R = K; a model with the rewrites
        may run identical rows as one, R = 1, see rewrites.AVMasterRewrites)."""
        if not (self.cfg.use_tdpp and self.cfg.use_focus):
            raise ValueError("the focus steps need the focus recurrence (use_tdpp and use_focus)")
        return self.run_focus(feats, lambda block, *args: block.steps(*args))

    def step_logits(self, batch: dict) -> Tensor:
        """Fig. 6: [B, T, C], the combined prediction read out after each focus step (the key-fusion head
        applied to the templates of that step, the preference heads as in `forward`); step T is the model's."""
        final = self(batch)
        logits = {h: final[f"logits_{h}"] for h in ("a", "v") if final[f"logits_{h}"] is not None}
        x = self.embed_inputs(batch)
        context = self.fusion_context(x)
        steps = self.focus_steps(x.feats)
        per_step = []
        for t in range(len(next(iter(steps.values())))):
            fused = self.key_fusion(context, {m: self.mix(s[t]) for m, s in steps.items()})
            qa = head_logits(self, "qa", self.decoder_qa, fused.unsqueeze(1), x.sentence, batch)
            per_step.append(combine_logits({"qa": qa, **logits}, self.cfg))
        return torch.stack(per_step, dim=1)

    def word_attention(self, batch: dict) -> dict[str, Tensor]:
        """Fig. 8: {m: [B, T, L]}, the preference path's cross-attention (eq. 4) from each segment to the
        question's words, averaged over the heads."""
        if not self.cfg.use_gpap:
            raise ValueError("word attention is the preference path's; this model has none (use_gpap=False)")
        x = self.embed_inputs(batch)
        return {m: self.pref[m](x.feats[m], x.words, need_weights=True, word_mask=x.word_mask)[1]
                for m in self.cfg.modalities}


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
    """AV-Master for `cfg` (default: the official preset) with the exact speed-ups of rewrites.py put in
    place; fast=False keeps the plain form of every block."""
    model = AVMaster(cfg or ModelConfig.official())
    return rewrites.apply(model) if fast else model


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())

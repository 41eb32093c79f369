"""ModelConfig: one AV-Master model, two presets, and every ablation of the paper as a named config.

    ModelConfig.official()   behaves like the authors' released code (loads its checkpoints)
    ModelConfig.paper()      follows Section III of the paper as written
    experiment("table7/wo_tdpp")   a named ablation (Tables VII-XIII, Figs 4/5/7), see EXPERIMENTS
    experiment("default", "official", size="cpu")   the same, small enough to train on a CPU (see SIZES)

The two presets differ only in the fields set in `paper()`; each field says why it exists.
The number of segments T is not a model field: the model accepts any T >= 1 (Fig. 4 varies T in the data).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_CHOICES = {
    "template_init": ("first_frame", "learned"),
    "focus_first_stage": ("additive", "sab"),
    "bias_mode": ("query_pos", "add"),
    "fusion_pool": ("additive", "sab_sum"),
    "contrastive": ("official", "in_batch"),
    "combine": ("logits_sum", "prob_sum", "mul", "w_add"),
    "inputs": ("av", "a", "v", "q"),
}


@dataclass(frozen=True)
class ModelConfig:
    """All switches of AV-Master. Defaults = the released code (`official`).

    Sizes
    - dim: model width. Released code 768; paper Sec. IV-A says features are projected to 512.
    - audio_dim / visual_dim / text_dim: input feature sizes (VGGish 128, CLIP-L/14@336 768, CLIP text 768).
    - num_answers: answer classes (MUSIC-AVQA: 42).
    - num_templates: K, the template length of Table IX (both presets: 8).
    - dropout: every dropout of the released code (attention probabilities and residual branches): 0.1.
    - ln_eps: LayerNorm eps of the torch-style blocks; decoder_ln_eps: the BERT decoders' TF-style eps (1e-12).

    Temporal dynamic perception path (TDPP)
    - use_tdpp: Table VII "w/o TDPP" = False drops focus capture, key fusion and the answer decoder.
    - use_focus: Table VII "w/o AVFC" = False skips the recurrent focus step; the fusion then attends over
      all T embedded frames (what the released code does with its focus module removed).
    - focus_embed: the released code stacks a second 768->768 linear before focus capture; the paper has none.
    - template_init: "first_frame" (released: K copies of the first embedded frame) or "learned"
      (paper: K learnable embeddings per modality, randomly initialised, std 0.02 as ViT's CLS token --
      the paper gives no scale).
    - focus_first_stage: the first block of eq. (2). "additive": the released tanh additive-attention layer
      (it attends over K copies of one frame, so it is exactly affine; we compute it that way).
      "sab": the paper's SAB, a post-norm self-attention layer with FFN over the K rows of frame + template.
    - bias_mode: how the learned bias enters eq. (2). "query_pos": added to queries/keys of the attention
      only (released, DETR style). "add": added to the stream before the second SAB and after it, as eq. (2)
      writes SAB(SAB(x) + bias) + bias.
    - focus_mix: the released parameter-free token mixer tanh(cos-sim) @ Z after the last step (the paper has
      none and uses the last templates directly).
    - focus_final_norm: the released decoder's extra LayerNorm after every step (kept in both presets:
      the paper does not say; it keeps the recurrence bounded).
    - focus_heads / focus_ffn: focus attention heads (8) and FFN width (512), released sizes; the paper
      gives none, so the paper preset keeps them.
    - share_focus_block: Table X "A-S": audio and visual use the same focus block (default on).
    - share_bias: Table X "B-S": audio and visual use the same bias table (default off).
    - fusion_pool: eq. (3) pooling of each focus feature against the context tokens Fc. "additive": released
      softmax(w^T tanh(Fc + U z + beta)) weighted sum over the K template slots, per Fc token. "sab_sum":
      paper reading: SAB over the K slots of (Linear(z) + Fc[n]) then a sum over the slots. Both keep one
      output per Fc token and take the max over tokens (the paper's "max along the feature dimension" must
      be over tokens for F_fu to be 1 x D).
    - context_heads / context_ffn: the key-fusion self-attention layer over [audio; visual; words] (1 head,
      FFN = dim in the released code).

    Global preference activation path (GPAP)
    - use_gpap: Table VII "w/o GPAP" = False drops the audio/visual preference blocks and decoders.
    - pref_heads / pref_ffn: preference blocks, 1 head and FFN = dim (released; the paper gives none).

    Decoders: decoder_layers (2), decoder_heads (8), decoder_ffn (= dim); the released BERT-style stacks.

    Losses (eq. 5-7)
    - lambda_qa / lambda_a / lambda_v / lambda_c: loss weights (Table VIII = 0/1, Fig. 7 = values). A zero
      weight also skips computing that loss's extra work (negatives for L_c).
    - contrastive: "official" (released: B x B softplus(NEG - POS) with one random negative per sample,
      exp of the summed cosines) or "in_batch" (eq. 6: sum of exps, positive on the diagonal, other samples of
      the batch as negatives; needs no neg_* inputs).
    - temperature: tau of the contrastive loss (0.1).

    Inference
    - combine: how the three heads give `logits`. "logits_sum" (released: sum of raw logits), "prob_sum"
      (paper / Table XIII ADD: sum of softmax distributions), "mul" (Table XIII MUL, our reading:
      p_qa + p_a * p_v), "w_add" (Table XIII W-ADD, our reading: p_qa + w_a p_a + w_v p_v with
      (w_a, w_v) = softmax of each head's max probability). Prob-based scores are returned as log(score).
    - inference_use_a / inference_use_v: Table XII: drop the audio / visual preference distribution from the
      combination (training is unchanged).
    - inputs: Fig. 5: "av" (both), "a" (audio + question; the visual stream is not built), "v"; "q" builds
      neither stream (the question-only baseline; needs use_tdpp and use_focus=False, use_gpap=False).
    """

    dim: int = 768
    audio_dim: int = 128
    visual_dim: int = 768
    text_dim: int = 768
    num_answers: int = 42
    num_templates: int = 8
    dropout: float = 0.1
    ln_eps: float = 1e-5
    decoder_ln_eps: float = 1e-12
    # TDPP
    use_tdpp: bool = True
    use_focus: bool = True
    focus_embed: bool = True
    template_init: str = "first_frame"
    focus_first_stage: str = "additive"
    bias_mode: str = "query_pos"
    focus_mix: bool = True
    focus_final_norm: bool = True
    focus_heads: int = 8
    focus_ffn: int = 512
    share_focus_block: bool = True
    share_bias: bool = False
    fusion_pool: str = "additive"
    context_heads: int = 1
    context_ffn: int | None = None
    # GPAP
    use_gpap: bool = True
    pref_heads: int = 1
    pref_ffn: int | None = None
    # decoders
    decoder_layers: int = 2
    decoder_heads: int = 8
    decoder_ffn: int | None = None
    # losses
    lambda_qa: float = 1.0
    lambda_a: float = 1.0
    lambda_v: float = 1.0
    lambda_c: float = 1.0
    contrastive: str = "official"
    temperature: float = 0.1
    # inference
    combine: str = "logits_sum"
    inference_use_a: bool = True
    inference_use_v: bool = True
    inputs: str = "av"

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("dim", "audio_dim", "visual_dim", "text_dim", "num_answers", "num_templates",
                     "focus_heads", "focus_ffn", "context_heads", "pref_heads", "decoder_layers", "decoder_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("focus_heads", "context_heads", "pref_heads", "decoder_heads"):
            if self.dim % getattr(self, name):
                raise ValueError(f"ModelConfig.dim={self.dim} is not divisible by {name}={getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if not (self.use_tdpp or self.use_gpap):
            raise ValueError("ModelConfig: use_tdpp and use_gpap cannot both be False (nothing would predict)")
        if self.inputs == "q" and (not self.use_tdpp or self.use_focus or self.use_gpap):
            raise ValueError("ModelConfig.inputs='q' (question only) needs use_tdpp=True, use_focus=False and "
                             "use_gpap=False: without audio and visual only the key fusion over words remains")
        if self.temperature <= 0:
            raise ValueError(f"ModelConfig.temperature must be > 0, got {self.temperature}")

    # ---------------------------------------------------------------- presets
    @classmethod
    def official(cls, **changes: Any) -> "ModelConfig":
        """The released code (AoKoo233/AV-Master): the preset that produced the paper's numbers."""
        return dataclasses.replace(cls(), **changes)

    @classmethod
    def paper(cls, **changes: Any) -> "ModelConfig":
        """Section III as written. Only fields the paper states differently from the code change."""
        return dataclasses.replace(
            cls(),
            dim=512,                      # Sec. IV-A: "projected into a 512-dimensional space"
            focus_embed=False,            # the paper has one projection per input
            template_init="learned",      # "learnable embeddings ... randomly initialized"
            focus_first_stage="sab",      # eq. (2): SAB(F + V_cls)
            bias_mode="add",              # eq. (2): SAB(. + bias) + bias
            focus_mix=False,              # "we take the templates from the n-th time step as the output"
            fusion_pool="sab_sum",        # eq. (3): Pooling(SAB(Linear(F~) + Fc))
            contrastive="in_batch",       # eq. (6)
            combine="prob_sum",           # "we sum all the predicted distributions"
            **changes,
        )

    # ---------------------------------------------------------------- helpers
    @property
    def modalities(self) -> tuple[str, ...]:
        """The input streams the model builds: ("a", "v"), ("a",) or ("v",)."""
        return {"av": ("a", "v"), "a": ("a",), "v": ("v",), "q": ()}[self.inputs]

    @property
    def templates_stay_identical(self) -> bool:
        """True where the K template rows provably stay identical without dropout (released design)."""
        return self.use_focus and self.template_init == "first_frame" and self.bias_mode == "query_pos"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)


# -------------------------------------------------------------------- named experiments
# name -> changes on top of the chosen preset. Table VII "w/o ALL" is our reading: all proposed parts off
# that can be off together (focus capture, preference path, contrastive loss); the key fusion + decoder stay.
_EXPERIMENT_CHANGES: dict[str, dict[str, Any]] = {
    "default": {},
    # Table VII: components
    "table7/wo_all": dict(use_focus=False, use_gpap=False, lambda_c=0.0),
    "table7/wo_avfc": dict(use_focus=False),
    "table7/wo_dpcl": dict(lambda_c=0.0),
    "table7/wo_gpap": dict(use_gpap=False, lambda_a=0.0, lambda_v=0.0, lambda_c=0.0),
    "table7/wo_tdpp": dict(use_tdpp=False, lambda_qa=0.0, lambda_c=0.0),
    # Table VIII: loss subsets (L_qa always on)
    "table8/qa": dict(lambda_c=0.0, lambda_a=0.0, lambda_v=0.0),
    "table8/qa+c": dict(lambda_a=0.0, lambda_v=0.0),
    "table8/qa+c+a": dict(lambda_v=0.0),
    "table8/qa+c+v": dict(lambda_a=0.0),
    "table8/qa+a+v": dict(lambda_c=0.0),
    "table8/all": {},
    # Table IX: template length
    **{f"table9/len{k}": dict(num_templates=k) for k in (2, 4, 8, 12, 16)},
    # Table X: attention-block sharing (A-S) and bias sharing (B-S)
    "table10/none": dict(share_focus_block=False, share_bias=False),
    "table10/as": dict(share_focus_block=True, share_bias=False),
    "table10/bs": dict(share_focus_block=False, share_bias=True),
    "table10/as+bs": dict(share_focus_block=True, share_bias=True),
    # Table XII: preference distributions dropped at inference
    "table12/wo_ape": dict(inference_use_a=False),
    "table12/wo_vpe": dict(inference_use_v=False),
    "table12/wo_avpe": dict(inference_use_a=False, inference_use_v=False),
    "table12/full": {},
    # Table XIII: combination (ADD = the preset's own sum; MUL and W-ADD are our reading)
    "table13/add": {},
    "table13/mul": dict(combine="mul"),
    "table13/w_add": dict(combine="w_add"),
    # Fig. 5: input modalities
    "fig5/a+q": dict(inputs="a"),
    "fig5/v+q": dict(inputs="v"),
    "fig5/a+v+q": {},
    # Question-only baseline (not in the paper): no audio or visual stream; the key-fusion self-attention
    # reads the words alone and the answer decoder predicts. It bounds what the question gives away.
    "baseline/question_only": dict(inputs="q", use_focus=False, use_gpap=False,
                                   lambda_a=0.0, lambda_v=0.0, lambda_c=0.0),
    # Fig. 7: one loss weight varied, others 1.0
    **{f"fig7/{name}={value}": {f"lambda_{name}": value}
       for name in ("qa", "a", "v", "c") for value in (0.4, 0.7, 1.0, 1.3, 1.6)},
    # Fig. 4: segment length (the model is unchanged; T is set by the data, see EXPERIMENT_SEGMENTS)
    **{f"fig4/T{t}": {} for t in (12, 24, 36, 48, 60)},
}

# Fig. 4 experiments fix the number of segments at the data level. The paper names 48 and 60 in the text;
# the other points (12, 24, 36) are our assumption about the figure's x axis.
EXPERIMENT_SEGMENTS: dict[str, int] = {f"fig4/T{t}": t for t in (12, 24, 36, 48, 60)}
EXPERIMENTS: tuple[str, ...] = tuple(_EXPERIMENT_CHANGES)


# -------------------------------------------------------------------- named model sizes
# name -> changes applied to the preset before an experiment's own changes (so an ablation stays the same
# ablation at every size). "full" is the preset's own size. "cpu" makes every experiment of the grid in
# results/synthetic.md train in ~1-3 minutes on one CPU thread on the bundled synthetic benchmark; the
# numbers it gives are about this benchmark and this size, not the paper's.
SIZES: dict[str, dict[str, Any]] = {
    "full": {},
    "cpu": dict(
        dim=64,          # 768 (official) / 512 (paper) cost ~100x more per step; 64 still learns the benchmark.
                         # 64 is divisible by every head count the presets use (focus/decoder 8, context/pref 1)
        focus_ffn=128,   # the released FFN is 2/3 of dim (512 of 768); 128 keeps it wider than dim at dim=64
        dropout=0.0,     # with ~4k training questions and ~15 epochs, dropout 0.1 only slows the small model down
    ),
}


def experiment(name: str, preset: str = "official", size: str = "full") -> ModelConfig:
    """The ModelConfig of a named experiment (see EXPERIMENTS), built on the `official` or `paper` preset,
    at a named size (see SIZES: "full" = the preset's own, "cpu" = small enough for CPU training)."""
    if name not in _EXPERIMENT_CHANGES:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    if preset not in ("official", "paper"):
        raise ValueError(f"preset must be 'official' or 'paper', got {preset!r}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    base = ModelConfig.official() if preset == "official" else ModelConfig.paper()
    base = dataclasses.replace(base, **SIZES[size])
    return dataclasses.replace(base, **_EXPERIMENT_CHANGES[name])

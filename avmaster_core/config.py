"""ModelConfig: one AV-Master model, two presets, and every ablation of the paper as a named config.

    ModelConfig.official()   behaves like the authors' released code (loads its checkpoints)
    ModelConfig.paper()      follows Section III of the paper as written
    experiment("table7/wo_tdpp")   a named ablation (Tables VII-XIII, Figs 4/5/7), see EXPERIMENTS; the
                                   experiments themselves are declared in avmaster_core.experiments
    experiment("default", "official", size="cpu")   the same, small enough to train on a CPU (see SIZES)

The two presets differ only in the fields set in `paper()`; each field says why it exists.
Field metadata marks what the rest of the package derives from the fields themselves:
- {"inference": True}: the field only matters at inference (INFERENCE_FIELDS); a trained checkpoint can be
  re-scored with it changed (`avmaster evaluate --set`, `apply_inference_changes`).
- {"identical_templates": values}: the K focus template rows stay identical (eval mode, or no dropout) only
  while the field holds one of `values`; `templates_stay_identical`, the model's exact one-row shortcut,
  is derived from these marks.
The number of segments T is not a model field: the model accepts any T >= 1 (Fig. 4 varies T in the data).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import experiments as _registry
from .options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Range, check_ranges, check_value, parse_text, value_type

_CHOICES = {
    "template_init": ("first_frame", "learned"),
    "focus_first_stage": ("additive", "sab"),
    "bias_mode": ("query_pos", "add"),
    "fusion_pool": ("additive", "sab_sum"),
    "contrastive": ("official", "in_batch"),
    "combine": ("logits_sum", "prob_sum", "mul", "w_add"),
    "inputs": ("av", "a", "v", "q"),
    "choice_scorer": (None, "match", "dot"),
    "answer_heads": ("all", "trained"),
}
# The numbers each numeric field allows (options.Range); `--set` and __post_init__ both check them.
_RANGES = {
    **{name: AT_LEAST_1 for name in ("dim", "audio_dim", "visual_dim", "text_dim", "num_answers", "num_templates",
                                     "focus_heads", "focus_ffn", "context_heads", "context_ffn", "pref_heads",
                                     "pref_ffn", "decoder_layers", "decoder_heads", "decoder_ffn")},
    **{name: NON_NEGATIVE for name in ("lambda_qa", "lambda_a", "lambda_v", "lambda_c")},
    **{name: POSITIVE for name in ("ln_eps", "decoder_ln_eps", "temperature")},
    "dropout": Range(float, low=0, high=1, open_high=True),
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
    - answer_heads: which heads `combine` adds. "all" (released evaluation: every built head, also one whose
      loss weight is 0 and which therefore stays at its random initialisation, Table VIII rows 1-4) or
      "trained" (only heads with a non-zero loss weight; the qa head always counts).

    Question words
    - mask_padding: False (released: every attention over the words sees all 77 CLIP positions) or True
      (paper Sec. III-A(c): tokens 2..L only; the start token and the padding are masked out of the key-fusion
      self-attention and the preference cross-attention, shapes stay 77). The mask is batch["word_mask"]
      [B, L] (True = a word) where given, else position 0 off and all-zero rows off (the synthetic
      benchmark's and a zero-padded store's padding).

    Multiple choice (AVQA; avmaster_core.choices)
    - choice_scorer: None (heads classify over num_answers) or how each head scores the candidate answers of
      batch["choices"] [B, C, text_dim]: "match" (MLP over [h, a, h*a], as AVQA's own baselines score
      candidates; our reading) or "dot" (<h, W a>: the LM head with candidate rows). Logits are then [B, C].
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
    use_focus: bool = field(default=True, metadata={"identical_templates": (True,)})
    focus_embed: bool = True
    template_init: str = field(default="first_frame", metadata={"identical_templates": ("first_frame",)})
    focus_first_stage: str = "additive"
    bias_mode: str = field(default="query_pos", metadata={"identical_templates": ("query_pos",)})
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
    combine: str = field(default="logits_sum", metadata={"inference": True})
    inference_use_a: bool = field(default=True, metadata={"inference": True})
    inference_use_v: bool = field(default=True, metadata={"inference": True})
    inputs: str = "av"
    answer_heads: str = field(default="all", metadata={"inference": True})
    mask_padding: bool = False
    choice_scorer: str | None = None

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            check_value(f"ModelConfig.{name}", getattr(self, name), choices=allowed)
        check_ranges(self, _RANGES)
        for f in dataclasses.fields(self):  # a switch given as text ("False") would count as true
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"ModelConfig.{f.name} = {getattr(self, f.name)!r}: a switch takes True or False")
        for name in ("focus_heads", "context_heads", "pref_heads", "decoder_heads"):
            if self.dim % getattr(self, name):
                raise ValueError(f"ModelConfig.dim={self.dim} is not divisible by {name}={getattr(self, name)}")
        if not (self.use_tdpp or self.use_gpap):
            raise ValueError("ModelConfig: use_tdpp and use_gpap cannot both be False (nothing would predict)")
        if self.inputs == "q" and (not self.use_tdpp or self.use_focus or self.use_gpap):
            raise ValueError("ModelConfig.inputs='q' (question only) needs use_tdpp=True, use_focus=False and "
                             "use_gpap=False: without audio and visual only the key fusion over words remains")

    # ---------------------------------------------------------------- presets
    @classmethod
    def official(cls, **changes: Any) -> "ModelConfig":
        """The released code (AoKoo233/AV-Master): the preset that produced the paper's numbers."""
        return dataclasses.replace(cls(), **changes)

    @classmethod
    def paper(cls, **changes: Any) -> "ModelConfig":
        """Section III as written. Only fields the paper states differently from the code change (PAPER_PRESET
        holds each with the paper's words; experiments.PRESET_READINGS the settings outside ModelConfig)."""
        return dataclasses.replace(cls(), **{**{k: v for k, (v, _) in PAPER_PRESET.items()}, **changes})

    # ---------------------------------------------------------------- helpers
    @property
    def modalities(self) -> tuple[str, ...]:
        """The input streams the model builds: ("a", "v"), ("a",) or ("v",)."""
        return {"av": ("a", "v"), "a": ("a",), "v": ("v",), "q": ()}[self.inputs]

    @property
    def templates_stay_identical(self) -> bool:
        """True where the K template rows provably stay identical without dropout (released design): every
        field marked `identical_templates` holds one of its listed values (see the module docstring)."""
        return all(getattr(self, name) in values for name, values in _IDENTICAL_TEMPLATES.items())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)


def parse_override(name: str, text: str) -> Any:
    """The value of `--set NAME=TEXT`, read by the field's declared type, choices and range (options.parse_text);
    ValueError naming the field, the text and what is allowed."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    if name not in fields:
        close = sorted(f for f in fields if name.lower() in f or f in name.lower())[:5]
        raise ValueError(f"--set {name}={text}: unknown ModelConfig field" +
                         (f" (did you mean {', '.join(close)}?)" if close else "") +
                         f"; known: {', '.join(sorted(fields))}")
    kind, optional = value_type(ModelConfig, name)
    return parse_text(f"--set {name}", text, kind, optional=optional, choices=_CHOICES.get(name),
                      rng=_RANGES.get(name))


# -------------------------------------------------------------------- the paper preset
# field -> (the paper preset's value, the paper's words it rests on). analysis.preset_differences() prints them.
PAPER_PRESET: dict[str, tuple[Any, str]] = {
    "dim": (512, "Sec. IV-A: 'projected into a 512-dimensional space'"),
    "focus_embed": (False, "Sec. III-B: one linear projection per input feature; no second embedding"),
    "template_init": ("learned", "Sec. III-B(a): 'learnable embeddings ... randomly initialized' (scale not given: "
                                 "std 0.02)"),
    "focus_first_stage": ("sab", "eq. (2): 'V_tp2 = SAB(SAB(F_v^k + V_cls^{k-1}) + bias) + bias'"),
    "bias_mode": ("add", "eq. (2): 'SAB(SAB(V_tp1) + bias) + bias'"),
    "focus_mix": (False, "Sec. III-B(a): 'we take the templates from the n-th time step as the output'"),
    "fusion_pool": ("sab_sum", "eq. (3): 'Pooling(SAB(Linear(F~) + F_c))'"),
    "contrastive": ("in_batch", "eq. (6): a sum of exponentials over the negatives, the positive pair in the "
                                "numerator"),
    "combine": ("prob_sum", "Sec. III-D: 'we sum all the predicted distributions from the model'"),
    "mask_padding": (True, "Sec. III-A(c): 'word-level features F_t^w = {F_t^2, ..., F_t^L} ... L denotes the "
                           "number of question tokens' (no start token, no padding)"),
}


# -------------------------------------------------------------------- field metadata
# {field: the values that keep the K template rows identical}, from the fields' metadata.
_IDENTICAL_TEMPLATES: dict[str, tuple] = {f.name: tuple(f.metadata["identical_templates"])
                                          for f in dataclasses.fields(ModelConfig) if "identical_templates" in f.metadata}
# The fields that only matter at inference: changing them leaves trained weights valid.
INFERENCE_FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(ModelConfig)
                                             if f.metadata.get("inference"))


def check_inference_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` if every key is an inference-only ModelConfig field (INFERENCE_FIELDS); else a ValueError
    naming the offending field(s) and listing the allowed ones. For re-scoring a trained checkpoint."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown} in changes; see avmaster_core.config.ModelConfig")
    training = sorted(set(changes) - INFERENCE_FIELDS)
    if training:
        raise ValueError(f"ModelConfig field(s) {training} change the trained model and cannot be changed when "
                         f"evaluating a checkpoint; inference-only fields: {', '.join(sorted(INFERENCE_FIELDS))}")
    return dict(changes)


def apply_inference_changes(cfg: ModelConfig, changes: dict[str, Any] | None) -> ModelConfig:
    """`cfg` (of a trained checkpoint) with inference-only `changes` applied (checked first, see
    check_inference_changes)."""
    return dataclasses.replace(cfg, **check_inference_changes(changes)) if changes else cfg


# -------------------------------------------------------------------- training recipe of each preset
# TrainConfig fields a preset changes when the command line does not set them (run_config.TrainConfig's defaults
# are the released recipe). Sec. IV-A: "The batch size is set to 32, and the model is trained for 30 epochs."
# The batch size also sets eq. (6)'s number of in-batch negatives (B - 1).
PRESET_TRAINING: dict[str, dict[str, Any]] = {"official": {}, "paper": {"batch_size": 32}}


# -------------------------------------------------------------------- named experiments (avmaster_core.experiments)
EXPERIMENTS: tuple[str, ...] = tuple(_registry.REGISTRY)
# Fig. 4 experiments fix the number of segments at the data level (see the registry's `segments`).
EXPERIMENT_SEGMENTS: dict[str, int] = {e.name: e.segments for e in _registry.ENTRIES if e.segments is not None}


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
    entry = _registry.get(name)
    if preset not in ("official", "paper"):
        raise ValueError(f"preset must be 'official' or 'paper', got {preset!r}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    base = ModelConfig.official() if preset == "official" else ModelConfig.paper()
    base = dataclasses.replace(base, **SIZES[size])
    return dataclasses.replace(base, **entry.changes)

"""The experiments registry: every named experiment (ablation, figure point, baseline) in ONE entry.

An entry says what the experiment changes (ModelConfig fields on top of a preset, and the number of segments
where a figure fixes it at the data level), which cells of the paper it fills (a table row, or a figure's
x value), its human label, and -- where the entry rests on our reading of the paper rather than on its words --
the paper's words in `reading`. Everything else is derived from here:

    config.experiment(name, preset, size) / config.EXPERIMENTS / config.EXPERIMENT_SEGMENTS
    paper.EXPERIMENT_ROWS          which run fills which paper table row
    analysis.FIG4/FIG5_EXPERIMENTS, analysis.fig7_experiments()   which run fills which figure point
    sweep.RUN_LABELS               the row labels of `avmaster sweep`'s markdown tables
    Experiment.inference_only      True when it only re-scores a trained full model (ModelConfig metadata)

To add an ablation: add one `Experiment(...)` to ENTRIES (and, if it needs a new switch, the field in
ModelConfig). Experiments with equal configurations share one run set, that of the first of them in registry
order (`run_for`, derived from the configurations: `table8/qa+a+v` uses `table7/wo_dpcl`'s runs).

This module imports nothing from the package at import time (config imports it); functions that need a
ModelConfig import it when called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

FULL_MODEL = "default"  # the full model: experiments with its configuration reuse its run
# Table XI's other AV-Master rows: (paper's visual label, audio label, visual encoder, audio encoder); the encoder
# names are those `avmaster extract` registers (extract/encoders.py) or would register (e.g. "clap", 48 kHz)
TABLE11_ENCODERS = (("Resnet-18", "VGGish", "resnet18", "vggish"), ("CLIP_B", "VGGish", "clip-b", "vggish"),
                    ("CLIP_L", "CLAP", "clip", "clap"), ("Internvideo2", "Internvideo2", "internvideo2", "internvideo2"))
# The full model of a benchmark whose answers are each question's own candidates (AVQA, Table V): it scores the
# candidates (avmaster_core.choices) instead of classifying over the 42 answers.
MULTIPLE_CHOICE_MODEL = "avqa/choices"


@dataclass(frozen=True)
class Experiment:
    """One named experiment.

    name: the experiment's name (= its run folder under the runs directory).
    changes: ModelConfig fields changed on top of the chosen preset (and size).
    label: a short human label (row label of `avmaster sweep` tables).
    fills: the paper cells this experiment reproduces: (table, row label) such as ("table7", "w/o. TDPP"), or
        (figure, x value) such as ("fig7", ("lambda_qa", 0.4)).
    segments: the number of segments T fixed at the data level (Fig. 4), None = the data's own.
    features: (visual, audio) encoder names (extract.encoders registries) of the features it trains on (Table
        XI), None = the benchmark's own store (CLIP-L/14@336 + VGGish); the model takes that store's widths.
    reading: None when the paper states the setting; otherwise the paper's own words the entry interprets.
    """

    name: str
    changes: Mapping[str, Any]
    label: str
    fills: tuple[tuple[str, Any], ...] = ()
    segments: int | None = None
    features: tuple[str, str] | None = None
    reading: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))

    @property
    def inference_only(self) -> bool:
        """True when every change is an inference-only ModelConfig field: the experiment re-scores a trained
        full model (`evaluate --set`, analysis.inference_variants) instead of training."""
        from .config import INFERENCE_FIELDS

        return bool(self.changes) and set(self.changes) <= INFERENCE_FIELDS


_WO_ALL = ("Table VII names the row 'w/o. ALL' without defining it; we turn off every proposed part that can be "
           "off together (focus capture, preference path, contrastive loss); key fusion and decoder stay")
_MUL = "Table XIII names 'MUL' without a formula; we read it as p_qa + p_a * p_v"
_W_ADD = ("Table XIII names 'W-ADD' without a formula; we read it as p_qa + w_a p_a + w_v p_v with (w_a, w_v) the "
          "softmax of each head's max probability")
_LOGIT_SUM = ("The released code adds the three heads' raw logits and calls it ADD. Its argmax equals the argmax of the "
              "PRODUCT of the three softmax distributions (log p_qa + log p_a + log p_v is the logit sum minus each "
              "head's normaliser, which is the same for every answer), so it is not the paper's ADD (a sum of "
              "distributions); Table XIII shows it as a row of its own")
LOGIT_SUM_ROW = "logit sum (released)"  # Table XIII's extra row: not in the paper's table
_FIG4 = ("Fig. 4's text names segment lengths 48 and 60 ('When the segment length is 48, ... a slight drop'); "
         "the points 12, 24 and 36 are our reading of the figure's x axis")
_FIG4_RETRAIN = ("Fig. 4 / Sec. IV-D(f) ('we conducted an ablation study on the segment length') does not say whether "
                 "the model is retrained at each length or a 60-segment model is evaluated on shorter inputs; we "
                 "retrain at each length")
_FIG7 = ("Fig. 7's text names 0.4, 1.0 and 1.6 ('Increasing lambda_qa from 0.4 to 1.0 ...; beyond a threshold "
         "(e.g. 1.6) accuracy declines slightly'); the grid {0.4, 0.7, 1.0, 1.3, 1.6} is our reading of the figure")
_AVQA_MC = ("Sec. IV-A / Table V report AVQA accuracy but the paper does not say how AV-Master answers AVQA's "
            "multiple-choice questions (the released code has no AVQA loader); we score each candidate answer's "
            "projected CLIP text feature against each head's decoder state by a dot product: the released answer "
            "head with its 42 rows replaced by the candidates, the smallest change to the decoders (docs/avqa.md)")
_AVQA_MATCH = ("the same question as avqa/choices, answered the way AVQA's own baselines (HCRN/HAVF's multiple-"
               "choice output unit) score candidates: an MLP over [h, a, h*a] per candidate (docs/avqa.md)")
_QUESTION_ONLY = dict(inputs="q", use_focus=False, use_gpap=False, lambda_a=0.0, lambda_v=0.0, lambda_c=0.0)
FIG7_WEIGHTS = {"lambda_qa": "qa", "lambda_a^p": "a", "lambda_v^p": "v", "lambda_c": "c"}  # paper label -> short
FIG7_VALUES = (0.4, 0.7, 1.0, 1.3, 1.6)
FIG4_SEGMENTS = (12, 24, 36, 48, 60)
OURS = "AV-Master"  # the paper's row name of its own model

ENTRIES: tuple[Experiment, ...] = (
    Experiment("default", {}, "AV-Master",
               fills=(("table2", OURS), ("table6", OURS), ("table7", OURS), ("table11", ("CLIP_L", "VGGish", OURS)))),
    # Table VII: components
    Experiment("table7/wo_all", dict(use_focus=False, use_gpap=False, lambda_c=0.0), "w/o ALL",
               fills=(("table7", "w/o. ALL"),), reading=_WO_ALL),
    Experiment("table7/wo_avfc", dict(use_focus=False), "w/o AVFC", fills=(("table7", "w/o. AVFC"),)),
    Experiment("table7/wo_dpcl", dict(lambda_c=0.0), "w/o DPCL", fills=(("table7", "w/o. DPCL"),)),
    Experiment("table7/wo_gpap", dict(use_gpap=False, lambda_a=0.0, lambda_v=0.0, lambda_c=0.0), "w/o GPAP",
               fills=(("table7", "w/o. GPAP"),)),
    Experiment("table7/wo_tdpp", dict(use_tdpp=False, lambda_qa=0.0, lambda_c=0.0), "w/o TDPP",
               fills=(("table7", "w/o. TDPP"),)),
    # Table VIII: loss subsets (L_qa always on)
    Experiment("table8/qa", dict(lambda_c=0.0, lambda_a=0.0, lambda_v=0.0), "losses L_qa", fills=(("table8", 1),)),
    Experiment("table8/qa+c", dict(lambda_a=0.0, lambda_v=0.0), "losses L_qa + L_c", fills=(("table8", 2),)),
    Experiment("table8/qa+c+a", dict(lambda_v=0.0), "losses L_qa + L_c + L_a^p", fills=(("table8", 3),)),
    Experiment("table8/qa+c+v", dict(lambda_a=0.0), "losses L_qa + L_c + L_v^p", fills=(("table8", 4),)),
    Experiment("table8/qa+a+v", dict(lambda_c=0.0), "losses L_qa + L_a^p + L_v^p", fills=(("table8", 5),)),
    Experiment("table8/all", {}, "all four losses", fills=(("table8", 6),)),
    # Table IX: template length
    *(Experiment(f"table9/len{k}", dict(num_templates=k), f"template length {k}", fills=(("table9", k),))
      for k in (2, 4, 8, 12, 16)),
    # Table X: attention-block sharing (A-S) and bias sharing (B-S)
    Experiment("table10/none", dict(share_focus_block=False, share_bias=False), "no sharing", fills=(("table10", 1),)),
    Experiment("table10/as", dict(share_focus_block=True, share_bias=False), "A-S", fills=(("table10", 2),)),
    Experiment("table10/bs", dict(share_focus_block=False, share_bias=True), "B-S", fills=(("table10", 3),)),
    Experiment("table10/as+bs", dict(share_focus_block=True, share_bias=True), "A-S + B-S", fills=(("table10", 4),)),
    # Table XII: preference distributions dropped at inference
    Experiment("table12/wo_ape", dict(inference_use_a=False), "w/o APE", fills=(("table12", "w/o. APE"),)),
    Experiment("table12/wo_vpe", dict(inference_use_v=False), "w/o VPE", fills=(("table12", "w/o. VPE"),)),
    Experiment("table12/wo_avpe", dict(inference_use_a=False, inference_use_v=False), "w/o AVPE",
               fills=(("table12", "w/o. AVPE"),)),
    Experiment("table12/full", {}, "both preference distributions", fills=(("table12", OURS),)),
    # Table XIII: combination. ADD is the paper's sum of the three distributions (whatever the preset's own
    # combination); the released code's logit sum is a row of its own (see _LOGIT_SUM); MUL and W-ADD are our reading
    Experiment("table13/add", dict(combine="prob_sum"), "ADD: sum of the three distributions",
               fills=(("table13", "ADD"),)),
    Experiment("table13/logit_sum", dict(combine="logits_sum"), "logit sum (released code)",
               fills=(("table13", LOGIT_SUM_ROW),), reading=_LOGIT_SUM),
    Experiment("table13/mul", dict(combine="mul"), "MUL", fills=(("table13", "MUL"),), reading=_MUL),
    Experiment("table13/w_add", dict(combine="w_add"), "W-ADD", fills=(("table13", "W-ADD"),), reading=_W_ADD),
    # Fig. 5: input modalities
    Experiment("fig5/a+q", dict(inputs="a"), "A+Q: no visual stream", fills=(("fig5", "A+Q"),)),
    Experiment("fig5/v+q", dict(inputs="v"), "V+Q: no audio stream", fills=(("fig5", "V+Q"),)),
    Experiment("fig5/a+v+q", {}, "A+V+Q", fills=(("fig5", "A+V+Q"),)),
    # Question-only baseline (not in the paper): no audio or visual stream; the key-fusion self-attention
    # reads the words alone and the answer decoder predicts. It bounds what the question gives away.
    Experiment("baseline/question_only", _QUESTION_ONLY, "Question-only baseline"),
    # AVQA (Table V) as multiple choice: the candidates' text features scored by each head (avmaster_core.choices)
    # Table V's row is filled by this experiment trained on AVQA (a whole-benchmark table: `reproduce` trains it
    # with the avqa protocol, not with the main benchmark's, so no `fills` here; see full_model_for)
    Experiment("avqa/choices", dict(choice_scorer="dot", num_answers=4), "AV-Master, candidates scored (dot)",
               reading=_AVQA_MC),
    Experiment("avqa/choices_match", dict(choice_scorer="match", num_answers=4),
               "candidates scored (match), alternative", reading=_AVQA_MATCH),
    # what the package trained before issue 13: a 4-way classifier over positions that never sees the candidates
    Experiment("avqa/position_only", dict(num_answers=4), "position-only baseline (candidates unseen)"),
    Experiment("avqa/question_only", {**_QUESTION_ONLY, "choice_scorer": "match", "num_answers": 4},
               "question-only baseline, candidates scored (match)"),
    # Fig. 7: one loss weight varied, the others 1.0
    *(Experiment(f"fig7/{short}={value}", {f"lambda_{short}": value}, f"{label} = {value}",
                 fills=(("fig7", (label, value)),), reading=_FIG7)
      for label, short in FIG7_WEIGHTS.items() for value in FIG7_VALUES),
    # Fig. 4: segment length (the model is unchanged; T is set by the data)
    *(Experiment(f"fig4/T{t}", {}, f"{t} segments", fills=(("fig4", t),), segments=t,
                 reading=_FIG4_RETRAIN if t in (48, 60) else f"{_FIG4}. {_FIG4_RETRAIN}")
      for t in FIG4_SEGMENTS),
    # Table XI: AV-Master on other feature extractors (its CLIP_L + VGGish row is the full model's run): the same
    # model trained on a store made with those encoders (`avmaster extract --visual-encoder V --audio-encoder A`)
    *(Experiment(f"table11/{v}+{a}", {}, f"{label_v} + {label_a} features",
                 fills=(("table11", (label_v, label_a, OURS)),), features=(v, a))
      for label_v, label_a, v, a in TABLE11_ENCODERS),
    # Fig. 8 (word attention): the official preset with the start token and padding masked out of the words
    Experiment("fig8/mask_padding", dict(mask_padding=True), "words without start token and padding",
               reading=("Sec. III-A(c): word-level features F_t^w = {F_t^2, ..., F_t^L}, L the number of question "
                        "tokens; the released code attends over all 77 CLIP positions. Masking the start token and "
                        "the padding (shapes stay 77) is what the paper preset does; here on the official preset")),
)




@dataclass(frozen=True)
class PresetReading:
    """One place where the paper preset and the paper's text may part: what the paper says (`words`, quoted),
    what each preset computes, and `status`: "as written" (the paper preset follows the words), "our reading"
    (the words admit more than one model; we chose one), or "not as written" (the paper preset departs, why)."""

    setting: str
    official: str
    paper_preset: str
    words: str
    status: str


PRESET_READINGS: tuple[PresetReading, ...] = (
    PresetReading("batch size", "64 (released scripts)", "32 (`--preset paper`; config.PRESET_TRAINING)",
                  "Sec. IV-A: 'The batch size is set to 32, and the model is trained for 30 epochs.'", "as written"),
    PresetReading("sentence feature", "end-of-text state (CLIP's pooled feature)", "end-of-text state",
                  "Sec. III-A(c): 'extract the sentence-level feature F_t^s by taking the embedding of the first "
                  "token'. Under CLIP's causal mask the first token's state is the same for every question, so we "
                  "read it as CLIP's sentence embedding", "not as written"),
    PresetReading("eq. (6) negatives", "one random other sample per item (released)",
                  "every other sample of the batch (B - 1 = 31 at batch 32)",
                  "Sec. III-D: 'improve the model's discriminative ability by leveraging hard negative samples'; eq. (6) "
                  "sums over negatives without saying how they are chosen or what makes them hard", "our reading"),
    PresetReading("the two SABs of eq. (2)", "additive first stage, then the released decoder layer",
                  "first SAB: a post-norm self-attention layer with its own FFN; second SAB: the decoder layer's "
                  "self-attention (no FFN before the CAB; the layer's FFN follows the CAB)",
                  "eq. (2): 'V_tp2 = SAB(SAB(V_tp1) + bias) + bias, V_cls = CAB(V_tp2, F_v^k)'; the text defines SAB "
                  "once ('self-attention block') and does not say whether each has a feed-forward layer",
                  "our reading"),
    PresetReading("heads summed at inference", "all built heads (answer_heads='all')", "all built heads",
                  "Sec. III-D: 'During inference, we sum all the predicted distributions from the model'. With a "
                  "zero loss weight (Table VIII rows 1-4) a head stays untrained; answer_heads='trained' leaves it out",
                  "as written"),
    PresetReading("AVQA (Table V)", "candidates scored per head (choice_scorer='dot', experiment avqa/choices)",
                  "the same", "Sec. IV-A / Table V report AVQA accuracy without saying how the four candidate answers "
                  "are scored (docs/avqa.md)", "our reading"),
)

REGISTRY: Mapping[str, Experiment] = MappingProxyType({e.name: e for e in ENTRIES})
if len(REGISTRY) != len(ENTRIES):
    raise RuntimeError("avmaster_core.experiments: two entries share a name")


def get(name: str) -> Experiment:
    """The registry entry of `name`; a KeyError lists the known names."""
    if name not in REGISTRY:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _configuration(name: str) -> tuple:
    """What a run of `name` trains and scores: its model configuration on both presets and its segments."""
    from .config import experiment

    entry = get(name)
    return (repr(experiment(name, "official")), repr(experiment(name, "paper")), entry.segments, entry.features)


def shared_runs() -> Mapping[str, str]:
    """{experiment: the experiment whose runs give its results}, derived from the configurations: experiments
    whose configurations are equal (on both presets, same segments) share ONE run set, that of the first of them
    in registry order (the full model `default` first; `table8/qa+a+v` -> `table7/wo_dpcl`)."""
    global _SHARED
    if _SHARED is None:
        first: dict[tuple, str] = {}
        _SHARED = MappingProxyType({e.name: first.setdefault(_configuration(e.name), e.name) for e in ENTRIES})
    return _SHARED


_SHARED: Mapping[str, str] | None = None


def run_for(name: str) -> str:
    """The run that gives `name`'s results: the first experiment in registry order with `name`'s configuration
    (`shared_runs`; `name` itself when no earlier one has it)."""
    get(name)
    return shared_runs()[name]


def same_configuration(name: str) -> list[str]:
    """The other experiments whose runs are `name`'s runs (same shared run set)."""
    run = run_for(name)
    return [other for other, shared in shared_runs().items() if shared == run and other != name]


def full_model_for(dataset: str) -> str:
    """The experiment trained as "AV-Master" on a whole benchmark (Tables II-V): the full model, or for a
    benchmark whose answers are per-question candidates (dataset_registry: answers_in_vocab=False) the
    multiple-choice model."""
    from .dataset_registry import get as dataset_spec

    return FULL_MODEL if dataset_spec(dataset).answers_in_vocab else MULTIPLE_CHOICE_MODEL


def filled_by(source: str) -> dict:
    """{row label or x value: experiment} of every cell of the paper's table or figure `source` that an
    experiment fills, in registry order (a cell filled by several entries keeps the first)."""
    cells: dict = {}
    for entry in ENTRIES:
        for where, key in entry.fills:
            if where == source and key not in cells:
                cells[key] = entry.name
    return cells


def filling(source: str) -> dict:
    """{row label or x value: run} of `source`'s cells: each cell's experiment's shared run (`run_for`)."""
    return {key: run_for(name) for key, name in filled_by(source).items()}


def sources() -> tuple[str, ...]:
    """The paper tables and figures that at least one experiment fills, in registry order."""
    return tuple(dict.fromkeys(where for entry in ENTRIES for where, _ in entry.fills))


def run_label(run: str) -> str:
    """The human label of a run name (an experiment, or `paper/<experiment>` for the paper preset) with the
    run name in backticks. The full model's label names its preset; other runs name only the paper preset."""
    preset, name = ("paper", run.removeprefix("paper/")) if run.startswith("paper/") else ("official", run)
    entry = get(name)
    if name == FULL_MODEL:
        return f"{entry.label}, {preset} preset `{run}`"
    return f"{entry.label}{', paper preset' if preset == 'paper' else ''} `{run}`"

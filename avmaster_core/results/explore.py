"""What one trained model does with one question: the teaching notebook (notebooks/32_explore_a_question.ipynb).

    explorer = Explorer.load("results/runs/synthetic/default/1/best.pt", "synthetic", "data/synthetic")
    view = explorer.view(question_id=17)      # heads, words, focus: DataFrames
    fig = question_figure(view)               # matplotlib.figure.Figure (no pyplot)
    explorer.widget()                         # ipywidgets: pick a question, the figure follows

For one question the view holds
- heads: the answer distribution (softmax) of each head (qa: key fusion, a / v: the audio and visual
  preference paths) and of their combination (the model's answer), for the answers any of them ranks high;
- words: the preference path's attention over the question's words, averaged over the segments (rows
  Visual / Audio), the summed attention on padding positions as one column (as Fig. 8);
- focus: focus sampling over time. The K templates read one segment per step (eq. 2), so what they take
  from segment t is how far step t moves them: ||V^t - V^(t-1)|| / ||V^(t-1)|| per modality (from step 2;
  step 1 turns the first frame into templates). Beside it, the probability of the model's answer and of the true one read out
  after each step (the combined answer with the key-fusion head fed the templates of that step, Fig. 6).
The model and the split are loaded once; each view is one forward pass of one question (milliseconds at CPU size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from . import plots  # registers the inline PNG formatter in a kernel, so a returned Figure shows once
from .analysis import checkpoint_and_data, finished_checkpoints, question_tokens
from ..data.synthetic import load_scenes
from ..core.vocab import ANSWERS
import base64
import io

HEADS = {"logits_qa": "qa head (key fusion)", "logits_a": "audio head", "logits_v": "visual head",
         "logits": "combined (the answer)"}
MODALITIES = {"v": "Visual", "a": "Audio"}


@dataclass
class QuestionView:
    """One question seen through one model (see the module docstring for each table)."""

    question: str
    answer: str
    prediction: str
    heads: pd.DataFrame    # answers x heads, probabilities
    words: pd.DataFrame    # Visual / Audio x tokens (+ "<padding>")
    focus: pd.DataFrame    # index "segment" 1..T: template change per modality, P(answer) and P(truth) per step
    video_id: str = ""
    scene: pd.DataFrame | None = None   # synthetic only: each instrument, where it is seen, segments it sounds

    def summary(self) -> str:
        verdict = "correct" if self.prediction == self.answer else "wrong"
        return f"{self.question}? (video {self.video_id}) truth: {self.answer}; model: {self.prediction} ({verdict})"


class Explorer:
    """A checkpoint and one split of its dataset, loaded once, for viewing questions one by one."""

    def __init__(self, model, data, dataset: str, top: int = 3, scenes: dict | None = None):
        self.model, self.data, self.dataset, self.top = model.eval(), data, dataset, top
        self.scenes = scenes or {}  # synthetic benchmark: {video_id: Scene}, the ground truth of each video
        if not (model.cfg.use_tdpp and model.cfg.use_focus and model.cfg.use_gpap):
            raise ValueError("exploring needs the full model (focus sampling and preference path); this "
                             "checkpoint's experiment removes one of them: pick the `default` experiment's run")

    @classmethod
    def load(cls, checkpoint, dataset: str, root, split: str = "test", *, store=None, top: int = 3) -> "Explorer":
        model, _, data = checkpoint_and_data(checkpoint, dataset, split, root, store)
        scenes = None
        if dataset == "synthetic":
            scenes = load_scenes(root)
        return cls(model, data, dataset, top, scenes)

    def question_types(self) -> list[str]:
        """The split's question types as "<modality> / <type>" (e.g. "Audio / Counting"), for the picker."""
        records = self.data.records
        return list(dict.fromkeys(records["modality"] + " / " + records["qtype"]))

    def questions(self, limit: int | None = None, kind: str | None = None) -> list[tuple[str, int]]:
        """[(label, question_id)] for a picker: each distinct question text once (its first video); `kind`
        keeps one question type ("Audio / Counting", see `question_types`)."""
        records = self.data.records
        if kind:
            records = records[(records["modality"] + " / " + records["qtype"]) == kind]
        records = records.drop_duplicates("question")
        records = records if limit is None else records.head(limit)
        return [(f"{q}? [{v}]", int(i)) for q, v, i in
                zip(records["question"].str.rstrip("?"), records["video_id"], records["question_id"])]

    @torch.no_grad()
    def view(self, question_id: int) -> QuestionView:
        rows = np.flatnonzero(self.data.records["question_id"].to_numpy() == int(question_id))
        if len(rows) == 0:
            raise KeyError(f"question_id {question_id} is not in this split; pick one of Explorer.questions()")
        batch = self.data.bank.gather(torch.as_tensor(rows[:1]))
        out = self.model(batch)
        attention = self.model.word_attention(batch)
        record = self.data.records.iloc[int(rows[0])]
        tokens = question_tokens(record["question"], self.dataset)
        heads = head_distributions(out, self.top, record["answer"])
        words = pd.DataFrame({MODALITIES[m]: word_weights(attention[m][0], len(tokens))
                              for m in MODALITIES if m in attention},
                             index=tokens + ["<padding>"]).T
        focus = focus_over_time(self.model, batch, out, heads.columns[-1], record["answer"])
        return QuestionView(record["question"], record["answer"], str(heads[HEADS["logits"]].idxmax()),
                            heads, words, focus, str(record["video_id"]), scene_table(self.scenes.get(record["video_id"])))

    def widget(self, question_id: int | None = None, limit: int | None = 200):
        """An ipywidgets box: a question-type filter, a question picker and the figure of the chosen question
        (redrawn on change). Where no kernel runs (a saved copy, a static viewer) the box shows the figure of
        the first question as a picture (`fallback_box`)."""
        import ipywidgets as widgets

        choices = self.questions(limit)
        ids = [i for _, i in choices]
        start = question_id if question_id in ids else ids[0]
        kinds = widgets.Dropdown(options=[("every type", "")] + [(k, k) for k in self.question_types()], value="",
                                 description="type")
        picker = widgets.Dropdown(options=choices, value=start, description="question",
                                  layout=widgets.Layout(width="95%"))
        shown = widgets.Output()
        first = question_figure(self.view(start))

        def draw(change=None):
            # set the widget's outputs directly: `with shown:` capture hung headless runs under ipykernel 7
            shown.outputs = ()
            shown.append_display_data(question_figure(self.view(picker.value)))

        def filter_questions(change):
            options = self.questions(limit, kinds.value or None)
            if options:
                picker.options = options  # the picker's value follows, which redraws the figure

        picker.observe(draw, names="value")
        kinds.observe(filter_questions, names="value")
        shown.append_display_data(first)
        return fallback_box()([kinds, picker, shown], fallback=first)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def fallback_box():
    """The VBox class whose output carries a picture for viewers without a kernel (ipywidgets imported here,
    only when a widget is built)."""
    import ipywidgets as widgets

    class FallbackBox(widgets.VBox):
        """A VBox whose saved output also carries a PNG of its first figure: a viewer without a kernel (or
        without the widget's state) shows that picture instead of a dead widget."""

        def __init__(self, children, fallback: Figure):
            super().__init__(children)
            self._fallback_png = _png(fallback)

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs) or {}
            return {**bundle, "image/png": self._fallback_png}

    return FallbackBox



def head_distributions(out: dict, top: int, truth: str) -> pd.DataFrame:
    """Probabilities of each head (columns, HEADS) over the answers any head ranks in its `top` (and the
    true answer), rows sorted by the combined probability."""
    probs = {label: torch.softmax(out[key][0].float(), dim=-1).numpy() for key, label in HEADS.items()
             if out.get(key) is not None}
    keep = {int(i) for p in probs.values() for i in np.argsort(p)[::-1][:top]}
    if truth in ANSWERS:
        keep.add(ANSWERS.index(truth))
    table = pd.DataFrame({label: p[sorted(keep)] for label, p in probs.items()},
                         index=pd.Index([ANSWERS[i] for i in sorted(keep)], name="answer"))
    return table.sort_values(HEADS["logits"], ascending=False)


def word_weights(weights: torch.Tensor, n_tokens: int) -> np.ndarray:
    """[T, L] attention of the segments over the word positions -> mean over segments of the first
    `n_tokens` positions, plus the summed weight on the positions after them (padding)."""
    mean = weights.float().mean(0).numpy()
    return np.append(mean[:n_tokens], mean[n_tokens:].sum())


@torch.no_grad()
def focus_over_time(model, batch: dict, out: dict, answer_column: str, truth: str) -> pd.DataFrame:
    """Per segment t: how far focus step t moves each modality's templates (relative change), and the
    probability of the model's answer and of the true answer read out after step t (model.step_logits)."""
    steps = model.focus_steps(model.embed_inputs(batch).feats)
    table = {}
    for m, states in steps.items():  # step 1 makes templates of the first frame: no change to measure yet
        table[f"{MODALITIES[m]} templates moved"] = [math.nan] + [
            float((z - p).norm() / p.norm().clamp_min(1e-12)) for z, p in zip(states[1:], states[:-1])]
    step_probs = torch.softmax(model.step_logits(batch)[0].float(), dim=-1).numpy()  # [T, C]
    answer = int(out["logits"][0].argmax())
    table["P(model's answer) after step"] = step_probs[:, answer]
    if truth in ANSWERS and ANSWERS.index(truth) != answer:
        table["P(true answer) after step"] = step_probs[:, ANSWERS.index(truth)]
    return pd.DataFrame(table, index=pd.RangeIndex(1, len(step_probs) + 1, name="segment"))


def scene_table(scene) -> pd.DataFrame | None:
    """A synthetic scene's instruments: where each is seen and the segments (1-based) it sounds in."""
    if scene is None:
        return None
    rows = [(i.cls, i.position or "off-screen", i.start + 1 if i.sounds else None, i.end if i.sounds else None)
            for i in scene.instruments]
    if scene.voice is not None:
        rows.append(("voiceover", "-", scene.voice[0] + 1, scene.voice[1]))
    return pd.DataFrame(rows, columns=["instrument", "seen", "sounds from segment", "to segment"])


def question_figure(view: QuestionView) -> Figure:
    """Four panels: the heads' answer distributions, the word attention, focus sampling over time and (on
    the synthetic benchmark) the scene's ground truth on the same time axis."""
    import seaborn as sns

    fig = Figure(figsize=(13.0, 7.4), layout="constrained")
    axes = fig.subplot_mosaic([["heads", "words"], ["focus", "scene"]], width_ratios=[1.0, 1.25])
    _draw_heads(axes["heads"], view.heads, sns.color_palette("colorblind", len(view.heads.columns)))
    sns.heatmap(view.words, ax=axes["words"], cmap="Blues", vmin=0, vmax=1, annot=True, fmt=".2f", cbar=False,
                annot_kws={"fontsize": 7})
    axes["words"].set_title("word attention (preference path, mean over segments)")
    axes["words"].tick_params(axis="x", labelrotation=60, labelsize=8)
    axes["words"].tick_params(axis="y", labelrotation=0)
    _draw_focus(axes["focus"], view.focus)
    _draw_scene(axes["scene"], view.scene, len(view.focus))
    fig.suptitle(view.summary(), fontsize=10)
    return fig


def _draw_heads(ax, heads: pd.DataFrame, colours) -> None:
    """Grouped horizontal bars: one group per answer (the model's answer on top), one bar per head."""
    width = 0.8 / len(heads.columns)
    rows = np.arange(len(heads))[::-1]
    for k, (column, colour) in enumerate(zip(heads.columns, colours)):
        ax.barh(rows + 0.4 - (k + 0.5) * width, heads[column], height=width, color=colour, label=column)
    ax.set_yticks(rows, heads.index)
    ax.set(xlim=(0, 1), xlabel="probability", title="answer distribution of each head")
    ax.legend(fontsize=7, loc="lower right")


def _draw_focus(ax, focus: pd.DataFrame) -> None:
    """Template change per modality (left axis) and the per-step answer probabilities (right axis)."""
    moved = [c for c in focus.columns if c.endswith("moved")]
    for column, colour in zip(moved, (plots.PAPER_COLOUR, plots.OURS_COLOUR)):
        ax.plot(focus.index, focus[column], marker="o", color=colour, label=column)
    ax.set(xlabel="segment (focus step t)", ylabel="relative change of the templates", xlim=(0.5, len(focus) + 0.5),
           title="focus sampling over time: how far segment t moves the templates")
    ax.set_ylim(bottom=0)
    readout = ax.twinx()
    for column, style in zip([c for c in focus.columns if c.startswith("P(")], ("--", ":")):
        readout.plot(focus.index, focus[column], linestyle=style, color=plots.REFERENCE_COLOUR, label=column)
    readout.set(ylim=(0, 1.05), ylabel="probability")
    (h1, l1), (h2, l2) = ax.get_legend_handles_labels(), readout.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")


def _draw_scene(ax, scene: pd.DataFrame | None, segments: int) -> None:
    """The instruments' sounding segments as bars on the focus panel's time axis (synthetic ground truth)."""
    ax.set(xlim=(0.5, segments + 0.5), xlabel="segment", title="the scene (synthetic benchmark's ground truth)")
    if scene is None or scene.empty:
        ax.text(0.5, 0.5, "no ground truth for real videos", ha="center", va="center", transform=ax.transAxes,
                color=plots.REFERENCE_COLOUR, style="italic")
        ax.set_yticks([])
        return
    for y, row in enumerate(scene.itertuples(index=False)):
        if not pd.isna(row[2]):
            ax.broken_barh([(row[2] - 0.5, row[3] - row[2] + 1)], (y - 0.35, 0.7), color=plots.OURS_COLOUR)
        else:
            ax.text(1, y, "silent", va="center", fontsize=8, color=plots.REFERENCE_COLOUR, style="italic")
    ax.set_yticks(range(len(scene)), [f"{r[0]} ({r[1]})" for r in scene.itertuples(index=False)])
    ax.set_ylim(len(scene) - 0.5, -0.5)


def default_checkpoint(runs, experiment: str = "default", seeds=None) -> Path:
    """The first finished checkpoint (lowest seed) of `experiment` under `runs`."""
    found = finished_checkpoints(runs, experiment, seeds)
    if not found:
        raise FileNotFoundError(f"no finished checkpoint (best.pt) of {experiment!r} in {runs}; train it with "
                                "`avmaster train` or `avmaster sweep`")
    return found[min(found)]

"""Computations behind the figure and "beyond the paper" notebooks, so that notebooks only configure,
call and display.

    steps = step_accuracy("results/runs/default/1/best.pt", "music_avqa", "test", "data/music_avqa")   # Fig. 6
    words = question_word_attention(ckpt, "synthetic", "data/synthetic", question_id=123)            # Fig. 8
    table = inference_variants("table12", {1: ckpt}, "synthetic", "data/synthetic")                  # Tables XII/XIII
    curve = segment_length_curve(ckpt, "synthetic", "data/synthetic", lengths=(2, 4, 6, 8, 10))      # Fig. 4 proxy
    preset_differences(); parameter_counts(); template_rows_spread(model, batch)                      # presets notebook

Every function takes a checkpoint written by `engine.train` (or a model) and real or synthetic data through
the same loaders the engine uses, so a notebook gives the same numbers on the bundled synthetic benchmark
(SMOKE) and on real features.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import ours_tables, paper
from ..core import config, experiments as registry
from ..core.checkpoint import load_checkpoint, model_from_checkpoint, read_checkpoint
from ..core.config import INFERENCE_FIELDS, PAPER_PRESET, ModelConfig
from ..core.dataset import iterate_batches, make_dataset, open_store
from ..core.experiments import experiment
from ..core.model import build_model, count_parameters
from ..core.vocab import ANSWERS, question_text
from ..data.annotations import load_annotations, load_records
from ..data.dataset_registry import protocol
from ..data.scoring import read_predictions, score, score_by_template
from ..extract.encoders import open_clip_module
from ..training.distributed import resolve_device
from ..training.evaluation import predict, prediction_series
from ..training.run_config import BEST_CHECKPOINT, DataConfig

MODALITY_NAMES = {"a": "Audio", "v": "Visual"}


# ------------------------------------------------------------------------------------------------ data
def load_split(dataset: str, split: str, root, *, store=None, limit: int | None = None, T: int | None = None,
               pad: str | None = None):
    """The records of one split joined with their features: an AVQADataset (preloaded, no negatives)."""
    data_cfg = DataConfig(dataset=dataset, root=str(root), store=str(store) if store else None, limit=limit, T=T,
                          pad=pad)
    with open_store(data_cfg) as feature_store:
        return make_dataset(load_records(data_cfg, split), feature_store, data_cfg, negatives=False, seed=0)


def _batches(data, batch_size: int, device):
    for batch in iterate_batches(data.bank, batch_size):
        yield {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def checkpoint_and_data(checkpoint, dataset, split, root, store=None, limit=None, changes=None):
    """(model, model_config, dataset) of a checkpoint and one split, read with the checkpoint's own T and padding."""
    ckpt = read_checkpoint(checkpoint)
    model, cfg = model_from_checkpoint(ckpt, changes)
    saved = ckpt.get("data_config") or {}
    data = load_split(dataset, split, root, store=store, limit=limit, T=saved.get("T"), pad=saved.get("pad"))
    return model, cfg, data


def _score_model(model, data, device="auto"):
    """The Table II layout table of `model`'s predictions on the AVQADataset `data` (as engine.evaluate)."""
    device = resolve_device(device)
    pred = predict(model.to(device), data, device=device, progress=False)
    return score(data.records, prediction_series(data.records, pred))


def finished_checkpoints(runs_dir, experiment: str = paper.FULL_MODEL_RUN, seeds=None) -> dict[int, Path]:
    """{seed: best.pt} of the finished runs of `experiment` under `runs_dir` (all seeds found, or `seeds`)."""
    found = paper.finished_runs(runs_dir, experiment, seeds)
    return {seed: Path(runs_dir) / experiment / str(seed) / BEST_CHECKPOINT for seed in found
            if (Path(runs_dir) / experiment / str(seed) / BEST_CHECKPOINT).is_file()}


# ------------------------------------------------------------------------------------------------ Fig. 6
@torch.no_grad()
def step_accuracy(checkpoint, dataset: str, split: str = "test", root=".", *, store=None, limit: int | None = None,
                  batch_size: int = 64, device: str = "cpu") -> pd.DataFrame:
    """Accuracy (%) of the model's combined answer read out after each focus step t = 1..T (Fig. 6).

    Step T is the model's own answer; `.attrs["final_accuracy"]` holds the accuracy of out["logits"] for
    comparison (equal to step T up to float rounding). Needs a model with the focus recurrence (use_focus).
    """
    model, cfg, data = checkpoint_and_data(checkpoint, dataset, split, root, store, limit)
    if not (cfg.use_tdpp and cfg.use_focus):
        raise ValueError(f"{checkpoint}: accuracy per focus step needs the focus recurrence (use_tdpp and use_focus); "
                         "this checkpoint's model has none")
    model.to(device)
    correct, final_correct, total = None, 0, 0
    for batch in _batches(data, batch_size, device):
        out = model(batch)
        hits = model.step_logits(batch).argmax(-1) == batch["label"][:, None]  # [B, T]
        correct = hits.sum(0) if correct is None else correct + hits.sum(0)
        final_correct += int((out["logits"].argmax(-1) == batch["label"]).sum())
        total += int(batch["label"].shape[0])
    acc = 100.0 * correct.double().cpu().numpy() / total
    table = pd.DataFrame({"Focus step": np.arange(1, len(acc) + 1), "Accuracy (%)": acc})
    table.attrs["final_accuracy"] = 100.0 * final_correct / total
    table.attrs["questions"] = total
    return table


def step_accuracy_over_seeds(checkpoints: dict, dataset: str, split: str = "test", root=".", **kwargs) -> pd.DataFrame:
    """`step_accuracy` of several checkpoints ({seed: path}) in one long table with a `seed` column."""
    if not checkpoints:
        raise ValueError("no checkpoints given: train the full model first (or check the runs folder)")
    parts = [step_accuracy(path, dataset, split, root, **kwargs).assign(seed=seed) for seed, path in checkpoints.items()]
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------------ Fig. 8
def question_tokens(question: str, dataset: str) -> list[str]:
    """The labels of the word-feature rows of `question` that carry a token: start, one per token, end.

    Synthetic questions have one row per whitespace word (synthetic.question_features); real ones CLIP's
    BPE tokens (open_clip's tokenizer, no weights needed)."""
    if dataset == "synthetic":
        return ["<start>", *question.lower().split(), "<end>"]
    tokenizer = open_clip_module().tokenizer.SimpleTokenizer()
    ids = tokenizer.encode(question_text(question))
    return ["<start>", *[tokenizer.decode([i]).strip() for i in ids], "<end>"]


@torch.no_grad()
def question_word_attention(checkpoint, dataset: str, root, question_id: int, split: str = "test", *,
                            store=None) -> pd.DataFrame:
    """Fig. 8: the preference path's attention over the words of one question, averaged over the T video
    segments: rows Visual / Audio, columns the question's tokens (start and end tokens included) and
    "<padding>", the summed attention on CLIP's zero padding (no mask, as released), so a row sums to 1; `.attrs["question"]`, `["answer"]`, `["prediction"]` describe the example.
    """
    model, cfg, data = checkpoint_and_data(checkpoint, dataset, split, root, store, None)
    if not cfg.use_gpap:
        raise ValueError(f"{checkpoint}: word attention is the preference path's; this model has none (use_gpap=False)")
    rows = np.flatnonzero(data.records["question_id"].to_numpy() == int(question_id))
    if len(rows) == 0:
        raise KeyError(f"question_id {question_id} is not in the {split} split of {dataset} under {root}")
    item = data.bank.gather(torch.as_tensor(rows[:1]))
    out, attention = model(item), model.word_attention(item)
    record = data.records.iloc[int(rows[0])]
    tokens = question_tokens(record["question"], dataset)
    weights = {}
    for m in ("v", "a"):
        if m in attention:
            w = attention[m][0].mean(0).numpy()  # [77], averaged over segments
            # the released model attends to CLIP's zero padding too (no mask): show that mass as one column
            weights[MODALITY_NAMES[m]] = np.append(w[: len(tokens)], w[len(tokens):].sum())
    table = pd.DataFrame(weights, index=tokens + ["<padding>"]).T
    table.attrs.update(question=record["question"], answer=record["answer"],
                       prediction=ANSWERS[int(out["logits"][0].argmax())], video_id=record["video_id"])
    return table


# ------------------------------------------------------------------------------------------------ per template
def template_accuracy(runs_dir, experiments: dict, dataset: str, root, split: str = "test", seeds=None) -> pd.DataFrame:
    """Test accuracy (%) per question template of finished runs ({label: experiment}), from their
    predictions.json: one row per template (modality, type, questions) and per label the mean and sample s.d.
    (ddof=1) over the seeds found, so that one template carrying a type's or a preset's gap is seen."""
    records = load_annotations(dataset, split, root)
    out, seeds_used = None, {}
    for label, name in experiments.items():
        found = paper.finished_runs(runs_dir, name, seeds)
        per_seed = {seed: score_by_template(records, read_predictions(Path(runs_dir) / name / str(seed) /
                                                                      "predictions.json"))
                    for seed in found}
        if not per_seed:
            continue
        first = next(iter(per_seed.values()))
        out = first[["modality", "qtype", "questions"]].copy() if out is None else out
        stacked = pd.concat({s: t["accuracy"] for s, t in per_seed.items()}, axis=1)
        out[(label, "mean")] = stacked.mean(axis=1)
        out[(label, "sd")] = stacked.std(axis=1, ddof=1)
        seeds_used[label] = sorted(per_seed)
    if out is None:
        return pd.DataFrame()
    out.attrs["seeds"] = seeds_used
    return out


# ------------------------------------------------------------------------------------------------ Tables XII / XIII
def experiment_changes(name: str) -> dict:
    """The ModelConfig fields a named experiment changes relative to the full model (`default`)."""
    full, variant = experiment(paper.FULL_MODEL_RUN), experiment(name)
    return {f.name: getattr(variant, f.name) for f in dataclasses.fields(full)
            if getattr(variant, f.name) != getattr(full, f.name)}


# Changes that leave the trained weights valid (ModelConfig fields marked as inference-only): a variant made of
# these alone needs no retraining.
INFERENCE_ONLY_FIELDS = INFERENCE_FIELDS


def inference_variants(table: str, checkpoints: dict, dataset: str, root, split: str = "test", *, store=None,
                       limit: int | None = None, device: str = "auto", progress: bool = False) -> pd.DataFrame:
    """Tables XII / XIII from trained full models: every row of the paper's table whose experiment changes
    only inference (see INFERENCE_ONLY_FIELDS) is scored by re-evaluating the same checkpoints with that
    change (engine.evaluate(changes=...)). Summary columns (A-QA, V-QA, AV-QA, Avg), mean over the seeds of
    `checkpoints` ({seed: best.pt}); `.attrs["seeds"]` lists them per row and `.attrs["changes"]` the change."""
    key = paper.table_key(table)
    if not checkpoints:
        raise ValueError(f"{table}: no checkpoints of the full model given; train `default` first")
    saved = read_checkpoint(next(iter(checkpoints.values()))).get("data_config") or {}
    data = load_split(dataset, split, root, store=store, limit=limit, T=saved.get("T"), pad=saved.get("pad"))
    rows, used, changes = {}, {}, {}
    for label, name in paper.EXPERIMENT_ROWS[key].items():
        change = experiment_changes(name)
        if set(change) - INFERENCE_ONLY_FIELDS:
            raise ValueError(f"{table} row {label!r} ({name}) changes {sorted(change)}: not an inference-only variant")
        scores = [paper.summary_columns(_score_model(load_checkpoint(path, changes=change)[0], data, device))
                  for path in checkpoints.values()]
        rows[label] = pd.concat(scores).mean()
        used[label], changes[label] = sorted(checkpoints), change
    out = pd.DataFrame(rows).T[list(paper.SUMMARY_COLUMNS)]
    out.index.name = paper.paper_table(key).index.name
    out.attrs.update(seeds=used, changes=changes)
    return out


def answer_heads_comparison(checkpoints: dict, dataset: str, root, split: str = "test", *, store=None,
                            limit: int | None = None, device: str = "auto") -> pd.DataFrame:
    """Table VIII's choice named: each checkpoint ({label: best.pt}) scored with answer_heads="all" (the released
    evaluation: every built head is summed, also one whose loss weight is 0 and which stays at its random
    initialisation) and "trained" (those heads left out). Overall accuracy (%) per label and setting."""
    data = load_split(dataset, split, root, store=store, limit=limit)
    rows = {}
    for label, path in checkpoints.items():
        row = {}
        for heads in ("all", "trained"):
            model, cfg = load_checkpoint(path, changes={"answer_heads": heads})
            row[heads] = float(paper.summary_columns(_score_model(model, data, device))["Avg"].iloc[0])
        row["untrained heads"] = ", ".join(h for h in cfg.modalities if getattr(cfg, f"lambda_{h}") == 0
                                           and cfg.use_gpap) or "-"
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def untrained_heads(run_dir) -> list[str]:
    """The preference heads a finished run built but never trained (loss weight 0), from its config.json."""
    model = json.loads((Path(run_dir) / "config.json").read_text())["model"]
    return [h for h in ("a", "v") if model.get("use_gpap") and model.get(f"lambda_{h}") == 0]


def trained_heads_rows(name: str, runs_dir, dataset: str, root, seeds=None, *, store=None,
                       device: str = "auto") -> pd.DataFrame:
    """Overall accuracy (column Avg, mean over seeds) of table `name`'s rows as their TRAINED heads answer
    (answer_heads="trained"): a run that built a preference head it never trained (Table VIII rows 1-4) is
    re-scored from its best.pt; the others' test tables already are. attrs: "per_seed" {row: {seed: {"Avg": v}}}
    (for findings), "rescored" [(row, seed)], "left_out" [(row, seed)]: runs with an untrained head and no best.pt."""
    per_seed, rescored, left_out, data = {}, [], [], None
    for row, experiment in paper.EXPERIMENT_ROWS[name].items():
        for seed, table in paper.finished_runs(runs_dir, experiment, seeds).items():
            run_dir = Path(runs_dir) / experiment / str(seed)
            value = float(paper.summary_columns(table)["Avg"].iloc[0])
            if untrained_heads(run_dir):
                if not (run_dir / BEST_CHECKPOINT).is_file():
                    left_out.append((row, seed))
                    continue
                data = data or load_split(dataset, "test", root, store=store)
                model, _ = load_checkpoint(run_dir / BEST_CHECKPOINT, changes={"answer_heads": "trained"})
                value = float(paper.summary_columns(_score_model(model, data, device))["Avg"].iloc[0])
                rescored.append((row, seed))
            per_seed.setdefault(row, {})[seed] = {"Avg": value}
    out = pd.DataFrame({"Avg": {row: sum(v["Avg"] for v in by.values()) / len(by) for row, by in per_seed.items()}})
    out.attrs.update(per_seed=per_seed, rescored=rescored, left_out=left_out,
                     seeds={row: sorted(by) for row, by in per_seed.items()})
    return out


def table8_checkpoints(runs_dir, seeds=None) -> dict[str, Path]:
    """{"<row>: <losses> (<experiment> seed <s>)": best.pt} of Table VIII's rows whose finished runs (of the row's
    shared run set, experiments.run_for) keep a checkpoint, for `answer_heads_comparison`."""
    names, out = ours_tables.row_names("table8"), {}
    for row, name in paper.EXPERIMENT_ROWS["table8"].items():
        found = finished_checkpoints(runs_dir, name, seeds)
        out.update({f"{row}: {names[row]} ({name} seed {seed})": path for seed, path in found.items()})
    return out


# ------------------------------------------------------------------------------------------------ Fig. 4 proxy
def segment_length_curve(checkpoints: dict, dataset: str, root, lengths, split: str = "test", *, store=None,
                         limit: int | None = None, device: str = "auto") -> pd.DataFrame:
    """Accuracy when a trained model sees only the first t segments of each video, for t in `lengths`.

    Not Fig. 4's experiment (the paper retrains at each length: the `fig4/T*` runs); a cheap view of the same
    question -- how much the answer depends on the amount of audio-visual input -- from one trained model.
    Long table: Segments, seed, and the summary columns A-QA, V-QA, AV-QA, Avg.
    """
    models = {seed: load_checkpoint(path)[0] for seed, path in checkpoints.items()}
    parts = []
    for t in lengths:
        data = load_split(dataset, split, root, store=store, limit=limit, T=int(t))
        for seed, model in models.items():
            parts.append(paper.summary_columns(_score_model(model, data, device)).assign(Segments=int(t), seed=seed))
    if not parts:
        raise ValueError("no checkpoints given: train the full model first (or check the runs folder)")
    out = pd.concat(parts, ignore_index=True)
    return out[["Segments", "seed", *paper.SUMMARY_COLUMNS]]


def fig4_table(truncated: pd.DataFrame, retrained: pd.DataFrame) -> pd.DataFrame:
    """Fig. 4's two curves in one long table with a `Model` column: the inference-only truncation of the full
    model (`segment_length_curve`) and the `fig4/T*` retrainings (`runs_summary` over FIG4_EXPERIMENTS)."""
    parts = [truncated.assign(Model="full model, first t seconds only")]
    if len(retrained):
        segments = retrained["experiment"].str.removeprefix("fig4/T").astype(int)
        parts.append(retrained.drop(columns=["label", "experiment"]).assign(Segments=segments, Model="retrained at t"))
    return pd.concat(parts, ignore_index=True)[["Model", "Segments", "seed", *paper.SUMMARY_COLUMNS]]


# ------------------------------------------------------------------------------------------------ runs -> figures
def runs_summary(runs_dir, experiments: dict, seeds=None) -> pd.DataFrame:
    """Summary columns (A-QA, V-QA, AV-QA, Avg) of finished runs, one row per (label, seed).

    experiments: {row label: experiment name}; labels without a finished run are absent (see `missing_runs`)."""
    parts = []
    for label, name in experiments.items():
        for seed, table in paper.finished_runs(runs_dir, name, seeds).items():
            parts.append(paper.summary_columns(table).assign(label=label, experiment=name, seed=seed))
    if not parts:
        return pd.DataFrame(columns=["label", "experiment", "seed", *paper.SUMMARY_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    return out[["label", "experiment", "seed", *paper.SUMMARY_COLUMNS]]


def missing_runs(runs_dir, experiments, seeds=None) -> list[str]:
    """The experiment names (of a dict's values or a list) with no finished run under `runs_dir`."""
    names = experiments.values() if isinstance(experiments, dict) else experiments
    return [name for name in dict.fromkeys(names) if not paper.finished_runs(runs_dir, name, seeds)]


# {figure x value: run} of the figures' points, from the experiments registry (each entry's `fills`).
FIG5_EXPERIMENTS = registry.filling("fig5")
FIG4_EXPERIMENTS = registry.filling("fig4")
FIG7_WEIGHTS = registry.FIG7_WEIGHTS
FIG7_VALUES = registry.FIG7_VALUES


def fig7_experiments() -> dict:
    """{(weight label, value): experiment}: value 1.0 of every weight is the full model's run."""
    return registry.filling("fig7")


def fig7_table(runs_dir, seeds=None) -> pd.DataFrame:
    """Fig. 7 from finished runs: Weight (lambda name), Value, seed and the summary columns."""
    experiments = fig7_experiments()
    summary = runs_summary(runs_dir, {f"{w}={v}": name for (w, v), name in experiments.items()}, seeds)
    weight_value = summary["label"].str.split("=", expand=True) if len(summary) else pd.DataFrame(columns=[0, 1])
    return summary.assign(Weight=weight_value[0], Value=weight_value[1].astype(float)).drop(columns="label")


# ------------------------------------------------------------------------------------------------ presets
def preset_differences() -> pd.DataFrame:
    """Every difference between the paper's text and what the presets compute, in one table: each ModelConfig
    field on which `official` and `paper` differ (config.PAPER_PRESET), then the settings outside ModelConfig
    and the places where the paper preset rests on our reading (config.PRESET_READINGS). Columns: official,
    paper preset, the paper's words, status ("as written", "our reading", "not as written")."""
    official, paper_cfg = ModelConfig.official(), ModelConfig.paper()
    rows = [(f.name, getattr(official, f.name), getattr(paper_cfg, f.name), PAPER_PRESET[f.name][1],
             "our reading" if "not given" in PAPER_PRESET[f.name][1] else "as written")
            for f in dataclasses.fields(official) if getattr(official, f.name) != getattr(paper_cfg, f.name)]
    rows += [(r.setting, r.official, r.paper_preset, r.words, r.status) for r in config.PRESET_READINGS]
    columns = ["official", "paper preset", "paper's words", "status"]
    return pd.DataFrame(rows, columns=["setting"] + columns).set_index("setting")


def experiment_readings() -> pd.DataFrame:
    """Every experiment of the registry that rests on our reading of the paper: what it changes, the paper cells
    it fills, and the paper's words it interprets (experiments.ENTRIES, `reading`)."""
    rows = [(e.name, e.label, ", ".join(f"{where} {key}" for where, key in e.fills) or "-",
             ", ".join(f"{k}={v}" for k, v in e.changes.items()) or "-", e.reading)
            for e in registry.ENTRIES if e.reading]
    return pd.DataFrame(rows, columns=["experiment", "label", "fills", "changes", "paper's words (our reading)"]
                        ).set_index("experiment")


def parameter_counts(size: str = "full") -> pd.DataFrame:
    """Trainable parameters (millions) of both presets at a named size (config.SIZES), beside the paper's
    Table VI figure for AV-Master (61M)."""
    stated = paper.paper_table("table6").loc[paper.OURS, "Params (millions)"]
    rows = []
    for preset in ("official", "paper"):
        cfg = experiment(paper.FULL_MODEL_RUN, preset, size=size)
        rows.append((preset, cfg.dim, count_parameters(build_model(cfg)) / 1e6, stated))
    return pd.DataFrame(rows, columns=["preset", "dim", "ours (millions)", "paper Table VI (millions)"]).set_index("preset")


@torch.no_grad()
def template_rows_spread(model, batch: dict) -> pd.DataFrame:
    """How different the K focus templates are after each step: max |row_k - row_1| over samples, rows and
    features, per modality and step. The released design (first-frame templates, bias on queries/keys only)
    keeps all K rows identical in eval mode (spread 0 up to float rounding), so K and the bias act only
    through that one row; the paper preset's learned templates keep them apart."""
    was_training, collapse = model.training, getattr(model, "collapse_templates", None)
    model.eval()
    model.collapse_templates = False  # rewrites.AVMasterRewrites: all K rows, not the exact one-row shortcut
    try:
        steps = model.focus_steps(model.embed_inputs(batch).feats)
    finally:
        model.train(was_training)
        model.collapse_templates = collapse
    rows = []
    for m, states in steps.items():
        for t, z in enumerate(states, start=1):  # z [B, K, D]
            rows.append((MODALITY_NAMES[m], t, float((z - z[:, :1]).abs().amax()), float(z.abs().amax())))
    return pd.DataFrame(rows, columns=["modality", "step", "max |row_k - row_1|", "max |row|"])


@torch.no_grad()
def bias_effect(model, batch: dict, scale: float = 1.0, seed: int = 0) -> float:
    """Largest change of any answer logit when the focus bias tables get random values of size `scale`
    (eval mode). 0 (up to float rounding) means the learned bias has no effect at inference."""
    was_training = model.training
    model.eval()
    try:
        before = model(batch)["logits"]
        saved = {name: p.detach().clone() for name, p in model.named_parameters() if "focus_bias" in name}
        if not saved:
            raise ValueError("the model has no focus bias (use_focus=False?)")
        generator = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(scale * torch.randn(p.shape, generator=generator).to(p))
        after = model(batch)["logits"]
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(saved[name])
    finally:
        model.train(was_training)
    return float((after - before).abs().amax())


def presets_table(runs_dir, seeds=None) -> pd.DataFrame:
    """The full model trained with each preset (runs `default` and `paper/default`): mean summary columns
    over seeds, with the number of seeds; presets without a finished run are absent."""
    summary = runs_summary(runs_dir, {"official": paper.FULL_MODEL_RUN, "paper": f"paper/{paper.FULL_MODEL_RUN}"},
                           seeds)
    if summary.empty:
        return pd.DataFrame(columns=[*paper.SUMMARY_COLUMNS, "seeds"]).rename_axis("preset")
    grouped = summary.groupby("label", sort=False)
    out = grouped[list(paper.SUMMARY_COLUMNS)].mean()
    out["seeds"] = grouped["seed"].count()
    return out.rename_axis("preset")


# ------------------------------------------------------------------------------------------------ display helpers
def run_histories(runs_dir, experiment: str = paper.FULL_MODEL_RUN, seeds=None) -> pd.DataFrame:
    """metrics.jsonl of the finished runs of `experiment` in one long table (one row per seed and epoch)."""
    parts = []
    for seed in paper.finished_runs(runs_dir, experiment, seeds):
        path = Path(runs_dir) / experiment / str(seed) / "metrics.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
        parts.append(pd.DataFrame(lines).assign(seed=seed))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["epoch", "seed"])


def with_paper_fig5(ours: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5 as a table: rows A+Q / V+Q / A+V+Q, the paper's AV-Master Avg (A+Q and V+Q as Fig. 5 states
    them; A+V+Q is the full model, Table II's overall average, 78.51) beside our mean summary columns (from
    `runs_summary` over FIG5_EXPERIMENTS)."""
    stated = paper.paper_table("fig5").set_index("Input")["Accuracy"].reindex(list(FIG5_EXPERIMENTS))
    stated["A+V+Q"] = float(paper.paper_table("table2").loc[paper.OURS, ("Overall", "Avg")])
    mean = ours.groupby("label", sort=False)[list(paper.SUMMARY_COLUMNS)].mean() if len(ours) else \
        pd.DataFrame(columns=list(paper.SUMMARY_COLUMNS), dtype=float)
    table = pd.DataFrame(index=pd.Index(list(FIG5_EXPERIMENTS), name="Input"))
    table[("paper", "Avg")] = stated.reindex(table.index)
    for column in paper.SUMMARY_COLUMNS:
        table[("ours", column)] = mean[column].reindex(table.index) if column in mean else np.nan
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["source", None])
    return table


# ------------------------------------------------------------------------------------------------ AVQA (Table V)
# The multiple-choice designs compared on the synthetic multiple-choice variant (docs/avqa.md), by label.
AVQA_EXPERIMENTS = {"position-only (candidates unseen)": "avqa/position_only",
                    "question-only, candidates scored (match)": "avqa/question_only",
                    "AV-Master, dot (our reading, default)": registry.MULTIPLE_CHOICE_MODEL,
                    "AV-Master, match (alternative)": "avqa/choices_match"}
SMOKE_MC_COMMANDS = (
    "avmaster synth --choices 4 --out data/synthetic_mc",
    "OMP_NUM_THREADS=1 avmaster sweep --seeds 1 2 3 --size cpu --dataset synthetic_mc --root data/synthetic_mc "
    "--device cpu --epochs 10 --lr 1e-3 --batch-size 32 --out results/runs/synthetic_mc --experiments "
    + " ".join(AVQA_EXPERIMENTS.values()))


def avqa_comparison(runs_dir, seeds=None) -> pd.DataFrame:
    """Test accuracy (%) of each multiple-choice design with runs under `runs_dir`: mean and sample std (ddof=1)
    over seeds, the number of seeds; designs without a run are absent."""
    rows = {}
    for label, name in AVQA_EXPERIMENTS.items():
        runs = paper.finished_runs(runs_dir, name, seeds)
        if runs:
            accuracy = pd.Series([float(paper.in_table_layout("table5", t).iloc[0, 0]) for t in runs.values()])
            rows[label] = {"experiment": name, "mean": accuracy.mean(), "std (ddof=1)": accuracy.std(ddof=1),
                           "seeds": len(accuracy)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["experiment", "mean", "std (ddof=1)", "seeds"])


def avqa_runs(settings) -> Path:
    """Where a notebook's multiple-choice runs are: the smoke tier's `settings.runs` (the synthetic variant's
    shipped runs), else the AVQA runs of `avmaster reproduce`, `<RUNS>/avqa/standard[/paper]/` (the folders
    `reproduce_report.ours_for("table5")` reads)."""
    if settings.smoke:
        return Path(settings.runs)
    folder = Path(settings.runs_root) / protocol("avqa", "standard").folder()
    return folder / "paper" if settings.preset == "paper" else folder


def table5_ours(settings) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(ours, its sample std over seeds, the commands that make the missing runs or None) of Table V for a
    notebook's settings, from the runs of `avqa_runs(settings)` (on the synthetic variant, Table II layout: the
    overall average is the total accuracy), whatever recipe they were trained with."""
    mean, std = ours_tables.ours_rows("table5", avqa_runs(settings), settings.seeds)
    todo = "\n".join(SMOKE_MC_COMMANDS) if settings.smoke else \
        f"avmaster reproduce run --only table5 --data {settings.root.parent} --runs {settings.runs_root}"
    return mean, std, None if len(mean) else todo

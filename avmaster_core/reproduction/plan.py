"""The whole paper from features: what every table and figure needs, what exists, what is missing, and
`avmaster reproduce plan|run` (`make reproduce`).

    from avmaster_core.reproduction.plan import ReproduceSettings, build_plan
    plan = build_plan(ReproduceSettings(data="data", seeds=(1, 2, 3)), only=["table7", "fig4"])
    print(report.render_plan(plan))  # one line per item: status, what it needs first, estimated GPU hours

A plan is made of *artefacts* (Tables II-V, VII-XIII, Figs. 4-8) and the *items* that fill them:

    questions  CLIP question features of texts that have none yet (MUSIC-AVQA-R's rephrasings, ...), batched
               and resumable (extract.pipeline.extract_questions, the originals' text path)
    train      one run: dataset, training split protocol, experiment, preset, seed -> a run folder
               (engine.train with resume: a finished run is never redone, an interrupted one resumes)
    evaluate   a finished run's best checkpoint scored on another split or dataset (Table III: MUSIC-AVQA-R;
               Table IV: the other test set) or with an inference-only change (Tables XII, XIII)

The plan keeps no list of its own. Which experiment fills which row or figure point, and which only re-score
the full model, comes from the experiments registry (avmaster_core.core.experiments: `fills`, `inference_only`);
Tables III-V, whose rows are benchmarks, from the dataset registry (avmaster_core.data.dataset_registry: each
benchmark's table, splits and subsets give its training protocols and test sets). An item shared by several
artefacts (the full model's run) appears once.

Where things live (all under the settings' folders):
    <data>/<dataset>/                      annotation files and features.h5 (MUSIC-AVQA-R: MUSIC-AVQA's store)
    <runs>/<experiment>/<seed>/            MUSIC-AVQA runs (what the notebooks read), paper preset: paper/...
    <runs>/<dataset>/<protocol>/<experiment>/<seed>/   runs on the other benchmarks
    <results>/eval/<label>/<seed>/         evaluations: predictions.json, <split>_table.csv
    <results>/reproduce/<artefact>.csv     the paper beside ours, assembled from the two above

GPU time: each missing item's training steps (epochs x ceil(questions / batch)) and inference batches of 64,
times a step time at the item's T and batch. The speed at the reference shape (T = 60, batch 64) is given with
`--train-speed/--infer-speed` (e.g. from `avmaster benchmark --gpu-suite`); else measured on this plan's own
finished runs (metrics.jsonl); else the only GPU figure measured so far, the released code on one H200
(docs/released-code.md §11: 151 train / 631 inference samples/s, fp32, batch 64; `benchmark.RELEASED_H200`).
Other shapes are scaled from measured figures (`step_scale`): the step is launch-bound, so with T as the
operator calls per step (counted: benchmark.OPERATOR_CALLS) and with batch as the released step between batch
32 (414 ms) and 64 (424 ms).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import experiments
from ..core.config import PRESET_TRAINING
from ..core.experiments import experiment
from ..core.store import FeatureStore
from ..data import dataset_registry
from ..data.annotations import MissingAnnotationFile, annotation_files, load_annotations
from ..data.dataset_registry import MAIN_DATASET, REUSES, Protocol, get, main_protocol, protocol, protocols
from ..extract.encoders import AUDIO_ENCODERS, VISUAL_ENCODERS
from ..results import paper
from ..results.notebooks import find_notebooks
from ..results.paper import paper_table, table_key
from ..training.benchmark import OPERATOR_CALLS, RELEASED_H200
from ..training.engine import DataConfig, TrainConfig
from ..training.run_config import LAST_CHECKPOINT
from ..training.sweep import grid_config_differences, grid_configs, run_name
from .worklock import WorkLock, describe_holder

LOCK_NAME = ".reproduce.lock"
REPO_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # the repository's notebooks/ (an editable install)
REFERENCE_SHAPE = (60, 64)   # (T, batch) of every speed figure: the released code's measured shape
# Status words, in the order a person cares about them.
FINISHED, RUNNING, INTERRUPTED, READY, WAITING, BLOCKED, CONFLICT = (
    "finished", "running", "interrupted", "missing", "waiting", "blocked", "conflict")
# Paper rows on features from other encoders than CLIP-L/14@336 + VGGish (Table XI): each has a features item.
OTHER_ENCODER_ROWS = {"table11": "rows with ResNet-18, CLIP-B, CLAP or InternVideo2 features train on a store made "
                                 "with those encoders (a 'video features' item: `avmaster extract` on the videos); "
                                 "extraction time is not in the GPU hours (no measured GPU extraction speed)"}
# Figures drawn by their notebook from the full model's checkpoints, beyond (or instead of) their runs.
NOTEBOOK_CELL = "full model, for the notebook"  # the cell that makes a notebook-only figure wait for its runs
NOTEBOOK_ONLY = {"fig4": "the inference-only curve (first t seconds) is computed by the notebook",
                 "fig6": "accuracy per focus step of the full model, computed by the notebook",
                 "fig8": "word attention of the full model, computed by the notebook"}


# -------------------------------------------------------------------------------------------------------------
# What fills what: the experiments registry (Tables II, VII-XIII, Figs. 4-8) and the dataset registry
# (Tables III-V: one benchmark each, in the layout its DatasetSpec scores)
# -------------------------------------------------------------------------------------------------------------
def artefacts() -> tuple[str, ...]:
    """Every table and figure a run can fill, in the paper's order."""
    filled = set(experiments.sources()) | {s.table for s in dataset_registry.SPECS} | set(NOTEBOOK_ONLY)
    return tuple(name for name in paper.NAMES if name in filled)


def dataset_tables() -> dict[str, list[str]]:
    """{table: [benchmarks scored in its layout]} for the tables no experiment fills (III, IV, V)."""
    out: dict[str, list[str]] = {}
    for spec in dataset_registry.SPECS:
        if spec.table not in experiments.sources() and spec.files:  # files: an official benchmark
            out.setdefault(spec.table, []).append(spec.name)
    return out


def not_yet(artefact: str) -> str | None:
    """Why an artefact cannot be produced whatever is on disk (None: it can): a multiple-choice benchmark
    (answers are each question's candidates) whose model would not score the candidates."""
    for name in dataset_tables().get(artefact, []):
        model = dataset_registry.full_model_for(name)
        if not dataset_registry.get(name).answers_in_vocab and experiment(model).choice_scorer is None:
            return (f"{dataset_registry.get(name).title} is multiple choice but {model} has no choice_scorer: a "
                    "classifier over answers cannot score each question's candidates (docs/avqa.md)")
    return None


def dataset_cells(table: str) -> list[tuple[Any, Protocol, str, str]]:
    """[(row label, training protocol, benchmark scored, its split)] of a table of whole benchmarks: the full
    model trained with each protocol of the benchmark (or of the one it reuses), scored on each test subset.
    A table indexed by (Test, Training, method) gets one row per pair (Table IV's 2 x 2 grid)."""
    out = []
    grid = list(paper.paper_table(table).index.names) == ["Test", "Training", paper.METHOD]
    for name in dataset_tables().get(table, []):
        spec = dataset_registry.get(name)
        for test in spec.subsets or (None,):
            split = "test" if test is None else f"test_{test}"
            for proto in protocols(REUSES.get(name, name)):
                label = (test.capitalize(), proto.name.capitalize(), experiments.OURS) if grid else experiments.OURS
                out.append((label, proto, name, split))
    return out


def cells(artefact: str) -> list[tuple[Any, str, dict, str]]:
    """[(row label or x value, experiment whose run gives it, inference-only ModelConfig changes, experiment
    name)] of one table or figure, from the experiments registry (inference-only rows re-score the full
    model's run with their changes)."""
    out = []
    for key, run in experiments.filling(artefact).items():
        entry = next(e for e in experiments.ENTRIES if (artefact, key) in e.fills)
        if entry.inference_only:
            out.append((key, experiments.FULL_MODEL, dict(entry.changes), entry.name))
        else:
            out.append((key, run, {}, run))
    if artefact in NOTEBOOK_ONLY and not any(run == experiments.FULL_MODEL for _, run, _, _ in out):
        out.append((NOTEBOOK_CELL, experiments.FULL_MODEL, {}, experiments.FULL_MODEL))
    return out


# -------------------------------------------------------------------------------------------------------------
# Settings and item specifications
# -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReproduceSettings:
    """Where data, runs and results live, and the training recipe of every run (engine.TrainConfig's defaults
    unless set: the authors' 30 epochs, Adam 1e-4, batch 64)."""

    data: str = "data"                   # <data>/<dataset>/ holds annotation files and features.h5
    runs: str = "results/runs"
    results: str = "results"
    seeds: tuple[int, ...] = (1, 2, 3)
    preset: str = "official"
    size: str = "full"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    limit: int | None = None             # first N questions of every split (rehearsals)
    train_on: str = "train"              # "val": train on the validation file (a rehearsal without train files)
    stores: tuple[tuple[str, str], ...] = ()   # (dataset, store path) overrides
    encoders: str = "real"               # question features: "real" CLIP ViT-L/14@336 or "tiny" (tests)
    clip_weights: str | None = None
    train_speed: float | None = None     # samples/s; None: measured on finished runs, else the released code's
    infer_speed: float | None = None
    progress: bool = False

    def root(self, dataset: str) -> Path:
        return Path(self.data) / dataset

    def store(self, dataset: str, features: tuple[str, str] | None = None) -> Path:
        """The dataset's feature store; `features` (visual, audio encoder names, Table XI): the store made with
        those encoders, <data>/<dataset>/features-<visual>-<audio>.h5 (or --store DATASET:<visual>-<audio>=PATH)."""
        given = dict(self.stores)
        owner = REUSES.get(dataset, dataset)
        if features:
            name = "-".join(features)
            return Path(given.get(f"{owner}:{name}", self.root(owner) / f"features-{name}.h5"))
        if dataset in given:
            return Path(given[dataset])
        return Path(given.get(owner, self.root(owner) / "features.h5"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReproduceSettings":
        d = dict(d)
        d["seeds"] = tuple(d.get("seeds", ()))
        d["stores"] = tuple(tuple(p) for p in d.get("stores", ()))
        return cls(**d)


@dataclass(frozen=True)
class RunSpec:
    """One training run."""

    dataset: str
    protocol: str
    experiment: str
    preset: str
    seed: int

    @property
    def proto(self) -> Protocol:
        return protocol(self.dataset, self.protocol)

    @property
    def features(self) -> tuple[str, str] | None:
        """(visual, audio) encoders of the features it trains on (Table XI rows); None: the dataset's store."""
        return experiments.get(self.experiment).features

    def store(self, settings: ReproduceSettings) -> Path:
        return settings.store(self.dataset, self.features)

    @property
    def name(self) -> str:
        return run_name(self.experiment, self.preset)

    def folder(self, settings: ReproduceSettings) -> Path:
        prefix = self.proto.folder()
        return Path(settings.runs) / prefix / self.name / str(self.seed) if prefix else \
            Path(settings.runs) / self.name / str(self.seed)

    @property
    def key(self) -> str:
        where = "" if self.dataset == MAIN_DATASET else f" on {self.dataset}/{self.protocol}"
        return f"train {self.name}{where} seed {self.seed}"

    def describe(self) -> str:
        return f"{self.key} (train on {self.proto.train}, select on {self.proto.val or 'the last epoch'}, " \
               f"test on {self.proto.test})"


@dataclass(frozen=True)
class EvalSpec:
    """A finished run's best checkpoint scored on (dataset, split), optionally with inference-only changes."""

    run: RunSpec
    dataset: str
    split: str
    label: str                              # folder under <results>/eval/
    changes: tuple[tuple[str, Any], ...] = ()

    def folder(self, settings: ReproduceSettings) -> Path:
        return Path(settings.results) / "eval" / self.label / str(self.run.seed)

    def table_path(self, settings: ReproduceSettings) -> Path:
        return self.folder(settings) / f"{self.split}_table.csv"

    @property
    def key(self) -> str:
        return f"evaluate {self.label} seed {self.run.seed}"

    def describe(self) -> str:
        change = ", ".join(f"{k}={v}" for k, v in self.changes)
        return f"{self.key}: {self.run.key} scored on {self.dataset} {self.split}" + \
            (f" with {change}" if change else "")


@dataclass(frozen=True)
class QuestionSpec:
    """CLIP question features for the records of (dataset, splits) that have none in the dataset's store."""

    dataset: str
    splits: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"question features {self.dataset} ({', '.join(self.splits)})"

    def describe(self) -> str:
        return f"{self.key}: CLIP text features of the questions that have none"


@dataclass(frozen=True)
class FeatureSpec:
    """Video (and question) features of a dataset made with other encoders than the default (Table XI rows): a
    store of its own. The plan cannot make it (it needs the videos): it says the command."""

    dataset: str
    visual: str
    audio: str

    @property
    def key(self) -> str:
        return f"video features {self.dataset} ({self.visual} + {self.audio})"

    def describe(self) -> str:
        return f"{self.key}: `avmaster extract` with --visual-encoder {self.visual} --audio-encoder {self.audio}"

    def command(self, settings: ReproduceSettings) -> str:
        return (f"avmaster extract --videos <{self.dataset} videos> --visual-encoder {self.visual} --audio-encoder "
                f"{self.audio} --questions {self.dataset} --root {settings.root(self.dataset)} --out "
                f"{settings.store(self.dataset, (self.visual, self.audio))}")


SPEC_KINDS = {"train": RunSpec, "evaluate": EvalSpec, "questions": QuestionSpec, "features": FeatureSpec}


def spec_to_dict(spec) -> dict:
    kind = next(k for k, cls in SPEC_KINDS.items() if isinstance(spec, cls))
    return {"kind": kind, **json.loads(json.dumps(dataclasses.asdict(spec), default=list))}


def spec_from_dict(d: dict):
    d = dict(d)
    kind = d.pop("kind")
    if kind == "evaluate":
        d["run"] = RunSpec(**d["run"])
        d["changes"] = tuple(tuple(c) for c in d.get("changes", ()))
    if kind == "questions":
        d["splits"] = tuple(d["splits"])
    return SPEC_KINDS[kind](**d)


@dataclass
class Item:
    """One unit of work of the plan and what is known about it now."""

    spec: Any
    artefacts: list[str] = field(default_factory=list)
    status: str = READY
    needs: list[str] = field(default_factory=list)   # what it needs first, in words
    after: list[str] = field(default_factory=list)   # keys of plan items it waits for
    questions: int = 0                               # questions it processes (train: one epoch)
    work: tuple[float, float] = (0.0, 0.0)           # training steps left, inference batches (of 64) left
    shape: tuple[int, int] = REFERENCE_SHAPE          # (T, training batch) the work runs at
    hours: float = 0.0                               # estimated GPU hours left (Speed.hours)
    result: str = ""

    @property
    def kind(self) -> str:
        return spec_to_dict(self.spec)["kind"]

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def todo(self) -> bool:
        return self.status in (READY, INTERRUPTED, WAITING)


# -------------------------------------------------------------------------------------------------------------
# What is on disk
# -------------------------------------------------------------------------------------------------------------
class Inventory:
    """Annotation records per (dataset, split) and feature keys per store, each read once per plan."""

    def __init__(self, settings: ReproduceSettings):
        self.settings = settings
        self._records: dict = {}
        self._keys: dict = {}

    def records(self, dataset: str, split: str):
        """The split's records (cut to the settings' limit), or None when its annotation file is absent."""
        if (dataset, split) not in self._records:
            try:
                records = load_annotations(dataset, split, self.settings.root(dataset))
                if self.settings.limit is not None:
                    records = records.iloc[: self.settings.limit].reset_index(drop=True)
            except MissingAnnotationFile:
                records = None
            self._records[dataset, split] = records
        return self._records[dataset, split]

    def missing_files(self, dataset: str, splits) -> list[str]:
        return list(dict.fromkeys(name for split in splits if self.records(dataset, split) is None  # AVQA: train
                                  for name, _, _ in annotation_files(dataset, split)))          # and val: one file

    def annotation_need(self, dataset: str, missing: list[str]) -> str:
        """What to say about absent annotation files: their names and the command that fetches them."""
        return f"annotations: {', '.join(missing)} (`{get(dataset).obtain_command(self.settings.root(dataset))}`)"

    def keys(self, store: Path, kind: str) -> set[str] | None:
        """The item names of one kind in a store; None when the store is absent or cannot be read now (another
        process writing it holds HDF5's lock)."""
        if (store, kind) not in self._keys:
            try:
                with FeatureStore(store, "r") as opened:
                    self._keys[store, kind] = set(opened.keys(kind))
            except (FileNotFoundError, OSError):
                self._keys[store, kind] = None
        return self._keys[store, kind]

    def store_need(self, store: Path) -> str:
        """Why a store cannot be used: absent, or present but unreadable now."""
        if store.is_file():
            return f"features: store {store} cannot be read now (being written by another process?)"
        return f"features: store {store} absent (`avmaster extract --videos ...` or `avmaster store import`)"

    def forget(self) -> None:
        """Re-read everything next time (after items have written features or runs)."""
        self._keys.clear()

    def questions(self, dataset: str, split: str) -> int:
        """Questions in a split: the file's when present, else the paper's Table I (limit applied)."""
        records = self.records(dataset, split)
        if records is not None:
            return len(records)
        column = {"train": "# Train QA", "val": "# Valid QA", "test": "# Test QA"}.get(split.split("_")[0], "# Test QA")
        column, share = get(dataset).table1_counts.get(split, (column, 1.0))  # AVQA: train/val share train_qa.json
        value = paper_table("table1").loc[get(dataset).title, column]
        n = 0 if pd.isna(value) else round(int(value) * share)
        return n if self.settings.limit is None else min(n, self.settings.limit)

    def feature_gaps(self, dataset: str, splits, store: Path | None = None) -> tuple[list[str], int]:
        """(needs that the plan cannot make: store or video features, number of questions without features; a
        multiple-choice question also needs its candidates' features). store: the dataset's by default."""
        store = store or self.settings.store(dataset)
        found = {kind: self.keys(store, kind) for kind in ("audio", "visual", "question", "words", "choices")}
        if found["audio"] is None:
            return [self.store_need(store)], 0
        videos, questions = set(), 0
        for split in splits:
            records = self.records(dataset, split)
            if records is None:
                continue
            audio_ids = records["audio_video_id"] if "audio_video_id" in records else records["video_id"]
            videos |= {f"audio {v}" for v in audio_ids.astype(str) if v not in found["audio"]}
            videos |= {f"visual {v}" for v in records["video_id"].astype(str) if v not in found["visual"]}
            ids = records["question_id"].astype(str)
            have = ids.isin(found["question"]) & ids.isin(found["words"])
            if "choices" in records:  # multiple choice (AVQA): the candidates' features come with the question's
                have &= ids.isin(found["choices"] or set())
            questions += int((~have).sum())
        needs = [f"features: {len(videos)} video feature(s) missing in {store} (e.g. {sorted(videos)[0]}; "
                 "`avmaster extract --videos ...`)"] if videos else []
        return needs, questions


# -------------------------------------------------------------------------------------------------------------
# GPU time
# -------------------------------------------------------------------------------------------------------------
def step_scale(kind: str, segments: int, batch: int = REFERENCE_SHAPE[1]) -> float:
    """Time of one training step ("train", at `batch`) or one inference batch of 64 ("infer") at T = `segments`,
    relative to the reference shape (T = 60, batch 64). From measured figures: the step is launch-bound, so it
    scales with the operator calls per step (benchmark.OPERATOR_CALLS, a + b T, counted) and with batch as the
    released code's H200 step did between its two measured batches (414 ms at 32, 424 ms at 64; linear in
    between and beyond)."""
    a, b = OPERATOR_CALLS[kind]
    scale = (a + b * segments) / (a + b * REFERENCE_SHAPE[0])
    if kind == "train":
        at32, at64 = RELEASED_H200["train_ms_b32"], RELEASED_H200["train_ms_b64"]
        scale *= (at32 + (at64 - at32) * (batch - 32) / 32) / at64
    return scale


@dataclass(frozen=True)
class Speed:
    train: float   # training samples/s at the reference shape (T = 60, batch 64)
    infer: float   # inference samples/s at the reference shape
    source: str

    @classmethod
    def of(cls, settings: ReproduceSettings) -> "Speed":
        train, infer = RELEASED_H200["train_samples_per_s_b64"], RELEASED_H200["infer_samples_per_s_b64"]
        source = (f"the released code on one H200 (fp32, T = 60, batch 64, docs/released-code.md §11): {train:.0f} "
                  f"train / {infer:.0f} inference samples/s; our fast path has no GPU figure yet "
                  "(--train-speed/--infer-speed)")
        if settings.train_speed or settings.infer_speed:
            train, infer = settings.train_speed or train, settings.infer_speed or infer
            source = f"given: {train:.0f} train / {infer:.0f} inference samples/s at T = 60, batch 64"
        return cls(train, infer, source + _SCALING)

    def step_seconds(self, segments: int, batch: int) -> float:
        """One training step at T = segments and this batch."""
        return REFERENCE_SHAPE[1] / self.train * step_scale("train", segments, batch)

    def batch_seconds(self, segments: int) -> float:
        """One inference batch of 64 at T = segments."""
        return REFERENCE_SHAPE[1] / self.infer * step_scale("infer", segments)

    def hours(self, work: tuple[float, float], segments: int = REFERENCE_SHAPE[0],
              batch: int = REFERENCE_SHAPE[1]) -> float:
        """Hours for (training steps, inference batches of 64) at T = segments, training batch `batch`."""
        return (work[0] * self.step_seconds(segments, batch) + work[1] * self.batch_seconds(segments)) / 3600

    @classmethod
    def measured(cls, plan: "Plan") -> "Speed | None":
        """The speed of this plan's own finished runs (median over their epochs; metrics.jsonl), brought to the
        reference shape with step_scale: once the first run has finished on the user's GPU, the estimate follows
        that GPU instead of the released code's."""
        inventory, train, infer = plan.inventory or Inventory(plan.settings), [], []
        for item in plan.item_list(("train",)):
            metrics = item.spec.folder(plan.settings) / "metrics.jsonl"
            if item.status != FINISHED or not metrics.is_file():
                continue
            segments, batch = item.shape
            n_val = inventory.questions(item.spec.dataset, item.spec.proto.val) if item.spec.proto.val else 0
            for row in (json.loads(line) for line in metrics.read_text().splitlines() if line.strip()):
                train.append(row["samples_per_s"] * REFERENCE_SHAPE[1] / batch * step_scale("train", segments, batch))
                if n_val and row.get("eval_seconds"):
                    infer.append(n_val / row["eval_seconds"] * step_scale("infer", segments))
        if not train or not infer:
            return None
        runs = len({i.key for i in plan.item_list(("train",)) if i.status == FINISHED})
        t, i = statistics.median(train), statistics.median(infer)
        return cls(t, i, f"the measured speed of this plan's {runs} finished run(s) (metrics.jsonl), brought to "
                         f"T = 60, batch 64: {t:.0f} train / {i:.0f} inference samples/s" + _SCALING)


_SCALING = ("; other T and batches scaled by the operator calls per step (counted, benchmark.OPERATOR_CALLS) and "
            "the released step's batch-32/64 figures (414/424 ms)")


def segments_of(spec) -> int:
    """T of the features an item reads: the experiment's own (Fig. 4) or its benchmark's (DatasetSpec.segments)."""
    run = spec.run if isinstance(spec, EvalSpec) else spec
    dataset = spec.dataset
    return experiments.get(run.experiment).segments or dataset_registry.get(REUSES.get(dataset, dataset)).segments


# -------------------------------------------------------------------------------------------------------------
# The plan
# -------------------------------------------------------------------------------------------------------------
@dataclass
class Artefact:
    """One table or figure: which items fill which of its cells, and what else it needs."""

    name: str
    cells: list[tuple[Any, list[str]]] = field(default_factory=list)   # (row label / x value, item keys by seed)
    notes: list[str] = field(default_factory=list)
    notebook: Path | None = None


@dataclass
class Plan:
    settings: ReproduceSettings
    artefacts: dict[str, Artefact]
    items: dict[str, Item]
    speed: Speed
    inventory: "Inventory | None" = None   # what was read from disk (annotations stay; features are re-read)

    def item_list(self, kinds=("features", "questions", "train", "evaluate")) -> list[Item]:
        """Items in the order they must run: video features (other encoders), question features, trainings,
        evaluations."""
        return [i for kind in kinds for i in self.items.values() if i.kind == kind]

    def todo(self) -> list[Item]:
        return [i for i in self.item_list() if i.todo]

    def hours_left(self) -> float:
        return sum(i.hours for i in self.items.values() if i.todo or i.status == BLOCKED)

    def artefact_items(self, name: str) -> list[Item]:
        keys = dict.fromkeys(k for _, ks in self.artefacts[name].cells for k in ks)
        return [self.items[k] for k in keys]

    def complete(self, name: str) -> bool:
        items = self.artefact_items(name)
        return bool(items) and all(i.status == FINISHED for i in items) and not_yet(name) is None



def select_artefacts(only) -> list[str]:
    """The artefacts named in `only` ("table7", "table_7", "fig4": paper.table_key spellings), all if empty."""
    known = artefacts()
    if not only:
        return list(known)
    chosen = []
    for name in only:
        key = table_key(name)
        if key not in known:
            raise KeyError(f"{name}: not reproduced by runs (paper-only); choose among {', '.join(known)}")
        chosen.append(key)
    return list(dict.fromkeys(chosen))


def build_plan(settings: ReproduceSettings, only=None) -> Plan:
    """Every artefact of `only` (all by default), its items, and each item's status on disk now."""
    artefacts, items = {}, {}
    folder = REPO_NOTEBOOKS
    notebooks = notebook_of_artefacts(find_notebooks(folder)) if folder.is_dir() else {}
    for name in select_artefacts(only):
        art = artefacts[name] = Artefact(name, notebook=notebooks.get(name))
        for label, specs in _artefact_specs(name, settings):
            art.cells.append((label, [s.key for s in specs]))
            for spec in specs:  # a run shared by several cells (Fig. 7's four 1.0 points) is one item
                item = items.setdefault(spec.key, Item(spec))
                item.artefacts += [] if name in item.artefacts else [name]
        art.notes += [text for text in (not_yet(name), OTHER_ENCODER_ROWS.get(name), NOTEBOOK_ONLY.get(name)) if text]
    _add_run_items(items)
    _add_feature_items(items)
    _add_question_items(items, settings)
    plan = Plan(settings, artefacts, items, Speed.of(settings), Inventory(settings))
    refresh(plan)
    return plan


def notebook_of_artefacts(notebooks) -> dict[str, Path]:
    """{artefact: notebook} from the notebook names (10_table2_..., 19_table12_13_..., 20_fig4_...)."""
    found = {}
    for nb in notebooks:
        match = re.match(r"\d\d_((?:table|fig)(\d+)(?:_(\d+))?)_", nb.name)
        if match:
            kind = "table" if match.group(1).startswith("table") else "fig"
            for number in filter(None, match.group(2, 3)):
                found.setdefault(f"{kind}{number}", nb)
    return found


def _artefact_specs(name: str, settings: ReproduceSettings) -> list[tuple[Any, list]]:
    """[(cell label, [spec per seed])]: the run or evaluation whose test table gives each cell."""
    out = []
    if name in dataset_tables():
        for label, proto, dataset, split in dataset_cells(name):
            model = dataset_registry.full_model_for(proto.dataset)  # AVQA: the multiple-choice model (avqa/choices)
            runs = [RunSpec(proto.dataset, proto.name, model, settings.preset, s) for s in settings.seeds]
            if dataset == proto.dataset and split == proto.test:
                out.append((label, runs))
            else:
                trained = "" if proto.dataset == MAIN_DATASET else f"{proto.name}-trained-"
                tag = run_name(f"{name}/{trained}{dataset}-{split}", settings.preset)
                out.append((label, [EvalSpec(r, dataset, split, tag) for r in runs]))
        return out
    main = main_protocol()
    for label, experiment, changes, entry in cells(name):
        runs = [RunSpec(main.dataset, main.name, experiment, settings.preset, s) for s in settings.seeds]
        if changes:
            tag = run_name(entry, settings.preset)
            out.append((label, [EvalSpec(r, main.dataset, main.test, tag, tuple(sorted(changes.items())))
                                for r in runs]))
        else:
            out.append((label, runs))
    return out


def _add_run_items(items: dict[str, Item]) -> None:
    """Every evaluation's run becomes an item too (it fills no cell itself but must exist)."""
    for item in list(items.values()):
        if isinstance(item.spec, EvalSpec):
            run = items.setdefault(item.spec.run.key, Item(item.spec.run))
            run.artefacts += [a for a in item.artefacts if a not in run.artefacts]


def _add_feature_items(items: dict[str, Item]) -> None:
    """A run on other encoders' features (Table XI) needs their store: one item per (dataset, encoders)."""
    for item in list(items.values()):
        if isinstance(item.spec, RunSpec) and item.spec.features:
            feature = items.setdefault(FeatureSpec(item.spec.dataset, *item.spec.features).key,
                                       Item(FeatureSpec(item.spec.dataset, *item.spec.features)))
            feature.artefacts += [a for a in item.artefacts if a not in feature.artefacts]


def _splits_used(item: Item, settings: ReproduceSettings) -> tuple[str, list[str]]:
    """(dataset, splits) whose records and features an item reads."""
    spec = item.spec
    if isinstance(spec, RunSpec):
        proto = spec.proto
        train = proto.val if settings.train_on == "val" and proto.val else proto.train
        return spec.dataset, list(dict.fromkeys(s for s in (train, proto.val, proto.test) if s))
    return spec.dataset, [spec.split]


def _add_question_items(items: dict[str, Item], settings: ReproduceSettings) -> None:
    """One question-features item per dataset, over every split the plan reads from it."""
    splits: dict[str, list[str]] = {}
    for item in list(items.values()):
        if isinstance(item.spec, FeatureSpec) or (isinstance(item.spec, RunSpec) and item.spec.features):
            continue  # a store of other encoders gets its questions from its own extraction (FeatureSpec)
        dataset, used = _splits_used(item, settings)
        splits.setdefault(dataset, [])
        splits[dataset] += [s for s in used if s not in splits[dataset]]
    questions = [Item(QuestionSpec(d, tuple(s))) for d, s in splits.items()]
    for q in questions:
        q.artefacts = sorted({a for i in items.values() if not isinstance(i.spec, FeatureSpec)
                              and _splits_used(i, settings)[0] == q.spec.dataset for a in i.artefacts},
                             key=artefacts().index)
    items.update({q.key: q for q in questions})


# -------------------------------------------------------------------------------------------------------------
# Status of each item
# -------------------------------------------------------------------------------------------------------------
def refresh(plan: Plan) -> None:
    """Recompute every item's status, needs and estimate from the disk (annotation files are read once per
    plan; feature stores and run folders every time)."""
    inventory = plan.inventory = plan.inventory or Inventory(plan.settings)
    inventory.forget()
    for item in plan.item_list():
        item.status, item.needs, item.after, item.result, item.work = READY, [], [], "", (0.0, 0.0)
        {"features": _feature_status, "questions": _question_status, "train": _train_status,
         "evaluate": _eval_status}[item.kind](item, plan, inventory)
    given = plan.settings.train_speed or plan.settings.infer_speed
    plan.speed = Speed.of(plan.settings) if given else (Speed.measured(plan) or Speed.of(plan.settings))
    for item in plan.item_list():
        item.hours = 0.0 if item.status == FINISHED else plan.speed.hours(item.work, *item.shape)


def _question_status(item: Item, plan: Plan, inv: Inventory) -> None:
    """Questions of the splits whose files exist (the others are named in needs; their items are blocked)."""
    spec = item.spec
    present = [s for s in spec.splits if inv.records(spec.dataset, s) is not None]
    missing = inv.missing_files(spec.dataset, spec.splits)
    if missing:
        item.needs = [inv.annotation_need(spec.dataset, missing)]
    store = plan.settings.store(spec.dataset)
    if not present or inv.keys(store, "audio") is None:
        item.status = BLOCKED
        item.questions = sum(inv.questions(spec.dataset, s) for s in spec.splits)  # at most (Table I)
        item.needs += [inv.store_need(store)] if present else []
        return
    _, item.questions = inv.feature_gaps(spec.dataset, present)
    if _lock_holder(lock_path(spec, plan.settings)):
        item.status = RUNNING
    elif item.questions == 0:
        total = sum(inv.questions(spec.dataset, s) for s in present)
        item.status, item.result = FINISHED, f"all {total:,} questions have features"


def _feature_status(item: Item, plan: Plan, inv: Inventory) -> None:
    """Finished when the store of these encoders has every video and question of the splits its runs read;
    otherwise blocked on the videos (and on any encoder not registered yet), with the command that makes it."""
    spec, settings = item.spec, plan.settings
    splits = list(dict.fromkeys(s for i in plan.items.values() if isinstance(i.spec, RunSpec)
                                and i.spec.features == (spec.visual, spec.audio) for s in _splits_used(i, settings)[1]))
    store = settings.store(spec.dataset, (spec.visual, spec.audio))
    item.questions = sum(inv.questions(spec.dataset, s) for s in splits)
    item.needs = [f"no {kind} encoder {name!r} registered yet (extract/encoders.py: register_{kind}_encoder)"
                  for kind, name, registry in (("visual", spec.visual, VISUAL_ENCODERS),
                                               ("audio", spec.audio, AUDIO_ENCODERS)) if name not in registry]
    missing = inv.missing_files(spec.dataset, splits)
    if missing:
        item.needs.append(inv.annotation_need(spec.dataset, missing))
    elif inv.keys(store, "audio") is not None:
        gaps, questions = inv.feature_gaps(spec.dataset, splits, store)
        if not gaps and not questions and not item.needs:
            item.status, item.result = FINISHED, f"{store} holds every video and question"
            return
    item.needs.append(f"videos: `{spec.command(settings)}`")
    item.status = BLOCKED


def _blocked_by_data(item: Item, plan: Plan, inv: Inventory, dataset: str, splits) -> bool:
    """Add to needs / after what annotations and features require; BLOCKED when something the plan cannot
    make is missing, WAITING when only earlier items of the plan are. True when the item cannot run now."""
    hard = [inv.annotation_need(dataset, m) for m in [inv.missing_files(dataset, splits)] if m]
    features = item.spec.features if isinstance(item.spec, RunSpec) else None
    if features:  # Table XI: a store of its own, made (with its questions) by a features item
        feature = FeatureSpec(dataset, *features)
        if plan.items[feature.key].status != FINISHED:
            hard.append(f"features of {features[0]} + {features[1]}: {feature.key}")
    if not hard:
        hard, questions = inv.feature_gaps(dataset, splits, item.spec.store(plan.settings) if features else None)
        if questions and not hard:
            key = next(k for k, i in plan.items.items() if i.kind == "questions" and i.spec.dataset == dataset)
            item.after.append(key)
            item.needs.append(f"question features: {questions:,} new texts ({key})")
    item.needs[:0] = hard
    if hard:
        item.status = BLOCKED
    elif item.after:
        item.status = WAITING
    return bool(item.needs)


def lock_path(spec, settings: ReproduceSettings) -> Path:
    """The lock file that claims an item: in its run or evaluation folder, beside the store for questions."""
    if isinstance(spec, QuestionSpec):
        store = settings.store(spec.dataset)
        return store.with_name(f".{store.name}.questions.lock")
    if isinstance(spec, FeatureSpec):
        store = settings.store(spec.dataset, (spec.visual, spec.audio))
        return store.with_name(f".{store.name}.lock")
    return spec.folder(settings) / LOCK_NAME


def finished_on_disk(spec, settings: ReproduceSettings) -> bool:
    """Whether a run or evaluation has already written its final file (question features are incremental)."""
    if isinstance(spec, RunSpec):
        return (spec.folder(settings) / "summary.json").is_file()
    return isinstance(spec, EvalSpec) and spec.table_path(settings).is_file()


def _lock_holder(path: Path) -> dict | None:
    """Who holds a live lock on `path` (None: nobody, or a stale lock)."""
    lock = WorkLock(path)
    info = lock.holder()
    return None if info is None or lock._is_stale(info) else info


def _train_status(item: Item, plan: Plan, inv: Inventory) -> None:
    spec, settings = item.spec, plan.settings
    folder = spec.folder(settings)
    dataset, splits = _splits_used(item, settings)
    proto = spec.proto
    train_cfg = run_configs(spec, settings)[1]
    epochs, batch, eval_batch = train_cfg.epochs, train_cfg.batch_size, train_cfg.eval_batch_size
    n = {s: inv.questions(dataset, s) for s in splits}
    train_split = splits[0]
    item.questions = n[train_split]
    item.shape = (segments_of(spec), batch)
    n_val = n[proto.val] if proto.val else 0
    item.work = (epochs * math.ceil(n[train_split] / batch),
                 epochs * math.ceil(n_val / eval_batch) + math.ceil(n[proto.test] / eval_batch))
    if (folder / "summary.json").is_file():
        diffs = finished_run_differences(spec, settings)
        summary = json.loads((folder / "summary.json").read_text())
        item.status = CONFLICT if diffs else FINISHED
        item.result = f"test {summary['test_acc']:.2f} %" if summary.get("test_acc") is not None else "finished"
        item.needs = [f"another configuration in {folder}: {'; '.join(diffs)}"] if diffs else []
        return
    if item.artefacts and all(not_yet(a) for a in item.artefacts):
        item.status, item.needs = BLOCKED, [not_yet(item.artefacts[0])]
        return
    holder = _lock_holder(lock_path(spec, settings))
    if holder:
        item.status, item.result = RUNNING, f"held by {describe_holder(holder)}"
        return
    if not _blocked_by_data(item, plan, inv, dataset, splits) and (folder / LAST_CHECKPOINT).is_file():
        item.status = INTERRUPTED


def _eval_status(item: Item, plan: Plan, inv: Inventory) -> None:
    spec, settings = item.spec, plan.settings
    item.questions = inv.questions(spec.dataset, spec.split)
    item.shape = (segments_of(spec), REFERENCE_SHAPE[1])
    item.work = (0.0, float(math.ceil(item.questions / REFERENCE_SHAPE[1])))
    if spec.table_path(settings).is_file():
        item.status = FINISHED
        item.result = f"Avg {read_table_avg(spec.table_path(settings), spec.dataset):.2f} %"
        return
    run = plan.items[spec.run.key]
    if run.status != FINISHED:
        item.after.append(run.key)
        item.needs.append(f"its run: {run.key} ({run.status})")
    _blocked_by_data(item, plan, inv, spec.dataset, [spec.split])
    if run.status in (BLOCKED, CONFLICT):
        item.status = BLOCKED
    holder = _lock_holder(lock_path(spec, settings))
    if holder and item.status == READY:
        item.status = RUNNING


# -------------------------------------------------------------------------------------------------------------
# Configurations and tables of runs and evaluations
# -------------------------------------------------------------------------------------------------------------
def run_configs(spec: RunSpec, settings: ReproduceSettings):
    """(ModelConfig, TrainConfig, DataConfig) of one run under these settings."""
    proto = spec.proto
    given = {k: v for k, v in dict(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size).items()
             if v is not None}
    recipe = {**PRESET_TRAINING[spec.preset], **given}  # the paper preset trains at batch 32 (Sec. IV-A)
    train_cfg = TrainConfig(**recipe, device=settings.device, precision=settings.precision, compile=settings.compile,
                            eval_split=proto.val, test_split=proto.test, progress=settings.progress)
    train_split = proto.val if settings.train_on == "val" and proto.val else proto.train
    data_cfg = DataConfig(dataset=spec.dataset, root=str(settings.root(spec.dataset)),
                          store=str(spec.store(settings)), train_split=train_split, limit=settings.limit)
    model_cfg, train_cfg, data_cfg = grid_configs(spec.experiment, spec.seed, spec.preset, settings.size, train_cfg,
                                                  data_cfg)
    if spec.features and spec.store(settings).is_file():  # Table XI: the model takes its encoders' widths
        with FeatureStore(spec.store(settings), "r") as store:
            widths = {k: int(v) for k, v in store.attrs.items() if k in ("audio_dim", "visual_dim", "text_dim")}
        model_cfg = dataclasses.replace(model_cfg, **widths)
    return model_cfg, train_cfg, data_cfg


def finished_run_differences(spec: RunSpec, settings: ReproduceSettings) -> list[str]:
    """How the finished run in spec's folder differs from what these settings ask (empty: it is this run)."""
    saved = json.loads((spec.folder(settings) / "config.json").read_text())
    return grid_config_differences(saved, *run_configs(spec, settings))


# Header rows of a saved score table, by the layout scoring.score picks for the dataset.
_HEADER_ROWS = {"music_avqa": [0, 1], "synthetic": [0, 1], "music_avqa_r": [0, 1, 2], "music_avqa_v2": 0, "avqa": 0}


def read_table(path: Path, dataset: str):
    """A table written by engine.train / evaluate (scoring.score's layout for `dataset`)."""
    header = _HEADER_ROWS[dataset]
    table = pd.read_csv(path, header=header, index_col=0)
    if isinstance(header, list):
        names = [tuple("" if str(x).startswith("Unnamed") else x for x in c) for c in table.columns]
        table.columns = pd.MultiIndex.from_tuples(names)
    return table


def read_table_avg(path: Path, dataset: str) -> float:
    """The overall average of a saved score table (its last column)."""
    return float(read_table(path, dataset).iloc[0, -1])

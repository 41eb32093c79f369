"""Check every input of a run before its first step: annotations of every split, and every feature they need.

    from avmaster_core.preflight import check_run_inputs
    records = check_run_inputs(data_cfg, model_cfg, ["train", "val", "test"])   # {split: record table}

A run that will fail at its test step after hours of training must fail before epoch 1, and say everything
that is wrong at once. `check_run_inputs` loads each split's annotations, then looks up every feature the
records need in the store and checks it without building the model:
    - present (audio and visual per video, question and words per question);
    - its shape: [t, audio_dim] / [t, visual_dim] / [text_dim] / [77, text_dim], widths as the model expects;
    - its length t: with no --T every video must have one common length; with --T and no --pad none may be
      shorter than T;
    - finite values (no NaN or inf; this reads every feature once, `check_values=False` skips it).
All problems are collected and raised as one PreflightError listing the first `max_listed` and a count.
Advice names command-line flags (--T, --pad, --store, ...), since the CLI is where most runs start.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .cli import AvmasterError

MAX_LISTED = 20


class PreflightError(AvmasterError, ValueError):
    """The inputs of a run have problems; `problems` lists them all."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)


def check_run_inputs(data_cfg, model_cfg=None, splits: Iterable[str | None] = ("train", "val", "test"), *,
                     check_values: bool = True, max_listed: int = MAX_LISTED) -> dict:
    """{split: records} of `splits` (None entries are skipped) after checking every input of a run.

    data_cfg: run_config.DataConfig; model_cfg: a ModelConfig (its audio/visual/text widths are checked) or
    None. Raises PreflightError with every problem found (the first `max_listed` listed, then a count)."""
    from .run_config import load_records

    if model_cfg is not None:
        problem = task_mismatch(data_cfg.dataset, model_cfg)
        if problem:
            raise PreflightError(problem, [problem])
    splits = [s for s in dict.fromkeys(splits) if s]
    problems = _Problems()
    records = {}
    for split in splits:
        try:
            records[split] = load_records(data_cfg, split)
        except (ValueError, OSError, KeyError) as e:
            problems.add(f"split {split!r}: {_one_line(e)}")
    if records:
        _check_features(data_cfg, model_cfg, records, problems, check_values)
    if problems.items:
        raise PreflightError(_summary(problems.items, data_cfg, max_listed), problems.items)
    return records


def task_mismatch(dataset: str, model_cfg) -> str | None:
    """Why a model cannot answer `dataset`'s questions (None: it can). A multiple-choice benchmark (answers
    index each question's candidates) needs a model that scores the candidates (choice_scorer); a classifier
    over the answer vocabulary would compare its class indices with candidate indices and score about 0."""
    from .dataset_registry import get

    spec = get(dataset)
    if not spec.answers_in_vocab and model_cfg.choice_scorer is None:
        return (f"--dataset {dataset} is multiple choice (each answer indexes the question's candidates) but the "
                "model classifies over the answer vocabulary (choice_scorer=None), which scores about 0 %: use "
                "--experiment avqa/choices (or --set choice_scorer=match --set num_answers=<candidates>)")
    if spec.answers_in_vocab and model_cfg.choice_scorer is not None:
        return (f"the model scores candidate answers (choice_scorer={model_cfg.choice_scorer!r}) but --dataset "
                f"{dataset} has none (its answers are the vocabulary's): use a model without choice_scorer, "
                "e.g. --experiment default")
    return None


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__


def _summary(items: list[str], data_cfg, max_listed: int) -> str:
    shown = items[:max_listed]
    more = len(items) - len(shown)
    lines = [f"{len(items)} problem(s) with the inputs of this run (dataset {data_cfg.dataset}, root "
             f"{data_cfg.root}, store {data_cfg.store_path()}); stopped before the first step:"]
    lines += [f"  - {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def _check_features(data_cfg, model_cfg, records: dict, problems: _Problems, check_values: bool) -> None:
    from .store import FeatureStore

    try:
        store = FeatureStore(data_cfg.store_path(), "r")
    except (OSError, ValueError) as e:
        problems.add(f"--store: {_one_line(e)}")
        return
    with store:
        videos, audio_videos, questions = _needed_keys(records, problems)
        widths = _expected_widths(store, model_cfg, problems)
        lengths: dict[str, int] = {}
        kinds = [("audio", audio_videos), ("visual", videos), ("question", questions), ("words", questions)]
        if getattr(model_cfg, "choice_scorer", None) and all("choices" in t.columns for t in records.values()):
            kinds.append(("choices", questions))  # the candidate answers' text features (multiple choice)
        for kind, keys in kinds:
            missing = set(store.missing(kind, keys))
            for key, splits in keys.items():
                if key in missing:
                    what = "video" if kind in ("audio", "visual") else "question"
                    problems.add(f"no {kind} feature for {what} {key!r} (needed by split(s) {', '.join(splits)}); "
                                 f"extract it (`avmaster extract`) or point --store at the store that has it")
                    continue
                item = store.file[f"{kind}/{key}"]
                if _check_shape(kind, key, item.shape, widths, problems) and kind in ("audio", "visual"):
                    lengths[f"{kind} of {key!r}"] = int(item.shape[0])
                if check_values and not np.isfinite(item[()]).all():
                    problems.add(f"{kind} feature {key!r} in {store.path} contains NaN or inf: re-extract it "
                                 "(`avmaster extract` into a new --out) or drop its records")
        _check_lengths(lengths, data_cfg, problems)
        if getattr(model_cfg, "mask_padding", False):  # each question's word positions (dataset.question_tokens)
            from .dataset import question_tokens, word_mask_problem

            _, unknown = question_tokens(store, [q for q in questions if store.has("words", q)])
            if unknown:
                problems.add(word_mask_problem(unknown, store.path))


def _needed_keys(records: dict, problems: _Problems):
    """{key: [splits]} of the videos (visual), audio videos and questions the splits' records need."""
    videos, audio_videos, questions = {}, {}, {}
    for split, table in records.items():
        missing_columns = {"question_id", "video_id", "answer_idx"} - set(table.columns)
        if missing_columns:
            problems.add(f"split {split!r}: records lack the column(s) {sorted(missing_columns)}")
            continue
        audio_column = "audio_video_id" if "audio_video_id" in table.columns else "video_id"
        for target, column in ((videos, "video_id"), (audio_videos, audio_column), (questions, "question_id")):
            for key in table[column].astype(str).unique():
                target.setdefault(key, []).append(split)
    return videos, audio_videos, questions


def _expected_widths(store, model_cfg, problems: _Problems) -> dict:
    """The widths features must have: the model's (when given), else the store's; a clash is a problem."""
    widths = dict(store.widths)
    if model_cfg is None:
        return widths
    for name in ("audio_dim", "visual_dim", "text_dim"):
        wanted = getattr(model_cfg, name, None)
        if wanted is None:
            continue
        if name in widths and widths[name] != wanted:
            problems.add(f"{store.path} holds features with {name}={widths[name]} but the model expects "
                         f"{wanted}: use a store made with the model's encoders, or --set {name}={widths[name]}")
        widths[name] = wanted
    return widths


def _check_shape(kind: str, key: str, shape: tuple, widths: dict, problems: _Problems) -> bool:
    """True if the item's shape fits its kind (store.KINDS) and the expected widths."""
    from .store import KINDS

    expected = tuple(widths.get(d) if isinstance(d, str) else d for d in KINDS[kind])
    fits = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if kind in ("audio", "visual") and fits and shape[0] < 1:
        fits = False
    if not fits:
        problems.add(f"{kind} feature {key!r} has shape {tuple(shape)}, expected "
                     f"{tuple('T' if e is None else e for e in expected)}: re-extract it")
    return fits


def _check_lengths(lengths: dict[str, int], data_cfg, problems: _Problems) -> None:
    """With no --T: one common length; with --T and no --pad: none shorter than T."""
    if not lengths:
        return
    if data_cfg.T is None:
        counts = Counter(lengths.values())
        if len(counts) > 1:
            common = counts.most_common(1)[0][0]
            odd = [f"{name} has {n}" for name, n in lengths.items() if n != common]
            problems.add(f"features have different lengths ({', '.join(f'{n} rows: {c}' for n, c in sorted(counts.items()))}; "
                         f"e.g. {'; '.join(odd[:3])}): pass --T N to use the first N segments of each video "
                         "(with --pad zero or --pad edge for shorter ones)")
        return
    if data_cfg.pad is None:
        short = {name: n for name, n in lengths.items() if n < data_cfg.T}
        for name, n in list(short.items())[:MAX_LISTED]:
            problems.add(f"{name} has {n} segments, fewer than --T {data_cfg.T}: pass --pad zero or --pad edge, "
                         "or a smaller --T")
        if len(short) > MAX_LISTED:
            problems.add(f"{len(short) - MAX_LISTED} more videos are shorter than --T {data_cfg.T}")


def splits_of(train_cfg, data_cfg) -> list[str]:
    """The splits a training run reads: train, then its eval and test splits (when set)."""
    return [s for s in (data_cfg.train_split, train_cfg.eval_split, train_cfg.test_split) if s]

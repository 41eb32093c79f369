"""Records x feature store -> torch batches: a Dataset, its collate, seeded loaders, and a tensor bank.

API (small and stable; the engine uses exactly these names):

    ds = AVQADataset(records, store, split=None, with_negatives=False, T=None, seed=0, preload=True,
                     pad=None, drop_missing=False)
        records: a record table (avmaster_core.core.records schema); split: keep only that split.
        store:   a FeatureStore or a path to one.
        ds[i] -> {"audio" [T,128], "visual" [T,768], "question" [768], "words" [77,768], "label" long [],
                  "question_id" long [], "index" long []  (+ "neg_audio" [T,128], "neg_visual" [T,768])
                  (+ "choices" [C,768] for multiple-choice records, AVQA: "label" is then the position)
                  (+ "word_mask" [77] bool: the question's word positions, when the dataset knows them)}
        ds.set_epoch(epoch)       re-draws the negatives (deterministic given (seed, epoch))
        ds.negatives              [N] int64: the other item each item takes its negatives from
        ds.records                the kept records, in item order (item i = ds.records.iloc[i])
        ds.bank                   the FeatureBank behind a preloaded dataset (None when lazy)
    collate(items) -> batch dict (the model's batch keys, docs/design.md, + "question_id" [B] and "index" [B])
    loader = make_loader(ds, batch_size, shuffle=False, seed=0, num_workers=0, drop_last=False,
                         distributed=None)
    set_loader_epoch(loader, epoch)   call once per epoch: reshuffles (seed, epoch) and re-draws negatives

    Fast path (no per-item Python; features may live on the GPU):
    bank = ds.bank.to(device)
    for batch in iterate_batches(bank, batch_size, shuffle=True, seed=0, epoch=e, with_negatives=True,
                                 rank=0, world_size=1): ...
    Batches(bank or dataset, order, batch_size, negatives=..., to=device)   the one iterator behind both
    draw_negatives(n, seed=, epoch=) / epoch_order(n, seed, epoch, rank=, world_size=)   seeded draws

Semantics:
- Negatives follow the official code: each item takes the audio and visual features of one uniformly
  random OTHER item (it may be the same video with another question). They depend only on
  (seed, epoch), so `make_loader` and `iterate_batches` give the same negatives for the same item.
- Shuffling depends only on (seed, epoch) too: a resumed run at epoch e sees the order a full run saw.
- T: None = every video must already have one common length. An int T keeps the first T rows (the
  official code keeps visual[:60]); a shorter video is an error unless pad="zero" or pad="edge".
- Missing features are found up-front (one pass over the store's index, no feature is read) and raise
  MissingFeatureError naming how many records and which ids lack what; drop_missing=True drops them.
- preload=True reads every used feature once into memory tensors (the synthetic benchmark, small real
  subsets); preload=False reads items from the HDF5 file per access (big real stores; safe with
  DataLoader workers: each process opens its own handle). Question features that the store holds as
  HDF5 hard links to one object (the synthetic benchmark links identical question texts) are loaded once.
- word_mask (what ModelConfig.mask_padding attends to: the words without the start token and the padding)
  comes from each question's CLIP token count, recorded in the store by `avmaster extract --questions`
  (store.TOKENS_ATTR), else from zero padding (the synthetic benchmark); a store with neither (real CLIP
  words from before counts were recorded) gives no word_mask, and `require_word_mask` says what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from .store import TOKENS_ATTR, FeatureStore, MissingFeatureError

PAD_POLICIES = (None, "zero", "edge")
WORDS_LEN = 77


# ----------------------------------------------------------------------------------------------------
# Seeded randomness shared by the Dataset and the tensor-bank paths
# ----------------------------------------------------------------------------------------------------
def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), stream])


def draw_negatives(n: int, *, seed: int | None = None, epoch: int = 0, device=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """[n] int64 on `device`: for each item a uniformly random other item (never itself); needs n >= 2.

    The one negative sampler. Seeded (`seed` given): a pure function of (seed, epoch), drawn on the host and
    the same on every device (training, resume and the tests use this). Unseeded: drawn on `device` with
    `generator`, no host work per epoch (the GPU data-path benchmark).
    """
    if n < 2:
        raise ValueError(f"negatives need at least 2 items, got {n}: use with_negatives=False or more records")
    if seed is not None:
        draw = torch.from_numpy(_rng(seed, epoch, 1).integers(0, n - 1, size=n)).to(device or "cpu")
    else:
        draw = torch.randint(0, n - 1, (n,), device=device, generator=generator)
    own = torch.arange(n, device=draw.device)
    return draw + (draw >= own).long()  # uniform over the n-1 others: skip one's own index


def negative_indices(n: int, seed: int, epoch: int) -> np.ndarray:
    """draw_negatives(n, seed=seed, epoch=epoch) as a numpy array."""
    return draw_negatives(n, seed=seed, epoch=epoch).numpy()


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """[n] int64: the shuffled item order of one epoch."""
    return _rng(seed, epoch, 2).permutation(n).astype(np.int64)


def epoch_order(n: int, seed: int, epoch: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                even: bool = False) -> np.ndarray:
    """This rank's item order for `epoch`, a pure function of (seed, epoch, rank, world size).

    The epoch permutation (or 0..n-1 without shuffle), every world_size-th item from `rank`. even=True first
    pads the order by wrapping to a multiple of world_size, as DistributedSampler does, so that every rank
    runs the same number of steps (DDP training needs that; the padding repeats a few items).
    """
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n, dtype=np.int64)
    if even and world_size > 1:
        order = np.resize(order, -(-n // world_size) * world_size)  # np.resize repeats from the start
    return order[rank::world_size]


# ----------------------------------------------------------------------------------------------------
# Word positions (ModelConfig.mask_padding)
# ----------------------------------------------------------------------------------------------------
def question_tokens(store: FeatureStore, question_ids) -> tuple[dict[str, int], list[str]]:
    """({question_id: CLIP tokens with start and end token}, [question ids whose count is unknown]).

    The count is the words item's recorded attribute (store.TOKENS_ATTR), else the rows up to its last non-zero
    one when the item is zero-padded (its last row is zero: the synthetic benchmark). Real CLIP words are
    never zero past the end token, so without a recorded count their word positions are unknown."""
    known, unknown, by_object = {}, [], {}
    for qid in dict.fromkeys(str(q) for q in question_ids):
        item = store.file[f"words/{qid}"]
        if TOKENS_ATTR in item.attrs:
            known[qid] = int(item.attrs[TOKENS_ATTR])
            continue
        if item.id not in by_object:  # questions hard-linked to one object are read once
            last = np.abs(item[-1]).max()
            used = np.flatnonzero(np.abs(item[()]).max(axis=1) > 0) if last == 0 else None
            by_object[item.id] = None if used is None else (int(used[-1]) + 1 if len(used) else 1)
        if by_object[item.id] is None:
            unknown.append(qid)
        else:
            known[qid] = by_object[item.id]
    return known, unknown


def word_mask(tokens: torch.Tensor, length: int = WORDS_LEN) -> torch.Tensor:
    """[..., length] bool from token counts [...]: True at the words, positions 1..tokens-1 (no start token,
    no padding); a question with no word keeps every position."""
    position = torch.arange(length, device=tokens.device)
    mask = (position >= 1) & (position < tokens.unsqueeze(-1))
    return mask | ~mask.any(dim=-1, keepdim=True)


def require_word_mask(model_cfg, *datasets: "AVQADataset | None", flag: str = "mask_padding") -> None:
    """With ModelConfig.mask_padding: ValueError naming the flag and the fix when a dataset cannot say where its
    questions' words are (the model would otherwise guess them from zero padding, which real CLIP words lack)."""
    if not getattr(model_cfg, flag, False):
        return
    for dataset in datasets:
        if dataset is not None and dataset.unknown_words:
            raise ValueError(word_mask_problem(dataset.unknown_words, dataset.store_path, flag))


def word_mask_problem(unknown: list, store_path, flag: str = "mask_padding") -> str:
    """What to say when questions of a store have no known word positions (preflight lists it too)."""
    return (f"ModelConfig.{flag} (on in --preset paper; --set {flag}=false turns it off) masks each question's "
            f"start token and padding, so it needs the question's CLIP token count: {len(unknown)} question(s) in "
            f"{store_path} have none recorded (e.g. question_id {unknown[0]}) and their words fill all 77 positions. "
            f"Record the counts with `avmaster store token-counts {store_path} --questions DATASET --root ROOT` "
            f"(tokenizes only) or re-extract the questions (`avmaster extract --questions DATASET --root ROOT "
            f"--out {store_path}`)")


# ----------------------------------------------------------------------------------------------------
# The tensor bank: all features as a few tensors plus index tensors
# ----------------------------------------------------------------------------------------------------
@dataclass
class FeatureBank:
    """All features of a dataset as tensors; item i = (video_index[i], question_index[i], labels[i]).

    words are kept only up to the last position that is non-zero in any question ([U, L, 768], L <= 77)
    and zero-padded back to 77 when a batch is built (CLIP-like synthetic words are mostly padding).
    """

    audio: torch.Tensor           # [V, T, 128]
    visual: torch.Tensor          # [V, T, 768]
    question: torch.Tensor        # [U, 768]
    words: torch.Tensor           # [U, L, 768]
    video_index: torch.Tensor     # [N] long, row of audio/visual
    question_index: torch.Tensor  # [N] long, row of question/words
    labels: torch.Tensor          # [N] long
    question_ids: torch.Tensor    # [N] long
    audio_index: torch.Tensor | None = None  # [N] long, row of audio when it differs (v2.0 unmatched audio)
    words_len: int = WORDS_LEN
    choices: torch.Tensor | None = None      # [N, C, 768] candidate answers (multiple-choice datasets, AVQA)
    tokens: torch.Tensor | None = None       # [U] long CLIP tokens per question row (word_mask), None: unknown

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.audio.device

    def to(self, device) -> "FeatureBank":
        moved = {k: getattr(self, k).to(device) for k in
                 ("audio", "visual", "question", "words", "video_index", "question_index", "labels",
                  "question_ids")}
        audio_index = None if self.audio_index is None else self.audio_index.to(device)
        choices = None if self.choices is None else self.choices.to(device)
        tokens = None if self.tokens is None else self.tokens.to(device)
        return FeatureBank(**moved, audio_index=audio_index, words_len=self.words_len, choices=choices, tokens=tokens)

    def _audio_rows(self, items: torch.Tensor) -> torch.Tensor:
        return (self.video_index if self.audio_index is None else self.audio_index)[items]

    def gather(self, items: torch.Tensor, negatives: torch.Tensor | None = None) -> dict:
        """The batch of the items `items` ([B] long); `negatives` ([B] long item indices) adds neg_*."""
        items = items.to(self.device)
        v = self.video_index[items]
        q = self.question_index[items]
        words = self.words[q]                                             # [B, L, 768]
        if words.shape[1] < self.words_len:
            words = torch.nn.functional.pad(words, (0, 0, 0, self.words_len - words.shape[1]))  # [B,77,768]
        batch = {
            "audio": self.audio[self._audio_rows(items)], "visual": self.visual[v],  # [B,T,128], [B,T,768]
            "question": self.question[q], "words": words,                 # [B,768], [B,77,768]
            "label": self.labels[items], "question_id": self.question_ids[items], "index": items,
        }
        if self.choices is not None:
            batch["choices"] = self.choices[items]                        # [B, C, 768]
        if self.tokens is not None:
            batch["word_mask"] = word_mask(self.tokens[q], self.words_len)  # [B, 77] bool
        if negatives is not None:
            negatives = negatives.to(self.device)
            batch["neg_audio"] = self.audio[self._audio_rows(negatives)]
            batch["neg_visual"] = self.visual[self.video_index[negatives]]
        return batch


class Batches:
    """One epoch of batches of items `order`, in that order: the package's one batch iterator.

    Two sources give the same batches (tests/test_engine.py trains on both and compares):
    - a FeatureBank: each batch is gathered by tensor indexing. The order and the negatives are index tensors
      on the bank's device, so a GPU-resident bank builds batches with no per-item Python and no host copy;
    - an AVQADataset without a bank (lazy, per-item HDF5 reads): a DataLoader with `collate`; the negatives
      are the dataset's own (set_epoch), and `negatives` must be None.
    negatives: [N] item indices (draw_negatives) over the whole bank, or None. to: the device batches go to
    (default: where they are built); host batches bound for a GPU are pinned and copied asynchronously.
    """

    def __init__(self, source, order, batch_size: int, *, negatives: torch.Tensor | None = None,
                 drop_last: bool = False, to=None, num_workers: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source, self.batch_size, self.drop_last, self.num_workers = source, batch_size, drop_last, num_workers
        self.lazy = not isinstance(source, FeatureBank)
        if self.lazy and negatives is not None:
            raise ValueError("a lazy dataset draws its own negatives (AVQADataset.set_epoch); pass negatives=None")
        home = torch.device("cpu") if self.lazy else source.device
        order = order if torch.is_tensor(order) else torch.from_numpy(np.asarray(order, dtype=np.int64))
        self.order = order.to(home, torch.long)                                     # [n] long
        self.negatives = None if negatives is None else negatives.to(home)
        self.to = torch.device(to) if to is not None else home

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        batches = self._loader() if self.lazy else self._gathered()
        for batch in batches:
            yield {k: self._move(v) for k, v in batch.items()}

    def _gathered(self) -> Iterator[dict]:
        for i in range(len(self)):
            items = self.order[i * self.batch_size:(i + 1) * self.batch_size]       # a slice, no copy
            yield self.source.gather(items, None if self.negatives is None else self.negatives[items])

    def _loader(self) -> DataLoader:
        # An explicit generator keeps the DataLoader from drawing its worker base seed from the global torch
        # RNG, which would make the dropout stream depend on where an epoch was resumed.
        return DataLoader(self.source, batch_size=self.batch_size, sampler=self.order.tolist(), collate_fn=collate,
                          num_workers=self.num_workers, drop_last=self.drop_last,
                          generator=torch.Generator().manual_seed(0), pin_memory=self.to.type == "cuda")

    def _move(self, value):
        if not torch.is_tensor(value) or value.device == self.to:
            return value
        if self.to.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
            value = value.pin_memory()
        return value.to(self.to, non_blocking=True)


def dataset_batches(dataset: "AVQADataset", order, batch_size: int, *, to=None, bank: FeatureBank | None = None,
                    num_workers: int = 0) -> Batches:
    """Batches of `dataset`'s items `order` with the negatives of its current epoch: gathered from `bank` (the
    dataset's FeatureBank, possibly moved to a device) when given, else read per item through a DataLoader."""
    if bank is None:
        return Batches(dataset, order, batch_size, to=to, num_workers=num_workers)
    negatives = dataset.negatives if dataset.with_negatives else None
    return Batches(bank, order, batch_size, negatives=negatives, to=to)


def bank_for(dataset: "AVQADataset", device, *, on_device: bool = True, num_workers: int = 0):
    """The dataset's preloaded FeatureBank, moved to `device` when `on_device` (None: a lazy dataset, or
    DataLoader workers asked for, so batches are read per item)."""
    if getattr(dataset, "bank", None) is None or num_workers > 0:
        return None
    return dataset.bank.to(device) if on_device else dataset.bank


def iterate_batches(bank: FeatureBank, batch_size: int, *, indices=None, shuffle: bool = False, seed: int = 0,
                    epoch: int = 0, with_negatives: bool = False, drop_last: bool = False,
                    rank: int = 0, world_size: int = 1) -> Iterator[dict]:
    """Batches of a bank's items (Batches). `indices`: a subset of bank items (default all), shuffled by the
    (seed, epoch) permutation of the subset. With world_size > 1 each rank takes every world_size-th item of
    the shared order, without padding. Negatives are drawn over all bank items (same as AVQADataset)."""
    n = len(bank)
    items = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    if shuffle:
        items = items[epoch_permutation(len(items), seed, epoch)]
    negatives = draw_negatives(n, seed=seed, epoch=epoch) if with_negatives else None
    yield from Batches(bank, items[rank::world_size], batch_size, negatives=negatives, drop_last=drop_last)


# ----------------------------------------------------------------------------------------------------
# The Dataset
# ----------------------------------------------------------------------------------------------------
def _fit_length(array: np.ndarray, T: int | None, pad: str | None, what: str) -> np.ndarray:
    """Cut `array` [t, D] to T rows, or pad it by the pad policy."""
    if T is None or array.shape[0] == T:
        return array
    if array.shape[0] > T:
        return array[:T]
    if pad is None:
        raise ValueError(f"{what} has {array.shape[0]} time steps, fewer than T={T}: pass pad='zero' or "
                         "pad='edge' to pad it, or a smaller T")
    fill = np.zeros_like(array[:1]) if pad == "zero" else array[-1:]
    return np.concatenate([array, np.repeat(fill, T - array.shape[0], axis=0)], axis=0)


class AVQADataset(Dataset):
    """Question records joined with their audio/visual/question features (see the module docstring)."""

    def __init__(self, records, store, split: str | None = None, with_negatives: bool = False,
                 T: int | None = None, seed: int = 0, preload: bool = True, pad: str | None = None,
                 drop_missing: bool = False, word_masks: bool = True):
        if pad not in PAD_POLICIES:
            raise ValueError(f"pad must be one of {PAD_POLICIES}, got {pad!r}")
        if T is not None and T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        for column in ("question_id", "video_id", "answer_idx", "split"):
            if column not in records.columns:
                raise ValueError(f"records lack the column {column!r}; see avmaster_core.core.records.RECORD_COLUMNS")
        if split is not None:
            records = records[records["split"] == split]
            if len(records) == 0:
                raise ValueError(f"no records of split {split!r}")
        self.records = records.reset_index(drop=True)
        # multiple-choice records (AVQA) carry their candidate answers: batches gain "choices" [B, C, 768]
        self.has_choices = "choices" in self.records.columns
        self.with_negatives, self.seed, self.pad = with_negatives, seed, pad
        self.store_path = Path(store.path if isinstance(store, FeatureStore) else store)
        self._handle: tuple[int, FeatureStore] | None = None

        own_store = not isinstance(store, FeatureStore)
        store = FeatureStore(self.store_path, "r") if own_store else store
        try:
            self._check_missing(store, drop_missing)
            # {question_id: CLIP tokens} for the word masks (None: unknown, or not asked for)
            tokens, self.unknown_words = question_tokens(store, self.records["question_id"]) if word_masks else ({}, [])
            self.tokens = tokens if word_masks and not self.unknown_words else None
            self.T = self._resolve_length(store, T)
            self.bank = self._load_bank(store) if preload else None
        finally:
            if own_store:
                store.close()
        self.labels = torch.as_tensor(self.records["answer_idx"].to_numpy(np.int64))
        self.question_ids = torch.as_tensor(self.records["question_id"].to_numpy(np.int64))
        self.negatives = None
        self.set_epoch(0)

    # -- construction helpers -------------------------------------------------------------------
    def _audio_videos(self):
        """The video whose audio each record uses (MUSIC-AVQA-v2.0 pairs some videos with other audio)."""
        column = "audio_video_id" if "audio_video_id" in self.records.columns else "video_id"
        return self.records[column].astype(str)

    def _check_missing(self, store: FeatureStore, drop_missing: bool) -> None:
        videos = self.records["video_id"].astype(str)
        questions = self.records["question_id"].astype(str)
        lacking = np.zeros(len(self.records), dtype=bool)
        what = []
        kinds = [("audio", self._audio_videos()), ("visual", videos), ("question", questions), ("words", questions)]
        if self.has_choices:
            kinds.append(("choices", questions))
        for kind, keys in kinds:
            missing = set(store.missing(kind, keys.unique()))
            if missing:
                rows = keys.isin(missing).to_numpy()
                lacking |= rows
                what.append(f"{kind} for {len(missing)} {'videos' if kind in ('audio', 'visual') else 'questions'}"
                            f" (e.g. {sorted(missing)[:3]})")
        if not lacking.any():
            return
        example = self.records[lacking].iloc[0]
        message = (f"{int(lacking.sum())} of {len(self.records)} records lack features in {store.path}: "
                   f"{'; '.join(what)}. First: question_id {int(example['question_id'])}, video_id "
                   f"{example['video_id']!r}. Extract them (`avmaster extract`), or pass drop_missing=True "
                   "to train/evaluate without those records.")
        if not drop_missing:
            raise MissingFeatureError(message)
        self.records = self.records[~lacking].reset_index(drop=True)
        if len(self.records) == 0:
            raise MissingFeatureError(message + " No record is left after dropping them.")

    def _resolve_length(self, store: FeatureStore, T: int | None) -> int:
        lengths = {}
        pairs = zip(self.records["video_id"].astype(str), self._audio_videos())
        for vid, aid in dict.fromkeys(pairs):
            a, v = store.file[f"audio/{aid}"].shape[0], store.file[f"visual/{vid}"].shape[0]
            lengths[vid if aid == vid else f"{vid} (audio of {aid})"] = min(a, v) if T is not None else (a, v)
        if T is None:
            distinct = set(x for pair in lengths.values() for x in pair)
            if len(distinct) != 1:
                raise ValueError(f"videos have different lengths {sorted(distinct)[:5]} (audio or visual rows): "
                                 "pass T= to cut them to one length")
            return distinct.pop()
        short = [vid for vid, n in lengths.items() if n < T]
        if short and self.pad is None:
            raise ValueError(f"{len(short)} videos have fewer than T={T} time steps (e.g. {short[0]!r} has "
                             f"{lengths[short[0]]}): pass pad='zero' or pad='edge', or a smaller T")
        return T

    def _load_bank(self, store: FeatureStore) -> FeatureBank:
        videos = list(dict.fromkeys(self.records["video_id"].astype(str)))
        video_row = {vid: i for i, vid in enumerate(videos)}
        audio_videos = self._audio_videos()
        extra_audio = [a for a in dict.fromkeys(audio_videos) if a not in video_row]
        audio_row = {**video_row, **{a: len(videos) + i for i, a in enumerate(extra_audio)}}
        audio = np.stack([_fit_length(store.get("audio", v), self.T, self.pad, f"audio of video {v!r}")
                          for v in videos + extra_audio])
        visual = np.stack([_fit_length(store.get("visual", v), self.T, self.pad, f"visual of video {v!r}")
                           for v in videos])
        # Questions: one row per distinct HDF5 object (hard-linked duplicates are read once).
        question_row, object_row, sentences, words = {}, {}, [], []
        for qid in self.records["question_id"].astype(str).unique():
            obj = hash(store.file[f"words/{qid}"].id), hash(store.file[f"question/{qid}"].id)
            if obj not in object_row:
                object_row[obj] = len(sentences)
                sentences.append(store.get("question", qid))
                w = store.get("words", qid)                       # [77, 768]
                used = np.flatnonzero(np.abs(w).max(axis=1) > 0)
                words.append(w[: (used[-1] + 1 if len(used) else 1)])
            question_row[qid] = object_row[obj]
        row_tokens = np.zeros(len(sentences), dtype=np.int64)  # per question row; linked questions share a row
        for qid, row in question_row.items():
            row_tokens[row] = self.tokens[qid] if self.tokens is not None else 0
        length = max(w.shape[0] for w in words)
        words_array = np.zeros((len(words), length, words[0].shape[1]), dtype=np.float32)  # [U, L, 768]
        for i, w in enumerate(words):
            words_array[i, : w.shape[0]] = w
        return FeatureBank(
            audio=torch.from_numpy(audio), visual=torch.from_numpy(visual),
            question=torch.from_numpy(np.stack(sentences)), words=torch.from_numpy(words_array),
            video_index=torch.as_tensor([video_row[v] for v in self.records["video_id"].astype(str)]),
            question_index=torch.as_tensor([question_row[q] for q in self.records["question_id"].astype(str)]),
            labels=torch.as_tensor(self.records["answer_idx"].to_numpy(np.int64)),
            question_ids=torch.as_tensor(self.records["question_id"].to_numpy(np.int64)),
            audio_index=(None if (audio_videos == self.records["video_id"].astype(str)).all()
                         else torch.as_tensor([audio_row[a] for a in audio_videos])),
            choices=self._load_choices(store) if self.has_choices else None,
            tokens=None if self.tokens is None else torch.as_tensor(row_tokens),
        )

    def _load_choices(self, store: FeatureStore) -> torch.Tensor:
        """[N, C, 768] the candidate answers' features of every record (one C for the whole dataset)."""
        rows = [store.get("choices", str(q)) for q in self.records["question_id"]]
        counts = sorted({r.shape[0] for r in rows})
        if len(counts) != 1:
            raise ValueError(f"questions have different numbers of candidate answers {counts} in {store.path}; "
                             "a batch needs one C")
        return torch.from_numpy(np.stack(rows))

    # -- per-epoch state ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Re-draw the negatives for `epoch` (call before iterating; make_loader's set_loader_epoch does)."""
        self.epoch = int(epoch)
        if self.with_negatives:
            self.negatives = draw_negatives(len(self), seed=self.seed, epoch=self.epoch)

    # -- item access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def _store(self) -> FeatureStore:
        # h5py handles must not cross a fork: each process (DataLoader worker) opens its own.
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), FeatureStore(self.store_path, "r"))
        return self._handle[1]

    def _video(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bank is not None:
            rows = self.bank._audio_rows(torch.tensor(i)), self.bank.video_index[i]
            return self.bank.audio[rows[0]], self.bank.visual[rows[1]]     # views, [T,128], [T,768]
        vid, aid = str(self.records.at[i, "video_id"]), str(self._audio_videos().iat[i])
        store = self._store()
        audio = _fit_length(store.get("audio", aid), self.T, self.pad, f"audio of video {aid!r}")
        visual = _fit_length(store.get("visual", vid), self.T, self.pad, f"visual of video {vid!r}")
        return torch.from_numpy(audio), torch.from_numpy(visual)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for a dataset of {len(self)} records")
        if self.bank is not None:
            bank, q = self.bank, int(self.bank.question_index[i])
            audio, visual = self._video(i)
            words = bank.words.new_zeros((bank.words_len, bank.words.shape[2]))   # [77, 768]
            words[: bank.words.shape[1]] = bank.words[q]
            item = {"audio": audio, "visual": visual, "question": bank.question[q], "words": words,
                    "label": bank.labels[i], "question_id": bank.question_ids[i], "index": torch.tensor(i)}
            if bank.choices is not None:
                item["choices"] = bank.choices[i]
            if bank.tokens is not None:
                item["word_mask"] = word_mask(bank.tokens[q], bank.words_len)
        else:
            qid = str(int(self.question_ids[i]))
            store = self._store()
            audio, visual = self._video(i)
            item = {"audio": audio, "visual": visual,
                    "question": torch.from_numpy(store.get("question", qid)),
                    "words": torch.from_numpy(store.get("words", qid)),
                    "label": self.labels[i], "question_id": self.question_ids[i], "index": torch.tensor(i)}
            if self.has_choices:
                item["choices"] = torch.from_numpy(store.get("choices", qid))
            if self.tokens is not None:
                item["word_mask"] = word_mask(torch.tensor(self.tokens[qid]))
        if self.with_negatives:
            item["neg_audio"], item["neg_visual"] = self._video(int(self.negatives[i]))
        return item


def collate(items: list[dict]) -> dict:
    """Stack a list of dataset items into one batch dict (every value gains a leading batch axis B)."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


# ----------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------
class EpochShuffleSampler(Sampler):
    """All items in an order that depends only on (seed, epoch) (resumable, bit-identical on CPU)."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else np.arange(self.n)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(dataset: AVQADataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False, distributed: bool | None = None,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `dataset` with `collate`. distributed=None: on when torch.distributed is initialised
    (DistributedSampler with the same seed on every rank). Call set_loader_epoch(loader, e) every epoch."""
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = EpochShuffleSampler(len(dataset), shuffle, seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle (sampler) and re-draw negatives (dataset) for `epoch`."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


# ---------------------------------------------------------------- a run's data (run_config.DataConfig)
def open_store(data_cfg):
    """The run's FeatureStore, open for reading (a context manager; close it when done)."""
    return FeatureStore(data_cfg.store_path(), "r")


def make_dataset(records, store, data_cfg, *, negatives: bool = False, seed: int = 0, word_masks: bool = True):
    """An AVQADataset; it checks up front that every record has its features (MissingFeatureError otherwise).
    word_masks: read each question's word positions (a model with ModelConfig.mask_padding needs them)."""
    return AVQADataset(records, store, with_negatives=negatives, T=data_cfg.T, seed=seed,
                       preload=data_cfg.preload, pad=data_cfg.pad, word_masks=word_masks)

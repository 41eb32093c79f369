"""The benchmark registry: one DatasetSpec per benchmark the package reads (not the torch data path, which is
`dataset.py`, nor the speed benchmark, which is `benchmark.py`).

A spec says everything dataset-specific in one place: the official files (URLs and checksums), the splits and
subsets and the files each reads, the loader that turns a file's JSON records into record rows, the paper
table whose layout its scores take, the scorer, the licence, and the command that puts its files in place.

    spec = get("music_avqa_v2");  spec.splits, spec.subsets, spec.files, spec.table
    DATASET_NAMES                 every benchmark, e.g. for --dataset choices

These read it: annotations.load_annotations / annotation_files, scoring.score, download (fetch, list,
licences) and the command lines' --dataset choices. A new dataset = one DatasetSpec in SPECS + one loader
function (in annotations.py: raw JSON list -> record rows; see music_avqa_rows), or an existing loader when
the files share a format.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .annotations import AVQA_HOLDOUT, avqa_rows, music_avqa_r_rows, music_avqa_rows, music_avqa_v2_rows, synthetic_mc_rows
from .scoring import score_head_tail, score_table2, score_table4, score_table5

GITHUB_RAW = "https://raw.githubusercontent.com"
MIRROR_ENV = "AVMASTER_DATA_MIRROR"


@dataclass(frozen=True)
class OfficialFile:
    """One official annotation file: where it lives upstream and how to recognise it."""
    dataset: str
    name: str                       # file name under <root>/<dataset>/
    repo: str                       # GitHub owner/name
    path: str                       # path inside the repository
    sha256: str | None = None
    git_blob_prefix: str | None = None  # abbreviated git blob id, where no sha256 is recorded
    note: str = ""
    ref: str = "HEAD"               # the repository's default branch
    url_override: str | None = None  # a full URL (tests, private mirrors)

    def url(self, mirror: str | None = None) -> str:
        if self.url_override:
            return self.url_override
        base = (mirror or os.environ.get(MIRROR_ENV) or GITHUB_RAW).rstrip("/")
        return f"{base}/{self.repo}/{self.ref}/{self.path}"


# (file name, split label, subset label) that one (split, subset) request reads
FileRead = tuple[str, str, "str | None"]


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark.

    name: the dataset name (records' `dataset` column, data/<name>/ folder).
    title: the paper's name for it.
    split_files: {(split, subset or None): ((file, split label, subset label), ...)}: what each request reads;
        its keys define the splits (in order) and the subsets.
    rows: the loader: (raw JSON list, path, dataset, split label, subset label) -> record rows (dicts).
    table: the paper table whose layout `scorer` fills ("table2" .. "table5").
    scorer: (records, predictions, missing=, name=) -> one-row DataFrame in that layout.
    files: the official files `avmaster data fetch <name>` downloads (none: generated locally).
    default_subset: the subset of a request that names none.
    answers_in_vocab: answer_idx indexes vocab.ANSWERS (False: the record's own `choices`, AVQA).
    licence: the files' licence, as `avmaster data list` prints it.
    obtain: the command that puts the files in <root> ({root} is filled in); default: data fetch.
    segments: seconds (= feature rows T) per video as its features are stored: MUSIC-AVQA's 60-s videos,
        AVQA's 10-s VGGSound clips (the reproduce plan scales its step time with it).
    table1_counts: {split: (Table I column, share)} where a split holds a share of a Table I count (AVQA's
        train and val are 90 % and 10 % of train_qa.json); other splits: their own column, all of it.
    """

    name: str
    title: str
    split_files: Mapping[tuple[str, str | None], tuple[FileRead, ...]]
    rows: Callable[..., list]
    table: str
    scorer: Callable
    files: tuple[OfficialFile, ...] = ()
    default_subset: str | None = None
    answers_in_vocab: bool = True
    licence: str = ""
    obtain: str = ""
    segments: int = 60
    table1_counts: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        stray = [f.name for f in self.files if f.dataset != self.name]
        if stray:
            raise ValueError(f"DatasetSpec {self.name}: files {stray} name another dataset")

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(split for split, _ in self.split_files))

    @property
    def subsets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(subset for _, subset in self.split_files if subset is not None))

    def obtain_command(self, root) -> str:
        """The command that (re)creates this dataset's annotation files."""
        return self.obtain.format(root=root) if self.obtain else f"avmaster data fetch {self.name}"


def _music_split_files() -> dict:
    return {(split, None): ((f"avqa-{split}.json", split, None),) for split in ("train", "val", "test")}


_GEWU, _TIGER, _V2 = "GeWu-Lab/MUSIC-AVQA", "AIM-SKKU/QA-TIGER", "DragonLiu1995/MUSIC-AVQA-v2.0"
_R, _AVQA = "reml-group/MUSIC-AVQA-R", "AlyssaYoung/AVQA"
_R_HEAD, _R_TAIL = ("avqa-test-head.json", "test", "head"), ("avqa-test-tail.json", "test", "tail")
_V2_FILES = {("train", "balance"): "train_balance.json", ("val", "balance"): "balance_valid.json",
             ("test", "balance"): "test_balance.json", ("train", "bias"): "train_bias.json",
             ("val", "bias"): "bias_valid.json", ("test", "bias"): "test_bias.json"}

SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "music_avqa", "MUSIC-AVQA", _music_split_files(), music_avqa_rows, "table2", score_table2,
        files=(
            OfficialFile("music_avqa", "avqa-train.json", _GEWU, "data/json_update/avqa-train.json",
                         git_blob_prefix="dfb9233f598b", note="31,927 questions"),
            OfficialFile("music_avqa", "avqa-val.json", _GEWU, "data/json_update/avqa-val.json",
                         sha256="650ca7e9e577139f43b7895d5b8207a2e287d8cdad940522b2122a12c0c9b8ef",
                         note="4,568 questions"),
            OfficialFile("music_avqa", "avqa-test.json", _GEWU, "data/json_update/avqa-test.json",
                         sha256="76ce24ee02fd85e28038605aedd4f62633e1335ccda96a1fcf7340b5feaf230e",
                         note="9,129 questions"),
            OfficialFile("music_avqa", "answer2idx.json", _TIGER, "data/annots/music_avqa/answer2idx.json",
                         sha256="2033680ea2a35da5209fe73624c470c33b064db766f24f3608cf2e24bc0d3e99",
                         note="the 42 answers in official order (a check; vocab.ANSWERS holds them)"),
        ),
        licence="MIT (GeWu-Lab/MUSIC-AVQA); answer2idx.json from AIM-SKKU/QA-TIGER"),
    # MUSIC-AVQA-R is test-only (train and validate on MUSIC-AVQA); "test" reads head + tail with their labels
    DatasetSpec(
        "music_avqa_r", "MUSIC-AVQA-R",
        {("test", None): (_R_HEAD, _R_TAIL), ("head", None): (_R_HEAD,), ("tail", None): (_R_TAIL,),
         ("headtail", None): (("avqa-test-headtail.json", "test", "headtail"),)},
        music_avqa_r_rows, "table3", score_head_tail,
        files=(
            OfficialFile("music_avqa_r", "avqa-test-head.json", _R, "dataset/MUSIC-AVQA-R/avqa-test-head.json",
                         git_blob_prefix="387be1197"),
            OfficialFile("music_avqa_r", "avqa-test-tail.json", _R, "dataset/MUSIC-AVQA-R/avqa-test-tail.json",
                         git_blob_prefix="19e426a64"),
            OfficialFile("music_avqa_r", "avqa-test-headtail.json", _R,
                         "dataset/MUSIC-AVQA-R/avqa-test-headtail.json", git_blob_prefix="35ab0599d",
                         note="211,572 questions"),
            OfficialFile("music_avqa_r", "music-avqa_vocab.json", _R, "dataset/music-avqa_vocab.json",
                         sha256="c48d7e80a246445d76284cc3edbc60b04e11795390b900f542e0924fcbd8756e"),
        ),
        licence="see reml-group/MUSIC-AVQA-R (research use; cite Ma et al. 2024)"),
    DatasetSpec(
        "music_avqa_v2", "MUSIC-AVQA-v2.0",
        {key: ((name, *key),) for key, name in _V2_FILES.items()},
        music_avqa_v2_rows, "table4", score_table4, default_subset="balance",
        files=(
            OfficialFile("music_avqa_v2", "train_balance.json", _V2, "data/balance_full_set/train_balance.json",
                         git_blob_prefix="5b5ef1934f4f"),
            OfficialFile("music_avqa_v2", "balance_valid.json", _TIGER, "data/annots/music_avqa_v2/balance_valid.json",
                         sha256="2b8ad91e181bc76e23d89bc029f04fa0f6c37c87584ebf60e217d3f7e932efbe",
                         note="5,346 questions"),
            OfficialFile("music_avqa_v2", "test_balance.json", _V2, "data/balance_full_set/test_balance.json",
                         sha256="78e854694bc5944f63a49b26a2a95bfe672ed7de6a455a8a097f1731d98a70a0",
                         note="10,819 questions"),
            OfficialFile("music_avqa_v2", "train_bias.json", _V2, "data/bias_set/train_bias.json",
                         git_blob_prefix="fd92f964a630"),
            OfficialFile("music_avqa_v2", "bias_valid.json", _TIGER, "data/annots/music_avqa_v2/bias_valid.json",
                         note="no checksum recorded: not verified"),
            OfficialFile("music_avqa_v2", "test_bias.json", _V2, "data/bias_set/test_bias.json",
                         git_blob_prefix="b53e69bf83"),
            OfficialFile("music_avqa_v2", "MUSIC-AVQA-v2.0_additional_videos.csv", _V2,
                         "data/MUSIC-AVQA-v2.0_additional_videos.csv",
                         sha256="4672f5994308d32c2a2942662be90803176195b96f6176f3d890566f77b9e508",
                         note="YouTube ids and trims of the 1,040 added videos"),
        ),
        licence="GPL-3.0, research use only (DragonLiu1995/MUSIC-AVQA-v2.0); *_valid.json from AIM-SKKU/QA-TIGER"),
    # AVQA publishes no test answers: the paper's "test" is val_qa.json. Checkpoints are selected on "val", a
    # fixed held-out part of train_qa.json by YouTube video (annotations.AVQA_HOLDOUT), never on the scored file.
    # "train_all" (train + val) is for the variant that retrains for the epoch count chosen on val (docs/avqa.md).
    DatasetSpec(
        "avqa", "AVQA",
        {("train", None): (("train_qa.json", "train", None),), ("val", None): (("train_qa.json", "val", None),),
         ("train_all", None): (("train_qa.json", "train_all", None),),
         ("test", None): (("val_qa.json", "test", None),)},
        avqa_rows, "table5", score_table5, answers_in_vocab=False, segments=10,
        table1_counts={"train": ("# Train QA", 1 - AVQA_HOLDOUT["percent"] / 100),
                       "val": ("# Train QA", AVQA_HOLDOUT["percent"] / 100), "train_all": ("# Train QA", 1.0)},
        files=(
            OfficialFile("avqa", "train_qa.json", _AVQA, "data/annotation/train_qa.json",
                         git_blob_prefix="dcf7ee2555bb"),
            OfficialFile("avqa", "val_qa.json", _AVQA, "data/annotation/val_qa.json", git_blob_prefix="78ef35471495",
                         note="the paper's AVQA test set"),
        ),
        licence="see AlyssaYoung/AVQA and https://mn.cs.tsinghua.edu.cn/avqa"),
    # The bundled synthetic benchmark: MUSIC-AVQA's format, generated locally
    DatasetSpec("synthetic", "synthetic benchmark", _music_split_files(), music_avqa_rows, "table2",
                score_table2, obtain="avmaster synth --out {root} --overwrite", segments=10),
    # Its multiple-choice variant (AVQA's task on the synthetic scenes): answers index each record's choices
    DatasetSpec("synthetic_mc", "synthetic benchmark, multiple choice", _music_split_files(), synthetic_mc_rows,
                "table2", score_table2, answers_in_vocab=False,
                obtain="avmaster synth --choices 4 --out {root} --overwrite", segments=10),
)
REGISTRY: Mapping[str, DatasetSpec] = {spec.name: spec for spec in SPECS}
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec of dataset `name`; a ValueError lists the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return REGISTRY[name]


def official_files() -> tuple[OfficialFile, ...]:
    """Every benchmark's official files, in registry order."""
    return tuple(f for spec in SPECS for f in spec.files)

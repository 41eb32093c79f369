"""Official annotation files of the four benchmarks -> one record table (records.py).

    records = load_annotations("music_avqa", "test", "data/music_avqa")

`root` is the folder that holds the official file names, as `avmaster data fetch <dataset>` lays them
out in `data/<dataset>/`; a parent folder holding `<dataset>/` works too.

Datasets and splits (files are the authors' own names). The benchmark registry (dataset_registry.SPECS) is
where they are declared; this module holds the loaders (music_avqa_rows, music_avqa_r_rows, music_avqa_v2_rows,
avqa_rows) and what they share:

| dataset        | split                     | file(s)                                            |
|----------------|---------------------------|----------------------------------------------------|
| music_avqa     | train / val / test        | avqa-{train,val,test}.json                         |
| synthetic      | train / val / test        | avqa-{split}.json (MUSIC-AVQA's format, dataset column "synthetic") |
| music_avqa_r   | test                      | avqa-test-head.json + avqa-test-tail.json (`subset` = head / tail) |
|                | head / tail               | one of those files                                 |
|                | headtail                  | avqa-test-headtail.json as published (`subset` = headtail) |
| music_avqa_v2  | train / val / test, with `subset="balance"` (default) or `"bias"`; or the shorthands "test_bias", "train_balance", "val_bias", ... |
|                | balance: train_balance.json, balance_valid.json, test_balance.json |
|                | bias:    train_bias.json,    bias_valid.json,    test_bias.json    |
| avqa           | train                     | train_qa.json without the held-out YouTube videos (AVQA_HOLDOUT) |
|                | val                       | train_qa.json, the held-out YouTube videos only: model selection |
|                | train_all                 | all of train_qa.json (the variant that retrains for the epochs chosen on val) |
|                | test                      | val_qa.json (AVQA publishes no test answers; the paper's "test" is this file) |
| synthetic_mc   | train / val / test        | avqa-{split}.json of `avmaster synth --choices C` (with `multi_choice`) |

MUSIC-AVQA-R is a test-only benchmark: train and validate on MUSIC-AVQA (its train/val are unchanged).

Columns: records.RECORD_COLUMNS, then
- all datasets: `audio_video_id` (the video whose *audio* features to use; equals `video_id` except in
  MUSIC-AVQA-v2.0's unmatched-audio questions, where it is `unmatch_audio`), `id_derived` (True where
  `question_id` was derived, see below), `source_file`;
- MUSIC-AVQA family: `templ_values` (list), `question_deleted` (int, 0 where absent);
- music_avqa_r: `subset`, `source_question_id` (the published id, shared by the rephrasings of one question);
- music_avqa_v2: `subset`, `unmatch_audio`, `audio_instrument`, `video_instrument`, `person` (None where absent);
- avqa: `choices` (the `multi_choice` list), `video_index` (AVQA's numeric `video_id`).
  AVQA's records: {"id", "video_name": "<YouTube id>_<start seconds>", "video_id", "question_text",
  "multi_choice": [4 strings], "answer": index into multi_choice, "question_relation": "Both" | "Sound" | "View",
  "question_type": a word such as "Happening", "Which", "Where"}; `modality` is Audio-Visual / Audio / Visual.
  AVQA's validation split is a fixed held-out part of train_qa.json, chosen by YouTube video (AVQA_HOLDOUT: a
  salted sha256 of the YouTube id, so the clips of one source video stay on one side), and no checkpoint is
  ever selected on val_qa.json, the scored file. A question id found in both AVQA files is refused.
- synthetic_mc: `choices` (the record's `multi_choice`); `answer_idx` is the answer's position in it.
  For AVQA, `video_id` is the clip name (`video_name`, e.g. "06GyG4-wONQ_000006"), `question` = `template` =
  `question_text`, `qtype` = `question_type`, `answer` = the chosen string and `answer_idx` = its position
  in `choices` (0-3), not an index into vocab.ANSWERS.

Stable ids. Records that have no `question_id` (MUSIC-AVQA-v2.0: 1,724 in test_balance, 826 in
balance_valid) and every MUSIC-AVQA-R record (its ~23 rephrasings of a test question share the published
id) get a *derived* id: DERIVED_ID_BASE + the first 7 bytes (big-endian) of
sha1("\\x1f".join([dataset, source id or "", video_id, audio_video_id, question_content, json(templ_values),
answer, occurrence])), where `occurrence` counts earlier identical records in the same file. It depends
only on a record's content, so the same question gets the same id in every file and on every machine,
and it can never collide with a published id (all < DERIVED_ID_BASE = 10**12; loading fails otherwise).
Float ids (47859.0 in QA-TIGER's files) become int64.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from .records import QUESTION_TYPES, RECORD_COLUMNS
from .vocab import answer_index, fill_question, parse_templ_values

DERIVED_ID_BASE = 10**12
MAX_IDS_LISTED = 20  # ids named in a message, then a count (as preflight.MAX_LISTED)
# AVQA's `question_relation` (the modality a question needs) -> records.MODALITIES
_AVQA_MODALITY = {"Sound": "Audio", "View": "Visual", "Both": "Audio-Visual"}
V2_EXTRA_FIELDS = ("unmatch_audio", "audio_instrument", "video_instrument", "person")


def __getattr__(name: str):
    """DATASETS and V2_SUBSETS now come from the benchmark registry (dataset_registry); kept for old imports."""
    from . import dataset_registry

    if name == "DATASETS":
        return dataset_registry.DATASET_NAMES
    if name == "V2_SUBSETS":
        return dataset_registry.get("music_avqa_v2").subsets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AnnotationError(ValueError):
    """An annotation file or record that cannot be read; the message names the file and record."""


class MissingAnnotationFile(FileNotFoundError):
    """An official annotation file that is not on disk."""


def annotation_files(dataset: str, split: str, subset: str | None = None) -> list[tuple[str, str, str | None]]:
    """[(file name, split label, subset label)] that `load_annotations(dataset, split, subset=...)` reads
    (the dataset's DatasetSpec.split_files)."""
    from .dataset_registry import get

    spec = get(dataset)
    if spec.subsets:
        base, _, short_subset = split.partition("_")
        if short_subset:  # "test_bias" == ("test", subset="bias")
            if subset is not None and subset != short_subset:
                raise ValueError(f"split {split!r} names subset {short_subset!r} but subset={subset!r} was given")
            split, subset = base, short_subset
        subset = subset or spec.default_subset
        _check_choice(dataset, split, spec.splits, hint=" (or a shorthand such as 'test_bias')")
        if subset not in spec.subsets:
            raise ValueError(f"unknown {dataset} subset {subset!r}; choose one of {', '.join(spec.subsets)}")
        return list(spec.split_files[split, subset])
    _check_choice(dataset, split, spec.splits)
    return list(spec.split_files[split, None])


def load_annotations(dataset: str, split: str, root: str | Path | None = None, *,
                     subset: str | None = None) -> pd.DataFrame:
    """The records of one split of one benchmark as a DataFrame (see the module docstring for the layout).

    root: folder with the official files (default data/<dataset>). subset: datasets with subsets only
    (music_avqa_v2).
    """
    from .dataset_registry import SPECS, get

    files = annotation_files(dataset, split, subset)
    spec = get(dataset)
    if subset is not None and not spec.subsets:
        raise ValueError(f"subset= applies to {', '.join(s.name for s in SPECS if s.subsets)} only "
                         f"(got dataset {dataset!r})")
    root = Path(root) if root is not None else Path("data") / dataset
    tables = []
    for name, split_label, subset_label in files:
        path = _find_file(root, spec, name)
        raw = _read_json_list(path, spec)
        tables.append(pd.DataFrame(spec.rows(raw, path, dataset, split_label, subset_label)))
    records = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    records = _finish(records, dataset)
    return records


# --------------------------------------------------------------------------- MUSIC-AVQA family

def music_avqa_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None) -> list[dict]:
    """The loader of the MUSIC-AVQA format (music_avqa, synthetic): raw JSON records -> record rows."""
    return _music_rows(raw, path, dataset, split, subset)


def music_avqa_r_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None) -> list[dict]:
    """MUSIC-AVQA-R: the MUSIC-AVQA format, but the ~23 rephrasings of a test question share its published id,
    which is kept as `source_question_id` while every `question_id` is derived."""
    return _music_rows(raw, path, dataset, split, subset, shared_ids=True)


def music_avqa_v2_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None) -> list[dict]:
    """MUSIC-AVQA-v2.0: the MUSIC-AVQA format plus V2_EXTRA_FIELDS (None where absent)."""
    return _music_rows(raw, path, dataset, split, subset, extra_fields=V2_EXTRA_FIELDS)


def _music_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None, *, shared_ids: bool = False,
                extra_fields: tuple[str, ...] = ()) -> list[dict]:
    rows, occurrences, type_cache, text_cache = [], {}, {}, {}
    for position, r in enumerate(raw):
        where = f"{path} (record {position}, question_id {r.get('question_id') if isinstance(r, dict) else None})"
        if not isinstance(r, dict):
            raise AnnotationError(f"{where} is not a JSON object")
        for key in ("video_id", "type", "question_content", "anser"):
            if key not in r:
                raise AnnotationError(f"{where} lacks the field {key!r} (MUSIC-AVQA format expected)")
        type_key = r["type"] if isinstance(r["type"], str) else json.dumps(r["type"])
        if type_key not in type_cache:
            type_cache[type_key] = _parse_type(r["type"], where)
        modality, qtype = type_cache[type_key]
        raw_values = r.get("templ_values")
        text_key = (r["question_content"], raw_values if isinstance(raw_values, str) else json.dumps(raw_values))
        if text_key not in text_cache:  # a few thousand distinct (template, values) pairs per file
            try:
                values = parse_templ_values(raw_values, where)
                text_cache[text_key] = values, fill_question(r["question_content"], values, where), json.dumps(values)
            except ValueError as e:
                raise AnnotationError(str(e)) from None
        values, question, values_json = text_cache[text_key]
        values = list(values)
        answer = str(r["anser"])
        unmatch = r.get("unmatch_audio")
        audio_video_id = str(unmatch) if _present(unmatch) else str(r["video_id"])
        source_id = _as_int_id(r.get("question_id"), where)
        row = {
            "video_id": str(r["video_id"]), "template": r["question_content"], "question": question,
            "modality": modality, "qtype": qtype, "answer": answer, "answer_idx": answer_index(answer, where),
            "split": split, "dataset": dataset, "audio_video_id": audio_video_id,
            "templ_values": values, "question_deleted": _as_int_or_zero(r.get("question_deleted")),
            "source_file": path.name,
        }
        if subset is not None:
            row["subset"] = subset
        if shared_ids:
            row["source_question_id"] = source_id
        for key in extra_fields:
            row[key] = r.get(key) if _present(r.get(key)) else None
        # MUSIC-AVQA-R: rephrasings share the published id, so every id is derived there.
        if source_id is None or shared_ids:
            key = [dataset, "" if source_id is None else str(source_id), row["video_id"], audio_video_id,
                   r["question_content"], values_json, answer]
            occurrence = occurrences.get(tuple(key), 0)
            occurrences[tuple(key)] = occurrence + 1
            row["question_id"], row["id_derived"] = derived_question_id(key + [str(occurrence)]), True
        else:
            if source_id >= DERIVED_ID_BASE:
                raise AnnotationError(f"{where}: question_id {source_id} is in the range reserved for derived ids "
                                      f"(>= {DERIVED_ID_BASE}); report this file")
            row["question_id"], row["id_derived"] = source_id, False
        rows.append(row)
    return rows


def derived_question_id(key_parts: list[str]) -> int:
    """DERIVED_ID_BASE + the first 7 bytes of sha1 of the key parts joined by the unit separator."""
    digest = hashlib.sha1("\x1f".join(key_parts).encode("utf-8")).digest()
    return DERIVED_ID_BASE + int.from_bytes(digest[:7], "big")


def _parse_type(value, where: str) -> tuple[str, str]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
    if not (isinstance(parsed, list) and len(parsed) == 2 and tuple(parsed) in QUESTION_TYPES):
        raise AnnotationError(f"{where}: type {value!r} is not one of the nine MUSIC-AVQA question types "
                              f"{[list(t) for t in QUESTION_TYPES]}")
    return parsed[0], parsed[1]


# --------------------------------------------------------------------------- AVQA

# AVQA's model-selection split: the questions of 10% of train_qa.json's source videos, picked by a salted hash of
# the YouTube id (fixed on every machine; changing the salt or the percent changes the split and must be recorded).
# v1 hashed the clip name, so clips of one YouTube video could land on both sides; v2 groups them by YouTube id.
AVQA_HOLDOUT = {"file": "train_qa.json", "percent": 10, "salt": "avmaster/avqa-holdout/v2", "group": "youtube_id"}
AVQA_FILES = ("train_qa.json", "val_qa.json")


def avqa_youtube_id(video_name: str) -> str:
    """The YouTube id of an AVQA clip: `video_name` is `<YouTube id>_<start seconds>` ("-HG3Omg_89c_000030" ->
    "-HG3Omg_89c"; YouTube ids may themselves hold "_"). ValueError for a name without the seconds suffix."""
    youtube_id, sep, start = video_name.rpartition("_")
    if not (sep and youtube_id and start.isdigit()):
        raise ValueError(f"AVQA video_name {video_name!r} is not <YouTube id>_<start seconds>")
    return youtube_id


def avqa_held_out(video_name: str) -> bool:
    """True when the AVQA clip `video_name` belongs to the held-out (validation) part of train_qa.json: every
    clip of one YouTube video is on the same side."""
    key = avqa_youtube_id(video_name)
    digest = hashlib.sha256(f"{AVQA_HOLDOUT['salt']}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < AVQA_HOLDOUT["percent"]


def avqa_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None) -> list[dict]:
    """The loader of AVQA's format: raw JSON records -> record rows (see the module docstring). From
    train_qa.json, split "val" keeps the held-out YouTube videos (AVQA_HOLDOUT) and split "train" the others;
    a question id that is also in the other AVQA file beside it is refused."""
    rows = [_avqa_row(r, i, path, dataset, split) for i, r in enumerate(raw)]
    _refuse_ids_in_both_avqa_files(rows, path, dataset)
    if path.name == AVQA_HOLDOUT["file"] and split in ("train", "val"):
        rows = [row for row in rows if avqa_held_out(row["video_id"]) == (split == "val")]
    return rows


def _refuse_ids_in_both_avqa_files(rows: list[dict], path: Path, dataset: str) -> None:
    """Question features and predictions are keyed by question id: an id in both train_qa.json and val_qa.json
    would share one stored feature (the first written wins), so it is refused, naming the ids and both files."""
    if path.name not in AVQA_FILES:
        return
    other = path.with_name(AVQA_FILES[1 - AVQA_FILES.index(path.name)])
    if not other.is_file():
        return
    from .dataset_registry import get

    spec = get(dataset)
    other_ids = set()
    for position, r in enumerate(_read_json_list(other, spec)):
        qid = _as_int_id(r.get("id") if isinstance(r, dict) else None, f"{other} (record {position})")
        other_ids.add(qid)
    both = sorted({row["question_id"] for row in rows} & other_ids)
    if both:
        raise AnnotationError(f"{len(both)} question id(s) are in both {path} and {other} (e.g. {both[:5]}); "
                              f"AVQA's ids are unique across its two files, so one of them is not the published "
                              f"file: fetch both again with `{spec.obtain_command(path.parent)}`")


def synthetic_mc_rows(raw: list, path: Path, dataset: str, split: str, subset: str | None) -> list[dict]:
    """The synthetic benchmark's multiple-choice variant (`avmaster synth --choices C`): MUSIC-AVQA's format plus
    `multi_choice`; `choices` is that list and `answer_idx` the answer's position in it (as for AVQA)."""
    rows = _music_rows(raw, path, dataset, split, subset)
    for position, (r, row) in enumerate(zip(raw, rows)):
        choices = [str(c) for c in r.get("multi_choice") or ()]
        if row["answer"] not in choices:
            raise AnnotationError(f"{path} (record {position}): answer {row['answer']!r} is not among its "
                                  f"multi_choice {choices}; regenerate with `avmaster synth --choices 4`")
        row["choices"], row["answer_idx"] = choices, choices.index(row["answer"])
    return rows


def _avqa_row(r, position: int, path: Path, dataset: str, split: str) -> dict:
    where = f"{path} (record {position}, id {r.get('id') if isinstance(r, dict) else None})"
    if not isinstance(r, dict):
        raise AnnotationError(f"{where} is not a JSON object")
    for key in ("id", "video_name", "question_text", "multi_choice", "answer", "question_relation"):
        if key not in r:
            raise AnnotationError(f"{where} lacks the field {key!r} (AVQA format expected)")
    choices = [str(c) for c in r["multi_choice"]]
    choice = _as_int_id(r["answer"], where)
    if choice is None or not 0 <= choice < len(choices):
        raise AnnotationError(f"{where}: answer {r['answer']!r} does not index multi_choice {choices}")
    if r["question_relation"] not in _AVQA_MODALITY:
        raise AnnotationError(f"{where}: question_relation {r['question_relation']!r} is not one of AVQA's "
                              f"{', '.join(_AVQA_MODALITY)}")
    try:
        avqa_youtube_id(str(r["video_name"]))
    except ValueError as e:
        raise AnnotationError(f"{where}: {e}") from None
    question_id = _as_int_id(r["id"], where)
    return {
        "question_id": question_id, "video_id": str(r["video_name"]), "template": r["question_text"],
        "question": r["question_text"], "modality": _AVQA_MODALITY[r["question_relation"]],
        "qtype": str(r.get("question_type", "")), "answer": choices[choice], "answer_idx": choice,
        "split": split, "dataset": dataset, "audio_video_id": str(r["video_name"]), "id_derived": False,
        "source_file": path.name, "choices": choices, "video_index": r.get("video_id"),
    }


# --------------------------------------------------------------------------- shared helpers

def _finish(records: pd.DataFrame, dataset: str) -> pd.DataFrame:
    extra = [c for c in records.columns if c not in RECORD_COLUMNS]
    records = records[list(RECORD_COLUMNS) + extra]
    records = records.astype({"question_id": "int64", "answer_idx": "int64"})
    derived = records.loc[records["id_derived"], "question_id"]
    if derived.duplicated().any():  # 56-bit hashes: practically impossible, but never silent
        raise AnnotationError(f"derived question ids collide in {dataset}: "
                              f"{derived[derived.duplicated()].tolist()[:5]}; report this")
    dup = records["question_id"].duplicated(keep=False)
    if dup.any():  # predictions and question features are keyed by id: one of the two would be dropped
        ids = records.loc[dup, "question_id"].drop_duplicates()
        shown = ", ".join(map(str, ids.head(MAX_IDS_LISTED)))
        more = f" and {len(ids) - MAX_IDS_LISTED} more" if len(ids) > MAX_IDS_LISTED else ""
        files = ", ".join(sorted(records.loc[dup, "source_file"].astype(str).unique()))
        raise AnnotationError(f"{dataset}: {len(ids)} question_id(s) appear more than once in {files} "
                              f"({shown}{more}); each question needs its own id (predictions and features are "
                              "stored by id, so all but one would be dropped): fix or re-fetch the file")
    return records


def find_annotation_file(root, dataset: str, name: str) -> Path:
    """Where `load_annotations` reads the file `name` of `dataset` under `root` (MissingAnnotationFile if absent)."""
    from .dataset_registry import get

    return _find_file(Path(root), get(dataset), name)


def _find_file(root: Path, spec, name: str) -> Path:
    for candidate in (root / name, root / spec.name / name):
        if candidate.is_file():
            return candidate
    where = f"data/{spec.name}/" if spec.files else root
    action = "download the official files into" if spec.files else "generate them in"
    raise MissingAnnotationFile(
        f"annotation file {root / name} not found. Run `{spec.obtain_command(root)}` to {action} {where} "
        f"(or pass the folder that holds {name} as root)."
    )


def _read_json_list(path: Path, spec) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path} is not valid JSON ({e}). It may be truncated or corrupt: delete it and run "
                              f"`{spec.obtain_command(path.parent)}` again.") from None
    if not isinstance(data, list):
        raise AnnotationError(f"{path} holds a JSON {type(data).__name__}, not the list of records expected")
    return data


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _as_int_id(value, where: str) -> int | None:
    """int, integral float (47859.0) or digit string -> int; None / NaN -> None."""
    if not _present(value):
        return None
    if isinstance(value, bool):
        raise AnnotationError(f"{where}: id {value!r} is not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise AnnotationError(f"{where}: id {value!r} is not an integer")
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: id {value!r} is not an integer") from None


def _as_int_or_zero(value) -> int:
    return int(value) if _present(value) else 0


def _check_choice(dataset: str, split: str, choices: tuple[str, ...], hint: str = "") -> None:
    if split not in choices:
        raise ValueError(f"unknown split {split!r} for {dataset}; choose one of {', '.join(choices)}{hint}")

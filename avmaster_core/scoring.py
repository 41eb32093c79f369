"""Accuracy in the layouts of the paper's tables, and the prediction file format.

    table = score(records, predictions)          # picks the layout from records["dataset"]
    table.to_csv("results/table2_ours.csv")

`predictions` maps question_id -> predicted answer, given as an index into vocab.ANSWERS (for AVQA: into
the record's `choices`) or as the answer string; a dict or a pandas Series indexed by question_id.

Protocol (docs/released-code.md §7): every accuracy is correct/total in percent over the questions of its
cell; the modality "Avg" columns and the overall "Avg" are *micro* averages (pooled over questions),
not means of the type columns. A cell with no questions is NaN.

The layout is the records' DatasetSpec's (dataset_registry: `table` and `scorer`):

| records["dataset"]     | layout                                                            |
|------------------------|-------------------------------------------------------------------|
| music_avqa, synthetic  | Table II: per type, per modality Avg, overall Avg                 |
| music_avqa_r           | Table III: per type x head (H) / tail (T), overall Avg; records loaded with split "headtail" carry no head/tail labels and get Table II's layout |
| music_avqa_v2          | Table IV: A-QA, V-QA, AV-QA, Avg                                  |
| avqa                   | Table V: Total Accuracy (%)                                       |

Prediction file (JSON, written atomically):
    {"format": "avmaster-predictions/1", "dataset": "music_avqa", "split": "test",
     "meta": {...}, "predictions": {"12": "one", "15": 7, ...}}
Keys are question ids as strings; values an answer string or an answer index.
"""
from __future__ import annotations

import json
from numbers import Integral
from pathlib import Path

import pandas as pd

from .atomic import atomic_write
from .records import MODALITIES, QUESTION_TYPES, check_records
from .vocab import NUM_ANSWERS, answer_index

PREDICTIONS_FORMAT = "avmaster-predictions/1"

MODALITY_LABELS = {"Audio": "Audio QA", "Visual": "Visual QA", "Audio-Visual": "Audio-Visual QA"}
QTYPE_LABELS = {"Counting": "Count", "Comparative": "Comp", "Location": "Local", "Existential": "Exist",
                "Temporal": "Temp"}
OVERALL = ("Overall", "Avg")
# Table II columns: (modality label, type label), each modality closed by its "Avg", then the overall Avg.
TABLE2_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    col for m in MODALITIES for col in
    [(MODALITY_LABELS[m], QTYPE_LABELS[q]) for mm, q in QUESTION_TYPES if mm == m] + [(MODALITY_LABELS[m], "Avg")]
) + (OVERALL,)
# Table III columns: (modality label, type label, "H" | "T"), then the overall Avg.
TABLE3_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (MODALITY_LABELS[m], QTYPE_LABELS[q], ht) for m, q in QUESTION_TYPES for ht in ("H", "T")
) + (OVERALL + ("",),)
TABLE4_COLUMNS: tuple[str, ...] = ("A-QA", "V-QA", "AV-QA", "Avg")
TABLE5_COLUMNS: tuple[str, ...] = ("Total Accuracy (%)",)


class ScoringError(ValueError):
    """Predictions that cannot be scored against the records (missing ids, unknown answers, ...)."""


# --------------------------------------------------------------------------- scoring

def correctness(records: pd.DataFrame, predictions, *, missing: str = "error") -> pd.Series:
    """A boolean Series (aligned with records) saying whether each question was answered right.

    missing: "error" (default) raises on questions without a prediction; "wrong" counts them wrong.
    Predictions for ids not in `records` are ignored, unless none of them match (then: wrong split?).
    """
    check_records(records)
    if missing not in ("error", "wrong"):
        raise ValueError(f"missing must be 'error' or 'wrong', not {missing!r}")
    preds = _as_prediction_dict(predictions)
    ids = records["question_id"].astype("int64")
    known = ids.isin(list(preds))
    if len(records) and not known.any():
        raise ScoringError(f"none of the {len(preds)} predictions matches a question_id of these records "
                           f"(e.g. records {ids.head(3).tolist()}, predictions {list(preds)[:3]}); "
                           "were they made for another dataset or split?")
    if not known.all() and missing == "error":
        absent = ids[~known]
        raise ScoringError(f"{len(absent)} of {len(records)} questions have no prediction (e.g. question_id "
                           f"{absent.head(5).tolist()}); predict them all, or count them wrong "
                           "(`avmaster score --missing wrong`; in Python missing='wrong')")
    from .dataset_registry import SPECS

    # AVQA-style datasets index answers into each record's own `choices`, not vocab.ANSWERS
    is_avqa = records["dataset"].isin([spec.name for spec in SPECS if not spec.answers_in_vocab])
    correct = []
    for qid, answer, answer_idx, avqa, has in zip(ids, records["answer"], records["answer_idx"], is_avqa, known):
        if not has:
            correct.append(False)
            continue
        guess = preds[qid]
        if isinstance(guess, str):
            if not avqa:
                answer_index(guess, where=f"the prediction for question_id {qid}",  # unknown string: clear error
                             remedy="A prediction is one of these strings or its index (0-41), as `avmaster "
                                    "train`/`evaluate` write them: predict this split again, or correct the file.")
            correct.append(guess == answer)
        else:
            if not avqa and not 0 <= guess < NUM_ANSWERS:
                raise ScoringError(f"the prediction for question_id {qid} is {guess}, not an answer index "
                                   f"in [0, {NUM_ANSWERS})")
            correct.append(guess == int(answer_idx))
    return pd.Series(correct, index=records.index, name="correct", dtype=bool)


def score(records: pd.DataFrame, predictions, *, missing: str = "error", name: str = "ours") -> pd.DataFrame:
    """Accuracy (%) in the paper's layout for the records' dataset (its DatasetSpec's scorer): a one-row
    DataFrame indexed by `name`."""
    from .dataset_registry import REGISTRY

    check_records(records)
    datasets = records["dataset"].unique().tolist()
    if len(datasets) != 1:
        raise ScoringError(f"records mix datasets {datasets}; score each dataset on its own")
    dataset = datasets[0]
    if dataset not in REGISTRY:
        raise ScoringError(f"no table layout for dataset {dataset!r}")
    return REGISTRY[dataset].scorer(records, predictions, missing=missing, name=name)


def score_by_template(records: pd.DataFrame, predictions, *, missing: str = "error") -> pd.DataFrame:
    """Accuracy (%) per question template (records["template"]), with its modality, type and question count,
    in the records' order of first appearance: what one template carries of a type's or the overall number."""
    correct = correctness(records, predictions, missing=missing)
    table = records.assign(correct=correct).groupby("template", sort=False).agg(
        modality=("modality", "first"), qtype=("qtype", "first"), questions=("correct", "size"),
        accuracy=("correct", "mean"))
    return table.assign(accuracy=100 * table["accuracy"])


def score_head_tail(records, predictions, *, missing="error", name="ours") -> pd.DataFrame:
    """MUSIC-AVQA-R: Table III's layout when every record is labelled head or tail (split "test"), else
    Table II's (split "headtail" carries no head/tail labels)."""
    if "subset" in records and records["subset"].isin(["head", "tail"]).all():
        return score_table3(records, predictions, missing=missing, name=name)
    return score_table2(records, predictions, missing=missing, name=name)


def score_table2(records, predictions, *, missing="error", name="ours") -> pd.DataFrame:
    """Table II layout (MUSIC-AVQA): 9 types, a micro Avg per modality, the overall micro Avg."""
    correct = correctness(records, predictions, missing=missing)
    values = {}
    for m in MODALITIES:
        in_modality = records["modality"].eq(m)
        for mm, q in QUESTION_TYPES:
            if mm == m:
                values[MODALITY_LABELS[m], QTYPE_LABELS[q]] = _percent(correct[in_modality & records["qtype"].eq(q)])
        values[MODALITY_LABELS[m], "Avg"] = _percent(correct[in_modality])
    values[OVERALL] = _percent(correct)
    return _one_row(values, TABLE2_COLUMNS, name)


def score_table3(records, predictions, *, missing="error", name="ours") -> pd.DataFrame:
    """Table III layout (MUSIC-AVQA-R): each type on its head (H) and tail (T) questions, overall micro Avg."""
    if "subset" not in records:
        raise ScoringError("Table III needs the head/tail `subset` column: load music_avqa_r with split 'test'")
    correct = correctness(records, predictions, missing=missing)
    values = {}
    for m, q in QUESTION_TYPES:
        of_type = records["modality"].eq(m) & records["qtype"].eq(q)
        for label, subset in (("H", "head"), ("T", "tail")):
            in_cell = of_type & records["subset"].eq(subset)
            values[MODALITY_LABELS[m], QTYPE_LABELS[q], label] = _percent(correct[in_cell])
    values[OVERALL + ("",)] = _percent(correct)
    return _one_row(values, TABLE3_COLUMNS, name)


def score_table4(records, predictions, *, missing="error", name="ours") -> pd.DataFrame:
    """Table IV layout (MUSIC-AVQA-v2.0): micro accuracy per modality and overall."""
    correct = correctness(records, predictions, missing=missing)
    values = {label: _percent(correct[records["modality"].eq(m)])
              for label, m in zip(TABLE4_COLUMNS, MODALITIES)}
    values["Avg"] = _percent(correct)
    return pd.DataFrame([values], index=pd.Index([name], name="method"), columns=list(TABLE4_COLUMNS))


def score_table5(records, predictions, *, missing="error", name="ours") -> pd.DataFrame:
    """Table V layout (AVQA): total accuracy."""
    correct = correctness(records, predictions, missing=missing)
    return pd.DataFrame({TABLE5_COLUMNS[0]: [_percent(correct)]}, index=pd.Index([name], name="method"))


def _percent(correct: pd.Series) -> float:
    return float("nan") if len(correct) == 0 else 100.0 * float(correct.mean())


def _one_row(values: dict, columns: tuple, name: str) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples(columns)
    return pd.DataFrame([[values[c] for c in columns]], index=pd.Index([name], name="method"), columns=index)


def _as_prediction_dict(predictions) -> dict[int, int | str]:
    """dict / Series of question_id -> answer index or string, normalised to {int: int | str}."""
    if isinstance(predictions, pd.Series):
        predictions = predictions.to_dict()
    if not isinstance(predictions, dict):
        raise TypeError(f"predictions must be a dict or a pandas Series keyed by question_id, "
                        f"not {type(predictions).__name__}")
    out = {}
    for qid, guess in predictions.items():
        try:
            key = int(qid)
        except (TypeError, ValueError):
            raise ScoringError(f"prediction key {qid!r} is not a question_id (an integer)") from None
        if isinstance(guess, str):
            out[key] = guess
        elif isinstance(guess, Integral) and not isinstance(guess, bool):
            out[key] = int(guess)
        elif isinstance(guess, float) and guess.is_integer():
            out[key] = int(guess)
        else:
            raise ScoringError(f"the prediction for question_id {qid} is {guess!r}: give an answer index or string")
    return out


# --------------------------------------------------------------------------- prediction files

def write_predictions(path: str | Path, predictions, *, dataset: str | None = None, split: str | None = None,
                      meta: dict | None = None) -> Path:
    """Write predictions (see the module docstring) atomically (avmaster_core.atomic)."""
    path = Path(path)
    preds = _as_prediction_dict(predictions)
    document = {"format": PREDICTIONS_FORMAT, "dataset": dataset, "split": split, "meta": meta or {},
                "predictions": {str(k): v for k, v in preds.items()}}
    return atomic_write(path, lambda f: json.dump(document, f), mode="w")


def read_prediction_file(path: str | Path) -> tuple[dict[int, int | str], dict]:
    """(predictions, header) from a prediction file; header holds format, dataset, split and meta."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"prediction file {path} not found") from None
    except json.JSONDecodeError as e:
        raise ScoringError(f"prediction file {path} is not valid JSON ({e})") from None
    if not isinstance(document, dict) or document.get("format") != PREDICTIONS_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ScoringError(f"{path} is not an avmaster prediction file (format {found!r}, expected "
                           f"{PREDICTIONS_FORMAT!r}); see avmaster_core.scoring for the format")
    if not isinstance(document.get("predictions"), dict):
        raise ScoringError(f"{path}: 'predictions' must map question ids to answers")
    try:
        preds = _as_prediction_dict(document["predictions"])
    except ScoringError as e:
        raise ScoringError(f"{path}: {e}") from None
    header = {k: v for k, v in document.items() if k != "predictions"}
    return preds, header


def check_prediction_target(header: dict, dataset: str, split: str, *, path="predictions", force: bool = False) -> None:
    """Refuse predictions whose file records another dataset or split than the one scored (unless `force`).

    A file without the fields (written by hand) passes; scoring then still needs its question ids to match."""
    clashes = [f"{key} {header.get(key)!r}" for key, wanted in (("dataset", dataset), ("split", split))
               if header.get(key) is not None and str(header.get(key)) != str(wanted)]
    if clashes and not force:
        raise ScoringError(f"{path} holds predictions for {' and '.join(clashes)}, but --dataset {dataset} "
                           f"--split {split} is being scored: pass the matching --dataset/--split, or --force "
                           "to score them anyway")


def read_predictions(path: str | Path) -> dict[int, int | str]:
    """The {question_id: answer index or string} of a prediction file."""
    return read_prediction_file(path)[0]

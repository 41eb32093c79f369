"""avmaster_core.data.scoring, what mutation testing found unpinned (docs/mutation.md): every scorer's defaults
(row "ours" in an index named "method", missing predictions raise), answer-index bounds, the prediction
normalisation, and the prediction file's header."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from avmaster_core.data import scoring
from avmaster_core.data.scoring import (NUM_ANSWERS, ScoringError, correctness, read_prediction_file, score_head_tail,
                                   score_table2, score_table3, score_table4, score_table5, write_predictions)
from avmaster_core.core.vocab import ANSWERS


def _records(rows, dataset, **extra):
    """rows: (question_id, modality, qtype, answer)."""
    df = pd.DataFrame(rows, columns=["question_id", "modality", "qtype", "answer"])
    df["video_id"], df["template"], df["question"] = "v", "q", "q"
    df["answer_idx"] = df["answer"].map(ANSWERS.index)
    df["split"], df["dataset"] = "test", dataset
    for name, values in extra.items():
        df[name] = values
    return df


ROWS = [(1, "Audio", "Counting", "two"), (2, "Visual", "Location", "left"), (3, "Audio-Visual", "Temporal", "yes")]
CASES = {
    "table2": (score_table2, lambda: _records(ROWS, "music_avqa")),
    "table3": (score_table3, lambda: _records(ROWS, "music_avqa_r", subset=["head", "tail", "head"])),
    "head_tail": (score_head_tail, lambda: _records(ROWS, "music_avqa_r", subset=["head", "tail", "head"])),
    "table4": (score_table4, lambda: _records(ROWS, "music_avqa_v2")),
    "table5": (score_table5, lambda: _records(ROWS, "avqa")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_scorer_labels_its_row_and_refuses_missing_predictions_by_default(case):
    scorer, make = CASES[case]
    records = make()
    answers = {1: int(records["answer_idx"][0]), 2: int(records["answer_idx"][1]), 3: int(records["answer_idx"][2])}
    table = scorer(records, answers)
    assert table.index.tolist() == ["ours"] and table.index.name == "method"
    assert scorer(records, answers, name="mine").index.tolist() == ["mine"]
    overall = table.iloc[0, -1]
    assert overall == 100.0
    with pytest.raises(ScoringError, match="no prediction"):
        scorer(records, {1: answers[1], 2: answers[2]})
    wrong = scorer(records, {1: answers[1], 2: answers[2]}, missing="wrong")
    assert wrong.iloc[0, -1] == pytest.approx(200 / 3)


def test_head_tail_layout_follows_the_subset_labels():
    records = CASES["table3"][1]()
    assert score_head_tail(records, {1: "two", 2: "left", 3: "yes"}).columns.nlevels == 3
    assert score_head_tail(records.assign(subset="headtail"), {1: 1, 2: 1, 3: 1}).columns.nlevels == 2
    assert score_head_tail(records.drop(columns="subset"), {1: 1, 2: 1, 3: 1}).columns.nlevels == 2


def test_answer_index_bounds_and_types():
    records = _records([(1, "Audio", "Counting", "two")], "music_avqa")
    assert correctness(records, {1: ANSWERS.index("two")}).tolist() == [True]
    assert correctness(records, {1: 0}).tolist() == [ANSWERS[0] == "two"]
    assert correctness(records, {1: NUM_ANSWERS - 1}).tolist() == [False]
    assert correctness(records, {1: float(ANSWERS.index("two"))}).tolist() == [True]  # 3.0 is index 3
    assert correctness(records, pd.Series({1: "two"})).tolist() == [True]
    assert correctness(records, {"1": "two", 99: "one"}).tolist() == [True]  # string keys; extra ids ignored
    for bad in (NUM_ANSWERS, -1):
        with pytest.raises(ScoringError, match=r"not an answer index in \[0, 42\)"):
            correctness(records, {1: bad})
    for bad in (True, 2.5, None):
        with pytest.raises(ScoringError, match="give an answer index or string"):
            correctness(records, {1: bad})
    with pytest.raises(ScoringError, match="is not a question_id"):
        correctness(records, {"one": "two"})
    with pytest.raises(ValueError, match="missing must be 'error' or 'wrong'"):
        correctness(records, {1: "two"}, missing="skip")
    result = correctness(records, {1: "two"})
    assert result.name == "correct" and result.dtype == bool and result.index.equals(records.index)


def test_avqa_indices_point_into_each_records_choices():
    records = _records([(1, "Audio", "Which", "two"), (2, "Audio", "Which", "two")], "avqa")
    records["answer"], records["answer_idx"] = ["dog", "car"], [0, 50]
    assert correctness(records, {1: 0, 2: 50}).tolist() == [True, True]  # no 42-answer bound for AVQA
    assert correctness(records, {1: "dog", 2: "bird"}).tolist() == [True, False]  # any string, no vocab check


def test_empty_cells_are_nan_not_zero():
    assert math.isnan(scoring._percent(pd.Series([], dtype=bool)))
    assert scoring._percent(pd.Series([True, False, False, True])) == 50.0


def test_prediction_file_header_defaults_and_content(tmp_path):
    path = write_predictions(tmp_path / "p.json", {1: "two", "2": 3.0})
    document = json.loads(path.read_text())
    assert document == {"format": scoring.PREDICTIONS_FORMAT, "dataset": None, "split": None, "meta": {},
                        "predictions": {"1": "two", "2": 3}}
    predictions, header = read_prediction_file(path)
    assert predictions == {1: "two", 2: 3} and "predictions" not in header and header["meta"] == {}


def test_prediction_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="prediction file .*none.json not found"):
        read_prediction_file(tmp_path / "none.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ScoringError, match="format 'list'"):
        read_prediction_file(tmp_path / "list.json")
    (tmp_path / "flat.json").write_text(json.dumps({"format": scoring.PREDICTIONS_FORMAT, "predictions": [1]}))
    with pytest.raises(ScoringError, match="flat.json: 'predictions' must map"):
        read_prediction_file(tmp_path / "flat.json")
    (tmp_path / "utf8.json").write_text(json.dumps({"format": scoring.PREDICTIONS_FORMAT, "meta": {"n": "é"},
                                                    "predictions": {}}, ensure_ascii=False), encoding="utf-8")
    assert read_prediction_file(tmp_path / "utf8.json")[1]["meta"] == {"n": "é"}


def test_derived_ids_beyond_float_precision_are_matched_exactly():
    # derived ids (10**12 + 56 bits) exceed 2**53: a float conversion would merge neighbours
    big = 70333257272251838
    records = _records([(big, "Audio", "Counting", "two"), (big + 1, "Audio", "Counting", "one")], "music_avqa")
    assert correctness(records, {big: "two", big + 1: "one"}).tolist() == [True, True]
    assert correctness(records, {big: "one", big + 1: "two"}).tolist() == [False, False]


def test_correctness_keeps_the_records_index_and_dtype_even_when_empty():
    records = _records(ROWS, "music_avqa").iloc[1:]
    result = correctness(records, {2: "left", 3: "no"})
    assert result.index.tolist() == [1, 2] and result.tolist() == [True, False]
    empty = correctness(records.iloc[:0], {})
    assert empty.dtype == bool and empty.empty


def test_error_messages_say_what_to_do(tmp_path):
    records = _records(ROWS, "music_avqa")
    with pytest.raises(ScoringError, match="were they made for another dataset or split"):
        correctness(records, {99: "yes"})
    with pytest.raises(ScoringError, match=r"question_id \[3\]\); predict them all, or count them wrong \(`avmaster score --missing wrong`"):
        correctness(records, {1: "two", 2: "left"})
    with pytest.raises(ScoringError, match="Table III needs the head/tail `subset` column"):
        score_table3(records, {1: 1, 2: 1, 3: 1})
    with pytest.raises(ScoringError, match="records mix datasets"):
        scoring.score(pd.concat([records, _records([(9, "Audio", "Counting", "two")], "avqa")]), {1: 1})
    with pytest.raises(ScoringError, match="no table layout for dataset 'elsewhere'"):
        scoring.score(_records(ROWS, "music_avqa").assign(dataset="elsewhere"), {1: 1})
    assert scoring.score(records, {1: "two", 2: "left", 3: "yes"}, name="mine").index.tolist() == ["mine"]
    (tmp_path / "other.json").write_text(json.dumps({"format": "other/1", "predictions": {}}))
    with pytest.raises(ScoringError, match="format 'other/1', expected 'avmaster-predictions/1'"):
        read_prediction_file(tmp_path / "other.json")
    with pytest.raises(TypeError, match="not list"):
        correctness(records, [1, 2])


def test_table3_cells_hold_only_their_own_type():
    # Audio Count questions only: every other type's cell is empty (NaN), not filled by modality or qtype alone
    rows = [(1, "Audio", "Counting", "two"), (2, "Audio", "Counting", "two"), (3, "Visual", "Counting", "one")]
    records = _records(rows, "music_avqa_r", subset=["head", "head", "head"])
    row = score_table3(records, {1: "two", 2: "one", 3: "one"}).iloc[0]
    assert row["Audio QA", "Count", "H"] == 50.0 and row["Visual QA", "Count", "H"] == 100.0
    assert math.isnan(row["Audio QA", "Comp", "H"])


def test_head_tail_without_labels_passes_name_and_missing_to_table2():
    records = _records(ROWS, "music_avqa_r", subset="headtail")
    table = score_head_tail(records, {1: "two", 2: "left"}, missing="wrong", name="mine")
    assert table.index.tolist() == ["mine"] and table.iloc[0, -1] == pytest.approx(200 / 3)
    assert score_head_tail(records, {1: "two", 2: "left", 3: "yes"}).index.tolist() == ["ours"]
    with pytest.raises(ScoringError, match="no prediction"):
        score_head_tail(records, {1: "two", 2: "left"})


def test_predictions_for_another_dataset_or_split_are_refused_unless_forced():
    check = scoring.check_prediction_target
    check({"dataset": "music_avqa", "split": "test"}, "music_avqa", "test")  # the same target
    check({}, "music_avqa", "test")                                            # a file written by hand
    check({"dataset": None, "split": "test"}, "avqa", "test")                  # an unrecorded field
    with pytest.raises(ScoringError) as raised:
        check({"dataset": "avqa", "split": "val"}, "music_avqa", "test")
    assert str(raised.value) == ("predictions holds predictions for dataset 'avqa' and split 'val', but --dataset "
                                 "music_avqa --split test is being scored: pass the matching --dataset/--split, "
                                 "or --force to score them anyway")
    with pytest.raises(ScoringError, match=r"^run/p.json holds predictions for split 'val', but"):
        check({"dataset": "music_avqa", "split": "val"}, "music_avqa", "test", path="run/p.json")
    with pytest.raises(ScoringError, match=r"holds predictions for dataset 'avqa', but"):
        check({"dataset": "avqa", "split": "test"}, "music_avqa", "test")
    check({"dataset": "avqa", "split": "val"}, "music_avqa", "test", force=True)

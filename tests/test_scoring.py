"""score(): per-type accuracies on hand-made predictions, micro averages, the other table layouts, files."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from avmaster_core.data.annotations import load_annotations
from avmaster_core.core.records import QUESTION_TYPES
from avmaster_core.data.scoring import (TABLE2_COLUMNS, ScoringError, read_prediction_file, read_predictions, score,
                                   score_table3, write_predictions)
from avmaster_core.core.vocab import ANSWERS, UnknownAnswerError


def _records(rows, dataset="music_avqa", **extra_columns):
    """rows: (question_id, modality, qtype, answer)."""
    df = pd.DataFrame(rows, columns=["question_id", "modality", "qtype", "answer"])
    df["video_id"] = "v"
    df["template"] = df["question"] = "q"
    df["answer_idx"] = df["answer"].map(ANSWERS.index)
    df["split"], df["dataset"] = "test", dataset
    for name, values in extra_columns.items():
        df[name] = values
    return df


def _known_accuracy_case():
    """Each of the 9 types gets n questions of which k are answered right (n, k differ per type)."""
    rows, preds, expected = [], {}, {}
    qid = 0
    for t, (modality, qtype) in enumerate(QUESTION_TYPES):
        n, k = 4 + t, t % 4 + 1
        for i in range(n):
            qid += 1
            rows.append((qid, modality, qtype, "yes"))
            preds[qid] = "yes" if i < k else ANSWERS.index("no")  # strings and indices mixed
        expected[modality, qtype] = (n, k)
    return _records(rows), preds, expected


def test_table2_per_type_and_micro_averages():
    records, preds, expected = _known_accuracy_case()
    table = score(records, preds)
    assert list(table.columns) == list(TABLE2_COLUMNS) and table.index.tolist() == ["ours"]
    row = table.iloc[0]
    labels = {"Audio": "Audio QA", "Visual": "Visual QA", "Audio-Visual": "Audio-Visual QA"}
    short = {"Counting": "Count", "Comparative": "Comp", "Location": "Local", "Existential": "Exist",
             "Temporal": "Temp"}
    for (modality, qtype), (n, k) in expected.items():
        assert row[labels[modality], short[qtype]] == pytest.approx(100 * k / n)
    for modality in labels:
        n = sum(v[0] for (m, _), v in expected.items() if m == modality)
        k = sum(v[1] for (m, _), v in expected.items() if m == modality)
        assert row[labels[modality], "Avg"] == pytest.approx(100 * k / n)
    n_all = sum(v[0] for v in expected.values())
    k_all = sum(v[1] for v in expected.values())
    assert row["Overall", "Avg"] == pytest.approx(100 * k_all / n_all)
    macro = sum(100 * k / n for n, k in expected.values()) / len(expected)
    assert abs(row["Overall", "Avg"] - macro) > 0.5  # the case is built so that micro != macro


def test_paper_table2_is_micro(shared_data):
    """Predictions reproducing the paper's AV-Master per-type accuracies give its overall 78.51 (micro)."""
    records = load_annotations("music_avqa", "test", shared_data / "music_avqa")
    paper = [87.02, 67.85, 86.55, 86.61, 83.60, 79.13, 72.39, 64.21, 70.80]
    preds = {}
    for (modality, qtype), acc in zip(QUESTION_TYPES, paper):
        group = records[(records["modality"] == modality) & (records["qtype"] == qtype)]
        n_right = round(acc / 100 * len(group))
        for i, (qid, idx) in enumerate(zip(group["question_id"], group["answer_idx"])):
            preds[qid] = int(idx) if i < n_right else (int(idx) + 1) % len(ANSWERS)
    row = score(records, pd.Series(preds)).iloc[0]
    assert row["Overall", "Avg"] == pytest.approx(78.51, abs=0.01)
    assert row["Visual QA", "Avg"] == pytest.approx(86.58, abs=0.01)
    assert row["Audio-Visual QA", "Avg"] == pytest.approx(74.22, abs=0.02)


def test_missing_predictions_error_or_wrong():
    records, preds, _ = _known_accuracy_case()
    first = records["question_id"].iloc[0]
    del preds[first]
    with pytest.raises(ScoringError, match="no prediction"):
        score(records, preds)
    full = {**preds, int(first): "no"}
    assert score(records, preds, missing="wrong").equals(score(records, full))
    with pytest.raises(ScoringError, match="none of the"):
        score(records, {10**9: "yes"})


def test_bad_predictions():
    records = _records([(1, "Audio", "Counting", "two")])
    with pytest.raises(UnknownAnswerError, match="question_id 1"):
        score(records, {1: "twoo"})
    with pytest.raises(ScoringError, match="answer index"):
        score(records, {1: 42})
    with pytest.raises(TypeError):
        score(records, [("1", "two")])


def test_table3_head_tail():
    rows = [(1, "Audio", "Counting", "two"), (2, "Audio", "Counting", "two"), (3, "Audio", "Counting", "nine"),
            (4, "Visual", "Location", "left")]
    records = _records(rows, dataset="music_avqa_r", subset=["head", "head", "tail", "head"])
    table = score(records, {1: "two", 2: "one", 3: "nine", 4: "left"})
    row = table.iloc[0]
    assert row["Audio QA", "Count", "H"] == 50.0 and row["Audio QA", "Count", "T"] == 100.0
    assert row["Visual QA", "Local", "H"] == 100.0 and math.isnan(row["Visual QA", "Local", "T"])
    assert row["Overall", "Avg", ""] == 75.0
    assert len(table.columns) == 19
    headtail = records.assign(subset="headtail")
    assert ("Audio QA", "Count") in score(headtail, {1: 8, 2: 8, 3: 8, 4: 8}).columns  # no head/tail: Table II
    with pytest.raises(ScoringError, match="subset"):
        score_table3(records.drop(columns="subset"), {1: 1})


def test_table4_and_table5():
    rows = [(1, "Audio", "Counting", "two"), (2, "Visual", "Counting", "one"), (3, "Audio-Visual", "Temporal", "yes"),
            (4, "Audio-Visual", "Existential", "no")]
    table = score(_records(rows, dataset="music_avqa_v2"), {1: "two", 2: "two", 3: "yes", 4: "yes"})
    assert table.columns.tolist() == ["A-QA", "V-QA", "AV-QA", "Avg"]
    assert table.iloc[0].tolist() == [100.0, 0.0, 50.0, 50.0]
    avqa = _records([(1, "Audio", "Which", "two"), (2, "Audio-Visual", "Why", "two")], dataset="avqa")
    avqa["answer"], avqa["answer_idx"] = ["dog", "car"], [0, 2]
    table5 = score(avqa, {1: 0, 2: "bird"})
    assert table5.iloc[0, 0] == 50.0 and table5.columns.tolist() == ["Total Accuracy (%)"]


def test_table4_avg_pools_questions_not_the_modality_columns():
    # Audio 1 of 2 right (50 %), Visual 8 of 8 (100 %), Audio-Visual 0 of 10 (0 %): micro 9/20 = 45 %,
    # while the mean of the three columns would be 50 %.
    rows = [(1, "Audio", "Counting", "two"), (2, "Audio", "Counting", "two")]
    rows += [(10 + i, "Visual", "Location", "yes") for i in range(8)]
    rows += [(30 + i, "Audio-Visual", "Existential", "yes") for i in range(10)]
    preds = {qid: ("no" if modality == "Audio-Visual" or qid == 2 else answer) for qid, modality, _, answer in rows}
    row = score(_records(rows, dataset="music_avqa_v2"), preds).iloc[0]
    assert row[["A-QA", "V-QA", "AV-QA"]].tolist() == [50.0, 100.0, 0.0]
    assert row["Avg"] == pytest.approx(45.0) and row[["A-QA", "V-QA", "AV-QA"]].mean() == pytest.approx(50.0)


def test_prediction_file_roundtrip_and_csv(tmp_path):
    records, preds, _ = _known_accuracy_case()
    path = write_predictions(tmp_path / "run" / "preds.json", preds, dataset="music_avqa", split="test",
                             meta={"checkpoint": "best.pt"})
    assert [p.name for p in path.parent.iterdir()] == ["preds.json"]  # no temp file left behind
    loaded, header = read_prediction_file(path)
    assert loaded == preds and header["dataset"] == "music_avqa" and header["meta"]["checkpoint"] == "best.pt"
    assert read_predictions(path) == preds
    table = score(records, loaded)
    table.to_csv(tmp_path / "table.csv")
    back = pd.read_csv(tmp_path / "table.csv", header=[0, 1], index_col=0)
    assert back.iloc[0].tolist() == pytest.approx(table.iloc[0].tolist())


def test_prediction_file_errors(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"predictions": {"1": "yes"}}))
    with pytest.raises(ScoringError, match="not an avmaster prediction file"):
        read_predictions(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ScoringError, match="b.json is not valid JSON"):
        read_predictions(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"format": "avmaster-predictions/1", "predictions": {"x": 1}}))
    with pytest.raises(ScoringError, match="c.json"):
        read_predictions(tmp_path / "c.json")

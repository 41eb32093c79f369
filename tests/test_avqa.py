"""AVQA's splits: checkpoints are selected on a fixed held-out part of train_qa.json (by video), never on
val_qa.json, the file that is scored."""
from __future__ import annotations

import json

from avmaster_core.data.annotations import AVQA_HOLDOUT, avqa_held_out, load_annotations
from avmaster_core.data.dataset_registry import get


def _record(i, video):
    return {"id": i, "video_name": video, "video_id": i, "question_text": f"What sounds {i}?",
            "multi_choice": ["dog", "cat", "car", "bird"], "answer": i % 4, "question_relation": "Both",
            "question_type": "Which"}


def _write(root, name, rows):
    (root / name).write_text(json.dumps(rows))


def test_validation_is_held_out_of_train_by_video(tmp_path):
    videos = [f"clip{v:04d}_000010" for v in range(300)]
    rows = [_record(i, videos[i % 300]) for i in range(900)]  # three questions per video
    _write(tmp_path, "train_qa.json", rows)
    _write(tmp_path, "val_qa.json", [_record(5000 + i, f"other{i}") for i in range(5)])
    train = load_annotations("avqa", "train", tmp_path)
    val = load_annotations("avqa", "val", tmp_path)
    test = load_annotations("avqa", "test", tmp_path)
    assert len(train) + len(val) == 900
    assert not set(train["video_id"]) & set(val["video_id"])  # split by video
    assert set(train["question_id"]) | set(val["question_id"]) == set(range(900))
    assert 0.05 < len(val) / 900 < 0.16  # AVQA_HOLDOUT["percent"] = 10 of the videos
    assert (val["source_file"] == "train_qa.json").all() and (test["source_file"] == "val_qa.json").all()
    assert (val["split"] == "val").all() and len(test) == 5


def test_holdout_is_fixed():
    # the split must never change silently: these clip names' assignments are recorded here
    assert AVQA_HOLDOUT == {"file": "train_qa.json", "percent": 10, "salt": "avmaster/avqa-holdout/v1"}
    names = [f"clip{v:04d}_000010" for v in range(40)]
    assert [n for n in names if avqa_held_out(n)] == [f"clip{v:04d}_000010" for v in (4, 12, 19, 23, 27)]
    assert not avqa_held_out("06GyG4-wONQ_000006")


def test_registry_never_selects_on_the_scored_file():
    spec = get("avqa")
    val_files = {name for name, _, _ in spec.split_files["val", None]}
    test_files = {name for name, _, _ in spec.split_files["test", None]}
    assert val_files == {"train_qa.json"} and test_files == {"val_qa.json"}


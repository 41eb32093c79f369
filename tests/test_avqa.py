"""AVQA's real files and splits: records in AVQA's own schema (`question_relation` Both / Sound / View, `answer`
an index into `multi_choice`, `question_type` words); checkpoints are selected on a fixed held-out part of
train_qa.json grouped by YouTube video, never on val_qa.json, the file that is scored."""
from __future__ import annotations

import json

import pytest

from avmaster_core.annotations import (AVQA_HOLDOUT, AnnotationError, avqa_held_out, avqa_youtube_id,
                                       load_annotations)
from avmaster_core.dataset_registry import get

# AVQA's schema, as its users quote a train_qa.json record (issue 23)
REAL = {"id": 183, "video_name": "-HG3Omg_89c_000030", "video_id": 341, "question_text": "What happened in the video?",
        "multi_choice": ["motorboat", "Yacht consignment", "Sailboat set sail", "Consignment car"], "answer": 1,
        "question_relation": "View", "question_type": "Happening"}
RELATIONS = ("Both", "Sound", "View")
TYPES = ("Happening", "Which", "Where", "Come From", "Why", "Before Next", "When", "Used For")


def _record(i, video):
    return {"id": i, "video_name": video, "video_id": i, "question_text": f"What sounds {i}?",
            "multi_choice": ["dog", "cat", "car", "bird"], "answer": i % 4,
            "question_relation": RELATIONS[i % 3], "question_type": TYPES[i % len(TYPES)]}


def _write(root, name, rows):
    (root / name).write_text(json.dumps(rows))


def test_real_schema_loads(tmp_path):
    sound = {**REAL, "id": 184, "video_name": "a_b-c_d_e_000120", "question_relation": "Sound",
             "question_type": "Come From", "answer": 3}
    both = {**REAL, "id": 185, "question_relation": "Both", "question_type": "Which", "answer": 0}
    _write(tmp_path, "val_qa.json", [REAL, sound, both])
    records = load_annotations("avqa", "test", tmp_path)
    assert records["modality"].tolist() == ["Visual", "Audio", "Audio-Visual"]
    assert records["answer"].tolist() == ["Yacht consignment", "Consignment car", "motorboat"]
    assert records["answer_idx"].tolist() == [1, 3, 0]
    assert records["qtype"].tolist() == ["Happening", "Come From", "Which"]
    assert records["video_id"].tolist()[0] == "-HG3Omg_89c_000030" and records["video_index"].tolist()[0] == 341


def test_relations_outside_avqas_three_are_refused(tmp_path):
    _write(tmp_path, "val_qa.json", [{**REAL, "question_relation": "Visual"}])
    with pytest.raises(AnnotationError, match=r"question_relation 'Visual' is not one of AVQA's Sound, View, Both"):
        load_annotations("avqa", "test", tmp_path)


def test_youtube_id_is_the_name_without_its_start_seconds():
    assert avqa_youtube_id("-HG3Omg_89c_000030") == "-HG3Omg_89c"  # YouTube ids may hold "_"
    assert avqa_youtube_id("06GyG4-wONQ_000006") == "06GyG4-wONQ"
    for bad in ("clip", "abc_", "_000010", "abc_12x"):
        with pytest.raises(ValueError, match="YouTube id"):
            avqa_youtube_id(bad)


def test_a_clip_name_without_start_seconds_is_refused(tmp_path):
    _write(tmp_path, "val_qa.json", [{**REAL, "video_name": "clip"}])
    with pytest.raises(AnnotationError, match=r"record 0, id 183.*'clip' is not <YouTube id>_<start seconds>"):
        load_annotations("avqa", "test", tmp_path)


def test_validation_is_held_out_of_train_by_youtube_video(tmp_path):
    # 300 YouTube videos with two clips each (different start seconds), three questions per clip
    videos = [f"yt{v:04d}_{start:06d}" for v in range(300) for start in (10, 130)]
    rows = [_record(i, videos[i % 600]) for i in range(1800)]
    _write(tmp_path, "train_qa.json", rows)
    _write(tmp_path, "val_qa.json", [_record(5000 + i, f"other{i}_000000") for i in range(5)])
    train = load_annotations("avqa", "train", tmp_path)
    val = load_annotations("avqa", "val", tmp_path)
    test = load_annotations("avqa", "test", tmp_path)
    everything = load_annotations("avqa", "train_all", tmp_path)
    assert len(train) + len(val) == 1800 == len(everything)
    assert set(everything["question_id"]) == set(train["question_id"]) | set(val["question_id"])
    youtube = {name: name.rsplit("_", 1)[0] for name in videos}
    assert not {youtube[v] for v in train["video_id"]} & {youtube[v] for v in val["video_id"]}  # no video straddles
    assert val["video_id"].nunique() == 2 * val["video_id"].map(youtube).nunique()  # both clips held out together
    assert 0.05 < len(val) / 1800 < 0.16  # AVQA_HOLDOUT["percent"] = 10 of the YouTube videos
    assert (val["source_file"] == "train_qa.json").all() and (test["source_file"] == "val_qa.json").all()
    assert (val["split"] == "val").all() and len(test) == 5


def test_holdout_is_fixed():
    # the split must never change silently: these names' assignments are recorded here (v2: by YouTube id)
    assert AVQA_HOLDOUT == {"file": "train_qa.json", "percent": 10, "salt": "avmaster/avqa-holdout/v2",
                            "group": "youtube_id"}
    names = [f"yt{v:04d}_000010" for v in range(100)]
    held = [n for n in names if avqa_held_out(n)]
    assert held == [f"yt{v:04d}_000010" for v in (10, 50, 69, 80, 88, 91, 99)]
    assert all(avqa_held_out(n.replace("_000010", "_000250")) for n in held)  # any clip of a held-out video
    assert not avqa_held_out("06GyG4-wONQ_000006")


def test_ids_in_both_files_are_refused(tmp_path):
    _write(tmp_path, "train_qa.json", [_record(i, f"yt{i:04d}_000010") for i in range(6)])
    _write(tmp_path, "val_qa.json", [_record(4, "other_000000"), _record(9, "other2_000000")])
    for split in ("train", "val", "test", "train_all"):
        with pytest.raises(AnnotationError, match=r"1 question id\(s\) are in both .*\[4\].*avmaster data fetch avqa"):
            load_annotations("avqa", split, tmp_path)


def test_registry_never_selects_on_the_scored_file():
    spec = get("avqa")
    val_files = {name for name, _, _ in spec.split_files["val", None]}
    test_files = {name for name, _, _ in spec.split_files["test", None]}
    assert val_files == {"train_qa.json"} and test_files == {"val_qa.json"}


def test_the_train_all_variant_is_one_command_line():
    """docs/avqa.md's variant: all of train_qa.json for the epoch count chosen on the held-out 10 %, last epoch."""
    import argparse

    from avmaster_core.engine_cli import add_config_arguments, config_from_args
    from avmaster_core.run_config import DataConfig, TrainConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    add_config_arguments(parser, DataConfig)
    args = parser.parse_args(["--dataset", "avqa", "--train-split", "train_all", "--eval-split", "none",
                              "--epochs", "7"])
    train, data = config_from_args(TrainConfig, args), config_from_args(DataConfig, args)
    assert data.train_split == "train_all" and train.eval_split is None and train.epochs == 7
    assert train.test_split == "test"

"""load_annotations on the real files (shared_data) and on small hand-written files in the other formats."""
from __future__ import annotations

import hashlib
import json

import pytest

from avmaster_core.annotations import (DERIVED_ID_BASE, AnnotationError, MissingAnnotationFile,
                                       annotation_files, load_annotations)
from avmaster_core.records import QUESTION_TYPES, RECORD_COLUMNS, check_records
from avmaster_core.vocab import ANSWERS, UnknownAnswerError, fill_question

TEST_TYPE_COUNTS = [1017, 594, 1197, 1225, 988, 1265, 920, 1101, 822]  # QUESTION_TYPES order


def _documented_id(*parts: str) -> int:
    """The derived-id rule as documented in annotations.py, recomputed independently."""
    return DERIVED_ID_BASE + int.from_bytes(hashlib.sha1("\x1f".join(parts).encode()).digest()[:7], "big")


def _write(path, records):
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def _music_record(qid, vid="00000001", template="Is the <Object> in the video always playing?",
                  values='["cello"]', answer="yes", type_='["Audio-Visual", "Existential"]', **extra):
    r = {"video_id": vid, "question_id": qid, "type": type_, "question_content": template,
         "templ_values": values, "question_deleted": 0, "anser": answer}
    r.update(extra)
    return r


# --------------------------------------------------------------------------- real MUSIC-AVQA

@pytest.fixture(scope="module")
def music_avqa_test(shared_data):
    return load_annotations("music_avqa", "test", shared_data / "music_avqa")


@pytest.mark.parametrize("split,count", [("val", 4568), ("test", 9129)])
def test_music_avqa_counts_and_schema(shared_data, split, count):
    records = load_annotations("music_avqa", split, shared_data / "music_avqa")
    check_records(records)
    assert list(records.columns[:len(RECORD_COLUMNS)]) == list(RECORD_COLUMNS)
    assert len(records) == count
    assert records["question_id"].is_unique and records["question_id"].dtype == "int64"
    assert not records["id_derived"].any()
    assert (records["split"] == split).all() and (records["dataset"] == "music_avqa").all()
    assert records["answer_idx"].map(lambda i: ANSWERS[i]).tolist() == records["answer"].tolist()


def test_music_avqa_test_per_type_counts(shared_data, music_avqa_test):
    records = load_annotations("music_avqa", "test", shared_data)  # a parent folder works too
    assert records.equals(music_avqa_test)
    counts = records.groupby(["modality", "qtype"]).size()
    assert [int(counts[t]) for t in QUESTION_TYPES] == TEST_TYPE_COUNTS
    assert "ten" not in set(records["answer"]) and records["answer"].nunique() == 41


def test_answer_order_matches_answer2idx(shared_data):
    ans2ix = json.loads((shared_data / "music_avqa" / "answer2idx.json").read_text())["ans2ix"]
    assert sorted(ans2ix, key=ans2ix.get) == list(ANSWERS)


@pytest.mark.parametrize("qid,question", [
    (12, "How many musical instruments were heard throughout the video"),
    (28, "Is the violin in the video always playing"),
    (35, "How many sounding violin in the video"),                      # full-width "？"
    (95, "Is the instrument on the right more rhythmic than the instrument on the left"),
    (3952, "Is the banjo on the left more rhythmic than the acoustic_guitar on the right"),
    (4164, "Are there cello and accordion sound"),                      # trailing space after "?"
    (4829, "What kind of instrument is the rightest instrument"),        # <LRer>
])
def test_filled_question_texts(music_avqa_test, qid, question):
    assert music_avqa_test.set_index("question_id").loc[qid, "question"] == question


def test_fill_question_protocol():
    assert fill_question("Is the <Object> on the <LR> louder?", ["cello", "left"]) == "Is the cello on the left louder"
    assert fill_question("Where is it？ ", "[]") == "Where is it"  # rstrip, then the "？" goes
    with pytest.raises(ValueError, match="placeholder"):
        fill_question("Is the <Object> with the <Object>?", '["cello"]')


# --------------------------------------------------------------------------- real MUSIC-AVQA-v2.0

def test_v2_counts_and_ids(shared_data):
    root = shared_data / "music_avqa_v2"
    test = load_annotations("music_avqa_v2", "test", root)  # subset defaults to balance
    val = load_annotations("music_avqa_v2", "val_balance", root)
    assert (len(test), len(val)) == (10819, 5346)
    assert (test["subset"] == "balance").all() and (val["split"] == "val").all()
    for records, n_missing in ((test, 1724), (val, 826)):
        assert records["question_id"].is_unique and records["question_id"].dtype == "int64"
        assert int(records["id_derived"].sum()) == n_missing
        assert (records.loc[records["id_derived"], "question_id"] >= DERIVED_ID_BASE).all()
        assert (records.loc[~records["id_derived"], "question_id"] < DERIVED_ID_BASE).all()
    assert 47859 in set(val["question_id"])  # stored as 47859.0 in the file
    assert val["question_deleted"].isin([0]).all()  # None / absent -> 0


def test_v2_derived_id_follows_documented_rule_and_is_stable(shared_data, tmp_path):
    root = shared_data / "music_avqa_v2"
    test = load_annotations("music_avqa_v2", "test", root)
    row = test.iloc[1]  # {"video_id": "tOcOiTFQYp4", no question_id, "How many sounding <Object> in the video？"}
    assert row["video_id"] == "tOcOiTFQYp4" and row["id_derived"]
    assert row["question"] == "How many sounding erhu in the video"
    expected = _documented_id("music_avqa_v2", "", "tOcOiTFQYp4", "tOcOiTFQYp4",
                              "How many sounding <Object> in the video？", '["erhu"]', "two", "0")
    assert row["question_id"] == expected
    # the id depends on content, not position: a reversed copy of the file gives the same ids
    raw = json.loads((root / "test_balance.json").read_text())
    _write(tmp_path / "test_balance.json", raw[::-1])
    reversed_ = load_annotations("music_avqa_v2", "test", tmp_path)
    assert sorted(reversed_["question_id"]) == sorted(test["question_id"])


def test_v2_unmatched_audio_records(shared_data):
    val = load_annotations("music_avqa_v2", "val", shared_data / "music_avqa_v2")
    unmatched = val[val["unmatch_audio"].notna()]
    assert len(unmatched) > 0
    assert (unmatched["audio_video_id"] == unmatched["unmatch_audio"]).all()
    matched = val[val["unmatch_audio"].isna()]
    assert (matched["audio_video_id"] == matched["video_id"]).all()


def test_v2_oddities_in_small_file(tmp_path):
    _write(tmp_path / "test_bias.json", [
        _music_record(47859.0, values=["violin"]),                       # float id, real list
        {k: v for k, v in _music_record(None, template="Is the <Object> playing？").items()
         if k not in ("question_id", "question_deleted")},               # no id, no question_deleted, "？"
        {k: v for k, v in _music_record(None, template="Is the <Object> playing？").items()
         if k not in ("question_id", "question_deleted")},               # an identical copy: a distinct id
        _music_record(5, person="yes", extra_field=1),                   # extra fields are tolerated
    ])
    records = load_annotations("music_avqa_v2", "test_bias", tmp_path)
    assert records["question_id"].tolist()[0] == 47859 and records["question_id"].is_unique
    assert records["question"].tolist()[:2] == ["Is the violin in the video always playing", "Is the cello playing"]
    assert records["question_deleted"].tolist() == [0, 0, 0, 0]
    assert (records["subset"] == "bias").all() and records["person"].tolist()[3] == "yes"
    assert records["id_derived"].tolist() == [False, True, True, False]
    same = load_annotations("music_avqa_v2", "test", tmp_path, subset="bias")
    assert same["question_id"].tolist() == records["question_id"].tolist()


def test_v2_split_names():
    assert annotation_files("music_avqa_v2", "train", "bias") == [("train_bias.json", "train", "bias")]
    assert annotation_files("music_avqa_v2", "val_balance") == [("balance_valid.json", "val", "balance")]
    with pytest.raises(ValueError, match="subset"):
        annotation_files("music_avqa_v2", "test", "unbiased")
    with pytest.raises(ValueError, match="split"):
        annotation_files("music_avqa_v2", "dev")


# --------------------------------------------------------------------------- MUSIC-AVQA-R, AVQA, synthetic

def test_music_avqa_r_head_tail(tmp_path):
    head = [_music_record(28, template="Is the <Object> always playing?", answer="no"),
            _music_record(28, template="Does the <Object> play all the time?", answer="no")]
    tail = [_music_record(35, template="Which <Object> sounds first?", answer="cello",
                          type_='["Audio-Visual", "Temporal"]')]
    _write(tmp_path / "avqa-test-head.json", head)
    _write(tmp_path / "avqa-test-tail.json", tail)
    _write(tmp_path / "avqa-test-headtail.json", head + tail)
    test = load_annotations("music_avqa_r", "test", tmp_path)
    assert test["subset"].tolist() == ["head", "head", "tail"] and (test["split"] == "test").all()
    assert test["source_question_id"].tolist() == [28, 28, 35]
    assert test["question_id"].is_unique and test["id_derived"].all()  # rephrasings share 28: ids are derived
    assert test["question"].tolist()[1] == "Does the cello play all the time"
    headtail = load_annotations("music_avqa_r", "headtail", tmp_path)
    assert (headtail["subset"] == "headtail").all()
    assert headtail["question_id"].tolist() == test["question_id"].tolist()  # same record, same id in every file


def test_avqa_format(tmp_path):
    _write(tmp_path / "val_qa.json", [
        {"id": 1139, "video_name": "06GyG4-wONQ_000006", "video_id": 1395,
         "question_text": "How many animals are there in the video?", "multi_choice": ["3", "One", "4", "2"],
         "answer": 3, "question_relation": "Both", "question_type": "Which"},
        {"id": 7, "video_name": "abc_000010", "video_id": 2, "question_text": "What makes the sound?",
         "multi_choice": ["dog", "cat", "car", "bird"], "answer": 0, "question_relation": "Sound",
         "question_type": "Come From"},
    ])
    records = load_annotations("avqa", "test", tmp_path)
    check_records(records)
    assert records["answer"].tolist() == ["2", "dog"] and records["answer_idx"].tolist() == [3, 0]
    assert records["modality"].tolist() == ["Audio-Visual", "Audio"]
    assert records["video_id"].tolist() == ["06GyG4-wONQ_000006", "abc_000010"]
    assert records["choices"].tolist()[0] == ["3", "One", "4", "2"] and records["video_index"].tolist() == [1395, 2]
    assert records["qtype"].tolist() == ["Which", "Come From"]


def test_synthetic_uses_music_avqa_format(tmp_path):
    _write(tmp_path / "avqa-train.json", [_music_record(1), _music_record(2, answer="no")])
    records = load_annotations("synthetic", "train", tmp_path)
    assert (records["dataset"] == "synthetic").all() and records["answer_idx"].tolist() == [7, 4]


# --------------------------------------------------------------------------- errors

def test_missing_file_says_fetch(tmp_path):
    with pytest.raises(MissingAnnotationFile, match=r"avmaster data fetch music_avqa"):
        load_annotations("music_avqa", "train", tmp_path)


def test_malformed_json_names_file(tmp_path):
    (tmp_path / "avqa-val.json").write_text('[{"video_id": "1", ')
    with pytest.raises(AnnotationError, match="avqa-val.json is not valid JSON"):
        load_annotations("music_avqa", "val", tmp_path)


def test_malformed_synthetic_json_advises_the_synth_command(tmp_path):
    (tmp_path / "avqa-test.json").write_text("[")
    with pytest.raises(AnnotationError, match=rf"avmaster synth --out {tmp_path} --overwrite"):
        load_annotations("synthetic", "test", tmp_path)
    with pytest.raises(MissingAnnotationFile, match="avmaster synth --out"):
        load_annotations("synthetic", "train", tmp_path)


def test_unknown_answer_names_record(tmp_path):
    _write(tmp_path / "avqa-test.json", [_music_record(1), _music_record(77, answer="kazoo")])
    with pytest.raises(UnknownAnswerError, match=r"kazoo.*avqa-test.json.*question_id 77"):
        load_annotations("music_avqa", "test", tmp_path)


def test_bad_type_and_unknown_dataset(tmp_path):
    _write(tmp_path / "avqa-test.json", [_music_record(1, type_='["Audio", "Existential"]')])
    with pytest.raises(AnnotationError, match="question types"):
        load_annotations("music_avqa", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_annotations("music-avqa", "test", tmp_path)

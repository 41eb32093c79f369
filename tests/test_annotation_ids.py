"""Question ids as the loaders read them, on small hand-written files (no shared data needed): published ids in
every spelling the files use, missing ids (None or NaN) derived by the documented rule, bad ids refused."""
from __future__ import annotations

import hashlib
import json
import math
import re

import pytest

from avmaster_core.annotations import DERIVED_ID_BASE, AnnotationError, derived_question_id, load_annotations


def _music(qid, **extra):
    r = {"video_id": "00000001", "question_id": qid, "type": '["Audio-Visual", "Existential"]',
         "question_content": "Is the <Object> in the video always playing?", "templ_values": '["cello"]',
         "question_deleted": 0, "anser": "yes"}
    return {**r, **extra}


def _load_music(tmp_path, records):
    # json.dumps writes float("nan") as NaN, which json.loads reads back as a float NaN (as pandas-made files do)
    (tmp_path / "test_bias.json").write_text(json.dumps(records), encoding="utf-8")
    return load_annotations("music_avqa_v2", "test_bias", tmp_path)


def _load_avqa(tmp_path, **fields):
    r = {"id": 7, "video_name": "clip_000010", "video_id": 3, "question_text": "What is it?",
         "multi_choice": ["dog", "cat", "car", "bird"], "answer": 1, "question_relation": "Both", **fields}
    (tmp_path / "val_qa.json").write_text(json.dumps([r]), encoding="utf-8")
    return load_annotations("avqa", "test", tmp_path)


def test_derived_id_is_the_documented_rule():
    parts = ["music_avqa_v2", "", "vid", "vid", "Is the <Object> playing？", '["erhu"]', "two", "0"]
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).digest()
    assert derived_question_id(parts) == 10**12 + int.from_bytes(digest[:7], "big")
    assert DERIVED_ID_BASE <= derived_question_id(["x"]) < DERIVED_ID_BASE + 2**56


@pytest.mark.parametrize("spelling", [47859, 47859.0, "47859"])
def test_published_id_in_every_spelling(tmp_path, spelling):
    records = _load_music(tmp_path, [_music(spelling)])
    assert records["question_id"].tolist() == [47859] and records["id_derived"].tolist() == [False]


@pytest.mark.parametrize("missing", [None, math.nan])
def test_missing_id_is_derived(tmp_path, missing):
    records = _load_music(tmp_path, [_music(missing)])
    parts = ["music_avqa_v2", "", "00000001", "00000001", "Is the <Object> in the video always playing?",
             '["cello"]', "yes", "0"]
    assert records["question_id"].tolist() == [derived_question_id(parts)] and records["id_derived"].tolist() == [True]


@pytest.mark.parametrize("bad", [True, 1.5, "12a", [3]])
def test_bad_id_is_refused_with_its_record(tmp_path, bad):
    with pytest.raises(AnnotationError, match=rf"test_bias.json \(record 0.*: id {re.escape(repr(bad))} is not an integer$"):
        _load_music(tmp_path, [_music(bad)])


def test_nan_optional_fields_read_as_absent(tmp_path):
    records = _load_music(tmp_path, [_music(5, unmatch_audio=math.nan, person=math.nan),
                                     _music(6, unmatch_audio="00000002", person="yes")])
    assert records["audio_video_id"].tolist() == ["00000001", "00000002"]
    assert records["person"].tolist() == [None, "yes"]
    # a zero is a value, not an absence
    assert _load_music(tmp_path, [_music(0)])["question_id"].tolist() == [0]


@pytest.mark.parametrize("answer, index", [(1, 1), ("3", 3), (0.0, 0)])
def test_avqa_answer_index_spellings(tmp_path, answer, index):
    records = _load_avqa(tmp_path, answer=answer)
    assert records["answer_idx"].tolist() == [index] and records["question_id"].tolist() == [7]


@pytest.mark.parametrize("answer", [None, math.nan, 4, -1])
def test_avqa_answer_outside_the_choices_is_refused(tmp_path, answer):
    with pytest.raises(AnnotationError, match=rf"answer {re.escape(repr(answer))} does not index multi_choice"):
        _load_avqa(tmp_path, answer=answer)

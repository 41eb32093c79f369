"""Nothing dropped in silence (issue 22): duplicate question ids in an annotation file, an empty question in
`extract --records`, and `store token-counts` with another dataset's questions are refused with a message
naming them (the first 20 ids and a count), instead of a warning or a quiet "nan"."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from avmaster_core import cli
from avmaster_core.annotations import AnnotationError, load_annotations
from avmaster_core.extract.encoders import ClipEncoder
from avmaster_core.extract.pipeline import extract_questions, load_question_table
from avmaster_core.store import TOKENS_ATTR, FeatureStore
from avmaster_core.synthetic import generate_synthetic


def _music(qid: int, content: str = "Is the <Object> in the video always playing?") -> dict:
    return {"video_id": "00000001", "question_id": qid, "type": '["Audio-Visual", "Existential"]',
            "question_content": content, "templ_values": '["cello"]', "question_deleted": 0, "anser": "yes"}


def test_duplicate_question_ids_are_refused_with_the_first_20_and_a_count(tmp_path):
    records = [_music(q) for q in range(30)] + [_music(q) for q in range(25)]  # ids 0..24 twice
    (tmp_path / "avqa-test.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError) as e:
        load_annotations("music_avqa", "test", tmp_path)
    text = str(e.value)
    assert "25 question_id(s) appear more than once in avqa-test.json" in text
    assert "(0, 1, 2, " in text and ", 19 and 5 more)" in text and "20," not in text


def test_one_duplicate_with_the_same_text_is_refused_too(tmp_path):
    # the same id and the same question twice: 32 records would give 31 predictions
    (tmp_path / "avqa-test.json").write_text(json.dumps([_music(q) for q in range(31)] + [_music(7)]))
    with pytest.raises(AnnotationError, match=r"1 question_id\(s\) appear more than once .*\(7\)"):
        load_annotations("music_avqa", "test", tmp_path)


def test_extract_records_refuses_an_empty_question_instead_of_storing_nan(tmp_path):
    path = tmp_path / "records.csv"
    pd.DataFrame({"question_id": [1, 2, 3], "question": ["Is it loud?", None, "  "]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"2 question\(s\) are empty \(question_id\(s\) \[2, 3\] at row\(s\) "
                                         r"\[2, 3\]\)"):
        load_question_table(path)
    assert cli.main(["extract", "--records", str(path), "--out", str(tmp_path / "f.h5"), "--encoders", "tiny",
                     "--device", "cpu"]) == 1
    assert not (tmp_path / "f.h5").exists()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A small synthetic benchmark whose questions were extracted by the tiny CLIP (items carry text hashes),
    token counts removed; and another benchmark with the same ids but other questions."""
    root, other = tmp_path_factory.mktemp("mine"), tmp_path_factory.mktemp("other")
    generate_synthetic(root, num_videos=8, questions_per_video=3, T=4)
    generate_synthetic(other, num_videos=8, questions_per_video=3, T=4, seed=7)
    texts = {q: t for s in ("train", "val", "test") for q, t in load_question_table(None, "synthetic", s, root).items()}
    with FeatureStore(root / "features.h5", "a") as store:
        for kind in ("question", "words"):
            del store.file[kind]
    extract_questions(texts, root / "features.h5", ClipEncoder.tiny(), progress=False)
    with FeatureStore(root / "features.h5", "a") as store:
        for q in store.keys("words"):
            del store.file[f"words/{q}"].attrs[TOKENS_ATTR]
    return root, other


def _counted(store) -> int:
    with FeatureStore(store) as opened:
        return sum(TOKENS_ATTR in opened.file[f"words/{q}"].attrs for q in opened.keys("words"))


def test_token_counts_from_another_datasets_questions_are_refused(extracted, tmp_path, capsys):
    root, other = extracted
    store = tmp_path / "features.h5"
    shutil.copy(root / "features.h5", store)
    assert cli.main(["store", "token-counts", str(store), "--questions", "synthetic", "--root", str(other)]) == 1
    err = capsys.readouterr().err
    assert "were extracted from other texts than the ones given" in err and "nothing was written" in err
    assert _counted(store) == 0
    assert cli.main(["store", "token-counts", str(store), "--questions", "synthetic", "--root", str(root)]) == 0
    assert _counted(store) > 0


def test_token_counts_for_a_file_the_store_hardly_holds_are_refused(extracted, tiny_data, tmp_path, capsys):
    root, _ = extracted
    store = tmp_path / "features.h5"
    shutil.copy(root / "features.h5", store)  # 24 questions; tiny_data's file has 120
    assert cli.main(["store", "token-counts", str(store), "--questions", "synthetic", "--root",
                     str(tiny_data)]) == 1
    assert "are in" in capsys.readouterr().err and _counted(store) == 0

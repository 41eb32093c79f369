"""Skips are visible: under CI=true a missing ../shared/data fails the run; and the documented derived-id
example of MUSIC-AVQA-v2.0 (data/README.md, "Stable ids") is pinned without the shared data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from avmaster_core.data.annotations import derived_question_id, load_annotations
from conftest import REPO

# MUSIC-AVQA-v2.0 test_balance.json, record 1 (no question_id), copied verbatim from the published file
V2_RECORD = {"video_id": "tOcOiTFQYp4", "type": "[\"Audio-Visual\", \"Counting\"]",
             "question_content": "How many sounding <Object> in the video？", "templ_values": "[\"erhu\"]",
             "anser": "two"}
# 10**12 + the first 7 bytes (big-endian) of sha1 of the parts joined by "\x1f": the documented rule,
# computed once with hashlib by hand from data/README.md's parts list
V2_RECORD_ID = 70333257272251838


def test_documented_derived_id_example_needs_no_shared_data(tmp_path):
    published_first = {**V2_RECORD, "question_id": 12, "question_content": "Is the <Object> playing？"}
    (tmp_path / "test_balance.json").write_text(json.dumps([published_first, V2_RECORD], ensure_ascii=False),
                                                encoding="utf-8")
    records = load_annotations("music_avqa_v2", "test", tmp_path)
    row = records.iloc[1]
    assert bool(row["id_derived"]) and row["question"] == "How many sounding erhu in the video"
    assert int(row["question_id"]) == V2_RECORD_ID
    parts = ["music_avqa_v2", "", "tOcOiTFQYp4", "tOcOiTFQYp4", "How many sounding <Object> in the video？",
             '["erhu"]', "two", "0"]
    assert derived_question_id(parts) == V2_RECORD_ID
    # a second identical record is the next occurrence, so it gets another id
    (tmp_path / "test_balance.json").write_text(json.dumps([V2_RECORD, V2_RECORD], ensure_ascii=False),
                                                encoding="utf-8")
    twice = load_annotations("music_avqa_v2", "test", tmp_path)["question_id"].tolist()
    assert twice[0] == V2_RECORD_ID and twice[1] == derived_question_id(parts[:-1] + ["1"])


def _run_shared_data_test(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs_data.py").write_text(textwrap.dedent("""
        def test_uses_data(shared_data):
            assert shared_data.is_dir()
    """))
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["AVMASTER_SHARED_DATA"] = str(tmp_path / "absent")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:nbval",
                           "-o", "addopts=", "-rs", str(tmp_path / "test_needs_data.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("ci, outcome", [(None, "1 skipped"), ("true", "1 error")])
def test_missing_shared_data_skips_locally_and_fails_under_ci(tmp_path, ci, outcome):
    result = _run_shared_data_test(tmp_path, ci)
    assert outcome in result.stdout and (result.returncode != 0) == (ci == "true"), result.stdout
    assert "real annotation files not found" in result.stdout

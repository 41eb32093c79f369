"""One fast test per check of the run preflight (avmaster_core.training.preflight.check_run_inputs), in process
on a 6-video synthetic benchmark (issue 28: the command-line cases in test_bad_input.py are the slow tier).

Each test breaks one thing in a copy of the benchmark and asserts that the problem is listed, naming the
item, and that nothing else is (a check that fires on good input, or never, fails here)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avmaster_core.core.config import ModelConfig
from avmaster_core.core.store import FeatureStore
from avmaster_core.training.preflight import MAX_LISTED, PreflightError, check_run_inputs, splits_of, task_mismatch
from avmaster_core.training.run_config import DataConfig

SPLITS = ["train", "val", "test"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from avmaster_core.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("preflight")
    generate_synthetic(root, num_videos=6, questions_per_video=2, T=4)
    return root


@pytest.fixture
def data(bench, tmp_path) -> Path:
    """A copy of the benchmark this test may break."""
    return Path(shutil.copytree(bench, tmp_path / "data"))


def problems(root: Path, model_cfg=None, splits=SPLITS, **data) -> list[str]:
    """The problems preflight lists ([] when it passes)."""
    try:
        check_run_inputs(DataConfig("synthetic", str(root), **data), model_cfg, splits)
    except PreflightError as e:
        return e.problems
    return []


def replace_item(root: Path, kind: str, key: str, array) -> None:
    with FeatureStore(root / "features.h5", "a") as store:  # written around put(), which refuses bad items
        del store.file[f"{kind}/{key}"]
        store.file[f"{kind}/{key}"] = np.asarray(array, np.float32)


def first_key(root: Path, kind: str) -> str:
    with FeatureStore(root / "features.h5") as store:
        return store.keys(kind)[0]


def test_a_good_benchmark_passes_and_returns_every_splits_records(bench):
    records = check_run_inputs(DataConfig("synthetic", str(bench)), ModelConfig.official(), [*SPLITS, None, "train"])
    assert list(records) == SPLITS and all(len(t) for t in records.values())


def test_task_mismatch_both_ways():
    mc = dataclasses.replace(ModelConfig.official(), choice_scorer="dot")
    assert task_mismatch("synthetic", ModelConfig.official()) is None
    assert task_mismatch("synthetic_mc", mc) is None
    assert "--dataset synthetic_mc is multiple choice" in task_mismatch("synthetic_mc", ModelConfig.official())
    assert "--dataset synthetic has none" in task_mismatch("synthetic", mc)


def test_an_unreadable_annotation_file_names_its_split(data):
    (data / "avqa-test.json").write_text('[{"video_id": ')
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("split 'test': ") and "avqa-test.json" in found[0]
    assert "\n" not in found[0]  # one line per problem


def test_a_store_that_is_not_there(data):
    found = problems(data, store=str(data / "nowhere.h5"))
    assert len(found) == 1 and found[0].startswith("--store: ") and "nowhere.h5" in found[0]


def test_records_without_a_needed_column(data):
    path = data / "avqa-val.json"
    path.write_text(json.dumps([{k: v for k, v in r.items() if k != "video_id"} for r in json.loads(path.read_text())]))
    found = problems(data, splits=["val"])
    assert any("split 'val'" in p and "video_id" in p for p in found), found


@pytest.mark.parametrize("kind", ["audio", "visual", "question", "words"])
def test_a_missing_feature_names_kind_key_and_splits(data, kind):
    key = first_key(data, kind)
    with FeatureStore(data / "features.h5", "a") as store:
        del store.file[f"{kind}/{key}"]
    found = problems(data)
    what = "video" if kind in ("audio", "visual") else "question"
    assert len(found) == 1 and found[0].startswith(f"no {kind} feature for {what} {key!r} (needed by split(s) ")
    assert "avmaster extract" in found[0]


def test_widths_the_model_does_not_expect(data):
    cfg = dataclasses.replace(ModelConfig.official(), audio_dim=7)
    found = problems(data, cfg)
    assert any("audio_dim=" in p and "the model expects 7" in p and "--set audio_dim=" in p for p in found), found
    assert not any("visual_dim" in p or "text_dim" in p for p in found)


@pytest.mark.parametrize("kind,shape", [("audio", (4, 3)), ("question", (2, 2)), ("visual", (0, None))])
def test_a_misshaped_item(data, kind, shape):
    key = first_key(data, kind)
    with FeatureStore(data / "features.h5") as store:
        width = store.file[f"{kind}/{key}"].shape[-1]
    replace_item(data, kind, key, np.zeros(tuple(width if s is None else s for s in shape)))
    found = problems(data)
    assert any(p.startswith(f"{kind} feature {key!r} has shape ") and "re-extract" in p for p in found), found


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_values_that_are_not_finite_unless_the_check_is_off(data, bad):
    key = first_key(data, "visual")
    with FeatureStore(data / "features.h5", "a") as store:
        store.file[f"visual/{key}"][1, 2] = bad
    found = problems(data)
    assert len(found) == 1 and f"visual feature {key!r}" in found[0] and "NaN or inf" in found[0]
    check_run_inputs(DataConfig("synthetic", str(data)), None, SPLITS, check_values=False)


def test_lengths_differ_without_T_and_too_short_without_pad(data):
    key = first_key(data, "visual")
    with FeatureStore(data / "features.h5") as store:
        width = store.file[f"visual/{key}"].shape[-1]
    replace_item(data, "visual", key, np.zeros((3, width)))
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("features have different lengths (3 rows: 1, 4 rows: ")
    assert f"visual of {key!r} has 3" in found[0] and "--T N" in found[0]
    assert problems(data, T=3) == [] and problems(data, T=4, pad="zero") == []
    short = problems(data, T=4)
    assert short == [f"visual of {key!r} has 3 segments, fewer than --T 4: pass --pad zero or --pad edge, or a "
                     "smaller --T"]


def test_more_short_videos_than_listed_are_counted(data):
    found = problems(data, T=5)
    with FeatureStore(data / "features.h5") as store:
        n = len(store.keys("visual")) + len(store.keys("audio"))
    listed = min(n, MAX_LISTED)
    assert sum("fewer than --T 5" in p for p in found) == listed
    assert (found[-1] == f"{n - MAX_LISTED} more videos are shorter than --T 5") == (n > MAX_LISTED)


def test_the_summary_lists_the_first_problems_and_counts_the_rest(data):
    with FeatureStore(data / "features.h5", "a") as store:
        questions = store.keys("question")
        for q in questions:
            del store.file[f"question/{q}"]
    with pytest.raises(PreflightError) as info:
        check_run_inputs(DataConfig("synthetic", str(data)), None, SPLITS, max_listed=3)
    text = str(info.value)
    assert text.startswith(f"{len(questions)} problem(s) with the inputs of this run (dataset synthetic, root {data}")
    assert text.count("\n  - ") == 3 and text.endswith(f"  ... and {len(questions) - 3} more")
    assert len(info.value.problems) == len(questions)
    with pytest.raises(PreflightError) as info:  # the default lists up to MAX_LISTED
        check_run_inputs(DataConfig("synthetic", str(data)), None, SPLITS)
    assert str(info.value).count("\n  - ") == min(len(questions), MAX_LISTED) and "more" not in str(info.value)


def test_the_word_mask_needs_token_counts(data):
    """Words without a recorded token count and without zero padding (real CLIP words): positions unknown."""
    key = first_key(data, "words")
    with FeatureStore(data / "features.h5") as store:
        shape = store.file[f"words/{key}"].shape
    replace_item(data, "words", key, np.ones(shape))
    masked = dataclasses.replace(ModelConfig.official(), mask_padding=True)
    found = problems(data, masked)
    assert len(found) == 1 and "token count" in found[0] and f"question_id {key}" in found[0]
    assert problems(data, ModelConfig.official()) == []


def test_candidates_are_checked_for_a_multiple_choice_model(tmp_path):
    from avmaster_core.data.synthetic import generate_synthetic

    root = tmp_path / "mc"
    generate_synthetic(root, num_videos=6, questions_per_video=2, T=3, choices=3)
    mc = dataclasses.replace(ModelConfig.official(), choice_scorer="dot")
    data = DataConfig("synthetic_mc", str(root))
    check_run_inputs(data, mc, SPLITS)
    key = first_key(root, "choices")
    with FeatureStore(root / "features.h5", "a") as store:
        del store.file[f"choices/{key}"]
    with pytest.raises(PreflightError) as info:
        check_run_inputs(data, mc, SPLITS)
    assert info.value.problems[0].startswith(f"no choices feature for question {key!r}")
    with pytest.raises(PreflightError, match="is multiple choice"):
        check_run_inputs(data, ModelConfig.official(), SPLITS)


def test_the_splits_a_run_reads():
    class Train:
        eval_split, test_split = "val", "test"
    assert splits_of(Train, DataConfig()) == ["train", "val", "test"]
    Train.eval_split = None
    assert splits_of(Train, DataConfig(train_split="train_all")) == ["train_all", "test"]

"""Dress rehearsal of `avmaster reproduce run` on CPU, with the real annotation files of ../shared/data.

Everything the real run does except the GPU: random features written in the released per-item .npy layout
and imported with `avmaster store import`; MUSIC-AVQA-v2.0's question features made by the plan's own
question-features item (tiny random CLIP, the originals' text path); the cpu-size model trained one epoch on
the first questions of each split (MUSIC-AVQA's train file is not in ../shared/data, so training uses the
validation file: --train-on val); the run fills Table II, Table IV's balanced-test cells, Table VII and Fig. 5,
writes our tables beside the paper's, and executes those artefacts' notebooks in full mode. The plan then
shows the rest as missing, with the reason.
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avmaster_core import cli
from avmaster_core.data.annotations import load_annotations
from avmaster_core.data.npy_io import RELEASED_DIRS

LIMIT = 40          # questions per split
SEGMENTS = 10       # one-second segments per video (the released features have 60; any T works)
ONLY = ["table2", "table4", "table7", "fig5"]
pytestmark = pytest.mark.slow


def _avmaster(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main([str(a) for a in argv])
    assert code == 0, out.getvalue()[-3000:]
    return out.getvalue()


def _write_npy(folder: Path, records: pd.DataFrame, rng: np.random.Generator, questions: bool) -> None:
    """Random features of `records` in the released layout: vggish/, clip_vit_l14_336px/ per video,
    clip_qst/ [1, 768] and clip_word/ [1, 77, 768] per question."""
    kinds = ("audio", "visual", "question", "words") if questions else ("audio", "visual")
    dirs = {kind: folder / RELEASED_DIRS[kind] for kind in kinds}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for video in set(records["audio_video_id"]):
        np.save(dirs["audio"] / f"{video}.npy", rng.standard_normal((SEGMENTS, 128), dtype=np.float32))
    for video in set(records["video_id"]):
        np.save(dirs["visual"] / f"{video}.npy", rng.standard_normal((SEGMENTS, 768), dtype=np.float32))
    for qid in records["question_id"] if questions else []:
        np.save(dirs["question"] / f"{qid}.npy", rng.standard_normal((1, 768), dtype=np.float32))
        np.save(dirs["words"] / f"{qid}.npy", rng.standard_normal((1, 77, 768), dtype=np.float32))


def _data_folder(shared: Path, tmp: Path) -> Path:
    """<tmp>/data/<dataset>/ with links to the real annotation files and features.h5 made from .npy files."""
    rng = np.random.default_rng(0)
    data = tmp / "data"
    for dataset, files, splits, questions in [
        ("music_avqa", ["avqa-val.json", "avqa-test.json", "answer2idx.json"], ["val", "test"], True),
        ("music_avqa_v2", ["balance_valid.json", "test_balance.json"], ["val_balance", "test_balance"], False),
    ]:
        if not all((shared / dataset / f).is_file() for f in files):
            pytest.skip(f"{dataset} annotation files {files} not all in {shared / dataset}")
        (data / dataset).mkdir(parents=True)
        for f in files:
            (data / dataset / f).symlink_to(shared / dataset / f)
        records = pd.concat([load_annotations(dataset, s, data / dataset).iloc[:LIMIT] for s in splits])
        _write_npy(tmp / "npy" / dataset, records, rng, questions)
        _avmaster("store", "import", data / dataset / "features.h5", "--root", tmp / "npy" / dataset)
    return data


def _settings_args(tmp: Path) -> list:
    return ["--seeds", 1, "--size", "cpu", "--epochs", 1, "--lr", "1e-3", "--batch-size", 16, "--limit", LIMIT,
            "--train-on", "val", "--device", "cpu", "--encoders", "tiny", "--data", tmp / "data",
            "--runs", tmp / "runs", "--results", tmp / "results"]


@pytest.fixture(scope="module")
def rehearsal(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    start = time.perf_counter()
    _data_folder(shared_data, tmp)
    plan_before = _avmaster("reproduce", "plan", "--only", *ONLY, *_settings_args(tmp))
    log = _avmaster("reproduce", "run", "--only", *ONLY, *_settings_args(tmp), "--notebook-out", tmp / "notebooks")
    seconds = time.perf_counter() - start
    second = _avmaster("reproduce", "run", "--only", *ONLY, *_settings_args(tmp), "--no-notebooks")
    plan_after = _avmaster("reproduce", "plan", *_settings_args(tmp))
    print(f"rehearsal: {seconds:.1f} s (data, plan, run, notebooks)\n{log}")
    return {"tmp": tmp, "before": plan_before, "log": log, "second": second, "after": plan_after,
            "seconds": seconds}


def test_plan_lists_the_question_features_prerequisite_with_its_count(rehearsal):
    line = next(x for x in rehearsal["before"].splitlines() if "question features music_avqa_v2" in x)
    assert "missing" in line and f"{2 * LIMIT} questions without features" in line, line
    line = next(x for x in rehearsal["before"].splitlines() if "question features music_avqa " in x)
    assert "finished" in line, line


def test_run_prints_the_plan_then_one_line_per_item_with_time_left(rehearsal):
    log = rehearsal["log"]
    assert log.index("Reproduction plan") < log.index("[1/")
    done = [x for x in log.splitlines() if x.startswith("[") and " done " in x]
    # question features (v2), default, 5 x Table VII, 2 x Fig. 5, v2 balance = 10 items; no evaluation
    # (the balance-trained run's own test table is the balanced-test cell)
    assert len(done) == 10, log
    assert all("left (" in x for x in done)
    assert any("test " in x and "%" in x for x in done)
    assert "failed" not in log


def test_tables_are_filled(rehearsal):
    results = rehearsal["tmp"] / "results" / "reproduce"
    table2 = pd.read_csv(results / "table2.csv", header=[0, 1, 2], index_col=0)
    ours = table2.xs("ours", axis=1, level=0)
    # a few dozen questions do not cover every question type: the averages are there, some type cells are not
    assert ours.loc["AV-Master"].notna().sum() >= 4 and ours.loc["AV-Master", ("Overall", "Avg")] >= 0
    assert ours.drop(index="AV-Master").isna().all().all()
    table7 = pd.read_csv(results / "table7.csv", header=[0, 1], index_col=0)
    assert table7[("ours", "Avg")].notna().all() and len(table7) == 6
    table4 = pd.read_csv(results / "table4.csv", header=[0, 1], index_col=[0, 1, 2])
    ours4 = table4["ours"]
    assert ours4.loc[("Balance", "Balance", "AV-Master"), "Avg"] >= 0
    assert ours4.loc[("Balance", "Bias", "AV-Master")].isna().all()      # needs the bias training file
    assert ours4.loc[("Bias", "Balance", "AV-Master")].isna().all()      # needs test_bias.json
    fig5 = pd.read_csv(results / "fig5.csv", index_col=0)
    assert set(fig5.index) == {"A+Q", "V+Q", "A+V+Q"} and fig5["Avg"].notna().all()


def test_notebooks_of_finished_artefacts_ran_in_full_mode(rehearsal):
    tmp = rehearsal["tmp"]
    executed = sorted(p.name for p in (tmp / "notebooks").glob("*.ipynb"))
    assert [n[:2] for n in executed] == ["10", "14", "21"], executed     # Table IV is not finished: not run
    table2 = pd.read_csv(tmp / "results" / "table2.csv", header=[0, 1, 2], index_col=0)  # written by notebook 10
    assert table2.xs("ours", axis=1, level=0).loc["AV-Master", ("Overall", "Avg")] >= 0


def test_second_run_redoes_nothing(rehearsal):
    second = rehearsal["second"]
    assert " done " not in second and "Launching" in second, second


def test_plan_shows_the_rest_as_missing_with_the_reason(rehearsal):
    after = {line.split()[0]: line for line in rehearsal["after"].splitlines()
             if line.split() and line.split()[0] in ("table2", "table3", "table4", "table5", "table7", "fig5")}
    assert "finished" in after["table2"] and "finished" in after["table7"] and "finished" in after["fig5"]
    assert "1/4" in after["table4"] and "bias" in after["table4"]          # the bias files are absent
    assert "annotations" in after["table3"] and "avqa-test-head.json" in rehearsal["after"]
    assert "train_qa.json" in after["table5"]                           # Table V trains avqa/choices on AVQA


def test_rehearsal_time(rehearsal):
    assert rehearsal["seconds"] < 300, rehearsal["seconds"]   # ~2 min on 2 shared cores (README)

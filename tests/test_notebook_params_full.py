"""Every notebook parameter in full mode (SMOKE=False) against a small store in the real layout (issue 28).

The notebook tests run with SMOKE=True, which replaces DATASET, ROOT, STORE and DEVICE on purpose, so a
notebook that ignored STORE, or a table row that averaged every seed instead of SEEDS, passed them all. Here,
at the level where parameters are resolved (no notebook is executed; each test takes well under a second):
  - every notebook hands every parameter of its parameters cell to `notebook_settings`, and every call of its
    code that is given the annotation folder (settings.root) is also given the feature store when it takes one;
  - for every notebook, each parameter given a non-default value reaches the settings it makes, with the
    feature store somewhere else than <ROOT>/features.h5 (which does not exist: reading it would fail);
  - a table's rows, a stand-in row included, are the mean over exactly the SEEDS given.
"""
from __future__ import annotations

import ast
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avmaster_core.results import analysis, explore, ours_tables, paper
from avmaster_core.results.notebook_params import NEEDS, notebook_defaults, notebook_settings, notebooks_folder
from avmaster_core.results.notebooks import find_notebooks
from avmaster_core.training import evaluation
from avmaster_core.training.run_config import RUN_TABLE, read_run_table

REPO = notebooks_folder().parent  # the checkout (also from a copy of the tests, as `make mutate` runs them)
NOTEBOOKS = {nb.stem: nb for nb in find_notebooks(REPO / "notebooks")}
# a run's test table as the engine writes it (scoring.score's Table II layout, as in results/runs/)
TABLE_HEADER = [",Audio QA,Audio QA,Audio QA,Visual QA,Visual QA,Visual QA,Audio-Visual QA,Audio-Visual QA,"
                "Audio-Visual QA,Audio-Visual QA,Audio-Visual QA,Audio-Visual QA,Overall",
                ",Count,Comp,Avg,Count,Local,Avg,Exist,Count,Local,Comp,Temp,Avg,Avg", "method" + "," * 13]


def _cells(stem: str, tag: str | None = None) -> list[str]:
    cells = json.loads(NOTEBOOKS[stem].read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
            and (tag is None or tag in c.get("metadata", {}).get("tags", []))]


def _code(source: str) -> ast.Module:
    return ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


# ------------------------------------------------------------------------------------ the notebooks' own code
@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_every_parameter_is_handed_to_notebook_settings(stem):
    declared = list(notebook_defaults(NOTEBOOKS[stem]))
    calls = [n for cell in _cells(stem, "settings") for n in ast.walk(_code(cell))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "notebook_settings"]
    assert len(calls) == 1, f"{stem}: one notebook_settings call in the cell tagged settings"
    passed = {k.arg: k.value.id for k in calls[0].keywords if isinstance(k.value, ast.Name)}
    assert {name: passed.get(name) for name in declared} == {name: name for name in declared}
    assert calls[0].args[0].value == stem


# where the functions the notebooks call live (a name not found here fails the test below: add its module)
_MODULES = (analysis, explore, explore.Explorer, evaluation, ours_tables, paper)


def _accepts_store(name: str) -> bool | None:
    for module in _MODULES:
        if hasattr(module, name) and callable(getattr(module, name)):
            return "store" in inspect.signature(getattr(module, name)).parameters
    return None


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_calls_given_the_annotation_folder_are_given_the_store_too(stem):
    """A call that reads features given settings.root and no store reads <root>/features.h5: STORE ignored."""
    for cell in _cells(stem):
        for call in (n for n in ast.walk(_code(cell)) if isinstance(n, ast.Call)):
            given_root = any(ast.unparse(a) == "settings.root" for a in [*call.args, *(k.value for k in call.keywords)])
            name = getattr(call.func, "attr", getattr(call.func, "id", None))
            if not given_root or name in ("load_annotations", "Path"):  # annotations only
                continue
            accepts = _accepts_store(name)
            assert accepts is not None, f"{stem}: {ast.unparse(call.func)} not found in {_MODULES}"
            if accepts:
                assert "store" in {k.arg for k in call.keywords}, f"{stem}: {ast.unparse(call)[:200]} ignores STORE"


# ------------------------------------------------------------------------------------ a store in the real layout
def _write_table(run_dir: Path, avg: float) -> None:
    """A finished run's test table whose every accuracy is `avg`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_TABLE).write_text("\n".join(TABLE_HEADER + ["ours" + f",{avg}" * 13]) + "\n")
    (run_dir / "best.pt").write_bytes(b"")  # the settings only check that a checkpoint is there


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """data/music_avqa (annotation files only), the features in stores/elsewhere.h5, runs/<experiment>/<seed>."""
    from avmaster_core.data.synthetic import generate_synthetic

    base = tmp_path_factory.mktemp("real_layout")
    made = generate_synthetic(base / "made", num_videos=6, questions_per_video=2, T=4)
    root = base / "data" / "music_avqa"
    root.mkdir(parents=True)
    for split in ("train", "val", "test"):
        shutil.copy(made[split], root / Path(made[split]).name)
    (base / "stores").mkdir()
    store = Path(shutil.copy(made["features"], base / "stores" / "elsewhere.h5"))
    runs = base / "runs"
    for prefix in ("", "paper/"):
        for experiment in ("default", "table7/wo_dpcl", "baseline/question_only"):
            for seed, avg in ((1, 60.0), (2, 70.0), (3, 90.0)):
                _write_table(runs / f"{prefix}{experiment}" / str(seed), avg + (experiment == "default"))
    from avmaster_core.data.annotations import load_annotations

    question = load_annotations("music_avqa", "test", root)["question"].iloc[0]
    return {"root": root, "store": store, "runs": runs, "results": base / "results", "data": base / "data",
            "videos": base, "question": question}


def _full_mode_values(stem: str, real: dict) -> dict:
    """A value other than the stored default for every parameter the notebook declares."""
    defaults = notebook_defaults(NOTEBOOKS[stem])
    given = {"DATASET": "music_avqa", "ROOT": str(real["root"]), "STORE": str(real["store"]), "EXPERIMENT": "default",
             "PRESET": "paper", "SEEDS": "2,3", "EPOCHS": 2, "DEVICE": "cpu", "RESULTS": str(real["results"]),
             "RUNS": str(real["runs"]), "DATA": str(real["data"]), "VIDEOS": str(real["videos"]),
             "EXTRACT_STORE": str(real["store"]), "SECONDS": 3, "BATCH": 3, "FAILURES": 2, "QUESTIONS": 2,
             "LENGTHS": "2,4", "QUESTION": real["question"], "TRAIN": False, "QTYPE": "Counting",
             "CHECKPOINT": str(real["runs"] / "paper" / "default" / "2" / "best.pt"), "VIDEO": "", "LIMIT": 7, "STEPS": 3}
    missing = set(defaults) - set(given) - {"SMOKE"}
    assert not missing, f"{stem} declares {sorted(missing)}: give each a full-mode value here"
    return {name: given[name] for name in defaults if name != "SMOKE"}


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_every_parameter_is_honoured_in_full_mode(stem, real):
    values = _full_mode_values(stem, real)
    settings = notebook_settings(stem, SMOKE=False, **values)
    assert settings.smoke is False and not any(c.startswith("SMOKE") for c in settings.changes)  # nothing replaced
    if "DATASET" in values:
        assert settings.dataset == values["DATASET"]
    if "ROOT" in values:
        assert settings.root == Path(values["ROOT"])
    if "STORE" in values:
        assert settings.data_config().store_path() == Path(values["STORE"])
        assert settings.ensure_data() == Path(values["STORE"])  # <ROOT>/features.h5 does not exist
    if "SEEDS" in values:
        assert settings.seeds == (2, 3) and settings.train_config().seed == 2
    if "EPOCHS" in values:
        assert settings.epochs == 2 and settings.train_config().epochs == 2
        assert settings.train_first == ("rows" in NEEDS.get(stem, ()))
    if "DEVICE" in values:
        assert settings.device == "cpu" and settings.train_config().device == "cpu"
    if "RESULTS" in values:
        assert settings.results == Path(values["RESULTS"])
    if "RUNS" in values:
        assert settings.runs_root == Path(values["RUNS"])
        base = settings.train_dir if settings.train_first else settings.runs_root
        assert settings.runs == (base / "paper" if "PRESET" in values else base)
    if "PRESET" in values:
        assert settings.preset == "paper" and settings.run_name == f"paper/{settings.experiment}"
    assert settings.size == "full"
    for name in set(values) - {"DATASET", "ROOT", "STORE", "EXPERIMENT", "PRESET", "SEEDS", "EPOCHS", "DEVICE",
                               "RESULTS", "RUNS"}:
        assert settings.extra[name] == values[name], name
    if "question" in NEEDS.get(stem, ()):
        from avmaster_core.data.annotations import load_annotations

        test = load_annotations("music_avqa", "test", real["root"])
        assert settings.question_id == int(test.loc[test["question"] == values["QUESTION"], "question_id"].iloc[0])


def test_the_segment_check_reads_the_store_given(real):
    values = _full_mode_values("20_fig4_segment_length", real)
    with pytest.raises(ValueError, match=r"LENGTHS = '2,5': the videos in .*elsewhere\.h5 have 4 segments"):
        notebook_settings("20_fig4_segment_length", SMOKE=False, **{**values, "LENGTHS": "2,5"})


# ------------------------------------------------------------------------------------ rows over the SEEDS given
@pytest.mark.parametrize("seeds,expected", [((2, 3), 80.0), ((1, 3), 75.0), ((2,), 70.0), (None, 220 / 3)])
def test_rows_and_stand_in_rows_average_exactly_the_seeds_given(real, seeds, expected):
    settings = notebook_settings("15_table8_losses", SMOKE=False, SEEDS=",".join(map(str, seeds or ())),
                                 RUNS=str(real["runs"]), PRESET="official")
    assert settings.seeds == seeds
    mean, std = ours_tables.ours_rows("table8", settings.runs, settings.seeds)
    row5, row6 = mean.loc[5], mean.loc[6]      # row 5: table7/wo_dpcl's runs; row 6: the full model (+1)
    assert mean.attrs["stand_in"] == {5: "table7/wo_dpcl", 6: "default"} and list(mean.index) == [5, 6]
    assert np.allclose(row5.dropna(), expected) and np.allclose(row6.dropna(), expected + 1)
    assert mean.attrs["seeds"] == {5: sorted(seeds or (1, 2, 3)), 6: sorted(seeds or (1, 2, 3))}
    values = [{1: 60.0, 2: 70.0, 3: 90.0}[s] for s in (seeds or (1, 2, 3))]
    spread = np.std(values, ddof=1) if len(values) > 1 else np.nan
    assert np.allclose(std.loc[5].dropna(), spread) if len(values) > 1 else std.loc[5].isna().all()
    assert sorted(mean.attrs["per_seed"][5]) == sorted(seeds or (1, 2, 3))
    assert mean.attrs["per_seed"][5][max(seeds or (3,))]["Avg"] == {2: 70.0, 3: 90.0}[max(seeds or (3,))]  # layout
    assert mean.index.name == std.index.name == paper.paper_table("table8").index.name
    direct = paper.ours_table("table8", settings.runs, settings.seeds)
    pd.testing.assert_series_equal(direct.loc[5], row5, check_names=False)


def test_a_written_table_reads_back(real):
    table = read_run_table(real["runs"] / "default" / "2")
    assert np.allclose(table.to_numpy(dtype=float), 71.0)

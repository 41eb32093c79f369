"""The headless notebook runner, on tiny throw-away notebooks (a real kernel runs them)."""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from avmaster_core.results import notebooks as runner


def write_notebook(path, parameters: str, *cells: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    # Each notebook records the parameters it saw (in its working directory, the notebooks folder).
    write_notebook(nbs / "00_first.ipynb", "SMOKE = True\nEPOCHS = 30\nDEVICE = 'cpu'",
                   "import json, os\njson.dump({'SMOKE': SMOKE, 'EPOCHS': EPOCHS, 'DEVICE': DEVICE, "
                   "'cwd': os.getcwd()}, open('seen_00.json', 'w'))")
    write_notebook(nbs / "10_second.ipynb", "SMOKE = True",
                   "import json\njson.dump({'SMOKE': SMOKE}, open('seen_10.json', 'w'))")
    (nbs / "scratch.ipynb").write_text("{}")  # not NN_*: never run
    return nbs


def test_find_and_filter(folder):
    assert [p.name for p in runner.find_notebooks(folder)] == ["00_first.ipynb", "10_second.ipynb"]
    assert [p.name for p in runner.find_notebooks(folder, "1*")] == ["10_second.ipynb"]
    assert [p.name for p in runner.find_notebooks(folder, "00_first,nothing")] == ["00_first.ipynb"]
    assert [p.name for p in runner.find_notebooks(folder, "10")] == ["10_second.ipynb"]
    assert runner.find_notebooks(folder, "first") == []  # no substring surprises
    with pytest.raises(FileNotFoundError, match="run from the repository root"):
        runner.find_notebooks(folder / "missing")


def test_parse_value():
    assert runner.parse_value("2") == 2 and runner.parse_value("0.5") == 0.5
    assert runner.parse_value("False") is False and runner.parse_value("cuda") == "cuda"
    assert runner.parse_value("'x'") == "x"
    assert runner.parse_value("2,3") == "2,3"  # SEEDS: a list stays text (papermill would inject "(2, 3)")


def test_list_shows_parameters(folder, capsys):
    assert runner.main(["list", "--notebooks", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["00_first.ipynb  parameters: DEVICE, EPOCHS, SMOKE", "10_second.ipynb  parameters: SMOKE"]


@pytest.mark.slow
def test_run_passes_mode_and_parameters_and_writes_copies(folder, tmp_path, capsys):
    out = tmp_path / "build" / "notebooks"
    code = runner.main(["run", "--mode", "full", "--out", str(out), "--notebooks", str(folder),
                        "-p", "EPOCHS", "2", "-p", "DEVICE", "cuda"])
    assert code == 0
    seen = json.loads((folder / "seen_00.json").read_text())
    assert seen["SMOKE"] is False and seen["EPOCHS"] == 2 and seen["DEVICE"] == "cuda"
    assert seen["cwd"] == str(folder)
    assert json.loads((folder / "seen_10.json").read_text()) == {"SMOKE": False}
    assert sorted(p.name for p in out.iterdir()) == ["00_first.ipynb", "10_second.ipynb"]
    executed = nbformat.read(str(out / "00_first.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    log = capsys.readouterr().out
    assert "[1/2] 00_first.ipynb" in log and "[2/2] 10_second.ipynb" in log and "2 notebook(s) in" in log


def test_smoke_kernels_get_one_torch_thread_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert runner.kernel_threads(0, smoke=True) == 1 and runner.kernel_threads(0, smoke=False) == 0
    assert runner.kernel_threads(3, smoke=True) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting stands in auto mode
    assert runner.kernel_threads(0, smoke=True) == 0
    with runner.kernel_environment(1):
        assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "2"
    with pytest.raises(SystemExit):
        runner.build_parser().parse_args(["run", "--mode", "smoke", "--out", "o", "--threads", "-1"])


@pytest.mark.slow
def test_kernels_run_with_the_threads_asked_for(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    write_notebook(folder / "20_threads.ipynb", "SMOKE = True",
                   "import torch\nopen('seen_threads.txt', 'w').write(str(torch.get_num_threads()))")
    for threads, expected in (("0", "1"), ("2", "2")):
        assert runner.main(["run", "--mode", "smoke", "--out", str(tmp_path / "o"), "--notebooks", str(folder),
                            "--only", "20", "--threads", threads]) == 0
        assert (folder / "seen_threads.txt").read_text() == expected
    assert "OMP_NUM_THREADS" not in os.environ


@pytest.mark.slow
def test_failure_names_notebook_and_cell_and_stops(folder, tmp_path, capsys):
    write_notebook(folder / "05_broken.ipynb", "SMOKE = True", "x = 1", "raise RuntimeError('no features here')")
    out = tmp_path / "out"
    assert runner.main(["run", "--mode", "smoke", "--out", str(out), "--notebooks", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "05_broken.ipynb failed at cell [4]" in err and "RuntimeError: no features here" in err
    assert "raise RuntimeError" in err and str(out / "05_broken.ipynb") in err
    assert not (out / "10_second.ipynb").exists()  # stopped at the first failure


def test_bad_requests_fail_before_running(folder, tmp_path, capsys):
    assert runner.main(["run", "--mode", "smoke", "--out", str(tmp_path / "o"), "--notebooks", str(folder),
                        "-p", "EPOCS", "2"]) == 1
    assert "EPOCS" in capsys.readouterr().err
    assert runner.main(["run", "--mode", "smoke", "--out", str(folder / "executed"), "--notebooks", str(folder)]) == 1
    assert "inside the notebook folder" in capsys.readouterr().err
    assert runner.main(["run", "--mode", "smoke", "--out", str(tmp_path / "o"), "--notebooks", str(folder),
                        "-p", "SMOKE", "False"]) == 1
    assert "--mode" in capsys.readouterr().err
    assert runner.main(["list", "--notebooks", str(folder), "--only", "zz"]) == 1
    assert not (folder / "seen_00.json").exists()


def test_only_matches_numbers_and_whole_names_not_substrings():
    real = runner.find_notebooks(runner.DEFAULT_NOTEBOOKS if runner.DEFAULT_NOTEBOOKS.is_dir() else
                                 __import__("pathlib").Path(__file__).parents[1] / "notebooks", "10_")
    assert [p.name for p in real] == ["10_table2_music_avqa.ipynb"]  # not 17_table10_weight_sharing
    nb = __import__("pathlib").Path("17_table10_weight_sharing.ipynb")
    assert runner.matches(nb, "17") and runner.matches(nb, "17_table10_weight_sharing") and runner.matches(nb, "1*")
    assert not runner.matches(nb, "10_") and not runner.matches(nb, "table10")


def test_notebook_settings_smoke_never_writes_real_results(tmp_path):
    (tmp_path / "r").mkdir()
    full = runner.notebook_settings(DATASET="music_avqa_r", ROOT=str(tmp_path / "r"), SEEDS="1, 2,3", EPOCHS=30,
                                    DEVICE="cuda", SMOKE=False)
    assert (full.dataset, full.seeds, full.epochs, full.device, full.smoke) == ("music_avqa_r", (1, 2, 3), 30, "cuda", False)
    assert str(full.runs) == "../results/runs" and str(full.figures) == "../results/figures" and full.store is None
    assert full.size == "full" and full.ours_label == "ours" and full.train_config().lr == 1e-4
    smoke = runner.notebook_settings(DATASET="music_avqa", SEEDS="", EPOCHS=0, DEVICE="auto", SMOKE=True)
    assert smoke.dataset == "synthetic" and smoke.epochs == 1 and smoke.device == "cpu" and smoke.seeds is None
    assert "SMOKE changes DATASET 'music_avqa' -> 'synthetic'" in str(smoke) and "DEVICE 'auto' -> 'cpu'" in str(smoke)
    assert runner.notebook_settings(EPOCHS=3, SMOKE=True).train_config().epochs == 3  # -p EPOCHS 3 is honoured
    assert smoke.results.parts[:3] == ("..", "build", "smoke") and smoke.runs == runner.SMOKE_RUNS
    assert smoke.size == "cpu" and smoke.ours_label == "ours (synthetic)" and smoke.new_runs.parts[1:] == ("build", "smoke", "results", "runs", "smoke")
    assert smoke.train_config().epochs == 1 and smoke.data_config().dataset == "synthetic"
    demo = runner.notebook_settings(SMOKE=True, RESULTS=runner.DEMO_RESULTS)
    assert str(demo.results) == "../results" and demo.runs == runner.SMOKE_RUNS
    assert "results (written): ../build/smoke/results" in str(smoke)
    with pytest.raises(ValueError, match="PRESET = 'Paper'.*did you mean 'paper'"):
        runner.notebook_settings(PRESET="Paper")
    paper_runs = runner.notebook_settings(PRESET="paper", SMOKE=True)
    assert paper_runs.runs == runner.SMOKE_RUNS / "paper" and paper_runs.run_name == "paper/default"


@pytest.mark.parametrize("notebook,params,message", [
    ("04_evaluation", dict(EXPERIMENT="table7/wo_tdpp", SEEDS="9"), r"SEEDS = '9'.*finished seeds \[1, 2, 3\]"),
    ("04_evaluation", dict(EXPERIMENT="table7/wo_tdpp", SEEDS="1"), r"EXPERIMENT = 'table7/wo_tdpp'.*keep no checkpoint"),
    ("00_quick_start", dict(PRESET="paper"), r"EXPERIMENT = 'default'.*keep no checkpoint"),
    ("00_quick_start", dict(EXPERIMENT="table8/qa+c"), r"EXPERIMENT = 'table8/qa\+c'.*no finished run.*avmaster sweep"),
    ("00_quick_start", dict(EXPERIMENT="table7/wo_tdp"), r"did you mean 'table7/wo_tdpp'"),
    ("24_fig8_word_attention", dict(SEEDS="7"), r"SEEDS = '7'.*'default' has finished seeds"),
    pytest.param("24_fig8_word_attention", dict(QUESTION="Is this a question?"),
                 r"QUESTION = .*no test question of synthetic", marks=pytest.mark.slow),  # ~10 CPU-seconds
    ("", dict(SEEDS="1;2"), r"SEEDS = '1;2': give comma-separated whole numbers"),
    ("", dict(EPOCHS=-1), r"EPOCHS = -1"),
    ("", dict(DEVICE="gpu"), r"DEVICE = 'gpu'"),
    ("", dict(SMOKE=False, DATASET="music_avq"), r"DATASET = 'music_avq'.*did you mean 'music_avqa'"),
    ("", dict(SMOKE=False, DATASET="music_avqa", ROOT="/nowhere"), None),
])
def test_parameters_are_refused_with_a_message_naming_them(notebook, params, message, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1] / "notebooks")  # as a notebook runs
    if message is None:  # a missing data folder only matters to notebooks that read data
        with pytest.raises(runner.ParameterError, match=r"ROOT = '/nowhere': no such folder.*avmaster data fetch"):
            runner.notebook_settings("00_quick_start", **params)
        return
    with pytest.raises(runner.ParameterError, match=message):
        runner.notebook_settings(notebook, **params)


def test_table_notebooks_train_their_rows_only_when_epochs_is_given(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1] / "notebooks")
    read = runner.notebook_settings("14_table7_components", EPOCHS=0, SMOKE=True)
    assert not read.train_first and read.runs == runner.SMOKE_RUNS and "the finished runs are read" in str(read)
    train = runner.notebook_settings("14_table7_components", EPOCHS=3, SMOKE=True)
    assert train.train_first and train.epochs == 3 and train.runs.name == "epochs3"
    assert runner.notebook_settings("21_fig5_input_modalities").runs.name == "synthetic_decorrelated"


def test_save_never_replaces_a_table_by_empty_columns(tmp_path, capsys):
    settings = runner.notebook_settings(SMOKE=True, RESULTS=str(tmp_path))
    assert settings.save(None, "table8.csv", complete=False, missing=["table8/qa"]) is None
    assert not (tmp_path / "table8.csv").exists()
    out = capsys.readouterr().out
    assert "table8.csv not written: no run of table8/qa" in out and "avmaster sweep --experiments table8/qa" in out


def test_missing_real_store_is_named(tmp_path):
    settings = runner.notebook_settings(SMOKE=False, ROOT=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="features.h5 not found"):
        settings.ensure_data()


def test_an_injected_name_the_notebook_does_not_declare_is_refused(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1] / "notebooks")
    # papermill -p SEED 2 adds `SEED = 2` after the parameters cell; the settings cell passes globals()
    with pytest.raises(runner.ParameterError, match=r"SEED = 2: 14_table7_components declares no such parameter; "
                                                    r"did you mean SEEDS\?"):
        runner.notebook_settings("14_table7_components", SEEDS="", scope={"SEED": 2, "SEEDS": "", "In": [], "ANSWERS": ("yes", "no")})
    assert runner.notebook_settings("14_table7_components", SEEDS="", scope={"SEEDS": "", "_": 1}).seeds is None


@pytest.mark.parametrize("params,message", [
    (dict(SEEDS="9"), r"SEEDS = '9': no finished run in ../results/runs/synthetic has seed\(s\) \[9\] "
                      r"\(seeds found: \[1, 2, 3\]\)"),
    (dict(SMOKE=False, RUNS="../build/nowhere"), r"RUNS = '../build/nowhere': no finished run there"),
    (dict(SMOKE=False, EPOCHS=2, ROOT="/nowhere"), r"ROOT = '/nowhere': no such folder"),
])
def test_a_table_notebook_stops_without_its_runs_or_data(params, message, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1] / "notebooks")
    with pytest.raises(runner.ParameterError, match=message):
        runner.notebook_settings("14_table7_components", **params)


def test_non_default_parameters_never_write_the_committed_results(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1] / "notebooks")
    assert runner.changed_parameters("14_table7_components", {"SEEDS": 2, "DEVICE": "cuda", "SMOKE": False}) == ["SEEDS"]
    assert runner.changed_parameters("14_table7_components", {"SEEDS": "", "EPOCHS": 0}) == []
    runs = "../results/runs/synthetic"  # finished runs to read; the full tier's own results/runs has none
    default = runner.notebook_settings("14_table7_components", SMOKE=False, SEEDS="", RUNS=runs)
    changed = runner.notebook_settings("14_table7_components", SMOKE=False, SEEDS="2", RUNS=runs)
    named = runner.notebook_settings("14_table7_components", SMOKE=False, SEEDS="2", RUNS=runs, RESULTS="../results")
    assert (str(default.results), str(changed.results), str(named.results)) == \
        ("../results", "../build/results", "../results")
    assert "SEEDS differ from this notebook's defaults" in str(changed)


@pytest.mark.slow
def test_the_runner_sends_results_to_build_when_a_parameter_changes(folder, tmp_path, capsys):
    write_notebook(folder / "20_table.ipynb", "SMOKE = True\nSEEDS = ''\nRESULTS = ''",
                   "import json\njson.dump({'RESULTS': RESULTS}, open('seen_20.json', 'w'))")
    out = tmp_path / "out"
    assert runner.main(["run", "--mode", "smoke", "--out", str(out), "--notebooks", str(folder), "--only", "20"]) == 0
    assert json.loads((folder / "seen_20.json").read_text()) == {"RESULTS": runner.DEMO_RESULTS}
    assert runner.main(["run", "--mode", "smoke", "--out", str(out), "--notebooks", str(folder), "--only", "20",
                        "-p", "SEEDS", "2"]) == 0
    assert json.loads((folder / "seen_20.json").read_text()) == {"RESULTS": ""}  # notebook_settings: build/
    assert "SEEDS differ from its defaults: its tables and figures go under build/" in capsys.readouterr().out

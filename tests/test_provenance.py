"""Provenance (issue 22): every run folder records the code, configuration, data and machine that made it,
every table and figure lists the runs it came from, and `avmaster runs check DIR` says which runs come from
another commit or configuration, exiting 1 when they (or one table's runs) mix commits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avmaster_core import cli
from avmaster_core.training import provenance
from avmaster_core.core.experiments import experiment
from avmaster_core.training.engine import DataConfig, TrainConfig, train
from avmaster_core.training.run_config import read_run_table
from avmaster_core.results.plots import save_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """One finished tiny run (cpu size, 1 epoch) under <tmp>/runs/default/1."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("prov") / "runs"
    result = train(experiment("default", size="cpu"), TrainConfig(epochs=1, batch_size=16, progress=False,
                                                                 device="cpu"),
                   DataConfig("synthetic", str(tiny_data)), out_dir=out, experiment="default")
    return result.run_dir


def test_a_run_records_code_configuration_data_and_machine(run, tiny_data):
    record = json.loads((run / "config.json").read_text())
    prov = record["provenance"]
    assert prov["package"] and len(prov["commit"]) == 40 and isinstance(prov["dirty"], bool)
    assert prov["config_sha256"] == provenance.config_hash(record)
    assert prov["data"]["annotations"]["avqa-train.json"] == provenance.file_sha256(tiny_data / "avqa-train.json")
    assert prov["data"]["store"]["items"]["audio"] == 30 and prov["data"]["store"]["bytes"] > 0
    assert prov["torch"] and prov["device"] == "cpu" and prov["threads"] == 1


def test_a_table_lists_the_runs_it_came_from(run, tmp_path):
    provenance.reset_reads()
    path = save_table(read_run_table(run), tmp_path / "results" / "t.csv")
    side = json.loads((tmp_path / "results" / "t.csv.provenance.json").read_text())
    label = provenance.commit_label(json.loads((run / "config.json").read_text())["provenance"])
    assert side["commits"] == [label] and len(side["runs"]) == 1
    assert (path.parent / side["runs"][0]["run"]).resolve() == run.resolve()
    provenance.reset_reads()
    save_table(read_run_table(run), tmp_path / "results" / "t.csv")  # the same runs: the same bytes
    assert json.loads((tmp_path / "results" / "t.csv.provenance.json").read_text()) == side


def _copy(run, dest, commit=None):
    shutil.copytree(run, dest)
    record = json.loads((dest / "config.json").read_text())
    if commit is None:
        del record["provenance"]
    else:
        record["provenance"]["commit"] = commit
    (dest / "config.json").write_text(json.dumps(record))
    return dest


def test_runs_check_passes_one_commit_and_fails_mixed_ones(run, tmp_path, capsys):
    one = tmp_path / "one"
    for seed in (1, 2):
        _copy(run, one / "default" / str(seed), commit="a" * 40)
    assert cli.main(["runs", "check", str(one)]) == 0
    assert "2 run(s) made by aaaaaaaaaaaa" in capsys.readouterr().out

    _copy(run, one / "default" / "3", commit="b" * 40)
    assert cli.main(["runs", "check", str(one)]) == 1
    out = capsys.readouterr().out
    assert "MIXED: these runs come from 2 different commits" in out and "default/3" in out


def test_runs_without_provenance_are_named_not_faked(run, tmp_path, capsys):
    _copy(run, tmp_path / "old" / "default" / "1", commit=None)
    assert cli.main(["runs", "check", str(tmp_path / "old")]) == 1
    out = capsys.readouterr().out
    assert "1 run(s) record no provenance (made before it was recorded)" in out and "default/1" in out


def test_runs_check_names_another_configuration(run, tmp_path, capsys):
    dest = _copy(run, tmp_path / "cfg" / "default" / "1", commit="a" * 40)
    record = json.loads((dest / "config.json").read_text())
    record["model"]["use_tdpp"] = False  # not what today's code builds for `default`
    (dest / "config.json").write_text(json.dumps(record))
    assert cli.main(["runs", "check", str(tmp_path / "cfg")]) == 1
    assert "model.use_tdpp: False -> True" in capsys.readouterr().out


def test_runs_check_fails_a_table_that_mixes_commits(run, tmp_path, capsys):
    folder = tmp_path / "res"
    a = _copy(run, folder / "runs" / "x" / "1", commit="a" * 40)
    b = _copy(run, folder / "runs" / "y" / "1", commit="b" * 40)
    provenance.reset_reads()
    for r in (a, b):
        read_run_table(r)
    save_table(read_run_table(a), folder / "table.csv")
    assert cli.main(["runs", "check", str(folder)]) == 1
    assert "MIXED: table.csv combines runs of 2 commits" in capsys.readouterr().out


def test_score_out_names_the_run_its_predictions_came_from(run, tiny_data, tmp_path):
    out = tmp_path / "table2_ours.csv"
    provenance.reset_reads()  # a fresh `avmaster score` process has read nothing else
    assert cli.main(["score", "--dataset", "synthetic", "--split", "test", "--root", str(tiny_data),
                     "--predictions", str(run / "predictions.json"), "--out", str(out)]) == 0
    side = json.loads((tmp_path / "table2_ours.csv.provenance.json").read_text())
    assert [(out.parent / r["run"]).resolve() for r in side["runs"]] == [run.resolve()]


def test_shipped_sidecars_list_only_shipped_runs():
    """A committed table or figure rests on committed runs: never on a scratch folder a notebook trained into
    (03's resume copy in /tmp), which would also make every `make demo` rewrite the sidecar."""
    results = Path(__file__).resolve().parents[1] / "results"
    outside = [f"{sidecar.name}: {run['run']}" for sidecar in results.rglob("*.provenance.json")
               for run in json.loads(sidecar.read_text()).get("runs", [])
               if not (sidecar.parent / run["run"]).resolve().is_relative_to(results / "runs")]
    assert not outside, outside

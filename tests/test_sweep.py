"""Grids of runs (avmaster_core.training.sweep) and the committed synthetic-benchmark evidence (results/synthetic.md)."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avmaster_core.core import config, experiments
from avmaster_core.training import engine, sweep
from avmaster_core.training.engine import DataConfig, TrainConfig
from avmaster_core.training.run_config import RUN_LOCK, lock_run_folder, read_run_table

REPO = Path(__file__).resolve().parents[1]
COMMITTED_RUNS = REPO / "results" / "runs" / "synthetic"
SEEDS = (1, 2, 3)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models
TINY = dict(dim=16, focus_heads=2, focus_ffn=16, decoder_heads=2, decoder_layers=1, num_templates=2)


@pytest.fixture
def tiny_sizes(monkeypatch):
    """A "tiny" named size so the grid trains in a second (sizes are looked up by name, like "cpu")."""
    monkeypatch.setitem(config.SIZES, "tiny", TINY)


def _tiny_train(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=1, batch_size=16, lr=1e-3, device="cpu", progress=False,
                                 checkpoint_every_steps=0), **changes})


def test_sizes_keep_every_experiment_valid_and_only_change_their_fields():
    for preset in ("official", "paper"):
        for name in experiments.EXPERIMENTS:
            full, cpu = experiments.experiment(name, preset), experiments.experiment(name, preset, size="cpu")
            changed = {f.name for f in dataclasses.fields(full) if getattr(full, f.name) != getattr(cpu, f.name)}
            assert changed <= set(config.SIZES["cpu"]), (name, preset, changed)
    assert experiments.experiment("default", "paper", "cpu").dim == 64
    assert experiments.experiment("table9/len4", size="cpu").num_templates == 4  # the experiment's change survives
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        experiments.experiment("default", size="huge")


@pytest.mark.slow
def test_run_grid_trains_each_run_once_then_skips_and_summarize_matches(tiny_data, tiny_sizes, tmp_path,
                                                                         monkeypatch):
    data = DataConfig(dataset="synthetic", root=str(tiny_data))
    experiments, seeds = ["default", "table7/wo_gpap"], [1, 2]
    calls = []
    real_train = sweep.train

    def counting_train(*args, **kwargs):
        calls.append((kwargs["experiment"], args[1].seed))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep, "train", counting_train)  # the name run_grid calls
    stale = tmp_path / "default" / "2" / RUN_LOCK  # left by a killed process: nobody holds its flock
    stale.parent.mkdir(parents=True)
    stale.write_text(f"PID 4194305 on {socket.gethostname()}")
    first = sweep.run_grid(experiments, seeds, size="tiny", train_cfg=_tiny_train(), data_cfg=data,
                           out_dir=tmp_path, progress=False)
    assert calls == [(e, s) for e in experiments for s in seeds]
    assert not list(tmp_path.rglob(RUN_LOCK))  # every lock released
    assert [r.run_dir for r in first] == [tmp_path / e / str(s) for e in experiments for s in seeds]
    saved = json.loads((tmp_path / "table7/wo_gpap/2/config.json").read_text())
    assert saved["model"]["dim"] == TINY["dim"] and saved["model"]["use_gpap"] is False
    assert saved["train"]["seed"] == 2

    calls.clear()
    again = sweep.run_grid(experiments, seeds, size="tiny", train_cfg=_tiny_train(), data_cfg=data,
                           out_dir=tmp_path, progress=False)
    assert calls == []  # everything had finished
    assert [r.test_acc for r in again] == pytest.approx([r.test_acc for r in first])
    pd.testing.assert_frame_equal(again[0].table, read_run_table(first[0].run_dir))

    summary = sweep.summarize(tmp_path, experiments, seeds)
    for name in experiments:
        tables = pd.concat([read_run_table(tmp_path / name / str(s)) for s in seeds])
        col = ("Overall", "Avg")
        assert summary.loc[(name, "mean"), col] == pytest.approx(tables[col].mean())
        assert summary.loc[(name, "std"), col] == pytest.approx(np.std(tables[col].to_numpy(), ddof=1))
        overall = [r.test_acc for r in first if r.run_dir.parent.name == Path(name).name]
        assert summary.loc[(name, "mean"), col] == pytest.approx(np.mean(overall))
    text = sweep.write_markdown(summary, labels={"default": "AV-Master"})
    assert text.count("\n") == 2 + len(experiments)
    assert "| AV-Master |" in text and " ± " in text


@pytest.mark.slow
def test_run_grid_resumes_an_interrupted_run_and_refuses_a_changed_config(tiny_data, tiny_sizes, tmp_path):
    data = DataConfig(dataset="synthetic", root=str(tiny_data))
    cfg = experiments.experiment("default", size="tiny")

    class Killed(Exception):
        pass

    def kill_in_epoch_2(info):
        if info["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):  # killed during epoch 2: last.pt holds epoch 1, no summary.json
        engine.train(cfg, _tiny_train(epochs=2), data, out_dir=tmp_path, experiment="default",
                     step_callback=kill_in_epoch_2)
    assert not (tmp_path / "default/1/summary.json").exists()
    [result] = sweep.run_grid(["default"], [1], size="tiny", train_cfg=_tiny_train(epochs=2), data_cfg=data,
                              out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]  # epoch 1 kept, epoch 2 trained
    assert (tmp_path / "default/1/summary.json").is_file()

    with pytest.raises(ValueError, match="another configuration.*model.dim"):
        sweep.run_grid(["default"], [1], size="cpu", train_cfg=_tiny_train(epochs=2), data_cfg=data,
                       out_dir=tmp_path, progress=False)
    with pytest.raises(KeyError, match="unknown experiment"):
        sweep.run_grid(["default", "table7/wo_nothing"], [1], size="tiny", train_cfg=_tiny_train(),
                       data_cfg=data, out_dir=tmp_path, progress=False)


def test_run_grid_skips_a_run_that_another_writer_holds(tiny_data, tiny_sizes, tmp_path, capsys):
    lock = lock_run_folder(tmp_path / "default" / "1")  # held like another process's (flock per open file)
    try:
        assert sweep.run_grid(["default"], [1], size="tiny", train_cfg=_tiny_train(),
                              data_cfg=DataConfig(dataset="synthetic", root=str(tiny_data)),
                              out_dir=tmp_path, progress=False) == []
        assert f"in use by PID {os.getpid()}" in capsys.readouterr().err
        assert not (tmp_path / "default" / "1" / "config.json").exists()  # nothing written into it
    finally:
        lock.release()


def test_summarize_names_the_missing_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="default/3"):
        sweep.summarize(tmp_path, ["default"], [3])


def test_sweep_command_errors_name_what_is_missing(tmp_path):
    from avmaster_core.cli import main

    with pytest.raises(SystemExit, match="unfinished runs.*default/1"):
        main(["sweep", "--experiments", "default", "--seeds", "1", "--out", str(tmp_path), "--summary-only"])
    with pytest.raises(SystemExit, match="--dataset and --root"):
        main(["sweep", "--experiments", "default", "--seeds", "1", "--out", str(tmp_path)])


# ------------------------------------------------------------------------------ the committed evidence
def _committed(name: str, runs=COMMITTED_RUNS) -> pd.Series:
    """The mean over SEEDS of a committed run's test table (skips where the runs are not in the tree)."""
    missing = [s for s in SEEDS if not (runs / name / str(s) / "test_table.csv").is_file()]
    if missing:
        pytest.skip(f"committed synthetic runs {name} seeds {missing} missing under {runs}")
    return sweep.summarize(runs, [name], SEEDS).loc[(name, "mean")]


@pytest.mark.parametrize("modality", ["Audio QA", "Visual QA", "Audio-Visual QA"])
def test_committed_av_master_beats_question_only_on_every_modality(modality):
    """Issue 4: AV-Master (official preset, cpu size) beats the question-only baseline by a wide margin."""
    ours, question_only = _committed("default"), _committed("baseline/question_only")
    assert ours[(modality, "Avg")] >= question_only[(modality, "Avg")] + 10, (ours, question_only)


def test_committed_removing_a_modality_hurts_the_questions_that_need_it():
    """Issue 4: removing audio (V+Q) must hurt audio questions. On this benchmark it does so only within the
    seed spread (results/synthetic.md explains why: whether an instrument sounds mostly follows whether it is
    visible), so the audio check has no margin; the clear effects get one: without audio the audio-visual
    questions drop, without visual (A+Q) the visual and audio-visual ones."""
    ours, visual_only, audio_only = _committed("default"), _committed("fig5/v+q"), _committed("fig5/a+q")
    assert visual_only[("Audio QA", "Avg")] < ours[("Audio QA", "Avg")], (ours, visual_only)
    assert visual_only[("Audio-Visual QA", "Avg")] <= ours[("Audio-Visual QA", "Avg")] - 3, (ours, visual_only)
    assert audio_only[("Visual QA", "Avg")] <= ours[("Visual QA", "Avg")] - 5, (ours, audio_only)
    assert audio_only[("Audio-Visual QA", "Avg")] <= ours[("Audio-Visual QA", "Avg")] - 5, (ours, audio_only)


def test_committed_removing_audio_hurts_audio_questions_on_the_decorrelated_variant():
    """Issue 4: where seeing an instrument says little about hearing it (visible_prob 0.5, silent_prob 0.6),
    removing audio (V+Q) clearly hurts the audio questions."""
    runs = COMMITTED_RUNS.parent / "synthetic_decorrelated"
    ours, visual_only = _committed("default", runs), _committed("fig5/v+q", runs)
    assert visual_only[("Audio QA", "Avg")] <= ours[("Audio QA", "Avg")] - 5, (ours, visual_only)


def test_committed_removing_vision_hurts_visual_questions_on_the_decorrelated_variant():
    """The mirror of the test above: without the visual stream (A+Q) the visual questions fall far more than
    the audio ones, so each stream carries its own questions."""
    runs = COMMITTED_RUNS.parent / "synthetic_decorrelated"
    ours, audio_only = _committed("default", runs), _committed("fig5/a+q", runs)
    visual_drop = ours[("Visual QA", "Avg")] - audio_only[("Visual QA", "Avg")]
    audio_drop = ours[("Audio QA", "Avg")] - audio_only[("Audio QA", "Avg")]
    assert visual_drop >= 10 and visual_drop > 2 * audio_drop, (ours, audio_only)


def _committed_run_configs():
    return sorted((REPO / "results" / "runs").glob("**/config.json"))


@pytest.mark.parametrize("path", _committed_run_configs(), ids=lambda p: str(p.parent.relative_to(REPO)))
def test_committed_runs_are_the_runs_their_sweep_asks_for(path):
    """Rerunning a committed grid's sweep command must skip its finished runs, not refuse them: a config field
    added after a run was saved (e.g. mask_padding) reads as its default, the behaviour before it existed."""
    saved = json.loads(path.read_text())
    name = saved["experiment"]
    preset, experiment = ("paper", name.removeprefix("paper/")) if name.startswith("paper/") else ("official", name)
    train = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["train"].items()})
    data = DataConfig(**{**saved["data"], "T": None} if experiment in experiments.EXPERIMENT_SEGMENTS else saved["data"])
    assert sweep.grid_config_differences(saved, *sweep.grid_configs(experiment, train.seed, preset, "cpu", train,
                                                                     data)) == []


def test_a_field_missing_from_a_saved_config_reads_as_its_default():
    from avmaster_core.training.run_config import config_differences

    current = {"model": dataclasses.asdict(config.ModelConfig.official()), "train": {}, "data": {}}
    saved = {"model": {k: v for k, v in current["model"].items() if k != "mask_padding"}, "train": {}, "data": {}}
    assert config_differences(saved, current) == []
    current["model"]["mask_padding"] = True
    assert config_differences(saved, current) == ["model.mask_padding: False -> True"]


def test_a_sweep_trains_one_run_set_per_configuration():
    from avmaster_core.training.sweep import shared_experiments

    runs, notes = shared_experiments(["table8/qa+a+v", "table7/wo_dpcl", "default", "table8/all", "fig7/qa=1.0"])
    assert runs == ["table7/wo_dpcl", "default"]
    assert notes[0] == "table8/qa+a+v: same configuration as table7/wo_dpcl, whose runs it shares"
    assert len(notes) == 3

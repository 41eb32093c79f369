"""The reproduction plan (avmaster_core.reproduce) and the shared-filesystem work lock (worklock.py)."""
from __future__ import annotations

import json
import math
import os
import shutil
import time

import pytest

from avmaster_core import reproduce
from avmaster_core.launchers import InOrder, LocalGPUs, _SubmititTask, execute
from avmaster_core.reproduce import (BLOCKED, FINISHED, RUNNING, EvalSpec, QuestionSpec, ReproduceSettings, RunSpec,
                                     build_plan, lock_path, spec_from_dict, spec_to_dict)
from avmaster_core.reproduce_run import run_plan
from avmaster_core.worklock import WorkLock


# ------------------------------------------------------------------------------------------------ work lock
def test_lock_is_exclusive_and_released(tmp_path):
    first, second = WorkLock(tmp_path / "x.lock"), WorkLock(tmp_path / "x.lock")
    assert first.acquire()
    assert not second.acquire()
    assert second.holder()["token"] == first.token
    first.release()
    assert not (tmp_path / "x.lock").exists()
    assert second.acquire()
    second.release()


def test_a_silent_holder_on_another_machine_goes_stale(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"owner": "node7:123", "host": "node7", "pid": 123, "token": "t", "since": 0}))
    fresh = WorkLock(path, heartbeat_s=1, stale_after_s=60)
    assert not fresh.acquire()                       # its heartbeat is recent: still alive
    old = time.time() - 120
    os.utime(path, (old, old))                       # no heartbeat for two minutes: dead
    assert fresh.acquire() and fresh.held_by_me()
    fresh.release()


def test_a_dead_pid_on_this_host_frees_the_lock_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"owner": "x", "host": socket.gethostname(), "pid": int(dead), "token": "t",
                                "since": time.time()}))
    assert WorkLock(path).acquire()


def test_a_requeued_task_takes_back_its_own_lock(tmp_path):
    before = WorkLock(tmp_path / "x.lock", owner="submitit:42_3")
    assert before.acquire()
    before._stop.set()                                # the preempted process died without releasing
    after = WorkLock(tmp_path / "x.lock", owner="submitit:42_3")
    assert after.acquire()
    assert not WorkLock(tmp_path / "x.lock", owner="submitit:42_4").acquire()
    after.release()


def test_heartbeat_keeps_the_lock_fresh(tmp_path):
    lock = WorkLock(tmp_path / "x.lock", heartbeat_s=0.1, stale_after_s=0.5)
    assert lock.acquire()
    old = time.time() - 100
    os.utime(lock.path, (old, old))
    time.sleep(0.4)
    assert lock.holder()["age_s"] < 0.5
    assert not WorkLock(tmp_path / "x.lock", heartbeat_s=0.1, stale_after_s=0.5).acquire()
    lock.release()


# ------------------------------------------------------------------------------------------------ the plan
@pytest.fixture(scope="module")
def empty_plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan")
    return build_plan(ReproduceSettings(data=str(tmp / "data"), runs=str(tmp / "runs"), results=str(tmp / "res")))


def test_full_plan_covers_every_artefact_and_blocks_on_missing_annotations(empty_plan):
    assert list(empty_plan.artefacts) == ["table2", "table3", "table4", "table5", "table6", "table7", "table8",
                                          "table9", "table10", "table11", "table12", "table13", "fig4", "fig5", "fig6",
                                          "fig7", "fig8"]
    assert list(empty_plan.artefacts) == list(reproduce.artefacts())
    assert all(i.status == BLOCKED for i in empty_plan.items.values())
    default = empty_plan.items["train default seed 1"]
    assert "avqa-train.json" in default.needs[0] and "avmaster data fetch music_avqa" in default.needs[0]
    assert set(default.artefacts) >= {"table2", "table6", "table7", "table12", "fig4", "fig6", "fig8"}
    # Table XI: every AV-Master row, each with the features item of its encoders (issue 23)
    table11 = [k for _, keys in empty_plan.artefacts["table11"].cells for k in keys]
    assert len(table11) == 15 and "train table11/clip+clap seed 1" in table11
    clap = empty_plan.items["video features music_avqa (clip + clap)"]
    assert clap.status == BLOCKED and any("no audio encoder 'clap' registered" in n for n in clap.needs)
    assert any("--visual-encoder clip --audio-encoder clap" in n for n in clap.needs)
    avqa = empty_plan.items["train avqa/choices on avqa/standard seed 1"]   # Table V: the multiple-choice model
    assert avqa.artefacts == ["table5"] and "train_qa.json" in avqa.needs[0]
    assert "train default on avqa/standard seed 1" not in empty_plan.items


def test_full_plan_items(empty_plan):
    kinds = [i.kind for i in empty_plan.items.values()]
    trains = {i.spec.experiment for i in empty_plan.items.values() if i.kind == "train"}
    # experiments identical to the full model reuse its run: no table8/all, table9/len8, fig7/*=1.0 run
    assert "table8/all" not in trains and "table9/len8" not in trains and "fig7/qa=1.0" not in trains
    assert {"table7/wo_tdpp", "fig4/T12", "fig5/a+q", "fig7/c=1.6"} <= trains
    # inference-only rows re-score the full model instead of training
    assert not any(e.startswith(("table12", "table13")) for e in trains)
    evaluations = [i.spec for i in empty_plan.items.values() if i.kind == "evaluate"]
    assert {e.label for e in evaluations} >= {"table12/wo_ape", "table13/mul", "table3/music_avqa_r-test",
                                              "table4/balance-trained-music_avqa_v2-test_bias"}
    assert all(e.run.experiment == "default" for e in evaluations)
    assert kinds.count("questions") == 4
    assert "table8/qa+a+v" not in trains and "table7/wo_dpcl" in trains  # one configuration, one run set


def test_plan_items_are_unique_and_counted_by_hand(tmp_path):
    plan = build_plan(ReproduceSettings(data=str(tmp_path / "d"), runs=str(tmp_path / "r"), results=str(tmp_path / "o"),
                                        seeds=(1, 2)), ["fig7", "table7", "table8"])
    # by hand: Fig. 7 = 4 weights x 4 values other than 1.0 + the full model = 17 runs; Table VII adds its 5
    # ablations; Table VIII adds qa, qa+c, qa+c+a, qa+c+v (qa+a+v is table7/wo_dpcl, all is default): 26 runs
    # x 2 seeds + one question-features item
    trains = [i for i in plan.items.values() if i.kind == "train"]
    assert len(trains) == 26 * 2 and len(plan.items) == 53
    assert len({(i.spec.experiment, i.spec.seed) for i in trains}) == len(trains)
    fig7 = plan.artefact_items("fig7")
    assert len(fig7) == 17 * 2 == len({i.key for i in fig7})
    assert all(len(i.artefacts) == len(set(i.artefacts)) for i in plan.items.values())  # default: fig7 once
    assert plan.items["train default seed 1"].artefacts.count("fig7") == 1


def test_estimate_uses_the_question_counts_and_the_stated_speed(empty_plan):
    item = empty_plan.items["train default seed 1"]
    speed = empty_plan.speed
    assert "H200" in speed.source and speed.train == 151
    # without annotation files the counts are the paper's Table I: 31,904 / 4,568 / 9,129; at the reference shape
    # (T = 60, batch 64) a step is 64/151 s and an inference batch of 64 is 64/631 s
    steps, batches = 30 * math.ceil(31904 / 64), 30 * math.ceil(4568 / 64) + math.ceil(9129 / 64)
    expected = (steps * 64 / 151 + batches * 64 / 631) / 3600
    assert item.hours == pytest.approx(expected)
    assert "Time estimates from the released code on one H200" in empty_plan.render(details=False)


def test_only_and_given_speed(tmp_path):
    plan = build_plan(ReproduceSettings(data=str(tmp_path), runs=str(tmp_path / "r"), seeds=(1,), train_speed=1510),
                      only=["table_7"])
    assert list(plan.artefacts) == ["table7"] and plan.speed.source.startswith("given")
    assert len([i for i in plan.items.values() if i.kind == "train"]) == 6
    with pytest.raises(KeyError, match="paper-only"):
        build_plan(ReproduceSettings(), only=["table1"])


def test_specs_survive_json(tmp_path):
    run = RunSpec("music_avqa_v2", "bias", "default", "official", 2)
    for spec in (run, EvalSpec(run, "music_avqa_v2", "test_balance", "x", (("combine", "mul"),)),
                 QuestionSpec("music_avqa_r", ("test",))):
        assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec
    settings = ReproduceSettings(data=str(tmp_path), stores=(("music_avqa", "/x.h5"),))
    assert ReproduceSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert settings.store("music_avqa_r") == settings.store("music_avqa")   # same videos, same store
    assert run.folder(settings).parts[-4:] == ("music_avqa_v2", "bias", "default", "2")


def test_a_held_item_is_running_and_skipped(tmp_path):
    settings = ReproduceSettings(data=str(tmp_path), runs=str(tmp_path / "runs"), seeds=(1,))
    spec = RunSpec("music_avqa", "standard", "default", "official", 1)
    other = WorkLock(lock_path(spec, settings), owner="another machine")
    assert other.acquire()
    try:
        plan = build_plan(settings, only=["table2"])
        assert plan.items[spec.key].status == RUNNING and "another machine" in plan.items[spec.key].result
        outcome = execute(spec_to_dict(spec), settings.to_dict())
        assert outcome["status"] == "skipped" and "another machine" in outcome["message"]
    finally:
        other.release()


def test_finished_run_is_read_back(tmp_path):
    settings = ReproduceSettings(data=str(tmp_path), runs=str(tmp_path / "runs"), seeds=(1,))
    spec = RunSpec("music_avqa", "standard", "default", "official", 1)
    folder = spec.folder(settings)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"test_acc": 77.5}))
    model_cfg, train_cfg, data_cfg = reproduce.run_configs(spec, settings)
    import dataclasses

    config = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
              "data": dataclasses.asdict(data_cfg)}
    (folder / "config.json").write_text(json.dumps(config, default=list))
    (folder / "metrics.jsonl").write_text(json.dumps({"samples_per_s": 1000.0, "eval_seconds": 4568 / 500}) + "\n")
    plan = build_plan(settings, only=["table2", "table12"])
    item = plan.items[spec.key]
    assert item.status == FINISHED and item.result == "test 77.50 %" and item.hours == 0
    import pandas as pd

    from avmaster_core.reproduce_report import ours_for
    from avmaster_core.scoring import TABLE2_COLUMNS

    pd.DataFrame([[50.0] * (len(TABLE2_COLUMNS) - 1) + [77.5]], index=pd.Index(["ours"], name="method"),
                 columns=pd.MultiIndex.from_tuples(TABLE2_COLUMNS)).to_csv(folder / "test_table.csv")
    ours = ours_for("table2", data=tmp_path, runs=tmp_path / "runs", results=tmp_path / "res", seeds=(1,))
    assert ours.loc["AV-Master", ("Overall", "Avg")] == 77.5 and ours.attrs["seeds"] == {"AV-Master": [1]}
    # Table VI: the same run's overall average and the size of the model trained (issue 23)
    table6 = ours_for("table6", data=tmp_path, runs=tmp_path / "runs", results=tmp_path / "res", seeds=(1,))
    assert table6.loc["AV-Master", "ACC"] == 77.5 and table6.loc["AV-Master", "Params (millions)"] == 50.646913
    # the estimate now follows the speed measured on this plan's finished run (MUSIC-AVQA val: 4,568 questions)
    assert plan.speed.train == 1000 and plan.speed.infer == pytest.approx(500) and "measured" in plan.speed.source
    evaluation = plan.items["evaluate table12/wo_ape seed 1"]
    assert evaluation.hours == pytest.approx(math.ceil(9129 / 64) * 64 / 500 / 3600)  # batches of 64 at T = 60
    config["model"]["dim"] = 64
    (folder / "config.json").write_text(json.dumps(config, default=list))
    item = build_plan(settings, only=["table2"]).items[spec.key]
    assert item.status == reproduce.CONFLICT and "model.dim" in item.needs[0]
    with pytest.raises(ValueError, match="another configuration"):
        run_plan(settings, ["table2"], echo=lambda *a, **k: None)


def test_dry_run_prints_what_would_be_launched(tmp_path):
    lines = []
    settings = ReproduceSettings(data=str(tmp_path), runs=str(tmp_path / "runs"), seeds=(1,))
    run_plan(settings, ["table12"], LocalGPUs([0, 1]), dry_run=True, echo=lambda *a, **k: lines.append(a[0]))
    text = "\n".join(lines)
    assert "Would launch with one item per GPU on GPUs 0,1" in text and "19_table12_13" not in text
    assert not (tmp_path / "runs").exists()


def test_launcher_commands():
    settings = ReproduceSettings()
    run = RunSpec("music_avqa", "standard", "default", "official", 1)
    command = LocalGPUs([0, 1, 2, 3], ddp=True).command(run, settings, "o.json")
    assert "torch.distributed.run" in command and "--nproc_per_node=4" in command
    assert LocalGPUs([0]).command(run, settings, "o.json")[1:3] == ["-m", "avmaster_core.launchers"]
    assert InOrder().describe(run, settings).startswith(f"in this process: {run.key} (train on train")


def test_submitit_task_requeues_itself_on_preemption():
    task = _SubmititTask({"seeds": [1]})
    spec = spec_to_dict(RunSpec("music_avqa", "standard", "default", "official", 1))
    again = task.checkpoint(spec)
    assert isinstance(again.function, _SubmititTask) and again.args == (spec,)


def test_run_skips_items_another_worker_holds(tmp_path):
    settings = ReproduceSettings(data=str(tmp_path), runs=str(tmp_path / "runs"), results=str(tmp_path / "res"),
                                 seeds=(1,))
    spec = RunSpec("music_avqa", "standard", "default", "official", 1)
    other = WorkLock(lock_path(spec, settings), owner="node7 (another machine)")
    assert other.acquire()
    lines = []
    try:
        run_plan(settings, ["table2"], echo=lambda *a, **k: lines.append(a[0]))
    finally:
        other.release()
    text = "\n".join(lines)
    assert f"skipped {spec.key}: held by node7 (another machine)" in text, text
    assert "finished: none" in text


def test_protocols_and_dataset_tables_come_from_the_dataset_registry():
    assert [(p.name, p.train, p.val, p.test) for p in reproduce.protocols("music_avqa_v2")] == [
        ("balance", "train_balance", "val_balance", "test_balance"), ("bias", "train_bias", "val_bias", "test_bias")]
    avqa = reproduce.protocol("avqa", "standard")
    assert avqa.val == "val" and avqa.test == "test"       # AVQA selects on a held-out part of train_qa.json
    assert reproduce.protocols("music_avqa_r") == []       # test only
    table4 = {label: (p.name, split) for label, p, _, split in reproduce.dataset_cells("table4")}
    assert table4 == {("Bias", "Bias", "AV-Master"): ("bias", "test_bias"),
                      ("Bias", "Balance", "AV-Master"): ("balance", "test_bias"),
                      ("Balance", "Bias", "AV-Master"): ("bias", "test_balance"),
                      ("Balance", "Balance", "AV-Master"): ("balance", "test_balance")}
    [(label, trained, dataset, split)] = reproduce.dataset_cells("table3")
    assert (label, trained.dataset, dataset, split) == ("AV-Master", "music_avqa", "music_avqa_r", "test")
    assert reproduce.not_yet("table5") is None and reproduce.not_yet("table4") is None
    [(label, trained, dataset, split)] = reproduce.dataset_cells("table5")
    assert (label, trained.val, trained.test) == ("AV-Master", "val", "test")


def test_table5_waits_when_the_multiple_choice_model_scores_no_candidates(monkeypatch):
    from avmaster_core import experiments

    assert experiments.full_model_for("avqa") == "avqa/choices" and experiments.full_model_for("music_avqa_v2") == \
        experiments.FULL_MODEL
    monkeypatch.setattr(experiments, "MULTIPLE_CHOICE_MODEL", "avqa/position_only")
    assert "avqa/position_only has no choice_scorer" in reproduce.not_yet("table5")


def _avqa_folder(root, videos=12, per_video=3):
    """Hand-written AVQA annotation files and a store with random video features (no question features)."""
    import numpy as np

    from avmaster_core.store import FeatureStore

    root.mkdir(parents=True)
    answers = ["dog", "cat", "car", "bird", "piano", "rain"]
    def record(i, video):
        return {"id": i, "video_name": video, "video_id": i, "question_text": f"What makes sound {i % 5}?",
                "multi_choice": [answers[(i + k) % 6] for k in range(4)], "answer": i % 4,
                "question_relation": "Both", "question_type": "Which"}
    names = [f"clip{v:04d}_000010" for v in range(videos)]   # clip 8 falls in the held-out validation part
    train = [record(i, names[i % videos]) for i in range(videos * per_video)]
    test = [record(1000 + i, f"test{i % 4}_000000") for i in range(8)]
    (root / "train_qa.json").write_text(json.dumps(train))
    (root / "val_qa.json").write_text(json.dumps(test))
    rng = np.random.default_rng(0)
    with FeatureStore(root / "features.h5", "a") as store:
        for video in names + [f"test{i}_000000" for i in range(4)]:
            store.put("audio", video, rng.standard_normal((4, 128), dtype=np.float32))
            store.put("visual", video, rng.standard_normal((4, 768), dtype=np.float32))


@pytest.mark.usefixtures("one_thread")
def test_reproduce_trains_the_multiple_choice_model_for_table5(tmp_path):
    """Table V end to end: the plan extracts question and candidate features, trains avqa/choices (selected on
    the held-out part of train_qa.json, scored on val_qa.json), and our table reads its one-column test table."""
    from avmaster_core.reproduce_report import ours_table
    from avmaster_core.store import FeatureStore

    _avqa_folder(tmp_path / "data" / "avqa")
    settings = ReproduceSettings(data=str(tmp_path / "data"), runs=str(tmp_path / "runs"),
                                 results=str(tmp_path / "res"), seeds=(1,), size="cpu", epochs=1, lr=1e-3,
                                 batch_size=8, device="cpu", encoders="tiny")
    before = build_plan(settings, ["table5"])
    run = before.items["train avqa/choices on avqa/standard seed 1"]
    assert run.status == reproduce.WAITING and "question features: 44 new texts" in run.needs[0], run.needs
    plan = run_plan(settings, ["table5"], notebook_out=str(tmp_path / "nb"), echo=lambda *a, **k: None)
    assert plan.complete("table5")
    with FeatureStore(tmp_path / "data" / "avqa" / "features.h5") as store:
        assert len(store.keys("choices")) == 44 and store.get("choices", 1000).shape == (4, store.widths["text_dim"])
    folder = tmp_path / "runs" / "avqa" / "standard" / "avqa" / "choices" / "1"
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["choice_scorer"] == "dot" and config["train"]["eval_split"] == "val"
    ours = ours_table(plan, "table5")
    assert list(ours.columns) == ["Total Accuracy (%)"] and 0 <= ours.loc["AV-Master", "Total Accuracy (%)"] <= 100
    from avmaster_core import paper
    assert paper.ours_table("table5", tmp_path / "runs" / "avqa" / "standard").equals(ours)
    assert (tmp_path / "res" / "reproduce" / "table5.csv").is_file()
    import nbformat                                         # notebook 13 ran in full mode on these runs

    executed = nbformat.read(str(tmp_path / "nb" / "13_table5_avqa.ipynb"), as_version=4)
    record = next(c for c in executed.cells if "record" in c.metadata.get("tags", []))
    assert f"'ours': {round(float(ours.iloc[0, 0]), 2)}" in record.outputs[0]["data"]["text/plain"]


def test_slurm_parameters_are_submitits_and_slurm_must_be_there(tmp_path):
    from submitit.slurm.slurm import SlurmExecutor

    from avmaster_core.launchers import Submitit

    launcher = Submitit(tmp_path / "submitit", partition="gpu", account="lab")
    slurm = {k.removeprefix("slurm_") for k in launcher.parameters if k.startswith("slurm_")}
    assert slurm <= SlurmExecutor._valid_parameters()       # submitit would refuse an unknown one
    if shutil.which("srun") is None:
        with pytest.raises(RuntimeError, match="no SLURM on this machine"):
            launcher.executor()

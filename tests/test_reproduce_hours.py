"""The reproduce plan's hours against a hand computation: step time scaled with T and batch from measured
figures (the released code's H200 step at batch 32 and 64, T = 60; operator calls per step counted at each T),
AVQA's training questions only its 90 %, the paper preset at batch 32."""
from __future__ import annotations

import math

import pytest

from avmaster_core.training.benchmark import OPERATOR_CALLS, operator_calls
from avmaster_core.reproduction.plan import ReproduceSettings, build_plan

TRAIN_B64, TRAIN_B32, INFER_B64 = 64 / 151, 0.414 / 0.424 * 64 / 151, 64 / 631   # seconds at T = 60
CALLS = {"train": lambda t: 6652 + 588 * t, "infer": lambda t: 1407 + 209 * t}   # OPERATOR_CALLS, by hand


def _hours(n_train, n_val, n_test, T, step_at_60, epochs=30):
    steps_per_epoch = math.ceil(n_train / (64 if step_at_60 != TRAIN_B32 else 32))
    step = step_at_60 * CALLS["train"](T) / CALLS["train"](60)
    batch = INFER_B64 * CALLS["infer"](T) / CALLS["infer"](60)
    inference_batches = epochs * math.ceil(n_val / 64) + math.ceil(n_test / 64)
    return (epochs * steps_per_epoch * step + inference_batches * batch) / 3600


def _plan(tmp_path, preset, only):
    return build_plan(ReproduceSettings(data=str(tmp_path / "data"), runs=str(tmp_path / "runs"),
                                        results=str(tmp_path / "results"), preset=preset), only=[only])


def test_table5_avqa_hours_by_hand(tmp_path):
    # AVQA (Table I: 40,425 train_qa.json questions, 16,910 val_qa.json): 90 % trains, 10 % selects; T = 10
    n_train, n_val = round(40425 * 0.9), round(40425 * 0.1)
    plan = _plan(tmp_path, "official", "table5")
    run = plan.items["train avqa/choices on avqa/standard seed 1"]
    assert run.questions == n_train == 36382 and run.shape == (10, 64)
    assert run.hours == pytest.approx(_hours(n_train, n_val, 16910, 10, TRAIN_B64), rel=1e-9)
    assert run.hours == pytest.approx(0.6161, abs=1e-4)  # 17,070 steps x 0.1267 s + 2,185 batches x 0.0254 s
    # the old arithmetic: all 40,425 questions at the T = 60 speed, 151 samples/s: 2.24 h a seed
    assert run.hours < 0.3 * (30 * 40425 / 151) / 3600


def test_table2_paper_preset_hours_by_hand(tmp_path):
    # MUSIC-AVQA (31,904 / 4,568 / 9,129), T = 60; the paper preset trains at batch 32: twice the steps, each
    # 414 ms instead of 424 ms
    plan = _plan(tmp_path, "paper", "table2")
    run = plan.items["train paper/default seed 1"]
    assert run.shape == (60, 32)
    assert run.hours == pytest.approx(_hours(31904, 4568, 9129, 60, TRAIN_B32), rel=1e-9)
    official = _plan(tmp_path, "official", "table2").items["train default seed 1"]
    assert official.hours == pytest.approx(_hours(31904, 4568, 9129, 60, TRAIN_B64), rel=1e-9)
    assert 1.9 < run.hours / official.hours < 2.0


@pytest.mark.slow  # about 25 s of CPU: four profiled steps at T = 10 and 11
@pytest.mark.parametrize("kind", ["train", "infer"])
def test_operator_calls_are_the_counted_line(kind, one_thread):  # counted with one thread (two add 4 calls)
    a, b = OPERATOR_CALLS[kind]
    assert [operator_calls(t, kind) for t in (10, 11)] == [a + b * 10, a + b * 11]

"""The training engine: run folders, the official recipe, determinism, model selection, evaluation.

The tiny synthetic benchmark and the narrow AV-Master are shared fixtures (conftest.py).
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest
import torch

from avmaster_core.training import engine
from avmaster_core.core.config import ModelConfig
from avmaster_core.core.model import AVMaster
from avmaster_core.training.engine import DataConfig, TrainConfig
from avmaster_core.data.scoring import read_predictions, score
from avmaster_core.core.store import MissingFeatureError
from avmaster_core.data.synthetic import generate_synthetic
from test_precision import needs_bf16_cpu
from conftest import metrics_without_timing, read_metrics, state_dicts_equal, tiny_model, tiny_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = engine.train(tiny_model(), tiny_train(epochs=3, lr_step=1, lr_gamma=0.5),
                          DataConfig(dataset="synthetic", root=str(tiny_data)), out_dir=out, experiment="tiny")
    return result


def test_defaults_are_the_official_recipe():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.lr_step, cfg.lr_gamma, cfg.epochs, cfg.batch_size, cfg.seed) == (1e-4, 8, 0.1, 30, 64, 1)
    assert (cfg.precision, cfg.compile, cfg.weight_decay, cfg.eval_split, cfg.test_split) == ("fp32", False, 0.0, "val", "test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_run_folder_holds_every_artifact(finished_run, tiny_data):
    run = finished_run.run_dir
    assert run.parts[-2:] == ("tiny", "1")
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "predictions.json", "test_table.csv",
                 "summary.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp*")), "temporary files left behind"

    config = json.loads((run / "config.json").read_text())
    assert config["model"] == dataclasses.asdict(tiny_model())
    assert config["train"]["epochs"] == 3 and config["data"]["dataset"] == "synthetic"

    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        for key in ("lr", "train_loss_qa", "train_loss_a", "train_loss_v", "train_loss_c", "train_loss_total",
                    "train_acc", "val_acc", "samples_per_s", "train_seconds"):
            assert isinstance(m[key], float), key
        assert m["train_loss_total"] == pytest.approx(
            m["train_loss_qa"] + m["train_loss_a"] + m["train_loss_v"] + m["train_loss_c"], rel=1e-5)
        assert 0 <= m["val_acc"] <= 100 and m["samples_per_s"] > 0
    # StepLR stepped after each epoch: the epoch-e LR is lr * gamma^((e-1) // step)
    assert [m["lr"] for m in metrics] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert metrics_without_timing(finished_run.history) == metrics_without_timing(metrics)

    # final table = scoring.score of the saved predictions on the test records
    from avmaster_core.data.annotations import load_annotations

    records = load_annotations("synthetic", "test", tiny_data)
    predictions = read_predictions(run / "predictions.json")
    assert set(predictions) == set(records["question_id"])
    table = pd.read_csv(run / "test_table.csv", header=[0, 1], index_col=0)
    expected = score(records, predictions)
    assert table.to_numpy() == pytest.approx(expected.to_numpy(), nan_ok=True)
    assert finished_run.test_acc == pytest.approx(float(expected[("Overall", "Avg")].iloc[0]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] == pytest.approx(finished_run.test_acc)


def test_best_checkpoint_is_the_last_epoch_reaching_the_best_validation(finished_run):
    vals = [m["val_acc"] for m in finished_run.history]
    expected_epoch = max(e for e, v in enumerate(vals, start=1) if v == max(vals))  # "current >= best"
    assert finished_run.best_epoch == expected_epoch
    assert finished_run.best_val_acc == max(vals)
    best = torch.load(finished_run.best_checkpoint, weights_only=True)
    assert best["epoch"] == expected_epoch and best["model_config"] == dataclasses.asdict(tiny_model())


def test_checkpoint_reloads_and_reproduces_the_test_predictions(finished_run, tiny_data):
    model, cfg = engine.load_checkpoint(finished_run.best_checkpoint)
    assert cfg == tiny_model() and not model.training
    table, predictions = engine.evaluate(finished_run.best_checkpoint, "synthetic", "test", tiny_data,
                                         device="cpu", progress=False)
    assert predictions.to_dict() == read_predictions(finished_run.predictions_path)
    assert float(table[("Overall", "Avg")].iloc[0]) == pytest.approx(finished_run.test_acc)

    # inference-only variants (Tables XII/XIII) evaluate the same weights with another combination
    _, changed = engine.load_checkpoint(finished_run.best_checkpoint, changes={"inference_use_a": False})
    assert changed == dataclasses.replace(tiny_model(), inference_use_a=False)
    table_wo_a, _ = engine.evaluate(finished_run.best_checkpoint, "synthetic", "test", tiny_data, device="cpu",
                                    changes={"inference_use_a": False}, progress=False)
    assert table_wo_a.shape == table.shape
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        engine.load_checkpoint(finished_run.best_checkpoint, changes={"no_such_field": 1})


@pytest.mark.slow
def test_same_seed_gives_identical_runs_and_another_seed_does_not(tiny_data, tmp_path):
    data = DataConfig(dataset="synthetic", root=str(tiny_data))
    runs = [engine.train(tiny_model(), tiny_train(seed=seed, epochs=1, test_split=None), data,
                         run_dir=tmp_path / name) for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    a, b, c = (torch.load(r.last_checkpoint, weights_only=True) for r in runs)
    assert metrics_without_timing(runs[0].history) == metrics_without_timing(runs[1].history)
    assert state_dicts_equal(a["model"], b["model"])
    assert not state_dicts_equal(a["model"], c["model"])


def test_existing_run_is_never_overwritten(finished_run, tiny_data):
    with pytest.raises(FileExistsError, match="--resume"):
        engine.train(tiny_model(), tiny_train(epochs=3, lr_step=1, lr_gamma=0.5),
                     DataConfig(dataset="synthetic", root=str(tiny_data)), run_dir=finished_run.run_dir)


def test_resume_refuses_a_changed_configuration(finished_run, tiny_data):
    with pytest.raises(ValueError, match="train.lr"):
        engine.train(tiny_model(), tiny_train(epochs=3, lr_step=1, lr_gamma=0.5, lr=5e-3),
                     DataConfig(dataset="synthetic", root=str(tiny_data)), run_dir=finished_run.run_dir,
                     resume=True)


def test_missing_features_raise_a_clear_error(tiny_data, tmp_path):
    from avmaster_core.core.store import FeatureStore

    root = tmp_path / "broken"
    shutil.copytree(tiny_data, root)
    with FeatureStore(root / "features.h5", "a") as store:
        victim = sorted(store.keys("visual"))[0]
        del store.file[f"visual/{victim}"]
    with pytest.raises(MissingFeatureError, match=victim):
        engine.train(tiny_model(), tiny_train(epochs=1), DataConfig(dataset="synthetic", root=str(root)),
                     run_dir=tmp_path / "run")


@needs_bf16_cpu
def test_bf16_autocast_trains_on_cpu(tiny_data, tmp_path):
    result = engine.train(tiny_model(), tiny_train(epochs=1, precision="bf16", test_split=None),
                          DataConfig(dataset="synthetic", root=str(tiny_data)), run_dir=tmp_path / "amp")
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss_total"]))


@pytest.mark.slow
def test_dataloader_path_equals_preloaded_bank_path(tiny_data, tmp_path):
    """Lazy HDF5 reads through a DataLoader give the same run as batches cut from the preloaded bank."""
    runs = [engine.train(tiny_model(), tiny_train(epochs=1, test_split=None),
                         DataConfig(dataset="synthetic", root=str(tiny_data), preload=preload),
                         run_dir=tmp_path / str(preload)) for preload in (True, False)]
    assert metrics_without_timing(runs[0].history) == metrics_without_timing(runs[1].history)
    a, b = (torch.load(r.last_checkpoint, weights_only=True)["model"] for r in runs)
    assert state_dicts_equal(a, b)


def test_step_callback_sees_every_step(tiny_data, tmp_path):
    seen = []
    engine.train(tiny_model(), tiny_train(epochs=2, test_split=None, eval_split=None),
                 DataConfig(dataset="synthetic", root=str(tiny_data)), run_dir=tmp_path / "cb",
                 step_callback=lambda info: seen.append((info["epoch"], info["step"], info["global_step"])))
    from avmaster_core.data.annotations import load_annotations

    steps = -(-len(load_annotations("synthetic", "train", tiny_data)) // 16)
    assert seen == [(e, s, (e - 1) * steps + s) for e in (1, 2) for s in range(1, steps + 1)]


@pytest.mark.slow
def test_compile_option_trains_and_saves_plain_weights(tiny_data, tmp_path, monkeypatch):
    """compile=True goes through torch.compile (here with the eager backend: no C++ build in the test) and the
    checkpoint keeps the plain module's parameter names."""
    calls = []
    real_compile = torch.compile

    def eager_compile(module, **kwargs):
        calls.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    data = DataConfig(dataset="synthetic", root=str(tiny_data), limit=16)  # one batch per split: one graph each
    compiled = engine.train(tiny_model(), tiny_train(epochs=1, compile=True, test_split=None), data,
                            run_dir=tmp_path / "compiled")
    assert len(calls) == 1 and isinstance(calls[0], AVMaster)  # the model (with its rewrites applied), once
    state = torch.load(compiled.last_checkpoint, weights_only=True)["model"]
    assert not any(k.startswith(("_orig_mod", "module.")) for k in state)
    model, _ = engine.load_checkpoint(compiled.last_checkpoint)  # loads strictly into a plain model
    assert model is not None


@pytest.mark.slow
def test_short_cpu_training_clearly_beats_question_only(tmp_path_factory):
    """6 epochs of a narrow AV-Master on a 300-video synthetic benchmark (~40 s on one thread).

    Measured (torch 2.14.1, one CPU thread): test 51.3 % vs the question-only ceiling 36.3 %; val 39.3 % after
    epoch 1 -> 50.7 % after epoch 6. Dropout 0 lets the official design's identical templates collapse (fast).
    The bound (ceiling + 8 points) leaves room for other CPUs' float rounding.
    """
    from avmaster_core.data.synthetic import question_only_ceiling

    root = tmp_path_factory.mktemp("synthetic_300")
    generate_synthetic(root, num_videos=300, questions_per_video=10, T=10)
    ceiling = 100 * question_only_ceiling(root)["overall"]
    model = ModelConfig.official(dim=64, focus_heads=4, focus_ffn=128, decoder_heads=4, decoder_layers=1,
                                 dropout=0.0)
    result = engine.train(model, TrainConfig(epochs=6, batch_size=32, lr=1e-3, progress=False,
                                             checkpoint_every_steps=0),
                          DataConfig(dataset="synthetic", root=str(root)), run_dir=tmp_path_factory.mktemp("run"))
    first, last = result.history[0], result.history[-1]
    assert last["train_loss_total"] < first["train_loss_total"]
    assert result.best_val_acc > first["val_acc"]
    assert result.test_acc > ceiling + 8, (result.test_acc, ceiling)

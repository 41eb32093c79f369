"""avmaster_core.core.checkpoint without training: RNG state round trips, what best.pt / last.pt hold, and the
errors of read_checkpoint. (Resuming a killed run end to end: tests/test_resume.py.)"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from avmaster_core.core import checkpoint
from avmaster_core.core.config import SIZES, ModelConfig
from avmaster_core.core.model import build_model


def _draws() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), float(np.random.standard_normal()),
            random.random(), random.gauss(0, 1))


def test_seed_everything_seeds_torch_numpy_and_python():
    checkpoint.seed_everything(7)
    first = _draws()
    checkpoint.seed_everything(7)
    assert _draws() == first
    checkpoint.seed_everything(8)
    other = _draws()
    assert all(a != b for a, b in zip(first, other))  # every generator follows the seed


def test_seed_everything_reduces_large_seeds_for_numpy():
    checkpoint.seed_everything(2**32 + 5)
    numpy_draw = np.random.rand()
    np.random.seed(5)
    assert numpy_draw == np.random.rand()


def test_rng_state_restores_every_generator_mid_stream(tmp_path):
    checkpoint.seed_everything(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    random.gauss(0, 1)           # and in Python's
    state = checkpoint.rng_state()
    expected = _draws()
    torch.save(state, tmp_path / "rng.pt")  # the state survives a weights_only round trip
    _draws()
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected
    assert state["cuda"] == [] or torch.cuda.is_available()


class _FakeCuda:
    """torch.cuda on a machine with two GPUs, as far as rng_state / set_rng_state can tell."""

    def __init__(self, available=True):
        self.available, self.states, self.restored = available, [torch.tensor([1, 2], dtype=torch.uint8),
                                                                   torch.tensor([3], dtype=torch.uint8)], None

    def is_available(self):
        return self.available

    def get_rng_state_all(self):
        return list(self.states)

    def set_rng_state_all(self, states):
        self.restored = states


def test_rng_state_carries_the_gpu_generators(monkeypatch):
    """A resume on a GPU machine restores every GPU's generator; a CPU-only state restores on any machine."""
    fake = _FakeCuda()
    monkeypatch.setattr(torch, "cuda", fake)
    state = checkpoint.rng_state()
    assert state["cuda"] == fake.states
    checkpoint.set_rng_state(state)
    assert fake.restored == fake.states
    fake.restored = None
    checkpoint.set_rng_state({**state, "cuda": []})  # saved without GPUs: the GPUs' generators are left alone
    assert fake.restored is None
    checkpoint.set_rng_state({**{k: v for k, v in state.items() if k != "cuda"}})  # older files: no "cuda" key
    assert fake.restored is None
    cpu_only = _FakeCuda(available=False)
    monkeypatch.setattr(torch, "cuda", cpu_only)
    assert checkpoint.rng_state()["cuda"] == []
    checkpoint.set_rng_state(state)  # saved on a GPU machine, resumed on a CPU one: no GPU call
    assert cpu_only.restored is None


def _tiny():
    return build_model(ModelConfig.official(**SIZES["cpu"]))


def _record(cfg: ModelConfig) -> dict:
    return {"model": cfg.to_dict(), "train": {"lr": 1e-3}, "data": {"dataset": "synthetic"}, "experiment": "default"}


def test_best_checkpoint_holds_configs_epoch_accuracy_and_weights(tmp_path):
    model = _tiny()
    record = _record(ModelConfig.official(**SIZES["cpu"]))
    checkpoint.save_best(tmp_path / "best.pt", model, record, epoch=3, val_acc=61.5)
    saved = checkpoint.read_checkpoint(tmp_path / "best.pt")
    assert {k: saved[k] for k in ("format", "experiment", "epoch", "val_acc")} == {
        "format": checkpoint.CHECKPOINT_FORMAT, "experiment": "default", "epoch": 3, "val_acc": 61.5}
    assert (saved["model_config"], saved["train_config"], saved["data_config"]) == (
        record["model"], record["train"], record["data"])
    assert saved["model"].keys() == model.state_dict().keys()
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())


def test_last_checkpoint_holds_everything_a_resume_needs(tmp_path):
    model = _tiny()
    record = _record(ModelConfig.official(**SIZES["cpu"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=8, gamma=0.1)
    rngs = [checkpoint.rng_state()]
    checkpoint.save_last(tmp_path / "last.pt", model, optimizer, scheduler, record, rngs,
                         {"next_epoch": 2, "next_step": 5, "best_val_acc": 50.0})
    saved = checkpoint.read_checkpoint(tmp_path / "last.pt")
    assert saved["config"] == record and saved["model_config"] == record["model"]
    assert saved["format"] == checkpoint.CHECKPOINT_FORMAT
    assert (saved["next_epoch"], saved["next_step"], saved["best_val_acc"]) == (2, 5, 50.0)
    assert saved["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert saved["scheduler"]["step_size"] == 8
    assert torch.equal(saved["rng"][0]["torch"], rngs[0]["torch"])
    assert saved["model"].keys() == model.state_dict().keys()


def test_load_checkpoint_rebuilds_the_model_in_eval_mode_with_inference_changes(tmp_path):
    cfg = ModelConfig.official(**SIZES["cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    checkpoint.save_best(tmp_path / "best.pt", model, _record(cfg), epoch=1, val_acc=None)
    loaded, loaded_cfg = checkpoint.load_checkpoint(tmp_path / "best.pt")
    assert loaded_cfg == cfg and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    _, changed = checkpoint.load_checkpoint(tmp_path / "best.pt", changes={"inference_use_a": False})
    assert changed.inference_use_a is False and cfg.inference_use_a is True


def test_read_checkpoint_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; train a model"):
        checkpoint.read_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"model": {}}, tmp_path / "no_config.pt")
    torch.save({"model_config": {}}, tmp_path / "no_model.pt")
    for name in ("list.pt", "no_config.pt", "no_model.pt"):
        with pytest.raises(ValueError, match="is not an avmaster checkpoint") as raised:
            checkpoint.read_checkpoint(tmp_path / name)
        assert str(raised.value).endswith("(no model_config/model); an official AV-Master state dict loads with "
                                          "avmaster_core.from_official_state_dict")


def test_unreadable_checkpoint_names_the_error_and_the_remedy(tmp_path):
    advice = "it may be truncated or not a checkpoint: use a best.pt/last.pt written by `avmaster train`"
    (tmp_path / "empty.pt").write_bytes(b"")  # EOFError with an empty message
    with pytest.raises(ValueError) as raised:
        checkpoint.read_checkpoint(tmp_path / "empty.pt")
    assert str(raised.value) == f"checkpoint {tmp_path / 'empty.pt'} (0 bytes) cannot be read (EOFError: no detail); " \
                                + advice
    torch.save({"model_config": {}, "model": {}}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    with pytest.raises(ValueError) as raised:
        checkpoint.read_checkpoint(tmp_path / "cut.pt")
    assert "(200 bytes) cannot be read (RuntimeError: " in str(raised.value)  # the first line of torch's message
    assert str(raised.value).count("\n") == 0 and str(raised.value).endswith("); " + advice)


def test_load_checkpoint_passes_map_location_to_torch_load(tmp_path):
    cfg = ModelConfig.official(**SIZES["cpu"])
    checkpoint.save_best(tmp_path / "best.pt", build_model(cfg), _record(cfg), epoch=1, val_acc=None)
    seen = []

    def on_cpu(storage, location):
        seen.append(location)
        return storage

    checkpoint.load_checkpoint(tmp_path / "best.pt", map_location=on_cpu)
    assert seen and set(seen) == {"cpu"}


class _NotPlain:
    pass


def test_read_checkpoint_refuses_pickled_code_and_honours_map_location(tmp_path):
    torch.save({"model_config": {}, "model": {}, "extra": _NotPlain()}, tmp_path / "code.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        checkpoint.read_checkpoint(tmp_path / "code.pt")  # weights_only=True: no arbitrary objects
    import dataclasses

    from avmaster_core.core import config, experiments
    from avmaster_core.core.model import build_model

    cfg = experiments.experiment("default", "official", "cpu")
    torch.save({"model_config": dataclasses.asdict(cfg), "model": build_model(cfg).state_dict()},
               tmp_path / "plain.pt")
    seen = []
    checkpoint.read_checkpoint(tmp_path / "plain.pt", map_location=lambda s, loc: seen.append(loc) or s)
    assert set(seen) == {"cpu"}


def test_read_checkpoint_refuses_weights_that_do_not_fit_the_model(tmp_path):
    """A checkpoint whose weights are not its configuration's model (missing, unknown or reshaped keys) is
    refused when read, naming the file and the keys, before any data or model is loaded (issue 24)."""
    import dataclasses

    from avmaster_core.core import config, experiments
    from avmaster_core.core.model import build_model

    cfg = experiments.experiment("default", "official", "cpu")
    weights = build_model(cfg).state_dict()
    first = next(iter(weights))
    for name, model in (("missing", {k: v for k, v in weights.items() if k != first}),
                        ("unknown", {**weights, "extra.w": torch.zeros(1)}),
                        ("wrong shape", {**weights, first: torch.zeros(1)})):
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        torch.save({"model_config": dataclasses.asdict(cfg), "model": model}, path)
        with pytest.raises(ValueError, match=f"checkpoint {path} does not hold the weights of its model: 1 "):
            checkpoint.read_checkpoint(path)

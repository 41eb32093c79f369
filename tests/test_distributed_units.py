"""The multi-process helpers (training/distributed.py) and the sharded prediction (evaluation.predict) in one
process, fast (issue 28): torch.distributed is replaced by a recording fake, so the code that only runs under
torchrun (test_ddp.py, slow tier) is pinned here too: which backend, which rank and device, what is reduced."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from avmaster_core.core.errors import AvmasterError
from avmaster_core.training import distributed as d
from avmaster_core.training.distributed import DistContext


def test_a_single_process_is_the_default_and_every_helper_is_a_no_op(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert d.setup_distributed("auto") is d.SINGLE_PROCESS
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert d.setup_distributed("cuda") is d.SINGLE_PROCESS
    ctx = d.SINGLE_PROCESS
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.owns_group, ctx.reduce_device) == (0, 1, 0, False, "cpu")
    assert not ctx.enabled and ctx.is_main
    monkeypatch.setattr(torch.distributed, "barrier", lambda: pytest.fail("barrier in one process"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: pytest.fail("teardown in one process"))
    d.barrier(ctx)
    d.teardown_distributed(ctx)
    values = [1.5, 2.0]
    assert d.all_sum(values, ctx) is values and d.gather_objects("x", ctx) == ["x"]


def test_rank_and_world_size():
    assert DistContext(rank=1, world_size=2).enabled and not DistContext(rank=1, world_size=2).is_main
    assert DistContext(rank=0, world_size=2).is_main


class FakeDist:
    """What the helpers ask of torch.distributed, recorded; two ranks whose values are equal."""

    def __init__(self, backend="gloo", initialized=False):
        self.calls, self.backend, self.initialized = [], backend, initialized

    def install(self, monkeypatch):
        for name in ("is_initialized", "init_process_group", "get_backend", "barrier", "all_gather_object",
                     "all_reduce", "destroy_process_group"):
            monkeypatch.setattr(torch.distributed, name, getattr(self, name))
        return self

    def is_initialized(self):
        return self.initialized

    def init_process_group(self, backend):
        self.calls.append(("init", backend))
        self.backend = backend

    def get_backend(self):
        return self.backend

    def barrier(self):
        self.calls.append(("barrier",))

    def all_gather_object(self, out, obj):
        self.calls.append(("gather", len(out)))
        out[:] = [obj] + [("other", i) for i in range(1, len(out))]

    def all_reduce(self, t):
        self.calls.append(("reduce", t.dtype, str(t.device)))
        t.mul_(2)

    def destroy_process_group(self):
        self.calls.append(("destroy",))


@pytest.fixture
def torchrun_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")


def test_torchrun_on_cpu_joins_a_gloo_group_and_tears_it_down(monkeypatch, torchrun_env):
    fake = FakeDist().install(monkeypatch)
    ctx = d.setup_distributed("cpu")
    assert ctx == DistContext(rank=1, world_size=2, local_rank=1, owns_group=True, reduce_device="cpu")
    assert fake.calls == [("init", "gloo")]
    d.barrier(ctx)
    assert d.gather_objects("mine", ctx) == ["mine", ("other", 1)]
    assert d.all_sum([1.0, 2.5], ctx) == [2.0, 5.0]
    d.teardown_distributed(ctx)
    assert fake.calls[1:] == [("barrier",), ("gather", 2), ("reduce", torch.float64, "cpu"), ("destroy",)]


def test_torchrun_with_gpus_uses_nccl_on_the_local_gpu(monkeypatch, torchrun_env):
    fake = FakeDist().install(monkeypatch)
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    ctx = d.setup_distributed("auto")
    assert chosen == [1] and fake.calls == [("init", "nccl")]
    assert ctx.reduce_device == "cuda:1" and ctx.owns_group
    assert d.resolve_device("auto", ctx) == torch.device("cuda", 1)
    assert d.resolve_device("cuda:0", ctx) == torch.device("cuda", 1)  # a rank uses its own GPU
    assert d.resolve_device("cuda:0") == torch.device("cuda", 0)
    assert d.resolve_device("cpu", ctx) == torch.device("cpu")


def test_a_group_that_exists_is_joined_not_owned(monkeypatch, torchrun_env):
    fake = FakeDist(initialized=True).install(monkeypatch)
    ctx = d.setup_distributed("cuda")
    assert not ctx.owns_group and fake.calls == []
    d.teardown_distributed(ctx)
    assert fake.calls == []


def test_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert d.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(AvmasterError, match="device 'cuda:1' was asked for but CUDA is not available; use --device cpu"):
        d.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device 'gpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        d.resolve_device("gpu")


# ------------------------------------------------------------------------------------ sharded prediction
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from avmaster_core.core.dataset import AVQADataset
    from avmaster_core.data.annotations import load_annotations
    from avmaster_core.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("predict")
    paths = generate_synthetic(root, num_videos=6, questions_per_video=2, T=3)
    records = load_annotations("synthetic", "train", root)
    return records, AVQADataset(records, paths["features"])


class ArgmaxOfQuestion(torch.nn.Module):
    """A stand-in model: its answer is the index of the largest of the question feature's first 5 values."""

    def forward(self, batch):
        return {"logits": batch["question"][:, :5]}


def test_predict_answers_every_item_in_dataset_order(small):
    from avmaster_core.training.evaluation import accuracy, predict, prediction_series

    records, ds = small
    expected = np.array([int(ds[i]["question"][:5].argmax()) for i in range(len(ds))])
    model = ArgmaxOfQuestion().train()
    for batch_size in (1, 4, 64):
        np.testing.assert_array_equal(predict(model, ds, batch_size=batch_size, progress=False), expected)
    assert model.training  # put back as it was
    series = prediction_series(records, expected)
    assert series.name == "prediction" and series.dtype == np.int64
    assert list(series.index) == list(records["question_id"]) and list(series) == list(expected)
    answers = records["answer_idx"].to_numpy()
    right = (answers + 1) % 42
    right[:3] = answers[:3]                                  # 3 right of len(records) (not half: != would pass)
    assert len(records) != 6 and accuracy(records, right) == pytest.approx(100 * 3 / len(records))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no records: NaN, without numpy's empty-mean warning
        assert np.isnan(accuracy(records.iloc[:0], right[:0]))


def test_each_rank_predicts_its_shard_and_the_shards_are_gathered_in_order(small, monkeypatch):
    from avmaster_core.training import evaluation

    _, ds = small
    expected = evaluation.predict(ArgmaxOfQuestion(), ds, batch_size=4, progress=False)
    shards = {}

    def gather(obj, ctx):  # rank 1 runs first and keeps its shard; rank 0 then gets both
        shards[ctx.rank] = obj
        return [shards[r] for r in sorted(shards)] if ctx.rank == 0 else [obj]

    monkeypatch.setattr(evaluation, "gather_objects", gather)
    world = [DistContext(rank=r, world_size=2) for r in (1, 0)]
    results = [evaluation.predict(ArgmaxOfQuestion(), ds, batch_size=4, progress=False, ctx=c) for c in world]
    np.testing.assert_array_equal(results[1], expected)
    order1, preds1 = shards[1]
    assert len(order1) == len(shards[0][0]) == -(-len(ds) // 2)  # even shards (padded by wrapping)
    assert set(np.concatenate([shards[0][0], order1]).tolist()) == set(range(len(ds)))


def test_torchrun_on_cpu_stays_on_gloo_even_with_gpus_and_local_rank_defaults_to_0(monkeypatch, torchrun_env):
    fake = FakeDist().install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: pytest.fail("a GPU chosen for a CPU run"))
    monkeypatch.delenv("LOCAL_RANK")
    ctx = d.setup_distributed("cpu")
    assert fake.calls == [("init", "gloo")] and ctx.local_rank == 0 and ctx.reduce_device == "cpu"


def test_all_sum_reduces_on_the_reduce_device(monkeypatch):
    seen = []

    def all_reduce(t):
        seen.append((t.device, t.dtype, t.shape))
        raise StopIteration  # a meta tensor cannot be read back; the placement is what is checked

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    with pytest.raises(StopIteration):
        d.all_sum([1.0, 2.0, 3.0], DistContext(rank=0, world_size=2, reduce_device="meta"))
    assert seen == [(torch.device("meta"), torch.float64, (3,))]

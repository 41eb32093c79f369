"""Records x store -> items, batches, negatives, loaders and the tensor bank."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from avmaster_core import load_annotations
from avmaster_core.core.dataset import (AVQADataset, collate, epoch_permutation, iterate_batches, make_loader,
                                   negative_indices, set_loader_epoch)
from avmaster_core.core.store import FeatureStore, MissingFeatureError
from avmaster_core.data.synthetic import generate_synthetic

T = 5


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_ds")
    paths = generate_synthetic(root, num_videos=30, questions_per_video=5, T=T, seed=11)
    return root, paths["features"]


@pytest.fixture(scope="module")
def train_records(synth):
    return load_annotations("synthetic", "train", synth[0])


def _records(rows):
    return pd.DataFrame([dict(question_id=q, video_id=v, answer_idx=a, split="train") for q, v, a in rows])


def _tiny_store(path, lengths):
    """A store with videos v0.. of the given lengths and questions 0..3."""
    rng = np.random.default_rng(0)
    with FeatureStore(path, "a") as store:
        for i, n in enumerate(lengths):
            store.put("audio", f"v{i}", rng.standard_normal((n, 128)))
            store.put("visual", f"v{i}", rng.standard_normal((n, 768)))
        for q in range(4):
            store.put("question", q, rng.standard_normal(768))
            store.put("words", q, rng.standard_normal((77, 768)))
    return path


@pytest.mark.parametrize("preload", [True, False])
def test_items_and_batches_have_the_design_shapes(synth, train_records, preload):
    ds = AVQADataset(train_records, synth[1], with_negatives=True, preload=preload)
    assert len(ds) == len(train_records) and ds.T == T
    item = ds[0]
    assert item["audio"].shape == (T, 128) and item["visual"].shape == (T, 768)
    assert item["question"].shape == (768,) and item["words"].shape == (77, 768)
    assert item["neg_audio"].shape == (T, 128) and item["neg_visual"].shape == (T, 768)
    assert item["label"].dtype == torch.long and int(item["label"]) == train_records["answer_idx"].iloc[0]
    assert int(item["question_id"]) == train_records["question_id"].iloc[0]
    batch = collate([ds[i] for i in range(3)])
    assert batch["audio"].shape == (3, T, 128) and batch["words"].shape == (3, 77, 768)
    assert batch["label"].shape == (3,) and batch["question_id"].shape == (3,)


def test_preloaded_and_lazy_items_agree(synth, train_records):
    eager = AVQADataset(train_records, synth[1], with_negatives=True, seed=4)
    lazy = AVQADataset(train_records, synth[1], with_negatives=True, seed=4, preload=False)
    with FeatureStore(synth[1]) as store:
        qid = int(train_records["question_id"].iloc[7])
        assert np.array_equal(eager[7]["words"].numpy(), store.get("words", qid))
    for i in (0, 7, len(eager) - 1):
        for key, value in eager[i].items():
            assert torch.equal(value, lazy[i][key]), key
    # Hard-linked questions (same text) are loaded once.
    assert eager.bank.question.shape[0] < len(eager)


def test_negatives_are_another_item_and_reproducible():
    for n in (2, 3, 50):
        neg = negative_indices(n, seed=0, epoch=0)
        assert (neg != np.arange(n)).all() and neg.min() >= 0 and neg.max() < n
    a, b = negative_indices(200, 1, 3), negative_indices(200, 1, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, negative_indices(200, 1, 4))
    assert len(set(negative_indices(200, 0, 0).tolist())) > 100          # spread, not one fixed partner
    with pytest.raises(ValueError, match="at least 2"):
        negative_indices(1, 0, 0)


def test_dataset_negatives_follow_the_epoch(synth, train_records):
    ds = AVQADataset(train_records, synth[1], with_negatives=True, seed=2)
    first = ds.negatives.clone()
    assert (first != torch.arange(len(ds))).all()
    v = ds.bank.video_index
    assert torch.equal(ds[0]["neg_visual"], ds.bank.visual[v[first[0]]])
    ds.set_epoch(1)
    assert not torch.equal(first, ds.negatives)
    ds.set_epoch(0)
    assert torch.equal(first, ds.negatives)


@pytest.mark.slow
def test_loader_is_seeded_and_resumable(synth, train_records):
    ds = AVQADataset(train_records, synth[1], with_negatives=True, seed=5)

    def epoch_ids(epoch):
        loader = make_loader(ds, batch_size=8, shuffle=True, seed=5)
        set_loader_epoch(loader, epoch)
        batches = list(loader)
        return torch.cat([b["question_id"] for b in batches]), batches[0]

    ids_a, first_a = epoch_ids(1)
    ids_b, first_b = epoch_ids(1)
    ids_c, _ = epoch_ids(2)
    assert torch.equal(ids_a, ids_b) and not torch.equal(ids_a, ids_c)
    assert sorted(ids_a.tolist()) == sorted(train_records["question_id"].tolist())
    for key in first_a:
        assert torch.equal(first_a[key], first_b[key])


def test_bank_batches_match_the_loader(synth, train_records):
    ds = AVQADataset(train_records, synth[1], with_negatives=True, seed=9)
    loader = make_loader(ds, batch_size=6, shuffle=True, seed=9)
    set_loader_epoch(loader, 3)
    via_loader = list(loader)
    via_bank = list(iterate_batches(ds.bank, 6, shuffle=True, seed=9, epoch=3, with_negatives=True))
    assert len(via_loader) == len(via_bank)
    for a, b in zip(via_loader, via_bank):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_bank_sharding_covers_every_item_once(synth, train_records):
    ds = AVQADataset(train_records, synth[1])
    seen = []
    for rank in range(3):
        for batch in iterate_batches(ds.bank, 4, shuffle=True, seed=1, epoch=0, rank=rank, world_size=3):
            seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(ds)))
    full = list(iterate_batches(ds.bank, 4, drop_last=True))
    assert all(b["label"].shape == (4,) for b in full) and len(full) == len(ds) // 4
    assert epoch_permutation(10, 0, 0).tolist() != list(range(10))


def test_split_filter(synth):
    records = pd.concat([load_annotations("synthetic", s, synth[0]) for s in ("train", "test")])
    ds = AVQADataset(records, synth[1], split="test")
    assert set(ds.records["split"]) == {"test"}
    with pytest.raises(ValueError, match="no records of split 'val'"):
        AVQADataset(records, synth[1], split="val")


def test_missing_features_are_named_up_front(tmp_path):
    store = _tiny_store(tmp_path / "f.h5", [4, 4])
    records = _records([(0, "v0", 1), (1, "v1", 2), (2, "v_absent", 3), (99, "v0", 4)])
    with pytest.raises(MissingFeatureError) as err:
        AVQADataset(records, store)
    message = str(err.value)
    assert "2 of 4 records" in message and "v_absent" in message and "'99'" in message
    assert "drop_missing=True" in message
    ds = AVQADataset(records, store, drop_missing=True)
    assert ds.records["question_id"].tolist() == [0, 1]


def test_time_axis_cut_pad_and_errors(tmp_path):
    store = _tiny_store(tmp_path / "f.h5", [6, 4])
    records = _records([(0, "v0", 1), (1, "v1", 2)])
    with pytest.raises(ValueError, match="different lengths"):
        AVQADataset(records, store)
    with pytest.raises(ValueError, match="fewer than T=5"):
        AVQADataset(records, store, T=5)
    with FeatureStore(store) as s:
        full = s.get("visual", "v0")
    cut = AVQADataset(records, store, T=4)
    assert cut[0]["visual"].shape == (4, 768) and np.array_equal(cut[0]["visual"].numpy(), full[:4])
    for pad in ("zero", "edge"):
        padded = AVQADataset(records, store, T=6, pad=pad, preload=pad == "zero")
        tail = padded[1]["audio"][4:]
        assert tail.shape == (2, 128)
        expected = torch.zeros_like(tail) if pad == "zero" else padded[1]["audio"][3].expand(2, -1)
        assert torch.equal(tail, expected)
    with pytest.raises(ValueError, match="pad must be"):
        AVQADataset(records, store, T=4, pad="wrap")


def test_negatives_need_two_items(tmp_path):
    store = _tiny_store(tmp_path / "f.h5", [3])
    with pytest.raises(ValueError, match="at least 2"):
        AVQADataset(_records([(0, "v0", 1)]), store, with_negatives=True)
    assert len(AVQADataset(_records([(0, "v0", 1)]), store)) == 1


def test_lazy_dataset_works_with_worker_processes(synth, train_records):
    ds = AVQADataset(train_records.iloc[:8], synth[1], preload=False)
    loader = make_loader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert sum(b["label"].shape[0] for b in batches) == 8


@pytest.mark.parametrize("preload", [True, False])
def test_unmatched_audio_reads_the_audio_of_audio_video_id(tmp_path, preload):
    """MUSIC-AVQA-v2.0 pairs some videos with another video's audio (`audio_video_id`)."""
    path = _tiny_store(tmp_path / "f.h5", [4, 4, 4])
    records = _records([(0, "v0", 1), (1, "v1", 2), (2, "v0", 3)])
    records["audio_video_id"] = ["v0", "v2", "v0"]   # question 1: visual of v1, audio of v2
    ds = AVQADataset(records, path, preload=preload, with_negatives=True)
    with FeatureStore(path) as store:
        assert torch.equal(ds[1]["audio"], torch.from_numpy(store.get("audio", "v2")))
        assert torch.equal(ds[1]["visual"], torch.from_numpy(store.get("visual", "v1")))
        assert torch.equal(ds[0]["audio"], torch.from_numpy(store.get("audio", "v0")))
    if preload:
        batch = next(iterate_batches(ds.bank, 3, with_negatives=True))
        assert torch.equal(batch["audio"], torch.stack([ds[i]["audio"] for i in range(3)]))
        assert torch.equal(batch["neg_audio"], torch.stack([ds[i]["neg_audio"] for i in range(3)]))
    records.loc[1, "audio_video_id"] = "v_missing"
    with pytest.raises(MissingFeatureError, match="v_missing"):
        AVQADataset(records, path, preload=preload)

"""The data path's rules one by one, against what they are documented to compute (issue 28): negatives, epoch
orders and shards, word positions and masks, the bank's batches, the time axis. Fast: tiny stores and banks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avmaster_core.core.dataset import (WORDS_LEN, Batches, FeatureBank, _fit_length, draw_negatives, epoch_order,
                                        epoch_permutation, iterate_batches, negative_indices, question_tokens,
                                        word_mask)
from avmaster_core.core.store import TOKENS_ATTR, FeatureStore


# ------------------------------------------------------------------------------------ negatives and orders
@pytest.mark.parametrize("n", [2, 3, 7])
def test_a_negative_is_never_the_item_and_every_other_item_is_drawn(n):
    counts = np.zeros((n, n))
    for epoch in range(400):
        draw = negative_indices(n, seed=5, epoch=epoch)
        assert draw.dtype == np.int64 and draw.shape == (n,)
        counts[np.arange(n), draw] += 1
    assert (np.diag(counts) == 0).all()
    others = counts[~np.eye(n, dtype=bool)]
    assert others.min() > 0.6 * 400 / (n - 1)  # uniform over the n - 1 others (the last one included)


def test_negatives_are_a_pure_function_of_seed_and_epoch():
    a = draw_negatives(50, seed=3, epoch=2)
    assert torch.equal(a, draw_negatives(50, seed=3, epoch=2))
    assert not torch.equal(a, draw_negatives(50, seed=3, epoch=3))
    assert not torch.equal(a, draw_negatives(50, seed=4, epoch=2))
    expected = np.random.default_rng([3, 2, 1]).integers(0, 49, size=50)  # stream 1, skipping each own index
    np.testing.assert_array_equal(a.numpy(), expected + (expected >= np.arange(50)))
    assert torch.equal(draw_negatives(50, seed=3), draw_negatives(50, seed=3, epoch=0))
    np.testing.assert_array_equal(negative_indices(50, 3, 2), a.numpy())
    unseeded = draw_negatives(50, generator=torch.Generator().manual_seed(0))
    assert (unseeded != torch.arange(50)).all() and unseeded.max() < 50
    assert torch.equal(unseeded, draw_negatives(50, generator=torch.Generator().manual_seed(0)))
    pairs = draw_negatives(2, generator=torch.Generator().manual_seed(1))
    assert pairs.tolist() == [1, 0]
    for seed in (None, 4):  # drawn (or moved) to the device asked for
        assert draw_negatives(6, seed=seed, device="meta").device.type == "meta"
    with pytest.raises(ValueError, match="negatives need at least 2 items, got 1"):
        draw_negatives(1, seed=0)


def test_epoch_orders_and_shards():
    perm = epoch_permutation(10, 7, 1)
    np.testing.assert_array_equal(perm, np.random.default_rng([7, 1, 2]).permutation(10))
    np.testing.assert_array_equal(epoch_order(10, 7, 1), perm)
    np.testing.assert_array_equal(epoch_order(10, 7, 1, shuffle=False), np.arange(10))
    np.testing.assert_array_equal(epoch_order(10, 7, 1, rank=1, world_size=3), perm[1::3])
    # even: padded by wrapping to a multiple of the world size, so every rank takes as many steps
    even = [epoch_order(10, 7, 1, rank=r, world_size=3, even=True) for r in range(3)]
    assert [len(e) for e in even] == [4, 4, 4]
    np.testing.assert_array_equal(np.concatenate([e[:, None] for e in even], axis=1).ravel(),
                                  np.concatenate([perm, perm[:2]]))
    np.testing.assert_array_equal(epoch_order(10, 7, 1, even=True), perm)  # one rank: nothing padded
    two = [epoch_order(5, 7, 1, rank=r, world_size=2, even=True) for r in range(2)]
    p5 = epoch_permutation(5, 7, 1)
    assert [e.tolist() for e in two] == [[p5[0], p5[2], p5[4]], [p5[1], p5[3], p5[0]]]


# ------------------------------------------------------------------------------------ word positions
def test_word_mask_marks_positions_1_to_tokens_minus_1():
    mask = word_mask(torch.tensor([4, 2, 1, 77]), 6)
    assert mask.tolist() == [[False, True, True, True, False, False],
                             [False, True, False, False, False, False],
                             [True] * 6,                                # no word: every position kept
                             [False, True, True, True, True, True]]
    assert word_mask(torch.tensor([3])).shape == (1, WORDS_LEN)
    assert word_mask(torch.tensor([3], device="meta")).device.type == "meta"  # built where the counts are
    grid = word_mask(torch.tensor([[2, 1], [3, 4]]), 5)                        # counts of any shape [...]
    assert grid.shape == (2, 2, 5) and torch.equal(grid[1, 0], word_mask(torch.tensor([3]), 5)[0])
    assert grid[0, 1].all()


def test_question_tokens_from_the_recorded_count_or_the_zero_padding(tmp_path):
    words = np.zeros((WORDS_LEN, 4), np.float32)
    with FeatureStore(tmp_path / "s.h5", "a") as store:
        store.put("words", 1, np.ones((WORDS_LEN, 4)), **{TOKENS_ATTR: 9})      # recorded: believed
        padded = words.copy()
        padded[:5] = 1.0
        padded[2] = 0.0                                                        # a zero row inside the words
        store.put("words", 2, padded)                                          # zero-padded: up to the last non-zero
        store.put("words", 3, np.ones((WORDS_LEN, 4)))                         # real CLIP words, no count: unknown
        store.put("words", 4, words)                                           # all zero: one token
        long = np.ones((WORDS_LEN, 4), np.float32)
        long[-1] = 0.0
        store.put("words", 5, long)                                            # 76 tokens: only the last row zero
    with FeatureStore(tmp_path / "s.h5") as store:
        known, unknown = question_tokens(store, [1, 2, 3, 4, 2, 5])
    assert known == {"1": 9, "2": 5, "4": 1, "5": 76} and unknown == ["3"]


# ------------------------------------------------------------------------------------ the bank's batches
def _bank(n=5, words_len=3, tokens=None, audio_index=None) -> FeatureBank:
    g = torch.Generator().manual_seed(0)
    return FeatureBank(audio=torch.randn(3, 2, 4, generator=g), visual=torch.randn(3, 2, 6, generator=g),
                       question=torch.randn(4, 5, generator=g), words=torch.randn(4, words_len, 5, generator=g),
                       video_index=torch.tensor([0, 1, 2, 0, 1])[:n], question_index=torch.tensor([3, 2, 1, 0, 3])[:n],
                       labels=torch.arange(n) + 10, question_ids=torch.arange(n) + 100, audio_index=audio_index,
                       words_len=WORDS_LEN, tokens=tokens)


def test_gather_reads_each_items_rows_and_pads_the_words():
    bank = _bank(tokens=torch.tensor([2, 3, 4, 5]), audio_index=torch.tensor([2, 2, 0, 1, 0]))
    items, negatives = torch.tensor([4, 1]), torch.tensor([0, 3])
    batch = bank.gather(items, negatives)
    assert torch.equal(batch["audio"], bank.audio[[0, 2]]) and torch.equal(batch["visual"], bank.visual[[1, 1]])
    assert torch.equal(batch["question"], bank.question[[3, 2]])
    assert batch["words"].shape == (2, WORDS_LEN, 5) and torch.equal(batch["words"][:, :3], bank.words[[3, 2]])
    assert not batch["words"][:, 3:].any()
    assert batch["label"].tolist() == [14, 11] and batch["question_id"].tolist() == [104, 101]
    assert batch["index"].tolist() == [4, 1]
    assert torch.equal(batch["word_mask"], word_mask(torch.tensor([5, 4]), WORDS_LEN))
    assert torch.equal(batch["neg_audio"], bank.audio[[2, 1]]) and torch.equal(batch["neg_visual"], bank.visual[[0, 0]])
    plain = _bank().gather(items)
    assert torch.equal(plain["audio"], bank.audio[[1, 1]])   # no audio_index: the video's own audio
    assert not {"word_mask", "neg_audio", "neg_visual", "choices"} & set(plain)
    with_choices = _bank()
    with_choices.choices = torch.arange(5.0)[:, None, None].expand(5, 3, 2)
    assert torch.equal(with_choices.gather(items)["choices"], with_choices.choices[[4, 1]])
    short = _bank(tokens=torch.tensor([2, 3, 4, 5]))
    short.words_len = 4                                       # the bank's own word length
    batch = short.gather(items)
    assert batch["words"].shape == (2, 4, 5) and torch.equal(batch["word_mask"], word_mask(torch.tensor([5, 4]), 4))
    assert _meta(bank).gather(items, negatives)["index"].device.type == "meta"  # items moved to the bank


@pytest.mark.parametrize("batch_size,drop_last,sizes", [(2, False, [2, 2, 1]), (2, True, [2, 2]), (5, False, [5]),
                                                       (7, False, [5]), (1, True, [1] * 5)])
def test_batches_cover_the_order_in_order(batch_size, drop_last, sizes):
    bank = _bank()
    order = [3, 0, 4, 1, 2]
    batches = Batches(bank, order, batch_size, drop_last=drop_last)
    got = list(batches)
    assert len(batches) == len(got) and [len(b["index"]) for b in got] == sizes
    assert torch.cat([b["index"] for b in got]).tolist() == order[:sum(sizes)]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        Batches(bank, order, 0)


def test_iterate_batches_shuffles_shards_and_draws_negatives_over_the_bank():
    bank = _bank()
    plain = list(iterate_batches(bank, 2))
    assert [b["index"].tolist() for b in plain] == [[0, 1], [2, 3], [4]]
    assert not any("neg_audio" in b for b in plain)  # negatives only when asked for
    default_seed = torch.cat([b["index"] for b in iterate_batches(bank, 2, shuffle=True)]).tolist()
    assert default_seed == epoch_permutation(5, 0, 0).tolist()
    shuffled = torch.cat([b["index"] for b in iterate_batches(bank, 2, shuffle=True, seed=3, epoch=1)]).tolist()
    assert shuffled == epoch_permutation(5, 3, 1).tolist()
    subset = torch.cat([b["index"] for b in iterate_batches(bank, 9, indices=[4, 2, 0], shuffle=True, seed=3)])
    assert subset.tolist() == np.array([4, 2, 0])[epoch_permutation(3, 3, 0)].tolist()
    rank1 = torch.cat([b["index"] for b in iterate_batches(bank, 9, rank=1, world_size=2)]).tolist()
    assert rank1 == [1, 3]
    with_neg = next(iter(iterate_batches(bank, 5, with_negatives=True, seed=2, epoch=4)))
    negatives = draw_negatives(5, seed=2, epoch=4)
    assert torch.equal(with_neg["neg_visual"], bank.visual[bank.video_index[negatives]])
    assert len(list(iterate_batches(bank, 2, drop_last=True))) == 2


# ------------------------------------------------------------------------------------ the time axis
def test_fit_length_cuts_pads_or_refuses():
    x = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    assert _fit_length(x, None, None, "v") is x and _fit_length(x, 3, None, "v") is x
    np.testing.assert_array_equal(_fit_length(x, 2, None, "v"), x[:2])
    np.testing.assert_array_equal(_fit_length(x, 5, "zero", "v"), np.concatenate([x, np.zeros((2, 2))]))
    np.testing.assert_array_equal(_fit_length(x, 5, "edge", "v"), np.concatenate([x, x[-1:], x[-1:]]))
    with pytest.raises(ValueError, match=r"visual of 'v1' has 3 time steps, fewer than T=4: pass pad='zero' or "
                                         r"pad='edge' to pad it, or a smaller T"):
        _fit_length(x, 4, None, "visual of 'v1'")


def _meta(bank: FeatureBank) -> FeatureBank:
    return bank.to("meta")  # shapes without storage: stands in for a GPU-resident bank


def test_batches_live_where_the_bank_is_and_go_where_they_are_sent():
    bank = _bank()
    on_meta = Batches(_meta(bank), torch.tensor([4, 0, 2], dtype=torch.int32), 2, negatives=torch.tensor([1, 2, 3, 4, 0]))
    assert on_meta.order.device.type == "meta" and on_meta.order.dtype == torch.long
    assert on_meta.negatives.device.type == "meta" and on_meta.to == torch.device("meta")
    assert (on_meta.drop_last, on_meta.num_workers, on_meta.lazy) == (False, 0, False)
    meta_order = Batches(_meta(bank), torch.tensor([4, 0, 2], device="meta"), 2)  # a tensor order stays a tensor
    assert meta_order.order.device.type == "meta" and len(meta_order) == 2
    from_list = Batches(bank, [4, 0, 2], 2)
    assert from_list.order.dtype == torch.long and from_list.order.tolist() == [4, 0, 2]
    sent = Batches(bank, [4, 0, 2], 2, to="meta")
    assert sent.to == torch.device("meta") and sent.order.device.type == "cpu"
    assert all(t.device.type == "meta" for b in sent for t in b.values())


class _Items(torch.utils.data.Dataset):
    """A lazy source: items read one by one (what an AVQADataset without a bank is to Batches)."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"index": torch.tensor(i), "label": torch.tensor(10 + i)}


def test_a_lazy_source_is_read_through_a_loader_in_the_order_given():
    lazy = Batches(_Items(), np.array([3, 1, 4]), 2)
    assert lazy.lazy and lazy.order.device.type == "cpu" and lazy.to == torch.device("cpu")
    assert [b["label"].tolist() for b in lazy] == [[13, 11], [14]]
    with pytest.raises(ValueError, match=r"^a lazy dataset draws its own negatives \(AVQADataset.set_epoch\); pass "
                                         r"negatives=None$"):
        Batches(_Items(), [0, 1], 2, negatives=torch.tensor([1, 0]))

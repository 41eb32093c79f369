"""mask_padding on real CLIP question features (issue 13): extraction records each question's token count, the
dataset turns it into batch["word_mask"], and a store without counts is refused with what to do."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from avmaster_core import cli
from avmaster_core.data.annotations import load_annotations
from avmaster_core.core.config import ModelConfig
from avmaster_core.core.dataset import AVQADataset, collate, question_tokens, require_word_mask, word_mask
from avmaster_core.extract.encoders import ClipEncoder
from avmaster_core.extract.pipeline import extract_questions, load_question_table, token_counts
from avmaster_core.core.vocab import question_text
from avmaster_core.core.model import words_mask
from avmaster_core.core.store import TOKENS_ATTR, FeatureStore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_store(tiny_data, tmp_path_factory):
    """The tiny synthetic benchmark with its questions re-extracted by a tiny random CLIP (words are then real
    CLIP states: non-zero at all 77 positions, like MUSIC-AVQA's)."""
    root = tmp_path_factory.mktemp("clip_words")
    for f in tiny_data.iterdir():
        shutil.copy(f, root / f.name)
    texts = {q: t for split in ("train", "val", "test") for q, t in
             load_question_table(None, "synthetic", split, root).items()}
    with FeatureStore(root / "features.h5", "a") as store:   # drop the synthetic question features
        for kind in ("question", "words"):
            del store.file[kind]
    extract_questions(texts, root / "features.h5", ClipEncoder.tiny(), progress=False)
    return root, texts


def _without_counts(root, tmp_path):
    store = tmp_path / "features.h5"
    shutil.copy(root / "features.h5", store)
    with FeatureStore(store, "a") as opened:
        for q in opened.keys("words"):
            del opened.file[f"words/{q}"].attrs[TOKENS_ATTR]
    return store


def test_extraction_records_token_counts_and_batches_carry_the_word_mask(clip_store):
    root, texts = clip_store
    records = load_annotations("synthetic", "train", root)
    qid = int(records["question_id"].iloc[0])
    with FeatureStore(root / "features.h5") as store:
        tokens = int(store.file[f"words/{qid}"].attrs[TOKENS_ATTR])
        assert (np.abs(store.get("words", qid)).max(axis=1) > 0).all()      # no zero padding to read positions off
    words = len(question_text(texts[qid]).split())
    assert tokens == token_counts([question_text(texts[qid])])[0] and tokens >= words + 2   # start, words, end
    for preload in (True, False):
        ds = AVQADataset(records, root / "features.h5", preload=preload)
        batch = collate([ds[i] for i in range(4)])
        assert batch["word_mask"].shape == (4, 77) and batch["word_mask"].dtype == torch.bool
        assert batch["word_mask"][0].nonzero().flatten().tolist() == list(range(1, tokens))   # no start, no padding
        assert torch.equal(words_mask(batch), batch["word_mask"])          # the model reads it as given
    gathered = ds.bank if ds.bank is not None else AVQADataset(records, root / "features.h5").bank
    assert torch.equal(gathered.gather(torch.arange(4))["word_mask"], batch["word_mask"])


def test_zero_padded_words_give_the_same_mask_as_before(tiny_data):
    """The synthetic benchmark records no counts: its zero padding gives the positions, as the model's own
    fallback reads them."""
    records = load_annotations("synthetic", "train", tiny_data)
    ds = AVQADataset(records, tiny_data / "features.h5")
    batch = ds.bank.gather(torch.arange(len(ds)))
    assert not ds.unknown_words and torch.equal(batch["word_mask"], words_mask({"words": batch["words"]}))
    assert word_mask(torch.tensor([1, 3]), 5).tolist() == [[True] * 5, [False, True, True, False, False]]


def test_a_store_without_counts_is_refused_with_what_to_do(clip_store, tmp_path):
    root, _ = clip_store
    store = _without_counts(root, tmp_path)
    records = load_annotations("synthetic", "train", root)
    ds = AVQADataset(records, store)
    assert ds.unknown_words and "word_mask" not in ds[0]
    paper = dataclasses.replace(ModelConfig.paper(), dim=32, focus_ffn=32)
    require_word_mask(ModelConfig.official(), ds)                          # no mask_padding: nothing needed
    with pytest.raises(ValueError, match=r"mask_padding.*--set mask_padding=false.*store token-counts"):
        require_word_mask(paper, ds)
    from avmaster_core.training.preflight import PreflightError, check_run_inputs
    from avmaster_core.training.run_config import DataConfig

    data_cfg = DataConfig(dataset="synthetic", root=str(root), store=str(store))
    check_run_inputs(data_cfg, ModelConfig.official(), ["train"])
    with pytest.raises(PreflightError, match="token count"):
        check_run_inputs(data_cfg, ModelConfig.paper(), ["train"])


def test_the_training_engine_refuses_before_the_first_step(clip_store, tmp_path):
    from avmaster_core.training.engine import DataConfig, TrainConfig, train

    root, _ = clip_store
    store = _without_counts(root, tmp_path)
    cfg = dataclasses.replace(ModelConfig.paper(), dim=16, focus_ffn=16, focus_heads=2, decoder_heads=2,
                              decoder_layers=1, num_templates=2)
    with pytest.raises(ValueError, match="token count"):
        train(cfg, TrainConfig(epochs=1, batch_size=8, device="cpu", progress=False),
              DataConfig(dataset="synthetic", root=str(root), store=str(store)), out_dir=tmp_path / "runs")
    assert not list((tmp_path / "runs").glob("**/metrics.jsonl"))


def test_store_token_counts_records_them_without_touching_the_features(clip_store, tmp_path, capsys):
    root, _ = clip_store
    store = _without_counts(root, tmp_path)
    with FeatureStore(store) as opened:
        before = opened.get("words", opened.keys("words")[0])
    assert cli.main(["store", "token-counts", str(store), "--questions", "synthetic", "--root", str(root)]) == 0
    assert "token counts added" in capsys.readouterr().out
    with FeatureStore(store) as opened, FeatureStore(root / "features.h5") as original:
        keys = opened.keys("words")
        assert np.array_equal(opened.get("words", keys[0]), before)
        assert question_tokens(opened, keys) == question_tokens(original, keys)
        assert not question_tokens(opened, keys)[1]
    assert cli.main(["store", "token-counts", str(tmp_path / "nope.h5"), "--questions", "synthetic", "--root",
                     str(root)]) == 1


def test_re_extracting_stored_questions_only_adds_their_counts(clip_store, tmp_path):
    root, texts = clip_store
    store = _without_counts(root, tmp_path)
    assert extract_questions(texts, store, ClipEncoder.tiny(), progress=False) == 0   # nothing re-encoded
    with FeatureStore(store) as opened:
        assert not question_tokens(opened, opened.keys("words"))[1]

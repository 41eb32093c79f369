"""Issue 13's paper-preset items: word features without start token and padding (mask_padding), batch 32, and the
differences between the paper's text and the presets listed with the paper's words."""
from __future__ import annotations

import argparse
import dataclasses

import torch

from avmaster_core.core import config, experiments
from avmaster_core.core.config import PAPER_PRESET, ModelConfig
from avmaster_core.core.experiments import experiment
from avmaster_core.core.model import build_model, words_mask

SMALL = dict(dim=32, focus_ffn=32, dropout=0.0, num_templates=2, decoder_layers=1)


def _batch(g):
    words = torch.zeros(2, 77, 768)
    words[:, :6] = torch.randn(2, 6, 768, generator=g)  # start token, 4 words, end token; zero padding after
    return {"audio": torch.randn(2, 3, 128, generator=g), "visual": torch.randn(2, 3, 768, generator=g),
            "question": torch.randn(2, 768, generator=g), "words": words}


def test_words_mask_drops_start_token_and_padding():
    batch = _batch(torch.Generator().manual_seed(0))
    mask = words_mask(batch)
    assert mask.shape == (2, 77) and mask[:, 1:6].all() and not mask[:, 0].any() and not mask[:, 6:].any()
    explicit = torch.zeros(2, 77, dtype=torch.bool)
    explicit[:, 2] = True
    assert torch.equal(words_mask({**batch, "word_mask": explicit}), explicit)


def test_masked_positions_do_not_change_the_answer():
    g = torch.Generator().manual_seed(1)
    batch = _batch(g)
    changed = {**batch, "words": batch["words"].clone()}
    changed["words"][:, 0] = torch.randn(2, 768, generator=g)  # another start-token state
    for masked in (True, False):
        cfg = dataclasses.replace(ModelConfig.paper(), **SMALL, mask_padding=masked)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            same = torch.allclose(model(batch)["logits"], model(changed)["logits"], atol=1e-6)
        assert same == masked  # masked: the start token is not read; unmasked: it is


def test_paper_preset_masks_padding_and_official_offers_it():
    assert ModelConfig.paper().mask_padding and not ModelConfig.official().mask_padding
    assert experiment("fig8/mask_padding").mask_padding
    assert experiments.get("fig8/mask_padding").reading


def test_paper_preset_trains_with_batch_32():
    from avmaster_core.training.commands import train_config_for

    given = argparse.Namespace(batch_size=None)
    assert train_config_for("paper", given).batch_size == 32
    assert train_config_for("official", given).batch_size == 64
    assert train_config_for("paper", argparse.Namespace(batch_size=8)).batch_size == 8  # the command line wins


def test_every_paper_preset_field_quotes_the_paper():
    official, paper_cfg = ModelConfig.official(), ModelConfig.paper()
    differing = {f.name for f in dataclasses.fields(ModelConfig)
                 if getattr(official, f.name) != getattr(paper_cfg, f.name)}
    assert differing == set(PAPER_PRESET)
    assert all(len(words) > 20 for _, words in PAPER_PRESET.values())


def test_readings_carry_the_papers_words():
    flagged = {e.name for e in experiments.ENTRIES if e.reading}
    assert {"fig7/qa=0.7", "fig4/T60", "fig4/T12", "avqa/choices", "table13/mul"} <= flagged
    settings = {r.setting for r in config.PRESET_READINGS if r.status != "as written"}
    assert {"eq. (6) negatives", "the two SABs of eq. (2)", "sentence feature"} <= settings

"""choices.check_choices: each malformed batch["choices"] of a multiple-choice model refused with its message
(issue 28: the model tests reached it only through a loose pattern, and mutation left 30 changes unseen)."""
from __future__ import annotations

import re

import pytest
import torch

from avmaster_core.core.choices import check_choices


class Cfg:
    choice_scorer, text_dim = "dot", 4


def _refused(batch) -> str:
    with pytest.raises(ValueError) as info:
        check_choices(batch, Cfg)
    return str(info.value)


def test_a_classifier_needs_no_candidates():
    class Classifier:
        choice_scorer, text_dim = None, 4
    check_choices({}, Classifier)
    check_choices({"choices": "anything"}, Classifier)


@pytest.mark.parametrize("choices,found", [(None, "NoneType"), ([[0.0]], "list"), (torch.zeros(2, 4), "(2, 4)"),
                                           (torch.zeros(2, 3, 5), "(2, 3, 5)"), (torch.zeros(2, 3, 4, 1), "(2, 3, 4, 1)"),
                                           (torch.zeros(2, 3, 4, dtype=torch.long), "(2, 3, 4)")])
def test_candidates_that_are_not_float_b_c_text_dim_are_named(choices, found):
    batch = {} if choices is None else {"choices": choices}
    text = _refused(batch)
    assert text == (f"ModelConfig.choice_scorer='dot' needs batch['choices'], the candidate answers' text features "
                    f"[B, C, 4] (float); got {found}. Extract them (`avmaster extract --questions DATASET` writes "
                    "the store's 'choices' for AVQA) or use a config without choice_scorer")


def test_batch_sizes_must_agree_and_labels_index_a_candidate():
    good = {"choices": torch.zeros(2, 3, 4), "question": torch.zeros(2, 4), "label": torch.tensor([0, 2])}
    check_choices(good, Cfg)
    check_choices({"choices": torch.zeros(2, 3, 4), "question": "not a tensor", "label": torch.zeros(0, dtype=torch.long)},
                  Cfg)
    assert _refused({**good, "question": torch.zeros(3, 4)}) == \
        "batch['choices'] has batch size 2, batch['question'] has 3"
    assert _refused({**good, "label": torch.tensor([0, 3])}) == \
        "batch['label'] has a position >= the 3 candidates in batch['choices']"
    check_choices({**good, "label": torch.tensor([0, 3], device="meta")}, Cfg)  # not read off a device

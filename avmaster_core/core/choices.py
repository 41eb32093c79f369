"""Multiple-choice answering (AVQA): each head scores the question's candidate answers instead of a fixed vocabulary.

AVQA gives every question its own four candidate answers (`multi_choice`) and scores the position of the right
one. The candidates are encoded like the questions (CLIP text, sentence feature; store kind "choices",
batch key `choices` [B, C, text_dim]), and each answer head scores every candidate against its own decoder
state h [B, D] (the state the released LM head turns into vocabulary logits):

    scorer="match" (our reading, default of the AVQA experiments): s_c = MLP([h, a_c, h * a_c]) with
        a_c = Linear(candidate_c): one score per (state, candidate) pair from their concatenation, as AVQA's own
        baselines score candidates (HCRN/HAVF's multiple-choice output unit: concatenate the video-question
        representation with the candidate's encoding, an MLP gives one logit, cross-entropy over the candidates).
    scorer="dot" (the alternative): s_c = <h, a_c> / sqrt(D): the released LM head with its answer embedding
        rows replaced by the projected candidates.

Logits are [B, C] and the heads combine as before (ModelConfig.combine); the label is the right candidate's
position. Scoring is per candidate with shared weights, so permuting the candidates permutes the logits
(tests/test_choices.py). docs/avqa.md explains the choice and its comparison on the synthetic benchmark.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCORERS = ("match", "dot")
HEADS = ("qa", "a", "v")


class ChoiceScorer(nn.Module):
    """Scores C candidate answers ([B, C, text_dim]) against one head's state ([B, D]) -> logits [B, C]."""

    def __init__(self, dim: int, text_dim: int, kind: str):
        super().__init__()
        if kind not in SCORERS:
            raise ValueError(f"choice scorer {kind!r}; choose one of {SCORERS}")
        self.kind = kind
        self.candidate = nn.Linear(text_dim, dim)
        if kind == "match":
            self.mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, state: Tensor, choices: Tensor) -> Tensor:
        a = self.candidate(choices)  # [B, C, D]
        h = state.unsqueeze(1)  # [B, 1, D]
        if self.kind == "dot":
            return (a * h).sum(-1) / math.sqrt(a.shape[-1])
        h = h.expand_as(a)
        return self.mlp(torch.cat([h, a, h * a], dim=-1)).squeeze(-1)


def build_scorers(cfg) -> nn.ModuleDict | None:
    """One scorer per answer head when `cfg.choice_scorer` is set (None: the heads classify over num_answers)."""
    if cfg.choice_scorer is None:
        return None
    return nn.ModuleDict({h: ChoiceScorer(cfg.dim, cfg.text_dim, cfg.choice_scorer) for h in HEADS})


def decoder_state(decoder, memory: Tensor, query: Tensor) -> Tensor:
    """The released answer decoder's state before its vocabulary projection: [B, D] (see blocks.AnswerDecoder)."""
    h = query.unsqueeze(1)
    for layer in decoder.layers:
        h = layer(h, memory)
    return decoder.head_norm(F.gelu(decoder.head_dense(h))).squeeze(1)


def head_logits(model, name: str, decoder, memory: Tensor, query: Tensor, batch: dict) -> Tensor:
    """Logits of answer head `name`: [B, num_answers] from the decoder, or [B, C] over batch["choices"]."""
    scorers = getattr(model, "choice_scorers", None)
    if scorers is None:
        return decoder(memory, query)
    return scorers[name](decoder_state(decoder, memory, query), batch["choices"])


def check_choices(batch: dict, cfg) -> None:
    """ValueError naming the problem when a multiple-choice model gets no usable batch["choices"]."""
    if cfg.choice_scorer is None:
        return
    x = batch.get("choices")
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != cfg.text_dim or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"ModelConfig.choice_scorer={cfg.choice_scorer!r} needs batch['choices'], the candidate "
                         f"answers' text features [B, C, {cfg.text_dim}] (float); got {shape}. Extract them "
                         "(`avmaster extract --questions DATASET` writes the store's 'choices' for AVQA) or use a "
                         "config without choice_scorer")
    question = batch.get("question")
    if isinstance(question, Tensor) and x.shape[0] != question.shape[0]:
        raise ValueError(f"batch['choices'] has batch size {x.shape[0]}, batch['question'] has {question.shape[0]}")
    label = batch.get("label")
    if isinstance(label, Tensor) and label.device.type == "cpu" and label.numel() and int(label.max()) >= x.shape[1]:
        raise ValueError(f"batch['label'] has a position >= the {x.shape[1]} candidates in batch['choices']")

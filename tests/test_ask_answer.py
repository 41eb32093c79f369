"""`avmaster ask` returns the answer of the checkpoint it is given: a model whose heads ignore their input
(zero output weights) and whose biases favour known answers gives an answer, top-5 probabilities and a
driving path that are computed here by hand from those biases."""
from __future__ import annotations

import math

import pytest
import torch

from avmaster_core.core.checkpoint import save_best
from avmaster_core.core.config import SIZES, ModelConfig
from avmaster_core.extract.encoders import ClipEncoder, VGGishEncoder
from avmaster_core.extract.asking import ask
from avmaster_core.extract.synthclip import write_clip
from avmaster_core.core.model import build_model
from avmaster_core.core.vocab import ANSWERS

pytestmark = pytest.mark.slow  # trains, executes notebooks or builds a model: ~30-60 s

ANSWER, RUNNER_UP = ANSWERS.index("three"), ANSWERS.index("yes")


def _fixed_checkpoint(path, qa_bias: dict[int, float], a_bias: dict[int, float]):
    cfg = ModelConfig.official(**SIZES["cpu"])
    model = build_model(cfg)
    with torch.no_grad():
        for decoder, bias in ((model.decoder_qa, qa_bias), (model.decoder_pref["a"], a_bias),
                              (model.decoder_pref["v"], {})):
            decoder.head_decoder.weight.zero_()
            decoder.head_bias.zero_()
            for index, value in bias.items():
                decoder.head_bias[index] = value
    record = {"model": cfg.to_dict(), "train": {}, "data": {}, "experiment": "fixed"}
    save_best(path, model, record, epoch=0, val_acc=None)


def _softmax(bias: dict[int, float]) -> list[float]:
    logits = [bias.get(i, 0.0) for i in range(len(ANSWERS))]
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ask") / "clip.mp4"
    write_clip(path, seconds=3, fps=5, tone_hz=440)
    return path


def test_ask_reports_the_checkpoints_answer_probabilities_and_driver(clip_path, tmp_path):
    qa_bias, a_bias = {ANSWER: 6.0, RUNNER_UP: 5.0}, {ANSWER: 4.0}
    _fixed_checkpoint(tmp_path / "fixed.pt", qa_bias, a_bias)
    result = ask(clip_path, "How many instruments are sounding?", tmp_path / "fixed.pt", ClipEncoder.tiny(),
                 VGGishEncoder.load(random_init=True), seconds=3)
    # the official combination sums the three heads' logits (ModelConfig.combine == "logits_sum")
    assert ModelConfig.official().combine == "logits_sum"
    summed = {i: qa_bias.get(i, 0.0) + a_bias.get(i, 0.0) for i in set(qa_bias) | set(a_bias)}
    probabilities = _softmax(summed)
    expected = sorted(((ANSWERS[i], probabilities[i]) for i in range(len(ANSWERS))), key=lambda pair: -pair[1])[:5]
    assert result["answer"] == "three"
    assert [name for name, _ in result["top"]][:2] == ["three", "yes"]
    assert [p for _, p in result["top"]] == pytest.approx([p for _, p in expected], rel=1e-4)
    # push = each path's logit for the answer minus its mean logit; audio pushes, visual does not
    assert result["push"]["a"] == pytest.approx(4.0 - 4.0 / len(ANSWERS), rel=1e-5)
    assert result["push"]["v"] == pytest.approx(0.0, abs=1e-6)
    assert result["driver"] == "audio"

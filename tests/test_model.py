"""The AV-Master model: shapes, presets, every ablation switch, gradients, determinism, batch checks."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from avmaster_core import ModelConfig, build_model
from avmaster_core.training.benchmark import random_batch
from avmaster_core.core.experiments import EXPERIMENT_SEGMENTS, EXPERIMENTS, experiment
from avmaster_core.core.model import combine_logits, count_parameters

OFFICIAL_USED = 50_646_913


def make(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def batch_for(cfg, b=2, t=3, seed=1, negatives=True):
    return random_batch(b, t, cfg, "cpu", generator=torch.Generator().manual_seed(seed), negatives=negatives)


@pytest.fixture(scope="module")
def official():
    return make(ModelConfig.official())


@pytest.fixture(scope="module")
def paper():
    return make(ModelConfig.paper())


# ------------------------------------------------------------------ shapes, any B and T
@pytest.mark.parametrize("b,t", [(1, 1), (2, 3), pytest.param(3, 7, marks=pytest.mark.slow)])
@pytest.mark.parametrize("preset", ["official", "paper"])
def test_output_shapes_any_batch_and_segments(preset, b, t, official, paper):
    model = official if preset == "official" else paper
    cfg = model.cfg
    batch = batch_for(cfg, b, t)
    for training in (False, True):
        model.train(training)
        out = model(batch)
        for key in ("logits", "logits_qa", "logits_a", "logits_v"):
            assert out[key].shape == (b, 42), key
            assert torch.isfinite(out[key]).all(), key
        losses = model.loss(out, batch)
        assert set(losses) == {"qa", "a", "v", "c", "total"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    model.eval()


def test_parameter_counts(official, paper):
    assert count_parameters(official) == OFFICIAL_USED
    assert count_parameters(paper) != OFFICIAL_USED
    assert official.proj_audio.weight.shape == (768, 128) and paper.proj_audio.weight.shape == (512, 128)


# ------------------------------------------------------------------ templates and the bias (Sec. III-B)
@pytest.mark.slow
def test_official_eval_templates_identical_and_bias_inert(official):
    cfg = official.cfg
    batch = batch_for(cfg, 2, 5, negatives=False)
    official.eval()
    official.collapse_templates = False  # run the full K-row recurrence
    try:
        with torch.no_grad():
            out = official(batch)
            for m in ("a", "v"):
                rows = out[f"focus_{m}"]  # [B, K, D]
                assert rows.shape[1] == cfg.num_templates
                torch.testing.assert_close(rows, rows[:, :1].expand_as(rows), rtol=1e-5, atol=1e-5)
            saved = {k: v.clone() for k, v in official.focus_bias.items()}
            for p in official.focus_bias.values():
                p.add_(torch.randn_like(p) * 3)
            changed = official(batch)
            for k, v in saved.items():
                official.focus_bias[k].copy_(v)
    finally:
        official.collapse_templates = None
    torch.testing.assert_close(changed["logits"], out["logits"], rtol=1e-5, atol=1e-5)
    # and the collapsed fast path gives the same logits
    with torch.no_grad():
        fast = official(batch)
    torch.testing.assert_close(fast["logits"], out["logits"], rtol=1e-4, atol=1e-4)


def test_official_train_mode_rows_diverge(official):
    batch = batch_for(official.cfg, 2, 4, negatives=False)
    official.train()
    torch.manual_seed(3)
    with torch.no_grad():
        rows = official(batch)["focus_a"]
    official.eval()
    assert (rows - rows[:, :1]).abs().max() > 1e-3  # dropout breaks the symmetry, as in the released code


def test_paper_templates_differ_and_bias_matters(paper):
    batch = batch_for(paper.cfg, 2, 4, negatives=False)
    paper.eval()
    with torch.no_grad():
        out = paper(batch)
        rows = out["focus_v"]
        assert rows.shape[1] == 8 and (rows - rows[:, :1]).abs().max() > 1e-3
        saved = paper.focus_bias["v"].clone()
        paper.focus_bias["v"].add_(1.0)
        changed = paper(batch)
        paper.focus_bias["v"].copy_(saved)
    assert (changed["logits"] - out["logits"]).abs().max() > 1e-4


# ------------------------------------------------------------------ switches
def test_every_experiment_is_a_valid_config():
    for name in EXPERIMENTS:
        for preset in ("official", "paper"):
            cfg = experiment(name, preset)
            assert isinstance(cfg, ModelConfig)
    assert experiment("table9/len4").num_templates == 4
    assert experiment("table13/mul").combine == "mul"
    assert experiment("fig5/a+q").inputs == "a"
    assert experiment("fig7/qa=0.4").lambda_qa == 0.4
    assert EXPERIMENT_SEGMENTS["fig4/T48"] == 48
    with pytest.raises(KeyError, match="unknown experiment"):
        experiment("table7/wo_everything")


def _count(cfg):
    return count_parameters(build_model(cfg))


def test_sharing_switches_change_parameter_count():
    base = ModelConfig.official()
    n = OFFICIAL_USED
    focus_recurrent = 1_182_465 + 5_517_056 + 1_536  # ENC + DEC + final norm (docs/released-code.md §8)
    embed = 590_592
    assert _count(dataclasses.replace(base, share_focus_block=False)) == n + focus_recurrent + embed
    assert _count(dataclasses.replace(base, share_bias=True)) == n - 8 * 768
    assert _count(dataclasses.replace(base, num_templates=16)) == n + 2 * 8 * 768


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table10/none", "table10/bs", "table9/len2"])
def test_sharing_variants_run_and_match_collapsed(name):
    model = make(experiment(name)).eval()
    batch = batch_for(model.cfg, 2, 3)
    with torch.no_grad():
        fast = model(batch)["logits"]
        model.collapse_templates = False
        full = model(batch)["logits"]
    torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-4)
    model.train()
    assert torch.isfinite(model.loss(model(batch), batch)["total"])


def test_component_switches(official):
    cfg = ModelConfig.official()
    batch = batch_for(cfg, 2, 3)
    no_focus = make(dataclasses.replace(cfg, use_focus=False)).eval()
    with torch.no_grad():
        out = no_focus(batch)
    assert out["focus_a"].shape == (2, 3, 768)  # w/o AVFC: fusion attends over all T frames
    assert count_parameters(no_focus) == OFFICIAL_USED - (1_182_465 + 5_517_056 + 1_536) - 2 * 8 * 768

    no_tdpp = make(experiment("table7/wo_tdpp")).eval()
    with torch.no_grad():
        out = no_tdpp(batch)
    assert out["logits_qa"] is None
    torch.testing.assert_close(out["logits"], out["logits_a"] + out["logits_v"])
    assert float(no_tdpp.loss(out, batch)["qa"]) == 0.0

    no_gpap = make(experiment("table7/wo_gpap")).eval()
    with torch.no_grad():
        out = no_gpap(batch)
    assert out["logits_a"] is None and out["logits_v"] is None
    torch.testing.assert_close(out["logits"], out["logits_qa"])

    wo_all = make(experiment("table7/wo_all")).eval()
    with torch.no_grad():
        assert wo_all(batch)["logits"].shape == (2, 42)


@pytest.mark.parametrize("inputs,present,absent", [("a", "audio", "visual"), ("v", "visual", "audio")])
def test_single_modality_inputs(inputs, present, absent):
    cfg = ModelConfig.official(inputs=inputs)
    model = make(cfg).eval()
    batch = batch_for(ModelConfig.official(), 2, 3)
    batch.pop(absent)
    batch.pop("neg_" + absent)
    with torch.no_grad():
        out = model(batch)
    other = "v" if inputs == "a" else "a"
    assert out[f"logits_{other}"] is None and out[f"logits_{inputs}"].shape == (2, 42)
    assert model.fuse.in_features == 2 * 768
    model.train()
    losses = model.loss(model(batch), batch)
    assert float(losses[other].detach()) == 0.0 and float(losses["c"].detach()) > 0


def test_question_only_baseline_ignores_audio_and_visual():
    cfg = dataclasses.replace(experiment("baseline/question_only"), dim=64, focus_ffn=128)
    model = make(cfg).eval()
    assert model.proj_audio is None and model.proj_visual is None
    batch = batch_for(ModelConfig.official(), 3, 4)
    other = batch_for(ModelConfig.official(), 3, 4, seed=7)
    other.update(question=batch["question"], words=batch["words"])  # same question, other audio/visual
    with torch.no_grad():
        out = model(batch)
        assert torch.equal(out["logits"], model(other)["logits"])
    assert out["logits_a"] is None and out["logits_v"] is None
    with pytest.raises(ValueError, match="question only"):
        ModelConfig.official(inputs="q")


def test_combine_modes_and_table12():
    torch.manual_seed(0)
    lg = {k: torch.randn(3, 42) for k in ("qa", "a", "v")}
    p = {k: torch.softmax(v, -1) for k, v in lg.items()}
    off = ModelConfig.official()
    torch.testing.assert_close(combine_logits(lg, off), lg["qa"] + lg["a"] + lg["v"])
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(off, inference_use_a=False)), lg["qa"] + lg["v"])
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(off, inference_use_v=False)), lg["qa"] + lg["a"])
    torch.testing.assert_close(
        combine_logits(lg, dataclasses.replace(off, inference_use_a=False, inference_use_v=False)), lg["qa"])
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(off, combine="prob_sum")),
                               torch.log(p["qa"] + p["a"] + p["v"]))
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(off, combine="mul")),
                               torch.log(p["qa"] + p["a"] * p["v"]))
    wa, wv = p["a"].amax(-1, keepdim=True), p["v"].amax(-1, keepdim=True)
    w_a = wa.exp() / (wa.exp() + wv.exp())
    torch.testing.assert_close(combine_logits(lg, dataclasses.replace(off, combine="w_add")),
                               torch.log(p["qa"] + w_a * p["a"] + (1 - w_a) * p["v"]))


def test_loss_weights_and_table8(official):
    batch = batch_for(official.cfg, 3, 2)
    official.eval()
    with torch.no_grad():
        out = official(batch)
    base = official.loss(out, batch)
    assert base["c"] > 0
    torch.testing.assert_close(base["total"], base["qa"] + base["a"] + base["v"] + base["c"])
    cfg7 = dataclasses.replace(official.cfg, lambda_qa=0.4, lambda_a=1.3, lambda_v=0.7, lambda_c=1.6)
    from avmaster_core.core.losses import total_loss
    w = total_loss(out, batch["label"], cfg7, training=False)
    torch.testing.assert_close(w["total"], 0.4 * base["qa"] + 1.3 * base["a"] + 0.7 * base["v"] + 1.6 * base["c"])
    only_qa = total_loss(out, batch["label"], experiment("table8/qa"), training=False)
    torch.testing.assert_close(only_qa["total"], base["qa"])


# ------------------------------------------------------------------ Fig. 6 and Fig. 8 read-outs
@pytest.mark.slow
def test_step_logits_and_word_attention(official, paper):
    for model in (official, paper):
        model.eval()
        batch = batch_for(model.cfg, 2, 4, negatives=False)
        with torch.no_grad():
            out, steps, attention = model(batch), model.step_logits(batch), model.word_attention(batch)
        assert steps.shape == (2, 4, 42)
        torch.testing.assert_close(steps[:, -1], out["logits"], rtol=1e-4, atol=1e-4)
        for m in ("a", "v"):
            att = attention[m]
            assert att.shape == (2, 4, 77)
            torch.testing.assert_close(att.sum(-1), torch.ones(2, 4))


# ------------------------------------------------------------------ learning
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["official", "paper"])
def test_gradients_reach_every_learning_parameter(preset):
    cfg = ModelConfig.official() if preset == "official" else ModelConfig.paper()
    model = make(cfg).train()
    batch = batch_for(cfg, 3, 3)
    torch.manual_seed(0)
    model.loss(model(batch), batch)["total"].backward()
    # exactly zero in the released math too: the additive score vector w sees K identical keys (uniform
    # softmax), a key bias adds the same score to every key of a query (cancels in the softmax), and the
    # answer decoder attends to one memory token (F_fu), so its query/key projections cannot matter.
    inert = ("focus.first.w.", ".key.bias", "decoder_qa.layers.0.query.", "decoder_qa.layers.0.key.",
             "decoder_qa.layers.1.query.", "decoder_qa.layers.1.key.")
    for name, p in model.named_parameters():
        if any(s in name for s in inert):
            continue
        assert p.grad is not None, f"{name} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.slow
def test_same_seed_same_logits():
    cfg = ModelConfig.official()
    batch = batch_for(cfg, 2, 3, negatives=False)
    a, b = make(cfg, seed=5).eval(), make(cfg, seed=5).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(batch)["logits"], b(batch)["logits"], rtol=0, atol=0)
    c = make(cfg, seed=6).eval()
    with torch.no_grad():
        assert not torch.equal(a(batch)["logits"], c(batch)["logits"])


def test_bf16_autocast_cpu(official):
    batch = batch_for(official.cfg, 2, 2)
    official.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = official(batch)
        loss = official.loss(out, batch)["total"]
    official.eval()
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ bad batches
@pytest.mark.parametrize("key", ["audio", "visual", "question", "words"])
def test_bad_batches_name_the_key(official, key):
    cfg = official.cfg
    official.eval()
    batch = batch_for(cfg, 2, 3, negatives=False)
    missing = dict(batch)
    missing.pop(key)
    with pytest.raises(ValueError, match=key):
        official(missing)
    wrong = dict(batch)
    wrong[key] = batch[key][..., :5]
    with pytest.raises(ValueError, match=key):
        official(wrong)
    nan = dict(batch)
    nan[key] = batch[key].clone()
    nan[key].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=key):
        official(nan)


@pytest.mark.slow
def test_bad_labels_and_mismatched_segments(official):
    batch = batch_for(official.cfg, 2, 3)
    official.eval()
    with torch.no_grad():
        out = official(batch)
    bad = dict(batch, label=torch.tensor([0, 42]))
    with pytest.raises(ValueError, match="label"):
        official.loss(out, bad)
    nolabel = {k: v for k, v in batch.items() if k != "label"}
    with pytest.raises(ValueError, match="label"):
        official.loss(out, nolabel)
    with pytest.raises(ValueError, match="neg_visual"):
        official(dict(batch, neg_visual=batch["neg_visual"][:, :2]))
    official.train()
    with pytest.raises(ValueError, match="neg_audio"):
        official.loss(official({k: v for k, v in batch.items() if not k.startswith("neg_")}), batch)
    official.eval()


@pytest.mark.slow
def test_inference_weight_cache_follows_in_place_updates():
    cfg = ModelConfig.official()
    model = make(cfg).eval()
    batch = batch_for(cfg, 2, 3, negatives=False)
    with torch.no_grad():
        model(batch)  # fills the cache of folded weight products
        for p in (model.focus.layer.self_attn.out_proj.weight, model.context.self_attn.in_proj_weight):
            p.mul_(1.5)
        cached = model(batch)["logits"]
    fresh = build_model(cfg).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(cached, fresh(batch)["logits"], rtol=0, atol=0)

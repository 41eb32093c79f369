"""Official checkpoints: key mapping round trip, errors, parameter counts, and equality with a literal
loop-based reference of the released forward (tests/official_reference.py) in eval mode."""
from __future__ import annotations

import pytest
import torch

from avmaster_core import ModelConfig, from_official_state_dict
from avmaster_core.training.benchmark import random_batch
from avmaster_core.core.official import official_keys, official_parameter_counts, to_official_state_dict

from official_reference import reference_forward, random_official_state_dict


@pytest.fixture(scope="module")
def state_dict():
    return random_official_state_dict([(k.name, k.shape, k.used) for k in official_keys()], seed=0)


@pytest.fixture(scope="module")
def loaded(state_dict):
    return from_official_state_dict(state_dict)


def test_counts():
    counts = official_parameter_counts()
    assert counts == {"used": 50_646_913, "dead": 10_671_104, "released_total": 61_318_017}
    assert len(official_keys()) == 257


def test_round_trip(state_dict, loaded):
    assert not loaded.training
    back = to_official_state_dict(loaded)
    assert set(back) == set(state_dict)
    for key in official_keys():
        if key.used:
            assert torch.equal(back[key.name], state_dict[key.name]), key.name
    assert sum(p.numel() for p in loaded.parameters()) == official_parameter_counts()["used"]


def test_unused_keys_optional_and_dataparallel_prefix(state_dict):
    used_only = {k.name: state_dict[k.name] for k in official_keys() if k.used}
    from_official_state_dict(used_only)
    from_official_state_dict({"module." + k: v for k, v in used_only.items()})


def test_missing_misshaped_unknown_keys(state_dict):
    sd = dict(state_dict)
    sd.pop("fc_answer_pred2.head.bias")
    with pytest.raises(ValueError, match="fc_answer_pred2.head.bias"):
        from_official_state_dict(sd)
    sd = dict(state_dict, **{"bisa_v.weight": torch.zeros(4, 768)})
    with pytest.raises(ValueError, match="bisa_v.weight"):
        from_official_state_dict(sd)
    sd = dict(state_dict, **{"not_a_key": torch.zeros(1)})
    with pytest.raises(ValueError, match="not_a_key"):
        from_official_state_dict(sd)
    with pytest.raises(ValueError, match="official checkpoints"):
        from_official_state_dict(state_dict, ModelConfig.official(num_templates=4))


@pytest.mark.parametrize("b,t", [pytest.param(8, 3, marks=pytest.mark.slow), (2, 12)])  # B = 8 also exercises the absorbed single-head attention
def test_matches_released_forward(state_dict, loaded, b, t):
    cfg = ModelConfig.official()
    batch = random_batch(b, t, cfg, "cpu", generator=torch.Generator().manual_seed(t))
    with torch.no_grad():
        ref = reference_forward(state_dict, batch)
        out = loaded(batch)
        losses = loaded.loss(out, batch)
    for key in ("logits_qa", "logits_a", "logits_v", "logits"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-4, msg=key)
    torch.testing.assert_close(losses["c"], ref["c"], rtol=1e-4, atol=1e-5)
    assert torch.equal(out["logits"].argmax(-1), ref["logits"].argmax(-1))


def test_inference_fields_may_change(state_dict):
    model = from_official_state_dict(state_dict, ModelConfig.official(inference_use_v=False))
    batch = random_batch(2, 2, model.cfg, "cpu", generator=torch.Generator().manual_seed(0), negatives=False)
    with torch.no_grad():
        out = model(batch)
    torch.testing.assert_close(out["logits"], out["logits_qa"] + out["logits_a"])

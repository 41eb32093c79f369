"""The experiments registry (avmaster_core.experiments) and what config derives from ModelConfig's field metadata."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from avmaster_core import config, experiments, paper
from avmaster_core.benchmark import random_batch
from avmaster_core.model import build_model
from conftest import tiered

pytestmark = pytest.mark.usefixtures("one_thread")  # cpu-size models


@pytest.mark.parametrize("preset", ["official", "paper"])
@pytest.mark.parametrize("name", tiered(config.EXPERIMENTS))
def test_eval_fast_path_gives_the_plain_path_logits(name, preset):
    """The exact one-row template shortcut (taken where config.templates_stay_identical) changes no logit."""
    cfg = config.experiment(name, preset, size="cpu")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = random_batch(3, 5, cfg, "cpu", generator=torch.Generator().manual_seed(1), negatives=False)
    with torch.no_grad():
        model.collapse_templates = None  # automatic: the shortcut wherever it is exact
        fast = model(batch)["logits"]
        model.collapse_templates = False  # every K template row computed
        plain = model(batch)["logits"]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_templates_stay_identical_is_derived_from_the_field_metadata():
    marked = {f.name for f in dataclasses.fields(config.ModelConfig) if "identical_templates" in f.metadata}
    assert marked == {"use_focus", "template_init", "bias_mode"}
    assert config.ModelConfig.official().templates_stay_identical
    for name in marked:  # moving any marked field off its listed values turns the shortcut off
        other = {"use_focus": False, "template_init": "learned", "bias_mode": "add"}[name]
        assert not config.ModelConfig.official(**{name: other}).templates_stay_identical
    assert not config.ModelConfig.paper().templates_stay_identical


def test_inference_fields_come_from_metadata_and_evaluation_refuses_the_others():
    assert config.INFERENCE_FIELDS == {"combine", "inference_use_a", "inference_use_v", "answer_heads"}
    cfg = config.ModelConfig.official()
    assert config.apply_inference_changes(cfg, {"combine": "mul"}).combine == "mul"
    assert config.apply_inference_changes(cfg, None) is cfg
    with pytest.raises(ValueError, match=r"\['lambda_c'\].*inference-only fields: answer_heads, combine, inference_use_a"):
        config.apply_inference_changes(cfg, {"lambda_c": 0.0, "combine": "mul"})
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        config.check_inference_changes({"no_such_field": 1})


def test_inference_only_experiments_are_tables_xii_and_xiii_variants():
    only = {e.name for e in experiments.ENTRIES if e.inference_only}
    assert only == {"table12/wo_ape", "table12/wo_vpe", "table12/wo_avpe", "table13/add", "table13/logit_sum",
                    "table13/mul", "table13/w_add"}


def test_table13_add_is_the_sum_of_the_distributions_on_both_presets():
    # the paper's ADD sums probabilities; the released logit sum is its own row, not "ADD" on the official preset
    for preset in ("official", "paper"):
        assert config.experiment("table13/add", preset).combine == "prob_sum"
        assert config.experiment("table13/logit_sum", preset).combine == "logits_sum"
    assert paper.EXPERIMENT_ROWS["table13"] == {"ADD": "table13/add", "MUL": "table13/mul", "W-ADD": "table13/w_add",
                                                experiments.LOGIT_SUM_ROW: "table13/logit_sum"}
    assert "PRODUCT" in experiments.get("table13/logit_sum").reading


def test_the_logit_sum_ranks_answers_as_the_product_of_the_distributions():
    import torch

    from avmaster_core.model import combine_logits
    torch.manual_seed(0)
    heads = {k: torch.randn(64, 42) * 3 for k in ("qa", "a", "v")}
    cfg = config.experiment("table13/logit_sum")
    product = torch.stack([torch.log_softmax(v, -1) for v in heads.values()]).sum(0)
    assert torch.equal(combine_logits(heads, cfg).argmax(-1), product.argmax(-1))
    summed = combine_logits(heads, config.experiment("table13/add"))
    assert not torch.equal(summed.argmax(-1), product.argmax(-1))  # ADD is another operator


def test_equal_configurations_share_one_run_set_derived_from_the_configurations():
    shared = experiments.shared_runs()
    assert shared["table8/qa+a+v"] == "table7/wo_dpcl" and shared["table7/wo_dpcl"] == "table7/wo_dpcl"
    assert {shared[f"fig7/{w}=1.0"] for w in ("qa", "a", "v", "c")} == {experiments.FULL_MODEL}
    assert shared["table8/all"] == shared["table12/full"] == experiments.FULL_MODEL
    assert paper.EXPERIMENT_ROWS["table8"][5] == "table7/wo_dpcl"
    # derived, not listed: every pair of experiments with equal configurations maps to one run, the others do not
    for a in experiments.REGISTRY:
        for b in experiments.REGISTRY:
            same = experiments._configuration(a) == experiments._configuration(b)
            assert (shared[a] == shared[b]) == same, (a, b)
    assert experiments.same_configuration("table7/wo_dpcl") == ["table8/qa+a+v"]


def test_every_filled_cell_exists_in_the_paper_and_every_run_is_named():
    for entry in experiments.ENTRIES:
        for source, key in entry.fills:
            assert source in paper.NAMES, entry.name
            if source.startswith("table") and key != experiments.LOGIT_SUM_ROW:  # our extra row of Table XIII
                assert key in paper.paper_table(source).index, (entry.name, key)
    for rows in paper.EXPERIMENT_ROWS.values():
        assert set(rows.values()) <= set(config.EXPERIMENTS)
    # rows whose configuration is the full model's reuse its run; Fig. 4 points differ by their segments
    assert paper.EXPERIMENT_ROWS["table9"][8] == experiments.FULL_MODEL
    assert experiments.run_for("fig4/T48") == "fig4/T48"
    assert experiments.run_for("table10/as") == experiments.FULL_MODEL


def test_readings_name_the_papers_words():
    assert all("0.4" in experiments.get(f"fig7/qa={v}").reading for v in experiments.FIG7_VALUES)
    assert "retrain" in experiments.get("fig4/T48").reading and "48" in experiments.get("fig4/T12").reading
    assert experiments.get("table7/wo_tdpp").reading is None
    with pytest.raises(KeyError, match="unknown experiment 'nope'"):
        experiments.get("nope")


def test_evaluate_set_refuses_a_training_field_before_building_the_model(tmp_path, capsys):
    from avmaster_core import cli

    checkpoint = tmp_path / "best.pt"  # no weights needed: the change is refused first
    torch.save({"model_config": config.ModelConfig.official().to_dict(), "model": {}}, checkpoint)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--root", str(tmp_path),
            "--device", "cpu", "--set", "dim=64"]
    assert cli.main(args) == 1  # the CLI prints domain errors (issue 14); --debug raises them
    assert "['dim'] change the trained model" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\['dim'\] change the trained model.*inference-only fields: answer_heads, combine"):
        cli.main([*args, "--debug"])

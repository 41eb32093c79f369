"""Every experiment that fills a paper cell changes what that cell says, derived from the cell itself (issue 28:
an ablation mapped to the wrong field was caught only by the notebooks' stored outputs): the loss checkmarks of
Table VIII, the lengths of Table IX, the sharing flags of Table X, the weight and value of each Fig. 7 point,
... Also the registry's lookups (filled_by, filling, sources, run_label) and its entries' read-only changes."""
from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from avmaster_core.core import experiments
from avmaster_core.core.experiments import Experiment, experiment, filled_by
from avmaster_core.results import paper

FULL = dataclasses.asdict(experiment(experiments.FULL_MODEL))
LOSS_FIELDS = {"L_qa": "lambda_qa", "L_c": "lambda_c", "L_a^p": "lambda_a", "L_v^p": "lambda_v",
               "lambda_qa": "lambda_qa", "lambda_c": "lambda_c", "lambda_a^p": "lambda_a", "lambda_v^p": "lambda_v"}


def changed(name: str) -> dict:
    """The ModelConfig fields of `name` that differ from the full model's (official preset, full size)."""
    return {k: v for k, v in dataclasses.asdict(experiment(name)).items() if v != FULL[k]}


def test_table8_rows_switch_off_exactly_the_unchecked_losses():
    table = paper.paper_table("table8")
    for row, name in filled_by("table8").items():
        off = {LOSS_FIELDS[c]: 0.0 for c in paper.LOSS_COLUMNS if not table.loc[row, c]}
        assert changed(name) == off, (row, name)


def test_table9_rows_are_template_lengths_and_table10_rows_the_sharing_flags():
    for length, name in filled_by("table9").items():
        assert experiment(name).num_templates == length and set(changed(name)) <= {"num_templates"}
    table = paper.paper_table("table10")
    for row, name in filled_by("table10").items():
        cfg = experiment(name)
        assert (cfg.share_focus_block, cfg.share_bias) == (bool(table.loc[row, "A-S"]), bool(table.loc[row, "B-S"]))
        assert set(changed(name)) <= {"share_focus_block", "share_bias"}


def test_fig7_points_set_one_weight_to_their_value():
    for (weight, value), name in filled_by("fig7").items():
        expected = {LOSS_FIELDS[weight]: value} if value != FULL[LOSS_FIELDS[weight]] else {}
        assert changed(name) == expected, name


def test_fig4_points_are_segment_counts_of_the_full_model():
    for segments, name in filled_by("fig4").items():
        assert experiments.get(name).segments == segments and changed(name) == {}


def test_fig5_inputs_and_the_inference_rows_of_tables_xii_and_xiii():
    assert {label: changed(name) for label, name in filled_by("fig5").items()} == {
        "A+Q": {"inputs": "a"}, "V+Q": {"inputs": "v"}, "A+V+Q": {}}
    assert {label: changed(name) for label, name in filled_by("table12").items()} == {
        "w/o. APE": {"inference_use_a": False}, "w/o. VPE": {"inference_use_v": False},
        "w/o. AVPE": {"inference_use_a": False, "inference_use_v": False}, "AV-Master": {}}
    combine = {label: experiment(name).combine for label, name in filled_by("table13").items()}
    assert combine == {"ADD": "prob_sum", "MUL": "mul", "W-ADD": "w_add", "logit sum (released)": "logits_sum"}


def test_table7_rows_remove_their_module():
    switch = {"AVFC": {"use_focus": False}, "GPAP": {"use_gpap": False}, "DPCL": {"lambda_c": 0.0},
              "TDPP": {"use_tdpp": False}}
    for label, name in filled_by("table7").items():  # w/o. ALL: the three modules of the paper's Table VII text
        removed = {"w/o. ALL": ["AVFC", "GPAP", "DPCL"], "AV-Master": []}.get(label, [label.removeprefix("w/o. ")])
        wanted = {k: v for module in removed for k, v in switch[module].items()}
        assert wanted.items() <= changed(name).items(), (label, changed(name))
        assert (changed(name) == {}) == (label == "AV-Master")


def test_table11_rows_train_on_their_encoders_features():
    names = {"CLIP_L": "clip", "CLIP_B": "clip-b", "Resnet-18": "resnet18", "VGGish": "vggish", "CLAP": "clap",
             "Internvideo2": "internvideo2"}
    for (visual, audio, _), name in filled_by("table11").items():
        features = experiments.get(name).features
        assert (features or ("clip", "vggish")) == (names[visual], names[audio]) and changed(name) == {}


def test_lookups():
    assert experiments.sources() == tuple(dict.fromkeys(s for e in experiments.ENTRIES for s, _ in e.fills))
    assert len(experiments.sources()) == len(set(experiments.sources())) and "table8" in experiments.sources()
    assert filled_by("nothing") == {} and filled_by("table8")[5] == "table8/qa+a+v"   # its own entry, first
    assert experiments.filling("table8")[5] == "table7/wo_dpcl" and experiments.filling("table8")[1] == "table8/qa"
    label = experiments.get("default").label
    assert experiments.run_label("default") == f"{label}, official preset `default`"
    assert experiments.run_label("paper/default") == f"{label}, paper preset `paper/default`"
    other = experiments.get("table7/wo_tdpp").label
    assert experiments.run_label("table7/wo_tdpp") == f"{other} `table7/wo_tdpp`"
    assert experiments.run_label("paper/table7/wo_tdpp") == f"{other}, paper preset `paper/table7/wo_tdpp`"


def test_an_entrys_changes_are_a_read_only_copy():
    given = {"lambda_c": 0.5}
    entry = Experiment("x", given, "x")
    given["lambda_c"] = 2.0
    assert isinstance(entry.changes, MappingProxyType) and dict(entry.changes) == {"lambda_c": 0.5}
    with pytest.raises(TypeError):
        entry.changes["lambda_c"] = 1.0


def test_shared_runs_are_derived_once_from_the_configurations(monkeypatch):
    monkeypatch.setattr(experiments, "_SHARED", None)  # derive again here, not from the import's cache
    shared = experiments.shared_runs()
    assert isinstance(shared, MappingProxyType) and experiments.shared_runs() is shared
    assert list(shared) == list(experiments.REGISTRY)
    assert shared["table8/qa+a+v"] == "table7/wo_dpcl" and shared["table9/len8"] == experiments.FULL_MODEL
    assert shared["fig4/T12"] == "fig4/T12" and shared["table11/clip+clap"] == "table11/clip+clap"
    assert all(shared[shared[name]] == shared[name] for name in shared)  # a run set's owner owns itself


def test_presets_sizes_and_refusals():
    from avmaster_core.core.config import SIZES, ModelConfig

    assert experiment("default") == ModelConfig.official()
    assert experiment("default", "paper") == ModelConfig.paper()
    assert experiment("table9/len2", "paper", "cpu") == dataclasses.replace(ModelConfig.paper(), **SIZES["cpu"],
                                                                         num_templates=2)
    with pytest.raises(ValueError, match=r"^preset must be 'official' or 'paper', got 'Official'$"):
        experiment("default", "Official")
    with pytest.raises(ValueError, match=rf"^unknown size 'huge'; choose one of {', '.join(SIZES)}$"):
        experiment("default", size="huge")
    with pytest.raises(KeyError) as info:
        experiment("nope")
    assert info.value.args[0] == f"unknown experiment 'nope'; known: {', '.join(experiments.REGISTRY)}"

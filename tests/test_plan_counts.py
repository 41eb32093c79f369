"""`avmaster reproduce`'s plan against a count made by hand from the paper, artefact by artefact, and its
structural invariants on every artefact at once (issue 28: an item listed twice, Fig. 7 with 40 items
instead of 34, must fail here). Fast: the plan is built once, on empty folders (every item blocked)."""
from __future__ import annotations

from collections import Counter

import pytest

from avmaster_core.reproduction.plan import ReproduceSettings, artefacts, build_plan

SEEDS = (1, 2)

# artefact: (cells, distinct runs, evaluations), runs and evaluations per seed, counted from the paper:
HAND_COUNT = {
    "table2": (1, 1, 0),     # our row: the full model
    "table3": (1, 0, 1),     # the full model scored on MUSIC-AVQA-R's test set (its run counted with Table II)
    "table4": (4, 2, 2),     # 2 x 2 (trained on balance / bias x tested on balance / bias): 2 runs, 2 cross tests
    "table5": (1, 1, 0),     # AVQA: the multiple-choice model
    "table6": (1, 1, 0),     # the full model's run, per question type
    "table7": (6, 6, 0),     # AV-Master + 5 ablations
    "table8": (6, 6, 0),     # 6 loss combinations (row 5 is table7/wo_dpcl's run, row 6 the full model)
    "table9": (5, 5, 0),     # template lengths 2, 4, 8 (the full model), 12, 16
    "table10": (4, 4, 0),    # 4 sharing settings, row 2 the full model
    "table11": (5, 5, 0),    # 5 encoder pairs (CLIP-L + VGGish is the full model), 4 need their own features
    "table12": (4, 1, 3),    # 3 positional-encoding removals at inference + the full model
    "table13": (4, 0, 4),    # 4 combinations at inference, each an evaluation of the full model
    "fig4": (6, 6, 0),       # T = 12, 24, 36, 48, 60 + the full model for the notebook's inference-only curve
    "fig5": (3, 3, 0),       # A+Q, V+Q, A+V+Q (the full model)
    "fig6": (1, 1, 0),       # the full model, per focus step
    "fig7": (20, 17, 0),     # 4 weights x 5 values; the four 1.0 points are one run, the full model: 16 + 1
    "fig8": (1, 1, 0),       # the full model's word attention
}
# The whole plan, per seed: the full model, Table IV's 2, AVQA's 1, Table VII's 5 ablations, Table VIII's 4 not
# in Table VII, Table IX's 4, Table X's 3, Table XI's 4, Fig. 4's 5, Fig. 5's 2, Fig. 7's 16 = 47 runs;
# Table III's 1 + Table IV's 2 + Table XII's 3 + Table XIII's 4 = 10 evaluations. Once for all seeds: 4 feature
# stores of other encoders (Table XI) and one question-features item per benchmark read (MUSIC-AVQA, -R, v2, AVQA).
RUNS, EVALUATIONS, FEATURES, QUESTIONS = 47, 10, 4, 4


@pytest.fixture
def plan(tmp_path):
    """The whole plan, built in each test that asks (a module-scoped fixture's calls would count, for mutmut's map
    of which test reaches which function, for the first test only)."""
    return build_plan(ReproduceSettings(data=str(tmp_path / "d"), runs=str(tmp_path / "r"), results=str(tmp_path / "o"),
                                        seeds=SEEDS))


def test_the_hand_count_names_every_artefact():
    assert list(HAND_COUNT) == list(artefacts())


def test_each_artefact_against_the_hand_count(plan):
    """One test over every artefact (one case per artefact would share one plan, which mutmut credits to the first
    case only)."""
    wrong = {}
    for name, (cells, runs, evaluations) in HAND_COUNT.items():
        art = plan.artefacts[name]
        labels = [label for label, _ in art.cells]
        items = plan.artefact_items(name)
        kinds = Counter(i.kind for i in items)
        seeds = [sorted(plan.items[k].spec.seed if plan.items[k].kind == "train" else plan.items[k].spec.run.seed
                        for k in keys) for _, keys in art.cells]
        found = (len(art.cells), kinds["train"] // len(SEEDS), kinds["evaluate"] // len(SEEDS))
        if found != (cells, runs, evaluations) or len(set(map(str, labels))) != len(labels) \
                or any(s != list(SEEDS) for s in seeds) or len({i.key for i in items}) != len(items) \
                or not all(name in i.artefacts for i in items) or kinds["train"] % len(SEEDS):
            wrong[name] = (found, labels, seeds)
    assert wrong == {}
    assert [label for label, _ in plan.artefacts["table4"].cells] == [
        (test, train, "AV-Master") for test in ("Balance", "Bias") for train in ("Balance", "Bias")]
    assert [label for label, _ in plan.artefacts["table3"].cells] == ["AV-Master"]
    assert [label for label, _ in plan.artefacts["fig6"].cells] == ["full model, for the notebook"]
    assert plan.artefacts["fig4"].cells[-1][0] == "full model, for the notebook"
    notebooks = {name: art.notebook.stem for name, art in plan.artefacts.items()}
    assert notebooks["table7"] == "14_table7_components" and notebooks["fig8"] == "24_fig8_word_attention"
    assert notebooks["table12"] == notebooks["table13"] == "19_table12_13_inference_variants"
    table4 = {label: [plan.items[k] for k in keys] for label, keys in plan.artefacts["table4"].cells}
    for (test, train, _), items in table4.items():  # trained on `train`, scored on `test`'s test set
        assert {i.spec.proto.name if i.kind == "train" else i.spec.run.proto.name for i in items} == {train.lower()}
        assert all((i.kind == "train") == (test == train) for i in items)
        assert all(i.spec.split == f"test_{test.lower()}" for i in items if i.kind == "evaluate")


def test_the_whole_plan_against_the_hand_count(plan):
    kinds = Counter(i.kind for i in plan.items.values())
    assert dict(kinds) == {"train": RUNS * len(SEEDS), "evaluate": EVALUATIONS * len(SEEDS), "features": FEATURES,
                           "questions": QUESTIONS}
    specs = [i.spec for i in plan.items.values()]
    assert len(set(specs)) == len(specs)                                # no item twice under two keys
    assert all(k == i.key for k, i in plan.items.items())
    assert all(len(i.artefacts) == len(set(i.artefacts)) for i in plan.items.values())
    assert len(plan.item_list()) == len(plan.items) == len({i.key for i in plan.item_list()})
    # every evaluation's run and every other-encoder run's features are items of the plan too
    for item in plan.items.values():
        if item.kind == "evaluate":
            assert item.spec.run.key in plan.items
        if item.kind == "train" and item.spec.features:
            assert any(i.kind == "features" and i.spec.dataset == item.spec.dataset for i in plan.items.values())


def test_only_selects_without_repeating(tmp_path):
    settings = ReproduceSettings(data=str(tmp_path / "d"), runs=str(tmp_path / "r"), results=str(tmp_path / "o"),
                                 seeds=(3,))
    plan = build_plan(settings, ["fig7", "Fig7", "table_13"])
    assert list(plan.artefacts) == ["fig7", "table13"]  # in the order named, each once
    kinds = Counter(i.kind for i in plan.items.values())
    assert dict(kinds) == {"train": 17, "evaluate": 4, "questions": 1}  # Table XIII's run is Fig. 7's 1.0 point


def test_question_and_feature_items_and_evaluation_specs(plan):
    questions = {i.spec.dataset: i for i in plan.items.values() if i.kind == "questions"}
    assert {d: (q.spec.splits, q.artefacts) for d, q in questions.items() if d != "music_avqa"} == {
        "music_avqa_r": (("test",), ["table3"]), "avqa": (("train", "val", "test"), ["table5"]),
        "music_avqa_v2": (("train_balance", "val_balance", "test_balance", "test_bias", "train_bias", "val_bias"),
                          ["table4"])}
    main = questions["music_avqa"]
    assert main.spec.splits == ("train", "val", "test")
    assert main.artefacts == [a for a in artefacts() if a not in ("table4", "table5")]  # the paper's order
    features = [i for i in plan.items.values() if i.kind == "features"]
    assert all(i.artefacts == ["table11"] and i.spec.dataset == "music_avqa" for i in features)
    assert {(i.spec.visual, i.spec.audio) for i in features} == {("resnet18", "vggish"), ("clip-b", "vggish"),
                                                                   ("clip", "clap"), ("internvideo2", "internvideo2")}
    evaluations = {i.spec.label: i.spec for i in plan.items.values() if i.kind == "evaluate" and i.spec.run.seed == 1}
    assert {label: spec.changes for label, spec in evaluations.items()} == {
        "table3/music_avqa_r-test": (), "table4/balance-trained-music_avqa_v2-test_bias": (),
        "table4/bias-trained-music_avqa_v2-test_balance": (),
        "table12/wo_ape": (("inference_use_a", False),), "table12/wo_vpe": (("inference_use_v", False),),
        "table12/wo_avpe": (("inference_use_a", False), ("inference_use_v", False)),
        "table13/add": (("combine", "prob_sum"),), "table13/logit_sum": (("combine", "logits_sum"),),
        "table13/mul": (("combine", "mul"),), "table13/w_add": (("combine", "w_add"),)}
    assert (evaluations["table3/music_avqa_r-test"].dataset, evaluations["table3/music_avqa_r-test"].split) == \
        ("music_avqa_r", "test")
    assert evaluations["table12/wo_ape"].run.experiment == "default" and evaluations["table12/wo_ape"].split == "test"
    assert plan.speed is not None and plan.inventory is not None


def test_the_paper_preset_and_training_on_the_validation_file(tmp_path):
    settings = ReproduceSettings(data=str(tmp_path / "d"), runs=str(tmp_path / "r"), results=str(tmp_path / "o"),
                                 seeds=(1,), train_on="val", preset="paper")
    plan = build_plan(settings, ["table3", "table12"])
    labels = sorted(i.spec.label for i in plan.items.values() if i.kind == "evaluate")
    assert labels == ["paper/table12/wo_ape", "paper/table12/wo_avpe", "paper/table12/wo_vpe",
                      "paper/table3/music_avqa_r-test"]
    questions = {i.spec.dataset: set(i.spec.splits) for i in plan.items.values() if i.kind == "questions"}
    assert questions == {"music_avqa": {"val", "test"}, "music_avqa_r": {"test"}}  # no train file read


def test_an_artefact_no_run_fills_is_refused_naming_the_choices(tmp_path):
    from avmaster_core.reproduction.plan import select_artefacts

    with pytest.raises(KeyError) as info:
        select_artefacts(["table1"])
    assert info.value.args[0] == f"table1: not reproduced by runs (paper-only); choose among {', '.join(artefacts())}"
    assert select_artefacts([]) == list(artefacts()) == select_artefacts(None)

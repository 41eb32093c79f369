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


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan_counts")
    return build_plan(ReproduceSettings(data=str(tmp / "d"), runs=str(tmp / "r"), results=str(tmp / "o"), seeds=SEEDS))


def test_the_hand_count_names_every_artefact():
    assert list(HAND_COUNT) == list(artefacts())


@pytest.mark.parametrize("name", list(HAND_COUNT))
def test_each_artefact_against_the_hand_count(plan, name):
    cells, runs, evaluations = HAND_COUNT[name]
    art = plan.artefacts[name]
    assert len(art.cells) == cells
    labels = [label for label, _ in art.cells]
    assert len(set(map(str, labels))) == len(labels), labels           # no row or point twice
    for label, keys in art.cells:
        assert len(keys) == len(SEEDS) == len(set(keys)), (label, keys)  # one item per seed
        assert sorted(plan.items[k].spec.seed if plan.items[k].kind == "train" else plan.items[k].spec.run.seed
                      for k in keys) == list(SEEDS)
    items = plan.artefact_items(name)
    assert len({i.key for i in items}) == len(items)
    kinds = Counter(i.kind for i in items)
    assert (kinds["train"], kinds["evaluate"]) == (runs * len(SEEDS), evaluations * len(SEEDS)), kinds
    assert all(name in i.artefacts for i in items)


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

"""avmaster_core.explore (the teaching notebook's logic) on the shipped synthetic checkpoint: its answer is
the run's own recorded prediction, its distributions are distributions, its figure and widget build."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from avmaster_core import explore
from avmaster_core.vocab import ANSWERS

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "results" / "runs" / "synthetic" / "default" / "1"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def explorer():
    if not (RUN / "best.pt").is_file():
        pytest.skip(f"no shipped synthetic checkpoint at {RUN}")
    from avmaster_core.synthetic import generate_synthetic

    root = REPO / "data" / "synthetic"
    generate_synthetic(root)  # reuses an existing copy made with the same parameters
    return explore.Explorer.load(RUN / "best.pt", "synthetic", root)


@pytest.fixture(scope="module")
def recorded():
    return json.loads((RUN / "predictions.json").read_text())["predictions"]


def test_the_views_answer_is_the_runs_recorded_prediction(explorer, recorded):
    for _, question_id in explorer.questions(limit=12):
        view = explorer.view(question_id)
        assert view.prediction == ANSWERS[recorded[str(question_id)]], view.summary()


def test_the_view_holds_distributions_over_answers_words_and_segments(explorer):
    view = explorer.view(17)
    assert view.question.lower().startswith("where is the loudest instrument")
    assert list(view.heads.columns) == list(explore.HEADS.values())
    assert (view.heads >= 0).all().all() and (view.heads <= 1).all().all()
    assert view.answer in view.heads.index and view.heads.index[0] == view.prediction  # sorted by the answer
    assert set(view.words.index) == {"Visual", "Audio"}
    assert view.words.sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0], abs=1e-5)  # words + padding = all
    assert list(view.words.columns[:3]) == ["<start>", "where", "is"] and view.words.columns[-1] == "<padding>"
    assert list(view.focus.index) == list(range(1, explorer.data.bank.audio.shape[1] + 1))  # one row per segment
    moved = view.focus["Audio templates moved"]
    assert math.isnan(moved.iloc[0]) and (moved.iloc[1:] > 0).all()  # step 1 has no previous state
    assert view.scene is not None and len(view.scene) >= 1


def test_the_figure_has_its_four_panels_outside_pyplot(explorer):
    from matplotlib import pyplot  # seaborn imports it anyway; what matters is that no figure lands there

    before = pyplot.get_fignums()
    fig = explore.question_figure(explorer.view(17))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("each head" in t for t in titles) and any("word attention" in t for t in titles)
    assert any("focus sampling" in t for t in titles) and any("scene" in t for t in titles)
    assert pyplot.get_fignums() == before


def test_the_widget_lists_questions_and_starts_on_the_chosen_one(explorer):
    pytest.importorskip("ipywidgets")
    box = explorer.widget(17, limit=30)
    kinds, picker, shown = box.children
    assert picker.value == 17 and len(picker.options) == 30
    assert len(shown.outputs) == 1  # the chosen question's figure
    picker.value = picker.options[3][1]
    assert len(shown.outputs) == 1  # redrawn, not appended
    assert "image/png" in box._repr_mimebundle_()  # a viewer without a kernel shows a picture


def test_the_picker_filters_by_question_type(explorer):
    pytest.importorskip("ipywidgets")
    kinds, picker, _ = explorer.widget(17, limit=None).children
    kinds.value = "Audio / Counting"
    expected = {q for q in explorer.data.records.query("modality == 'Audio' and qtype == 'Counting'")["question"]}
    assert picker.options and {label.split("? [")[0] for label, _ in picker.options} <= \
        {q.rstrip("?") for q in expected}


def test_an_unknown_question_and_a_partial_model_are_refused(explorer):
    from avmaster_core.config import experiment
    from avmaster_core.model import build_model

    with pytest.raises(KeyError, match="not in this split"):
        explorer.view(10**9)
    with pytest.raises(ValueError, match="full model"):
        explore.Explorer(build_model(experiment("table7/wo_gpap", size="cpu")), explorer.data, "synthetic")


def test_no_checkpoint_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="avmaster sweep"):
        explore.default_checkpoint(tmp_path, "default")

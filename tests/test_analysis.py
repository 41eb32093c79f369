"""The notebook-facing computations of avmaster_core.analysis, on a tiny synthetic benchmark and a tiny trained run."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from avmaster_core import analysis, config, paper, scoring
from avmaster_core.engine import DataConfig, TrainConfig, evaluate, train
from avmaster_core.model import build_model
from avmaster_core.synthetic import generate_synthetic

pytestmark = pytest.mark.usefixtures("one_thread")  # width-32 models


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data root, runs folder, best.pt) of one epoch of a width-32 model on 40 synthetic videos."""
    base = tmp_path_factory.mktemp("analysis")
    generate_synthetic(base / "data", num_videos=40, questions_per_video=6, T=6, seed=3)
    cfg = dataclasses.replace(config.experiment("default", size="cpu"), dim=32, focus_ffn=64)
    result = train(cfg, TrainConfig(epochs=1, lr=1e-3, batch_size=32, device="cpu", progress=False,
                                    checkpoint_every_steps=0),
                   DataConfig("synthetic", str(base / "data")), out_dir=base / "runs", experiment="default")
    return base / "data", base / "runs", result.best_checkpoint


def test_step_accuracy_ends_at_the_models_own_answer(run):
    root, _, ckpt = run
    steps = analysis.step_accuracy(ckpt, "synthetic", "test", root)
    assert list(steps["Focus step"]) == [1, 2, 3, 4, 5, 6]
    assert steps["Accuracy (%)"].between(0, 100).all()
    one_question = 100.0 / steps.attrs["questions"]
    assert abs(steps["Accuracy (%)"].iloc[-1] - steps.attrs["final_accuracy"]) <= one_question + 1e-9
    table, _ = evaluate(ckpt, "synthetic", "test", root, device="cpu", progress=False)
    assert steps.attrs["final_accuracy"] == pytest.approx(table[scoring.OVERALL].iloc[0])
    both = analysis.step_accuracy_over_seeds({1: ckpt, 2: ckpt}, "synthetic", "test", root)
    assert len(both) == 12 and set(both["seed"]) == {1, 2}


def test_word_attention_has_one_column_per_token(run):
    from avmaster_core import load_annotations

    root, _, ckpt = run
    record = load_annotations("synthetic", "test", root).iloc[0]
    attention = analysis.question_word_attention(ckpt, "synthetic", root, int(record["question_id"]))
    tokens = analysis.question_tokens(record["question"], "synthetic")
    assert list(attention.index) == ["Visual", "Audio"] and list(attention.columns) == tokens + ["<padding>"]
    assert tokens[0] == "<start>" and tokens[-1] == "<end>" and len(tokens) == len(record["question"].split()) + 2
    values = attention.to_numpy()
    assert (values >= 0).all() and np.allclose(values.sum(axis=1), 1, atol=1e-5)  # tokens + padding = all mass
    assert attention.attrs["question"] == record["question"]
    with pytest.raises(KeyError, match="not in the test split"):
        analysis.question_word_attention(ckpt, "synthetic", root, 10**9)


@pytest.mark.slow
def test_inference_variants_rescore_the_same_weights(run):
    root, _, ckpt = run
    t12 = analysis.inference_variants("table12", {1: ckpt}, "synthetic", root, device="cpu")
    assert list(t12.index) == ["w/o. APE", "w/o. VPE", "w/o. AVPE", "AV-Master"]
    assert list(t12.columns) == list(paper.SUMMARY_COLUMNS)
    assert t12.attrs["changes"]["w/o. AVPE"] == {"inference_use_a": False, "inference_use_v": False}
    full, _ = evaluate(ckpt, "synthetic", "test", root, device="cpu", progress=False)
    assert t12.loc["AV-Master"].tolist() == pytest.approx(paper.summary_columns(full).iloc[0].tolist())
    no_audio, _ = evaluate(ckpt, "synthetic", "test", root, device="cpu", progress=False,
                           changes={"inference_use_a": False})
    assert t12.loc["w/o. APE", "Avg"] == pytest.approx(no_audio[scoring.OVERALL].iloc[0])
    t13 = analysis.inference_variants("table13", {1: ckpt, 2: ckpt}, "synthetic", root, device="cpu")
    assert t13.attrs["changes"] == {"W-ADD": {"combine": "w_add"}, "MUL": {"combine": "mul"},
                                    "ADD": {"combine": "prob_sum"}, "logit sum (released)": {}}
    assert t13.loc["logit sum (released)", "Avg"] == pytest.approx(full[scoring.OVERALL].iloc[0])
    assert t13.attrs["seeds"]["ADD"] == [1, 2]
    with pytest.raises(ValueError, match="no checkpoints"):
        analysis.inference_variants("table12", {}, "synthetic", root)


def test_experiment_changes_are_relative_to_the_full_model():
    assert analysis.experiment_changes("default") == {}
    assert analysis.experiment_changes("table13/mul") == {"combine": "mul"}
    assert set(analysis.experiment_changes("table7/wo_tdpp")) - analysis.INFERENCE_ONLY_FIELDS


def test_segment_length_curve_at_full_length_is_the_evaluation(run):
    root, _, ckpt = run
    curve = analysis.segment_length_curve({1: ckpt}, "synthetic", root, [2, 6], device="cpu")
    assert list(curve["Segments"]) == [2, 6] and list(curve.columns[:2]) == ["Segments", "seed"]
    full, _ = evaluate(ckpt, "synthetic", "test", root, device="cpu", progress=False)
    assert curve.loc[curve["Segments"] == 6, "Avg"].item() == pytest.approx(full[scoring.OVERALL].iloc[0])
    table = analysis.fig4_table(curve, pd.DataFrame())
    assert set(table["Model"]) == {"full model, first t seconds only"}


def _batch(b=3, t=5):
    g = torch.Generator().manual_seed(0)
    return {"audio": torch.randn(b, t, 128, generator=g), "visual": torch.randn(b, t, 768, generator=g),
            "question": torch.randn(b, 768, generator=g), "words": torch.randn(b, 77, 768, generator=g)}


def test_official_templates_stay_identical_and_ignore_the_bias_the_paper_ones_do_not():
    torch.manual_seed(0)
    official = build_model(config.experiment("default", "official", size="cpu"))
    paper_model = build_model(config.experiment("default", "paper", size="cpu"))
    batch = _batch()
    spread = analysis.template_rows_spread(official, batch)
    assert list(spread.columns) == ["modality", "step", "max |row_k - row_1|", "max |row|"]
    assert len(spread) == 2 * 5 and spread["max |row_k - row_1|"].max() < 1e-5 and spread["max |row|"].min() > 0.1
    assert analysis.template_rows_spread(paper_model, batch)["max |row_k - row_1|"].max() > 1e-2
    assert official.collapse_templates is None and official.training  # both restored as they were
    assert analysis.bias_effect(official, batch) < 1e-4
    assert analysis.bias_effect(paper_model, batch) > 1e-3


def test_preset_differences_and_parameter_counts():
    diff = analysis.preset_differences()
    values = diff[["official", "paper preset"]]
    assert values.loc["dim"].tolist() == [768, 512] and values.loc["contrastive"].tolist() == ["official", "in_batch"]
    assert "num_templates" not in diff.index
    assert diff["paper's words"].str.len().gt(10).all()  # every difference quotes the paper
    assert {"batch size", "sentence feature", "eq. (6) negatives", "mask_padding"} <= set(diff.index)
    assert set(diff["status"]) <= {"as written", "our reading", "not as written"}
    counts = analysis.parameter_counts("cpu")
    assert list(counts.index) == ["official", "paper"] and (counts["dim"] == 64).all()
    assert (counts["paper Table VI (millions)"] == 61.0).all() and (counts["ours (millions)"] < 5).all()


@pytest.fixture
def fake_runs(tmp_path):
    """A runs folder with test tables of known accuracy (all questions right or all wrong)."""
    records = pd.DataFrame({
        "question_id": [1, 2, 3], "video_id": ["a", "b", "c"], "template": ["t"] * 3, "question": ["q"] * 3,
        "modality": ["Audio", "Visual", "Audio-Visual"], "qtype": ["Counting", "Location", "Temporal"],
        "answer": ["one", "two", "yes"], "answer_idx": [0, 1, 2], "split": ["test"] * 3, "dataset": ["synthetic"] * 3})
    right, wrong = {1: 0, 2: 1, 3: 2}, {1: 9, 2: 9, 3: 9}
    for experiment, seed, predictions in [("default", 1, right), ("default", 2, wrong), ("paper/default", 1, right),
                                          ("fig5/a+q", 1, wrong), ("fig7/qa=0.4", 1, right)]:
        folder = tmp_path / experiment / str(seed)
        folder.mkdir(parents=True)
        scoring.score(records, predictions).to_csv(folder / paper.RUN_TABLE)
        (folder / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 40.0}\n{"epoch": 2, "val_acc": 50.0}\n')
    return tmp_path


def test_runs_summaries_for_the_figures(fake_runs):
    summary = analysis.runs_summary(fake_runs, analysis.FIG5_EXPERIMENTS)
    assert sorted(zip(summary["label"], summary["seed"], summary["Avg"])) == [
        ("A+Q", 1, 0.0), ("A+V+Q", 1, 100.0), ("A+V+Q", 2, 0.0)]
    assert analysis.missing_runs(fake_runs, analysis.FIG5_EXPERIMENTS) == ["fig5/v+q"]
    fig5 = analysis.with_paper_fig5(summary)
    assert fig5.loc["A+Q", ("paper", "Avg")] == 69.8 and fig5.loc["A+V+Q", ("paper", "Avg")] == 78.51  # Table II
    assert fig5.loc["A+V+Q", ("ours", "Avg")] == 50.0 and np.isnan(fig5.loc["V+Q", ("ours", "Avg")])
    fig7 = analysis.fig7_table(fake_runs)
    assert set(zip(fig7["Weight"], fig7["Value"])) == {("lambda_qa", 0.4)} | {(w, 1.0) for w in analysis.FIG7_WEIGHTS}
    presets = analysis.presets_table(fake_runs)
    assert presets.loc["official", "Avg"] == 50.0 and presets.loc["paper", "seeds"] == 1
    history = analysis.run_histories(fake_runs, "default")
    assert len(history) == 4 and set(history["seed"]) == {1, 2}
    stats = analysis.mean_and_std(summary, "label")
    assert stats.loc["A+V+Q", ("mean", "Avg")] == 50.0 and stats.loc["A+V+Q", ("std", "Avg")] == pytest.approx(50 * 2 ** 0.5)  # ddof=1 of (100, 0)
    assert analysis.runs_summary(fake_runs, {"x": "table9/len2"}).empty


def test_answer_heads_comparison_changes_only_models_with_untrained_heads(run, tmp_path):
    """Table VIII's switch: a model whose preference losses are off sums untrained heads under "all" only; the
    full model's heads are all trained, so both settings agree. Numeric columns stay numeric (round works)."""
    root, _, ckpt = run
    cfg = dataclasses.replace(config.experiment("table8/qa", size="cpu"), dim=32, focus_ffn=64)
    partial = train(cfg, TrainConfig(epochs=1, lr=1e-3, batch_size=32, device="cpu", progress=False,
                                     checkpoint_every_steps=0),
                    DataConfig("synthetic", str(root)), out_dir=tmp_path, experiment="table8/qa")
    table = analysis.answer_heads_comparison({"full": ckpt, "L_qa": partial.best_checkpoint}, "synthetic", root,
                                             device="cpu")
    assert table.loc["full", "all"] == table.loc["full", "trained"] and table.loc["full", "untrained heads"] == "-"
    assert table.loc["L_qa", "untrained heads"] == "a, v"
    full, _ = evaluate(partial.best_checkpoint, "synthetic", "test", root, device="cpu", progress=False)
    assert table.loc["L_qa", "all"] == pytest.approx(full[scoring.OVERALL].iloc[0])  # the released evaluation
    assert table[["all", "trained"]].dtypes.tolist() == [np.float64, np.float64]
    # Table VIII's findings read the trained heads: row 1 re-scored from its checkpoint, row 6 its test table
    runs = tmp_path / "runs"
    shutil.copytree(partial.run_dir, runs / "table8/qa/1")
    shutil.copytree(Path(ckpt).parent, runs / "default/1")
    rows = analysis.trained_heads_rows("table8", runs, "synthetic", root, device="cpu")
    assert rows.loc[1, "Avg"] == pytest.approx(table.loc["L_qa", "trained"])
    assert rows.loc[6, "Avg"] == pytest.approx(table.loc["full", "all"])
    assert rows.attrs["rescored"] == [(1, 1)] and rows.attrs["per_seed"][1] == {1: {"Avg": rows.loc[1, "Avg"]}}
    (runs / "table8/qa/1/best.pt").unlink()  # an untrained head and no checkpoint: left out, never the "all" number
    left = analysis.trained_heads_rows("table8", runs, "synthetic", root, device="cpu")
    assert 1 not in left.index and left.attrs["left_out"] == [(1, 1)]


def test_experiment_readings_quote_the_paper():
    readings = analysis.experiment_readings()
    assert {"avqa/choices", "table13/mul", "fig7/qa=0.4", "fig4/T48"} <= set(readings.index)
    assert readings["paper's words (our reading)"].str.len().min() > 20
    assert readings.loc["table13/mul", "fills"] == "table13 MUL"


def test_template_accuracy_shows_what_each_template_carries(run):
    root, runs, _ = run
    table = analysis.template_accuracy(runs, {"full": "default"}, "synthetic", root)
    records = analysis.load_split("synthetic", "test", root).records
    assert table["questions"].sum() == len(records) and set(table.index) == set(records["template"])
    # the question-weighted mean of the per-template accuracies is the run's overall accuracy
    overall = (table[("full", "mean")] * table["questions"]).sum() / table["questions"].sum()
    assert overall == pytest.approx(paper.finished_runs(runs, "default")[1][scoring.OVERALL].iloc[0])
    assert table.attrs["seeds"] == {"full": [1]}

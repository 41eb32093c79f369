"""Figures from result tables: they draw what they are given, warn about nothing, and save atomically."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from avmaster_core.results import plots
from avmaster_core.results.paper import paper_table


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def bar_heights(fig: Figure) -> list[float]:
    return sorted(round(p.get_height(), 4) for ax in fig.axes for p in ax.patches if p.get_height() > 0)


def test_table2_comparison_draws_one_bar_per_column_and_source():
    paper_row = paper_table("table2").loc[["AV-Master"]]
    ours = paper_row.rename(index={"AV-Master": "ours"}) - 3.0
    fig = plots.plot_table_comparison(paper_row, ours, "Table II")
    expected = sorted(np.round(np.concatenate([paper_row.to_numpy()[0], ours.to_numpy()[0]]), 4))
    assert bar_heights(fig) == expected
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == "Audio QA / Count" and labels[-1] == "Overall / Avg"
    assert fig._suptitle.get_text() == "Table II"


def test_ablation_comparison_has_a_panel_per_metric_and_skips_flag_columns():
    paper_df = paper_table("table8")  # boolean loss columns are not plotted
    ours = paper_df.iloc[:2].copy()
    ours[["A-QA", "V-QA", "AV-QA", "Avg"]] -= 1.0
    fig = plots.plot_table_comparison(paper_df, ours, "Table VIII")
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["A-QA", "V-QA", "AV-QA", "Avg"]
    assert len(bar_heights(fig)) == 4 * (6 + 2)
    assert sum(ax.get_legend() is not None for ax in fig.axes) == 1


def test_comparison_without_our_runs_shows_the_paper_only():
    fig = plots.plot_table_comparison(paper_table("table9"), None, "Table IX", columns=["Avg"])
    assert bar_heights(fig) == sorted(paper_table("table9")["Avg"].round(4).tolist())


def test_comparison_with_nothing_numeric_fails_clearly():
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_table_comparison(paper_table("table7"), None, "x", columns=["no such column"])


def test_curve_plots_each_group_and_a_trend():
    df = pd.DataFrame({"Segment length": [12, 24, 36, 48, 60] * 2, "Accuracy": np.linspace(60, 78, 10),
                       "Model": ["AV-Master"] * 5 + ["QA-TIGER"] * 5})
    fig = plots.plot_curve(df, "Segment length", "Accuracy", "Model", title="Fig. 4")
    lines = [l for l in fig.axes[0].get_lines() if len(l.get_xdata()) == 5]
    assert len(lines) == 2
    steps = pd.DataFrame({"Focus step": np.arange(60), "Accuracy": np.r_[np.full(45, 70.0), np.linspace(70, 75, 15)]})
    fig = plots.plot_curve(steps, "Focus step", "Accuracy", trend_window=5)
    trend = fig.axes[0].get_lines()[0].get_ydata()
    assert trend[0] == pytest.approx(70.0) and trend[-1] > 74.0


def test_curve_rejects_missing_columns_and_empty_tables():
    with pytest.raises(KeyError, match="Weight"):
        plots.plot_curve(pd.DataFrame({"Value": [1.0]}), "Value", "Accuracy", "Weight")
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_curve(paper_table("fig7"), "Value", "Accuracy", "Weight")


def test_word_attention_heatmap_shape_and_validation():
    words = "Where is the loudest instrument ?".split()
    weights = np.array([[0.1, 0.05, 0.05, 0.1, 0.6, 0.1], [0.1, 0.05, 0.05, 0.6, 0.1, 0.1]])
    fig = plots.plot_word_attention(words, weights, row_labels=["Visual", "Audio"])
    mesh = fig.axes[0].collections[0]
    assert np.asarray(mesh.get_array()).reshape(2, 6).tolist() == weights.tolist()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == words
    with pytest.raises(ValueError, match="6 words"):
        plots.plot_word_attention(words, np.ones(5))
    with pytest.raises(ValueError, match="row labels"):
        plots.plot_word_attention(words, weights, row_labels=["Visual"])


def test_save_figure_creates_folders_and_leaves_no_temp_files(tmp_path):
    fig = plots.plot_word_attention(["a", "b"], [0.3, 0.7])
    target = tmp_path / "results" / "figures" / "fig8.png"
    assert plots.save_figure(fig, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(target) as image:  # 150 dpi by default
        assert image.info["dpi"][0] == pytest.approx(150, abs=1)
    assert sorted(p.name for p in target.parent.iterdir()) == ["fig8.png", "fig8.png.provenance.json"]  # no temp
    with pytest.raises(ValueError, match="suffix"):
        plots.save_figure(fig, tmp_path / "nosuffix")


def test_save_table_round_trips_the_side_by_side_layout(tmp_path):
    from avmaster_core.results.paper import side_by_side
    table = side_by_side("table2")
    target = plots.save_table(table, tmp_path / "new" / "table2.csv")
    back = pd.read_csv(target, header=[0, 1, 2], index_col=0)
    assert back.shape == table.shape and back.iloc[-1, 12] == 78.51
    assert sorted(p.name for p in target.parent.iterdir()) == ["table2.csv", "table2.csv.provenance.json"]


def test_bars_draw_one_bar_per_row_and_metric():
    table = pd.DataFrame({"A-QA": [50.0, 60.0], "Avg": [55.0, 65.0]}, index=["official", "paper"])
    fig = plots.plot_bars(table, "presets")
    ax = fig.axes[0]
    assert len([p for p in ax.patches if p.get_height() > 0]) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["official", "paper"]
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_bars(pd.DataFrame({"x": [np.nan]}))


def test_accuracy_axes_start_at_zero():
    fig = plots.plot_table_comparison(paper_table("table9"), None, "Table IX", columns=["Avg"])
    assert fig.axes[0].get_ylim()[0] == 0.0


def test_paper_and_ours_are_separate_panels_with_no_run_in_place_and_seed_error_bars():
    ours = paper_table("table7").iloc[[0, 5]][["A-QA", "V-QA", "AV-QA", "Avg"]] - 10.0
    std = ours * 0 + 1.5
    fig = plots.plot_paper_and_ours(paper_table("table7"), ours, "Table VII", ours_std=std,
                                    ours_label="ours (synthetic)", references={"question-only model": {"Avg": 40.0}})
    paper_axes, ours_axes = fig.axes[:4], fig.axes[4:8]
    assert [ax.get_title() for ax in paper_axes][0] == "paper: A-QA"
    assert all(ax.get_xlim() == (0.0, 100.0) for ax in fig.axes[:8])
    texts = [t.get_text() for t in ours_axes[3].texts]
    assert texts.count("no run") == 4  # the four rows without a run say so in place
    bars = [c for c in ours_axes[3].containers if hasattr(c, "errorbar")][0]
    half_widths = sorted({round((s[1][0] - s[0][0]) / 2, 4) for s in bars.errorbar.lines[2][0].get_segments()})
    assert half_widths == [0.0, 1.5]  # the given std (rows without a run: none)
    dashed = lambda ax: [l.get_xdata()[0] for l in ax.get_lines() if l.get_linestyle() in ("--", ":", "-.")]  # noqa
    assert dashed(ours_axes[3]) == [40.0] and dashed(ours_axes[0]) == []  # the reference: Avg panel only
    legend_title = fig.legends[0].get_title().get_text()
    assert "ddof=1" in legend_title
    bars = {p.get_facecolor()[:3] for ax in paper_axes for p in ax.patches}
    assert len(bars) == 1  # one colour per source


def test_points_mark_missing_runs_and_use_sample_std():
    df = pd.DataFrame({"Value": [1.0, 1.0, 1.0, 0.4], "Avg": [60.0, 62.0, 64.0, 55.0], "Weight": ["qa"] * 4})
    fig = plots.plot_points(df, "Value", "Avg", "Weight", expected={"qa": [0.4, 0.7, 1.0], "c": [0.4]})
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["no run: c", "no run: qa"]  # c=0.4 and qa=0.7
    segments = ax.containers[0].lines[2][0].get_segments()
    spans = sorted(round(s[1][1] - s[0][1], 4) for s in segments)
    assert spans == [0.0, 4.0]  # 2 x std(ddof=1) of 60, 62, 64; one seed: no bar
    assert ax.get_ylim() == (52.75, 66.25)  # fitted: 55-64 with a quarter of the range each side
    assert "axis fitted to the points" in ax.get_ylabel()
    full = plots.plot_points(df, "Value", "Avg", "Weight", ylim=(0, 100), references={"question-only": 39.5},
                             paper_note="accuracy peaks at 1.0")
    assert full.axes[0].get_ylim() == (0.0, 100.0) and any("peaks at 1.0" in t.get_text() for t in full.texts)
    fitted = plots.plot_points(df, "Value", "Avg", "Weight", references={"question-only": 39.5}).axes[0]
    assert any("39.5, below this axis" in t.get_text() for t in fitted.get_legend().get_texts())


def test_figures_show_inline_in_a_kernel():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        import IPython
        original = IPython.get_ipython
        IPython.get_ipython = lambda: shell
        assert plots.show_figures_inline()
        fig = plots.plot_word_attention(["a", "b"], [0.3, 0.7])
        data, _ = shell.display_formatter.format(fig)
        assert "image/png" in data
    finally:
        IPython.get_ipython = original
        InteractiveShell.clear_instance()


def test_word_attention_panels_show_each_model_and_say_where_one_has_no_run():
    table = pd.DataFrame({"where": [1.0, 0.0], "<padding>": [0.0, 1.0]}, index=["Visual", "Audio"])
    fig = plots.plot_word_attention_panels({"released": table, "masked": None}, missing_text="no run: make it")
    titles = [ax.get_title() for ax in fig.axes]
    assert "released" in titles and "masked" in titles
    missing = next(ax for ax in fig.axes if ax.get_title() == "masked")
    assert [t.get_text() for t in missing.texts] == ["no run: make it"]
    with pytest.raises(ValueError, match="no variant"):
        plots.plot_word_attention_panels({})


def test_plotted_values_read_back_what_a_figure_draws():
    """plots.plotted_values (recorded beside every saved figure): bars of either orientation, a curve's means
    with its seeds' dots (not the error bars' caps), reference lines apart, heat-map cells without the colour
    bar's gradient."""
    seeds = pd.DataFrame({"x": [1, 1, 2, 2], "seed": [1, 2, 1, 2], "acc": [60.0, 61.0, 65.0, 66.5]})
    curve = plots.plotted_values(plots.plot_points(seeds, "x", "acc", references={"question-only": 39.47}))[0]
    assert [p[1:] for p in curve["points"]] == [[1.0, 60.5], [2.0, 65.75]]
    assert sorted(curve["dots"]) == [[1.0, 60.0], [1.0, 61.0], [2.0, 65.0], [2.0, 66.5]]
    assert curve["references"] == [39.47] and curve["bars"] == []
    paper_row = paper_table("table7")
    panels = plots.plotted_values(plots.plot_paper_and_ours(paper_row, paper_row - 10.0, "Table VII"))
    assert sorted(v for p in panels for v in p["bars"]) == sorted(
        np.round(np.concatenate([paper_row.to_numpy().ravel(), paper_row.to_numpy().ravel() - 10.0]), 4).tolist())
    weights = np.array([[0.1, 0.9], [0.6, 0.4]])
    heat = plots.plotted_values(plots.plot_word_attention(["where", "is"], weights, row_labels=["Visual", "Audio"]))
    assert [a["cells"] for a in heat] == [[0.1, 0.9, 0.6, 0.4]]


def test_a_saved_line_figure_keeps_what_the_paper_reports_under_its_axes(tmp_path):
    """plot_points prints the paper's numbers or trend under the axes (Figs. 4, 6, 7); the saved PNG keeps that
    text (save_figure crops to what is drawn, as the notebooks show it) instead of cutting it off."""
    from PIL import Image

    seeds = pd.DataFrame({"x": [1, 2], "seed": [1, 1], "acc": [60.0, 65.0]})
    plain = plots.save_figure(plots.plot_points(seeds, "x", "acc"), tmp_path / "plain.png")
    noted = plots.save_figure(plots.plot_points(seeds, "x", "acc", paper_note="accuracy rises with x, then falls"),
                              tmp_path / "noted.png")
    with Image.open(noted) as with_note, Image.open(plain) as without:
        assert with_note.height > without.height + 10   # the note's line is in the file

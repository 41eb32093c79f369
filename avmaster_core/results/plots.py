"""Seaborn figures from result tables (the paper's and ours), for the table and figure notebooks.

    fig = plot_table_comparison(paper_table("table7"), ours, "Table VII")   # grouped bars, paper vs ours
    fig = plot_curve(df, x="Segment length", y="Accuracy", hue="Model")     # Figs. 4, 6, 7
    fig = plot_word_attention(words, weights, row_labels=["Visual", "Audio"])  # Fig. 8, one model
    fig = plot_word_attention_panels({"released": table, "masked padding": None})  # Fig. 8, models side by side
    save_figure(fig, "results/figures/table7.png")

Every function returns a `matplotlib.figure.Figure` built without pyplot, so nothing depends on the
active backend and nothing leaks into pyplot's figure list. Such a figure is shown by IPython only if an
`image/png` formatter is registered for it, which pyplot's inline backend would do and which never
happens without pyplot: importing this module inside a kernel registers it (`show_figures_inline`), so a
figure returned as a cell's value shows exactly once, in JupyterLab and in papermill's executed copies.
Outside a notebook the Agg backend is selected, so no display is needed.

Conventions of every figure: accuracy axes start at zero (0-100 %), paper and ours are drawn in separate
panels (never as bars to compare on one axis), one colour per source (`SOURCE_COLOURS`), error bars are
±1 sample standard deviation over seeds (ddof=1) and say so, and a row or point without a run says
"no run" in place instead of disappearing.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

import matplotlib

from ..core.atomic import atomic_write
from ..training.provenance import save_table, write_sidecar  # noqa: F401 (save_table: the notebooks' name)

if "ipykernel" not in sys.modules and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")  # headless scripts and tests: never try to open a window

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SOURCE_PAPER, SOURCE_OURS = "paper", "ours"
DPI = 150
# One colour per source across all figures: the published numbers, ours, and reference levels.
PAPER_COLOUR, OURS_COLOUR, REFERENCE_COLOUR = "#1F4E9C", "#D1570B", "#4D4D4D"
SOURCE_COLOURS = {SOURCE_PAPER: PAPER_COLOUR, SOURCE_OURS: OURS_COLOUR}
ERRORBAR_NOTE = "error bars: ±1 s.d. over seeds (ddof=1)"


def show_figures_inline() -> bool:
    """Register IPython's PNG formatter for matplotlib Figures when running inside a kernel (what pyplot's
    inline backend does on its first import); returns whether a kernel was found."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    select_figure_formats(shell, {"png"}, bbox_inches="tight", dpi=100)
    return True


def colour_of(source: str) -> str:
    """The colour of a source label: "paper" is the published numbers, any "ours ..." label is ours."""
    return PAPER_COLOUR if source == SOURCE_PAPER else OURS_COLOUR if source.startswith(SOURCE_OURS) else \
        REFERENCE_COLOUR


def _flat_label(column) -> str:
    """("Audio QA", "Count") -> "Audio QA / Count"; plain labels unchanged; empty parts dropped."""
    if isinstance(column, tuple):
        return " / ".join(str(part) for part in column if str(part) != "")
    return str(column)


def _long_form(table: pd.DataFrame | pd.Series, source: str, columns) -> pd.DataFrame:
    """Rows x metric columns -> one row per (row label, metric) with the source name."""
    if isinstance(table, pd.Series):
        table = table.to_frame().T
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"the {source} table must be a pandas DataFrame or Series, not {type(table).__name__}")
    chosen = list(table.columns) if columns is None else [c for c in columns if c in table.columns]
    chosen = [c for c in chosen if not pd.api.types.is_bool_dtype(table[c])]
    numeric = table[chosen].apply(pd.to_numeric, errors="coerce")
    numeric = numeric.loc[:, numeric.notna().any()]  # text or flag columns (e.g. Table VIII's losses) are skipped
    rows = [_flat_label(i) for i in numeric.index]
    long = pd.DataFrame({
        "row": np.repeat(rows, numeric.shape[1]),
        "metric": [_flat_label(c) for c in numeric.columns] * len(rows),
        "value": numeric.to_numpy(dtype=float).ravel(),
    })
    long["source"] = source
    return long


def plot_table_comparison(paper_df, ours_df, title: str = "", *, columns=None, ylabel: str = "Accuracy (%)",
                          ylim: tuple[float, float] | None = None) -> Figure:
    """Grouped bars of the paper's numbers beside ours.

    paper_df / ours_df: DataFrames with methods (or ablation rows) as index and metrics as columns, such as
    `paper_table("table2").loc[["AV-Master"]]` and a `scoring.score` result. `ours_df` may be None or
    empty (no run yet): then only the paper's bars are drawn. With one row on each side the metrics are on
    the x axis; with several rows there is one panel per metric and the rows are on the x axis.
    `columns` restricts the metrics (labels as in the tables, e.g. ("Overall", "Avg") or "Avg").
    """
    parts = [_long_form(paper_df, SOURCE_PAPER, columns)]
    if ours_df is not None and len(ours_df):
        parts.append(_long_form(ours_df, SOURCE_OURS, columns))
    long = pd.concat(parts, ignore_index=True).dropna(subset=["value"])
    if long.empty:
        raise ValueError(f"nothing to plot for {title or 'this table'}: no numeric values in the chosen columns")
    palette = SOURCE_COLOURS
    many_rows = long.groupby("source")["row"].nunique().max() > 1
    metrics = list(dict.fromkeys(long["metric"]))
    if not many_rows:
        fig = Figure(figsize=(max(5.0, 0.7 * len(metrics) + 2), 4.0), layout="constrained")
        ax = fig.subplots()
        sns.barplot(data=long, x="metric", y="value", hue="source", palette=palette, ax=ax)
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=45 if len(metrics) > 4 else 0)
        axes = [ax]
    else:
        rows = list(dict.fromkeys(long["row"]))
        fig = Figure(figsize=(max(5.0, 0.55 * len(rows) + 1.5) * min(len(metrics), 4) / 1.6,
                              3.6 * int(np.ceil(len(metrics) / 4))), layout="constrained")
        axes = np.atleast_1d(fig.subplots(int(np.ceil(len(metrics) / 4)), min(len(metrics), 4), squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            sns.barplot(data=long[long["metric"] == metric], x="row", y="value", hue="source", order=rows,
                        palette=palette, ax=ax)
            ax.set_title(metric)
            ax.set_xlabel("")
            ax.tick_params(axis="x", labelrotation=60)
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
    for ax in axes[: len(metrics) if many_rows else 1]:
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        else:
            _tight_ylim(ax, long["value"])
        legend = ax.get_legend()
        if legend is not None:
            if ax is axes[0]:
                legend.set_title("")
            else:
                legend.remove()  # one legend per figure is enough
    if title:
        fig.suptitle(title)
    return fig


def _tight_ylim(ax, values: pd.Series) -> None:
    """Zero-based accuracy axis (a truncated axis makes a spread of one point look large)."""
    high = float(values.max())
    ax.set_ylim(0.0, 100.0 if high <= 100 else high * 1.05)


def plot_curve(df: pd.DataFrame, x: str, y: str, hue: str | None = None, *, title: str = "",
               points: bool = True, trend_window: int | None = None, xlabel: str | None = None,
               ylabel: str | None = None) -> Figure:
    """A line (per `hue` group) of `y` against `x`: accuracy vs segment length (Fig. 4), per focus step
    (Fig. 6), vs a loss weight (Fig. 7; use hue for the weight's name).

    points: draw the raw values as dots. trend_window: also draw a centred rolling mean of that many
    points per group over the mean at each x (Fig. 6's "overall trend curve"); the raw values are dots.
    """
    missing = [c for c in (x, y, hue) if c is not None and c not in df.columns]
    if missing:
        raise KeyError(f"plot_curve: columns {missing} not in the table (it has {list(df.columns)})")
    if df.empty:
        raise ValueError(f"plot_curve: the table for {title or y} has no rows to plot")
    data = df.sort_values([c for c in (hue, x) if c is not None])
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if trend_window:
        sns.scatterplot(data=data, x=x, y=y, hue=hue, ax=ax, s=18, legend=hue is not None)
        groups = data.groupby(hue, sort=False) if hue is not None else [(None, data)]
        for name, group in groups:
            per_x = group.groupby(x)[y].mean()  # several points per x (seeds): average them first
            trend = per_x.rolling(trend_window, center=True, min_periods=1).mean()
            ax.plot(per_x.index, trend.to_numpy(), color="#C44E52", linewidth=2,
                    label=f"trend ({trend_window}-point mean)" if name is None else f"{name} trend")
        ax.legend()
    else:
        sns.lineplot(data=data, x=x, y=y, hue=hue, marker="o" if points else None, ax=ax)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    return fig


def plot_word_attention(words, weights, *, row_labels=None, title: str = "", cmap: str = "Blues") -> Figure:
    """Heatmap of attention over question words (Fig. 8): weights [n_words] or [n_rows, n_words]."""
    words = [str(w) for w in words]
    weights = np.asarray(weights, dtype=float)
    if weights.ndim == 1:
        weights = weights[None, :]
    if weights.ndim != 2 or weights.shape[1] != len(words):
        raise ValueError(f"plot_word_attention: weights of shape {weights.shape} do not match {len(words)} words; "
                         "give one weight per word, or one row of them per modality")
    if row_labels is None:
        row_labels = ["attention"] if len(weights) == 1 else [f"row {i}" for i in range(len(weights))]
    if len(row_labels) != len(weights):
        raise ValueError(f"plot_word_attention: {len(row_labels)} row labels for {len(weights)} rows of weights")
    fig = Figure(figsize=(max(4.0, 0.8 * len(words) + 1.5), 0.8 * len(weights) + 1.4), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(pd.DataFrame(weights, index=list(row_labels), columns=words), cmap=cmap, annot=True, fmt=".2f",
                cbar=True, ax=ax, linewidths=0.5)
    ax.tick_params(axis="y", labelrotation=0)
    if title:
        ax.set_title(title)
    return fig


def plot_word_attention_panels(variants: dict, *, title: str = "", missing_text: str = "no run",
                               cmap: str = "Blues") -> Figure:
    """Fig. 8 for several models, one heatmap panel each (stacked, same colour scale 0-1): `variants` maps a
    panel title (what the model is, e.g. "released: padding not masked") to its attention table (rows
    Visual / Audio, columns the words, as analysis.question_word_attention) or None where that model has no
    run, whose panel then says `missing_text` in place."""
    if not variants:
        raise ValueError("plot_word_attention_panels: no variant given")
    shown = [t for t in variants.values() if t is not None]
    width = max(4.0, 0.8 * max((t.shape[1] for t in shown), default=4) + 2.0)
    heights = [0.8 * (len(t) if t is not None else 1) + 1.0 for t in variants.values()]
    fig = Figure(figsize=(width, sum(heights) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(variants), 1, height_ratios=heights, squeeze=False).ravel())
    for ax, (label, table) in zip(axes, variants.items()):
        ax.set_title(label, fontsize=10)
        if table is None:
            ax.text(0.5, 0.5, missing_text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
                    color=REFERENCE_COLOUR, style="italic", wrap=True)
            ax.set_axis_off()
            continue
        sns.heatmap(table.astype(float), cmap=cmap, vmin=0.0, vmax=1.0, annot=True, fmt=".2f", cbar=True, ax=ax,
                    linewidths=0.5)
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=45)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write `fig` to `path` (format from the suffix), creating folders; atomic (avmaster_core.core.atomic), so a
    reader never sees half a file; beside it `<path>.provenance.json`: the runs it came from, the file's
    sha256 and what it draws (`plotted_values`), so a test can hold the picture against its table."""
    path = Path(path)
    if not path.suffix:
        raise ValueError(f"save_figure: {path} has no suffix; use .png, .pdf or .svg")
    # bbox_inches="tight", as the notebooks show it: text placed under the axes (plot_points' paper_note) is kept
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".").lower(), bbox_inches="tight"))
    write_sidecar(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), plotted=plotted_values(fig))
    return path


def plotted_values(fig: Figure) -> list[dict]:
    """What a figure draws, read back from its artists, one entry per axes: `points` [label, x, y] of its
    lines (the means of an error-bar plot; not the error bars' caps, nor full-width reference lines, which are
    `references`), `bars` (lengths of its bars, upright or horizontal), `dots` [x, y] (scatter points, e.g. one per seed) and `cells`
    (values of a heat map). Rounded to 4 decimals, as the CSVs are written."""
    from matplotlib.container import ErrorbarContainer

    r = lambda v: round(float(v), 4)  # noqa: E731
    axes = []
    for ax in (a for a in fig.axes if a.get_label() != "<colorbar>"):  # a colour bar's gradient is no data
        boxes = [box for box in ax.containers if isinstance(box, ErrorbarContainer)]
        caps = {id(c) for box in boxes for c in box.lines[1]}
        names = {id(box.lines[0]): box.get_label() for box in boxes if box.lines[0] is not None}
        entry = {"title": ax.get_title(), "points": [], "references": [], "bars": [], "dots": [], "cells": []}
        for line in ax.get_lines():
            x, y = (np.asarray(v, dtype=float) for v in line.get_data())
            if id(line) in caps or not len(y):
                continue
            if list(x) == [0.0, 1.0] and y[0] == y[-1] or list(y) == [0.0, 1.0] and x[0] == x[-1]:
                entry["references"].append(r(y[0] if list(x) == [0.0, 1.0] else x[0]))  # axhline / axvline
                continue
            label = names.get(id(line), line.get_label())  # an error-bar plot's label is its container's
            entry["points"] += [[label, r(a), r(b)] for a, b in zip(x, y) if not math.isnan(b)]
        rectangles = [p for p in ax.patches if type(p).__name__ == "Rectangle"]  # bars stand on 0 (barh: x = 0)
        entry["bars"] = [r(p.get_height() if p.get_y() == 0 else p.get_width()) for p in rectangles
                         if 0 in (p.get_x(), p.get_y()) and p.get_width() * p.get_height() != 0]
        for collection in ax.collections:
            if type(collection).__name__ == "PathCollection":
                entry["dots"] += [[r(a), r(b)] for a, b in collection.get_offsets() if not math.isnan(b)]
            elif type(collection).__name__ == "QuadMesh":
                entry["cells"] += [r(v) for v in np.ma.compressed(collection.get_array())]
        axes.append(entry)
    return axes


def plot_bars(table: pd.DataFrame, title: str = "", *, ylabel: str = "Accuracy (%)") -> Figure:
    """Grouped bars of a small table: metrics (columns) on the x axis, one colour per row (e.g. per preset)."""
    long = _long_form(table, "", None).dropna(subset=["value"])
    if long.empty:
        raise ValueError(f"nothing to plot for {title or 'this table'}: no numeric values")
    fig = Figure(figsize=(max(6.8, 0.9 * long["metric"].nunique() + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    rows = list(dict.fromkeys(long["row"]))  # all ours: shades of our colour, not the paper's blue
    shades = sns.light_palette(OURS_COLOUR, n_colors=len(rows) + 1, reverse=True)[: len(rows)]
    sns.barplot(data=long, x="metric", y="value", hue="row", palette=dict(zip(rows, shades)), ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    _tight_ylim(ax, long["value"])
    if ax.get_legend() is not None:
        ax.get_legend().set_title("")
        sns.move_legend(ax, "lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------------ paper | ours panels
def _panel_rows(table: pd.DataFrame | None, rows: list, metrics: list) -> pd.DataFrame:
    """`table` reindexed to `rows` x `metrics` as floats (NaN where absent)."""
    if table is None or not len(table):
        return pd.DataFrame(np.nan, index=rows, columns=metrics)
    flat = table.copy()
    flat.columns = [_flat_label(c) for c in flat.columns]
    flat.index = [_flat_label(i) for i in flat.index]
    return flat.reindex(index=rows, columns=metrics).apply(pd.to_numeric, errors="coerce")


def _draw_bars(ax, values: pd.Series, errors: pd.Series | None, colour: str, missing_text: str) -> None:
    """Horizontal bars, zero-based, the first row on top; a NaN row says `missing_text` in place."""
    y = np.arange(len(values))[::-1]
    heights = values.to_numpy(dtype=float)
    err = None if errors is None else errors.reindex(values.index).to_numpy(dtype=float)
    ax.barh(y, np.nan_to_num(heights), color=colour, height=0.65,
            xerr=None if err is None else np.where(np.isnan(err), 0.0, err),
            error_kw={"ecolor": "black", "capsize": 3, "linewidth": 1})
    for yi, h in zip(y, heights):
        if np.isnan(h):
            ax.text(1.5, yi, missing_text, va="center", ha="left", fontsize=8, color=REFERENCE_COLOUR,
                    style="italic")
        else:
            ax.text(1.5, yi, f"{h:.1f}", va="center", ha="left", fontsize=7, color="white", fontweight="bold")
    ax.set_yticks(y, [str(i) for i in values.index])
    ax.set_xlim(0, 100)


def plot_paper_and_ours(paper_df: pd.DataFrame | None, ours: pd.DataFrame | None, title: str = "", *,
                        ours_std: pd.DataFrame | None = None, metrics=None, row_labels: dict | None = None,
                        ours_label: str = SOURCE_OURS, references: dict | None = None,
                        missing_text: str = "no run") -> Figure:
    """The paper's table and ours in separate panels (one panel row per source, one column per metric),
    horizontal zero-based bars, one row per setting; ours with seed error bars (ddof=1) and, where a row has
    no run, `missing_text` in place. A one-row table (Table II) is drawn with its metrics as the rows.

    row_labels: {table row: label saying the setting}; references: {label: accuracy} drawn as dashed
    vertical lines in our panels (e.g. the question-only level and the scene reader of the synthetic data).
    """
    tables = {SOURCE_PAPER: paper_df, ours_label: ours}
    index = next((t.index for t in (paper_df, ours) if t is not None and len(t)), None)
    if index is None:
        raise ValueError(f"nothing to plot for {title or 'this table'}: neither the paper nor ours has rows")
    source = paper_df if paper_df is not None and len(paper_df) else ours
    numeric = [c for c in source.columns if not pd.api.types.is_bool_dtype(source[c])]
    metrics = [_flat_label(c) for c in (metrics or numeric)]
    rows = [_flat_label(i) for i in index]
    one_row = len(rows) == 1
    if one_row:  # a single method: its metrics become the rows of one panel per source
        tables = {k: None if t is None or not len(t) else _panel_rows(t, rows, metrics).T.set_axis([rows[0]], axis=1)
                  for k, t in tables.items()}
        ours_std = None if ours_std is None else _panel_rows(ours_std, rows, metrics).T.set_axis([rows[0]], axis=1)
        rows, metrics = metrics, [rows[0]]
    if one_row:  # the two sources side by side
        fig = Figure(figsize=(8.5, 0.32 * len(rows) + 1.8), layout="constrained")
        axes = fig.subplots(1, 2, squeeze=False, sharey=True).T
    else:
        fig = Figure(figsize=(2.6 * len(metrics) + 1.8, 0.8 + 2 * (0.32 * len(rows) + 0.6)), layout="constrained")
        axes = fig.subplots(2, len(metrics), squeeze=False, sharey=True)
    given = {_flat_label(k): v for k, v in (row_labels or {}).items()}
    labels = {r: given.get(r, r) for r in rows}
    for i, (name, table) in enumerate(tables.items()):
        frame = table if one_row and table is not None else _panel_rows(table, rows, metrics)
        frame = frame.reindex(index=rows) if frame is not None else pd.DataFrame(np.nan, index=rows, columns=metrics)
        std = None
        if i == 1 and ours_std is not None:
            std = ours_std.reindex(index=rows) if one_row else _panel_rows(ours_std, rows, metrics)
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            values = frame[metric].rename(index=labels)
            _draw_bars(ax, values, None if std is None else std[metric].rename(index=labels), colour_of(name),
                       "not published" if i == 0 else missing_text)
            if i == 1:
                for k, (label, level) in enumerate((references or {}).items()):
                    only = f" ({metric} {level[metric]:.1f})" if isinstance(level, dict) and len(level) == 1 \
                        and metric in level else ""
                    level = level.get(metric) if isinstance(level, dict) else level
                    if level is not None and not one_row:
                        ax.axvline(level, color=REFERENCE_COLOUR, linestyle=("--", ":", "-.")[k % 3],
                                   linewidth=1.2, label=label + only)
            ax.set_title(f"{name}: {metric}" if not one_row else name, fontsize=9, color=colour_of(name))
            ax.set_xlabel("accuracy (%)" if i == 1 else "")
    found = {}
    for ax in axes[1]:
        found.update(zip(*reversed(ax.get_legend_handles_labels())))
    names, handles = list(found), list(found.values())
    notes = [ERRORBAR_NOTE] if ours_std is not None else []
    if handles or notes:
        fig.legend(handles, names, loc="outside lower center", ncols=max(1, len(handles)), fontsize=8,
                   title="; ".join(notes) or None, title_fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_points(df: pd.DataFrame, x: str, y: str, hue: str | None = None, *, title: str = "",
                expected: dict | None = None, references: dict | None = None, xlabel: str | None = None,
                ylabel: str = "accuracy (%)", ylim=None, paper_note: str = "") -> Figure:
    """Mean ± s.d. over seeds (ddof=1) of `y` per `x` (one line per `hue` group); raw seeds as dots.
    expected: {group: [x values]} that should have a point: those without one say "no run" in place.
    references: {label: level} as dashed horizontal lines. ylim None: an axis fitted to the points, so that
    effects of a few points show (the label says it is not zero-based; a reference level outside it is
    named in the legend); (0, 100) for the full scale. paper_note: what the paper reports for this figure
    (its numbers or its described trend), printed under the axes beside ours."""
    missing = [c for c in (x, y, hue) if c is not None and c not in df.columns]
    if missing:
        raise KeyError(f"plot_points: columns {missing} not in the table (it has {list(df.columns)})")
    zoomed = ylim is None
    if zoomed:
        values = df[y].dropna()
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 100.0)
        margin = max(1.0, 0.25 * (high - low))
        ylim = (max(0.0, low - margin), min(100.0, high + margin))
    groups = list(dict.fromkeys(df[hue])) if hue else [None]
    groups += [g for g in (expected or {}) if g not in groups]
    fig = Figure(figsize=(8.6, 4.2), layout="constrained")
    ax = fig.subplots()
    palette = sns.color_palette("colorblind", max(len(groups), 1))
    absent: dict = {}
    for colour, group in zip(palette, groups):
        part = df[df[hue] == group] if hue else df
        stats = part.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
        label = "ours" if group is None else str(group)
        if len(stats):
            low, high = int(stats["count"].min()), int(stats["count"].max())
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), color=colour, marker="o",
                        capsize=3, label=f"{label} ({low if low == high else f'{low}-{high}'} seed(s) per point)")
            ax.scatter(part[x], part[y], color=colour, s=10, alpha=0.5)
        for v in (expected or {}).get(group, []):
            if v not in set(stats.index):
                absent.setdefault(v, []).append(label)
    for v, labels in absent.items():  # one note per x: which groups have no run there
        ax.annotate("no run: " + ", ".join(labels), (v, ylim[0] + 2), color=REFERENCE_COLOUR, fontsize=7,
                    rotation=90, ha="center", va="bottom")
    for k, (label, level) in enumerate((references or {}).items()):
        if isinstance(level, dict):  # {metric: level}: one metric is drawn (the curve's own)
            if len(level) != 1:
                continue
            level = next(iter(level.values()))
        where = "" if ylim[0] <= level <= ylim[1] else (", below this axis" if level < ylim[0] else ", above this axis")
        ax.axhline(level, color=REFERENCE_COLOUR, linestyle=("--", ":", "-.")[k % 3], linewidth=1,
                   label=f"{label} ({level:.1f}{where})")
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(f"{ylabel}, axis fitted to the points" if zoomed else ylabel)
    if paper_note:
        fig.text(0.01, -0.02, f"paper: {paper_note}", fontsize=7.5, wrap=True, va="top", color=PAPER_COLOUR)
    ax.legend(fontsize=7, title=ERRORBAR_NOTE, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return fig


if "ipykernel" in sys.modules:
    show_figures_inline()


def plot_focus_trajectory(steps: dict, *, title: str = "How the focus templates move (eq. 1-2)") -> Figure:
    """TDPP's focus sampling segment by segment. `steps`: {modality label: templates per step [B, T, K, D]}
    (V^1..V^T of eq. 1; V^0 is the first frame or the learned templates). Left: how far segment t moves the
    templates, ||V^t - V^(t-1)|| / ||V^(t-1)|| (mean over the batch, one line per template k; lines that
    coincide are templates that stay copies of each other). Right: how different the K templates are from
    each other at step t (1 - mean pairwise cosine; 0 = all K identical)."""
    fig = Figure(figsize=(11, 3.8))
    move_ax, spread_ax = fig.subplots(1, 2)
    palette = sns.color_palette("tab10", len(steps))
    for (label, z), colour in zip(steps.items(), palette):
        z = np.asarray(z, dtype=float)  # [B, T, K, D]
        t = np.arange(2, z.shape[1] + 1)
        moved = np.linalg.norm(z[:, 1:] - z[:, :-1], axis=-1) / np.linalg.norm(z[:, :-1], axis=-1)  # [B, T-1, K]
        for k, series in enumerate(moved.mean(axis=0).T):
            move_ax.plot(t, series, color=colour, alpha=0.35 + 0.65 / (k + 1), lw=1.2,
                         label=label if k == 0 else None)
        unit = z / np.linalg.norm(z, axis=-1, keepdims=True)
        cos = np.einsum("btkd,btjd->btkj", unit, unit)
        k = z.shape[2]
        spread = 1 - (cos.sum(axis=(-1, -2)) - k) / max(k * (k - 1), 1)  # [B, T]
        spread = np.where(np.abs(spread) < 1e-9, 0.0, spread)  # float rounding of identical rows is 0
        spread_ax.plot(np.arange(1, z.shape[1] + 1), spread.mean(axis=0), color=colour, marker="o", label=label)
    move_ax.set(xlabel="segment t (focus step)", ylabel="relative move ||V^t - V^(t-1)|| / ||V^(t-1)||",
                title="how far segment t moves each template")
    spread_ax.set(xlabel="segment t (focus step)", ylabel="1 - mean cosine between the K templates",
                  title="how different the K templates are")
    spread_ax.set_ylim(0, max(1.0, spread_ax.get_ylim()[1]))  # 0 = the K templates are copies of one
    move_ax.set_ylim(bottom=0)
    for ax in (move_ax, spread_ax):
        ax.legend(loc="best", fontsize=8, frameon=True)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training_losses(rows: pd.DataFrame, *, title: str = "Loss on each training batch (eq. 5-7)") -> Figure:
    """The loss terms per optimiser step, one colour per term ("qa", "a", "v", "c", "total"); `rows` has
    columns step, term, loss, and optionally run: the first run is drawn as lines, a later one as markers on
    top (a run retracing another shows its markers on the other's lines). Zero-based; the legend sits outside
    the axes so it never covers a line."""
    fig = Figure(figsize=(8.6, 3.6), layout="constrained")
    ax = fig.subplots()
    terms = list(dict.fromkeys(rows["term"]))
    colours = dict(zip(terms, sns.color_palette("colorblind", len(terms))))
    runs = list(dict.fromkeys(rows["run"])) if "run" in rows else [None]
    for k, run in enumerate(runs):
        part = rows if run is None else rows[rows["run"] == run]
        for term, line in part.groupby("term", sort=False):
            style = dict(lw=2.2 if term == "total" else 1.2) if k == 0 else \
                dict(ls="none", marker="os^"[(k - 1) % 3], ms=4, mfc="none")
            label = term if run is None or len(runs) == 1 else f"{term}, {run}"
            ax.plot(line["step"], line["loss"], color=colours[term], label=label, **style)
    ax.set(xlabel="optimiser step", ylabel="loss on the batch", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(float(rows["loss"].max()) * 1.05, 1e-3))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, ncols=1 if len(runs) == 1 else 2)
    return fig


def plot_confusion(counts: pd.DataFrame, *, title: str = "") -> Figure:
    """A confusion matrix: rows the true answers, columns the predicted ones (counts of questions), each
    row's share written in its cells; the diagonal is what the model gets right."""
    shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    size = max(4.0, 0.55 * len(counts.columns) + 2.5)
    fig = Figure(figsize=(size + 1.5, max(3.2, 0.45 * len(counts) + 1.6)), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(shares, annot=counts, fmt="d", cmap="Oranges", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": "share of the true answer's questions"})
    ax.set(xlabel="predicted answer", ylabel="true answer", title=title)
    ax.tick_params(axis="x", rotation=45)
    return fig


def plot_contact_sheet(frames, *, columns: int = 10, title: str = "") -> Figure:
    """The frames picked for the visual features, one per one-second segment, in a grid, each labelled
    with its segment's time ("t = 7 s": the frame on screen at that second)."""
    rows = math.ceil(len(frames) / columns)
    fig = Figure(figsize=(1.25 * columns, 1.05 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for t, ax in enumerate(axes):
        ax.axis("off")
        if t < len(frames):
            ax.imshow(np.asarray(frames[t]))
            ax.set_title(f"t = {t} s", fontsize=7)
    fig.suptitle(title or f"the {len(frames)} frames the visual encoder sees, one per second")
    return fig


def plot_audio_input(audio, patches, *, seconds: int = 3, title: str = "") -> Figure:
    """What VGGish sees: the 16 kHz waveform of the first `seconds` segments (top) and, per second, its
    log-mel patch (96 frames of 10 ms x 64 mel bands), the audio encoder's input."""
    seconds = min(seconds, len(audio))
    fig = Figure(figsize=(3.4 * seconds, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, seconds, height_ratios=[1, 1.4])
    wave = fig.add_subplot(grid[0, :])
    signal = np.asarray(audio[:seconds], dtype=float).ravel()
    wave.plot(np.arange(len(signal)) / 16000, signal, lw=0.4, color=OURS_COLOUR)
    for t in range(1, seconds):
        wave.axvline(t, color=REFERENCE_COLOUR, ls="--", lw=0.8)
    wave.set(xlabel="time (s); dashed: segment boundaries", ylabel="amplitude", xlim=(0, seconds),
             title="16 kHz mono waveform")
    for t in range(seconds):
        ax = fig.add_subplot(grid[1, t])
        image = ax.imshow(np.asarray(patches[t]).T, origin="lower", aspect="auto", cmap="magma")
        ax.set(xlabel="10 ms frame", ylabel="mel band" if t == 0 else "", title=f"log-mel patch, second {t}")
    fig.colorbar(image, ax=ax, label="log mel energy")
    fig.suptitle(title or "the audio encoder's input")
    return fig


def plot_clip_preprocessing(image, cropped, *, title: str = "") -> Figure:
    """CLIP's preprocessing of one frame: the decoded frame, and the square it becomes (shortest side resized
    to the model's size, centre crop) before normalisation with CLIP's channel means and deviations."""
    fig = Figure(figsize=(8.6, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    frame = np.asarray(image)
    left.imshow(frame)
    left.set_title(f"decoded frame, {frame.shape[1]} x {frame.shape[0]} pixels", fontsize=9)
    square = np.asarray(cropped).transpose(1, 2, 0)
    right.imshow(square)
    right.set_title(f"resized and centre-cropped, {square.shape[1]} x {square.shape[0]}", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(title or "CLIP's preprocessing")
    return fig

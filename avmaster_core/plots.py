"""Seaborn figures from result tables (the paper's and ours), for the table and figure notebooks.

    fig = plot_table_comparison(paper_table("table7"), ours, "Table VII")   # grouped bars, paper vs ours
    fig = plot_curve(df, x="Segment length", y="Accuracy", hue="Model")     # Figs. 4, 6, 7
    fig = plot_word_attention(words, weights, row_labels=["Visual", "Audio"])  # Fig. 8
    save_figure(fig, "results/figures/table7.png")

Every function returns a `matplotlib.figure.Figure` built without pyplot, so nothing depends on the
active backend, nothing leaks into pyplot's figure list, and a notebook shows the figure exactly once
(as the cell's value). Outside a notebook the Agg backend is selected, so no display is needed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")  # headless scripts and tests: never try to open a window

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

SOURCE_PAPER, SOURCE_OURS = "paper", "ours"
DPI = 150


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
    palette = {SOURCE_PAPER: "#4C72B0", SOURCE_OURS: "#DD8452"}
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
    """Accuracies of close methods differ by a few points: start the axis a little below the lowest bar."""
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 1.0)
    ax.set_ylim(max(0.0, low - 0.5 * span), min(100.0, high + 0.25 * span) if high <= 100 else high * 1.05)


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


def save_figure(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write `fig` to `path` (format from the suffix), creating folders; atomic (avmaster_core.atomic), so a
    reader never sees half a file."""
    from .atomic import atomic_write

    path = Path(path)
    if not path.suffix:
        raise ValueError(f"save_figure: {path} has no suffix; use .png, .pdf or .svg")
    return atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".").lower()))


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a result table as CSV, creating folders; atomic (like save_figure)."""
    from .atomic import atomic_write

    return atomic_write(path, lambda f: table.to_csv(f), mode="w")


def plot_bars(table: pd.DataFrame, title: str = "", *, ylabel: str = "Accuracy (%)") -> Figure:
    """Grouped bars of a small table: metrics (columns) on the x axis, one colour per row (e.g. per preset)."""
    long = _long_form(table, "", None).dropna(subset=["value"])
    if long.empty:
        raise ValueError(f"nothing to plot for {title or 'this table'}: no numeric values")
    fig = Figure(figsize=(max(5.0, 0.9 * long["metric"].nunique() + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=long, x="metric", y="value", hue="row", ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    _tight_ylim(ax, long["value"])
    if ax.get_legend() is not None:
        ax.get_legend().set_title("")
    if title:
        ax.set_title(title)
    return fig

""""What ours shows": the closing text of each table and figure notebook, computed from the numbers it shows.

    findings.table_findings("table7", paper_df, ours, ours_std, smoke=True)   # -> IPython Markdown

Each text compares our ranking of the rows with the paper's, gives each row's difference from the reference
row paired over the seeds both have (the mean and sample s.d., ddof=1, of the per-seed differences; a gap
under two s.d. is "within noise", one matched seed is not judged, a single-seed point is never set against a
mean over other seeds), and says why ours may differ from the paper. Nothing is compared across commits:
when the runs the notebook read were made by more than one commit, no difference is judged and the text says
which commits (code_versions); runs without a recorded commit are said to be so. Nothing here is written by
hand per notebook: change the runs and the text changes with them.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.run_reads import runs_read
from ..training.provenance import UNKNOWN, commit_label, read_run_provenance
from . import paper

WHY_SYNTHETIC = ("Why ours may differ from the paper: our numbers come from the bundled synthetic benchmark "
                 "(generated scenes, 5,543 questions, 10 one-second segments) with CPU-sized models (width 64, "
                 "10 epochs for the shipped runs), not MUSIC-AVQA with the full model; a ranking there says how the variants behave "
                 "on a task where audio, visual and the question are each needed, not whether the paper's "
                 "numbers reproduce.")
WHY_REAL = ("Why ours may differ from the paper: seeds (the paper reports one run per row), the features "
            "extracted here, and our reading of rows the paper describes in one line.")


class Findings(str):
    """Markdown text that IPython shows rendered (and tests read as a plain string)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def flat_label(row) -> str:
    """A row or column key as text: a tuple joined by " / "."""
    return " / ".join(map(str, row)) if isinstance(row, tuple) else str(row)


def _ranking(values: pd.Series) -> list:
    return list(values.dropna().sort_values(ascending=False).index)


def _concordance(paper_values: pd.Series, ours_values: pd.Series) -> tuple[int, int]:
    """(pairs ordered the same way, pairs compared) over rows both have."""
    rows = [r for r in ours_values.dropna().index if r in paper_values.dropna().index]
    same = total = 0
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            p, o = paper_values[a] - paper_values[b], ours_values[a] - ours_values[b]
            if p != 0 and o != 0:
                total += 1
                same += (p > 0) == (o > 0)
    return same, total


NOISE_SDS = 2  # a paired gap under this many standard deviations of the per-seed differences is "within noise"


def paired_gap(values: dict, reference: dict) -> tuple[float, float, list]:
    """(mean difference, sample s.d. of the differences (ddof=1; NaN under two seeds), matched seeds) of
    {seed: value} against {seed: value} over the seeds both have: like is compared with like, never one seed's
    point with another set's mean."""
    seeds = sorted(set(values) & set(reference))
    diffs = [values[s] - reference[s] for s in seeds]
    mean = sum(diffs) / len(diffs) if diffs else math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
    return mean, sd, seeds


def gap_verdict(gap: float, sd: float, seeds: list) -> str:
    """How a paired gap reads: no matched seed, one (no spread, not judged), within noise (under NOISE_SDS s.d.
    of the per-seed differences) or beyond it."""
    if not seeds:
        return "no seed in common: not compared"
    if len(seeds) == 1:
        return f"one matched seed ({seeds[0]}): no spread, not judged"
    where = f"paired over seeds {', '.join(map(str, seeds))}, s.d. of the differences {sd:.2f}"
    return (f"within noise, under {NOISE_SDS} s.d.; {where}" if abs(gap) < NOISE_SDS * sd
            else f"beyond noise, at least {NOISE_SDS} s.d.; {where}")


def code_versions(runs=None) -> tuple[str | None, bool]:
    """(the line that says which code made `runs` (default: the run folders read so far), whether their
    differences may be judged): never across commits; runs that record no commit are said to be so."""
    runs = runs_read() if runs is None else runs
    labels = sorted({commit_label(read_run_provenance(run)[0]) for run in runs})
    known = [label for label in labels if label != UNKNOWN]
    if len(labels) > 1:
        return (f"- Not compared: the {len(runs)} runs read come from {len(labels)} code versions "
                f"({'; '.join(labels)}), so a difference between rows would compare code versions as well as "
                "variants. Re-make them on one commit (`avmaster reproduce run --tier synthetic`; "
                "`avmaster runs check` lists them).", False)
    if known:
        return f"- Every run read ({len(runs)}) was made by commit {known[0]}.", True
    if labels:
        return (f"- The {len(runs)} runs read record no commit (trained before provenance was recorded; "
                "`avmaster runs check` lists them): their differences may also be differences of code "
                "version.", True)
    return None, True


def seed_values(long: pd.DataFrame, by, column: str) -> dict:
    """{row: {seed: value}} of `column` from a long table with one row per (row, seed), `by` naming the row."""
    return {key: dict(zip(part["seed"].astype(int), part[column].astype(float)))
            for key, part in long.groupby(by, sort=False)}


def compare_rows(paper_values: pd.Series | None, per_seed: dict, reference, names: dict | None = None) -> list[str]:
    """One line per row with a run: our difference from `reference` (points), paired over the seeds both rows
    have ({row: {seed: value}}), with its spread and verdict (gap_verdict), and the paper's difference."""
    names = names or {}
    name = lambda r: names.get(r, flat_label(r))  # noqa: E731
    if not per_seed.get(reference):
        return [f"The reference row {name(reference)} has no run, so no difference can be read."]
    lines = []
    for row, values in per_seed.items():
        if row == reference or not values:
            continue
        gap, sd, seeds = paired_gap(values, per_seed[reference])
        stated = "" if paper_values is None else _paper_difference(paper_values, row, reference, name)
        shown = "" if math.isnan(gap) else f"ours {gap:+.2f} points "
        lines.append(f"- {name(row)}: {shown}vs {name(reference)} ({gap_verdict(gap, sd, seeds)}){stated}")
    return lines


def _paper_difference(paper_values: pd.Series, row, reference, name) -> str:
    """"; paper +1.23" (the paper's difference between the two rows), or which of them the paper gives no
    value for (Fig. 5: the paper prints no A+V+Q bar), never a difference computed from a missing value."""
    absent = [r for r in (row, reference) if pd.isna(paper_values.get(r, math.nan))]
    if absent:
        return f"; no paper value ({' and '.join(name(r) for r in absent)} not published)"
    return f"; paper {paper_values[row] - paper_values[reference]:+.2f}"


def ranking_lines(paper_values: pd.Series | None, mean: pd.Series, names: dict | None = None) -> list[str]:
    """Our ranking of the rows beside the paper's, and how many pairs of rows keep the paper's order."""
    names = names or {}
    show = lambda rows: " > ".join(names.get(r, flat_label(r)) for r in rows)  # noqa: E731
    lines = [f"- Ours, best first: {show(_ranking(mean))}."]
    if paper_values is not None and paper_values.notna().any():
        lines.append(f"- Paper, best first: {show(_ranking(paper_values.reindex(mean.dropna().index)))} "
                     f"(rows we have runs for).")
        same, total = _concordance(paper_values, mean)
        if total:
            lines.append(f"- {same} of {total} pairs of rows are ordered as in the paper.")
    return lines


def table_findings(name: str, paper_df: pd.DataFrame | None, ours: pd.DataFrame, ours_std: pd.DataFrame | None,
                   *, smoke: bool, reference=paper.OURS, column: str = paper.AVG, names: dict | None = None,
                   missing: dict | None = None, per_seed: dict | None = None, runs=None) -> Findings:
    """The closing paragraph of a table notebook from the table it showed (`column`: the one compared).
    Differences are paired over matched seeds: `per_seed` {row: {seed: value of column}}, by default from
    `ours.attrs["per_seed"]` ({row: {seed: {column label: value}}}, as ours_tables.ours_rows / over_seeds give);
    `runs`: the run folders behind the table (default: those read so far; see code_versions)."""
    title = f"**What ours shows ({name}, column {column}).**"
    pick = lambda t: None if t is None or not len(t) else t[[c for c in t.columns  # noqa: E731
                                                          if flat_label(c).endswith(column)][0]]
    mean, std, stated = pick(ours), pick(ours_std), pick(paper_df)
    if mean is None or mean.dropna().empty:
        return Findings(f"{title} No row has a run yet, so there is nothing of ours to compare"
                        f"{'; missing: ' + ', '.join(map(str, missing.values())) if missing else ''}.")
    label = next(flat_label(c) for c in ours.columns if flat_label(c).endswith(column))
    if per_seed is None:
        per_seed = {row: {seed: v[label] for seed, v in by_seed.items()}
                    for row, by_seed in ours.attrs.get("per_seed", {}).items()}
    versions, comparable = code_versions(runs)
    if not comparable:
        lines = ranking_lines(None, mean, names)[:1] + [versions]
    else:
        lines = ranking_lines(stated, mean, names) + ([versions] if versions else [])
        lines += compare_rows(stated, per_seed, reference, names) if per_seed else \
            ["- No per-seed values given, so no difference is judged (findings pair rows over matched seeds)."]
    if missing:
        lines.append(f"- Rows without a run (not compared): {', '.join(names.get(r, flat_label(r)) if names else flat_label(r) for r in missing)}.")
    return Findings("\n".join([title, "", *lines, "", WHY_SYNTHETIC if smoke else WHY_REAL]))


def curve_findings(name: str, long: pd.DataFrame, x: str, y: str, hue: str | None, *, smoke: bool,
                   reference_x=None, runs=None) -> Findings:
    """The closing paragraph of a curve figure: per group, the best and worst x (mean over seeds) and their gap
    paired over the seeds both points have (gap_verdict: never one seed's point against another point's mean),
    and the difference of every x from `reference_x` where given; `runs` as in table_findings."""
    title = f"**What ours shows ({name}).**"
    if long.empty:
        return Findings(f"{title} No point has a run yet.")
    versions, comparable = code_versions(runs)
    if not comparable:
        return Findings("\n".join([title, "", versions, "", WHY_SYNTHETIC if smoke else WHY_REAL]))
    lines = [versions] if versions else []
    for group, part in (long.groupby(hue, sort=False) if hue else [(None, long)]):
        means = part.groupby(x)[y].mean()
        label = f"{group}: " if group is not None else ""
        if len(means) < 2:
            lines.append(f"- {label}one point only ({x} = {means.index[0]}), no trend to read.")
            continue
        values = seed_values(part, x, y) if "seed" in part else {k: {0: v} for k, v in means.items()}
        best, worst = means.idxmax(), means.idxmin()
        gap, sd, seeds = paired_gap(values[best], values[worst])
        paired = "-" if math.isnan(gap) else f"{gap:.2f} points"
        lines.append(f"- {label}best at {x} = {best} ({means[best]:.1f}), worst at {worst} ({means[worst]:.1f}): a gap "
                     f"of {means[best] - means[worst]:.2f} points between the means (seeds {sorted(values[best])} "
                     f"and {sorted(values[worst])}); paired over matched seeds {paired} ({gap_verdict(gap, sd, seeds)}).")
        if reference_x is not None and reference_x in values:
            for point in (p for p in values if p != reference_x):
                gap, sd, seeds = paired_gap(values[point], values[reference_x])
                shown = "" if math.isnan(gap) else f"{gap:+.2f} points "
                lines.append(f"  - {x} = {point} vs {reference_x}: {shown}({gap_verdict(gap, sd, seeds)})")
    return Findings("\n".join([title, "", *lines, "", WHY_SYNTHETIC if smoke else WHY_REAL]))


def benchmark_findings(name: str, paper_df: pd.DataFrame, ours: pd.DataFrame, *, missing: int = 0,
                       command: str = "") -> Findings:
    """The closing paragraph of Tables III, IV and XI (rows: benchmarks or encoders): for each of our rows,
    ours against the paper's same row on `column` Avg, and where ours would rank among the paper's methods
    of the same group (same test/training sets or encoders); without a run, what is missing and the command."""
    title = f"**What ours shows ({name}).**"
    if ours is None or ours.empty:
        return Findings(f"{title} No run or evaluation of ours exists yet, so this table shows the paper's numbers "
                        f"only ({missing} item(s) missing; the synthetic benchmark cannot stand in for other "
                        f"benchmarks or encoders). They are made by `{command}`.")
    column = [c for c in paper_df.columns if paper.AVG in (c if isinstance(c, tuple) else (c,))][-1]
    lines = []
    for row, value in ours[column].dropna().items():
        group = paper_df.xs(row[:-1], level=list(range(len(row) - 1)), drop_level=False) \
            if isinstance(row, tuple) and len(row) > 1 else paper_df
        stated = paper_df[column].get(row, math.nan)
        others = group[column].drop(index=row, errors="ignore").dropna()
        rank = 1 + int((others > value).sum())
        vs = "the paper gives no value" if pd.isna(stated) else f"paper {stated:.2f}, ours {value - stated:+.2f}"
        lines.append(f"- {flat_label(row)}: ours {value:.2f} ({vs}); ours would rank {rank} of {len(others) + 1} "
                     f"among the paper's rows of its group.")
    if missing:
        lines.append(f"- {missing} item(s) still missing; `{command}` makes them.")
    return Findings("\n".join([title, "", *lines, "", WHY_REAL]))


NO_WORD = 0.05  # a row whose largest word weight is below this attends to no word (it is all on padding)


def _attention_line(row: str, weights: pd.Series) -> str:
    words = weights.drop("<padding>", errors="ignore")
    padding = float(weights.get("<padding>", 0.0))
    if words.max() < NO_WORD:
        return (f"- {row}: no word gets attention (largest {words.max():.2f}); {padding:.2f} of it lands on padding "
                "positions, so this row says nothing about the question's words.")
    return f"- {row}: most attention on {words.idxmax()!r} ({words.max():.2f}); {padding:.2f} on padding positions."


def attention_findings(attention, *, smoke: bool) -> Findings:
    """Fig. 8's closing paragraph. `attention`: one table (rows Visual / Audio, word columns and "<padding>")
    or {model: table or None} (the released model beside the one trained with the padding masked): per
    model and row the most attended word, or that no word gets attention when the row sits on padding."""
    variants = attention if isinstance(attention, dict) else {"": attention}
    lines = []
    for model, table in variants.items():
        if model:
            lines.append(f"*{model}*" + (": no run, so nothing to show." if table is None else ""))
        if table is not None:
            lines += [_attention_line(row, weights) for row, weights in table.iterrows()]
    lines += ["", "The paper shows the attention on the question's key words ('instrument' for the visual row, "
              "'loudest' for the audio row). Ours is one question of one checkpoint per model: it illustrates, it "
              "does not measure. Where the released model's row sits on padding, the masked model shows which "
              "words that path reads once padding is out of reach."]
    return Findings("\n".join(["**What ours shows (Fig. 8).**", "", *lines, "", WHY_SYNTHETIC if smoke else WHY_REAL]))

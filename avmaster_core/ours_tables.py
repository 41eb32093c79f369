"""Our rows of a paper table, with the seed spread (ddof=1) and the runs that stand in for a row.

    mean, std = ours_rows("table8", "results/runs/synthetic")
    mean.attrs["seeds"], mean.attrs["stand_in"]   # {row: seeds}, {row: experiment whose runs fill it}

Like `paper.ours_table` (a row whose configuration equals an earlier experiment's reads that one's runs,
experiments.run_for: Table VIII row 5, L_qa + L_a^p + L_v^p, is `table7/wo_dpcl`, and says so), and the
standard deviation over seeds is the sample one (ddof=1), as everywhere in the notebooks and md files.
Also the labels that say each row's setting (Tables VIII-X number their rows), and `benchmark_rows`: our
rows of the tables whose rows are other benchmarks or encoders (III, IV, XI), from `avmaster reproduce`'s
runs and evaluations, with what is missing and the command that makes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paper

def stand_ins(name: str) -> dict:
    """{row: experiment whose runs fill it} of table `name`'s rows filled by another experiment with the same
    configuration (experiments.run_for: Table VIII row 5, L_qa + L_a^p + L_v^p, is `table7/wo_dpcl`)."""
    from . import experiments

    return {row: experiments.run_for(own) for row, own in experiments.filled_by(name).items()
            if experiments.run_for(own) != own}


def ours_rows(name: str, runs_dir, seeds=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, std with ddof=1) of our finished runs in table `name`'s layout; rows without any run are absent.
    attrs: "seeds" {row: seeds}, "stand_in" {row: experiment used instead of the row's own}."""
    rows, shared = paper.EXPERIMENT_ROWS[name], stand_ins(name)
    means, stds, used, stand_in, per_seed = {}, {}, {}, {}, {}
    for label, experiment in rows.items():
        runs = paper.finished_runs(runs_dir, experiment, seeds)
        if not runs:
            continue
        tables = pd.concat([paper.in_table_layout(name, t) for t in runs.values()])
        means[label], stds[label] = tables.mean(), tables.std(ddof=1)
        used[label] = sorted(runs)
        per_seed[label] = _per_seed(runs, lambda t: paper.in_table_layout(name, t))
        if label in shared:
            stand_in[label] = shared[label]
    reference = paper.ours_table(name, runs_dir, seeds)  # the layout (index names, columns) of ours
    out = [pd.DataFrame([v[label].reindex(reference.columns).to_numpy(dtype=float) for label in means],
                        index=pd.Index(list(means), name=reference.index.name), columns=reference.columns)
           for v in (means, stds)]
    for frame in out:
        frame.attrs.update(seeds=used, stand_in=stand_in, per_seed=per_seed)
    return out[0], out[1]


def _per_seed(tables: dict, layout=lambda t: t) -> dict:
    """{seed: {column label: value}} of one row's per-seed one-row tables (findings pair rows over seeds)."""
    from .findings import flat_label

    return {int(seed): {flat_label(c): float(v) for c, v in layout(t).iloc[0].items()} for seed, t in tables.items()}


def missing(name: str, mean: pd.DataFrame) -> dict:
    """{row: experiment} of the rows of `name` with no run (own or stand-in)."""
    return {label: experiment for label, experiment in paper.EXPERIMENT_ROWS[name].items()
            if label not in mean.index}


def row_names(name: str, stand_in: dict | None = None) -> dict:
    """{row label: text saying the setting} (Tables VIII-X number their rows), a stand-in row marked
    "(ours: runs of <experiment>)"."""
    names = _setting_names(name)
    return {row: names.get(row, str(row)) + (f" (ours: runs of {stand_in[row]})" if row in (stand_in or {}) else "")
            for row in paper.paper_table(name).index}


def _setting_names(name: str) -> dict:
    table = paper.paper_table(name)
    if name == "table8":
        losses = [c for c in paper.LOSS_COLUMNS if c in table.columns]
        return {row: " + ".join(c for c in losses if table.loc[row, c]) for row in table.index}
    if name == "table9":
        return {row: f"length {row}" for row in table.index}
    if name == "table10":
        text = {(False, False): "nothing shared", (True, False): "attention shared",
                (False, True): "bias shared", (True, True): "attention + bias shared"}
        return {row: text[(bool(table.loc[row, "A-S"]), bool(table.loc[row, "B-S"]))] for row in table.index}
    return {}


def labelled(table: pd.DataFrame | None, names: dict) -> pd.DataFrame | None:
    """`table` with its rows renamed by `names` (from `row_names`)."""
    return None if table is None else table.rename(index=names)


def stacked(both: pd.DataFrame) -> pd.DataFrame:
    """A side-by-side table (`paper.side_by_side`: column level 0 = source) with the sources as rows, so that
    a wide table (Table II: 13 columns per source) fits the screen with each method's paper and our rows
    next to each other; rows without numbers (no run of ours) are left out."""
    return both.stack(level=0, future_stack=True).dropna(how="all")


def mean_pm_std(mean: pd.DataFrame, std: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Text cells "68.0 ± 1.2" (mean ± sample s.d. over seeds); a row with one seed has no spread and reads
    "60.9 (1 seed)" instead of "± nan"."""
    text = mean.round(digits).astype(str)
    spread = std.reindex_like(mean)
    return text.where(spread.isna(), text + " ± " + spread.round(digits).astype(str)).where(
        ~spread.isna() | mean.isna(), text + " (1 seed)")


def over_seeds(per_seed: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """{seed: table with the same rows and columns} -> (mean, std with ddof=1) over seeds; attrs["seeds"]
    maps each row to the seeds averaged (e.g. analysis.inference_variants run once per checkpoint)."""
    if not per_seed:
        raise ValueError("no seeds given: train the full model first (`default`)")
    stacked = pd.concat(per_seed, names=["seed"])
    first = next(iter(per_seed.values()))
    grouped = stacked.groupby(level=1, sort=False)
    mean, std = grouped.mean().reindex(first.index), grouped.std(ddof=1).reindex(first.index)
    by_row = {row: _per_seed({seed: t.loc[[row]] for seed, t in per_seed.items()}) for row in first.index}
    for frame in (mean, std):
        frame.index.name = first.index.name
        frame.attrs.update(seeds={row: sorted(per_seed) for row in first.index}, stand_in={}, per_seed=by_row)
    return mean, std


def mean_and_std(long: pd.DataFrame, by, columns=paper.SUMMARY_COLUMNS) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof=1, as in the md files) of `columns` per group of a long
    table with one row per seed; column level 0 says which ("mean", "std (ddof=1)"), plus "seeds"."""
    grouped = long.groupby(by, sort=False)[list(columns)]
    return pd.concat({"mean": grouped.mean(), "std (ddof=1)": grouped.std(ddof=1),
                      "seeds": grouped.size().to_frame("n")}, axis=1)


# ------------------------------------------------------------------------------------------------ Tables III, IV, XI
@dataclass
class BenchmarkRows:
    """Our rows of a table whose rows are other benchmarks or encoders (Tables III, IV, XI), from the runs and
    evaluations `avmaster reproduce` makes: `ours` (mean over the finished seeds, the paper's layout; empty
    when none), `missing` (what is still to do: status, item, what it needs first) and `command`, the exact
    `avmaster reproduce run` line that makes what is missing."""

    name: str
    ours: pd.DataFrame
    missing: pd.DataFrame
    command: str
    notes: tuple[str, ...] = ()

    def note(self) -> str:
        seeds = self.ours.attrs.get("seeds", {})
        have = f"ours: {len(self.ours)} row(s), seeds {sorted({s for v in seeds.values() for s in v})}" \
            if len(self.ours) else "ours: no finished run or evaluation yet"
        if self.missing.empty:
            return "\n".join([have, "nothing left to do", *(f"note: {n}" for n in self.notes)])
        folded = self.missing.assign(item=self.missing["item"].str.replace(r" seed (\d+)$", "", regex=True),
                                     seed=self.missing["item"].str.extract(r" seed (\d+)$", expand=False))
        lines = [f"- {status}: {item} (seeds {','.join(group['seed'].dropna())}); needs first: "
                 f"{group['needs first'].iloc[0] or '-'}" for (item, status), group in
                 folded.groupby(["item", "status"], sort=False)]
        return "\n".join([have, f"{len(self.missing)} item(s) still to do:", *lines, "made by",
                          f"  {self.command}", *(f"note: {n}" for n in self.notes)])


def _repo_path(path) -> str:
    """A notebook-relative folder ("../results/runs") as the repository-root path a shell command takes."""
    return Path(path).as_posix().removeprefix("../")


def benchmark_rows(name: str, settings) -> BenchmarkRows:
    """Our rows of Table III, IV or XI for a notebook (`settings`: its NotebookSettings): the runs under
    settings.runs_root, the evaluations under RESULTS/eval (SMOKE: beside the runs, <runs_root>/../eval, since
    its RESULTS is a scratch folder), the annotations and features under settings.DATA, the notebook's seeds
    (default 1, 2, 3) and preset. Reads only; trains nothing."""
    from .reproduce import FINISHED, ReproduceSettings, build_plan
    from .reproduce_report import ours_table

    seeds = tuple(settings.seeds or (1, 2, 3))
    results = settings.runs_root.parent if settings.smoke else settings.results
    folders = dict(data=str(settings.DATA), runs=str(settings.runs_root), results=str(results))
    plan = build_plan(ReproduceSettings(**folders, seeds=seeds, preset=settings.preset), [name])
    items = [i for i in plan.artefact_items(name) if i.status != FINISHED]
    missing = pd.DataFrame([(i.status, i.key, "; ".join(i.needs)) for i in items],
                           columns=["status", "item", "needs first"])
    preset = " --preset paper" if settings.preset == "paper" else ""
    command = (f"avmaster reproduce run --only {name} --data {_repo_path(folders['data'])} --runs "
               f"{_repo_path(folders['runs'])} --results {_repo_path(folders['results'])} --seeds {max(seeds)}{preset}")
    return BenchmarkRows(name, ours_table(plan, name), missing, command, tuple(plan.artefacts[name].notes))

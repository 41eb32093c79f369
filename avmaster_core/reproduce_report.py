"""What `avmaster reproduce` shows and writes: the plan as text, and our finished numbers in each artefact's
layout beside the paper's (`<results>/reproduce/<artefact>.csv`)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .reproduce import (BLOCKED, CONFLICT, FINISHED, NOTEBOOK_CELL, EvalSpec, Plan, RunSpec, artefacts, not_yet,
                        read_table)

_SEED = re.compile(r" seed \d+")


def _hours(h: float) -> str:
    return "-" if h == 0 else "<0.01" if h < 0.005 else (f"{h:.2f}" if h < 10 else f"{h:.0f}")


def _artefact_line(plan: Plan, name: str) -> list[str]:
    art = plan.artefacts[name]
    filled = sum(all(plan.items[k].status == FINISHED for k in keys) for _, keys in art.cells)
    items = plan.artefact_items(name)
    if plan.complete(name):
        status, need = "finished", ""
    else:
        counts = pd.Series([i.status for i in items]).value_counts()
        status = ", ".join(f"{n} {s}" for s, n in counts.items())
        blocked = [n for i in items if i.status in (BLOCKED, CONFLICT) for n in i.needs]
        need = not_yet(name) or (blocked[0] if blocked else next((n for i in items for n in i.needs), ""))
    hours = sum(i.hours for i in items if i.status != FINISHED)
    return [name, f"{filled}/{len(art.cells)}", status, need, _hours(hours)]


def _item_groups(plan: Plan) -> list[list[str]]:
    """One line per item with its seeds folded together."""
    groups: dict[str, list] = {}
    for item in plan.item_list():
        groups.setdefault(_SEED.sub("", item.key), []).append(item)
    rows = []
    for key, items in groups.items():
        seeds = [str(i.spec.seed if isinstance(i.spec, RunSpec) else i.spec.run.seed) for i in items
                 if isinstance(i.spec, (RunSpec, EvalSpec))]
        statuses = pd.Series([i.status for i in items]).value_counts()
        status = statuses.index[0] if len(statuses) == 1 else ", ".join(f"{n} {s}" for s, n in statuses.items())
        need = next((n for i in items for n in i.needs), "")
        if items[0].kind == "questions" and items[0].questions:
            count = f"up to {items[0].questions:,}" if items[0].status == BLOCKED else f"{items[0].questions:,}"
            need = f"{count} questions without features" + (f"; {need}" if need else "")
        result = "; ".join(dict.fromkeys(i.result for i in items if i.result))
        arts = sorted(items[0].artefacts, key=artefacts().index)
        where = " ".join(arts[:2]) + (f" +{len(arts) - 2}" if len(arts) > 2 else "")
        rows.append([status, key, ",".join(seeds) or "-", where, need or result,
                     _hours(sum(i.hours for i in items if i.status != FINISHED))])
    return rows


def _text_table(header: list[str], rows: list[list[str]], wrap: int = 70) -> str:
    rows = [[c if len(c) <= wrap else c[: wrap - 3] + "..." for c in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_plan(plan: Plan, details: bool = True) -> str:
    s = plan.settings
    items = list(plan.items.values())
    counts = pd.Series([i.status for i in items]).value_counts()
    head = [f"Reproduction plan: {len(plan.artefacts)} artefact(s), seeds {','.join(map(str, s.seeds))}, preset "
            f"{s.preset}, size {s.size}; data {s.data}/, runs {s.runs}/, results {s.results}/",
            f"Time estimates from {plan.speed.source}", ""]
    arts = _text_table(["artefact", "cells", "status", "needs first", "GPU h*"],
                       [_artefact_line(plan, n) for n in plan.artefacts])
    total = (f"\n{len(items)} items: " + ", ".join(f"{n} {st}" for st, n in counts.items())
             + f". Estimated GPU time left: {plan.hours_left():,.1f} h ({plan.hours_left() / 24:.1f} GPU-days) on one GPU."
             + "\n* an artefact's hours include the runs it shares with others (the full model); the total counts each once")
    notes = [f"  {name}: {note}" for name, art in plan.artefacts.items() for note in art.notes]
    text = "\n".join(head) + arts + total + ("\nNotes:\n" + "\n".join(notes) if notes else "")
    if details:
        text += "\n\nItems (seeds folded):\n" + _text_table(
            ["status", "item", "seeds", "for", "needs first / result", "GPU h"], _item_groups(plan))
    return text


# -------------------------------------------------------------------------------------------------------------
# Our numbers in each artefact's layout
# -------------------------------------------------------------------------------------------------------------
def _item_table(plan: Plan, key: str) -> pd.DataFrame | None:
    item = plan.items[key]
    if item.status != FINISHED:
        return None
    spec = item.spec
    if isinstance(spec, RunSpec):
        return read_table(spec.folder(plan.settings) / "test_table.csv", spec.dataset)
    return read_table(spec.table_path(plan.settings), spec.dataset)


def _summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    from . import paper

    if name in ("table2", "table3") or not isinstance(table.columns, pd.MultiIndex):
        return table
    if name == "table6":
        return paper.in_table_layout(name, table)
    return paper.summary_columns(table)


def cell_tables(plan: Plan, name: str) -> dict:
    """{cell label: {seed: its finished test table, one row in the artefact's columns}} of artefact `name`;
    cells with no finished seed are absent (the report reads the spread over seeds from these)."""
    out = {}
    for label, keys in plan.artefacts[name].cells:
        if label == NOTEBOOK_CELL:  # only makes the notebook wait for the full model: its numbers are Table II's
            continue
        tables = {_seed_of(plan.items[k].spec): _item_table(plan, k) for k in keys}
        found = {seed: _summary(name, t) for seed, t in tables.items() if t is not None}
        if found:
            out[label] = found
    return out


def ours_table(plan: Plan, name: str) -> pd.DataFrame:
    """Our finished cells of artefact `name`, mean over seeds, in the paper's row labels and columns
    (`.attrs["seeds"]`: the seeds behind each row). Cells with no finished seed are absent."""
    rows, seeds = {}, {}
    for label, found in cell_tables(plan, name).items():
        rows[label] = pd.concat(found.values()).mean(numeric_only=True)
        seeds[label] = list(found)
    if not rows:
        return pd.DataFrame()
    labels = list(rows)
    index = pd.MultiIndex.from_tuples(labels) if all(isinstance(x, tuple) for x in labels) else \
        pd.Index(labels, dtype=object)
    out = pd.DataFrame([rows[label] for label in labels], index=index)
    if name.startswith("table"):  # the paper's index names and column order
        from . import paper

        base = paper.paper_table(name)
        out.index.names = base.index.names
        out = out.reindex(columns=[c for c in base.columns if c in out.columns])
    else:
        out = out.rename_axis("point")
    if name == "table6":  # the size of the model trained, beside its accuracy
        from .official import trained_parameters
        from .paper import TABLE6_PARAMS

        out[TABLE6_PARAMS] = trained_parameters(plan.settings.preset) / 1e6
    out.attrs["seeds"] = seeds
    return out


def ours_for(artefact: str, *, data="data", runs="results/runs", results="results", seeds=(1, 2, 3),
             preset: str = "official") -> pd.DataFrame:
    """Our finished numbers of one table or figure, for a notebook: `ours_table` of the plan of that artefact
    alone (runs count when they finished with the default recipe; see `avmaster reproduce plan`)."""
    from .reproduce import ReproduceSettings, build_plan

    settings = ReproduceSettings(data=str(data), runs=str(runs), results=str(results), seeds=tuple(seeds),
                                 preset=preset)
    return ours_table(build_plan(settings, [artefact]), artefact)


def _seed_of(spec) -> int:
    return spec.seed if isinstance(spec, RunSpec) else spec.run.seed


def write_tables(plan: Plan) -> dict[str, Path]:
    """`<results>/reproduce/<artefact>.csv` for every artefact with at least one finished cell: the paper's
    table beside ours (tables), or our points (figures). Returns {artefact: path}."""
    from . import paper
    from .plots import save_table

    written = {}
    folder = Path(plan.settings.results) / "reproduce"
    for name in plan.artefacts:
        ours = ours_table(plan, name)
        if ours.empty:
            continue
        table = paper.side_by_side(name, ours, "ours") if name.startswith("table") else ours
        written[name] = save_table(table, folder / f"{name}.csv")
    return written

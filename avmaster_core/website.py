"""`make report`: the executed notebooks as a static website (Sphinx + myst-nb, Jupyter Book 1's engine).

    python -m avmaster_core.website --notebooks build/notebooks --out build/report   # -> build/report/html/index.html

The site renders what papermill produced (build/notebooks/*.ipynb after `make demo` or `make reproduce`):
nothing is re-executed (myst-nb's `nb_execution_mode = "off"`), every figure is the PNG a notebook output
holds (myst-nb writes the decoded bytes), every table a notebook showed is its HTML table. The builder adds
four things around the notebooks, all computed here from the same files the notebooks read:

    index       the reproduction at a glance: one row per table and figure of the paper, the paper's value of
                its headline cell, ours from `avmaster reproduce`'s finished runs (reproduce.build_plan), the
                difference, whether it is within the seed noise, the seeds, a status and the command that
                makes it; beside it, clearly apart, the synthetic demo's number of the same cell
    synthetic   what the bundled synthetic benchmark is (results/synthetic.md), linked from every page
                whose numbers come from it
    provenance  package version and commit, the machine, each notebook's papermill run and parameters, the
                runs behind each table (config fingerprints, seeds, versions), data and feature fingerprints
    notebooks/  one page per executed notebook, headed by the paper's table or figure it makes, the source
                notebook and the executed copy (downloadable)

Why not mystmd (Jupyter Book 2): `myst build --html` downloads its theme from the project's template service
at build time; no registry package ships it, so it cannot build offline here. Sphinx + myst-nb + the book
theme install from PyPI and build and view with no network.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import pandas as pd

from .atomic import atomic_write

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = "report"                 # avmaster_core/resources/report/: conf.py and the page templates
NOISE_SDS = 2.0                      # within noise: |ours - paper| <= 2 sd of (one paper run - our n-seed mean)
PAPER = "AV-Master ([arXiv 2510.18346](https://arxiv.org/abs/2510.18346)), Section IV"
SYNTHETIC_LABEL = "ours (synthetic)"  # the `source` label of the demo's numbers in results/*.csv (notebook_params)
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII"]
# Status words of the front page, in the order a reader cares about them.
REPRODUCED, DIFFERS, PARTLY, RUN_NO_NUMBER, NOT_RUN, NOTHING = (
    "reproduced", "differs", "partly run", "run (paper gives no number)", "not yet run", "nothing to run")
# The paper's figures that are drawings, and its tables that no run makes: why, and where the package meets them.
NOTHING_TO_RUN = {
    "fig1": "an illustration of the task (no measurement)",
    "fig2": "the architecture; implemented in avmaster_core/model.py",
    "fig3": "the temporal dynamic perception path; implemented in avmaster_core/model.py",
    "table1": "dataset sizes, from the annotation files (`avmaster data fetch`; `paper_table(\"table1\")`)",
}
FIGURE_CAPTIONS = {"fig1": "Illustration of the AVQA task and the comparison with previous work.",
                   "fig2": "Overview of AV-Master.",
                   "fig3": "The pipeline of the temporal dynamic perception path."}


class ReportError(ValueError):
    """Bad input to the report builder (no executed notebooks, ...): one line, what to do."""


# ---------------------------------------------------------------------------------------------------- the paper
def paper_items() -> list[str]:
    """Every table and figure of the paper, in its order: table1..table13, fig1..fig8."""
    from . import paper

    tables = [n for n in paper.NAMES if n.startswith("table")]
    return tables + [f"fig{i}" for i in range(1, 9)]


def item_label(key: str) -> str:
    """"table7" -> "Table VII", "fig4" -> "Fig. 4" (the paper's own numbering)."""
    if key.startswith("table"):
        return f"Table {ROMAN[int(key[5:]) - 1]}"
    return f"Fig. {key[3:]}"


def item_caption(key: str) -> str:
    from . import paper

    return FIGURE_CAPTIONS.get(key) or paper.paper_caption(key)


# ------------------------------------------------------------------------------------------- the glance table
def within_noise(diff: float, sd: float, n: int) -> bool | None:
    """Whether our n-seed mean minus the paper's single run is within NOISE_SDS standard deviations of that
    difference (sd * sqrt(1 + 1/n), sd = our sample sd over seeds, ddof=1); None with fewer than 2 seeds."""
    if n < 2 or math.isnan(sd):
        return None
    return abs(diff) <= NOISE_SDS * sd * math.sqrt(1 + 1 / n)


@dataclass
class Cell:
    """Our numbers of one cell (a paper row, or a figure point) over seeds, beside the paper's."""

    label: object
    values: list[float]
    paper: float = math.nan

    @property
    def mean(self) -> float:
        return float(pd.Series(self.values).mean())

    @property
    def sd(self) -> float:
        return float(pd.Series(self.values).std(ddof=1)) if len(self.values) > 1 else math.nan

    @property
    def noise(self) -> bool | None:
        return None if math.isnan(self.paper) else within_noise(self.mean - self.paper, self.sd, len(self.values))


@dataclass
class GlanceRow:
    key: str
    label: str
    caption: str
    page: str | None                  # the notebook page (relative link) or None
    cell: str = "—"                   # which cell the row compares
    paper: str = "—"
    ours: str = "—"
    difference: str = "—"
    noise: str = "—"
    seeds: str = "—"
    status: str = NOT_RUN
    detail: str = ""                  # e.g. "3 of 6 rows run; 2 within noise"
    command: str = ""
    synthetic: str = "—"


def _fmt(value: float, sd: float = math.nan, n: int | None = None) -> str:
    text = f"{value:.2f}" + ("" if math.isnan(sd) else f" ± {sd:.2f}")
    return text + (f" ({n} seed{'s' * (n != 1)})" if n else "")


def _headline_column(table: pd.DataFrame):
    """The column a row is compared on: the last numeric one (Avg, Overall Avg, Total Accuracy)."""
    numeric = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    return numeric[-1] if numeric else None


def _paper_value(key: str, label, column) -> float:
    from . import paper

    table = paper.paper_table(key)
    if key == "fig5":
        match = table[table["Input"] == label]["Accuracy"]
        return float(match.iloc[0]) if len(match) else math.nan
    if column is None or label not in table.index:
        return math.nan
    value = table.loc[label, column]
    return float(value) if pd.notna(value) else math.nan


def headline(plan, key: str):
    """The cell the front page shows: the full model's (AV-Master's) cell where the paper gives it a number,
    else the first cell with a paper number, else the full model's, else the first; never the placeholder that
    only makes a notebook wait for the full model."""
    from . import experiments, paper
    from .reproduce import NOTEBOOK_CELL

    labels = [label for label, _ in plan.artefacts[key].cells if label != NOTEBOOK_CELL]
    runs = paper.EXPERIMENT_ROWS.get(key) or experiments.filling(key)
    full = [label for label in labels if runs.get(label) == experiments.FULL_MODEL or label == paper.OURS
            or (isinstance(label, tuple) and label[-1] == paper.OURS)]
    numbered = [label for label in labels if not math.isnan(_paper_value(key, label, _column(key)))]
    return next(iter([label for label in full if label in numbered] + numbered + full + labels), None)


def _column(key: str):
    """The column compared: the paper table's last numeric one (Avg, Overall Avg, Total Accuracy); Avg for figures."""
    from . import paper

    if key == "table6":  # its accuracy (Table II's average), not its last column (the model's size)
        return paper.TABLE6_ACC
    return _headline_column(paper.paper_table(key)) if key.startswith("table") else paper.AVG


def real_cells(plan, key: str) -> tuple[list[Cell], int]:
    """(our finished cells of artefact `key` from `avmaster reproduce`'s runs, the number of cells it has)."""
    from .reproduce import NOTEBOOK_CELL
    from .reproduce_report import cell_tables

    column = _column(key)
    cells = []
    for label, tables in cell_tables(plan, key).items():
        values = [float(t[column].iloc[0]) for t in tables.values() if column in t.columns]
        if values:
            cells.append(Cell(label, values, _paper_value(key, label, column)))
    return cells, sum(label != NOTEBOOK_CELL for label, _ in plan.artefacts[key].cells)


def _status(cells: list[Cell], total: int, complete: bool) -> tuple[str, str]:
    if not cells:
        return (RUN_NO_NUMBER, "computed by its notebook") if complete and total == 0 else (NOT_RUN, "")
    compared = [c for c in cells if not math.isnan(c.paper)]
    if not compared:
        return RUN_NO_NUMBER, f"{len(cells)} of {total} points run"
    within = sum(c.noise is True for c in compared)
    detail = f"{len(cells)} of {total} cells run; {within} of {len(compared)} compared within noise"
    if any(c.noise is False for c in compared):
        return DIFFERS, detail
    if complete and within == len(compared):
        return REPRODUCED, detail
    return PARTLY, detail


def _label_text(label) -> str:
    return " / ".join(map(str, label)) if isinstance(label, tuple) else str(label)


def _synthetic_value(key: str, label, results: Path) -> str:
    """The demo's number of the headline cell, from the CSV its notebook wrote (only when it is labelled
    synthetic), with the seed spread where the shipped runs map onto the table's rows (ours_tables)."""
    from . import ours_tables, paper
    from .notebook_params import SMOKE_RUNS

    path = results / f"{key}.csv"
    if not path.is_file() or SYNTHETIC_LABEL not in path.read_text().split("\n", 1)[0]:
        return "—"
    runs = REPO / SMOKE_RUNS.as_posix().removeprefix("../")
    if key in paper.EXPERIMENT_ROWS and key != "table5":  # Table V's demo runs are the multiple-choice variant's
        mean, std = ours_tables.ours_rows(key, runs)
        if label in mean.index:
            column = mean.columns[-1]
            return _fmt(mean.loc[label, column], std.loc[label, column], len(mean.attrs["seeds"][label]))
    if key.startswith("table") or key == "fig5":
        frame = pd.read_csv(path, header=[0, 1], index_col=0)
        ours = frame[SYNTHETIC_LABEL] if SYNTHETIC_LABEL in frame.columns.get_level_values(0) else None
        if ours is not None and str(label) in ours.index.astype(str):
            value = ours[ours.index.astype(str) == str(label)].iloc[0, -1]
            if pd.notna(value):
                return f"{value:.2f}"
    return "on its page"


def glance(plan, notebooks: dict[str, Path], results: Path) -> list[GlanceRow]:
    """One row per table and figure of the paper (paper_items)."""
    from . import paper

    rows = []
    for key in paper_items():
        page = f"notebooks/{notebooks[key].stem}.html" if key in notebooks else None
        row = GlanceRow(key, item_label(key), item_caption(key), page)
        if key in NOTHING_TO_RUN or key not in plan.artefacts:
            row.status, row.detail = NOTHING, NOTHING_TO_RUN.get(key, "no run fills it")
            rows.append(row)
            continue
        row.command = f"avmaster reproduce run --only {key}"
        cells, total = real_cells(plan, key)
        row.status, row.detail = _status(cells, total, plan.complete(key))
        label = headline(plan, key)
        column = _column(key)
        if key == "fig8":
            row.cell = "most attended word"
            row.paper = "; ".join(f"{r.Modality}: {r['Most attended word']}"
                                  for _, r in paper.paper_table(key).iterrows())
        else:
            row.cell = "—" if label is None else _label_text(label)
            value = math.nan if label is None else _paper_value(key, label, column)
            row.paper = "no number (a curve)" if math.isnan(value) else f"{value:.2f}"
        head = next((c for c in cells if c.label == label), None)
        if head is not None:
            row.ours, row.seeds = _fmt(head.mean, head.sd), str(len(head.values))
            if not math.isnan(head.paper):
                row.difference = f"{head.mean - head.paper:+.2f}"
                row.noise = {True: "yes", False: "no", None: "unknown (1 seed)"}[head.noise]
        row.synthetic = _synthetic_value(key, label, results)
        rows.append(row)
    return rows

# ------------------------------------------------------------------------------------------- the notebook pages
@dataclass
class NotebookPage:
    """One executed notebook: what made it, which paper items it shows, whether its numbers are synthetic."""

    path: Path                       # the executed copy (build/notebooks/NN_*.ipynb)
    items: list[str] = field(default_factory=list)
    papermill: dict = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def anchor(self) -> str:
        """The label of this notebook's section on the provenance page."""
        return f"provenance-{self.stem.replace('_', '-')}"

    @property
    def smoke(self) -> bool:
        return bool(self.papermill.get("parameters", {}).get("SMOKE", True))

    @property
    def runs(self) -> Path:
        """The runs folder its parameters resolved to (notebook_settings' rule), relative to the repository."""
        from .notebook_params import FULL_RESULTS, SMOKE_RUNS, SMOKE_RUNS_OF

        params = self.papermill.get("parameters", {})
        runs = Path(params["RUNS"]) if params.get("RUNS") else \
            SMOKE_RUNS_OF.get(self.stem, SMOKE_RUNS) if self.smoke else FULL_RESULTS / "runs"
        runs = runs / "paper" if params.get("PRESET") == "paper" else runs
        return Path(runs.as_posix().removeprefix("../"))


def read_pages(folder: Path) -> list[NotebookPage]:
    """The executed notebooks in `folder`, each with the paper items its name says it makes."""
    import nbformat

    from .notebooks import NOTEBOOK_GLOB
    from .reproduce import notebook_of_artefacts

    paths = sorted(Path(folder).glob(NOTEBOOK_GLOB))
    if not paths:
        raise ReportError(f"{folder}: no executed notebooks (NN_*.ipynb) found; run `make demo` (or `make "
                          "reproduce`) first, or pass --notebooks with the folder papermill wrote")
    items = notebook_of_artefacts(paths)
    pages = []
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        if "papermill" not in nb.metadata:
            raise ReportError(f"{path}: not executed by papermill (no papermill metadata); the report renders "
                              "what `make demo` or `make reproduce` executed, never the sources in notebooks/")
        pages.append(NotebookPage(path, [k for k, p in items.items() if p == path], dict(nb.metadata.papermill)))
    return pages


def _header_cell(page: NotebookPage) -> str:
    """The markdown put under a notebook's title: the paper items it makes, where it came from, and (for
    synthetic numbers) the warning that they are not MUSIC-AVQA results."""
    pm = page.papermill
    lines = []
    if page.smoke:
        lines += ["```{admonition} Synthetic benchmark: these are not MUSIC-AVQA numbers",
                  ":class: warning",
                  "This notebook ran in SMOKE mode: every number of ours on this page comes from the bundled "
                  "synthetic benchmark (generated scenes, CPU-sized models), labelled `ours (synthetic)`. It shows "
                  "that the experiment runs end to end and how variants rank on that task; it is not a "
                  "reproduction of the paper's numbers. {doc}`What the synthetic benchmark is </synthetic>`.",
                  "```", ""]
    paper_line = "; ".join(f"**{item_label(k)}** ({item_caption(k)})" for k in page.items)
    lines.append(f"**Paper:** {paper_line or 'beyond the paper (no table or figure of its own)'} — {PAPER}.  ")
    params = ", ".join(f"`{k}={v!r}`" for k, v in pm.get("parameters", {}).items()) or "its defaults"
    if pm.get("exception"):
        run = "**failed** (its outputs stop at the failing cell, below)"
    elif not pm.get("end_time"):
        run = "**had not finished** when this site was built (its outputs stop where the run was)"
    else:
        run = f"on {str(pm['end_time'])[:19].replace('T', ' ')} UTC in {pm.get('duration') or 0:.0f} s"
    lines.append(f"**Made by:** `notebooks/{page.path.name}`, executed by papermill {pm.get('version', '')} {run} "
                 f"with {params}; {{download}}`the executed notebook <{page.path.name}>`.  ")
    lines.append("**See also:** {doc}`the reproduction at a glance </index>` · "
                 f"{{ref}}`provenance of this page <{page.anchor}>`")
    return "\n".join(lines)


def stage_notebook(page: NotebookPage, dest: Path) -> None:
    """Copy the executed notebook with the header cell after its title cell; outputs stay as papermill wrote them."""
    import nbformat

    nb = nbformat.read(str(page.path), as_version=4)
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, nbformat.v4.new_markdown_cell(_header_cell(page)))
    nbformat.write(nb, str(dest / page.path.name))


# ------------------------------------------------------------------------------------------------- provenance
def fingerprint(path: Path, whole_below: int = 64 << 20) -> str:
    """sha256 of a file (first 16 hex digits); of a larger one, of its size, first and last MiB ("partial")."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= whole_below:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()[:16]
        digest.update(str(size).encode())
        digest.update(f.read(1 << 20))
        f.seek(-(1 << 20), 2)
        digest.update(f.read())
    return digest.hexdigest()[:16] + " (partial: size, first and last MiB)"


def data_fingerprints(data: Path) -> list[dict]:
    """Every annotation and feature file under `data` (one folder per dataset) with its size and fingerprint."""
    rows = []
    for path in sorted(p for p in Path(data).glob("*/*") if p.is_file() and p.suffix in (".json", ".h5", ".csv")):
        rows.append({"file": path.as_posix(), "bytes": f"{path.stat().st_size:,}", "sha256": fingerprint(path)})
    return rows


def run_row(folder: Path) -> dict:
    """One finished run folder as the provenance page lists it: seed, test accuracy, the commit that made it and
    its configuration hash (config.json's "provenance", avmaster_core.provenance; a run made before provenance
    was recorded says so, and its configuration hash is computed the same way from its config.json), versions."""
    from . import provenance as prov_module

    prov, record = prov_module.read_run_provenance(folder)
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
    store = ((prov or {}).get("data") or {}).get("store") or {}
    return {"run": os.path.relpath(folder, REPO) if folder.is_relative_to(REPO) else folder.as_posix(),
            "seed": summary.get("seed", folder.name), "test acc": f"{summary.get('test_acc', math.nan):.2f}",
            "commit": prov_module.commit_label(prov),
            "config": (prov or {}).get("config_sha256") or (prov_module.config_hash(record) if record else "—"),
            "features": f"{store.get('bytes', 0):,} bytes, {store.get('items', {})}" if store else "not recorded",
            "versions": ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())}


def item_runs(key: str, page: "NotebookPage", results: Path) -> tuple[str, list[dict]]:
    """(where the list comes from, the runs behind a paper item): the runs its notebook read, from the sidecar
    its table was written with (`<results>/<key>.csv.provenance.json`); without one, the finished runs of the
    experiments that fill its cells in the notebook's runs folder."""
    from .provenance import SIDECAR_SUFFIX

    sidecar = Path(results) / f"{key}.csv{SIDECAR_SUFFIX}"
    if sidecar.is_file():
        runs = [(sidecar.parent / r["run"]).resolve() for r in json.loads(sidecar.read_text())["runs"]]
        return f"the runs its notebook read (`{sidecar.as_posix()}`)", [run_row(r) for r in runs]
    folders = [p.parent for e in item_experiments(key) for p in sorted((REPO / page.runs / e).glob("*/summary.json"))]
    return (f"no sidecar beside its table: the finished runs, in `{page.runs.as_posix()}`, of the experiments that "
            "fill its cells", [run_row(f) for f in folders])


def item_experiments(key: str) -> list[str]:
    """The experiments whose runs a paper item's notebook reads: those filling its cells, else the full model."""
    from . import experiments, paper

    if key in paper.EXPERIMENT_ROWS:
        return list(paper.EXPERIMENT_ROWS[key].values())
    return list(experiments.filling(key).values()) or [experiments.FULL_MODEL]


def provenance(pages: list[NotebookPage], data: Path, results: Path) -> dict:
    """Everything the provenance page shows (see the module docstring)."""
    import torch

    from .provenance import code_version

    code = code_version()
    commit = (code["commit"] or "unknown (not a git checkout)") + (" (with uncommitted changes)" if code["dirty"] else "")
    machine = {"platform": platform.platform(), "processor": platform.machine(), "CPU cores": str(os.cpu_count()),
               "python": platform.python_version(), "torch": torch.__version__,
               "CUDA": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"}
    tables = []
    for page in pages:
        for key in page.items:
            source, rows = item_runs(key, page, results)
            tables.append({"item": item_label(key), "page": page.stem, "source": source, "rows": rows})
    return {"version": code["package"], "commit": commit,
            "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine,
            "pages": pages, "tables": tables, "data": data_fingerprints(data)}


# ------------------------------------------------------------------------------------------------ the build
def _render(template: str, dest: Path, **context) -> None:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("avmaster_core", f"resources/{TEMPLATES}"),
                             autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    # `x` in a text put into raw HTML (the front page's table) becomes <code>x</code>, as Markdown would show it
    env.filters["code"] = lambda text: jinja2.utils.markupsafe.Markup(
        re.sub(r"`([^`]+)`", r"<code>\1</code>", str(text)))
    text = env.get_template(template).render(**context)
    atomic_write(dest, lambda f: f.write(text), mode="w")


def build(notebooks: Path = Path("build/notebooks"), out: Path = Path("build/report"), results: Path = Path("results"),
          data: Path = Path("data"), runs: Path = Path("results/runs")) -> Path:
    """Stage the site's sources under `out`/source, build it with Sphinx into `out`/html; returns index.html."""
    from sphinx.cmd.build import build_main

    from .reproduce import ReproduceSettings, build_plan

    pages = read_pages(notebooks)
    source, html = out / "source", out / "html"
    shutil.rmtree(out, ignore_errors=True)
    (source / "notebooks").mkdir(parents=True)
    for page in pages:
        stage_notebook(page, source / "notebooks")
    templates = resources.files("avmaster_core") / "resources" / TEMPLATES
    shutil.copy(templates / "conf.py", source / "conf.py")
    (source / "_static").mkdir()
    for name in ("report.css", "favicon.svg"):
        shutil.copy(templates / name, source / "_static" / name)
    plan = build_plan(ReproduceSettings(data=str(data), runs=str(runs), results=str(results)))
    items = {key: page.path for page in pages for key in page.items}
    rows = glance(plan, items, results)
    synthetic = any(page.smoke for page in pages)
    context = dict(rows=rows, pages=pages, synthetic=synthetic, paper=PAPER, noise_sds=NOISE_SDS,
                   statuses=[REPRODUCED, DIFFERS, PARTLY, RUN_NO_NUMBER, NOT_RUN, NOTHING])
    _render("index.md", source / "index.md", **context)
    _render("provenance.md", source / "provenance.md", **provenance(pages, data, results))
    benchmark = REPO / "results" / "synthetic.md"  # the benchmark's description, committed with its runs
    _render("synthetic.md", source / "synthetic.md",
            text=benchmark.read_text() if benchmark.is_file() else "(results/synthetic.md is missing)")
    code = build_main(["-b", "html", "-q", "-W", "--keep-going", "-j", "1", str(source), str(html)])
    if code:
        raise ReportError(f"sphinx-build failed (exit {code}) on {source}: see the warnings above")
    return html / "index.html"


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="the executed notebooks as a static website (make report)",
                              description="Build a static site from the notebooks papermill executed "
                                          "(make demo / make reproduce); nothing is re-executed, no network.")
    p.add_argument("--notebooks", default="build/notebooks", help="executed notebooks (default %(default)s)")
    p.add_argument("--out", default="build/report", help="output folder; the site is OUT/html (default %(default)s)")
    p.add_argument("--results", default="results", help="result tables and synthetic.md (default %(default)s)")
    p.add_argument("--data", default="data", help="data folder fingerprinted on the provenance page")
    p.add_argument("--runs", default="results/runs", help="avmaster reproduce's runs (default %(default)s)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    start = time.perf_counter()
    index = build(Path(args.notebooks), Path(args.out), Path(args.results), Path(args.data), Path(args.runs))
    print(f"report built in {time.perf_counter() - start:.0f} s: {index}\n"
          f"  open file://{index.resolve()}\n"
          f"  or serve it: python -m http.server --directory {index.parent} 8000  (http://127.0.0.1:8000/)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

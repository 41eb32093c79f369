"""The notebooks as stored (the `.ipynb` files are the source): conventions (flat parameters, a settings cell
passing every parameter, no logic, checked cells), executed in SMOKE mode with every figure shown inline, and
their recorded numbers agreeing with the shipped synthetic runs within tolerances.

Re-execution is nbval's job (`pytest --nbval-lax notebooks/`): it re-runs every notebook and compares the
`# NBVAL_CHECK_OUTPUT` cells with the stored outputs (the findings cells among them, so a rewritten finding
fails there too). These tests check that what is stored is right: every figure's PNG shows something (size,
not blank) and every findings text says what the notebook's recorded numbers say.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
from pathlib import Path

import nbformat
import pytest

from avmaster_core.results import ours_tables, paper
from avmaster_core.data import scoring
from avmaster_core.core.vocab import ANSWERS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# `make demo`'s executed copies, when a demo has run in this checkout: they must show their figures too.
EXECUTED = NOTEBOOKS + sorted((REPO / "build" / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUNS = REPO / "results" / "runs" / "synthetic"   # notebooks.SMOKE_RUNS seen from the repository root
MAX_CELL_LINES = 8
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users)/")


def load(path: Path):
    return nbformat.read(str(path), as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def record_of(path: Path) -> dict:
    """The stored output of the notebook's `record` cell, as a dict (nan read as NaN)."""
    cell = next(c for c in code_cells(load(path)) if "record" in c.metadata.get("tags", []))
    text = next(o["data"]["text/plain"] for o in cell.outputs if o.get("output_type") == "execute_result")
    return ast.literal_eval(re.sub(r"\bnan\b", "None", text))


def test_the_notebook_list_covers_the_paper():
    names = [p.stem for p in NOTEBOOKS]
    for expected in ("00_quick_start", "01_features", "02_model", "03_training", "04_evaluation", "30_presets",
                     "31_ask_your_video", "32_explore_a_question"):
        assert expected in names
    tables = {m.group(1) for n in names for m in [re.match(r"1\d_(table\d+)", n)] if m}
    assert tables >= {"table2", "table3", "table4", "table5", "table7", "table8", "table9", "table10", "table11",
                      "table12"}  # XIII shares 19_ with XII
    assert sum(n.startswith("2") for n in names) == 5  # Figs. 4-8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_conventions(path):
    nb = load(path)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = [c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged `parameters`"
    for node in ast.parse(params[0].source).body:  # flat scalars only
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), ast.dump(node)
    assert "SMOKE = True" in params[0].source
    for cell in code_cells(nb):
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))], \
            f"logic belongs in avmaster_core, not in a notebook cell:\n{cell.source}"
        # the parameters cell is a list of flat scalars, as long as it needs; the walk-throughs (0x) compute
        # their subject in visible steps, so their cells are as long as a step is
        if cell is not params[0] and not path.name.startswith("0"):
            assert len(cell.source.splitlines()) <= MAX_CELL_LINES, cell.source
    settings = [c for c in code_cells(nb) if "notebook_settings(" in c.source]
    assert len(settings) == 1 and "settings" in settings[0].metadata.get("tags", [])
    assert settings[0].source == tool().settings_source(path.stem, params[0]), \
        "the settings cell must pass every parameter: run tools/make_notebooks.py"
    assert sum("record" in c.metadata.get("tags", []) for c in code_cells(nb)) == 1
    figures = [c for c in code_cells(nb) if "plots.plot_" in c.source]
    assert all("figure" in c.metadata.get("tags", []) for c in figures), "tag figure cells `figure`"
    if re.match(r"(1\d_table(2|3|4|7|8|9|10|11|12)_|2\d_)", path.name):
        assert any("findings" in c.metadata.get("tags", []) for c in code_cells(nb)), "end with what ours shows"


def tool():
    spec = importlib.util.spec_from_file_location("make_notebooks", REPO / "tools" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sync_tool_finds_nothing_stale():
    assert tool().main(["--check"]) == 0


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_figure_cell_shows_its_figure_once(path):
    for cell in code_cells(load(path)):
        if "figure" not in cell.metadata.get("tags", []):
            continue
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"{path.name}: figure cell shows {len(images)} image(s):\n{cell.source}"


# ------------------------------------------------------------------------------------ figures and findings
MIN_FIGURE_PIXELS = (400, 200)   # width, height of a figure a reader can see
MIN_INK = 0.01                   # share of pixels that differ from the background colour


def figure_problem(png: bytes) -> str | None:
    """Why a figure's PNG shows nothing a reader could hold next to the paper (None when it looks fine):
    too small, one flat colour, or almost nothing drawn on the background."""
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    height, width = image.shape[:2]
    if width < MIN_FIGURE_PIXELS[0] or height < MIN_FIGURE_PIXELS[1]:
        return f"{width}x{height} pixels, smaller than {MIN_FIGURE_PIXELS}"
    pixels = image.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)  # one int each
    colours, counts = np.unique(pixels, return_counts=True)
    ink = 1 - counts.max() / len(pixels)
    if len(colours) < 16 or ink < MIN_INK:
        return f"blank: {len(colours)} colour(s), {ink:.2%} of the pixels off the background"
    return None


def figures_of(nb):
    """(cell source, PNG bytes) of every figure cell's image."""
    import base64

    return [(c.source, base64.b64decode(o["data"]["image/png"])) for c in code_cells(nb)
            if "figure" in c.metadata.get("tags", []) for o in c.outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_shows_something(path):
    for source, png in figures_of(load(path)):
        problem = figure_problem(png)
        assert problem is None, f"{path.name}: figure {problem}:\n{source}"


NUMBER = r"([+-]?\d+(?:\.\d+)?)"


def findings_problems(text: str, record: dict) -> list[str]:
    """What a findings text claims that the notebook's record (the numbers the notebook computed) does not
    back: each "ours -d points vs R" must be the difference of two recorded values, each "best at .. (v),
    worst at .. (w): a gap of g" must name recorded values whose difference is g, the ranking of named rows
    must be the recorded order, an attention claim must be the recorded word; and a notebook whose record
    holds two numbers or more must say something checkable about them."""
    values = [v for v in record.values() if isinstance(v, (int, float)) and not isinstance(v, bool)
              and not math.isnan(v)]
    near = lambda x, tol: any(abs(x - v) <= tol for v in values)  # noqa: E731
    pair = lambda d, tol: any(abs(a - b - d) <= tol for a in values for b in values)  # noqa: E731
    problems, claims = [], 0
    if "What ours shows" not in text:
        problems.append("no 'What ours shows' heading")
    def recorded(row):  # the record's value of a row named in the text (19_ prefixes its rows "XII ")
        keys = [k for k in record if str(k) == row or str(k).endswith(" " + row)]
        return record[keys[0]] if len(keys) == 1 else None

    for row, d, reference in re.findall(rf"- (.+?): ours {NUMBER} points vs (.+?) \(", text):
        claims += 1
        a, b = recorded(row), recorded(reference)
        if not (abs(a - b - float(d)) <= 0.021 if a is not None and b is not None else pair(float(d), 0.021)):
            problems.append(f"'{row}: ours {d} points vs {reference}' does not match the record {record}")
    for best, worst, gap in re.findall(rf"best at [^(]*\({NUMBER}\), worst at [^(]*\({NUMBER}\): a gap of "
                                       rf"{NUMBER} points", text):
        claims += 1
        if not (near(float(best), 0.051) and near(float(worst), 0.051) and pair(float(gap), 0.011)
                and float(best) >= float(worst)):
            problems.append(f"best {best}, worst {worst}, gap {gap} do not match recorded values {values}")
    for line in re.findall(r"Ours, best first: (.*?)\.?\n", text):
        rows = [r.strip() for r in line.split(" > ")]
        if all(r in record for r in rows):
            claims += 1
            if [record[r] for r in rows] != sorted((record[r] for r in rows), reverse=True):
                problems.append(f"ranking {rows} is not the recorded order {[record[r] for r in rows]}")
    model = None
    for line in text.splitlines():
        if re.fullmatch(r"\*[^*]+\*", line.strip()):
            model = line.strip().strip("*")
        found = re.match(r"- (Visual|Audio): most attention on '([^']+)'", line)
        if found and model:
            claims += 1
            if record.get(f"{model} / {found[1]}") != found[2]:
                problems.append(f"{model} / {found[1]}: text says {found[2]!r}, record {record.get(f'{model} / {found[1]}')!r}")
    if record.get("ours_rows") == 0:
        claims += 1
        if "No run or evaluation of ours exists yet" not in text:
            problems.append("no run of ours is recorded but the text does not say so")
    if len(values) >= 2 and not claims:
        problems.append(f"nothing checkable about the recorded numbers {values}")
    return problems


def findings_of(nb) -> list[str]:
    return [o["data"]["text/markdown"] for c in code_cells(nb) if "findings" in c.metadata.get("tags", [])
            for o in c.outputs if "text/markdown" in o.get("data", {})]


FINDINGS = [p for p in NOTEBOOKS if any("findings" in c.metadata.get("tags", []) for c in code_cells(load(p)))]


@pytest.mark.parametrize("path", FINDINGS, ids=lambda p: p.stem)
def test_findings_say_what_the_recorded_numbers_say(path):
    texts, record = findings_of(load(path)), record_of(path)
    assert texts, f"{path.name}: the findings cell has no stored text"
    for text in texts:
        assert not findings_problems(text, record), (path.name, findings_problems(text, record))


def test_the_checks_catch_a_blanked_figure_and_a_rewritten_finding():
    """The two checks above fail where they should: on a figure replaced by a white PNG and on a findings
    text rewritten to claim what no number shows, or with one number changed."""
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (900, 400), "white").save(blank, format="PNG")
    assert "blank" in figure_problem(blank.getvalue())
    path = notebook("14_table7_components")
    text, record = findings_of(load(path))[0], record_of(path)
    assert figure_problem(figures_of(load(path))[0][1]) is None and not findings_problems(text, record)
    assert findings_problems("**What ours shows (Table VII).** The paper is fully reproduced.", record)
    changed = re.sub(r"ours -5\.35 points", "ours -1.35 points", text)
    assert changed != text and findings_problems(changed, record)
    reordered = text.replace("Ours, best first: w/o. DPCL > AV-Master", "Ours, best first: AV-Master > w/o. DPCL")
    assert reordered != text and findings_problems(reordered, record)


PLUS_MINUS_NAN = re.compile(r"±\s*nan", re.IGNORECASE)


def test_one_seed_reads_one_seed_never_plus_minus_nan():
    """A row with one seed has no spread: every stored output and every results/ file says "(1 seed)"
    (ours_tables.mean_pm_std), never "± nan"."""
    found = [p.name for p in NOTEBOOKS if PLUS_MINUS_NAN.search(p.read_text())]
    found += [p.name for p in (REPO / "results").glob("*.*") if p.suffix in (".csv", ".md")
              and PLUS_MINUS_NAN.search(p.read_text())]
    assert not found, f"'± nan' in {found}: format mean and spread with ours_tables.mean_pm_std"


QUESTION_ONLY = {"model": 39.5, "rule": 41.2}   # results/synthetic.md: baseline/question_only's 3 seeds; the rule
QUESTION_ONLY_CLAIM = re.compile(r"question-only (model|\*?rule\*?)[^.|\n]{0,90}?(\d+(?:\.\d+)?) ?%", re.IGNORECASE)


def test_the_question_only_level_reads_the_same_everywhere():
    """The synthetic benchmark's question-only levels are quoted alike in the README, results/README, the
    report's pages, docs and every notebook's text: a model 39.5 %, the rule (majority answer per question)
    41.2 %, never "~41 %" for the model."""
    texts = {p: p.read_text() for p in [REPO / "README.md", REPO / "results" / "README.md",
                                        *(REPO / "docs").glob("*.md"),
                                        *(REPO / "avmaster_core" / "resources" / "report").glob("*.md")]}
    texts.update({p: "\n".join(c.source for c in load(p).cells if c.cell_type == "markdown") for p in NOTEBOOKS})
    claims = [(p.name, kind.strip("*").lower(), float(value)) for p, text in texts.items()
              for kind, value in QUESTION_ONLY_CLAIM.findall(text)]
    assert len(claims) >= 5
    assert not [c for c in claims if QUESTION_ONLY[c[1]] != c[2]], claims
    recorded = json.loads((RUNS / "baseline" / "question_only" / "1" / "summary.json").read_text())
    assert abs(recorded["test_acc"] - QUESTION_ONLY["model"]) < 1.5   # one seed of the 3-seed mean


DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[0] == "0"], ids=lambda p: p.stem)
def test_try_it_texts_cite_the_numbers_their_cells_stored(path):
    """A walk-through's "try it" texts discuss what its try-it cells stored: every decimal number in a text
    right under a cell that printed a result is one of the numbers the try-it cells so far show, to the
    text's rounding, so a re-execution with other results cannot leave the discussion behind. (A text under
    a figure discusses a picture, which this cannot read.)"""
    trying, shown, cited, printed = False, [], 0, False
    for cell in load(path).cells:
        trying = trying or (cell.cell_type == "markdown" and "## Try it" in cell.source)
        if not trying:
            continue
        if cell.cell_type == "code":
            outputs = [o for o in cell.outputs if "image/png" not in o.get("data", {})]
            stored = " ".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
            shown += [abs(float(v)) for v in re.findall(r"-?\d+\.\d+", stored)]
            printed = bool(stored.strip())
            continue
        if not printed:
            continue
        printed = False
        for value in DECIMAL.findall(cell.source):
            cited += 1
            digits = len(value.split(".")[1])
            assert any(abs(float(value) - v) <= 0.51 * 10 ** -digits for v in shown), \
                f"{path.name}: the text cites {value}, which no try-it cell above shows:\n{cell.source[:300]}"
    assert path.stem != "03_training" or cited >= 10


# ------------------------------------------------------------------------------------ saved figures and their data
# Every figure a notebook saves (plots.save_figure; results/figures is what `make demo` committed) has a sidecar recording the PNG's sha256 and what it draws
# (plots.plotted_values): its bars, the seeds' dots, heat-map cells and the points of its lines. The numbers
# drawn must be the numbers of the table the notebook saved beside it (results/<table>.csv; Fig. 4's
# fig4_segment_length.png -> fig4.csv), so a figure that drew other numbers than its table, a table edited
# afterwards, or a PNG swapped for another picture all fail.
SAVED_FIGURES = sorted((REPO / "results" / "figures").glob("*.png"))
DRAWN = 0.0051   # plotted values and CSV cells are both rounded to 4 decimals


def table_of(png: Path) -> Path:
    return png.parent.parent / f"{png.stem.split('_')[0]}.csv"


def csv_numbers(path: Path):
    """Every numeric cell of a CSV (header rows and labels skipped), as a sorted float array."""
    import numpy as np
    import pandas as pd

    cells = pd.read_csv(path, header=None, dtype=str).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return np.sort(cells[~np.isnan(cells)])


def figure_data_problems(png: Path, sidecar: dict, numbers) -> list[str]:
    """What the figure's sidecar records that the PNG or the table (`numbers`: its CSV's cells) does not back."""
    import hashlib

    import numpy as np

    problems = []
    if sidecar.get("sha256") != hashlib.sha256(png.read_bytes()).hexdigest():
        problems.append("the PNG is not the figure whose data its sidecar records (sha256 differs): re-run its notebook")
    if figure_problem(png.read_bytes()):
        problems.append(f"figure {figure_problem(png.read_bytes())}")
    if numbers is None:
        return problems
    in_table = lambda v: len(numbers) and np.abs(numbers - v).min() <= DRAWN  # noqa: E731
    drawn = 0
    for axes in sidecar.get("plotted", []):
        dots = {}
        for x, y in axes["dots"]:
            dots.setdefault(x, []).append(y)
        for kind, values in (("bar", axes["bars"]), ("heat-map cell", axes["cells"]),
                             ("seed dot", [y for _, y in axes["dots"]])):
            drawn += len(values)
            problems += [f"{axes['title']!r}: {kind} {v} is not in the table" for v in values if not in_table(v)]
        for label, x, y in axes["points"]:  # a curve's point: a table value, or the mean of its seeds' dots
            drawn += 1
            if not (in_table(y) or (x in dots and abs(sum(dots[x]) / len(dots[x]) - y) <= DRAWN)):
                problems.append(f"{axes['title']!r}: point ({x}, {y}) of {label!r} is neither in the table nor the "
                                "mean of the seeds drawn there")
    if not drawn:
        problems.append("its sidecar records nothing drawn")
    return problems


@pytest.mark.parametrize("png", SAVED_FIGURES, ids=lambda p: p.name)
def test_each_saved_figure_draws_the_numbers_of_its_table(png):
    sidecar = json.loads(png.with_name(png.name + ".provenance.json").read_text())
    numbers = csv_numbers(table_of(png)) if table_of(png).is_file() else None
    problems = figure_data_problems(png, sidecar, numbers)
    assert not problems, f"{png.relative_to(REPO)} (table {table_of(png).name}): {problems}"


def test_the_figure_check_catches_a_swapped_picture_and_other_numbers(tmp_path):
    """figure_data_problems fails where it should: a blank PNG in place of the figure, a figure whose recorded
    bars are not its table's, a table edited after the figure was drawn."""
    import shutil

    from PIL import Image

    png = REPO / "results" / "figures" / "table7.png"
    sidecar = json.loads(png.with_name(png.name + ".provenance.json").read_text())
    numbers = csv_numbers(table_of(png))
    assert not figure_data_problems(png, sidecar, numbers)
    blank = tmp_path / "table7.png"
    Image.new("RGB", (900, 400), "white").save(blank, format="PNG")
    assert any("sha256" in p for p in figure_data_problems(blank, sidecar, numbers))
    assert any("blank" in p for p in figure_data_problems(blank, sidecar, numbers))
    other = json.loads(json.dumps(sidecar))
    other["plotted"][-1]["bars"][0] += 1.0   # ours drawn one point higher than the table says
    assert any("is not in the table" in p for p in figure_data_problems(png, other, numbers))
    edited = tmp_path / "table7.csv"
    shutil.copy(table_of(png), edited)
    text = edited.read_text()
    value = sidecar["plotted"][-1]["bars"][0]
    cell = next(c for c in re.split(r"[,\n]", text) if re.fullmatch(r"-?\d+(\.\d+)?", c) and abs(float(c) - value) <= DRAWN)
    edited.write_text(text.replace(cell, str(round(float(cell) + 3, 4))))
    assert any("is not in the table" in p for p in figure_data_problems(png, sidecar, csv_numbers(edited)))


# What each findings notebook saves (results/<name>.csv): its record, which its findings text is checked
# against above, must hold the numbers of that table, so text, record, table and figure are one chain.
SAVED_TABLES = {"10_table2_music_avqa": ["table2"], "14_table7_components": ["table7"], "15_table8_losses": ["table8"],
                "16_table9_template_length": ["table9"], "17_table10_weight_sharing": ["table10"],
                "19_table12_13_inference_variants": ["table12", "table13"], "20_fig4_segment_length": ["fig4"],
                "21_fig5_input_modalities": ["fig5"], "22_fig6_focus_steps": ["fig6"], "23_fig7_loss_weights": ["fig7"],
                "33_table6_parameters": ["table6"]}
# Table VIII's findings also read the preference heads trained in its row-1 run ("trained ..." keys), which its
# table does not show: test_table_records_are_the_shipped_runs and tests/test_analysis.py check those.
NOT_IN_THE_TABLE = re.compile(r"^trained ")


def table_values(path: Path):
    """Every number a table says: its cells and, for a long table with a `seed` column, the mean over seeds of
    each numeric column grouped by one or two of its other columns (a figure's points)."""
    import itertools

    import numpy as np
    import pandas as pd

    values = list(csv_numbers(path))
    long = pd.read_csv(path)
    if "seed" in long:
        numeric = [c for c in long.select_dtypes("number").columns if c not in ("seed", "Unnamed: 0")]
        labels = [c for c in long.columns if c not in ("seed", "Unnamed: 0")]
        for column in numeric:
            for by in itertools.chain(itertools.combinations([c for c in labels if c != column], 1),
                                      itertools.combinations([c for c in labels if c != column], 2)):
                values += list(long.groupby(list(by))[column].mean())
    return np.asarray(values, dtype=float)


def record_problems(record: dict, values) -> list[str]:
    import numpy as np

    return [f"{key}: {value} is in no cell of the saved table and no mean over its seeds"
            for key, value in record.items() if isinstance(value, (int, float)) and not isinstance(value, bool)
            and not NOT_IN_THE_TABLE.match(str(key)) and np.abs(values - value).min() > 0.0051]


@pytest.mark.parametrize("stem", sorted(SAVED_TABLES))
def test_each_findings_record_holds_the_numbers_of_its_saved_table(stem):
    tables = [REPO / "results" / f"{name}.csv" for name in SAVED_TABLES[stem]]
    import numpy as np

    values = np.concatenate([table_values(t) for t in tables])
    assert not record_problems(record_of(notebook(stem)), values), (stem, record_problems(record_of(notebook(stem)), values))


def test_the_record_check_catches_a_number_the_table_does_not_hold():
    values = table_values(REPO / "results" / "fig4.csv")
    record = record_of(notebook("20_fig4_segment_length"))
    assert not record_problems(record, values)
    assert record_problems({**record, 10: record[10] + 0.5}, values)   # the findings would then read 0.5 too high


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_come_from_a_clean_smoke_run(path):
    cells = code_cells(load(path))
    assert all(c.execution_count is not None for c in cells), "execute with tools/make_notebooks.py --execute"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), "run top to bottom in one kernel"
    for cell in cells:
        assert not [o for o in cell.outputs if o.get("output_type") == "error"], cell.source
        if cell.source.startswith("# NBVAL_CHECK_OUTPUT"):
            for output in cell.outputs:
                text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                assert not ABSOLUTE_PATH.search(text), f"a machine-specific path in a checked output: {text[:200]}"
                assert output.get("name") != "stderr", f"stderr in a checked cell: {text[:200]}"
    settings = next(c for c in cells if "notebook_settings(" in c.source)
    assert "smoke: True" in settings.outputs[0]["text"]
    assert "results (written): ../build/smoke/results" in settings.outputs[0]["text"]


# ------------------------------------------------------------------------------------ recorded numbers
# Tolerances: numbers re-read from the same stored test tables must agree to rounding (0.01); an accuracy
# recomputed from the checkpoints by another code path may differ by a near-tie flipping (one question per seed).
SAME, ONE_QUESTION = 0.011, 0.2


def shipped(experiment="default"):
    runs = paper.finished_runs(RUNS, experiment)
    if not runs:
        pytest.skip(f"no shipped synthetic run of {experiment} in {RUNS}")
    return runs


def overall(experiment="default") -> float:
    return sum(t[scoring.OVERALL].iloc[0] for t in shipped(experiment).values()) / len(shipped(experiment))


def notebook(stem) -> Path:
    return REPO / "notebooks" / f"{stem}.ipynb"


@pytest.mark.parametrize("stem,table", [("10_table2_music_avqa", "table2"), ("14_table7_components", "table7"),
                                        ("15_table8_losses", "table8"), ("16_table9_template_length", "table9"),
                                        ("17_table10_weight_sharing", "table10")])
def test_table_records_are_the_shipped_runs(stem, table):
    shipped()
    recorded = record_of(notebook(stem))
    ours, _ = ours_tables.ours_rows(table, RUNS)
    # every row of ours is recorded; Table VIII also records the trained heads' numbers its findings compare
    rows = {row: value for row, value in recorded.items() if row in ours.index}
    assert len(rows) == len(ours) >= 1
    assert table == "table8" or len(recorded) == len(ours)
    for row, value in rows.items():
        assert value == pytest.approx(float(ours.loc[row].iloc[-1]), abs=SAME), row


def test_pipeline_records():
    first = shipped()[min(shipped())][scoring.OVERALL].iloc[0]
    assert record_of(notebook("00_quick_start"))["overall"] == pytest.approx(first, abs=SAME)
    model = record_of(notebook("02_model"))  # the walk-through's step-by-step forward is the package's
    assert model["max_difference"] < 1e-6 and model["steps"] == 10 and model["templates"] == 8
    evaluation = record_of(notebook("04_evaluation"))
    assert evaluation["seeds"] == len(shipped())
    assert evaluation["overall_mean"] == pytest.approx(overall(), abs=SAME)
    training = record_of(notebook("03_training"))  # the loop written out takes train()'s own first steps
    assert 0 < training["new_run_test_acc"] < 100
    assert training["loop_vs_train"] == 0.0 and training["train_steps"] > training["loop_steps"] >= 1
    assert training["resumed_same"] is True   # stopped mid-epoch and resumed: the same epoch, bit for bit
    features = record_of(notebook("01_features"))
    assert features == {"videos": 3, "feature_rows": 3 + 3 + 2 + 2}


def test_inference_and_figure_records_agree_with_the_test_tables():
    full = overall()
    variants = record_of(notebook("19_table12_13_inference_variants"))
    assert variants["XII AV-Master"] == pytest.approx(full, abs=SAME)
    assert variants["XIII logit sum (released)"] == pytest.approx(full, abs=SAME)  # the official preset's own sum
    assert all(0 <= v <= 100 for v in variants.values())
    steps = record_of(notebook("22_fig6_focus_steps"))
    assert steps[max(steps)] == pytest.approx(full, abs=ONE_QUESTION)
    lengths = record_of(notebook("20_fig4_segment_length"))
    assert lengths[max(lengths)] == pytest.approx(full, abs=SAME)
    decorrelated = paper.finished_runs(REPO / "results" / "runs" / "synthetic_decorrelated", "default")  # Fig. 5's
    assert record_of(notebook("21_fig5_input_modalities"))["A+V+Q"] == pytest.approx(
        sum(t[scoring.OVERALL].iloc[0] for t in decorrelated.values()) / len(decorrelated), abs=SAME)
    presets = record_of(notebook("30_presets"))
    assert presets["official preset"] == pytest.approx(full, abs=SAME)
    if paper.finished_runs(RUNS, "paper/default"):
        assert presets["paper preset"] == pytest.approx(overall("paper/default"), abs=SAME)
    explored = record_of(notebook("32_explore_a_question"))  # the teaching notebook's answer is the run's own
    predictions = json.loads((RUNS / "default" / "1" / "predictions.json").read_text())["predictions"]
    assert explored["prediction"] == ANSWERS[predictions[str(explored["question_id"])]]
    attended = record_of(notebook("24_fig8_word_attention"))  # {"<model> / <modality>": most attended column}
    assert {key.split(" / ")[1] for key in attended} == {"Visual", "Audio"}
    assert set(attended.values()) <= {"<start>", "<end>", "where", "is", "the", "loudest", "instrument", "<padding>"}
    masked = {k: v for k, v in attended.items() if "mask_padding" in k}
    if paper.finished_runs(RUNS, "fig8/mask_padding"):  # masked start token and padding get no attention
        assert len(masked) == 2 and not set(masked.values()) & {"<start>", "<padding>"}
    assert not any(math.isnan(v) for v in steps.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_line(path, caplog):
    import papermill

    with caplog.at_level("WARNING"):
        found = papermill.inspect_notebook(str(path))
    assert "Unable to parse" not in caplog.text, "papermill misreads a parameter line (an '=' in its comment?)"
    assert all(found[name]["default"] not in (None, "None") for name in found)

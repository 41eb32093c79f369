"""`make report`: the site built from notebooks executed as `make demo` executes them, checked in headless
Chromium (Debian's `chromium`, driven by playwright): every page loads without a console error or a request
leaving the site, every image loads and is the PNG a notebook output holds, the front page has one row per
table and figure of the paper, and the site works from file:// and from `python -m http.server`.

The slow test executes three notebooks with the demo's runner (SMOKE, results into a temporary folder, never
results/): ~1-2 min on 2 busy cores, most of it papermill. Set REPORT_NOTEBOOKS=build/notebooks to check the
site of a whole `make demo` instead."""
from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import math
import os
import shutil
import threading
from pathlib import Path

import pytest

from avmaster_core import website as report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Notebooks the slow test executes: a table with its figure (VII), a figure (Fig. 5), and the widgets notebook
# (its widget outputs must not pull a widget manager from a CDN).
SUBSET = "14_table7_components,21_fig5_input_modalities,32_explore_a_question"


# ------------------------------------------------------------------------------------------- fast: the glance
def test_within_noise_scales_the_seed_spread_by_the_single_paper_run():
    # sd 1 over 4 seeds: the difference of one paper run and our mean has sd sqrt(1 + 1/4) = 1.118
    assert report.within_noise(2.2, 1.0, 4) is True
    assert report.within_noise(2.3, 1.0, 4) is False
    assert report.within_noise(-2.2, 1.0, 4) is True
    assert report.within_noise(0.1, math.nan, 1) is None


def test_status_of_an_item_from_its_cells():
    within = report.Cell("AV-Master", [78.0, 79.0, 78.5], paper=78.5)
    beyond = report.Cell("w/o. ALL", [60.0, 60.5, 61.0], paper=72.94)
    one_seed = report.Cell("w/o. AVFC", [78.0], paper=78.11)
    assert report._status([], 6, False)[0] == report.NOT_RUN
    assert report._status([within], 1, True)[0] == report.REPRODUCED
    assert report._status([within], 6, False)[0] == report.PARTLY
    assert report._status([within, one_seed], 2, True)[0] == report.PARTLY
    assert report._status([within, beyond], 2, True) == (report.DIFFERS, "2 of 2 cells run; 1 of 2 compared within noise")
    assert report._status([report.Cell(12, [70.0, 71.0])], 6, False)[0] == report.RUN_NO_NUMBER


def test_every_table_and_figure_of_the_paper_has_one_row(tmp_path):
    from avmaster_core.reproduce import ReproduceSettings, build_plan

    plan = build_plan(ReproduceSettings(data=str(tmp_path / "data"), runs=str(tmp_path / "runs"),
                                        results=str(tmp_path)))
    rows = report.glance(plan, {}, tmp_path)
    assert [r.label for r in rows] == [f"Table {n}" for n in report.ROMAN] + [f"Fig. {i}" for i in range(1, 9)]
    by_key = {r.key: r for r in rows}
    # no run of ours: the paper's value of its own model, the command that makes ours, no status but "not yet run"
    assert by_key["table2"].paper == "78.51" and by_key["table2"].status == report.NOT_RUN
    assert by_key["table7"].command == "avmaster reproduce run --only table7"
    assert by_key["fig5"].paper == "69.80" and by_key["fig8"].paper == "Visual: instrument; Audio: loudest"
    assert {by_key[k].status for k in ("fig1", "fig2", "fig3", "table1")} == {report.NOTHING}
    assert by_key["table6"].paper == "78.50" and by_key["table6"].command == "avmaster reproduce run --only table6"
    assert {r.status for r in rows} <= {report.NOT_RUN, report.NOTHING}


def _finish_runs(settings, key: str, offsets=(-0.5, 0.0, 0.5), shift: dict | None = None) -> None:
    """Write finished run folders for every training item of `key`, as engine.train would leave them (config.json
    from engine.config_record, summary.json, test_table.csv in Table II's layout): the paper's row's Avg plus
    `offsets` over the seeds, plus `shift[row]`."""
    from avmaster_core import paper
    from avmaster_core.engine import config_record
    from avmaster_core.reproduce import build_plan, run_configs

    plan = build_plan(settings, [key])
    row_of = {keys[0].rsplit(" seed", 1)[0]: label for label, keys in plan.artefacts[key].cells}
    template = paper.paper_table("table2").loc[[paper.OURS]]
    for item in plan.items.values():
        if item.kind != "train":
            continue
        row = row_of[item.key.rsplit(" seed", 1)[0]]
        value = paper.paper_table(key).loc[row, "Avg"] + offsets[item.spec.seed - 1] + (shift or {}).get(row, 0.0)
        folder = item.spec.folder(settings)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(
            config_record(*run_configs(item.spec, settings), experiment=item.spec.experiment), default=str))
        (folder / "summary.json").write_text(json.dumps({"seed": item.spec.seed, "test_acc": value}))
        table = template.copy()
        table[("Overall", "Avg")] = value
        table.to_csv(folder / "test_table.csv")


def test_finished_runs_give_ours_the_difference_and_the_status(tmp_path):
    from avmaster_core.reproduce import ReproduceSettings, build_plan

    settings = ReproduceSettings(data=str(tmp_path / "data"), runs=str(tmp_path / "runs"), results=str(tmp_path))
    _finish_runs(settings, "table7")
    rows = {r.key: r for r in report.glance(build_plan(settings), {}, tmp_path)}
    row = rows["table7"]
    assert (row.cell, row.paper, row.ours, row.difference, row.noise, row.seeds, row.status) == \
        ("AV-Master", "78.51", "78.51 ± 0.50", "+0.00", "yes", "3", report.REPRODUCED)
    # Table VI's AV-Master row is the full model's accuracy (78.5 as printed there)
    assert (rows["table6"].paper, rows["table6"].ours, rows["table6"].difference) == ("78.50", "78.51 ± 0.50", "+0.01")

    settings = ReproduceSettings(data=str(tmp_path / "data2"), runs=str(tmp_path / "runs2"), results=str(tmp_path))
    _finish_runs(settings, "table7", shift={"w/o. TDPP": -3.0})
    row = {r.key: r for r in report.glance(build_plan(settings), {}, tmp_path)}["table7"]
    assert row.status == report.DIFFERS and row.detail == "6 of 6 cells run; 5 of 6 compared within noise"
    assert row.ours == "78.51 ± 0.50"  # the headline cell is still the full model's


def test_provenance_lists_the_runs_a_tables_sidecar_names(tmp_path):
    from avmaster_core import provenance

    run = REPO / "results" / "runs" / "synthetic" / "default" / "1"
    (tmp_path / "table2.csv.provenance.json").write_text(json.dumps(
        {"file": "table2.csv", "commits": [], "runs": [{"run": os.path.relpath(run, tmp_path), "commit": "x"}]}))
    page = report.NotebookPage(Path("10_table2_music_avqa.ipynb"), ["table2"], {"parameters": {"SMOKE": True}})
    source, rows = report.item_runs("table2", page, tmp_path)
    assert "table2.csv.provenance.json" in source
    assert [r["run"] for r in rows] == ["results/runs/synthetic/default/1"]
    assert rows[0]["config"] == provenance.config_hash(json.loads((run / "config.json").read_text()))
    # no sidecar: the finished runs of the experiments filling the table, in the notebook's runs folder
    source, rows = report.item_runs("table2", page, tmp_path / "elsewhere")
    assert "no sidecar" in source and [r["seed"] for r in rows] == [1, 2, 3]


def test_a_notebook_page_says_what_made_it_and_whether_its_run_finished():
    done = {"parameters": {"SMOKE": True}, "version": "2.7.0", "end_time": "2026-12-05T15:37:07", "duration": 19.4}
    page = report.NotebookPage(Path("14_table7_components.ipynb"), ["table7"], done)
    header = report._header_cell(page)
    assert "Table VII" in header and "not MUSIC-AVQA" in header and "on 2026-12-05 15:37:07 UTC in 19 s" in header
    assert "<14_table7_components.ipynb>" in header  # the executed notebook, downloadable
    running = report.NotebookPage(page.path, ["table7"], {**done, "end_time": None, "duration": None})
    assert "had not finished" in report._header_cell(running)
    failed = report.NotebookPage(page.path, ["table7"], {**done, "exception": True})
    assert "**failed**" in report._header_cell(failed)
    real = report.NotebookPage(page.path, ["table7"], {**done, "parameters": {"SMOKE": False}})
    assert "not MUSIC-AVQA" not in report._header_cell(real)


def test_no_executed_notebooks_is_one_clear_line(tmp_path, capsys):
    from avmaster_core.cli import main

    assert main(["report", "--notebooks", str(tmp_path), "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no executed notebooks" in err and "make demo" in err


# ----------------------------------------------------------------------------------- slow: the site in Chromium
def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(html folder, executed notebooks folder) of a report built from notebooks the demo's runner executed."""
    if not _chromium():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium (Debian package) or playwright is missing; .ci/run installs chromium")
        pytest.skip("headless Chromium is not installed here (apt-get install chromium); CI installs it")
    tmp = tmp_path_factory.mktemp("report")
    notebooks = Path(os.environ.get("REPORT_NOTEBOOKS", ""))
    results = REPO / "results"
    if not os.environ.get("REPORT_NOTEBOOKS"):
        from avmaster_core.notebooks import find_notebooks, run_notebooks

        notebooks, results = tmp / "notebooks", tmp / "results"
        run_notebooks(find_notebooks(REPO / "notebooks", SUBSET), notebooks, smoke=True,
                      parameters={"RESULTS": str(results)})
    index = report.build(notebooks, tmp / "site", results=results, data=tmp / "no-data", runs=tmp / "no-runs")
    return index.parent, notebooks


def _browse(urls: list[str]) -> dict[str, dict]:
    """Open each URL in one headless Chromium (fresh profile): console errors, page errors, requests that
    left the site, and each image's state."""
    import tempfile

    from playwright.sync_api import sync_playwright

    seen = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=_chromium(), headless=True, chromium_sandbox=False, args=CHROMIUM_ARGS[1:])
        browser.set_default_timeout(180_000)  # a busy 2-core machine renders the long notebook pages slowly
        try:
            for url in urls:
                page = browser.new_page()
                state = seen[url] = {"errors": [], "outside": []}
                base = url.split("://")[0] + "://" + (url.split("/")[2] if url.startswith("http") else "")
                page.on("console", lambda m, s=state: s["errors"].append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, s=state: s["errors"].append(str(e)))
                page.on("requestfailed", lambda r, s=state: s["errors"].append(f"failed: {r.url}"))
                page.on("request", lambda r, s=state, b=base: None if r.url.startswith((b, "data:", "blob:", "about:"))
                        else s["outside"].append(r.url))
                page.goto(url, wait_until="load")
                # every image settled (loaded or broken); "networkidle" is no signal on file:// pages
                page.wait_for_function("[...document.images].every(i => i.complete)")
                state["images"] = page.evaluate(
                    "[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
                state["glance"] = page.evaluate(
                    "[...document.querySelectorAll('#glance tbody tr')].map(r => r.id)")
                state["links"] = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
                page.close()
        finally:
            browser.close()
    return seen


def _png_outputs(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return {hashlib.sha256(base64.b64decode(o["data"]["image/png"])).hexdigest()
            for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})}


@pytest.mark.slow
def test_every_page_loads_offline_with_its_images_and_the_front_page_lists_the_paper(site):
    html, notebooks = site
    pages = sorted(html.glob("*.html")) + sorted(html.glob("notebooks/*.html"))
    seen = _browse([p.as_uri() for p in pages])
    for url, state in seen.items():
        assert state["errors"] == [], (url, state["errors"])
        assert state["outside"] == [], (url, state["outside"])
        assert all(ok for _, ok in state["images"]), (url, state["images"])
    front = seen[(html / "index.html").as_uri()]
    assert front["glance"] == [f"table{i}" for i in range(1, 14)] + [f"fig{i}" for i in range(1, 9)]
    # each notebook page: its images are the PNGs its notebook output holds, byte for byte; it links to the
    # executed notebook and back to the front page
    for executed in sorted(notebooks.glob("*.ipynb")):
        page = html / "notebooks" / f"{executed.stem}.html"
        state = seen[page.as_uri()]
        shown = {hashlib.sha256((page.parent / src).read_bytes()).hexdigest() for src, _ in state["images"]}
        assert shown == _png_outputs(executed), executed.name
        assert any(link.endswith(executed.name) for link in state["links"]), executed.name
        assert any(link.endswith("index.html") for link in state["links"]), executed.name
    table_pages = [p for p in pages if p.name.startswith(("14_", "10_"))]
    assert table_pages and "<table" in table_pages[0].read_text()


@pytest.mark.slow
def test_the_site_works_over_http(site):
    html, _ = site
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        pages = ["index.html", "provenance.html", *[f"notebooks/{p.name}" for p in html.glob("notebooks/*.html")][:2]]
        seen = _browse([base + p for p in pages])
    finally:
        server.shutdown()
    for url, state in seen.items():
        assert state["errors"] == [] and state["outside"] == [], (url, state)
        assert all(ok for _, ok in state["images"]), (url, state["images"])

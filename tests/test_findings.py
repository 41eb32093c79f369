"""The closing "what ours shows" texts (avmaster_core.results.findings) and the rows of Tables III, IV and XI
(ours_tables.benchmark_rows): what they say for rows the paper does not publish, for attention that sits on
padding, and where no run of ours exists yet."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from avmaster_core.reproduction import report
from avmaster_core.results import findings, ours_tables, paper
from avmaster_core.results.notebook_params import notebook_settings


def test_a_reference_row_without_a_paper_value_is_said_so_never_nan():
    stated = pd.Series({"A+Q": 69.8, "V+Q": 76.9, "A+V+Q": math.nan})  # Fig. 5: no A+V+Q bar in the paper
    per_seed = {"V+Q": {1: 60.0, 2: 61.0, 3: 61.4}, "A+V+Q": {1: 68.0, 2: 69.5, 3: 69.2}}
    lines = findings.compare_rows(stated, per_seed, "A+V+Q")
    assert lines[0].startswith("- V+Q: ours -8.10 points vs A+V+Q (beyond noise, at least 2 s.d.; paired over "
                               "seeds 1, 2, 3, s.d. of the differences 0.36)")
    assert lines[0].endswith("; no paper value (A+V+Q not published)")
    assert "nan" not in "".join(lines)
    both = findings.compare_rows(pd.Series({"a": 70.0, "b": 72.5}), {"a": {1: 60.0}, "b": {1: 61.0}}, "a")
    assert both[0].endswith("; paper +2.50")


def test_differences_are_paired_over_matched_seeds_and_small_gaps_are_within_noise():
    # a seed effect shared by both rows: the means differ by 1.0, the per-seed differences hardly vary
    per_seed = {"full": {1: 66.0, 2: 68.0, 3: 70.0}, "ablation": {1: 67.0, 2: 69.1, 3: 70.9},
                "noisy": {1: 70.0, 2: 66.0, 3: 71.0}, "one seed": {1: 75.0}, "other seeds": {7: 80.0}}
    lines = dict(line.split(": ", 1) for line in findings.compare_rows(None, per_seed, "full"))
    assert lines["- ablation"].startswith("ours +1.00 points vs full (beyond noise")
    assert "within noise, under 2 s.d." in lines["- noisy"]
    # a single-seed point is compared with the same seed of the reference, never with its 3-seed mean
    assert lines["- one seed"] == "ours +9.00 points vs full (one matched seed (1): no spread, not judged)"
    assert lines["- other seeds"] == "vs full (no seed in common: not compared)"


def test_curve_findings_never_set_a_single_seed_point_against_a_mean():
    # Fig. 7 as shipped: each point seed 1 only, the 1.0 point the full model's three seeds
    long = pd.DataFrame({"Weight": "qa", "Value": [0.4, 1.0, 1.0, 1.0], "seed": [1, 1, 2, 3],
                         "Avg": [70.0, 69.1, 66.7, 68.2]})
    text = findings.curve_findings("Fig. 7", long, "Value", "Avg", "Weight", smoke=True, reference_x=1.0)
    assert "paired over matched seeds 0.90 points (one matched seed (1): no spread, not judged)" in text
    assert "a gap of 2.00 points between the means (seeds [1] and [1, 2, 3])" in text  # shown, never judged
    assert "exceeds" not in text and "beyond noise" not in text
def test_attention_on_padding_is_not_read_as_a_word():
    released = pd.DataFrame({"where": [1.0, 1e-4], "loudest": [0.0, 1e-4], "<padding>": [0.0, 0.9998]},
                            index=["Visual", "Audio"])
    masked = pd.DataFrame({"where": [0.2, 0.1], "loudest": [0.8, 0.9], "<padding>": [0.0, 0.0]},
                          index=["Visual", "Audio"])
    text = findings.attention_findings({"released": released, "masked": masked, "other": None}, smoke=True)
    assert "Audio: no word gets attention" in text and "1.00 of it lands on padding" in text
    assert "Audio: most attention on 'loudest' (0.90)" in text
    assert "*other*: no run" in text
    assert "most attention on 'where'" in findings.attention_findings(released, smoke=False)  # one table still works


def test_benchmark_findings_compare_with_the_papers_row_and_rank_within_the_group():
    table4 = paper.paper_table("table4")
    ours = table4.loc[[("Bias", "Bias", "AV-Master")]] - 2.0  # 76.39: below QA-TIGER's 76.93, above the rest
    text = findings.benchmark_findings("Table IV", table4, ours, missing=3, command="avmaster reproduce run ...")
    assert "ours 76.39 (paper 78.39, ours -2.00)" in text
    assert "rank 2 of 4" in text  # among ST-AVQA, LAVISH, QA-TIGER trained and tested on bias, not the whole table
    assert "3 item(s) still missing; `avmaster reproduce run ...`" in text
    empty = findings.benchmark_findings("Table III", paper.paper_table("table3"), pd.DataFrame(), missing=3,
                                        command="CMD")
    assert "No run or evaluation of ours exists yet" in empty and "`CMD`" in empty


@pytest.mark.parametrize("stem,table", [("11_table3_music_avqa_r", "table3"), ("12_table4_music_avqa_v2", "table4"),
                                        ("18_table11_feature_extractors", "table11")])
def test_benchmark_rows_without_runs_name_what_is_missing_and_the_command(tmp_path, stem, table):
    settings = notebook_settings(stem, SMOKE=False, PRESET="paper", SEEDS="1,2", DATA=str(tmp_path / "data"),
                                 RESULTS=str(tmp_path / "results"), RUNS="")
    rows = report.benchmark_rows(table, settings)
    assert rows.ours.empty and len(rows.missing) >= 2
    assert set(rows.missing["status"]) == {"blocked"}  # no annotation files in an empty data folder
    assert rows.missing["needs first"].str.contains("avmaster data fetch").all()
    assert rows.command == (f"avmaster reproduce run --only {table} --data {tmp_path / 'data'} --runs "
                            f"{tmp_path / 'results' / 'runs'} --results {tmp_path / 'results'} --seeds 2 --preset paper")
    assert rows.command in rows.note() and "seeds 1,2" in rows.note()


def test_the_smoke_tier_reads_the_real_runs_for_these_tables():
    settings = notebook_settings("12_table4_music_avqa_v2", SMOKE=True, DATA="../data")
    assert settings.runs_root == Path("../results/runs")
    rows = report.benchmark_rows("table4", settings)
    assert "--runs results/runs --results results" in rows.command  # repository-root paths, as a shell takes them


def test_one_seed_reads_one_seed_and_wide_tables_stack():
    from avmaster_core.results import ours_tables

    mean = pd.DataFrame({"Avg": [68.04, 60.91]}, index=["AV-Master", "L_qa"])
    std = pd.DataFrame({"Avg": [1.23, math.nan]}, index=["AV-Master", "L_qa"])
    assert ours_tables.mean_pm_std(mean, std)["Avg"].tolist() == ["68.0 ± 1.2", "60.9 (1 seed)"]
    both = pd.concat({"paper": pd.DataFrame({"Avg": [78.51, 70.0]}, index=["AV-Master", "QA-TIGER"]),
                      "ours": mean.loc[["AV-Master"]]}, axis=1)
    rows = ours_tables.stacked(both)
    assert list(rows.index) == [("AV-Master", "paper"), ("AV-Master", "ours"), ("QA-TIGER", "paper")]
    assert list(rows.columns) == ["Avg"]


def _run(folder: Path, commit: str | None) -> Path:
    folder.mkdir(parents=True)
    record = {"model": {}, "train": {}, "data": {}}
    if commit:
        record["provenance"] = {"commit": commit, "dirty": False}
    (folder / "config.json").write_text(json.dumps(record))
    return folder


def test_findings_never_judge_a_difference_across_commits(tmp_path):
    per_seed = {"full": {1: 66.0, 2: 68.0, 3: 70.0}, "ablation": {1: 60.0, 2: 61.0, 3: 62.5}}
    ours = pd.DataFrame({"Avg": [68.0, 61.17]}, index=["full", "ablation"])
    one = [_run(tmp_path / f"a{s}", "a" * 40) for s in (1, 2)]
    mixed = one + [_run(tmp_path / "b1", "b" * 40)]
    text = findings.table_findings("T", None, ours, None, smoke=True, reference="full", per_seed=per_seed, runs=mixed)
    assert "Not compared: the 3 runs read come from 2 code versions (aaaaaaaaaaaa; bbbbbbbbbbbb)" in text
    assert "points vs full" not in text and "noise" not in text
    same = findings.table_findings("T", None, ours, None, smoke=True, reference="full", per_seed=per_seed, runs=one)
    assert "Every run read (2) was made by commit aaaaaaaaaaaa." in same and "ours -6.83 points vs full" in same
    # a run without a recorded commit beside a known one is two code versions as well
    unknown = findings.table_findings("T", None, ours, None, smoke=True, reference="full", per_seed=per_seed,
                                      runs=one[:1] + [_run(tmp_path / "u", None)])
    assert "Not compared" in unknown
    only_unknown = findings.table_findings("T", None, ours, None, smoke=True, reference="full", per_seed=per_seed,
                                           runs=[tmp_path / "u"])
    assert "record no commit" in only_unknown and "ours -6.83 points vs full" in only_unknown
    long = pd.DataFrame({"Weight": "qa", "Value": [0.4, 1.0], "seed": [1, 1], "Avg": [70.0, 69.1]})
    curve = findings.curve_findings("Fig. 7", long, "Value", "Avg", "Weight", smoke=True, runs=mixed)
    assert "Not compared" in curve and "gap" not in curve

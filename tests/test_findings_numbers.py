"""The numbers behind the closing "what ours shows" texts (results/findings.py) against hand computations
(issue 28): the paired gap and its spread, the verdict at the noise boundary, rank agreement with the paper."""
from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from avmaster_core.results import findings


def test_paired_gap_is_the_mean_and_sample_sd_of_matched_seed_differences():
    gap, sd, seeds = findings.paired_gap({1: 70.0, 2: 72.0, 3: 75.0, 9: 0.0}, {1: 69.0, 2: 69.0, 3: 70.0, 4: 99.0})
    diffs = [1.0, 3.0, 5.0]
    assert seeds == [1, 2, 3] and gap == pytest.approx(3.0)
    assert sd == pytest.approx(math.sqrt(sum((d - 3.0) ** 2 for d in diffs) / 2))
    two = findings.paired_gap({1: 2.0, 2: 6.0}, {1: 1.0, 2: 1.0})
    assert two == (3.0, pytest.approx(math.sqrt(2.0 * 2 ** 2)), [1, 2])     # two seeds have a spread
    one = findings.paired_gap({1: 2.0}, {1: 1.0})
    assert one[0] == 1.0 and math.isnan(one[1]) and one[2] == [1]
    none = findings.paired_gap({1: 2.0}, {2: 1.0})
    assert math.isnan(none[0]) and none[2] == []


def test_the_verdict_at_the_noise_boundary():
    assert findings.gap_verdict(2.0, 1.0, [1, 2]).startswith("beyond noise, at least 2 s.d.")   # exactly 2 s.d.
    assert findings.gap_verdict(-1.99, 1.0, [1, 2]).startswith("within noise, under 2 s.d.")
    assert findings.gap_verdict(-2.5, 1.0, [1, 2]) == ("beyond noise, at least 2 s.d.; paired over seeds 1, 2, "
                                                       "s.d. of the differences 1.00")


def test_ranking_and_concordance_against_every_pair_by_hand():
    paper = pd.Series({"a": 68.0, "b": 71.0, "c": 70.0, "d": 72.0, "e": math.nan, "f": 60.0})
    ours = pd.Series({"a": 63.0, "b": 63.0, "c": 61.0, "d": 60.5, "e": 50.0, "g": 1.0})
    assert findings._ranking(paper) == ["d", "b", "c", "a", "f"]
    rows = ["a", "b", "c", "d"]          # both have a value (e: no paper value, f: no run, g: not in the paper)
    same = total = 0
    for x, y in itertools.combinations(rows, 2):
        p, o = paper[x] - paper[y], ours[x] - ours[y]
        if p and o:                      # ties are not compared (a and b tie in ours)
            total += 1
            same += (p > 0) == (o > 0)
    assert (same, total) == (1, 5)       # only c-d agree (one difference of 0.5 points)
    assert findings._concordance(paper, ours) == (same, total)


def test_seed_values_keep_the_rows_order_and_read_floats():
    long = pd.DataFrame({"label": ["z", "a", "z", "a"], "seed": ["2", "1", "1", "2"], "Avg": [1, 2, 3, 4]})
    values = findings.seed_values(long, "label", "Avg")
    assert list(values) == ["z", "a"] and values == {"z": {2: 1.0, 1: 3.0}, "a": {1: 2.0, 2: 4.0}}
    assert all(isinstance(v, float) for row in values.values() for v in row.values())


def test_row_names_in_the_lines_and_rows_the_paper_does_not_publish():
    stated = pd.Series({"r": 50.0})
    lines = findings.compare_rows(stated, {"r": {1: 60.0}, "x": {1: 62.0}}, "r", names={"x": "row X", "r": "full"})
    assert lines == ["- row X: ours +2.00 points vs full (one matched seed (1): no spread, not judged); no paper value "
                     "(row X not published)"]
    both = findings.compare_rows(pd.Series({"q": 1.0}), {"r": {1: 60.0}, "x": {1: 62.0}}, "r")
    assert both[0].endswith("; no paper value (x and r not published)")
    assert findings.compare_rows(None, {"x": {1: 1.0}}, "r", names={"r": "full"}) == [
        "The reference row full has no run, so no difference can be read."]

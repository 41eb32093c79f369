"""Our rows' statistics and labels (results/ours_tables.py) against numpy and the paper's row settings
(issue 28): the mean and sample s.d. over seeds, the seeds each row averages, the text cells, the row names."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from avmaster_core.results import ours_tables


def _table(a: float, b: float) -> pd.DataFrame:
    return pd.DataFrame({"Avg": [a, b], "A-QA": [a / 2, b / 2]}, index=pd.Index(["zeta", "alpha"], name="method"))


def test_over_seeds_is_the_mean_and_sample_sd_per_row_in_the_tables_order():
    per_seed = {3: _table(60.0, 50.0), 1: _table(70.0, 52.0), 2: _table(65.0, 57.0)}
    mean, std = ours_tables.over_seeds(per_seed)
    assert list(mean.index) == ["zeta", "alpha"] and mean.index.name == std.index.name == "method"
    assert list(mean.columns) == ["Avg", "A-QA"]
    assert mean.loc["zeta", "Avg"] == pytest.approx(65.0) and mean.loc["alpha", "A-QA"] == pytest.approx(159 / 6)
    assert std.loc["alpha", "Avg"] == pytest.approx(np.std([50.0, 52.0, 57.0], ddof=1))
    assert mean.attrs["seeds"] == {"zeta": [1, 2, 3], "alpha": [1, 2, 3]} and mean.attrs["stand_in"] == {}
    assert mean.attrs["per_seed"]["alpha"] == {3: {"Avg": 50.0, "A-QA": 25.0}, 1: {"Avg": 52.0, "A-QA": 26.0},
                                               2: {"Avg": 57.0, "A-QA": 28.5}}
    assert std.attrs == mean.attrs
    one_mean, one_std = ours_tables.over_seeds({4: _table(1.0, 2.0)})
    assert one_std.isna().all().all() and one_mean.loc["alpha", "Avg"] == 2.0
    with pytest.raises(ValueError, match=r"^no seeds given: train the full model first \(`default`\)$"):
        ours_tables.over_seeds({})


def test_mean_and_std_per_group_of_a_long_table():
    long = pd.DataFrame({"label": ["b", "b", "a", "b", "a"], "Avg": [1.0, 2.0, 10.0, 6.0, 14.0],
                         "A-QA": [0.0, 0.0, 1.0, 3.0, 1.0]})
    stats = ours_tables.mean_and_std(long, "label", ["Avg", "A-QA"])
    assert list(stats.index) == ["b", "a"]                        # groups in their order of appearance
    assert list(stats.columns) == [("mean", "Avg"), ("mean", "A-QA"), ("std (ddof=1)", "Avg"),
                                   ("std (ddof=1)", "A-QA"), ("seeds", "n")]
    assert stats.loc["b", ("mean", "Avg")] == 3.0 and stats.loc["a", ("std (ddof=1)", "Avg")] == pytest.approx(
        np.std([10.0, 14.0], ddof=1))
    assert stats[("seeds", "n")].tolist() == [3, 2]


def test_text_cells():
    mean = pd.DataFrame({"Avg": [68.04, 60.96, math.nan]}, index=["x", "y", "z"])
    std = pd.DataFrame({"Avg": [1.26, math.nan, math.nan]}, index=["x", "y", "z"])
    assert ours_tables.mean_pm_std(mean, std)["Avg"].tolist() == ["68.0 ± 1.3", "61.0 (1 seed)", "nan"]
    assert ours_tables.mean_pm_std(mean, std, digits=2)["Avg"].tolist() == ["68.04 ± 1.26", "60.96 (1 seed)", "nan"]


def test_rows_are_named_by_their_setting_and_stand_ins_say_whose_runs():
    names = ours_tables.row_names("table8", {5: "table7/wo_dpcl"})
    assert names == {1: "L_qa", 2: "L_qa + L_c", 3: "L_qa + L_c + L_a^p", 4: "L_qa + L_c + L_v^p",
                     5: "L_qa + L_a^p + L_v^p (ours: runs of table7/wo_dpcl)", 6: "L_qa + L_c + L_a^p + L_v^p"}
    assert ours_tables.row_names("table9")[12] == "length 12"
    assert ours_tables.row_names("table10") == {1: "nothing shared", 2: "attention shared", 3: "bias shared",
                                                4: "attention + bias shared"}
    assert ours_tables.row_names("table7")["w/o. TDPP"] == "w/o. TDPP"  # named rows keep their label
    table = pd.DataFrame({"Avg": [1.0]}, index=[5])
    assert list(ours_tables.labelled(table, names).index) == [names[5]]
    assert ours_tables.labelled(None, names) is None


def test_stand_ins_and_missing_rows():
    assert ours_tables.stand_ins("table8") == {5: "table7/wo_dpcl", 6: "default"}
    assert ours_tables.stand_ins("table7") == {}  # its AV-Master row is the full model itself
    mean = pd.DataFrame({"Avg": [1.0, 2.0]}, index=[1, 5])
    assert ours_tables.missing("table8", mean) == {2: "table8/qa+c", 3: "table8/qa+c+a", 4: "table8/qa+c+v",
                                                   6: "default"}


def test_stacking_sources_uses_pandas_current_stack():
    import warnings

    both = pd.concat({"paper": pd.DataFrame({"Avg": [78.5, 70.0]}, index=["AV-Master", "QA-TIGER"]),
                      "ours": pd.DataFrame({"Avg": [68.0]}, index=["AV-Master"])}, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated stack implementation warns
        rows = ours_tables.stacked(both)
    assert list(rows.index) == [("AV-Master", "paper"), ("AV-Master", "ours"), ("QA-TIGER", "paper")]

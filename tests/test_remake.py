"""Drift shows the day it happens: the synthetic tier of `avmaster reproduce` re-makes a shipped run from its own
config.json, and on CPU with one thread the re-made run must be bit-identical to the shipped one
(avmaster_core.remake; `make verify-runs` does it for every shipped run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from avmaster_core import remake

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "results" / "runs"
# The cheapest shipped configuration: the question-only baseline on the decorrelated benchmark (no audio or visual
# stream; its runs took 0.5 min of training on a quiet core, the next cheapest, table7/wo_tdpp, 0.7); seed 1.
CHEAPEST = "synthetic_decorrelated/baseline/question_only/1"


def test_every_shipped_run_is_found_once():
    runs = remake.shipped_runs(SHIPPED)
    assert len({r.key for r in runs}) == len(runs) == len(list(SHIPPED.glob("synthetic*/**/summary.json")))
    assert CHEAPEST in {r.key for r in runs}


def test_a_shipped_run_is_remade_bit_for_bit_by_the_synthetic_tier(tmp_path, one_thread):
    # the synthetic tier's own command path, for one run: generate the benchmark, train the whole schedule
    lines = []
    differ = remake.reproduce_synthetic(SHIPPED, tmp_path / "runs", tmp_path / "data", [CHEAPEST],
                                        echo=lambda *a, **k: lines.append(" ".join(map(str, a))))
    remade = tmp_path / "runs" / CHEAPEST
    assert remake.differences(SHIPPED / CHEAPEST, remade) == [], lines[-1]
    assert differ == 0 and lines[-1].endswith(f"{CHEAPEST}: bit-identical to the shipped run")
    assert json.loads((remade / "summary.json").read_text())["epochs"] == 10  # the whole schedule


def test_differences_name_the_first_metric_that_moved(tmp_path):
    shipped = SHIPPED / CHEAPEST
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in remake.COMPARED_FILES:
        (copy / name).write_text((shipped / name).read_text())
    assert remake.differences(shipped, copy) == []
    rows = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    rows[2]["train_seconds"] += 5  # wall clock is never compared
    key = next(k for k, v in rows[3].items() if isinstance(v, float) and k not in remake.TIMING_FIELDS)
    rows[3][key] = rows[3][key] + 1e-12  # one bit of one metric is
    (copy / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (copy / "summary.json").unlink()
    diffs = remake.differences(shipped, copy)
    assert diffs[0] == "summary.json: not written by the re-run"
    assert diffs[1].startswith(f"metrics.jsonl: epoch 4 differs ({key}: shipped") and len(diffs) == 2


def test_the_synthetic_tier_plan_lists_every_shipped_run(run_cli, tmp_path):
    out = run_cli("reproduce", "plan", "--tier", "synthetic", "--shipped", str(SHIPPED), "--runs", str(tmp_path / "remake"))
    n = len(remake.shipped_runs(SHIPPED))
    assert f"Synthetic tier: {n} shipped run(s)" in out and f"{n} to train" in out and n >= 70
    assert out.count("\nmissing  ") == n
    dry = run_cli("reproduce", "run", "--tier", "synthetic", "--dry-run", "--only", "synthetic/table8",
                  "--shipped", str(SHIPPED), "--runs", str(tmp_path / "remake"))
    assert "1 shipped run(s)" in dry and "synthetic/table8/qa/1" in dry and not (tmp_path / "remake").exists()

"""`avmaster train | evaluate | score`: help a newcomer can follow, and one smoke pass through all three."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from avmaster_core import cli
from avmaster_core.scoring import read_predictions
from test_engine import TINY_MODEL, _one_thread, tiny_data  # noqa: F401 (fixtures)

SETS = [arg for key, value in TINY_MODEL.items() for arg in ("--set", f"{key}={value}")]


def test_help_lists_the_commands_with_examples(capsys):
    top = subprocess.run([sys.executable, "-m", "avmaster_core.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("train", "evaluate", "score"):
        assert command in top
    for command, must in (("train", ("--resume", "--experiment", "--amp", "--compile", "torchrun", "examples:",
                                     "this should give")),
                          ("evaluate", ("--checkpoint", "--split", "--set", "examples:")),
                          ("score", ("--predictions", "--out", "examples:"))):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for word in must:
            assert word in text, (command, word)


def test_train_evaluate_score_round_trip(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    code = cli.main(["train", "--dataset", "synthetic", "--root", str(tiny_data), "--epochs", "1",
                     "--batch-size", "16", "--lr", "1e-3", "--device", "cpu", "--seed", "3", "--no-progress",
                     "--out", str(out), *SETS])
    assert code == 0
    printed = capsys.readouterr().out
    run = out / ("default+" + ",".join(sorted(f"{k}={v}" for k, v in TINY_MODEL.items()))) / "3"
    assert f"run folder: {run}" in printed and "Overall" in printed
    assert (run / "best.pt").is_file()

    code = cli.main(["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "synthetic", "--split", "test",
                     "--root", str(tiny_data), "--device", "cpu", "--no-progress", "--out", str(tmp_path / "eval")])
    assert code == 0
    assert read_predictions(tmp_path / "eval" / "predictions.json") == read_predictions(run / "predictions.json")

    csv = tmp_path / "table.csv"
    code = cli.main(["score", "--dataset", "synthetic", "--split", "test", "--root", str(tiny_data),
                     "--predictions", str(run / "predictions.json"), "--out", str(csv)])
    assert code == 0 and "Audio QA" in capsys.readouterr().out
    ours = pd.read_csv(csv, header=[0, 1], index_col=0)
    trained = pd.read_csv(run / "test_table.csv", header=[0, 1], index_col=0)
    pd.testing.assert_frame_equal(ours, trained)


def test_bad_arguments_get_clear_messages(tiny_data):
    with pytest.raises(SystemExit, match="unknown ModelConfig field"):
        cli.main(["train", "--dataset", "synthetic", "--root", str(tiny_data), "--set", "width=3"])
    with pytest.raises(SystemExit, match="unknown experiment"):
        cli.main(["train", "--dataset", "synthetic", "--root", str(tiny_data), "--experiment", "table99/x"])
    with pytest.raises(FileNotFoundError, match="avmaster train"):
        cli.main(["evaluate", "--checkpoint", str(tiny_data / "nope.pt"), "--dataset", "synthetic",
                  "--root", str(tiny_data)])

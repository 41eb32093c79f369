"""`avmaster train | evaluate | score`: help a newcomer can follow, and one smoke pass through all three."""
from __future__ import annotations

import pandas as pd
import pytest

from avmaster_core import cli
from avmaster_core.data.scoring import read_predictions
from conftest import TINY_MODEL, set_args

pytestmark = pytest.mark.usefixtures("one_thread")
SETS = set_args(TINY_MODEL)


def test_help_lists_the_commands_with_examples(capsys, run_cli):
    top = run_cli("--help")
    for command in ("train", "evaluate", "score"):
        assert command in top
    for command, must in (("train", ("--resume", "--experiment", "--precision", "--compile", "torchrun", "examples:",
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


def test_bad_arguments_get_clear_messages(tiny_data, capsys):
    with pytest.raises(SystemExit) as e:  # a bad option value: argparse's usage error, while parsing
        cli.main(["train", "--dataset", "synthetic", "--root", str(tiny_data), "--set", "width=3"])
    assert e.value.code == 2 and "argument --set: width=3: unknown ModelConfig field" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown experiment"):
        cli.main(["train", "--dataset", "synthetic", "--root", str(tiny_data), "--experiment", "table99/x"])
    # a domain error is a one-line message and exit code 1 (the traceback only with --debug)
    args = ["evaluate", "--checkpoint", str(tiny_data / "nope.pt"), "--dataset", "synthetic", "--root", str(tiny_data)]
    assert cli.main(args) == 1
    assert "avmaster train" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="avmaster train"):
        cli.main([*args, "--debug"])


def _option_strings(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _subparser(name: str):
    sub = next(a for a in cli.build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def test_train_and_sweep_share_the_options_declared_on_the_configs():
    import dataclasses

    from avmaster_core.training.commands import config_from_args
    from avmaster_core.training.run_config import DataConfig, TrainConfig

    flags = {f.metadata["flag"] for cls in (TrainConfig, DataConfig) for f in dataclasses.fields(cls)
             if "flag" in f.metadata}
    train, sweep = _subparser("train"), _subparser("sweep")
    assert flags <= _option_strings(train)
    assert flags - {"--seed"} <= _option_strings(sweep)   # the grid gives the seeds
    # Every flag name that existed before they were declared on the configs still works.
    for old in ("--epochs", "--batch-size", "--lr", "--device", "--checkpoint-every", "--no-progress", "--store",
                "--dataset", "--root", "--compile", "--num-workers", "--T", "--pad", "--limit", "--seed"):
        assert old in _option_strings(train), old
    args = train.parse_args(["--dataset", "synthetic", "--root", "r", "--batch-size", "16", "--no-progress",
                             "--checkpoint-every", "0", "--precision", "bf16"])
    assert config_from_args(TrainConfig, args) == TrainConfig(batch_size=16, progress=False, checkpoint_every_steps=0,
                                                              precision="bf16")
    assert config_from_args(DataConfig, args) == DataConfig(dataset="synthetic", root="r")
    args = sweep.parse_args(["--experiments", "default", "--lr", "0.001", "--limit", "5"])
    assert config_from_args(TrainConfig, args) == TrainConfig(lr=1e-3)
    assert config_from_args(DataConfig, args).limit == 5


def test_one_list_of_fields_that_may_differ_between_a_run_and_a_request_for_it():
    from avmaster_core.training.run_config import free_fields

    finished, resuming = free_fields(resuming=False), free_fields(resuming=True)
    assert {"device", "progress", "num_workers", "compile"} <= finished["train"]
    assert {"root", "store", "preload"} <= finished["data"]
    # A resume may extend a run; a finished run asked for with more epochs is another run.
    assert resuming["train"] - finished["train"] == {"epochs"} and resuming["data"] == finished["data"]
    assert not {"lr", "seed", "batch_size", "precision"} & resuming["train"]
    assert not {"dataset", "T", "pad", "limit"} & resuming["data"]

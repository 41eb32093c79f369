"""Typed overrides and declared ranges (avmaster_core.core.options, issue 22): `--set FIELD=VALUE` is read by the
field's type, every numeric option refuses values outside its range while the command line is parsed (so
before any data is read), and the notebooks' numeric parameters use the same ranges."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avmaster_core.core.config import ModelConfig, parse_override
from avmaster_core.training.commands import parse_overrides, run_name_with_overrides
from avmaster_core.results.notebook_params import ParameterError, notebook_settings
from avmaster_core.core.options import AT_LEAST_1, POSITIVE, Range
from avmaster_core.training.run_config import DataConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
NO_DATA = "/nonexistent/avmaster-data"  # a refusal that names the option, not this folder, read no data


def avmaster(*args, cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVMASTER_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "avmaster_core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


# ------------------------------------------------------------------------------------------ --set, typed
@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False), ("FALSE", False),
                                         ("True", True), ("1", True), ("tRuE", True)])
def test_switches_read_as_booleans(text, value):
    assert parse_override("use_tdpp", text) is value
    assert parse_overrides([f"inference_use_a={text}"]) == {"inference_use_a": value}


@pytest.mark.parametrize("item, says", [
    ("use_tdpp=maybe", "a switch takes true or false"), ("use_tdpp=", "a switch takes true or false"),
    ("use_tdpp=2", "a switch takes true or false"), ("dim=0", "a whole number >= 1"),
    ("dim=6.5", "a whole number >= 1"), ("dim=abc", "a whole number >= 1"), ("lambda_c=inf", "finite number >= 0"),
    ("lambda_c=-1", "finite number >= 0"), ("temperature=0", "> 0"), ("dropout=1", "in [0, 1)"),
    ("combine=sum", "choose one of 'logits_sum'"), ("tdpp=0", "did you mean use_tdpp"), ("dim", "FIELD=VALUE"),
])
def test_bad_overrides_are_refused_naming_field_value_and_what_is_allowed(item, says):
    with pytest.raises(ValueError, match=None) as e:
        parse_overrides([item])
    assert says in str(e.value)
    assert item.partition("=")[0] in str(e.value)


def test_optional_fields_and_choices_take_none_numbers_and_text():
    assert parse_overrides(["context_ffn=null", "choice_scorer=none", "dim=64", "lambda_c=0.5",
                            "combine=mul"]) == {"context_ffn": None, "choice_scorer": None, "dim": 64,
                                                "lambda_c": 0.5, "combine": "mul"}


def test_a_switch_given_as_text_is_refused_by_the_config_itself():
    with pytest.raises(ValueError, match="use_tdpp = 'False': a switch takes True or False"):
        ModelConfig.official(use_tdpp="False")


def test_run_folder_names_spell_the_parsed_value():
    # `False`, `false` and `0` are one configuration, so one run folder
    names = {run_name_with_overrides("default", "official", [f"use_tdpp={t}"]) for t in ("False", "false", "0")}
    assert names == {"default+use_tdpp=false"}


# ------------------------------------------------------------------------------------------ ranges
def test_range_texts_and_limits():
    assert POSITIVE.allowed() == "a finite number > 0" and AT_LEAST_1.allowed() == "a whole number >= 1"
    assert Range(float, low=0, high=1, open_high=True).allowed() == "a finite number in [0, 1)"
    for bad in ("inf", "nan", "0", "-1e-3", "x"):
        with pytest.raises(ValueError, match="give a finite number > 0"):
            POSITIVE.parse(bad)
    assert POSITIVE.parse("1e-4") == 1e-4 and AT_LEAST_1.parse(" 3 ") == 3


def test_configs_check_their_declared_ranges_in_python_too():
    for bad in (dict(lr=float("inf")), dict(lr=float("nan")), dict(lr=0.0), dict(epochs=0), dict(seed=-1),
                dict(num_workers=-1)):
        with pytest.raises(ValueError, match=f"TrainConfig.{next(iter(bad))}"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="DataConfig.limit = -3: give a whole number >= 1"):
        DataConfig(limit=-3)


def test_every_numeric_option_declares_a_range():
    """No command has a bare int/float option: each numeric option's type is a declared Range."""
    import argparse

    from avmaster_core.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif action.type in (int, float):
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    assert list(walk(build_parser(), "avmaster")) == []


# ------------------------------------------------------------------------------------------ the command line
@pytest.mark.parametrize("args, says", [
    (["train", "--set", "use_tdpp=maybe"], "argument --set: use_tdpp=maybe: a switch takes true or false"),
    (["train", "--lr", "inf"], "argument --lr: 'inf' is not allowed: give a finite number > 0"),
    (["train", "--limit", "-3"], "argument --limit: '-3' is not allowed: give a whole number >= 1"),
    (["train", "--epochs", "0"], "argument --epochs: '0' is not allowed: give a whole number >= 1"),
    (["sweep", "--experiments", "default", "--seeds", "1", "1"], "argument --seeds: 1 given more than once"),
    (["evaluate", "--checkpoint", "x.pt", "--set", "inference_use_a=nope"], "argument --set: inference_use_a=nope"),
    (["reproduce", "plan", "--lr", "nan"], "argument --lr: 'nan' is not allowed"),
    (["benchmark", "--steps", "0"], "argument --steps: '0' is not allowed: give a whole number >= 1"),
])
def test_bad_options_are_refused_while_parsing(args, says, capsys):
    """In this process (argparse's exit is the same here as in a shell; a fresh process per case cost ~3 CPU-s);
    test_a_refused_option_exits_2_in_a_fresh_process runs one case as a user's shell does."""
    from avmaster_core.cli import main

    extra = ["--dataset", "synthetic", "--root", NO_DATA] if args[0] in ("train", "sweep", "evaluate") else []
    with pytest.raises(SystemExit) as done:
        main([*args, *extra])
    err = capsys.readouterr().err
    assert done.value.code == 2, (done.value.code, err[-2000:])
    assert says in err, err[-2000:]
    assert "Traceback" not in err and NO_DATA not in err


def test_a_refused_option_exits_2_in_a_fresh_process():
    done = avmaster("train", "--lr", "inf", "--dataset", "synthetic", "--root", NO_DATA)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "argument --lr: 'inf' is not allowed: give a finite number > 0" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and NO_DATA not in done.stderr


def test_the_default_model_on_a_multiple_choice_benchmark_is_refused_before_data():
    done = avmaster("train", "--dataset", "synthetic_mc", "--root", NO_DATA)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "--dataset synthetic_mc is multiple choice" in done.stderr and "--experiment avqa/choices" in done.stderr
    assert NO_DATA not in done.stderr


@pytest.mark.slow
def test_set_use_tdpp_false_trains_the_ablation(tiny_data, tmp_path):
    done = avmaster("train", "--dataset", "synthetic", "--root", tiny_data, "--size", "cpu", "--device", "cpu",
                    "--epochs", "1", "--batch-size", "16", "--no-progress", "--set", "use_tdpp=False",
                    "--out", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "default+use_tdpp=false" / "1" / "config.json").read_text())
    assert config["model"]["use_tdpp"] is False


def test_threads_above_the_cores_are_warned(capsys):
    import argparse

    from avmaster_core.training.threads import apply_threads

    import torch
    before = torch.get_num_threads()
    try:
        apply_threads(argparse.Namespace(threads=(os.cpu_count() or 1) + 1))
    finally:
        torch.set_num_threads(before)
    assert "more than the" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ notebook parameters
@pytest.mark.parametrize("params, says", [
    (dict(EPOCHS=-1), "EPOCHS = -1: give a whole number >= 0"), (dict(EPOCHS=True), "EPOCHS = True"),
    (dict(SEEDS="1,1"), "each once"), (dict(SEEDS="1;2"), "give comma-separated whole numbers"),
])
def test_notebook_parameters_use_the_same_ranges(params, says):
    with pytest.raises(ParameterError, match=None) as e:
        notebook_settings(**params)
    assert says in str(e.value)


# ------------------------------------------------------------------------------------------ one writer per run folder
def _train_args(root, out, *extra):
    return ["train", "--dataset", "synthetic", "--root", root, "--size", "cpu", "--device", "cpu", "--epochs", "1",
            "--batch-size", "16", "--no-progress", "--out", out, "--name", "w", *extra]


@pytest.mark.slow
def test_two_trainings_into_one_folder_the_second_is_refused(tiny_data, tmp_path):
    """Two real `avmaster train` processes into one run folder: while the first trains (it holds the folder's
    writer lock), the second is refused naming it and writes nothing; after the first is killed (its lock file
    left behind, stale) a third takes the folder over and finishes."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVMASTER_DEBUG": ""}
    run_dir = tmp_path / "w" / "1"
    first = subprocess.Popen([sys.executable, "-m", "avmaster_core.cli",
                              *_train_args(tiny_data, tmp_path, "--epochs", "200")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.time() + 90
        while not (run_dir / "config.json").is_file():  # written after the lock is taken and the data read
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() else "slow"
            time.sleep(0.2)
        second = avmaster(*_train_args(tiny_data, tmp_path))
        assert second.returncode == 1, second.stderr[-2000:]
        assert f"run folder {run_dir} is in use by PID {first.pid} on" in second.stderr, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first one trains on, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert (run_dir / ".writer.lock").is_file()  # left by the killed process: stale, nobody holds it
    for name in ("last.pt", "best.pt"):  # start over rather than resume the killed run
        (run_dir / name).unlink(missing_ok=True)
    third = avmaster(*_train_args(tiny_data, tmp_path))
    assert third.returncode == 0, third.stderr[-2000:]
    assert (run_dir / "summary.json").is_file() and not (run_dir / ".writer.lock").exists()

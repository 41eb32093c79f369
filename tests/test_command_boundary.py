"""Issue 24, fast tier: each check that runs before a command's work, and the wording of errors at the
command boundary (cli.explain), without a subprocess. The CLI cases themselves: tests/test_bad_input.py."""
from __future__ import annotations

import errno
import json
import os
import signal
import shlex
from pathlib import Path

import numpy as np
import pytest

from avmaster_core import cli
from avmaster_core.core.atomic import atomic_write, signals_deferred
from avmaster_core.core.store import FeatureStore, StoreNotFileError, not_a_store

REPO = Path(__file__).resolve().parents[1]


def parses(command: str) -> None:
    """The advised `avmaster ...` command is one the CLI accepts (argparse exits 2 otherwise)."""
    words = shlex.split(command)
    words = words[words.index("avmaster") + 1:]
    cli.build_parser().parse_args(words)


# ------------------------------------------------------------------------------------------- the boundary
def test_a_full_disk_inside_torch_names_the_file_and_resume(tmp_path):
    def torch_like_write(f):  # torch wraps the OSError of a failed write in a RuntimeError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(RuntimeError) as info:
        atomic_write(tmp_path / "last.pt", torch_like_write)
    text = cli.explain(info.value, "train")
    assert f"no space left on the device while writing {tmp_path / 'last.pt'}" in text
    assert "--resume" in text and "enforce fail" not in text
    assert not list(tmp_path.iterdir())  # no temp file left


@pytest.mark.parametrize("code, fragment", [(errno.EROFS, "read-only file system"), (errno.ENOTDIR, "not a folder"),
                                            (errno.EACCES, "permission denied"), (errno.EISDIR, "is a folder")])
def test_os_errors_name_the_file_and_what_to_do(code, fragment):
    text = cli.explain(OSError(code, os.strerror(code), "/data/x.h5"), "extract")
    assert fragment in text and "/data/x.h5" in text


def test_own_messages_win_over_their_causes_and_bugs_say_so():
    try:
        try:
            raise OSError(errno.ENOENT, "No such file", "/x")
        except OSError:
            raise ValueError("checkpoint /x cannot be read; use a best.pt") from None
    except ValueError as e:
        assert cli.explain(e, "evaluate") == "checkpoint /x cannot be read; use a best.pt"
    text = cli.explain(KeyError("train_loss_total"), "train")
    assert text.startswith("internal error (KeyError") and "--debug" in text


def test_run_command_prints_one_line_for_any_exception(capsys):
    import argparse

    def boom(args):
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    assert cli.run_command(boom, argparse.Namespace(), [], "evaluate") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("avmaster evaluate: internal error (RuntimeError")


def test_sigterm_waits_for_the_atomic_write_then_unwinds(tmp_path):
    previous = signal.signal(signal.SIGTERM, cli._on_sigterm)
    try:
        with pytest.raises(cli.Terminated):
            def write(f):
                os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write
                f.write(b"complete")
            atomic_write(tmp_path / "last.pt", write)
        assert (tmp_path / "last.pt").read_bytes() == b"complete"  # finished before the signal took effect
        with pytest.raises(cli.Terminated):
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("not reached: the signal is delivered when the block ends")
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="no SIGUSR2 on this platform")
def test_a_preemption_signal_waits_for_the_atomic_write(tmp_path):
    # SLURM/submitit preempt with SIGUSR2; its handler must not run in the middle of a checkpoint write
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append((tmp_path / "last.pt").exists()))
    try:
        def write(f):
            os.kill(os.getpid(), signal.SIGUSR2)  # arrives mid-write
            f.write(b"complete")
            assert seen == []
        atomic_write(tmp_path / "last.pt", write)
        assert seen == [True] and (tmp_path / "last.pt").read_bytes() == b"complete"
    finally:
        signal.signal(signal.SIGUSR2, previous)


# ------------------------------------------------------------------------------------------------- outputs
def test_outputs_are_checked_before_the_command_runs(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(cli.AvmasterError, match=f"--out {afile} is a file, not a folder"):
        cli.check_writable(afile, "folder", "--out")
    with pytest.raises(cli.AvmasterError, match="is a file, so no folder can be made under it"):
        cli.check_writable(afile / "runs", "folder", "--out")
    with pytest.raises(cli.AvmasterError, match="is a folder, not a file"):
        cli.check_writable(tmp_path, "file", "--out")
    monkeypatch.setattr(cli, "_read_only_fs", lambda folder: True)
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    with pytest.raises(cli.AvmasterError, match="is on a read-only file system"):
        cli.check_writable(tmp_path / "new" / "runs", "folder", "--out")
    assert not (tmp_path / "new").exists()  # the check writes nothing
    parser = cli.build_parser()
    for line in (["train", "--dataset", "synthetic", "--root", "r", "--out", "o"],
                 ["evaluate", "--checkpoint", "c", "--dataset", "synthetic", "--root", "r", "--out", "o"],
                 ["extract", "--videos", "v", "--out", "o"], ["store", "import", "o"],
                 ["store", "merge", "a", "--out", "o"],
                 ["sweep", "--experiments", "default", "--dataset", "synthetic", "--root", "r"]):
        assert parser.parse_args(line).outputs, line  # every command that writes declares what


# -------------------------------------------------------------------------------------------------- inputs
def test_a_folder_or_json_given_as_store_is_named_not_called_damaged(tmp_path):
    (tmp_path / "features.h5").write_bytes(b"")
    FeatureStore(tmp_path / "good.h5", "a").close()
    assert "is a folder, not a feature store" in not_a_store(tmp_path)
    (tmp_path / "avqa-train.json").write_text('[{"question_id": 1}]')
    assert "is a JSON file, not a feature store" in not_a_store(tmp_path / "avqa-train.json")
    assert "empty file" in not_a_store(tmp_path / "features.h5")
    assert not_a_store(tmp_path / "good.h5") is None
    with pytest.raises(StoreNotFileError) as info:
        FeatureStore(tmp_path / "avqa-train.json")
    assert "move it away" not in str(info.value) and "damaged" not in str(info.value)


def test_videos_are_checked_without_loading_anything(tmp_path):
    from avmaster_core.extract.video import VideoDecodeError, check_video

    (tmp_path / "empty.mp4").write_bytes(b"")
    for path, fragment in ((tmp_path / "empty.mp4", "(0 bytes) cannot be opened as a video"),
                           (tmp_path / "nope.mp4", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(VideoDecodeError, match="video|cannot") as info:
            check_video(path)
        assert fragment in str(info.value) and str(path) in str(info.value)


def test_score_advice_for_an_unknown_predicted_answer_is_not_about_annotations():
    import pandas as pd

    from avmaster_core.data.scoring import correctness
    from avmaster_core.core.vocab import UnknownAnswerError

    records = pd.DataFrame({"question_id": [1], "video_id": ["v"], "question": ["Is it?"], "template": ["Is it?"],
                            "answer": ["yes"], "answer_idx": [0], "dataset": ["synthetic"], "split": ["test"],
                            "qtype": ["Existential"], "modality": ["Audio-Visual"]})
    with pytest.raises(UnknownAnswerError) as info:
        correctness(records, {1: "banjo-xyz"})
    text = str(info.value)
    assert "'banjo-xyz' in the prediction for question_id 1" in text and "annotation" not in text
    assert cli.explain(info.value, "score") == text  # a message, not an internal error


def test_a_multiple_choice_experiment_on_data_without_candidates_is_refused(tiny_data):
    from avmaster_core.core import config, experiments
    from avmaster_core.training.preflight import PreflightError, check_run_inputs
    from avmaster_core.training.run_config import DataConfig

    with pytest.raises(PreflightError) as info:
        check_run_inputs(DataConfig("synthetic", str(tiny_data)), experiments.experiment("avqa/choices", "official", "cpu"),
                         ["train"])
    text = str(info.value)
    assert "--dataset synthetic has none" in text and "--experiment default" in text
    experiments.experiment("default", "official", "cpu")  # the advised experiment exists


# ------------------------------------------------------------------------------------------ store import
def _npy_folder(folder: Path, n: int, shape=(6, 128)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(folder / f"v{i:03d}.npy", np.zeros(shape, np.float32))
    return folder


def test_import_takes_the_majority_width_and_names_the_odd_file(tmp_path):
    from avmaster_core.data.npy_io import import_npy

    folder = _npy_folder(tmp_path / "npy", 30)
    np.save(folder / "a000.npy", np.zeros((6, 64), np.float32))
    np.save(folder / "v030.npy", np.full((6, 128), np.nan, np.float32))
    with pytest.raises(ValueError) as info:
        import_npy(tmp_path / "i.h5", {"audio": folder}, progress=False)
    text = str(info.value)
    assert "2 of 32 .npy file(s) cannot be imported, nothing was written" in text
    assert f"{folder / 'a000.npy'}: width 64, where 30 of the 31 audio files have audio_dim=128" in text
    assert f"{folder / 'v030.npy'}: contains NaN" in text and "v000.npy" not in text
    assert not list(tmp_path.glob("i.h5*"))


def test_a_partial_store_built_from_refused_input_is_discarded(tmp_path, capsys):
    from avmaster_core.data.npy_io import import_npy

    with FeatureStore(tmp_path / "i.h5.partial", "a", lock=False) as stale:  # what the old import left
        stale.put("audio", "a000", np.zeros((6, 64)))
    folder = _npy_folder(tmp_path / "npy", 3)
    assert import_npy(tmp_path / "i.h5", {"audio": folder}, progress=False) == {"audio": 3}
    assert "discarded" in capsys.readouterr().err
    with FeatureStore(tmp_path / "i.h5") as store:
        assert store.keys("audio") == ["v000", "v001", "v002"] and store.widths["audio_dim"] == 128


def test_merge_checks_every_input_before_writing(tmp_path):
    from avmaster_core.data.npy_io import merge_stores

    with FeatureStore(tmp_path / "one.h5", "a") as s:
        s.put("audio", "x", np.zeros((3, 128)))
    with FeatureStore(tmp_path / "two.h5", "a") as s:
        s.put("audio", "y", np.zeros((3, 64)))
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError) as info:
        merge_stores(out, [tmp_path / "one.h5", tmp_path / "missing.h5", tmp_path / "two.h5"], progress=False)
    text = str(info.value)
    assert "nothing was written" in text and "missing.h5 does not exist" in text
    assert "two.h5: audio_dim is 64 there but 128" in text
    assert not list(tmp_path.glob("out.h5*"))


# --------------------------------------------------------------------------------------------- notebooks
def test_notebooks_work_in_the_repository_from_any_folder(tmp_path, monkeypatch):
    from avmaster_core.results.notebook_params import notebook_settings, notebooks_folder

    monkeypatch.chdir(tmp_path)
    assert notebooks_folder() == REPO / "notebooks"
    settings = notebook_settings("04_evaluation", SMOKE=True)
    assert Path.cwd() == REPO / "notebooks"  # relative paths (../data, ../results) are the repository's
    assert (Path.cwd() / settings.runs_root).resolve().is_relative_to(REPO)
    assert not list(tmp_path.iterdir())


def test_notebook_advice_names_the_benchmark_and_lengths_it_has(monkeypatch):
    from avmaster_core.results.notebook_params import ParameterError, notebook_settings

    monkeypatch.chdir(REPO / "notebooks")
    settings = notebook_settings("21_fig5_input_modalities", SMOKE=True, SEEDS="7")
    command = settings.sweep_command(["default"])
    assert "--root data/synthetic_decorrelated" in command and "--visible-prob 0.5" in command
    make, sweep = command.split(" && ")
    parses(make)
    parses(sweep.removeprefix("OMP_NUM_THREADS=1 "))
    with pytest.raises(ParameterError, match="have 10 segments .* give segment counts from 1 to 10"):
        notebook_settings("20_fig4_segment_length", SMOKE=True, LENGTHS="100,200")

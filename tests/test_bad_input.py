"""Bad inputs through the real `avmaster` command (a subprocess each): exit code and message (issue 14).

Each test is one row of docs/troubleshooting.md. Inputs are made here: a tiny synthetic benchmark, videos
written with PyAV (synthclip), broken files as bytes, and the tiny random encoders (`--encoders tiny`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avmaster_core.core.store import FeatureStore

# Every case runs the CLI in a fresh process (~2-4 s of CPU each): the full tier (`make test`), not test-fast.
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TRAIN_FAST = ["--dataset", "synthetic", "--device", "cpu", "--size", "cpu", "--epochs", "1", "--no-progress",
              "--batch-size", "8"]


def avmaster(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`avmaster ARGS` in a fresh process (this checkout's package, one thread)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVMASTER_DEBUG": "",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "avmaster_core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=REPO)


def refused(done: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    """Assert the command exited with `code`, printed no traceback and said every fragment on stderr."""
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr[-3000:])
    return done.stderr


# ------------------------------------------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A tiny synthetic benchmark (12 videos, T = 4)."""
    from avmaster_core.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, num_videos=12, questions_per_video=3, T=4)
    return root


def copy_of(root: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(root, dest)
    return dest


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    from avmaster_core.extract.synthclip import write_clip

    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "good.mp4", seconds=3, fps=2, size=(32, 24))
    write_clip(folder / "mute.mp4", seconds=3, fps=2, size=(32, 24), audio=False)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small checkpoint (the cpu size) that says it was trained on T = 10 segments."""
    from avmaster_core.core import experiments
    from avmaster_core.core.model import build_model

    cfg = experiments.experiment("default", "official", "cpu")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model_config": dataclasses.asdict(cfg), "model": build_model(cfg).state_dict(),
                "data_config": {"T": 10, "pad": None}}, path)
    return path


def broken_video(path: Path) -> Path:
    path.write_bytes(b"\x00not a video" * 50)
    return path


# ------------------------------------------------------------------------------------ train / evaluate / score
def test_train_checks_every_split_before_epoch_one(synth, tmp_path):
    root = copy_of(synth, tmp_path / "data")
    (root / "avqa-test.json").write_text('[{"video_id": "syn00001", ')  # truncated download
    val_video = json.loads((root / "avqa-val.json").read_text())[0]["video_id"]
    with FeatureStore(root / "features.h5", "a") as store:
        del store.file[f"visual/{val_video}"]
    done = avmaster("train", *TRAIN_FAST, "--root", root, "--out", tmp_path / "runs")
    err = refused(done, "problem(s) with the inputs", "stopped before the first step", "split 'test'", "avqa-test.json",
                  f"no visual feature for video {val_video!r}")
    assert "data fetch synthetic" not in err  # not a command: the synthetic data is remade with `avmaster synth`
    assert "avmaster synth" in err
    sweep = avmaster("sweep", "--experiments", "default", "--seeds", "1", *TRAIN_FAST, "--root", root,
                     "--out", tmp_path / "runs")
    assert sweep.returncode == 1 and "stopped before the first step" in sweep.stderr, sweep.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_train_length_advice_names_flags(synth, tmp_path):
    done = avmaster("train", *TRAIN_FAST, "--root", synth, "--T", "10", "--out", tmp_path / "runs")
    err = refused(done, "--pad zero or --pad edge", "--T 10")
    assert "pad='zero'" not in err and "T=" not in err and "drop_missing" not in err


def test_train_ctrl_c_says_how_to_resume(synth, tmp_path):
    run_dir = tmp_path / "runs" / "default" / "1"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "avmaster_core.cli", "train", *TRAIN_FAST, "--epochs", "500",
                             "--root", str(synth), "--out", str(tmp_path / "runs")], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while not (run_dir / "config.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)  # generous: a loaded 2-core CI machine
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    refused(done, "interrupted", "--resume", code=130)


def test_evaluate_refuses_damaged_checkpoints_naming_them(synth, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    refused(avmaster("evaluate", "--checkpoint", empty, "--dataset", "synthetic", "--root", synth),
            f"checkpoint {empty}", "cannot be read")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(100))
    done = avmaster("evaluate", "--checkpoint", garbage, "--dataset", "synthetic", "--root", synth, "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr  # --debug shows where it failed


def test_evaluate_set_of_a_training_field_is_refused(synth, checkpoint):
    refused(avmaster("evaluate", "--checkpoint", checkpoint, "--dataset", "synthetic", "--root", synth,
                     "--set", "dim=512"), "['dim'] change the trained model", "inference-only fields")


def _predictions(synth: Path, path: Path, split: str, dataset: str = "synthetic") -> Path:
    from avmaster_core.data.scoring import write_predictions

    ids = [r["question_id"] for r in json.loads((synth / "avqa-test.json").read_text())]
    return write_predictions(path, {q: 0 for q in ids}, dataset=dataset, split=split)


def test_score_refuses_predictions_of_another_split_or_dataset(synth, tmp_path):
    val = _predictions(synth, tmp_path / "val.json", "val", dataset="music_avqa")
    refused(avmaster("score", "--dataset", "synthetic", "--root", synth, "--split", "test", "--predictions", val),
            "dataset 'music_avqa' and split 'val'", "--force")
    forced = avmaster("score", "--dataset", "synthetic", "--root", synth, "--split", "test", "--predictions", val,
                      "--force")
    assert forced.returncode == 0 and "Avg" in forced.stdout, forced.stderr


# ----------------------------------------------------------------------------------------------- extraction
def test_extract_exit_codes_all_and_some_failed(clips, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    broken_video(bad / "a.mp4")
    broken_video(bad / "b.mp4")
    out = tmp_path / "all.h5"
    refused(avmaster("extract", "--videos", bad, "--out", out, "--encoders", "tiny", "--workers", "0"),
            "2 of 2 video(s) failed", f"{out}.failures.json", code=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.mp4").write_bytes((clips / "good.mp4").read_bytes())
    broken_video(mixed / "b.mp4")
    done = avmaster("extract", "--videos", mixed, "--out", tmp_path / "some.h5", "--encoders", "tiny",
                    "--workers", "0", "--seconds", "3")
    refused(done, "1 of 2 video(s) failed", code=3)


def test_extract_warns_about_cut_truncated_and_silent_videos(clips, tmp_path):
    from avmaster_core.extract.synthclip import write_clip

    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "long.mp4", seconds=10, fps=2, size=(32, 24))       # longer than --seconds 6
    full = write_clip(tmp_path / "full.mkv", seconds=8, fps=2, size=(32, 24)).read_bytes()
    (folder / "trunc.mkv").write_bytes(full[: len(full) // 2])                # the header still says 8 s
    (folder / "mute.mp4").write_bytes((clips / "mute.mp4").read_bytes())
    out = tmp_path / "w.h5"
    done = avmaster("extract", "--videos", folder, "--out", out, "--encoders", "tiny", "--workers", "0",
                    "--seconds", "6")
    assert done.returncode == 0, done.stderr
    for fragment in ("video long: cut to its first 6 s of 10.0 s", "video mute: no audio track",
                     "video trunc: decodable length", "8.0 s the file's header states"):
        assert fragment in done.stderr, done.stderr
    with FeatureStore(out) as store:
        assert "cut to its first 6 s" in store.file["visual/long"].attrs["warnings"]
        assert "no audio track" in store.file["audio/mute"].attrs["warnings"]


def test_second_writer_is_refused_with_pid_and_host(clips, tmp_path):
    out = tmp_path / "busy.h5"
    with FeatureStore(out, "a"):
        done = avmaster("extract", "--videos", clips, "--out", out, "--encoders", "tiny", "--workers", "0")
    err = refused(done, f"in use by PID {os.getpid()} on {socket.gethostname()}")
    assert "move" not in err
    with FeatureStore(out, "a"):  # the lock went with its holder
        pass


def test_damaged_store_advises_moving_it_only_when_nobody_holds_it(tmp_path, synth):
    damaged = tmp_path / "features.h5"
    damaged.write_bytes(b"\x89HDF\r\n" + os.urandom(64))
    refused(avmaster("store", "info", damaged), "move it away")


def test_corrupt_weights_name_the_file(clips, tmp_path):
    weights = tmp_path / "vggish.pth"
    weights.write_bytes(os.urandom(100))
    err = refused(avmaster("extract", "--videos", clips, "--out", tmp_path / "o.h5", "--visual-encoder", "tiny-clip",
                           "--audio-encoder", "vggish", "--vggish-weights", weights, "--workers", "0"),
                  f"--vggish-weights {weights}", "cannot be loaded")
    assert "weights_only" not in err


def test_records_ids_and_changed_texts(tmp_path):
    out = tmp_path / "q.h5"
    records = tmp_path / "records.csv"
    records.write_text("question_id,question\n1,What is on the left?\n2,Where is the sound?\n")
    base = ["extract", "--records", records, "--out", out, "--encoders", "tiny"]
    assert avmaster(*base).returncode == 0
    with FeatureStore(out) as store:
        before = store.get("question", 1)
    records.write_text("question_id,question\n1,What is on the right?\n2,Where is the sound?\n")
    done = avmaster(*base)
    assert done.returncode == 0 and "1 question(s) extracted" in done.stdout, done.stdout + done.stderr
    with FeatureStore(out) as store:
        assert not np.allclose(before, store.get("question", 1))
    records.write_text("question_id,question\n3,Is it loud?\n3,Is it quiet?\nabc,Is it?\n")
    refused(avmaster(*base), "appear with different texts", "'Is it loud?'", "not integers", "['abc'] at row(s) [3]")


# ------------------------------------------------------------------------------------------------------ store
def test_store_import_refuses_damaged_npy_and_leaves_no_half_store(tmp_path):
    folder = tmp_path / "vggish"
    folder.mkdir()
    np.save(folder / "a_good.npy", np.zeros((4, 128), np.float32))
    (folder / "b_empty.npy").write_bytes(b"")
    (folder / "c_random.npy").write_bytes(os.urandom(100))
    (folder / "d_pickled.npy").write_bytes(pickle.dumps({"a": 1}))
    out = tmp_path / "imported.h5"
    refused(avmaster("store", "import", out, "--audio", folder), "3 of 4 .npy file(s) cannot be imported",
            "b_empty.npy (0 bytes)", "c_random.npy (100 bytes)", "d_pickled.npy", "nothing was written")
    assert not out.exists()


def test_store_merge_failing_halfway_leaves_the_output_as_it_was(tmp_path):
    one, two, out = tmp_path / "one.h5", tmp_path / "two.h5", tmp_path / "out.h5"
    with FeatureStore(one, "a") as s:
        s.put("audio", "x", np.zeros((3, 128)))
    with FeatureStore(two, "a") as s:
        s.put("audio", "y", np.zeros((3, 64)))  # another width: refused when merged
    with FeatureStore(out, "a") as s:
        s.put("audio", "w", np.zeros((3, 128)))
    refused(avmaster("store", "merge", one, two, "--out", out), "audio_dim is 64 there but 128", "nothing was written")
    with FeatureStore(out) as s:
        assert s.keys("audio") == ["w"]
    assert not Path(f"{out}.partial").exists()


# -------------------------------------------------------------------------------------------------------- ask
def test_ask_refuses_empty_questions_and_bad_top(clips, checkpoint):
    refused(avmaster("ask", clips / "good.mp4", "  ? ", "--checkpoint", checkpoint, "--encoders", "tiny"),
            "the question is empty")
    refused(avmaster("ask", clips / "good.mp4", "Is it loud?", "--checkpoint", checkpoint, "--encoders", "tiny",
                     "--top", "0"), "argument --top: '0' is not allowed: give a whole number >= 1", code=2)


def test_ask_says_what_it_changed(clips, checkpoint):
    question = " ".join(["where"] * 500) + "?"
    done = avmaster("ask", clips / "mute.mp4", question, "--checkpoint", checkpoint, "--encoders", "tiny",
                    "--seconds", "3", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    for fragment in ("only the first 77 are read", "trained on T=10 segments", "no audio track"):
        assert fragment in done.stderr, done.stderr


# ----------------------------------------------------------------------------------------------- the process
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_message():
    refused(avmaster("benchmark", "--device", "cuda", "--steps", "1"), "--device cuda", "no CUDA GPU")


def test_broken_pipe_is_quiet():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(f"{sys.executable} -m avmaster_core.cli data list --root /nonexistent | true",
                          shell=True, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------------------ issue 24 (round 2)
def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    """A finished one-epoch run folder (runs/default/1) on the tiny benchmark."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    done = avmaster("train", *TRAIN_FAST, "--root", synth, "--out", runs)
    assert done.returncode == 0, done.stderr[-2000:]
    return runs / "default" / "1"


def test_resume_from_a_truncated_last_pt_says_how_to_start_over_and_that_works(synth, trained, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "default" / "1")
    last = runs / "default" / "1" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    command = ["train", *TRAIN_FAST, "--root", synth, "--out", runs, "--resume"]
    err = refused(avmaster(*command), f"checkpoint {last} (1000 bytes) cannot be read", "mv ")
    advice = err[err.index("`mv ") + 1:]
    subprocess.run(advice[:advice.index("`")], shell=True, check=True)  # the advised move ...
    assert avmaster(*command).returncode == 0  # ... and the same command starts the run over


def test_checkpoint_missing_weights_is_named_before_any_data(synth, checkpoint, tmp_path):
    saved = torch.load(checkpoint, weights_only=True)
    saved["model"] = {k: v for i, (k, v) in enumerate(saved["model"].items()) if i % 2}
    path = tmp_path / "missing.pt"
    torch.save(saved, path)
    refused(avmaster("evaluate", "--checkpoint", path, "--dataset", "synthetic", "--root", tmp_path / "absent"),
            f"checkpoint {path} does not hold the weights of its model", "weights missing")


def test_score_with_an_unknown_predicted_answer(synth, tmp_path):
    path = _predictions(synth, tmp_path / "p.json", "test")
    data = json.loads(path.read_text())
    first = next(iter(data["predictions"]))
    data["predictions"][first] = "banjo-xyz"
    path.write_text(json.dumps(data))
    err = refused(avmaster("score", "--dataset", "synthetic", "--root", synth, "--predictions", path),
                  "unknown answer 'banjo-xyz' in the prediction for question_id")
    assert "annotation" not in err


FULL_DISK = """import sys, avmaster_core.core.atomic as a
orig = a.atomic_write
def full(path, write, **kw):  # last.pt goes to /dev/full: torch's write fails as on a full disk
    if not str(path).endswith("last.pt"):
        return orig(path, write, **kw)
    fdopen, a.os.fdopen = a.os.fdopen, lambda fd, mode, **k: open("/dev/full", mode)
    try:
        return orig(path, write, **kw)
    finally:
        a.os.fdopen = fdopen
a.atomic_write = full
from avmaster_core.cli import main
sys.exit(main())
"""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_while_writing_last_pt_says_so_and_resume_works(synth, tmp_path):
    command = ["train", *TRAIN_FAST, "--root", synth, "--out", tmp_path / "runs"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVMASTER_DEBUG": ""}
    done = subprocess.run([sys.executable, "-c", FULL_DISK, *map(str, command)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    run = tmp_path / "runs" / "default" / "1"
    refused(done, f"no space left on the device while writing {run / 'last.pt'}", "--resume")
    assert "enforce fail" not in done.stderr and not list(run.glob(".*.tmp"))  # no half file left
    assert avmaster(*command, "--resume").returncode == 0  # the advice, on a disk with room


def test_a_json_file_or_a_folder_given_as_store_is_named(synth, tmp_path):
    json_file = synth / "avqa-train.json"
    err = refused(avmaster("train", *TRAIN_FAST, "--root", synth, "--store", json_file, "--out", tmp_path / "r"),
                  f"{json_file} is a JSON file, not a feature store")
    assert "move it away" not in err and not (tmp_path / "r").exists()
    err = refused(avmaster("store", "info", synth), f"{synth} is a folder, not a feature store",
                  f"e.g. {synth / 'features.h5'}")
    assert "move it away" not in err


def test_an_out_that_cannot_be_written_is_refused_before_any_work(synth, checkpoint, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    refused(avmaster("train", *TRAIN_FAST, "--root", synth, "--out", afile), f"--out {afile} is a file, not a folder")
    refused(avmaster("evaluate", "--checkpoint", checkpoint, "--dataset", "synthetic", "--root", synth,
                     "--out", afile / "eval"), "is a file, so no folder can be made under it")
    assert afile.read_text() == "keep me"


def test_ask_and_extract_check_their_inputs_before_any_encoder_loads(checkpoint, clips, tmp_path):
    # --clip-weights points nowhere: had the encoders been built first, that would be the error
    encoders = ["--visual-encoder", "clip", "--clip-weights", tmp_path / "absent.pt", "--device", "cpu"]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    refused(avmaster("ask", empty, "Is it loud?", "--checkpoint", checkpoint, *encoders),
            f"{empty} (0 bytes) cannot be opened as a video")
    refused(avmaster("ask", tmp_path / "nope.mp4", "Is it loud?", "--checkpoint", checkpoint, *encoders),
            f"video {tmp_path / 'nope.mp4'} does not exist")
    refused(avmaster("ask", clips / "good.mp4", "Is it loud?", "--checkpoint", checkpoint, *encoders,
                     "--seconds", "0"), "--seconds")
    (tmp_path / "videos").mkdir()
    refused(avmaster("extract", "--videos", tmp_path / "videos", "--out", tmp_path / "o.h5", *encoders),
            f"no video files", str(tmp_path / "videos"))
    assert not (tmp_path / "o.h5").exists()


def test_store_import_names_the_odd_file_and_the_rerun_works(tmp_path):
    folder = tmp_path / "npy2"
    folder.mkdir()
    for i in range(30):
        np.save(folder / f"v{i:03d}.npy", np.zeros((6, 128), np.float32))
    np.save(folder / "a000.npy", np.zeros((6, 64), np.float32))
    out = tmp_path / "w" / "i.h5"
    err = refused(avmaster("store", "import", out, "--audio", folder),
                  f"{folder / 'a000.npy'}: width 64, where 30 of the 31 audio files have audio_dim=128")
    assert "v000.npy" not in err and not out.parent.exists()
    (folder / "a000.npy").unlink()
    done = avmaster("store", "import", out, "--audio", folder)
    assert done.returncode == 0 and "audio 30" in done.stdout, done.stderr


def sigterm_once(args: list, ready: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVMASTER_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "avmaster_core.cli", *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_in_train_and_store_import_is_like_ctrl_c(synth, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "default" / "1"
    done = sigterm_once(["train", *TRAIN_FAST, "--epochs", "500", "--checkpoint-every", "1", "--root", synth,
                         "--out", runs], run / "last.pt")
    refused(done, "terminated (SIGTERM)", "--resume", code=143)
    torch.load(run / "last.pt", weights_only=True)  # complete
    assert not list(run.glob("*.lock")) and not list(run.glob(".*.tmp"))
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(8000):  # long enough (seconds) for the signal to arrive mid-import
        np.save(folder / f"v{i:04d}.npy", np.zeros((6, 128), np.float32))
    store = tmp_path / "s.h5"
    done = sigterm_once(["store", "import", store, "--audio", folder], Path(f"{store}.partial"))
    refused(done, "terminated (SIGTERM)", "rerun the same command", code=143)
    assert not Path(f"{store}.lock").exists()
    assert avmaster("store", "import", store, "--audio", folder).returncode == 0  # continues from the .partial


def test_a_notebook_run_from_another_folder_stays_in_the_repository(tmp_path):
    """`papermill notebooks/04_evaluation.ipynb out.ipynb` from any folder: paths are the repository's."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "04_evaluation.ipynb"),
                           "out.ipynb", "-k", "python3"], capture_output=True, text=True, env=env, cwd=work,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["elsewhere", "out.ipynb"]

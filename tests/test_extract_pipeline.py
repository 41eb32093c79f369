"""The extraction pipeline end to end with tiny random encoders: store contents, failures, resume, shards, ask."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from avmaster_core.cli import main
from avmaster_core.extract.encoders import ClipEncoder, VGGishEncoder
from avmaster_core.extract.pipeline import (extract_questions, extract_videos, failures_path, parse_shard,
                                            question_text, shard_store_path, which_path)
from avmaster_core.extract.synthclip import write_clip
from avmaster_core.extract.routes import LEGACY_PROTOCOLS, ROUTES
from avmaster_core.store import FeatureStore


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for i in range(4):
        write_clip(folder / f"v{i}.mp4", seconds=3, fps=5, tone_hz=300 + 200 * i)
    write_clip(folder / "mute.mp4", seconds=3, fps=5, audio=False)
    write_clip(folder / "quiet.mp4", seconds=3, fps=5, tone_hz=None)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 64)
    return folder


@pytest.fixture(scope="module")
def encoders():
    return ClipEncoder.tiny(seed=0), VGGishEncoder.load(random_init=True, seed=0)


def _contents(path) -> dict:
    with FeatureStore(path) as store:
        return {(kind, key): store.get(kind, key) for kind in ("audio", "visual") for key in store.keys(kind)}


def test_extract_writes_store_failures_and_warnings(clips, encoders, tmp_path):
    clip, vggish = encoders
    out = tmp_path / "f.h5"
    summary = extract_videos(clips, out, clip, vggish, seconds=3, batch_frames=7, workers=0, progress=False)
    assert (summary.total, summary.extracted, summary.failed) == (7, 6, 1)
    with FeatureStore(out) as store:
        assert sorted(store.keys("visual")) == ["mute", "quiet", "v0", "v1", "v2", "v3"]
        assert store.get("visual", "v0").shape == (3, 768) and store.get("audio", "v0").shape == (3, 128)
        assert store.attrs["visual_extractor"] == "open_clip:tiny-clip" and "protocol" in store.attrs
        assert bool(store.file["audio/mute"].attrs["audio_missing"])
        # different tones give different audio features; the same frames (same colours) the same visual ones
        assert not np.allclose(store.get("audio", "v0"), store.get("audio", "v1"))
        np.testing.assert_allclose(store.get("visual", "v0"), store.get("visual", "v1"), atol=1e-5)
        assert store.attrs["route"] == "official" and "moviepy" in store.attrs["route_params"]
        assert (store.attrs["audio_encoder"], store.attrs["audio_dim"]) == ("random-vggish", 128)
        assert (store.attrs["visual_encoder"], store.attrs["visual_dim"]) == ("tiny-clip", 768)
        # features match encoding one video on its own (batching across videos changes nothing), by the
        # official route's decoder (the default)
        from avmaster_core.extract.official_route import decode_video_official
        alone = clip.encode_images(torch.stack(decode_video_official(clips / "v2.mp4", 3, clip.preprocess.crop).frames))
        np.testing.assert_allclose(store.get("visual", "v2"), alone.numpy(), atol=1e-5)
    report = json.loads(failures_path(out).read_text())
    assert list(report["failures"]) == ["broken"] and report["failures"]["broken"]["reason"]
    assert "no audio track" in report["warnings"]["mute"]["reasons"][0]
    assert "silent" in report["warnings"]["quiet"]["reasons"][0]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_store(clips, encoders, tmp_path):
    clip, vggish = encoders
    whole = tmp_path / "whole.h5"
    extract_videos(clips, whole, clip, vggish, seconds=3, batch_frames=4, workers=0, progress=False)

    resumed = tmp_path / "resumed.h5"
    done = []

    def ctrl_c_after_two(video_id):
        done.append(video_id)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_videos(clips, resumed, clip, vggish, seconds=3, batch_frames=4, workers=0, progress=False,
                       on_video_done=ctrl_c_after_two)
    assert len(_contents(resumed)) == 2 * 2  # two videos survived, nothing half-written
    second = extract_videos(clips, resumed, clip, vggish, seconds=3, batch_frames=4, workers=2, progress=False)
    assert second.skipped == 2 and second.extracted == 4
    a, b = _contents(whole), _contents(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=str(key))


def test_shards_partition_the_videos_and_merge(clips, encoders, tmp_path):
    clip, vggish = encoders
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("3")
    with pytest.raises(ValueError, match="0 <= i < n"):
        parse_shard("2/2")
    out = tmp_path / "f.h5"
    keys = []
    for i in range(2):
        extract_videos(clips, out, clip, vggish, seconds=2, workers=0, shard=(i, 2), progress=False)
        with FeatureStore(shard_store_path(out, (i, 2))) as store:
            keys.append(set(store.keys("visual")))
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 6
    assert main(["store", "merge", str(shard_store_path(out, (0, 2))), str(shard_store_path(out, (1, 2))),
                 "--out", str(out)]) == 0
    with FeatureStore(out) as store:
        assert set(store.keys("visual")) == keys[0] | keys[1] and set(store.keys("audio")) == keys[0] | keys[1]


def test_clean_route_is_the_unchanged_decoder(clips, encoders, tmp_path, monkeypatch):
    """route="clean" runs video.decode_video (the pre-route pipeline) and nothing else."""
    from avmaster_core.extract import routes, video
    from avmaster_core.extract.encoders import vggish_log_mel

    clip, vggish = encoders
    assert routes.ROUTES["clean"].decode is video.decode_video
    calls = []
    original = video.decode_video

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setitem(routes.ROUTES, "clean", routes.Route("clean", spy, routes.CLEAN_PARAMS,
                                                             routes.ROUTES["clean"].protocol))
    out = tmp_path / "clean.h5"
    extract_videos({"v1": clips / "v1.mp4"}, out, clip, vggish, seconds=3, workers=0, progress=False, route="clean")
    assert [p.name for p in calls] == ["v1.mp4"]
    decoded = original(clips / "v1.mp4", 3, clip.preprocess.crop)
    with FeatureStore(out) as store:
        assert store.attrs["route"] == "clean" and store.attrs["protocol"].startswith("avmaster-extract/clean-2:")
        np.testing.assert_allclose(store.get("visual", "v1"), clip.encode_images(torch.stack(decoded.frames)).numpy(),
                                   atol=1e-5)
        np.testing.assert_allclose(store.get("audio", "v1"), vggish.encode(vggish_log_mel(decoded.audio)).numpy(),
                                   atol=1e-5)


def test_routes_cannot_be_mixed_and_info_shows_the_route(clips, encoders, tmp_path, capsys):
    clip, vggish = encoders
    out = tmp_path / "f.h5"
    extract_videos(clips, out, clip, vggish, seconds=2, workers=0, limit=1, progress=False, route="clean")
    with pytest.raises(ValueError, match="Routes cannot be mixed.*--route clean"):
        extract_videos(clips, out, clip, vggish, seconds=2, workers=0, limit=2, progress=False, route="official")
    assert main(["store", "info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "extraction route: clean" in printed and "frames: the frame on screen" in printed
    legacy = tmp_path / "legacy.h5"  # made before routes existed: only the old protocol string says how
    with FeatureStore(legacy, "a") as store:
        store.set_attrs(protocol=LEGACY_PROTOCOLS["clean"])
    with pytest.raises(ValueError, match="'clean' extraction route"):
        extract_videos(clips, legacy, clip, vggish, seconds=2, workers=0, limit=1, progress=False)
    with pytest.raises(ValueError, match="unknown extraction route"):
        extract_videos(clips, tmp_path / "g.h5", clip, vggish, seconds=2, workers=0, progress=False, route="fast")


def test_store_refuses_other_encoder_settings(clips, encoders, tmp_path):
    clip, vggish = encoders
    out = tmp_path / "f.h5"
    extract_videos(clips, out, clip, vggish, seconds=2, workers=0, limit=1, progress=False)
    with pytest.raises(ValueError, match="seconds"):
        extract_videos(clips, out, clip, vggish, seconds=3, workers=0, limit=1, progress=False)


def test_questions_sentence_and_words(encoders, tmp_path):
    clip, _ = encoders
    out = tmp_path / "q.h5"
    questions = {7: "Is the <Object> playing?", 9: "How many instruments are sounding in the video ?"}
    assert question_text(questions[9]) == "How many instruments are sounding in the video"
    assert extract_questions(questions, out, clip, progress=False) == 2
    assert extract_questions(questions, out, clip, progress=False) == 0  # resumable
    sentence, words = clip.encode_text([question_text(questions[7])])
    with FeatureStore(out) as store:
        np.testing.assert_allclose(store.get("question", 7), sentence[0].numpy(), atol=1e-5)  # batch of 2 vs 1
        assert store.get("words", 9).shape == (77, 768)


@pytest.mark.slow
def test_cli_extract_videos_and_records(clips, tmp_path, capsys):
    records = tmp_path / "records.csv"
    records.write_text("question_id,question\n1,What is on the left?\n2,Where is the sound?\n")
    out = tmp_path / "cli.h5"
    code = main(["extract", "--videos", str(clips), "--records", str(records), "--out", str(out),
                 "--encoders", "tiny", "--workers", "0", "--seconds", "2", "--limit", "3"])  # broken, mute, quiet
    assert code == 3  # one of the three videos failed (issue 14: exit 3 when some failed)
    printed = capsys.readouterr().out
    assert "2 extracted, 0 already there, 1 failed" in printed and "2 question(s)" in printed
    with FeatureStore(out) as store:
        assert len(store.keys("visual")) == 2 and sorted(store.keys("question")) == ["1", "2"]
    with FeatureStore(out) as store:
        assert store.attrs["route"] == "official"
    assert main(["extract", "--videos", str(clips), "--out", str(out), "--encoders", "tiny", "--workers", "0",
                 "--seconds", "2", "--limit", "3", "--route", "clean"]) == 1  # another route: refused
    assert "Routes cannot be mixed" in capsys.readouterr().err
    assert main(["extract", "--videos", str(clips), "--out", str(tmp_path / "named.h5"), "--workers", "0",
                 "--visual-encoder", "tiny-clip", "--audio-encoder", "random-vggish", "--seconds", "2",
                 "--limit", "3", "--route", "clean"]) == 3  # the broken video fails again
    with FeatureStore(tmp_path / "named.h5") as store:
        assert (store.attrs["visual_encoder"], store.attrs["route"]) == ("tiny-clip", "clean")
    assert main(["extract", "--out", str(out)]) == 2
    assert main(["extract", "--videos", str(tmp_path / "none"), "--out", str(out), "--encoders", "tiny"]) == 1


def test_which_path_verdicts():
    def out(a, v):
        logits = {"qa": torch.zeros(1, 4), "a": torch.zeros(1, 4), "v": torch.zeros(1, 4)}
        logits["a"][0, 2], logits["v"][0, 2] = a, v
        return {f"logits_{k}": x for k, x in logits.items()}

    assert which_path(out(4.0, 0.5), 2)[0] == "audio"
    assert which_path(out(0.5, 4.0), 2)[0] == "visual"
    assert which_path(out(2.0, 1.5), 2)[0] == "both"


@pytest.mark.slow
def test_ask_answers_with_a_checkpoint(clips, tmp_path, capsys):
    model_mod = pytest.importorskip("avmaster_core.model")
    pytest.importorskip("avmaster_core.engine")
    from avmaster_core.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig.official()
    model = model_mod.build_model(cfg)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model_config": dataclasses.asdict(cfg), "model": model.state_dict()}, ckpt)
    code = main(["ask", str(clips / "v1.mp4"), "How many instruments are sounding?", "--checkpoint", str(ckpt),
                 "--encoders", "tiny", "--seconds", "3", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "A: " in printed and "driven by:" in printed
    lines = [l for l in printed.splitlines() if l.strip().endswith(tuple("abcdefghijklmnopqrstuvwxyz"))
             and "%" in l]
    assert len(lines) == 5

"""The synthetic benchmark: determinism, format, balance, modality necessity, CLIP-like question layout."""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from avmaster_core.data import synthetic as S
from avmaster_core.core.records import QUESTION_TYPES
from avmaster_core.core.store import FeatureStore
from avmaster_core.core.vocab import ANSWERS

SMALL = dict(num_videos=120, questions_per_video=8, T=6, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    S.generate_synthetic(root, **SMALL)
    return root


def _records(root, split=None):
    splits = [split] if split else ["train", "val", "test"]
    return [r for s in splits for r in json.loads((root / f"avqa-{s}.json").read_text())]


def test_writes_music_avqa_format(small):
    records = _records(small)
    assert len(records) > 0.8 * SMALL["num_videos"] * SMALL["questions_per_video"]
    for r in records[:50]:
        assert set(r) == {"video_id", "question_id", "type", "question_content", "templ_values",
                          "question_deleted", "anser"}
        assert isinstance(r["video_id"], str) and isinstance(r["question_id"], int)
        modality, qtype = json.loads(r["type"])               # a string holding a JSON list
        assert (modality, qtype) in QUESTION_TYPES
        values = json.loads(r["templ_values"])
        assert isinstance(values, list) and r["question_content"].count("<") == len(values)
        assert r["question_deleted"] == 0
    ids = [r["question_id"] for r in records]
    assert len(set(ids)) == len(ids)


def test_load_annotations_reads_it(small):
    from avmaster_core import load_annotations
    test = load_annotations("synthetic", "test", small)
    assert len(test) == len(_records(small, "test"))
    assert set(test["dataset"]) == {"synthetic"} and set(test["split"]) == {"test"}
    assert test["answer_idx"].between(0, len(ANSWERS) - 1).all()


def test_splits_are_by_video(small):
    videos = {s: {r["video_id"] for r in _records(small, s)} for s in ("train", "val", "test")}
    assert not videos["train"] & videos["test"] and not videos["train"] & videos["val"]
    assert not videos["val"] & videos["test"]
    n = {s: len(v) for s, v in videos.items()}
    assert n["train"] > n["test"] > n["val"] > 0


def test_all_nine_types_and_every_answer_official(small):
    records = _records(small)
    types = {tuple(json.loads(r["type"])) for r in records}
    assert types == set(QUESTION_TYPES)
    assert {r["anser"] for r in records} <= set(ANSWERS)
    assert {r["question_content"] for r in records} == {t.text for t in S.TEMPLATES}


def test_answers_balanced_per_template(small):
    """Within a split no answer of a template is asked more than BALANCE_SLACK times more than its rarest."""
    for split in ("train", "test"):
        counts = defaultdict(Counter)
        for r in _records(small, split):
            counts[r["question_content"]][r["anser"]] += 1
        by_text = {t.text: t for t in S.TEMPLATES}
        for text, answers in counts.items():
            full = [answers[a] for a in by_text[text].answers]
            assert max(full) - min(full) <= S.BALANCE_SLACK, (split, text, answers)


def test_question_only_ceiling_is_near_chance(small):
    ceiling = S.question_only_ceiling(small)
    chance = S.chance_by_template(small)
    expected = np.mean([chance[r["question_content"]] for r in _records(small, "test")])
    assert 0 < ceiling["overall"] < expected + 0.12, (ceiling["overall"], expected)
    assert set(ceiling["by_type"]) == {" ".join(t) for t in QUESTION_TYPES}


def test_answers_follow_from_the_scene(small):
    scenes = S.load_scenes(small)
    by_text = {t.text: t for t in S.TEMPLATES}
    for r in _records(small)[:400]:
        template = by_text[r["question_content"]]
        assert template.answer(scenes[r["video_id"]], tuple(json.loads(r["templ_values"]))) == r["anser"]


def test_decoded_scene_reader_answers_nearly_all(small):
    """The features carry the scene: a projection reader answers (almost) every question."""
    assert S.decoded_scene_accuracy(small, "test")["overall"] > 0.9


def test_modalities_are_necessary(small):
    scenes = list(S.load_scenes(small).values())
    instruments = [i for s in scenes for i in s.instruments]
    off_screen_sounding = sum(1 for i in instruments if not i.visible and i.sounds)
    visible_silent = sum(1 for i in instruments if i.visible and not i.sounds)
    assert off_screen_sounding > 0.1 * len(instruments) and visible_silent > 0.05 * len(instruments)
    # The number seen and the number heard differ in a good fraction of scenes.
    differ = sum(len(s.visible()) != len(s.sounding()) for s in scenes)
    assert differ > 0.3 * len(scenes)
    # Audio carries no position and visual no sound: the features of a scene do not change when the
    # sound (resp. positions) change in the other modality.
    scene = next(s for s in scenes if any(i.visible and i.sounds for i in s.instruments))
    muted = S.Scene(scene.video_id, scene.T, scene.place, scene.voice,
                    [S.Instrument(i.cls, i.position, 0, 0, i.loudness, i.rhythm) for i in scene.instruments])
    a1, v1 = S.scene_features(scene, 0.0, np.random.default_rng(0))
    a2, v2 = S.scene_features(muted, 0.0, np.random.default_rng(0))
    assert np.array_equal(v1, v2) and not np.allclose(a1, a2)


def test_same_seed_same_files_other_seed_differs(tmp_path):
    kwargs = dict(num_videos=12, questions_per_video=4, T=4)
    a, b, c = (S.generate_synthetic(tmp_path / name, seed=seed, **kwargs)
               for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    for name in ("train", "val", "test", "scenes"):
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["scenes"].read_bytes() != c["scenes"].read_bytes()
    with FeatureStore(a["features"]) as fa, FeatureStore(b["features"]) as fb:
        assert fa.attrs["seed"] == 7 and fa.attrs["T"] == 4 and fa.attrs["generator"] == S.GENERATOR
        for kind in ("audio", "visual", "question", "words"):
            assert sorted(fa.keys(kind)) == sorted(fb.keys(kind))
            for key in fa.keys(kind):
                assert np.array_equal(fa.get(kind, key), fb.get(kind, key))


def test_feature_shapes_and_clip_like_words(small):
    records = _records(small, "val")
    with FeatureStore(small / "features.h5") as store:
        for r in records[:20]:
            assert store.get("audio", r["video_id"]).shape == (SMALL["T"], 128)
            assert store.get("visual", r["video_id"]).shape == (SMALL["T"], 768)
            sentence, words = store.get("question", r["question_id"]), store.get("words", r["question_id"])
            assert sentence.shape == (768,) and words.shape == (77, 768)
            n_words = len(S.fill_question(r["question_content"], r["templ_values"]).split())
            used = np.flatnonzero(np.abs(words).max(axis=1) > 0)
            assert used.tolist() == list(range(n_words + 2))       # start, words, end; zeros after
            assert np.array_equal(words[n_words + 1], sentence)     # the sentence is the end-token state


def test_question_features_depend_on_the_named_instrument_and_order():
    s1, w1 = S.question_features("Is the cello louder than the violin")
    s2, w2 = S.question_features("Is the violin louder than the cello")
    s3, _ = S.question_features("Is the cello louder than the violin")
    assert np.array_equal(s1, s3)
    assert not np.allclose(s1, s2) and not np.allclose(w1, w2)
    # An instrument's word vector leans towards its appearance code (CLIP's joint space).
    W = S.world()
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    assert cos(S.word_vector("cello"), W["appearance/cello"]) > 0.4
    assert abs(cos(S.word_vector("cello"), W["appearance/violin"])) < 0.2


def test_tiny_T_and_bad_arguments(tmp_path):
    paths = S.generate_synthetic(tmp_path / "t1", num_videos=6, questions_per_video=3, T=1, seed=0)
    with FeatureStore(paths["features"]) as store:
        assert store.get("audio", store.keys("audio")[0]).shape == (1, 128)
    with pytest.raises(ValueError, match="num_videos"):
        S.generate_synthetic(tmp_path / "bad", num_videos=2)
    with pytest.raises(ValueError, match="T >= 1"):
        S.generate_synthetic(tmp_path / "bad", num_videos=5, T=0)


def test_existing_output_is_reused(tmp_path):
    kwargs = dict(num_videos=6, questions_per_video=2, T=2, seed=1)
    paths = S.generate_synthetic(tmp_path, **kwargs)
    stamp = paths["features"].stat().st_mtime_ns
    S.generate_synthetic(tmp_path, **kwargs)
    assert paths["features"].stat().st_mtime_ns == stamp
    S.generate_synthetic(tmp_path, **dict(kwargs, seed=2))
    assert paths["features"].stat().st_mtime_ns != stamp


def test_a_second_writer_of_one_folder_waits_for_the_first(tmp_path):
    """Notebooks and parallel test workers call generate_synthetic on one folder at once: the second waits for
    the first's lock (here held by the test) instead of failing on the feature store in use, then writes."""
    import threading

    from avmaster_core.core.store import WriterLock

    tmp_path.mkdir(exist_ok=True)
    first = WriterLock(tmp_path, lock_file=tmp_path / ".synthetic.lock")
    second = threading.Thread(target=S.generate_synthetic, args=(tmp_path,),
                              kwargs=dict(num_videos=6, questions_per_video=2, T=2))
    second.start()
    second.join(1.0)
    assert second.is_alive() and not (tmp_path / "features.h5").exists()  # waiting, nothing written
    first.release()
    second.join(60)
    assert not second.is_alive() and (tmp_path / "synthetic.json").exists()
    assert not (tmp_path / ".synthetic.lock").exists()


def test_cli_synth(tmp_path, capsys):
    from avmaster_core.cli import main
    assert main(["synth", "--out", str(tmp_path), "--videos", "9", "--questions", "3", "--T", "3"]) == 0
    out = capsys.readouterr().out
    assert "avqa-train.json" in out and "features.h5" in out
    assert (tmp_path / "avqa-test.json").exists()


@pytest.mark.slow
def test_defaults_generate_in_seconds(tmp_path):
    start = time.process_time()  # CPU time: parallel test workers and other jobs do not stretch it
    paths = S.generate_synthetic(tmp_path)
    seconds = time.process_time() - start
    assert seconds < 60, f"default generation took {seconds:.1f} CPU-s"
    n = sum(len(json.loads(paths[s].read_text())) for s in ("train", "val", "test"))
    assert 5000 <= n <= S.DEFAULTS["num_videos"] * S.DEFAULTS["questions_per_video"]


def test_visibility_knobs_decorrelate_seeing_and_hearing():
    """visible_prob / silent_prob: fewer instruments on screen and more silent ones make 'visible' a poor
    guess of 'sounding' (the decorrelated variant of results/synthetic.md)."""
    rng_default, rng_variant = np.random.default_rng(0), np.random.default_rng(0)
    default = [S.sample_scene(rng_default, f"v{i}", 8) for i in range(400)]
    variant = [S.sample_scene(rng_variant, f"v{i}", 8, visible_prob=0.5, silent_prob=0.6) for i in range(400)]

    def sounding_given_visible(scenes):
        visible = [i for s in scenes for i in s.instruments if i.visible]
        return sum(i.sounds for i in visible) / len(visible)

    assert sounding_given_visible(variant) < sounding_given_visible(default) - 0.2
    with pytest.raises(ValueError, match="visible_prob"):
        S.generate_synthetic("/nonexistent", visible_prob=0.0)


def test_context_padding_is_realistic_recorded_and_leaves_the_default_alone(tmp_path):
    """padding="context": after the end token the words are non-zero and depend on the question (as CLIP's), the
    token counts are recorded so mask_padding still finds the words, and synthetic.json says which padding; the
    default keeps today's zero padding and metadata (every shipped run's data)."""
    import torch

    from avmaster_core.core import config
    from avmaster_core.results.analysis import load_split
    from avmaster_core.core.model import build_model

    tiny = dict(num_videos=12, questions_per_video=4, T=4, seed=5)
    S.generate_synthetic(tmp_path / "zero", **tiny)
    S.generate_synthetic(tmp_path / "context", **tiny, padding="context")
    assert "padding" not in json.loads((tmp_path / "zero" / "synthetic.json").read_text())
    assert json.loads((tmp_path / "context" / "synthetic.json").read_text())["padding"] == "context"
    records = _records(tmp_path / "zero", "test")
    with FeatureStore(tmp_path / "zero" / "features.h5") as zero, FeatureStore(tmp_path / "context" / "features.h5") as ctx:
        pads = []
        for r in records:
            n = len(S.fill_question(r["question_content"], r["templ_values"]).split()) + 2  # start, words, end
            a, b = zero.get("words", r["question_id"]), ctx.get("words", r["question_id"])
            assert np.array_equal(a[:n], b[:n]) and not a[n:].any()
            assert (np.abs(b[n:]).max(axis=1) > 1).all()                          # every padding row non-zero
            assert ctx.file[f"words/{r['question_id']}"].attrs["tokens"] == n
            pads.append(b[n + 1])
        assert len({p.tobytes() for p in pads}) > 1                               # question-dependent
    # a model that masks the padding answers the same on both; one that attends to it does not
    for mask, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        cfg = config.ModelConfig.official(dim=32, focus_ffn=64, dropout=0.0, mask_padding=mask)
        model = build_model(cfg).eval()
        logits = [model(load_split("synthetic", "test", tmp_path / p).bank.gather(torch.arange(8)))["logits"]
                  for p in ("zero", "context")]
        assert torch.allclose(logits[0], logits[1], atol=1e-5) == same, mask
    with pytest.raises(ValueError, match="padding must be one of"):
        S.question_features("is it", padding="noise")

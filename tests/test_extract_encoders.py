"""Encoders: CLIP preprocessing equals CLIP's definition, text features, VGGish patches, fail-fast weights."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from avmaster_core.extract.encoders import (CLIP_MEAN, CLIP_STD, ClipEncoder, ClipPreprocess, VGGishEncoder,
                                            WeightsNotFoundError, vggish_log_mel)


def _known_image(width=411, height=250) -> Image.Image:
    """A deterministic image with edges and gradients (bicubic resizing differences would show)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x // 17 + y // 13) % 2) * 255], -1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("size", [336, 224])
def test_preprocessing_matches_clip_definition(size):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torchvision import transforms as T

    image = _known_image()
    ours = ClipPreprocess(size=size).normalize(ClipPreprocess(size=size).crop(image)[None])[0]  # [3,S,S]
    # CLIP's own definition (openai/CLIP `_transform`), and open_clip's inference transform
    clip_def = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                          lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])(image)
    open_clip_val = image_transform_v2(PreprocessCfg(size=size), is_train=False)(image)
    assert ours.shape == (3, size, size)
    torch.testing.assert_close(ours, clip_def, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, open_clip_val, atol=1e-6, rtol=0)


def test_clip_constants_are_the_official_ones():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073) == tuple(OPENAI_DATASET_MEAN)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711) == tuple(OPENAI_DATASET_STD)


def test_text_features_sentence_and_words():
    clip = ClipEncoder.tiny(seed=1)
    texts = ["What is the first instrument that comes in", "how many instruments are sounding in the video"]
    sentence, words = clip.encode_text(texts)
    assert sentence.shape == (2, 768) and words.shape == (2, 77, 768)
    torch.testing.assert_close(sentence, clip.model.encode_text(clip.tokenizer(texts)))  # = open_clip's pooled output
    eot = clip.tokenizer(texts).argmax(dim=-1)
    torch.testing.assert_close(words[torch.arange(2), eot], sentence)  # the sentence is the EOT word
    assert not torch.allclose(words[0, 1], words[0, 2])


def test_image_features_shape_and_batch_independence():
    clip = ClipEncoder.tiny()
    crops = torch.stack([clip.preprocess.crop(_known_image(100 + 10 * i, 80)) for i in range(3)])  # uint8 [3,3,64,64]
    feats = clip.encode_images(crops)
    assert feats.shape == (3, 768) and feats.dtype == torch.float32
    torch.testing.assert_close(clip.encode_images(crops[1:2]), feats[1:2], atol=1e-5, rtol=1e-5)


def test_vggish_patches_and_embedding():
    sr = 16000
    t = np.arange(2 * sr) / sr
    audio = (0.5 * np.sin(2 * np.pi * 1000 * t)).reshape(2, sr).astype(np.float32)
    patches = vggish_log_mel(audio)
    assert patches.shape == (2, 96, 64)
    from torchvggish import vggish_input
    reference = vggish_input.waveform_to_examples(audio[0], sr, return_tensor=False)  # torchvggish on 1 s
    np.testing.assert_allclose(patches[0], reference[0], atol=1e-5)
    assert np.argmax(patches[0].mean(0)) == np.argmax(reference[0].mean(0))
    emb = VGGishEncoder.load(random_init=True).encode(patches)
    assert emb.shape == (2, 128)


def test_missing_weights_fail_fast_with_the_file_name(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    started = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="ViT-L-14-336px.pt") as err:
        ClipEncoder.load("ViT-L-14-336", "openai")
    assert "--clip-weights" in str(err.value)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError, match="vggish-10086976.pth"):
        VGGishEncoder.load()
    assert time.perf_counter() - started < 10
    with pytest.raises(WeightsNotFoundError, match="do not exist"):
        ClipEncoder.load("ViT-B-32", "openai", weights=tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        ClipEncoder.load("ViT-Q-99")


def test_local_checkpoint_file_and_folder(tmp_path):
    import json

    import open_clip
    from avmaster_core.extract.encoders import TINY_CLIP

    (tmp_path / "tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "tiny-test.json")  # a named config, as ViT-B-32 etc. are
    source = ClipEncoder.tiny(seed=3).model
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    from_file = ClipEncoder.load("tiny-test", pretrained=None, weights=tmp_path / "weights.pt")
    assert from_file.embed_dim == 768 and from_file.preprocess.size == 64
    tokens = from_file.tokenizer(["a cello and a piano"])
    torch.testing.assert_close(from_file.model.encode_text(tokens), source.encode_text(tokens))
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "weights.pt").rename(folder / "weights.pt")
    from_folder = ClipEncoder.load("tiny-test", pretrained=None, weights=folder)
    torch.testing.assert_close(from_folder.model.encode_text(tokens), source.encode_text(tokens))
    (folder / "other.pt").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="2 checkpoint files"):
        ClipEncoder.load("tiny-test", pretrained=None, weights=folder)


# -- the encoder interface and registries ------------------------------------------------------------------------
def test_registered_test_encoders_follow_the_interface():
    from avmaster_core.extract.encoders import (AUDIO_ENCODERS, VISUAL_ENCODERS, AudioEncoder, VisualEncoder,
                                                build_audio_encoder, build_visual_encoder)

    assert {"vggish", "random-vggish"} <= set(AUDIO_ENCODERS) and {"clip", "tiny-clip"} <= set(VISUAL_ENCODERS)
    audio, visual = build_audio_encoder("random-vggish"), build_visual_encoder("tiny-clip")
    assert isinstance(audio, AudioEncoder) and isinstance(visual, VisualEncoder)
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
    assert audio.encode(audio.preprocess(waveform)).shape == (2, audio.dim) == (2, 128)
    frames = torch.stack([visual.preprocess(_known_image()) for _ in range(3)])
    assert visual.encode(frames).shape == (3, visual.dim) == (3, 768)
    with pytest.raises(ValueError, match="unknown audio encoder 'wav2vec'.*random-vggish"):
        build_audio_encoder("wav2vec")


def test_a_new_encoder_is_one_registration_and_the_store_takes_its_width(tmp_path, monkeypatch):
    from avmaster_core.extract import encoders
    from avmaster_core.extract.pipeline import extract_videos
    from avmaster_core.extract.synthclip import write_clip
    from avmaster_core.store import FeatureStore

    class MeanPool:  # a toy audio encoder: 4 band energies per second
        name, dim, sample_rate, input = "band-energy", 4, 16000, "4 band energies of each second at 16 kHz"

        @staticmethod
        def preprocess(audio):
            return np.abs(np.fft.rfft(audio, axis=1))[:, :8000].reshape(len(audio), 4, -1).mean(-1)

        def encode(self, x):
            return torch.as_tensor(x, dtype=torch.float32)

        def describe(self):
            return {"audio_extractor": "band energies"}

    monkeypatch.setitem(encoders.AUDIO_ENCODERS, "band-energy", lambda options: MeanPool())
    clip_path = write_clip(tmp_path / "v.mp4", seconds=2, fps=5)
    visual, audio = encoders.build_visual_encoder("tiny-clip"), encoders.build_audio_encoder("band-energy")
    out = tmp_path / "f.h5"
    extract_videos({"v": clip_path}, out, visual, audio, seconds=2, workers=0, progress=False)
    with FeatureStore(out) as store:
        assert store.get("audio", "v").shape == (2, 4) and store.attrs["audio_dim"] == 4
        assert store.attrs["audio_encoder"] == "band-energy"
    with pytest.raises(ValueError, match="audio_dim"):  # VGGish's 128-d features cannot join a 4-d store
        extract_videos({"w": clip_path}, out, visual, encoders.build_audio_encoder("random-vggish"), seconds=2,
                       workers=0, progress=False)



class _At48k:
    """A toy audio encoder at CLAP's 48 kHz: it reads [T, 48000] waveforms (the decoders must resample to it)."""
    name, dim, sample_rate, input = "toy-48k", 2, 48000, "48 kHz mono, each second: RMS and peak"

    def preprocess(self, audio):
        assert audio.shape[1] == 48000, audio.shape  # one second at its own rate
        return np.stack([np.sqrt((audio ** 2).mean(1)), np.abs(audio).max(1)], 1)

    def encode(self, x):
        return torch.as_tensor(x, dtype=torch.float32)

    def describe(self):
        return {"audio_extractor": "toy 48 kHz"}


class _Pixels:
    """A visual encoder with no text tower (as ResNet-18 or InternVideo2 would be): mean colour per frame."""
    name, dim, input = "mean-colour", 3, "one RGB frame per second resized to 8x8, mean colour"

    @staticmethod
    def preprocess(image):
        return torch.from_numpy(np.array(image.convert("RGB").resize((8, 8)), np.uint8)).permute(2, 0, 1)

    def encode(self, images):
        return images.float().mean((2, 3))

    def describe(self):
        return {"visual_extractor": "mean colour"}


@pytest.mark.parametrize("route", ["official", "clean"])
def test_an_encoder_declares_its_sample_rate_and_the_protocol_comes_from_the_encoders(tmp_path, route):
    from avmaster_core.extract.pipeline import extract_videos
    from avmaster_core.extract.synthclip import write_clip
    from avmaster_core.store import FeatureStore

    clip_path = write_clip(tmp_path / "v.mp4", seconds=2, fps=5, tone_hz=440.0)
    out = tmp_path / "f.h5"
    extract_videos({"v": clip_path}, out, _Pixels(), _At48k(), seconds=2, workers=0, progress=False, route=route)
    with FeatureStore(out) as store:
        rms = store.get("audio", "v")[:, 0]
        assert store.attrs["audio_sample_rate"] == 48000 and np.all(rms > 0.05)  # the tone, read at 48 kHz
        protocol = store.attrs["protocol"]
        assert protocol.startswith(f"avmaster-extract/{route}-2:")
        assert "visual = mean-colour: one RGB frame per second resized to 8x8" in protocol
        assert "audio = toy-48k: 48 kHz mono" in protocol and "VGGish" not in protocol and "CLIP" not in protocol


def test_the_question_encoder_is_its_own_choice(tmp_path):
    """A visual encoder without a text tower (Table XI's ResNet-18 / InternVideo2 rows) still gets question
    features in the same run: --text-encoder is chosen on its own."""
    import argparse

    from avmaster_core.extract.pipeline import build_text, extract_questions
    from avmaster_core.store import FeatureStore

    args = argparse.Namespace(encoders="real", text_encoder="tiny-clip", text_model="ViT-L-14-336", device="cpu",
                              precision="auto", clip_model="ViT-L-14-336", pretrained="openai", clip_weights=None,
                              vggish_weights=None)
    text = build_text(args, _Pixels())
    assert text.name == "tiny-clip" and text.dim == 768
    extract_questions({7: "Is the cello playing?"}, tmp_path / "q.h5", text, progress=False)
    with FeatureStore(tmp_path / "q.h5") as store:
        assert store.get("words", 7).shape == (77, 768)
        assert store.attrs["text_protocol"].startswith("question = tiny-clip: filled text without '?'")
    tiny_visual = ClipEncoder.tiny()
    assert build_text(args, tiny_visual) is tiny_visual  # the same CLIP is not loaded twice

"""PyAV decoding policy on clips made here: frame at each second, 16 kHz audio, lengths, failures."""
from __future__ import annotations

import numpy as np
import pytest

from avmaster_core.extract.synthclip import color_of_second, write_clip
from avmaster_core.extract.video import SAMPLE_RATE, VideoDecodeError, decode_video, list_videos


def _colour(frame: np.ndarray) -> np.ndarray:
    return frame[frame.shape[0] // 2, frame.shape[1] // 2].astype(int)


def _assert_colour(frame, second):
    assert np.abs(_colour(frame) - color_of_second(second).astype(int)).max() < 20, (second, _colour(frame))


def test_frame_at_each_second_and_audio_length(tmp_path):
    path = write_clip(tmp_path / "c.mp4", seconds=4, fps=10, tone_hz=440)
    video = decode_video(path, seconds=4)
    assert video.seconds == 4 and len(video.frames) == 4
    assert video.audio.shape == (4, SAMPLE_RATE) and video.audio.dtype == np.float32
    assert video.frames[0].shape == (48, 64, 3)
    for k, frame in enumerate(video.frames):  # the colour changes exactly at each whole second
        _assert_colour(frame, k)
    assert video.info["padded_seconds"] == 0 and not video.info["audio_missing"]


def test_variable_frame_rate_takes_the_frame_on_screen(tmp_path):
    # on screen at t=2: the 1.7 s frame (2.05 comes later); at t=3: the 2.05 s frame (3.6 comes later)
    times = [0.0, 0.3, 0.95, 1.0, 1.7, 2.05, 3.6]
    path = write_clip(tmp_path / "vfr.mkv", seconds=4, frame_times=times, audio_codec="pcm_s16le")
    video = decode_video(path, seconds=4)
    for k, expected in enumerate([0, 1, 1, 2]):
        _assert_colour(video.frames[k], expected)


@pytest.mark.parametrize("tone", [440.0, 1000.0])
def test_tone_frequency_survives_decoding(tmp_path, tone):
    path = write_clip(tmp_path / "t.mp4", seconds=2, tone_hz=tone, sample_rate=44100)
    video = decode_video(path, seconds=2)
    spectrum = np.abs(np.fft.rfft(video.audio[1]))  # 1 s at 16 kHz: bin k is k Hz
    assert abs(int(spectrum.argmax()) - tone) <= 2
    assert 0.2 < np.abs(video.audio[1]).max() < 0.6  # amplitude 0.5, channel mean of identical channels


def test_exact_sample_count_with_pcm(tmp_path):
    path = write_clip(tmp_path / "p.mkv", seconds=3, audio_codec="pcm_s16le", sample_rate=48000, channels=2)
    video = decode_video(path, seconds=3)
    assert video.info["audio_duration_s"] == pytest.approx(3.0, abs=1e-3)
    assert np.abs(video.audio[-1, -100:]).max() > 0.1  # audio reaches the very end: nothing padded


def test_longer_video_is_cut_shorter_is_padded(tmp_path):
    path = write_clip(tmp_path / "c.mp4", seconds=5, fps=5)
    cut = decode_video(path, seconds=3)
    assert cut.seconds == 3 and cut.info["padded_seconds"] == 0
    padded = decode_video(path, seconds=8)
    assert padded.seconds == 8 and padded.info["padded_seconds"] == 3
    np.testing.assert_array_equal(padded.frames[7], padded.frames[4])  # last frame repeated
    assert np.abs(padded.audio[6:]).max() == 0  # silence after the end
    own = decode_video(path, seconds=None)
    assert own.seconds == 5


def test_rotation_and_odd_size(tmp_path):
    path = write_clip(tmp_path / "r.mp4", seconds=2, size=(63, 47), rotation=90)
    video = decode_video(path, seconds=2)
    assert video.info["rotation"] == 90
    assert video.frames[0].shape[:2] == (63, 47)  # displayed upright: width and height swap


def test_missing_and_silent_audio_are_flagged(tmp_path):
    no_track = decode_video(write_clip(tmp_path / "n.mp4", seconds=2, audio=False), seconds=2)
    assert no_track.info["audio_missing"] and np.all(no_track.audio == 0)
    silent = decode_video(write_clip(tmp_path / "s.mp4", seconds=2, tone_hz=None), seconds=2)
    assert not silent.info["audio_missing"] and silent.info["audio_silent"]


def test_corrupt_and_missing_files_raise_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(VideoDecodeError, match="Invalid data"):
        decode_video(bad)
    good = write_clip(tmp_path / "good.mp4", seconds=2)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(VideoDecodeError):
        decode_video(truncated)
    with pytest.raises(VideoDecodeError, match="not found"):
        decode_video(tmp_path / "absent.mp4")


def test_list_videos_ids_and_duplicates(tmp_path):
    write_clip(tmp_path / "a.mp4", seconds=1)
    (tmp_path / "sub").mkdir()
    write_clip(tmp_path / "sub" / "b.mkv", seconds=1, audio_codec="pcm_s16le")
    (tmp_path / "notes.txt").write_text("x")
    assert sorted(list_videos(tmp_path)) == ["a", "b"]
    write_clip(tmp_path / "sub" / "a.mkv", seconds=1, audio_codec="pcm_s16le")
    with pytest.raises(ValueError, match="share the id 'a'"):
        list_videos(tmp_path)

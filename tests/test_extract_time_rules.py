"""extract.video's time rules where a stream gives no timestamps (mutation testing found them unpinned):
a frame without pts or time base sits at index / frame rate, 25 fps when the rate is unknown."""
from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from avmaster_core.extract.video import _frame_time


def frame(pts, time_base):
    return SimpleNamespace(pts=pts, time_base=time_base)


def test_a_timestamped_frame_uses_its_pts():
    assert _frame_time(frame(3003, Fraction(1, 30000)), index=7, rate=30) == pytest.approx(0.1001)


@pytest.mark.parametrize("pts, time_base", [(None, Fraction(1, 1000)), (500, None), (None, None)])
def test_a_frame_without_full_timestamp_falls_back_to_index_over_rate(pts, time_base):
    assert _frame_time(frame(pts, time_base), index=5, rate=Fraction(10)) == pytest.approx(0.5)
    assert _frame_time(frame(pts, time_base), index=5, rate=None) == pytest.approx(0.2)  # 25 fps by default


def test_audio_that_starts_before_the_video_still_fills_the_last_second(tmp_path):
    """Audio 0.5 s ahead of the video: its first 0.5 s is cut, so decoding must read past `seconds`."""
    import numpy as np

    from avmaster_core.extract.synthclip import write_clip
    from avmaster_core.extract.video import decode_video

    n = int(44100 * 4.5)
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)
    path = write_clip(tmp_path / "early.mkv", seconds=4, fps=10, video_start=0.5, audio_start=0.0,
                      audio_codec="pcm_s16le", wave=wave)
    audio = decode_video(path, seconds=3).audio.reshape(-1)
    assert len(audio) == 3 * 16000
    assert np.abs(audio[-1600:]).max() > 0.3  # the tone runs to the end, no zero padding


def test_an_audio_stream_without_frames_gives_silence():
    import numpy as np

    from avmaster_core.extract.video import _decode_audio

    container = SimpleNamespace(decode=lambda stream: iter(()))
    stream = SimpleNamespace(codec_context=SimpleNamespace(channels=2), rate=44100)
    audio, info = _decode_audio(container, stream, seconds=2, video_start=0.3)
    assert audio.shape == (2, 16000) and audio.dtype == np.float32 and not audio.any()
    assert info == {"audio_duration_s": 0.0, "audio_channels": 2, "audio_rate_in": 44100, "audio_silent": True}

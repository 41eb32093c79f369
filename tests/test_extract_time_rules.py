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


# ---------------------------------------------- _decode_audio on real audio frames already at 16 kHz (no resampling)
def _frames(planes, first_pts, chunk=1000):
    """av audio frames of int16 samples [channels, N] at 16 kHz, the first at first_pts / 16000 s (None: no pts)."""
    import av
    import numpy as np

    frames = []
    for i in range(0, planes.shape[1], chunk):
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, i:i + chunk]), format="s16p",
                                       layout="mono" if len(planes) == 1 else "stereo")
        f.sample_rate, f.pts, f.time_base = 16000, None if first_pts is None else first_pts + i, Fraction(1, 16000)
        frames.append(f)
    return frames


def _decode(planes, first_pts, video_start, seconds=2):
    from avmaster_core.extract.video import _decode_audio

    frames = _frames(planes, first_pts)
    container = SimpleNamespace(decode=lambda stream: iter(frames))
    stream = SimpleNamespace(codec_context=SimpleNamespace(channels=len(planes)), rate=16000)
    audio, info = _decode_audio(container, stream, seconds=seconds, video_start=video_start)
    return audio.reshape(-1), info


def _ramp(n):
    import numpy as np

    return (np.arange(1, n + 1) % 30000 - 15000).astype(np.int16)


def test_audio_one_sample_late_is_padded_by_exactly_one_sample():
    import numpy as np

    ramp = _ramp(40016)
    audio, info = _decode(ramp[None], first_pts=1, video_start=0.0)
    assert audio[0] == 0.0
    np.testing.assert_array_equal(audio[1:], ramp[:31999] / np.float32(32768))  # int16 full scale -> [-1, 1)
    assert info["audio_duration_s"] == 2.501  # 40017 samples: the shifted length, to the millisecond


@pytest.mark.parametrize("lead", [1, 3])
def test_audio_ahead_of_the_video_loses_its_first_samples(lead):
    import numpy as np

    ramp = _ramp(40000)
    audio, info = _decode(ramp[None], first_pts=0, video_start=lead / 16000)
    np.testing.assert_array_equal(audio, ramp[lead:lead + 32000] / np.float32(32768))
    assert info["audio_duration_s"] == round((40000 - lead) / 16000, 3)


def test_full_scale_and_channel_mean():
    import numpy as np

    left = np.full(32000, -32768, np.int16)
    right = np.full(32000, 16384, np.int16)
    audio, info = _decode(np.stack([left, right]), first_pts=0, video_start=0.0)
    assert (audio == np.float32((-1.0 + 0.5) / 2)).all() and info["audio_channels"] == 2


@pytest.mark.parametrize("level, silent", [(0, True), (3, True), (4, False), (-4, False)])
def test_silence_is_below_a_ten_thousandth_of_full_scale(level, silent):
    import numpy as np

    audio, info = _decode(np.full((1, 32000), level, np.int16), first_pts=0, video_start=0.0)
    assert info["audio_silent"] is silent  # 3 / 32768 < 1e-4 < 4 / 32768


@pytest.mark.parametrize("first_pts, video_start", [(0, 2.5), (-40000, 0.0)])
def test_audio_far_ahead_of_the_video_still_fills_every_second(first_pts, video_start):
    """Audio 2.5 s ahead of the video (a late video, or audio with negative timestamps): the decoder must read
    past the 2.5 s it cuts, not a fixed margin."""
    import numpy as np

    ramp = _ramp(16000 * 6)
    audio, info = _decode(ramp[None], first_pts=first_pts, video_start=video_start)
    np.testing.assert_array_equal(audio, ramp[40000:72000] / np.float32(32768))


def test_audio_frames_without_timestamps_start_with_the_video():
    import numpy as np

    ramp = _ramp(40000)
    audio, info = _decode(ramp[None], first_pts=None, video_start=0.7)
    np.testing.assert_array_equal(audio, ramp[:32000] / np.float32(32768))
    assert info["audio_duration_s"] == 2.5

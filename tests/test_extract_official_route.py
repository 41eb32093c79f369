"""The official route's emulated steps against their definitions, on generated clips at the frame rates the
reference measured (24, 25, 29.97, 30, 50 fps); and the time origin / audio shift of both routes on clips
whose streams do not start at 0 (issue 18)."""
from __future__ import annotations

import av
import numpy as np
import pytest

from avmaster_core.extract import official_route as off
from avmaster_core.extract.synthclip import color_of_second, write_clip
from avmaster_core.extract.video import decode_video

FPS = [24.0, 25.0, 30000 / 1001, 30.0, 50.0]


def _r1_rule(times, fps):
    """ffmpeg -r 1 as measured (docs/extraction.md): JPEG 0 = frame 0, JPEG 1 = frame 1, JPEG k >= 2 = the first
    frame with t >= k - 1.1 - 1/fps (a frame exactly on the boundary, at 30 and 50 fps, is taken)."""
    picks = [0, 1]
    k = 2
    while True:
        later = [i for i, t in enumerate(times) if t >= k - 1.1 - 1 / fps - 1e-9]
        if not later:
            return picks
        picks.append(later[0])
        k += 1


def _moviepy_rule(n_input, duration, n_output):
    """The docstring formula of moviepy_sample_indices, written independently of its buffer simulation."""
    total = int(16000 * duration)
    chunks = total // 2000 + 1
    bounds = np.linspace(0, total, chunks + 1, dtype=int)
    picks = np.full(n_output, -1)
    refill_start, lag = 0, 0
    for c in range(chunks):
        n = np.arange(bounds[c], bounds[c + 1])
        n = n[n / 16000 < duration]
        if len(n) == 0:
            continue
        ideal = np.round(44100 * ((1.0 / 16000) * n)).astype(int)
        if ideal.max() >= refill_start + 200000:
            refill_start, lag = ideal.max() - 100000, lag + 1
        keep = n < n_output
        picks[n[keep]] = np.minimum(ideal[keep] - lag, n_input - 1)
    return picks


@pytest.mark.parametrize("fps", FPS)
def test_r1_picks_follow_ffmpeg_rule_for_a_minute(fps):
    times = np.arange(int(61 * fps)) / fps
    picks = off.ffmpeg_r1_picks(times, fps)
    rule = _r1_rule(times, fps)
    assert picks[:61] == rule[:61]
    assert picks[0] == 0 and picks[1] == 1 and times[picks[2]] == pytest.approx(0.9 - 1 / fps, abs=1.01 / fps)
    assert times[picks[59]] - 59 == pytest.approx(-1.1 - 1 / fps, abs=1.01 / fps)  # about one second early


def test_r1_fills_a_gap_by_repeating_the_previous_frame():
    # nothing between 1.0 and 4.2 s: at 4.2 s JPEGs 3 and 4 are due (delta = 4.2 + 0.5 - 3 = 1.7 rounds to 2);
    # the first of them repeats the 1.0 s frame (delta0 - 0.6 = 0.6 rounds to 1)
    assert off.ffmpeg_r1_picks([0.0, 0.5, 1.0, 4.2, 5.0], fps=2.0) == [0, 1, 2, 2, 3, 4]


@pytest.mark.parametrize("fps", FPS)
def test_frames_of_a_generated_clip(tmp_path, fps):
    times = [i / fps for i in range(int(4 * fps))]  # on a 1 ms time base (mkv)
    path = write_clip(tmp_path / "c.mkv", seconds=4, size=(32, 24), frame_times=times, audio_codec="pcm_s16le")
    with av.open(str(path)) as container:
        decoded = [float(f.pts * f.time_base) for f in container.decode(container.streams.video[0])]
        rate = float(container.streams.video[0].average_rate or container.streams.video[0].guessed_rate)
    video = off.decode_video_official(path, seconds=4)
    expected = [decoded[i] for i in _r1_rule(decoded, rate)[:4]]
    assert video.info["frame_times_s"] == pytest.approx(expected, abs=1e-4)
    for k, frame in enumerate(video.frames):  # the colour of the second each JPEG was taken in
        want = color_of_second(int(expected[k] + 1e-9)).astype(int)
        assert np.abs(frame[12, 16].astype(int) - want).max() < 25, (k, frame[12, 16])


def test_moviepy_indices_match_the_formula_with_drift():
    duration = 9.5  # three buffer refills: at about 4.54, 6.80 and 9.07 s
    n_input = int(44100 * duration) + 300
    picks = off.moviepy_sample_indices(n_input, duration, int(16000 * duration))
    np.testing.assert_array_equal(picks, _moviepy_rule(n_input, duration, int(16000 * duration)))
    ideal = np.round(44100 * ((1.0 / 16000) * np.arange(int(16000 * duration)))).astype(int)
    lag = ideal - picks
    assert lag[0] == 0 and lag[-1] == 3 and set(np.unique(lag)) == {0, 1, 2, 3}
    drift_times = [np.argmax(lag >= j) / 16000 for j in (1, 2, 3)]
    # the drift applies from the start of the 2000-sample chunk (0.125 s) that reaches past the buffer
    assert 4.41 < drift_times[0] <= 4.54 and np.diff(drift_times) == pytest.approx([2.27, 2.27], abs=0.13)


def test_moviepy_resample_clips_and_truncates():
    ramp = np.stack([np.arange(-32768, 32767, 7, dtype=np.int16)] * 2, axis=1)  # every level, both channels
    out = off.moviepy_resample(ramp, duration=len(ramp) / 44100)
    picked = ramp[off.moviepy_sample_indices(len(ramp), len(ramp) / 44100)]
    assert out.dtype == np.int16 and out.max() == 32440 and out.min() == -32440  # 0.99 * 32768, toward zero
    inside = np.abs(picked[:, 0].astype(int)) <= 32440
    np.testing.assert_array_equal(out[inside], picked[inside])


@pytest.mark.parametrize("fps", FPS)
def test_audio_of_a_generated_clip_is_the_formula(tmp_path, fps):
    rng = np.random.default_rng(int(fps))
    wave = rng.uniform(-0.6, 0.6, 44100 * 5).astype(np.float32)  # white noise: every picked sample is distinct
    times = [i / fps for i in range(int(5 * fps))]
    path = write_clip(tmp_path / "a.mkv", seconds=5, frame_times=times, size=(32, 24), audio_codec="pcm_s16le",
                      wave=wave)
    stored = (wave * 32767).astype(np.int16)  # what the PCM track holds
    with av.open(str(path)) as container:
        duration = off.ffmpeg_duration(container)
    video = off.decode_video_official(path, seconds=5)
    picks = _moviepy_rule(len(stored), duration, 5 * 16000)
    expected = np.where(picks >= 0, stored[np.maximum(picks, 0)], 0).astype(np.float32) / 32768.0
    np.testing.assert_allclose(video.audio.reshape(-1), expected, atol=1e-7)
    assert (np.round(44100 * np.arange(5 * 16000) / 16000) - picks).max() == 1  # the first drift, at 4.54 s


def test_bt601_conversion():
    y, u, v = 120, 90, 170
    frame = av.VideoFrame(16, 16, "yuv444p")
    for plane, value in zip(frame.planes, (y, u, v)):
        plane.update(np.full(plane.buffer_size, value, np.uint8).tobytes())
    rgb = off.bt601_rgb(frame)[8, 8].astype(float)
    want = [1.164 * (y - 16) + 1.596 * (v - 128), 1.164 * (y - 16) - 0.392 * (u - 128) - 0.813 * (v - 128),
            1.164 * (y - 16) + 2.017 * (u - 128)]  # BT.601, limited range
    assert np.abs(rgb - np.clip(want, 0, 255)).max() <= 2
    bt709 = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray()[8, 8].astype(float)
    assert np.abs(bt709 - rgb).max() >= 5  # the tag would matter; the official route ignores it
    # the JPEG path (full-range YUV, mjpeg, Pillow's JFIF decode) gives the same BT.601 colour
    jpeg = np.asarray(off.decode_jpeg(off.FfmpegJpegWriter().encode(frame)), float)[8, 8]
    assert np.abs(jpeg - rgb).max() <= 3


def _libavcodec_jpegs(path, seconds):
    """`ffmpeg -i path -r 1 %06d.jpg` written here from libavcodec directly, for the comparison: the -r 1 picks,
    each picked frame converted to yuvj420p and encoded in order by one mjpeg encoder with time base 1/1 and
    the default 200 kb/s rate control."""
    from fractions import Fraction

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        fps = float(stream.average_rate)
    picks = off.ffmpeg_r1_picks([float(f.pts * f.time_base) for f in frames], fps)[:seconds]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frames[0].width, frames[0].height, "yuvj420p"
    encoder.time_base = encoder.framerate = Fraction(1, 1)
    encoder.bit_rate = 200_000
    out = []
    for k, index in enumerate(picks):
        yuv = frames[index].reformat(format="yuvj420p", interpolation="BICUBIC")
        yuv.pts, yuv.time_base = k, Fraction(1, 1)
        out += [bytes(p) for p in encoder.encode(yuv)]
    return out


def test_official_jpeg_step_is_libavcodecs_mjpeg_bit_for_bit(tmp_path):
    path = write_clip(tmp_path / "j.mp4", seconds=6, fps=25, size=(160, 120), texture=True)
    reference = _libavcodec_jpegs(path, 6)
    writer, ours = off.FfmpegJpegWriter(), []
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.video[0]))
    times = [float(f.pts * f.time_base) for f in frames]
    for index in off.ffmpeg_r1_picks(times, 25.0)[:6]:
        ours.append(writer.encode(frames[index]))
    assert len(ours) == 6 and ours == reference  # byte for byte
    # and the route's frames are those JPEGs as Pillow decodes them
    video = off.decode_video_official(path, seconds=6)
    for image, data in zip(video.frames, reference):
        np.testing.assert_array_equal(image, np.asarray(off.decode_jpeg(data)))


def test_ffmpegs_jpeg_is_rate_controlled_not_quality_75(tmp_path):
    """One table for luma and chroma, scaled per frame by the rate control: not Pillow's Annex K tables."""
    import io

    from PIL import Image

    path = write_clip(tmp_path / "q.mp4", seconds=5, fps=10, size=(320, 240), texture=True)
    writer = off.FfmpegJpegWriter()
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.video[0]))
    tables = [Image.open(io.BytesIO(writer.encode(f))).quantization for f in frames[::10]]
    assert all(len(t) == 1 for t in tables)  # one quantisation table, shared by luma and chroma
    assert len({tuple(t[0]) for t in tables}) > 1  # qscale moves from frame to frame
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(buffer, format="JPEG", quality=75, subsampling="4:2:0")
    assert len(Image.open(io.BytesIO(buffer.getvalue())).quantization) == 2  # what the route used to write


# -- streams that do not start at 0 (issue 18) ------------------------------------------------------------------
def _onset_wave(video_start, audio_start, seconds=4, onset=1.0):
    """A tone that starts `onset` s after the first video frame, on the audio stream's own sample axis."""
    n = int(44100 * (seconds + video_start - audio_start))
    t = np.arange(n) / 44100 + audio_start  # container time of each sample
    return np.where(t >= video_start + onset, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)


def _onset(audio: np.ndarray) -> float:
    flat = audio.reshape(-1)
    return int(np.argmax(np.abs(flat) > 0.05)) / 16000


@pytest.mark.parametrize("video_start,audio_start,codec", [(0.5, 0.0, "pcm_s16le"), (0.2, 0.7, "pcm_s16le"),
                                                           (0.5, 0.0, "aac"), (0.2, 0.7, "aac")])
def test_clean_route_aligns_to_the_first_video_frame(tmp_path, video_start, audio_start, codec):
    path = write_clip(tmp_path / "s.mkv", seconds=4, fps=10, video_start=video_start, audio_start=audio_start,
                      audio_codec=codec, wave=_onset_wave(video_start, audio_start))
    video = decode_video(path, seconds=3)
    assert video.info["video_start_s"] == pytest.approx(video_start, abs=1e-3)
    for k, frame in enumerate(video.frames):  # the colour of second k of the video's own timeline
        assert np.abs(frame[24, 32].astype(int) - color_of_second(k).astype(int)).max() < 25, k
    assert _onset(video.audio) == pytest.approx(1.0, abs=0.03)  # the tone starts 1 s after the first frame


@pytest.mark.parametrize("video_start,audio_start", [(0.5, 0.0), (0.2, 0.7)])
def test_official_route_starts_audio_at_its_first_sample(tmp_path, video_start, audio_start):
    path = write_clip(tmp_path / "s.mkv", seconds=4, fps=10, video_start=video_start, audio_start=audio_start,
                      audio_codec="pcm_s16le", wave=_onset_wave(video_start, audio_start))
    video = off.decode_video_official(path, seconds=3)
    assert _onset(video.audio) == pytest.approx(1.0 + video_start - audio_start, abs=0.01)
    origin = min(video_start, audio_start)  # ffmpeg measures from the file's start time
    decoded = [video_start - origin + i / 10 for i in range(40)]
    assert video.info["frame_times_s"][:3] == pytest.approx([decoded[i] for i in _r1_rule(decoded, 10.0)[:3]],
                                                            abs=1e-3)


def test_compare_routes_measures_the_gap_and_plots_it(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from avmaster_core.extract.routes import compare_routes, plot_route_comparison

    wave = np.random.default_rng(0).uniform(-0.6, 0.6, 44100 * 4).astype(np.float32)  # broadband: aliasing shows
    path = write_clip(tmp_path / "n.mp4", seconds=4, fps=25, size=(64, 48), wave=wave, texture=True)
    result = compare_routes(path)
    table = result["table"].set_index("measure")["value"]
    assert 0.1 < table["log-mel mean |official - clean|"] < 1.5
    assert 0.5 < table["mean-centred patch cosine"] < 0.99
    assert table["frame time offset, k >= 2 (mean)"] == pytest.approx(-1.1 - 0.5 / 25, abs=0.03)
    assert 20 < table["pixel PSNR, same frame (mean)"] < 45
    assert result["log_mel"]["official"].shape == result["log_mel"]["clean"].shape == (4, 96, 64)
    figure = plot_route_comparison(result, second=1)
    assert len(figure.axes) == 7  # four panels and three colour bars


def test_a_store_of_the_former_jpeg_step_takes_no_new_official_features():
    import json

    from avmaster_core.extract.routes import ROUTES, check_route

    route = ROUTES["official"]
    former = {**route.params, "pixels": "BT.601 limited-range YUV->RGB, JPEG (Pillow, quality 75, 4:2:0) round trip"}
    check_route({"route": "official", "route_params": json.dumps(route.params)}, route, "s.h5")  # same: fine
    with pytest.raises(ValueError, match=r"s.h5 holds 'official' features made with another pixels step.*quality 75"):
        check_route({"route": "official", "route_params": json.dumps(former)}, route, "s.h5")

"""Small generated videos with known content (for tests and extraction benchmarks).

Second k shows a solid colour `color_of_second(k)`; the audio is a sine tone. Encoded with PyAV.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from .video import pyav

PALETTE = np.array([[230, 25, 25], [25, 230, 25], [25, 25, 230], [230, 230, 25], [25, 230, 230],
                    [230, 25, 230], [240, 240, 240], [128, 64, 0]], dtype=np.uint8)


def color_of_second(k: int) -> np.ndarray:
    return PALETTE[k % len(PALETTE)]


def write_clip(path: str | Path, seconds: float = 3, fps: float = 10, size: tuple[int, int] = (64, 48),
               tone_hz: float | None = 440.0, audio: bool = True, rotation: int = 0, sample_rate: int = 44100,
               channels: int = 2, video_codec: str = "mpeg4", audio_codec: str = "aac",
               frame_times: list[float] | None = None, wave: np.ndarray | None = None,
               video_start: float = 0.0, audio_start: float = 0.0, texture: bool = False) -> Path:
    """Write a clip: `size` = (width, height); tone_hz=None writes digital silence; audio=False no audio track.

    frame_times: explicit presentation times (s) for a variable-frame-rate clip (needs a container with a
    fine time base such as .mkv); by default frames are at k / fps. Second k of the video's own timeline
    (frame time - video_start) shows `color_of_second(k)`, with seeded noise added when `texture`.
    wave: the mono audio signal itself (float in [-1, 1] at `sample_rate`) instead of a tone.
    video_start, audio_start: the streams' first timestamps (s) on the container timeline, e.g. audio that
    starts before the video (encoder priming) or after it.
    """
    av = pyav()
    path = Path(path)
    width, height = size
    times = frame_times if frame_times is not None else [i / fps for i in range(int(round(seconds * fps)))]
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        vs = out.add_stream(video_codec, rate=int(fps) if frame_times is None else 1000)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.time_base = Fraction(1, 1000) if frame_times is not None else Fraction(1, int(fps))
        if rotation:
            vs.set_display_rotation(rotation)
        if audio:
            aus = out.add_stream(audio_codec, rate=sample_rate)
            aus.layout = "stereo" if channels == 2 else "mono"
        for t in times:
            image = np.empty((height, width, 3), np.uint8)
            image[:] = color_of_second(int(t + 1e-9))
            if texture:
                image = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(round((t + video_start) / vs.time_base))
            frame.time_base = vs.time_base
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if audio:
            n = int(round(seconds * sample_rate)) if wave is None else len(wave)
            if wave is None:
                wave = np.zeros(n, np.float32) if tone_hz is None else \
                    (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(n) / sample_rate)).astype(np.float32)
            wave = np.asarray(wave, np.float32)
            first = int(round(audio_start * sample_rate))
            planar = "fltp" if audio_codec in ("aac", "libopus", "mp3", "libmp3lame") else "s16"
            step = 1024
            for start in range(0, n, step):
                chunk = np.repeat(wave[None, start:start + step], channels, axis=0)  # [C, N]
                if planar == "s16":
                    data = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                    fr = av.AudioFrame.from_ndarray(data, format="s16", layout=aus.layout.name)
                else:
                    fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                                    layout=aus.layout.name)
                fr.sample_rate, fr.pts = sample_rate, first + start
                for packet in aus.encode(fr):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path
